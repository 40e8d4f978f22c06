"""Modbus drives against the simulated mount over real loopback TCP and a real pty (RTU).

Nothing is mocked: a pymodbus server hosts the ``SimMount`` and the driver talks
to it through the kernel.  The mount is stepped explicitly (simulated time),
so every figure is deterministic.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from pymodbus.client import AsyncModbusTcpClient

from drivers.modbus import ModbusAxis, make_modbus_axes
from drivers.modbus_map import load_map, parse_map
from simulator.faults import FaultInjector
from simulator.modbus_server import start_modbus_rtu_server, start_modbus_tcp_server
from simulator.mount import SimMount
from tests.support import CONFIG_DIR, arcsecond
from tracker import config
from tracker.clock import SimClock
from tracker.errors import ConfigError
from tracker.mount.axis import Axis, Condition, Limit

pytestmark = pytest.mark.network

COUNT_DEG = 1.0 / 720000.0  # one position count of the default map


@pytest.fixture
def mb_settings() -> config.Settings:
    return config.load(CONFIG_DIR / "sim-modbus.toml")


@pytest.fixture
async def tcp(mb_settings):
    """(mount, server handle, axes, clock) over Modbus TCP on a free loopback port."""
    mount = SimMount(mb_settings)
    handle, port = await start_modbus_tcp_server(mount)
    clock = SimClock(1.8e9)
    axes = make_modbus_axes(mb_settings, clock.now_s, port=port)
    for ax in axes.values():
        await ax.connect()
    yield mount, handle, axes, clock
    for ax in axes.values():
        await ax.close()
    await handle.stop()


async def advance(mount: SimMount, clock: SimClock, axes, seconds: float) -> None:
    """Step the mount ``seconds`` in 0.1 s ticks, heartbeating every drive over the wire."""
    for _ in range(round(seconds / 0.1)):
        mount.step(0.1)
        clock.advance(0.1)
        for ax in axes.values():
            await ax.heartbeat()


# ---------------------------------------------------------------- register map
def test_default_map_and_int32_words():
    m = load_map()
    assert m.status.count == 8 and m.command.address == 16
    for v in (0, 1, -1, 123456789, -987654321, 2**31 - 1, -(2**31)):
        w = m.int32_to_words(v)
        assert all(0 <= x <= 0xFFFF for x in w)
        assert m.words_to_int32(*w) == v
    assert m.int32_to_words(0x12345678) == [0x1234, 0x5678]
    little = parse_map({**m.model_dump(), "word_order": "little"})
    assert little.int32_to_words(0x12345678) == [0x5678, 0x1234]
    assert little.words_to_int32(0x5678, 0x1234) == 0x12345678
    assert m.int32_to_words(-2) == [0xFFFF, 0xFFFE]
    with pytest.raises(ValueError):
        m.int32_to_words(2**31)
    assert m.deg_to_counts(-200.0) == -144_000_000
    assert m.counts_to_deg_s(m.deg_s_to_counts(0.0041667)) == pytest.approx(0.0041667, abs=1e-6)


@pytest.mark.parametrize("change, message", [
    ({"status": {"velocity": 1}}, "overlaps"),
    ({"status": {"heartbeat_echo": 9}}, "outside"),
    ({"command": {"address": 4}}, "outside"),
    ({"status_bits": {"moving": 0}}, "different bits"),
    ({"modes": {"stop": 1}}, "different codes"),
    ({"word_order": "middle"}, "word_order"),
    ({"counts_per_deg": 0}, "counts_per_deg"),
])
def test_map_rejects_inconsistent_maps(change, message):
    data = load_map().model_dump()
    for key, value in change.items():
        if isinstance(value, dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    with pytest.raises(ConfigError, match=message):
        parse_map(data, "bad.toml")


def test_map_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_map(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("word_order = [", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_map(bad)


# ---------------------------------------------------------------- normal operation
async def test_read_state_over_tcp(tcp):
    mount, handle, axes, clock = tcp
    az, el = axes["azimuth"], axes["elevation"]
    assert isinstance(az, Axis)
    a, e = await asyncio.gather(az.read(), el.read())
    assert a.ok and a.fresh and e.ok
    # The driver reports what the drive's encoder reads (to one count of the register map);
    # the encoder reads the motor near 180/0 deg (within a step of its resolution).
    assert a.position_deg == pytest.approx(mount.azimuth.encoder_deg, abs=COUNT_DEG)
    assert e.position_deg == pytest.approx(mount.elevation.encoder_deg, abs=COUNT_DEG)
    assert a.position_deg == pytest.approx(180.0, abs=1.0 / 3600)
    assert e.position_deg == pytest.approx(0.0, abs=1.0 / 3600)
    assert not a.enabled and not a.moving and a.limit is Limit.NONE
    assert a.timestamp_s == 1.8e9 and a.name == "azimuth" and e.name == "elevation"


async def test_velocity_position_stop_disable_over_tcp(tcp):
    mount, handle, axes, clock = tcp
    az, el = axes["azimuth"], axes["elevation"]
    await az.enable()
    await el.enable()
    await az.command_velocity(-0.3)
    await el.command_position(12.345678, 0.2)
    await advance(mount, clock, axes, 10.0)
    a = await az.read()
    assert a.enabled and a.moving
    assert a.velocity_deg_s == pytest.approx(-0.3, abs=0.002)
    assert a.velocity_deg_s == pytest.approx(mount.azimuth.velocity_deg_s, abs=1e-6)
    assert a.position_deg == pytest.approx(mount.azimuth.encoder_deg, abs=COUNT_DEG)
    assert a.position_deg < 178.0
    await advance(mount, clock, axes, 100.0)
    e = await el.read()
    assert e.position_deg == pytest.approx(12.345678, abs=1.0 * arcsecond)
    assert not e.moving
    await az.stop()
    await advance(mount, clock, axes, 10.0)
    a = await az.read()
    assert not a.moving and a.enabled
    await az.disable()
    await advance(mount, clock, axes, 1.0)
    a = await az.read()
    assert not a.enabled
    assert mount.azimuth.braked


async def test_heartbeat_keeps_the_drive_alive_and_its_loss_shows_as_watchdog(tcp):
    mount, handle, axes, clock = tcp
    az = axes["azimuth"]
    await az.enable()
    await az.command_velocity(0.1)
    await advance(mount, clock, axes, 5.0)  # 50 heartbeats over the wire
    a = await az.read()
    assert a.ok and a.velocity_deg_s == pytest.approx(0.1, abs=0.002)
    assert handle.drives["azimuth"].heartbeat_counter == az._hb
    mount.step(1.5)  # the controller goes quiet for longer than drives.watchdog_s
    a = await az.read()
    assert a.condition is Condition.WATCHDOG and a.fault_code == 7 and a.fresh
    await az.reset()
    a = await az.read()
    assert a.ok


@pytest.mark.parametrize("inject, condition, code", [
    (lambda f: f.trip("azimuth", Condition.OVERCURRENT), Condition.OVERCURRENT, 1),
    (lambda f: f.trip("azimuth", Condition.OVERTEMPERATURE), Condition.OVERTEMPERATURE, 2),
    (lambda f: f.trip("azimuth", Condition.FOLLOWING_ERROR), Condition.FOLLOWING_ERROR, 3),
    (lambda f: f.estop(True), Condition.ESTOP, 4),
    (lambda f: f.limit_switch("azimuth"), Condition.LIMIT_SWITCH, 5),
    (lambda f: f.encoder_jump("azimuth", 0.5), Condition.ENCODER_JUMP, 6),
])
async def test_drive_faults_over_tcp(tcp, inject, condition, code):
    mount, handle, axes, clock = tcp
    az = axes["azimuth"]
    await az.enable()
    await az.command_velocity(0.2)
    await advance(mount, clock, axes, 2.0)
    inject(FaultInjector(mount, server=handle))
    await advance(mount, clock, axes, 1.0)
    a = await az.read()
    assert a.condition is condition and a.fault_code == code and a.fresh
    assert a.fault_text
    assert not a.enabled and not a.moving
    await az.reset()
    a = await az.read()
    if condition is Condition.ESTOP:
        assert a.condition is Condition.ESTOP  # not while the chain is open
        FaultInjector(mount, server=handle).estop(False)
        await az.reset()
        a = await az.read()
    assert a.ok


async def test_power_loss_drops_the_link_and_faults_the_drives(tcp):
    mount, handle, axes, clock = tcp
    az, el = axes["azimuth"], axes["elevation"]
    await az.enable()
    assert (await az.read()).ok
    FaultInjector(mount, server=handle).power_loss()
    await asyncio.sleep(0.05)
    assert (await az.read()).condition is Condition.LINK_DOWN
    assert (await el.read()).condition is Condition.LINK_DOWN  # its own connection
    a, e = await az.read(), await el.read()
    assert a.condition is Condition.DRIVE_FAULT and a.fault_code == 99
    assert e.condition is Condition.DRIVE_FAULT
    assert "drive fault code 99" in a.fault_text
    assert not a.enabled
    await az.reset()
    assert (await az.read()).ok


async def test_limits_show_in_the_status_flags(tcp):
    mount, handle, axes, clock = tcp
    el = axes["elevation"]
    await el.enable()
    await el.command_velocity(0.3)
    await advance(mount, clock, axes, 130.0)
    e = await el.read()
    assert e.ok and e.limit is Limit.SOFT_HIGH
    assert e.position_deg == pytest.approx(25.5, abs=2 * arcsecond)
    FaultInjector(mount, server=handle).encoder_jump("elevation", -3.0)
    await el.reset()
    await el.enable()
    await el.command_velocity(0.3)
    await advance(mount, clock, axes, 30.0)
    e = await el.read()
    assert e.condition is Condition.LIMIT_SWITCH and e.limit is Limit.HARD_HIGH
    assert mount.elevation.max_true_deg <= mount.elevation.hard_high_deg


# ---------------------------------------------------------------- comms faults
async def test_dropped_connection_is_link_down_then_reconnects(tcp):
    mount, handle, axes, clock = tcp
    az = axes["azimuth"]
    first = await az.read()
    assert first.ok
    assert handle.drop_connections() == 2  # one connection per axis
    await asyncio.sleep(0.05)
    a = await az.read()
    assert a.condition is Condition.LINK_DOWN and not a.fresh
    assert a.position_deg == first.position_deg
    a = await az.read()
    assert a.ok and a.fresh
    assert az.link.connects == 2


async def test_slow_responses_are_timeouts(tcp, mb_settings):
    mount, handle, axes, clock = tcp
    az, el = axes["azimuth"], axes["elevation"]
    good = await az.read()
    timeout_s = mb_settings.drives.modbus.timeout_s
    FaultInjector(mount, server=handle).delay_responses(timeout_s + 1.0, axis="azimuth")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    a = await az.read()
    waited = loop.time() - t0
    assert a.condition is Condition.TIMEOUT and not a.fresh
    assert a.position_deg == good.position_deg
    assert timeout_s <= waited < timeout_s + 0.8  # gave up at the timeout, not at the answer
    assert (await el.read()).ok  # the other drive answers in time
    handle.faults.clear()
    await asyncio.sleep(1.1)  # let the late answer arrive and be discarded
    for _ in range(3):
        a = await az.read()
    assert a.ok


async def test_a_sustained_slow_link_is_timeouts_not_garbage(tcp):
    """Late answers to earlier requests must not be taken for the current one."""
    mount, handle, axes, clock = tcp
    az = axes["azimuth"]
    await az.enable()
    handle.faults.delay_s = 0.35
    seen = set()
    for _ in range(6):
        await az.command_velocity(0.01)
        a = await az.read()
        seen.add(a.condition)
        await asyncio.sleep(0.05)
    assert seen == {Condition.TIMEOUT}
    handle.faults.clear()
    await asyncio.sleep(0.5)
    for _ in range(4):
        a = await az.read()
    assert a.ok and a.fresh


async def test_garbled_frames_over_tcp(tcp, mb_settings):
    mount, handle, axes, clock = tcp
    # a long timeout, to show the garbled reply is reported at once, not as a timeout
    md = mb_settings.drives.modbus.model_copy(update={"timeout_s": 3.0})
    s = mb_settings.model_copy(update={"drives": mb_settings.drives.model_copy(
        update={"modbus": md})})
    az = make_modbus_axes(s, clock.now_s, port=handle.port)["azimuth"]
    await az.connect()
    assert (await az.read()).ok
    FaultInjector(mount, server=handle).garble(1)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    a = await az.read()
    assert a.condition is Condition.GARBLED_FRAME and not a.fresh
    assert loop.time() - t0 < 1.5
    assert (await az.read()).ok
    await az.close()


async def test_exception_responses(tcp):
    mount, handle, axes, clock = tcp
    az, el = axes["azimuth"], axes["elevation"]
    FaultInjector(mount, server=handle).exception(code=6, count=1, axis="elevation")
    assert (await az.read()).ok
    e = await el.read()
    assert e.condition is Condition.PROTOCOL_EXCEPTION and "6" in e.fault_text
    assert "busy" in e.fault_text
    assert (await el.read()).ok


async def test_a_failed_command_is_reported_by_the_next_read(tcp):
    mount, handle, axes, clock = tcp
    az = axes["azimuth"]
    await az.enable()
    FaultInjector(mount, server=handle).exception(code=4, count=1)
    await az.command_velocity(0.2)  # answered with an exception: lost
    a = await az.read()
    assert a.condition is Condition.PROTOCOL_EXCEPTION and "last command failed" in a.fault_text
    assert a.fresh
    assert mount.azimuth._v_demand == 0.0
    a = await az.read()
    assert a.ok


async def test_writes_outside_the_command_block_are_refused(tcp):
    mount, handle, axes, clock = tcp
    client = AsyncModbusTcpClient("127.0.0.1", port=handle.port, timeout=1.0, retries=0)
    await client.connect()
    try:
        rr = await client.write_registers(0, [1, 2], device_id=1)
        assert rr.isError() and rr.exception_code == 2
        rr = await client.write_register(16, 99, device_id=1)  # unknown mode
        assert rr.isError() and rr.exception_code == 3
        rr = await client.read_holding_registers(0, count=8, device_id=2)
        assert not rr.isError() and len(rr.registers) == 8
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_no_server_is_link_down_with_bounded_backoff(mb_settings):
    port = _free_port()
    clock = SimClock(0.0)
    axes = make_modbus_axes(mb_settings, clock.now_s, port=port)
    az = axes["azimuth"]
    await az.connect()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for _ in range(20):
        a = await az.read()
        assert a.condition is Condition.LINK_DOWN and not a.fresh
    assert loop.time() - t0 < 1.0  # never blocks the control loop
    assert 1 <= az.link.failed_connects <= 4  # backing off, not hammering
    await az.command_velocity(0.1)  # no exception either
    # the drive comes up: the driver reconnects within the backoff
    mount = SimMount(mb_settings)
    handle, _ = await start_modbus_tcp_server(mount, port=port)
    try:
        for _ in range(100):
            a = await az.read()
            if a.ok:
                break
            await asyncio.sleep(0.05)
        assert a.ok and a.position_deg == pytest.approx(mount.azimuth.encoder_deg, abs=COUNT_DEG)
    finally:
        await az.close()
        await handle.stop()


# ---------------------------------------------------------------- RTU over a pty pair
async def test_rtu_over_a_pty(mb_settings):
    s = mb_settings.model_copy(update={"drives": mb_settings.drives.model_copy(update={
        "modbus": mb_settings.drives.modbus.model_copy(update={"transport": "rtu"})})})
    mount = SimMount(s)
    handle, path = await start_modbus_rtu_server(mount)
    clock = SimClock(0.0)
    axes = make_modbus_axes(s, clock.now_s, serial_port=path)
    az, el = axes["azimuth"], axes["elevation"]
    assert az.link is el.link  # one serial line, two device ids
    try:
        await az.connect()
        assert (await az.read()).ok
        await el.enable()
        await el.command_velocity(-0.2)
        await advance(mount, clock, axes, 10.0)
        e = await el.read()
        assert e.ok and e.velocity_deg_s == pytest.approx(-0.2, abs=0.002)
        assert e.position_deg == pytest.approx(mount.elevation.encoder_deg, abs=COUNT_DEG)
        faults = FaultInjector(mount, server=handle)
        faults.garble(1)
        a = await az.read()
        assert a.condition is Condition.GARBLED_FRAME  # bad CRC
        assert (await az.read()).ok
        faults.exception(code=2, count=1)
        a = await az.read()
        assert a.condition is Condition.PROTOCOL_EXCEPTION
        faults.delay_responses(0.4)
        a = await az.read()
        assert a.condition is Condition.TIMEOUT
        faults.clear()
        await asyncio.sleep(0.3)
        for _ in range(3):
            a = await az.read()
        assert a.ok
        faults.trip("elevation", Condition.OVERTEMPERATURE)
        e = await el.read()
        assert e.condition is Condition.OVERTEMPERATURE and e.fault_code == 2
    finally:
        await az.close()
        await handle.stop()


async def test_rtu_missing_serial_port_is_link_down(mb_settings, tmp_path):
    s = mb_settings.model_copy(update={"drives": mb_settings.drives.model_copy(update={
        "modbus": mb_settings.drives.modbus.model_copy(update={"transport": "rtu"})})})
    axes = make_modbus_axes(s, SimClock(5.0).now_s, serial_port=str(tmp_path / "ttyUSB9"))
    az = axes["azimuth"]
    await az.connect()
    a = await az.read()
    assert a.condition is Condition.LINK_DOWN and not a.fresh and a.timestamp_s == 5.0
    await az.enable()  # no exception
    await az.close()


def test_factory_builds_modbus_axes_without_a_loop(mb_settings):
    axes = make_modbus_axes(mb_settings, SimClock(0.0).now_s)
    assert all(isinstance(a, ModbusAxis) for a in axes.values())
    assert axes["azimuth"].link is not axes["elevation"].link  # TCP: one connection each
