"""OPC UA drives against the simulated drive PLC: a real asyncua server on loopback.

Nothing is mocked: ``simulator.opcua_server`` hosts the ``SimMount`` behind a real
OPC UA server and ``drivers.opcua`` talks to it through the kernel's TCP stack.
The mount is stepped explicitly (simulated time), so the figures are deterministic.
Fault cases use the server's own means: closing its connections, pausing its
reading (a PLC that stops answering), writing NaN or wrong-typed variants into its
nodes.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import Client, ua
from cryptography.x509.oid import ExtendedKeyUsageOID

from drivers.opcua import APPLICATION_URI, OpcUaAxis, make_opcua_axes
from drivers.opcua_map import load_map, parse_map
from simulator.mount import SimMount
from simulator.opcua_server import ServerSecurity, start_opcua_server
from tests.support import CONFIG_DIR
from tracker import config
from tracker.clock import SimClock
from tracker.errors import ConfigError
from tracker.mount.axis import Axis, Condition
from tracker.service.compose import make_axes

# One server for the module (starting asyncua's address space costs seconds); every test
# gets a new simulated mount behind it and a new client session.
pytestmark = pytest.mark.network
#: The async tests run on the module's event loop, the one the shared server lives on.
on_module_loop = pytest.mark.asyncio(loop_scope="module")

TIMEOUT_S = 0.25


@pytest.fixture
def ou_settings() -> config.Settings:
    return config.load(CONFIG_DIR / "sim-opcua.toml")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server():
    """The simulated drive PLC on a free loopback port, for the whole module."""
    settings = config.load(CONFIG_DIR / "sim-opcua.toml")
    handle, url = await start_opcua_server(SimMount(settings))
    yield handle, url
    await handle.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def plc(ou_settings, server):
    """(mount, server handle, axes, clock): a new mount, both axes over one new session."""
    handle, url = server
    mount = SimMount(ou_settings)
    handle.attach(mount)
    clock = SimClock(1.8e9)
    axes = make_opcua_axes(ou_settings, clock.now_s, url=url)
    await axes["azimuth"].connect()
    yield mount, handle, axes, clock
    await axes["azimuth"].close()
    handle.thaw()
    handle.restore()


async def read_both(axes):
    return await asyncio.gather(axes["azimuth"].read(), axes["elevation"].read())


async def cycle(mount, clock, axes, v_az: float, v_el: float, dt: float = 0.1) -> None:
    """One control cycle as the engine does it: both reads together, both commands together."""
    await read_both(axes)
    await asyncio.gather(axes["azimuth"].command_velocity(v_az),
                         axes["elevation"].command_velocity(v_el))
    mount.step(dt)
    clock.advance(dt)


# ---------------------------------------------------------------- node map
def test_default_map_loads_and_names_every_node():
    m = load_map()
    assert m.azimuth.position == "ns=2;s=Azimuth.Position"
    assert m.elevation.heartbeat == "ns=2;s=Elevation.Heartbeat"
    assert m.variant_type("heartbeat") is ua.VariantType.UInt16
    assert m.heartbeat_modulus == 65536


@pytest.mark.parametrize("axis, key, value, message", [
    ("azimuth", "position", "Azimuth.Position", "azimuth.position"),
    ("elevation", "mode", "ns=2;x=7", "elevation.mode"),
    ("elevation", "heartbeat", "ns=2;s=Azimuth.Heartbeat", "same node"),
])
def test_malformed_or_duplicate_node_ids_are_config_errors(axis, key, value, message):
    data = load_map().model_dump()
    data[axis][key] = value
    with pytest.raises(ConfigError) as err:
        parse_map(data, "my_map.toml")
    assert message in str(err.value) and "my_map.toml" in str(err.value)


def test_compose_builds_opcua_axes_and_config_checks_the_map_file(ou_settings, tmp_path):
    axes = make_axes(ou_settings, clock=SimClock(0.0))
    assert set(axes) == {"azimuth", "elevation"}
    assert all(isinstance(a, OpcUaAxis) and isinstance(a, Axis) for a in axes.values())
    assert axes["azimuth"].session is axes["elevation"].session
    text = (CONFIG_DIR / "sim-opcua.toml").read_text().replace(
        'node_map = "opcua_map.toml"', 'node_map = "missing.toml"')
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(ConfigError, match="drives.opcua.node_map"):
        config.load(tmp_path / "c.toml")
    bad = text.replace('security_policy = "None"', 'security_policy = "Basic256Sha256"')
    (tmp_path / "d.toml").write_text(bad)
    with pytest.raises(ConfigError, match="needs certificate and private_key"):
        config.load(tmp_path / "d.toml")


# ---------------------------------------------------------------- read / command / stop
@on_module_loop
async def test_read_command_and_stop_over_one_session(plc):
    mount, handle, axes, clock = plc
    az, el = await read_both(axes)
    assert az.ok and el.ok and az.fresh
    assert az.position_deg == pytest.approx(mount.azimuth.encoder_deg, abs=1e-12)
    assert el.position_deg == pytest.approx(mount.elevation.encoder_deg, abs=1e-12)
    assert not az.enabled
    await asyncio.gather(*(a.enable() for a in axes.values()))
    az0, el0 = mount.azimuth.true_position_deg, mount.elevation.true_position_deg
    session = axes["azimuth"].session
    reads0, writes0 = session.reads, session.writes
    for _ in range(100):                                     # 10 s at 10 Hz
        await cycle(mount, clock, axes, 0.2, -0.1)
    # one Read and one Write request per cycle for both axes
    assert session.reads - reads0 == 100 and session.writes - writes0 == 100
    az, el = await read_both(axes)
    assert az.enabled and az.moving and az.velocity_deg_s == pytest.approx(0.2, abs=1e-3)
    assert el.velocity_deg_s == pytest.approx(-0.1, abs=1e-3)
    # accelerations 0.06 and 0.03 deg/s^2 (0.05, 0.025 x 1.2 headroom): ramps of 3.33 s
    # cost v*t_ramp/2 of distance: 2.0 - 0.333 = 1.667 deg and -(1.0 - 0.167) = -0.833 deg
    assert mount.azimuth.true_position_deg - az0 == pytest.approx(1.667, abs=0.02)
    assert mount.elevation.true_position_deg - el0 == pytest.approx(-0.833, abs=0.02)
    assert az.position_deg == pytest.approx(mount.azimuth.encoder_deg, abs=1e-12)
    await asyncio.gather(*(a.stop() for a in axes.values()))
    for _ in range(60):
        await asyncio.gather(*(a.heartbeat() for a in axes.values()))
        mount.step(0.1)
        clock.advance(0.1)
    az, el = await read_both(axes)
    # holding against the simulated wind: velocity within the standstill threshold
    assert abs(az.velocity_deg_s) < 1e-3 and abs(el.velocity_deg_s) < 1e-3
    held = mount.azimuth.true_position_deg
    await axes["azimuth"].command_position(held - 0.5, 0.1)
    for _ in range(150):
        await axes["azimuth"].heartbeat()
        mount.step(0.1)
        clock.advance(0.1)
    assert (await axes["azimuth"].read()).position_deg == pytest.approx(held - 0.5, abs=1e-3)
    await asyncio.gather(*(a.disable() for a in axes.values()))
    mount.step(1.0)
    az, el = await read_both(axes)
    assert not az.enabled and not el.enabled
    assert mount.azimuth.braked and mount.elevation.braked


@on_module_loop
async def test_every_command_feeds_the_watchdog_and_silence_trips_it(plc):
    mount, handle, axes, clock = plc
    await asyncio.gather(*(a.enable() for a in axes.values()))
    hb0 = handle.drives["azimuth"].heartbeats
    for _ in range(30):                    # 3 s, longer than the 1 s watchdog
        await cycle(mount, clock, axes, 0.05, 0.0)
    assert handle.drives["azimuth"].heartbeats - hb0 == 30
    assert handle.drives["azimuth"].cmd["heartbeat"] == axes["azimuth"].session._heartbeat["azimuth"]
    for _ in range(30):                    # heartbeat-only writes keep it fed as well
        await asyncio.gather(*(a.heartbeat() for a in axes.values()))
        mount.step(0.1)
    az, el = await read_both(axes)
    assert az.ok and el.ok
    mount.step(1.2)                        # the controller goes silent
    az, el = await read_both(axes)
    assert az.condition is Condition.WATCHDOG and el.condition is Condition.WATCHDOG
    assert az.fault_code == 7


@on_module_loop
async def test_a_non_finite_command_is_refused_and_the_axis_stops(plc):
    mount, handle, axes, clock = plc
    await asyncio.gather(*(a.enable() for a in axes.values()))
    for _ in range(20):
        await cycle(mount, clock, axes, 0.1, 0.0)
    await axes["azimuth"].command_velocity(float("nan"))
    assert handle.drives["azimuth"].cmd["mode"] == 3                 # stop, not NaN
    assert handle.drives["azimuth"].cmd["velocity_setpoint"] == 0.0
    az = await axes["azimuth"].read()
    assert az.condition is Condition.PROTOCOL_EXCEPTION and "non-finite" in az.fault_text
    await axes["azimuth"].command_position(float("inf"), 0.1)
    assert math.isfinite(handle.drives["azimuth"].cmd["position_setpoint"])  # never written
    assert "non-finite target" in (await axes["azimuth"].read()).fault_text
    for _ in range(40):
        await asyncio.gather(*(a.heartbeat() for a in axes.values()))
        mount.step(0.1)
    assert abs(mount.azimuth.velocity_deg_s) < 1e-3


# ---------------------------------------------------------------- lost session
@on_module_loop
async def test_lost_session_reports_link_down_and_reconnects_without_motion(plc):
    mount, handle, axes, clock = plc
    await asyncio.gather(*(a.enable() for a in axes.values()))
    for _ in range(40):
        await cycle(mount, clock, axes, 0.3, 0.1)
    last_az = (await axes["azimuth"].read()).position_deg
    assert handle.drop_sessions() == 1
    await asyncio.sleep(0.05)
    az, el = await read_both(axes)
    assert az.condition is Condition.LINK_DOWN and el.condition is Condition.LINK_DOWN
    assert not az.fresh and az.position_deg == last_az
    # a new session is opened in the background; its first act is zero velocity and stop
    for _ in range(200):
        az, el = await read_both(axes)
        if az.ok:
            break
        await asyncio.sleep(0.05)
    assert az.ok and el.ok and az.fresh
    assert axes["azimuth"].session.connects == 2
    for name in ("azimuth", "elevation"):
        assert handle.drives[name].cmd["mode"] == 3          # stop
        assert handle.drives[name].cmd["velocity_setpoint"] == 0.0
    # nothing is commanded by the engine now: the drives ramp to zero and stay there
    for _ in range(100):
        await asyncio.gather(*(a.heartbeat() for a in axes.values()))
        mount.step(0.1)
    p_az, p_el = mount.azimuth.true_position_deg, mount.elevation.true_position_deg
    for _ in range(100):
        await asyncio.gather(*(a.heartbeat() for a in axes.values()))
        mount.step(0.1)
    # holding against the simulated wind: still to far below one encoder count (0.5")
    assert abs(mount.azimuth.true_position_deg - p_az) * 3600.0 < 0.05
    assert abs(mount.elevation.true_position_deg - p_el) * 3600.0 < 0.05
    az, el = await read_both(axes)
    assert az.ok and abs(az.velocity_deg_s) < 1e-3 and abs(el.velocity_deg_s) < 1e-3


@on_module_loop
async def test_lost_session_of_a_parked_mount_moves_nothing(plc):
    mount, handle, axes, clock = plc
    # The motors, on their brakes (the magnet flexes a few milli-arcseconds in the wind).
    p0 = (mount.azimuth.motor_deg, mount.elevation.motor_deg)
    await read_both(axes)
    for _ in range(3):
        handle.drop_sessions()
        await asyncio.sleep(0.02)
        for _ in range(200):
            az, el = await read_both(axes)
            if az.ok:
                break
            await asyncio.sleep(0.05)
        mount.step(1.0)
    az, el = await read_both(axes)
    assert az.ok and not az.enabled and not el.enabled
    assert (mount.azimuth.motor_deg, mount.elevation.motor_deg) == p0


@on_module_loop
async def test_no_server_is_link_down_not_an_exception(ou_settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                 # nobody listens here now
    clock = SimClock(1.8e9)
    axes = make_opcua_axes(ou_settings, clock.now_s, url=f"opc.tcp://127.0.0.1:{port}/")
    await axes["azimuth"].connect()
    az = await axes["azimuth"].read()
    assert az.condition is Condition.LINK_DOWN and not az.fresh and math.isnan(az.position_deg)
    await axes["azimuth"].command_velocity(0.1)   # reported by the next read, never raised
    assert (await axes["elevation"].read()).condition is Condition.LINK_DOWN
    await axes["azimuth"].close()


# ---------------------------------------------------------------- bad node id
@pytest.mark.parametrize("key, node, reason", [
    ("position", "ns=2;s=Azimuth.Positoin", "BadNodeIdUnknown"),
    ("mode", "i=2258", "not writable"),        # Server_ServerStatus_CurrentTime: read-only
])
@on_module_loop
async def test_bad_node_id_is_a_config_error_at_connect(ou_settings, server, key, node, reason):
    handle, url = server
    handle.attach(SimMount(ou_settings))
    data = load_map().model_dump()
    data["azimuth"][key] = node
    axes = make_opcua_axes(ou_settings, SimClock(0.0).now_s, url=url, nodemap=parse_map(data))
    with pytest.raises(ConfigError) as err:
        await axes["azimuth"].connect()
    text = str(err.value)
    assert f"azimuth.{key}" in text and node in text and reason in text
    assert handle.drives["azimuth"].commands == 0       # nothing was commanded
    assert handle.drives["azimuth"].heartbeats == 0
    await axes["azimuth"].close()


# ---------------------------------------------------------------- garbage values
@pytest.mark.parametrize("key, value, vtype", [
    ("position", float("nan"), ua.VariantType.Double),
    ("position", float("inf"), ua.VariantType.Double),
    ("position", True, ua.VariantType.Boolean),
    ("velocity", "fast", ua.VariantType.String),
    ("status_word", 3.5, ua.VariantType.Double),
    ("fault_code", -1, ua.VariantType.Int16),
])
@on_module_loop
async def test_garbage_in_a_node_is_a_garbled_condition(plc, key, value, vtype):
    mount, handle, axes, clock = plc
    good = await axes["azimuth"].read()
    await handle.set_raw("azimuth", key, value, vtype)
    az, el = await read_both(axes)
    assert az.condition is Condition.GARBLED_FRAME and not az.fresh
    assert key in az.fault_text
    assert az.position_deg == good.position_deg                # the last good value
    assert el.ok                                               # the other axis is unaffected
    handle.restore("azimuth", key)
    assert (await axes["azimuth"].read()).ok


@on_module_loop
async def test_a_bad_status_code_for_a_node_is_a_protocol_exception(plc):
    mount, handle, axes, clock = plc
    nid = ua.NodeId.from_string(handle.map.elevation.fault_code)
    await handle.server.write_attribute_value(
        nid, ua.DataValue(StatusCode=ua.StatusCode(ua.StatusCodes.BadOutOfService)))
    el = await axes["elevation"].read()
    assert el.condition is Condition.PROTOCOL_EXCEPTION and "BadOutOfService" in el.fault_text
    handle.restore()
    assert (await axes["elevation"].read()).ok


# ---------------------------------------------------------------- a PLC that stops answering
@on_module_loop
async def test_a_plc_that_stops_answering_is_a_timeout_within_the_timeout(plc):
    mount, handle, axes, clock = plc
    await asyncio.gather(*(a.enable() for a in axes.values()))
    assert (await axes["azimuth"].read()).ok
    handle.freeze()
    t0 = time.perf_counter()
    az, el = await read_both(axes)
    waited_s = time.perf_counter() - t0
    assert az.condition is Condition.TIMEOUT and el.condition is Condition.TIMEOUT
    assert not az.fresh
    assert TIMEOUT_S * 0.9 <= waited_s <= TIMEOUT_S + 0.15
    t0 = time.perf_counter()
    await asyncio.gather(*(a.command_velocity(0.1) for a in axes.values()))   # never raises
    assert time.perf_counter() - t0 <= TIMEOUT_S + 0.15
    # every later cycle is bounded too (TIMEOUT or, once the session is given up, LINK_DOWN
    # while a new one is tried in the background)
    seen = set()
    for _ in range(12):
        t0 = time.perf_counter()
        az = await axes["azimuth"].read()
        seen.add(az.condition)
        assert az.condition in (Condition.TIMEOUT, Condition.LINK_DOWN)
        assert time.perf_counter() - t0 <= TIMEOUT_S + 0.15
    assert Condition.LINK_DOWN in seen          # the dead session was given up
    handle.thaw()
    for _ in range(200):
        az, el = await read_both(axes)
        if az.ok and el.ok:
            break
        await asyncio.sleep(0.05)
    assert az.ok and el.ok


# ---------------------------------------------------------------- security
async def _self_signed(tmp: Path, name: str, uri: str, use) -> tuple[Path, Path]:
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    key, cert = tmp / f"{name}-key.pem", tmp / f"{name}-cert.der"
    await setup_self_signed_certificate(key, cert, uri, socket.gethostname(), [use],
                                        {"commonName": name})
    return cert, key


@on_module_loop
async def test_basic256sha256_sign_and_encrypt_with_user_and_password(ou_settings, tmp_path):
    s_cert, s_key = await _self_signed(tmp_path, "plc", "urn:freeopcua:python:server",
                                       ExtendedKeyUsageOID.SERVER_AUTH)
    c_cert, c_key = await _self_signed(tmp_path, "tracker", APPLICATION_URI,
                                       ExtendedKeyUsageOID.CLIENT_AUTH)
    mount = SimMount(ou_settings)
    handle, url = await start_opcua_server(
        mount, security=ServerSecurity(certificate=s_cert, private_key=s_key,
                                       users={"tracker": "s3cret"}))
    try:
        # the server offers no unencrypted endpoint
        probe = Client(url, timeout=2.0)
        endpoints = await probe.connect_and_get_server_endpoints()
        assert {e.SecurityMode for e in endpoints} == {ua.MessageSecurityMode.SignAndEncrypt}
        (tmp_path / "pw").write_text("s3cret\n")
        (tmp_path / "bad").write_text("guess\n")
        base = ou_settings.drives.opcua.model_dump()
        for pw_file, want_ok in (("pw", True), ("bad", False)):
            ou = {**base, "endpoint_url": url, "security_policy": "Basic256Sha256",
                  "certificate": str(c_cert), "private_key": str(c_key),
                  "user": "tracker", "password_file": str(tmp_path / pw_file), "timeout_s": 1.0}
            settings = ou_settings.model_copy(update={"drives": ou_settings.drives.model_copy(
                update={"opcua": type(ou_settings.drives.opcua).model_validate(ou)})})
            axes = make_opcua_axes(settings, SimClock(0.0).now_s)
            await axes["azimuth"].connect()
            az = await axes["azimuth"].read()
            assert az.ok is want_ok, az.fault_text
            if want_ok:
                assert az.position_deg == pytest.approx(mount.azimuth.encoder_deg, abs=1e-12)
                assert axes["azimuth"].session._client.security_policy.Mode \
                    == ua.MessageSecurityMode.SignAndEncrypt
            else:
                assert az.condition is Condition.LINK_DOWN
            await axes["azimuth"].close()
        # an anonymous client without security gets nothing
        plain = make_opcua_axes(ou_settings, SimClock(0.0).now_s, url=url)
        await plain["azimuth"].connect()
        assert (await plain["azimuth"].read()).condition is Condition.LINK_DOWN
        await plain["azimuth"].close()
    finally:
        await handle.stop()


# ---------------------------------------------------------------- dry run
@on_module_loop
@pytest.mark.slow
async def test_dry_run_over_opcua_tracks_within_a_few_arcsec(ou_settings):
    from tests.support.rig import first_window
    from tracker.service import dryrun

    sim = config.load(CONFIG_DIR / "sim.toml")
    w = first_window(sim)
    report = await dryrun.run(sim, w.start_s - 300.0, 600.0, driver="opcua")
    assert report.driver == "opcua" and report.faults == 0, report.fault_events
    assert report.tracked_s >= 200.0
    assert report.rms_error_arcsec is not None and report.rms_error_arcsec <= 2.0
    assert report.max_error_arcsec <= 10.0


# ---------------------------------------------------------------- processes: simulate + daemon
def test_time_offset_allowed_only_with_a_loopback_plc(ou_settings):
    from tracker.service.daemon import time_offset_refusal

    assert time_offset_refusal(ou_settings, 3600.0) is None      # opc.tcp://127.0.0.1
    remote = ou_settings.model_copy(update={"drives": ou_settings.drives.model_copy(update={
        "opcua": ou_settings.drives.opcua.model_copy(
            update={"endpoint_url": "opc.tcp://drive-plc.example:4840/"})})})
    assert "refused" in time_offset_refusal(remote, 3600.0)


@pytest.mark.slow
def test_daemon_over_opcua_with_simulator_process(tmp_path):
    """The mount behind ``tracker simulate --protocol opcua`` in its own process, the daemon
    over OPC UA to it: it reaches the Sun and stops cleanly on SIGTERM."""
    import shutil
    import signal

    from tests.support.daemon import DaemonProcess, SimulatorProcess, free_port, make_config

    port = free_port()
    shutil.copy(CONFIG_DIR / "opcua_map.toml", tmp_path / "opcua_map.toml")
    path, offset = make_config(tmp_path, base="sim-opcua.toml")
    path.write_text(path.read_text().replace("127.0.0.1:4840", f"127.0.0.1:{port}"))
    assert config.load(path).drives.opcua.endpoint_url == f"opc.tcp://127.0.0.1:{port}/"
    sim = SimulatorProcess(path, offset_s=offset, ready_text=f"opcua opc.tcp://127.0.0.1:{port}/",
                           extra=("--protocol", "opcua", "--no-stdin-commands"),
                           timeout_s=120.0)
    try:
        d = DaemonProcess(path, time_offset_s=offset).wait_ready()
        try:
            st = d.wait_for(lambda s: s["state"] == "tracking" and s["on_sun"], 90.0,
                            "tracking over OPC UA")
            assert st["pointing_error_arcsec"] < d.settings.tracking.on_sun_tolerance_arcsec
            assert d.stop(signal.SIGTERM) == 0, d.output()
        finally:
            d.kill()
        assert sim.alive()   # the PLC outlives the daemon
    finally:
        assert sim.stop(30.0) == 0, sim.output()


@pytest.mark.slow
def test_dry_run_cli_over_opcua(tmp_path):
    """``tracker dry-run --driver opcua`` end to end (a parked quarter hour: no window)."""
    import json

    from click.testing import CliRunner

    from tracker.cli.main import main as cli_main

    report = tmp_path / "r.json"
    result = CliRunner().invoke(cli_main, [
        "dry-run", "--driver", "opcua", "--start", "2026-03-20T00:00:00Z", "--hours", "0.25",
        "--no-progress", "--report", str(report)])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["driver"] == "opcua" and data["faults"] == 0 and data["ticks"] > 0
    assert "driver opcua" in result.output
