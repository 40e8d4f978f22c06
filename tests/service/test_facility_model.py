"""The facility information model, the [facility] config, OPC UA users and the relay source.

Fast tests without servers; the servers themselves: tests/service/test_tango.py, test_opcua.py.
"""

from __future__ import annotations

import math

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker import config
from tracker.errors import ApiError, ConfigError
from tracker.service import facility_model as fm
from tracker.service.api import create_app

# --------------------------------------------------------------------------- units


def test_unece_unit_ids_match_the_opc_foundation_table():
    # UNECE_to_OPCUA.csv (OPC Foundation, OPC UA Part 8 5.6.3): code -> UnitId.
    assert fm.unece_unit_id("DD") == 17476        # degree [unit of angle]
    assert fm.unece_unit_id("D62") == 4470322     # second [unit of angle]
    assert fm.unece_unit_id("MTS") == 5067859     # metre per second
    assert fm.unece_unit_id("SEC") == 5457219     # second [unit of time]
    assert fm.unece_unit_id("C81") == 4405297     # radian
    for bad in ("", "ABCD", "d-d", "°"):
        with pytest.raises(ValueError):
            fm.unece_unit_id(bad)


# --------------------------------------------------------------------------- model
STATUS = {
    "state": "tracking", "auto_tracking": True, "on_sun": True, "slewing": False,
    "at_park": False, "wind_m_s": 4.5, "wind_stowed": False, "fault_pending": False,
    "sun": {"azimuth_deg": 123.25, "elevation_deg": 10.5},
    "pointing": {"az_deg": 123.2501, "el_deg": 10.4999},
    "axes": {"azimuth": {"position_deg": 123.2501}, "elevation": {"position_deg": 10.4999}},
    "pointing_error_arcsec": 1.2, "faults": [],
    "current_window": {"start_utc": "2026-12-03T04:19:46Z", "end_utc": "2026-12-03T18:00:19Z"},
    "data_ages": {"leap_seconds_expired": False, "iers_days_left": 300,
                  "ut1_uncertainty_s": 0.003},
}


def test_model_reads_the_status_with_units(sim_settings):
    model = {q.name: q for q in fm.build_model(sim_settings)}
    assert model["SunAzimuth"].value(STATUS) == 123.25
    assert model["SunAzimuth"].unit is fm.DEG
    assert model["PointingError"].unit is fm.ARCSEC
    assert model["WindowEnd"].value(STATUS) == "2026-12-03T18:00:19Z"
    assert model["WindowEnd"].value({**STATUS, "current_window": None}) is None
    assert model["WindSpeed"].value({**STATUS, "wind_m_s": None}) is None
    assert model["PointingError"].value({**STATUS, "pointing_error_arcsec": float("nan")}) is None
    assert model["ClockHealth"].value(STATUS) == "ok"
    assert model["Faults"].value({**STATUS, "faults": [
        {"source": "azimuth", "condition": "overcurrent"}]}) == "azimuth: overcurrent"
    # A status without a key (an older daemon) gives no value, not an exception.
    assert model["UT1Uncertainty"].value({"state": "idle"}) is None


def test_alarm_limits_come_from_the_config(sim_settings):
    model = {q.name: q for q in fm.build_model(sim_settings)}
    el = model["AxisElevation"]
    assert (el.min_alarm, el.max_alarm) == (-25.0, 25.0)
    assert el.alarm_level(25.01) == "alarm" and el.alarm_level(24.99) == "ok"
    err = model["PointingError"]
    assert err.alarm_level(36.5) == "warning"
    assert err.alarm_level(sim_settings.tracking.following_error_limit_arcsec + 1) == "alarm"
    wind = model["WindSpeed"]
    assert wind.alarm_level(sim_settings.weather.wind_stow_m_s + 0.1) == "alarm"


