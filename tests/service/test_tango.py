"""The Tango device server ``HelioTracker`` against the real daemon on the simulator.

PyTango's ``DeviceTestContext`` runs the device in its own process without a Tango
database; the tests talk to it with a real ``DeviceProxy``.  The daemon runs as
``tracker daemon`` over Modbus TCP to a ``tracker simulate`` process
(tests.facility_rig); "nothing moves" is checked on the simulator's own axis record.
The order matters: tracking, stop, park, then a drive fault (the module's last state).
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import tomllib

import httpx
import pytest

tango = pytest.importorskip("tango")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from tango.test_context import DeviceTestContext  # noqa: E402

from tests.support.daemon import TRACKER, free_port  # noqa: E402
from tests.support.facility_rig import FacilityRig  # noqa: E402
from tests.support.toml_dump import dump_toml  # noqa: E402
from tracker.service import facility_model as fm  # noqa: E402
from tracker.service.tango_device import HelioTracker  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.network]

DEVICE = "helio/tracker/1"
#: The simulator's encoder resolution is 0.5 arcsec: a still axis reads the same to 1e-3 deg.
STILL_DEG = 1e-3


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    r = FacilityRig(tmp_path_factory.mktemp("tango"), facility={"tango_port": free_port()})
    yield r
    r.close()


@pytest.fixture(scope="module")
def proxy(rig):
    ctx = DeviceTestContext(HelioTracker, device_name=DEVICE, process=True, timeout=60, debug=0,
                            properties={"ConfigFile": str(rig.config_path),
                                        "ApiUrl": rig.d.url})
    with ctx as p:
        p.set_timeout_millis(10000)
        deadline = time.monotonic() + 20
        while p.state() == tango.DevState.UNKNOWN:
            assert time.monotonic() < deadline, p.status()
            time.sleep(0.1)
        yield p


def audit_rows(rig, command: str) -> list[dict]:
    events = httpx.get(f"{rig.d.url}/api/v1/events", params={"limit": 1000}).json()
    return [e for e in events if e["kind"] == "command" and e["data"].get("command") == command]


def assert_still(rig, seconds: float = 1.0) -> None:
    before = rig.truth()
    time.sleep(seconds)
    after = rig.truth()
    for axis in ("azimuth", "elevation"):
        assert abs(after[axis] - before[axis]) < STILL_DEG, (axis, before, after)


def test_tracker_tango_command_serves_on_loopback_only(rig):
    """``tracker tango --nodb``: the device answers a DeviceProxy; every socket it listens on
    is a loopback address (facility.tango_host, allow_remote false)."""
    psutil = pytest.importorskip("psutil")
    port = rig.settings.facility.tango_port
    log_path = rig.tmp / "tango-cli.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([TRACKER, "tango", "--config", str(rig.config_path), "--nodb",
                                 "--api-url", rig.d.url], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "Ready to accept request" not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        dev = tango.DeviceProxy(f"tango://127.0.0.1:{port}/{DEVICE}#dbase=no")
        deadline = time.monotonic() + 10
        while dev.state() == tango.DevState.UNKNOWN:
            assert time.monotonic() < deadline, dev.status()
            time.sleep(0.1)
        assert dev.read_attribute("TrackerState").value == rig.d.status()["state"]
        listening = [c.laddr for c in psutil.Process(proc.pid).net_connections("inet")
                     if c.status == psutil.CONN_LISTEN]
        assert listening and all(a.ip in ("127.0.0.1", "::1") for a in listening), listening
        assert port in {a.port for a in listening}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_attributes_have_units_formats_and_alarm_limits(proxy, rig):
    s = rig.settings
    names = {a.lower() for a in proxy.get_attribute_list()}
    for q in fm.build_model(s):
        assert q.name.lower() in names
    az = proxy.get_attribute_config("AxisAzimuth")
    assert (az.unit, az.format) == ("deg", "%9.4f")
    assert float(az.alarms.min_alarm) == s.envelope.azimuth_min_deg == -270.0
    assert float(az.alarms.max_alarm) == s.envelope.azimuth_max_deg == 270.0
    el = proxy.get_attribute_config("AxisElevation")
    assert (float(el.alarms.min_alarm), float(el.alarms.max_alarm)) == (-25.0, 25.0)
    err = proxy.get_attribute_config("PointingError")
    assert err.unit == "arcsec"
    assert float(err.alarms.max_warning) == s.tracking.on_sun_tolerance_arcsec == 36.0
    assert float(err.alarms.max_alarm) == s.tracking.following_error_limit_arcsec
    wind = proxy.get_attribute_config("WindSpeed")
    assert (wind.unit, float(wind.alarms.max_alarm)) == ("m/s", s.weather.wind_stow_m_s)


def test_reads_match_the_api_status_while_tracking(proxy, rig):
    rig.d.wait_for(lambda s: s["state"] == "tracking" and s["on_sun"], 90.0, "tracking")
    time.sleep(0.3)
    status = rig.d.status()
    values = {a.name: a for a in proxy.read_attributes(
        ["SunAzimuth", "SunElevation", "MountAzimuth", "MountElevation", "OnSun",
         "TrackerState", "AutoTracking", "WindowStart", "WindowEnd", "ClockHealth",
         "PointingError", "WindSpeed"])}
    # The Sun moves < 0.005 deg/s: two reads 0.3 s apart agree to 0.01 deg.
    assert values["SunAzimuth"].value == pytest.approx(status["sun"]["azimuth_deg"], abs=0.01)
    assert values["SunElevation"].value == pytest.approx(status["sun"]["elevation_deg"], abs=0.01)
    assert values["MountAzimuth"].value == pytest.approx(status["pointing"]["az_deg"], abs=0.01)
    assert values["OnSun"].value is True
    assert values["TrackerState"].value == "tracking"
    assert values["AutoTracking"].value is True
    assert values["WindowStart"].value == status["current_window"]["start_utc"]
    assert values["WindowEnd"].value == status["current_window"]["end_utc"]
    assert values["ClockHealth"].value == "ok"
    assert values["PointingError"].value < 36.0
    assert values["PointingError"].quality == tango.AttrQuality.ATTR_VALID
    # The wind comes from the site's anemometer (Modbus TCP here), like every drive kind.
    assert values["WindSpeed"].quality == tango.AttrQuality.ATTR_VALID
    assert 0.0 <= values["WindSpeed"].value < 30.0
    assert proxy.state() == tango.DevState.ON


def test_change_event_within_200_ms_of_a_state_change(proxy, rig):
    """A change made by another client (the API) reaches a Tango subscriber in < 200 ms."""
    got: list[tuple[float, str]] = []
    arrived = threading.Event()

    def on_event(ev) -> None:
        if ev.err or ev.attr_value is None:
            return
        got.append((time.monotonic(), ev.attr_value.value))
        if ev.attr_value.value == "idle":
            arrived.set()

    eid = proxy.subscribe_event("TrackerState", tango.EventType.CHANGE_EVENT, on_event)
    try:
        time.sleep(0.5)
        assert got and got[0][1] == "tracking"  # the current value on subscription
        r = rig.d.post("track", {"on": False})
        t_changed = time.monotonic()            # the engine has changed when the API answers
        assert r.status_code == 200, r.text
        assert arrived.wait(2.0), got
        latency_s = next(t for t, v in got if v == "idle") - t_changed
        print(f"Tango change event {latency_s * 1000:.0f} ms after the engine's change")
        assert latency_s < 0.2
    finally:
        proxy.unsubscribe_event(eid)
    assert proxy.state() == tango.DevState.STANDBY


def test_state_events_follow_the_daemons_stream_not_the_poll_period(rig, tmp_path):
    """With the status poll slowed to one read in 5 s, state changes still reach a
    subscriber within a second or two: the device follows the daemon's event stream."""
    data = tomllib.loads(rig.config_path.read_text())
    data["facility"].update(poll_hz=0.2, tango_port=free_port())
    slow = tmp_path / "slow-poll.toml"
    slow.write_text(dump_toml(data))
    got: list[str] = []
    seen = threading.Condition()

    def on_event(ev) -> None:
        if not ev.err and ev.attr_value is not None:
            with seen:
                got.append(ev.attr_value.value)
                seen.notify_all()

    ctx = DeviceTestContext(HelioTracker, device_name="helio/tracker/2", process=True,
                            timeout=60, debug=0, properties={"ConfigFile": str(slow),
                                                             "ApiUrl": rig.d.url})
    with ctx as p:
        eid = p.subscribe_event("TrackerState", tango.EventType.CHANGE_EVENT, on_event)
        try:
            with seen:
                assert seen.wait_for(lambda: got, 10.0), "no first event"
            for on, states in ((True, {"acquiring", "tracking"}), (False, {"idle"})):
                with seen:
                    got.clear()
                assert rig.d.post("track", {"on": on}).status_code == 200
                with seen:
                    assert seen.wait_for(lambda s=states: s & set(got), 2.5), (on, got)
        finally:
            p.unsubscribe_event(eid)


