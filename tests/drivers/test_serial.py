"""The serial driver against the simulated controller over a real pseudo-terminal.

Nothing is mocked: the driver opens the pty slave with pyserial, the simulator
answers on the master side, and the mount is stepped explicitly (simulated time)
unless a test says otherwise.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass

import hypothesis
import pytest
import serial
from hypothesis import given
from hypothesis import strategies as st

from drivers import serial_protocol as sp
from drivers.serial import SerialAxis, SerialLink, make_serial_axes
from simulator.mount import SimMount
from simulator.serial_device import PtyServer, start_pty_server
from tracker import config
from tracker.clock import SimClock
from tracker.config import Settings
from tracker.mount.axis import Axis, Condition, Limit

pytestmark = pytest.mark.network

TIMEOUT_S = 0.08
T0_S = 1_790_000_000.0


@dataclass
class Rig:
    settings: Settings
    mount: SimMount
    server: PtyServer
    clock: SimClock
    az: SerialAxis
    el: SerialAxis

    @property
    def link(self) -> SerialLink:
        return self.az.link

    def step(self, total_s: float, dt_s: float = 0.05) -> None:
        """Simulated time passes with no traffic on the line."""
        for _ in range(round(total_s / dt_s)):
            self.mount.step(dt_s)
            self.clock.advance(dt_s)

    async def run(self, total_s: float, dt_s: float = 0.05, poll_s: float = 0.5) -> None:
        """Simulated time passes while a controller polls both axes every ``poll_s``."""
        for i in range(round(total_s / dt_s)):
            self.step(dt_s, dt_s)
            if (i + 1) % round(poll_s / dt_s) == 0:
                await self.az.read()
                await self.el.read()


def _with_port(settings: Settings, port: str, timeout_s: float = TIMEOUT_S) -> Settings:
    serial_cfg = settings.drives.serial.model_copy(update={"port": port, "timeout_s": timeout_s})
    drives = settings.drives.model_copy(update={"serial": serial_cfg})
    return settings.model_copy(update={"drives": drives})


def _without_encoder_drift(settings: Settings) -> Settings:
    """The line protocol is tested on encoders without thermal zero drift: a parked axis
    reads its park position exactly (the drift has its own tests in tests/simulator)."""
    sim = settings.simulator
    return settings.model_copy(update={"simulator": sim.model_copy(update={
        name: getattr(sim, name).model_copy(update={"encoder_drift_arcsec": 0.0})
        for name in ("azimuth", "elevation")})})


@pytest.fixture
async def rig(sim_settings):
    sim_settings = _without_encoder_drift(sim_settings)
    mount = SimMount(sim_settings)
    server = start_pty_server(mount)
    clock = SimClock(T0_S)
    settings = _with_port(sim_settings, server.path)
    axes = make_serial_axes(settings, clock, backoff_min_s=0.02, backoff_max_s=0.1)
    for ax in axes.values():
        await ax.connect()
    yield Rig(settings, mount, server, clock, axes["azimuth"], axes["elevation"])
    for ax in axes.values():
        await ax.close()
    server.stop()


# --------------------------------------------------------------------------- commands

async def test_read_reports_both_axes_over_the_pty(rig):
    assert isinstance(rig.az, Axis)
    assert os.path.islink(rig.server.path) and rig.server.pts_path.startswith("/dev/pts/")
    az = await rig.az.read()
    el = await rig.el.read()
    assert az.ok and el.ok and az.fresh
    assert az.position_deg == pytest.approx(rig.mount.azimuth.encoder_deg, abs=1e-6)
    assert az.position_deg == pytest.approx(180.0, abs=1e-6)  # park
    assert el.position_deg == pytest.approx(0.0, abs=1e-6)
    assert (az.enabled, az.moving, az.limit, az.fault_code) == (False, False, Limit.NONE, 0)
    assert az.timestamp_s == T0_S and az.name == "azimuth" and el.name == "elevation"


async def test_enable_velocity_stop_disable(rig):
    await rig.az.enable()
    assert rig.az.last_command_condition is Condition.OK
    assert rig.mount.azimuth.enabled and (await rig.az.read()).enabled
    await rig.az.command_velocity(0.2)
    await rig.run(8.0)
    st = await rig.az.read()
    assert st.moving and st.velocity_deg_s == pytest.approx(0.2, abs=0.01)
    assert st.position_deg > 180.5
    assert rig.mount.elevation.true_position_deg == pytest.approx(0.0, abs=1e-3)
    await rig.az.stop()
    await rig.run(10.0)
    st = await rig.az.read()
    assert not st.moving and abs(st.velocity_deg_s) < 1e-4 and st.enabled
    held_deg = st.position_deg
    await rig.az.disable()
    await rig.run(1.0)
    st = await rig.az.read()
    assert not st.enabled and st.position_deg == pytest.approx(held_deg, abs=0.01)


async def test_command_position_reaches_target_within_an_arcsecond(rig):
    await rig.el.enable()
    await rig.el.command_position(3.5, 0.2)
    assert rig.el.last_command_condition is Condition.OK
    await rig.run(30.0)
    st = await rig.el.read()
    assert st.position_deg == pytest.approx(3.5, abs=1.0 / 3600.0)
    assert not st.moving
    assert rig.mount.elevation.max_true_deg < 3.5 + 0.01


async def test_negative_velocity_and_precision_of_small_rates(rig):
    await rig.az.enable()
    await rig.az.command_velocity(-0.0041667)  # ~15 deg/h, a Sun-like rate
    await rig.run(5.0)
    st = await rig.az.read()
    assert st.velocity_deg_s == pytest.approx(-0.0041667, abs=2e-4)
    assert st.position_deg < 180.0


async def test_motion_commands_refused_while_disabled(rig):
    await rig.az.command_velocity(0.3)
    assert rig.az.last_command_condition is Condition.PROTOCOL_EXCEPTION
    assert "RF" in rig.az.last_command_detail and "disabled" in rig.az.last_command_detail
    await rig.run(2.0)
    assert rig.mount.azimuth.true_position_deg == pytest.approx(180.0, abs=1e-3)
    assert (await rig.az.read()).ok  # a refused command is not a drive fault


async def test_bad_caller_input_raises_and_sends_nothing(rig):
    sent = rig.server.requests
    with pytest.raises(sp.MessageError):
        await rig.az.command_velocity(float("nan"))
    with pytest.raises(sp.MessageError):
        await rig.az.command_position(10.0, 0.0)
    with pytest.raises(sp.MessageError):
        await rig.az.command_position(float("inf"), 0.1)
    assert rig.server.requests == sent
    with pytest.raises(ValueError):
        SerialAxis("declination", rig.link, rig.clock)


async def test_concurrent_reads_of_both_axes_share_one_port(rig):
    await rig.el.enable()
    await rig.el.command_position(-2.0, 0.2)
    await rig.run(20.0)
    states = await asyncio.gather(*[ax.read() for _ in range(25) for ax in (rig.az, rig.el)])
    assert all(s.ok and s.fresh for s in states)
    assert {round(s.position_deg, 3) for s in states if s.name == "azimuth"} == {180.0}
    assert {round(s.position_deg, 3) for s in states if s.name == "elevation"} == {-2.0}
    assert rig.link.stale == 0 and rig.link.timeouts == 0


async def test_traffic_keeps_the_drive_watchdog_fed(rig):
    await rig.az.enable()
    for _ in range(6):  # 3 s of simulated time, a read every 0.5 s (watchdog 1 s)
        rig.step(0.5)
        assert (await rig.az.read()).ok
    rig.step(1.5)  # silence longer than drives.watchdog_s
    st = await rig.az.read()
    assert st.condition is Condition.WATCHDOG and st.fault_code == 7
    assert "watchdog" in st.fault_text


# --------------------------------------------------------------------------- drive faults

@pytest.mark.parametrize("condition, code", [
    (Condition.OVERCURRENT, 1), (Condition.OVERTEMPERATURE, 2),
    (Condition.FOLLOWING_ERROR, 3), (Condition.LIMIT_SWITCH, 5),
])
async def test_drive_trip_reported_and_reset(rig, condition, code):
    await rig.az.enable()
    rig.mount.azimuth.trip(condition)
    st = await rig.az.read()
    assert st.condition is condition and st.fault_code == code and st.fresh
    assert not st.enabled and condition.value in st.fault_text
    await rig.az.enable()  # refused while faulted
    assert rig.az.last_command_condition is Condition.PROTOCOL_EXCEPTION
    await rig.az.reset()
    assert rig.az.last_command_condition is Condition.OK
    assert (await rig.az.read()).ok


async def test_estop_reported_and_reset_refused_until_released(rig):
    rig.mount.elevation.estop(True)
    st = await rig.el.read()
    assert st.condition is Condition.ESTOP and st.fault_code == 4
    await rig.el.reset()
    assert rig.el.last_command_condition is Condition.PROTOCOL_EXCEPTION
    assert (await rig.el.read()).condition is Condition.ESTOP
    rig.mount.elevation.estop(False)
    await rig.el.reset()
    assert (await rig.el.read()).ok
    assert (await rig.az.read()).ok  # the other axis never noticed


async def test_encoder_jump_reported_with_the_jumped_position(rig):
    rig.mount.azimuth.encoder_jump(2.5)
    st = await rig.az.read()
    assert st.condition is Condition.ENCODER_JUMP and st.fault_code == 6
    assert st.position_deg == pytest.approx(182.5, abs=1e-5)


async def test_hard_limit_position_reported_in_limit_field(sim_settings):
    probe = SimMount(sim_settings)
    start_deg = probe.azimuth.switch_high_deg + 0.01
    mount = SimMount(sim_settings, azimuth_deg=start_deg)
    server = start_pty_server(mount)
    try:
        axes = make_serial_axes(_with_port(sim_settings, server.path), SimClock(T0_S))
        await axes["azimuth"].connect()
        st = await axes["azimuth"].read()
        assert st.limit is Limit.HARD_HIGH
        assert st.position_deg == pytest.approx(mount.azimuth.encoder_deg, abs=1e-6)
        # Quantisation (0.25 arcsec) and the encoder's thermal zero drift (0.5 arcsec).
        assert st.position_deg == pytest.approx(start_deg, abs=0.75 / 3600)
        await axes["azimuth"].close()
    finally:
        server.stop()


# --------------------------------------------------------------------------- wire faults

async def test_garbled_reply_is_garbled_frame_then_recovers(rig):
    assert (await rig.az.read()).ok
    rig.server.garble()
    t0 = time.monotonic()
    st = await rig.az.read()
    assert st.condition is Condition.GARBLED_FRAME and not st.fresh
    assert time.monotonic() - t0 < TIMEOUT_S  # matched by its sequence number: no wait
    assert st.position_deg == pytest.approx(180.0, abs=1e-6)  # last good value
    assert (await rig.az.read()).ok
    assert rig.link.garbled == 1


async def test_silence_is_timeout_then_recovers(rig):
    rig.server.silence(2)
    t0 = time.monotonic()
    assert (await rig.az.read()).condition is Condition.TIMEOUT
    assert (await rig.el.read()).condition is Condition.TIMEOUT
    assert time.monotonic() - t0 == pytest.approx(2 * TIMEOUT_S, abs=0.1)
    assert (await rig.az.read()).ok and (await rig.el.read()).ok


async def test_partial_line_is_timeout_and_next_reply_resyncs(rig):
    rig.server.truncate()
    st = await rig.az.read()
    assert st.condition is Condition.TIMEOUT and "partial" in st.fault_text
    st = await rig.az.read()
    assert st.ok and st.position_deg == pytest.approx(180.0, abs=1e-6)


async def test_late_reply_is_timeout_and_then_discarded_as_stale(rig):
    await rig.el.enable()
    await rig.el.command_position(1.0, 0.2)
    await rig.run(15.0)
    rig.server.delay(2.5 * TIMEOUT_S)
    assert (await rig.az.read()).condition is Condition.TIMEOUT
    await asyncio.sleep(2 * TIMEOUT_S)  # the late azimuth reply arrives now
    st = await rig.el.read()
    assert st.ok and st.position_deg == pytest.approx(1.0, abs=1e-3)  # not the azimuth's 180
    assert rig.link.stale == 1


async def test_device_exception_is_protocol_exception(rig):
    rig.server.refuse()
    st = await rig.az.read()
    assert st.condition is Condition.PROTOCOL_EXCEPTION and "IN" in st.fault_text
    assert (await rig.az.read()).ok


async def test_garbage_on_the_line_is_ignored(rig):
    rig.server.noise(5, nbytes=40)
    for _ in range(5):
        assert (await rig.az.read()).ok
    rig.server.send_garbage(b"\x00\xff#junk*ZZ\r\n#1 OK*00\r\n\x13")
    await asyncio.sleep(0.01)
    st = await rig.el.read()
    assert st.ok and st.position_deg == pytest.approx(0.0, abs=1e-6)
    assert rig.link.garbled == 0


async def test_driver_never_raises_whatever_arrives(rig):
    """Random blobs and well-checksummed frames with junk words, sent ahead of the reply."""
    rng = random.Random(11)
    words_pool = ["OK", "ER", "A", "E", "+1.0", "-", "EM", "N", "HH", "0", "999", "CK", "x"]
    seen = set()
    for i in range(60):
        if i % 2:
            blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
        else:  # a valid frame carrying the sequence number the next read will use
            words = [rng.choice(words_pool) for _ in range(rng.randrange(1, 9))]
            blob = sp.encode_frame(rig.link._seq % sp.SEQ_MAX + 1, words)
        rig.server.send_garbage(blob)
        await asyncio.sleep(0)
        st = await rig.az.read()
        seen.add(st.condition)
        assert st.condition in (Condition.OK, Condition.GARBLED_FRAME, Condition.TIMEOUT,
                                Condition.PROTOCOL_EXCEPTION)
    assert Condition.OK in seen and Condition.GARBLED_FRAME in seen
    await asyncio.sleep(2 * TIMEOUT_S)
    st = await rig.az.read()
    assert st.ok and st.position_deg == pytest.approx(180.0, abs=1e-6)


async def test_garbled_request_answered_with_checksum_error(rig):
    """The device side: a request whose checksum is wrong gets ``ER CK`` with its seq."""
    await rig.az.close()
    await rig.el.close()
    def ask(port: serial.Serial, frame: bytes) -> sp.Reply:
        port.write(frame)
        return sp.parse_reply(sp.decode_frame(port.read_until(b"\r\n")))

    # A plain blocking pyserial client, in a thread so the device (on this loop) can answer.
    with serial.Serial(rig.server.path, timeout=0.5) as port:
        frame = bytearray(sp.encode_frame(77, ["RD", "A"]))
        frame[4] = ord("X")  # "RD" -> "XD" without fixing the checksum
        reply = await asyncio.to_thread(ask, port, bytes(frame))
        assert (reply.seq, reply.ok, reply.error_code) == (77, False, sp.ERR_CHECKSUM)
        reply = await asyncio.to_thread(ask, port, sp.encode_frame(78, ["VL", "B", "+1.0"]))
        assert (reply.seq, reply.error_code) == (78, sp.ERR_AXIS)
        reply = await asyncio.to_thread(ask, port, sp.encode_frame(79, ["RD", "B"]))
        assert [r.axis for r in reply.reports] == ["A", "E"]
    assert rig.server.bad_requests == 2


async def test_port_vanishes_link_down_then_reopens(rig):
    assert (await rig.az.read()).ok
    rig.server.drop_link()
    st = await rig.az.read()
    assert st.condition is Condition.LINK_DOWN and not st.fresh
    assert st.position_deg == pytest.approx(180.0, abs=1e-6)
    assert (await rig.el.read()).condition is Condition.LINK_DOWN
    rig.server.restore_link()
    assert os.path.realpath(rig.server.path) == rig.server.pts_path  # a new pty, same name
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        st = await rig.az.read()
        if st.ok:
            break
        assert st.condition is Condition.LINK_DOWN
        await asyncio.sleep(0.01)
    assert st.ok and st.fresh
    assert (await rig.el.read()).ok


async def test_missing_port_is_link_down_with_bounded_backoff(tmp_path, sim_settings):
    settings = _with_port(sim_settings, str(tmp_path / "no-such-tty"))
    axes = make_serial_axes(settings, SimClock(T0_S), backoff_min_s=0.02, backoff_max_s=0.08)
    az = axes["azimuth"]
    await az.connect()  # never raises
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.5:
        st = await az.read()
        assert st.condition is Condition.LINK_DOWN and "no-such-tty" in st.fault_text
        await az.command_velocity(0.1)  # never raises either
        await asyncio.sleep(0.005)
    # 1 forced attempt, then 0.02, 0.04, 0.08, 0.08...: about 8 in 0.5 s, not one per call.
    assert 5 <= az.link.open_attempts <= 10, az.link.open_attempts
    await az.close()


async def test_factory_builds_serial_axes_with_a_callable_clock(rig):
    from tracker.service.compose import make_axes

    settings = rig.settings.model_copy(
        update={"drives": rig.settings.drives.model_copy(update={"kind": "serial"})})
    axes = make_axes(settings, clock=lambda: 123.5)
    await axes["elevation"].connect()
    st = await axes["elevation"].read()  # the rig's link holds the port: locked out
    assert st.condition is Condition.LINK_DOWN and "exclusively lock" in st.fault_text
    await rig.az.close()
    await rig.el.close()
    await axes["elevation"].connect()  # an explicit connect retries at once
    st = await axes["elevation"].read()
    assert st.ok and st.timestamp_s == 123.5 and st.position_deg == pytest.approx(0.0, abs=1e-6)
    await axes["elevation"].close()
    with pytest.raises(TypeError):
        SerialAxis("azimuth", rig.link, clock=42)


async def test_read_before_connect_is_link_down(sim_settings):
    axes = make_serial_axes(_with_port(sim_settings, "/dev/null-not-a-port"), SimClock(T0_S))
    st = await axes["elevation"].read()
    assert st.condition is Condition.LINK_DOWN and not st.fresh
    assert axes["elevation"].link.open_attempts == 0


# --------------------------------------------------------------------------- real time

async def test_realtime_server_unpacks_and_steps_the_mount(sim_settings):
    mount = SimMount(sim_settings)
    path, stop = start_pty_server(mount, step_realtime=True)
    try:
        axes = make_serial_axes(_with_port(sim_settings, path), SimClock(T0_S))
        el = axes["elevation"]
        await el.connect()
        await el.enable()
        await el.command_velocity(0.25)
        await asyncio.sleep(0.3)
        st = await el.read()
        assert st.ok and st.moving and st.position_deg > 0.0
        assert mount.time_s == pytest.approx(0.3, abs=0.15)
        await el.close()
    finally:
        stop()
    assert not os.path.lexists(path)


# --------------------------------------------------------------------------- robustness

async def test_device_survives_random_bytes_and_keeps_answering(rig):
    rng = random.Random(7)
    await rig.az.close()
    await rig.el.close()
    alphabet = b"#*\r\n 0123456789ABCDEF+-.RDVLPSENIHBOK" + bytes(range(256))

    def blast(port: serial.Serial) -> sp.Reply:
        for _ in range(300):
            port.write(bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 40))))
        port.write(b"\r\n")
        port.write(sp.encode_frame(4242, ["RD", "B"]))
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # skip the error replies the noise earned
            line = port.read_until(b"\r\n")
            try:
                frame = sp.decode_frame(line)
            except sp.SerialProtocolError:
                continue
            if frame.seq == 4242:
                return sp.parse_reply(frame)
        raise AssertionError("no reply to the valid request after the noise")

    with serial.Serial(rig.server.path, timeout=1.0) as port:
        reply = await asyncio.to_thread(blast, port)
    assert reply.seq == 4242 and reply.ok and len(reply.reports) == 2
    assert rig.mount.azimuth.true_position_deg == pytest.approx(180.0, abs=1e-3)


_commands = st.one_of(
    st.tuples(st.just("vel"), st.floats(-10.0, 10.0)),
    st.tuples(st.just("pos"), st.floats(-1e4, 1e4), st.floats(1e-3, 50.0)),
    st.tuples(st.sampled_from(["stop", "enable", "disable", "reset", "read"])),
    st.tuples(st.just("wait"), st.floats(0.1, 30.0)),
)


@pytest.mark.slow
@hypothesis.settings(max_examples=12, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.too_slow])
@given(st.floats(-270.0, 270.0), st.floats(-25.0, 25.0),
       st.lists(st.tuples(st.sampled_from(["azimuth", "elevation"]), _commands),
                min_size=1, max_size=25))
def test_random_command_sequences_over_the_pty_stay_inside_hard_limits(az0_deg, el0_deg,
                                                                       program):
    sim_settings = config.load(config.DEFAULT_CONFIG)

    async def scenario() -> SimMount:
        mount = SimMount(sim_settings, azimuth_deg=az0_deg, elevation_deg=el0_deg)
        server = start_pty_server(mount)
        clock = SimClock(T0_S)
        axes = make_serial_axes(_with_port(sim_settings, server.path), clock)
        try:
            for ax in axes.values():
                await ax.connect()
                await ax.enable()
            for name, (op, *args) in program:
                ax = axes[name]
                if op == "vel":
                    await ax.command_velocity(args[0])
                elif op == "pos":
                    await ax.command_position(args[0], args[1])
                elif op == "wait":
                    for _ in range(round(args[0] / 0.5)):
                        mount.step(0.5)
                        for other in axes.values():
                            await other.read()
                else:
                    await getattr(ax, op)()
                assert ax.last_command_condition in (Condition.OK, Condition.PROTOCOL_EXCEPTION)
            for _ in range(120):  # let every motion finish, still polling
                mount.step(0.5)
                for other in axes.values():
                    assert (await other.read()).fresh
        finally:
            for ax in axes.values():
                await ax.close()
            server.stop()
        return mount

    mount = asyncio.run(scenario())
    for axis in mount.axes.values():
        assert axis.hard_low_deg <= axis.min_true_deg
        assert axis.max_true_deg <= axis.hard_high_deg