@pytest.mark.parametrize(("status", "expected"), [
    (None, "UNKNOWN"),
    ({"state": "tracking"}, "ON"),
    ({"state": "waiting"}, "ON"),
    ({"state": "slewing"}, "MOVING"),
    ({"state": "parking"}, "MOVING"),
    ({"state": "stowing"}, "MOVING"),
    ({"state": "manual", "slewing": True}, "MOVING"),
    ({"state": "manual", "slewing": False}, "STANDBY"),
    ({"state": "idle"}, "STANDBY"),
    ({"state": "parked"}, "STANDBY"),
    ({"state": "stowed"}, "STANDBY"),
    ({"state": "off"}, "DISABLE"),
    ({"state": "fault"}, "FAULT"),
    ({"state": "estop"}, "FAULT"),
    ({"state": "stowed", "wind_stowed": True}, "ALARM"),
    ({"state": "tracking", "data_ages": {"leap_seconds_expired": True}}, "ALARM"),
    ({"state": "idle", "fault_pending": True}, "ALARM"),
    ({"state": "something new"}, "UNKNOWN"),
])
def test_tango_state_mapping(status, expected):
    assert fm.device_state(status) == expected


def test_clock_health():
    assert fm.clock_health(STATUS) == "ok"
    assert fm.clock_health({"data_ages": {"iers_days_left": -3}}) == "warning"
    assert fm.clock_health({"data_ages": {"ut1_uncertainty_s": 0.2}}) == "warning"
    assert fm.clock_health({"data_ages": {"leap_seconds_expired": True}}) == "alarm"


# --------------------------------------------------------------------------- commands
class RecordingClient:
    """Stands in for tracker.service.client.Client: records calls, or refuses like the API."""

    def __init__(self, refuse: ApiError | None = None) -> None:
        self.calls: list[tuple] = []
        self.refuse = refuse

    def _call(self, *args) -> dict:
        self.calls.append(args)
        if self.refuse is not None:
            raise self.refuse
        return {"ok": True, "state": "idle"}

    def track(self, on, *, source):
        return self._call("track", on, source)

    def goto(self, az_deg, el_deg, *, source):
        return self._call("goto", az_deg, el_deg, source)

    def command(self, name, *, source):
        return self._call(name, source)


def test_execute_maps_commands_to_the_api():
    c = RecordingClient()
    fm.execute(c, "TrackStart", source="tango:x")
    fm.execute(c, "TrackStop", source="tango:x")
    fm.execute(c, "Goto", [10, 2.5], source="tango:x")
    for name in ("Park", "Unpark", "Stow", "Stop", "Reset"):
        fm.execute(c, name, source="tango:x")
    assert c.calls == [("track", True, "tango:x"), ("track", False, "tango:x"),
                       ("goto", 10.0, 2.5, "tango:x"), ("park", "tango:x"),
                       ("unpark", "tango:x"), ("stow", "tango:x"), ("stop", "tango:x"),
                       ("reset", "tango:x")]


def test_refusals_carry_the_daemon_reason_and_status():
    c = RecordingClient(ApiError("refused: above the limit 25.0 deg", status=422))
    with pytest.raises(fm.CommandRefused, match="25.0") as exc:
        fm.execute(c, "Goto", [0.0, 60.0], source="opcua:op")
    assert exc.value.status == 422


@given(name=st.text(max_size=20), arg=st.one_of(
    st.none(), st.floats(), st.text(max_size=5),
    st.lists(st.one_of(st.floats(), st.integers(), st.booleans(), st.text(max_size=3),
                       st.none()), max_size=4)))
def test_fuzz_execute_sends_only_valid_commands(name, arg):
    c = RecordingClient()
    try:
        fm.execute(c, name, arg, source="tango:fuzz")
    except fm.CommandRefused:
        assert c.calls == []
        return
    assert name in fm.COMMANDS
    if name == "Goto":
        (_, az, el, _), = c.calls
        assert math.isfinite(az) and math.isfinite(el)
        assert len(arg) == 2 and not any(isinstance(x, bool) for x in arg)
    else:
        assert arg is None


def test_source_name_is_what_the_api_accepts():
    assert fm.source_name("tango", "helio/tracker/1@127.0.0.1#42") == \
        "tango:helio/tracker/1@127.0.0.1#42"
    assert fm.source_name("opcua", "a b\n'c") == "opcua:a_b__c"
    assert fm.source_name("opcua", "") == "opcua:unknown"


# --------------------------------------------------------------------------- config
def test_facility_defaults_are_loopback(sim_settings):
    f = sim_settings.facility
    assert (f.tango_host, f.opcua_host, f.allow_remote) == ("127.0.0.1", "127.0.0.1", False)
    assert f.opcua_security == "none" and f.poll_hz == 10.0


def _with_facility(sim_settings, **values) -> dict:
    data = sim_settings.model_dump(exclude={"source_path"})
    data["facility"] = {**data["facility"], **values}
    return data