def test_commands_accepted_and_audited_with_tango_source(proxy, rig):
    proxy.TrackStart()
    rig.d.wait_for(lambda s: s["auto_tracking"] and s["state"] in ("tracking", "slewing"),
                   30.0, "tracking again")
    rows = audit_rows(rig, "track")
    assert rows[-1]["source"].startswith(f"tango:{DEVICE}@")
    assert rows[-1]["source"].endswith("via api:127.0.0.1")
    assert rows[-1]["data"]["ok"] is True
    proxy.Stop()
    st = rig.d.wait_for(lambda s: s["state"] == "idle" and not s["slewing"], 20.0, "stopped")
    assert st["auto_tracking"] is False
    assert audit_rows(rig, "stop")[-1]["source"].startswith("tango:")


def test_goto_outside_envelope_refused_with_the_limit_and_nothing_moves(proxy, rig):
    rig.d.wait_for(lambda s: s["state"] == "idle" and not s["slewing"], 20.0, "idle")
    time.sleep(1.0)
    before = rig.truth()
    with pytest.raises(tango.DevFailed) as exc:
        proxy.Goto([180.0, 60.0])
    err = exc.value.args[0]
    assert err.reason == "HelioTracker_Refused"
    assert "25.0" in err.desc  # the envelope's elevation limit, named
    row = audit_rows(rig, "goto")[-1]
    assert row["data"]["ok"] is False and row["source"].startswith("tango:")
    for bad in ([1.0], [1.0, 2.0, 3.0], [float("nan"), 0.0], [0.0, float("inf")]):
        with pytest.raises(tango.DevFailed, match="Goto"):
            proxy.Goto(bad)
    time.sleep(0.5)
    after = rig.truth()
    assert abs(after["azimuth"] - before["azimuth"]) < STILL_DEG
    assert abs(after["elevation"] - before["elevation"]) < STILL_DEG