def test_remote_addresses_need_allow_remote(sim_settings):
    with pytest.raises(ConfigError, match="facility.opcua_host = '0.0.0.0' is not a loopback"):
        config.parse(_with_facility(sim_settings, opcua_host="0.0.0.0"))
    with pytest.raises(ConfigError, match="tango_host"):
        config.parse(_with_facility(sim_settings, tango_host="192.168.1.5"))
    ok = config.parse(_with_facility(sim_settings, opcua_host="0.0.0.0", allow_remote=True))
    assert ok.facility.opcua_host == "0.0.0.0"


def test_encrypted_policy_needs_certificate_and_key(sim_settings):
    with pytest.raises(ConfigError, match="opcua_certificate"):
        config.parse(_with_facility(sim_settings, opcua_security="basic256sha256"))
    with pytest.raises(ConfigError, match="opcua_security"):
        config.parse(_with_facility(sim_settings, opcua_security="Basic128Rsa15"))
    with pytest.raises(ConfigError, match="poll_hz"):
        config.parse(_with_facility(sim_settings, poll_hz=0.0))
    with pytest.raises(ConfigError, match="tango_device"):
        config.parse(_with_facility(sim_settings, tango_device="not a device"))


# --------------------------------------------------------------------------- OPC UA users
def test_password_hash_and_users_file(tmp_path):
    from tracker.service.opcua_server import (
        PasswordUserManager,
        hash_password,
        load_users,
        verify_password,
    )

    h = hash_password("s3cret", iterations=1000)
    assert h.startswith("pbkdf2_sha256$1000$") and "s3cret" not in h
    assert verify_password("s3cret", h) and not verify_password("s3creT", h)
    assert not verify_password("s3cret", "plain text") and not verify_password("", h)
    with pytest.raises(ValueError):
        hash_password("")
    path = tmp_path / "users.toml"
    path.write_text(f'[users]\noperator = "{h}"\n')
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_users(path)
    path.chmod(0o600)
    users = load_users(path)
    manager = PasswordUserManager(users)
    assert manager.get_user(None, "operator", "s3cret").name == "operator"
    assert manager.get_user(None, "operator", "wrong") is None
    assert manager.get_user(None, "nobody", "s3cret") is None
    assert manager.get_user(None).name is None          # anonymous: read-only
    path.write_text('[users]\noperator = "s3cret"\n')
    with pytest.raises(ConfigError, match="pbkdf2_sha256"):
        load_users(path)


# --------------------------------------------------------------------------- relay source
class Backend:
    """The API's backend protocol, recording commands (no engine: the header is the subject)."""

    token = "t0ken"

    def __init__(self, settings) -> None:
        self.settings = settings
        self.commands: list[tuple[str, str]] = []

    def status(self) -> dict:
        return {}

    def status_json(self) -> bytes:
        return b"{}"

    def state(self) -> str:
        return "idle"

    def now_s(self) -> float:
        return 0.0

    async def command(self, name, *, source, **kwargs) -> None:
        self.commands.append((name, source))

    async def plan(self, start_s, end_s):
        return {}

    async def events(self, *, limit, after_id):
        return []


async def test_relay_source_header(sim_settings):
    backend = Backend(sim_settings)
    app = create_app(backend)
    auth = {"Authorization": "Bearer t0ken"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 5)),
                                 base_url="http://t") as http:
        r = await http.post("/api/v1/stop", headers=auth)
        assert r.status_code == 200
        r = await http.post("/api/v1/stop", headers={**auth, "X-Tracker-Source":
                                                      "tango:helio/tracker/1@10.0.0.2#77"})
        assert r.status_code == 200
        for bad in ("tango", "Tango:x", "tango:a b", "tango:" + "x" * 101, "tango:x;y"):
            r = await http.post("/api/v1/stop", headers={**auth, "X-Tracker-Source": bad})
            assert r.status_code == 422, bad
            assert "X-Tracker-Source" in r.json()["detail"]
        # Without the token the header changes nothing: 401, nothing runs.
        r = await http.post("/api/v1/stop", headers={"X-Tracker-Source": "tango:x"})
        assert r.status_code == 401
    assert backend.commands == [("stop", "api:127.0.0.1"),
                                ("stop", "tango:helio/tracker/1@10.0.0.2#77 via api:127.0.0.1")]