def test_parked_mount_does_not_move_through_tango(proxy, rig):
    proxy.Park()
    rig.d.wait_for(lambda s: s["state"] == "parked", 60.0, "parked")
    time.sleep(0.5)  # the device's snapshot says parked
    assert proxy.read_attribute("AtPark").value is True
    before = rig.truth()
    for name, args in (("TrackStart", ()), ("Goto", ([rig.d.status()["sun"]["azimuth_deg"],
                                                      0.0],)), ("Stow", ())):
        with pytest.raises(tango.DevFailed, match="parked"):
            proxy.command_inout(name, *args)
    time.sleep(1.0)
    assert rig.d.status()["state"] == "parked"
    after = rig.truth()
    assert abs(after["azimuth"] - before["azimuth"]) < STILL_DEG
    assert abs(after["elevation"] - before["elevation"]) < STILL_DEG
    proxy.Unpark()
    rig.d.wait_for(lambda s: s["state"] == "idle", 10.0, "unparked, holding")


def test_faulted_mount_does_not_move_and_state_is_fault(proxy, rig):
    got: list[tango.DevState] = []
    eid = proxy.subscribe_event("State", tango.EventType.CHANGE_EVENT,
                                lambda ev: got.append(ev.attr_value.value)
                                if not ev.err and ev.attr_value else None)
    try:
        rig.sim_command("trip azimuth overcurrent")
        rig.d.wait_for(lambda s: s["state"] == "fault", 20.0, "fault")
        deadline = time.monotonic() + 2.0
        while tango.DevState.FAULT not in got:
            assert time.monotonic() < deadline, got
            time.sleep(0.05)
    finally:
        proxy.unsubscribe_event(eid)
    assert proxy.state() == tango.DevState.FAULT
    assert "overcurrent" in proxy.read_attribute("Faults").value
    before = rig.truth()
    for name, args in (("TrackStart", ()), ("Goto", ([180.0, 0.0],)), ("Stow", ()),
                       ("Park", ())):
        with pytest.raises(tango.DevFailed, match="HelioTracker_Refused"):
            proxy.command_inout(name, *args)
    time.sleep(1.0)
    after = rig.truth()
    assert abs(after["azimuth"] - before["azimuth"]) < STILL_DEG
    assert abs(after["elevation"] - before["elevation"]) < STILL_DEG


_numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                     st.floats(-1e3, 1e3), st.integers(-10**6, 10**6).map(float))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=st.sampled_from(["TrackStart", "TrackStop", "Park", "Unpark", "Stow", "Stop",
                             "Goto"]),
       values=st.lists(_numbers, max_size=5))
def test_fuzz_commands_nothing_crashes_nothing_moves(proxy, rig, name, values):
    """Faulted mount (the previous test): any command with any numbers moves nothing."""
    if not hasattr(test_fuzz_commands_nothing_crashes_nothing_moves, "before"):
        assert rig.d.status()["state"] == "fault"
        test_fuzz_commands_nothing_crashes_nothing_moves.before = rig.truth()
    try:
        if name == "Goto":
            proxy.Goto(values)
        else:
            proxy.command_inout(name)
    except tango.DevFailed as exc:
        assert exc.args[0].reason in ("HelioTracker_Refused", "API_IncompatibleCmdArgumentType"
                                      ) or "Goto" in exc.args[0].desc, exc
    assert proxy.state() == tango.DevState.FAULT


def test_after_fuzz_the_mount_has_not_moved(rig, proxy):
    before = getattr(test_fuzz_commands_nothing_crashes_nothing_moves, "before", None)
    assert before is not None
    after = rig.truth()
    assert abs(after["azimuth"] - before["azimuth"]) < STILL_DEG
    assert abs(after["elevation"] - before["elevation"]) < STILL_DEG
    assert rig.d.status()["state"] == "fault"
