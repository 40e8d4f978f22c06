"""ASCOM Alpaca Telescope conformance, written from the specification, not from our code.

Sources: the ASCOM ITelescopeV4 interface (member list, exceptions, Platform 7
async semantics), the Alpaca API reference (URL structure, transaction ids,
parameter-name case rules, HTTP 400 for bad device numbers / member names,
discovery), and ConformU's published checks (ConformU/Conform/TelescopeTester.cs
and AlpacaProtocolTestManager.cs):

* every ``Can...`` flag is consistent with behaviour: False -> the member answers
  NotImplemented (0x400) (ConformU also accepts InvalidValue; we do not need it);
  True -> it works;
* while parked, every member that would move the mount answers InvalidWhileParked
  (0x408) -- AbortSlew, MoveAxis (rate 0 included), SlewToAltAzAsync and
  ``Tracking = True`` -- and ``Tracking = False`` succeeds (TelescopeTester.cs,
  "Parked" tests, ITelescopeV4);
* ``Slewing`` is True immediately after an async slew / Park returns and stays True
  until the motion has ended (Platform 7: ConformU waits on Slewing, then checks);
* ``AtHome`` is False when the mount cannot find home;
* TargetRightAscension/TargetDeclination read before being set -> ValueNotSet (0x402);
* RightAscension/Declination/SiderealTime are checked against astropy (an outside
  authority): topocentric apparent (TETE at the site), local apparent sidereal time.

Runs the real daemon on the in-process simulator (see tests/service/test_alpaca.py).
"""

from __future__ import annotations

import json
import math
import socket
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from alpaca.exceptions import (
    InvalidValueException,
    NotImplementedException,
    ParkedException,
)
from alpaca.telescope import Telescope, TelescopeAxes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.daemon import DaemonProcess, make_config

pytestmark = [pytest.mark.network, pytest.mark.slow]

NOT_IMPLEMENTED = 0x400
INVALID_VALUE = 0x401
VALUE_NOT_SET = 0x402
NOT_CONNECTED = 0x407
INVALID_WHILE_PARKED = 0x408
INVALID_OPERATION = 0x40B
ACTION_NOT_IMPLEMENTED = 0x40C

#: ITelescopeV4 (with the common device interface), from the ASCOM interface text.
SPEC_GET = """connected connecting description devicestate driverinfo driverversion
    interfaceversion name supportedactions alignmentmode altitude aperturearea aperturediameter
    athome atpark azimuth canfindhome canpark canpulseguide cansetdeclinationrate
    cansetguiderates cansetpark cansetpierside cansetrightascensionrate cansettracking canslew
    canslewaltaz canslewaltazasync canslewasync cansync cansyncaltaz canunpark declination
    declinationrate doesrefraction equatorialsystem focallength guideratedeclination
    guideraterightascension ispulseguiding rightascension rightascensionrate sideofpier
    siderealtime siteelevation sitelatitude sitelongitude slewing slewsettletime
    targetdeclination targetrightascension tracking trackingrate trackingrates utcdate axisrates
    canmoveaxis destinationsideofpier""".split()
SPEC_PUT = """action commandblind commandbool commandstring connected connect disconnect
    declinationrate doesrefraction guideratedeclination guideraterightascension
    rightascensionrate sideofpier siteelevation sitelatitude sitelongitude slewsettletime
    targetdeclination targetrightascension tracking trackingrate utcdate abortslew findhome
    moveaxis park pulseguide setpark slewtoaltaz slewtoaltazasync slewtocoordinates
    slewtocoordinatesasync slewtotarget slewtotargetasync synctoaltaz synctocoordinates
    synctotarget unpark""".split()
#: Members a client may use before connecting (ITelescopeV4 / IDeviceV2).
NO_CONNECTION_NEEDED = {"connected", "connecting", "description", "driverinfo", "driverversion",
                        "interfaceversion", "name", "supportedactions", "connect", "disconnect"}
#: Valid parameters for members that take some (names as the spec spells them).
GET_PARAMS = {"axisrates": {"Axis": "0"}, "canmoveaxis": {"Axis": "0"},
              "destinationsideofpier": {"RightAscension": "1.0", "Declination": "0.0"}}
PUT_PARAMS = {
    "action": {"Action": "x", "Parameters": ""},
    "commandblind": {"Command": "x", "Raw": "False"},
    "commandbool": {"Command": "x", "Raw": "False"},
    "commandstring": {"Command": "x", "Raw": "False"},
    "connected": {"Connected": "True"},
    "declinationrate": {"DeclinationRate": "0.0"},
    "doesrefraction": {"DoesRefraction": "False"},
    "guideratedeclination": {"GuideRateDeclination": "0.001"},
    "guideraterightascension": {"GuideRateRightAscension": "0.001"},
    "rightascensionrate": {"RightAscensionRate": "0.0"},
    "sideofpier": {"SideOfPier": "0"},
    "siteelevation": {"SiteElevation": "10"},
    "sitelatitude": {"SiteLatitude": "53.5"},
    "sitelongitude": {"SiteLongitude": "9.9"},
    "slewsettletime": {"SlewSettleTime": "1"},
    "targetdeclination": {"TargetDeclination": "10"},
    "targetrightascension": {"TargetRightAscension": "1"},
    "tracking": {"Tracking": "True"},
    "trackingrate": {"TrackingRate": "2"},
    "utcdate": {"UTCDate": "2026-01-01T00:00:00Z"},
    "moveaxis": {"Axis": "0", "Rate": "0.5"},
    "pulseguide": {"Direction": "0", "Duration": "100"},
    "slewtoaltaz": {"Azimuth": "180", "Altitude": "10"},
    "slewtoaltazasync": {"Azimuth": "180", "Altitude": "10"},
    "slewtocoordinates": {"RightAscension": "1", "Declination": "10"},
    "slewtocoordinatesasync": {"RightAscension": "1", "Declination": "10"},
    "synctoaltaz": {"Azimuth": "180", "Altitude": "10"},
    "synctocoordinates": {"RightAscension": "1", "Declination": "10"},
}
#: Can-flag -> (method, member, params) that must answer NotImplemented when the flag is False.
CAN_FALSE = {
    "canfindhome": [("PUT", "findhome", {})],
    "canpulseguide": [("PUT", "pulseguide", PUT_PARAMS["pulseguide"])],
    "cansetdeclinationrate": [("PUT", "declinationrate", {"DeclinationRate": "0.1"})],
    "cansetguiderates": [("PUT", "guideratedeclination", PUT_PARAMS["guideratedeclination"]),
                         ("PUT", "guideraterightascension",
                          PUT_PARAMS["guideraterightascension"])],
    "cansetpark": [("PUT", "setpark", {})],
    "cansetpierside": [("PUT", "sideofpier", PUT_PARAMS["sideofpier"])],
    "cansetrightascensionrate": [("PUT", "rightascensionrate", {"RightAscensionRate": "0.1"})],
    "canslew": [("PUT", "slewtocoordinates", PUT_PARAMS["slewtocoordinates"]),
                ("PUT", "slewtotarget", {})],
    "canslewasync": [("PUT", "slewtocoordinatesasync", PUT_PARAMS["slewtocoordinatesasync"]),
                     ("PUT", "slewtotargetasync", {})],
    "canslewaltaz": [("PUT", "slewtoaltaz", PUT_PARAMS["slewtoaltaz"])],
    "cansync": [("PUT", "synctocoordinates", PUT_PARAMS["synctocoordinates"]),
                ("PUT", "synctotarget", {})],
    "cansyncaltaz": [("PUT", "synctoaltaz", PUT_PARAMS["synctoaltaz"])],
}


#: A held axis jitters below this in the simulated wind (the drive does not call it moving).
STILL_DEG_S = 2e-3


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DISCOVERY_PORT = free_udp_port()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    # A high rate limit: this suite polls hard from one address (the limiter has its own tests).
    path, offset = make_config(tmp_path_factory.mktemp("conformance"),
                               api={"alpaca_discovery": True,
                                    "alpaca_discovery_port": DISCOVERY_PORT,
                                    "rate_limit_per_s": 5000.0, "rate_limit_burst": 5000})
    d = DaemonProcess(path, time_offset_s=offset).wait_ready()
    yield d
    d.kill()


@pytest.fixture(scope="module")
def scope(daemon):
    t = Telescope(f"127.0.0.1:{daemon.port}", 0)
    yield t
    t.rqs.close()


@pytest.fixture(scope="module")
def http(daemon):
    with httpx.Client(base_url=f"{daemon.url}/api/v1/telescope/0", timeout=10.0) as c:
        yield c


def call(http: httpx.Client, method: str, member: str, params: dict | None = None
         ) -> httpx.Response:
    if method == "GET":
        return http.get(f"/{member}", params=params or {})
    return http.put(f"/{member}", data=params or {})


def error_of(http: httpx.Client, method: str, member: str, params: dict | None = None) -> int:
    r = call(http, method, member, params)
    assert r.status_code == 200, (method, member, r.status_code, r.text)
    return r.json()["ErrorNumber"]


def _wait(pred, timeout_s: float, what: str, period_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(period_s)


def positions(daemon) -> tuple[float, float]:
    axes = daemon.status()["axes"]
    return axes["azimuth"]["position_deg"], axes["elevation"]["position_deg"]


# ----------------------------------------------------------------------------- protocol
def test_not_connected_members_answer_0x407_and_nothing_moves(daemon, http):
    """Before Connect: every member but the few that need no connection -> NotConnected."""
    daemon.wait_for(lambda s: s["state"] == "tracking", 60.0, "tracking")
    assert http.get("/connected").json()["Value"] is False
    for member in SPEC_GET:
        if member not in NO_CONNECTION_NEEDED:
            assert error_of(http, "GET", member, GET_PARAMS.get(member)) == NOT_CONNECTED, member
    for member in ("park", "abortslew", "moveaxis", "slewtoaltazasync", "tracking", "unpark"):
        assert error_of(http, "PUT", member, PUT_PARAMS.get(member)) == NOT_CONNECTED, member
    st = daemon.status()
    assert st["state"] == "tracking" and st["auto_tracking"] is True
    for member in NO_CONNECTION_NEEDED & set(SPEC_GET):
        assert error_of(http, "GET", member) == 0, member


def test_connect(scope):
    scope.Connect()
    _wait(lambda: not scope.Connecting, 5.0, "connect")
    assert scope.Connected is True


def test_bad_device_numbers_and_types_are_http_400(daemon):
    base = f"{daemon.url}/api/v1"
    for number in ("1", "-1", "99999", "A"):
        r = httpx.get(f"{base}/telescope/{number}/description", timeout=5)
        assert r.status_code == 400, (number, r.status_code)
        assert httpx.put(f"{base}/telescope/{number}/park", timeout=5).status_code == 400
    for path in ("TELESCOPE/0/description", "baddevicetype/0/description"):
        assert 400 <= httpx.get(f"{base}/{path}", timeout=5).status_code < 500, path


def test_unknown_member_names_are_http_400(http):
    for method, member in (("GET", "descrip"), ("PUT", "descrip"), ("GET", "foo"),
                           ("PUT", "slewtoaltazsync"), ("PUT", "altitude"),
                           ("GET", "abortslew"), ("PUT", "canpark")):
        r = call(http, method, member, {"Azimuth": "1", "Altitude": "1"})
        assert r.status_code == 400, (method, member, r.status_code, r.text)


def test_transaction_ids_and_json_names(http):
    r1 = http.get("/name", params={"ClientTransactionID": "7"}).json()
    r2 = http.get("/name", params={"clienttransactionid": "4294967295"}).json()
    assert list(r1) == ["Value", "ClientTransactionID", "ServerTransactionID", "ErrorNumber",
                        "ErrorMessage"]
    assert r1["ClientTransactionID"] == 7 and r2["ClientTransactionID"] == 4294967295
    assert r2["ServerTransactionID"] > r1["ServerTransactionID"] >= 1
    # Invalid ids are not round-tripped: 0 (ConformU's tolerant rule).
    for bad in ("", " ", "-1", "abc", "4294967296", "1.5"):
        assert http.get("/name", params={"ClientTransactionID": bad}).json()[
            "ClientTransactionID"] == 0, bad
    put = http.put("/targetdeclination", data={"TargetDeclination": "5",
                                               "ClientTransactionID": "99"}).json()
    assert put == {"ClientTransactionID": 99, "ServerTransactionID": put["ServerTransactionID"],
                   "ErrorNumber": 0, "ErrorMessage": ""}


def test_parameter_case_rules_and_bad_values(http):
    # GET parameter names: any case.
    assert http.get("/canmoveaxis", params={"AXIS": "1"}).json()["Value"] is True
    assert http.get("/axisrates", params={"axis": "1"}).json()["ErrorNumber"] == 0
    # PUT parameter names: exactly as specified, else HTTP 400.
    assert http.put("/connected", data={"connected": "True"}).status_code == 400
    assert http.put("/targetdeclination", data={"targetdeclination": "5"}).status_code == 400
    # PUT values: unparseable -> 400 (ConformU: "", numbers and words for a boolean).
    for bad in ("", "1", "blah"):
        assert http.put("/connected", data={"Connected": bad}).status_code == 400, bad
    assert http.put("/targetdeclination", data={"TargetDeclination": "north"}).status_code == 400
    assert http.put("/targetdeclination", data={}).status_code == 400
    assert http.get("/connected").json()["Value"] is True


def test_management_api_and_discovery(daemon):
    base = daemon.url
    r = httpx.get(f"{base}/management/apiversions", params={"ClientTransactionID": "3"},
                  timeout=5).json()
    assert r["Value"] == [1] and r["ClientTransactionID"] == 3 and r["ErrorNumber"] == 0
    devices = httpx.get(f"{base}/management/v1/configureddevices", timeout=5).json()["Value"]
    assert [(d["DeviceType"], d["DeviceNumber"]) for d in devices] == [("Telescope", 0)]
    assert len(devices[0]["UniqueID"]) == 36
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3.0)
        s.sendto(b"alpacadiscovery1", ("127.0.0.1", DISCOVERY_PORT))
        reply, _ = s.recvfrom(1024)
        assert json.loads(reply) == {"AlpacaPort": daemon.port}
        # Anything else (another protocol version, garbage) gets no answer.
        s.settimeout(0.5)
        for junk in (b"alpacadiscovery2", b"hello", b"\x00" * 64):
            s.sendto(junk, ("127.0.0.1", DISCOVERY_PORT))
            with pytest.raises(TimeoutError):
                s.recvfrom(1024)
    # Loopback only by default: the UDP socket is bound to 127.0.0.1.
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    bound = [line.split()[1] for line in lines
             if int(line.split()[1].split(":")[1], 16) == DISCOVERY_PORT]
    assert bound == [f"0100007F:{DISCOVERY_PORT:04X}"]


# ----------------------------------------------------------------------------- every member
def test_every_get_member_answers(daemon, http):
    s = daemon.settings
    expected = {
        "alignmentmode": 0, "athome": False, "atpark": False, "canfindhome": False,
        "canpark": True, "canpulseguide": False, "cansetdeclinationrate": False,
        "cansetguiderates": False, "cansetpark": False, "cansetpierside": False,
        "cansetrightascensionrate": False, "cansettracking": True, "canslew": False,
        "canslewaltaz": False, "canslewaltazasync": True, "canslewasync": False,
        "cansync": False, "cansyncaltaz": False, "canunpark": True, "declinationrate": 0.0,
        "doesrefraction": False, "equatorialsystem": 1, "ispulseguiding": False,
        "rightascensionrate": 0.0, "trackingrate": 2, "trackingrates": [2],
        "interfaceversion": 4, "connected": True, "connecting": False, "supportedactions": [],
        "sitelatitude": s.site.latitude_deg, "sitelongitude": s.site.longitude_deg,
        "siteelevation": s.site.height_m, "name": "helio-tracker",
    }
    optional_not_implemented = {"aperturearea", "aperturediameter", "focallength",
                                "guideratedeclination", "guideraterightascension",
                                "sideofpier", "slewsettletime", "destinationsideofpier"}
    not_set = {"targetdeclination", "targetrightascension"}
    for member in SPEC_GET:
        r = call(http, "GET", member, GET_PARAMS.get(member)).json()
        if member in optional_not_implemented:
            assert r["ErrorNumber"] == NOT_IMPLEMENTED, member
            continue
        if member in not_set:
            continue  # checked below (another test may have set TargetDeclination)
        assert r["ErrorNumber"] == 0, (member, r)
        value = r["Value"]
        if member in expected:
            assert value == expected[member], (member, value)
        elif member in ("altitude", "declination"):
            assert isinstance(value, float) and -90.0 <= value <= 90.0, (member, value)
        elif member == "azimuth":
            assert isinstance(value, float) and 0.0 <= value < 360.0
        elif member in ("rightascension", "siderealtime"):
            assert isinstance(value, float) and 0.0 <= value < 24.0, (member, value)
        elif member in ("slewing", "tracking"):
            assert isinstance(value, bool)
        elif member == "utcdate":
            assert value.endswith("Z")
            datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")
        elif member == "axisrates":
            assert value == [{"Maximum": s.axes.azimuth.max_speed_deg_s, "Minimum": 0.0}]
        elif member == "canmoveaxis":
            assert value is True
        elif member == "devicestate":
            names = {item["Name"] for item in value}
            assert {"Altitude", "AtHome", "AtPark", "Azimuth", "Declination",
                    "RightAscension", "SiderealTime", "Slewing", "Tracking", "UTCDate",
                    "TimeStamp"} <= names
        else:
            assert isinstance(value, str) and value, (member, value)
    assert http.get("/canmoveaxis", params={"Axis": "2"}).json()["Value"] is False
    assert http.get("/axisrates", params={"Axis": "2"}).json()["Value"] == []
    for bad_axis in ("3", "-1"):
        assert error_of(http, "GET", "canmoveaxis", {"Axis": bad_axis}) == INVALID_VALUE
        assert error_of(http, "GET", "axisrates", {"Axis": bad_axis}) == INVALID_VALUE


def test_targets_value_not_set_then_invalid_value_then_set(http):
    assert error_of(http, "GET", "targetrightascension") == VALUE_NOT_SET
    for bad in ("-0.1", "24", "25", "nan", "inf"):
        assert error_of(http, "PUT", "targetrightascension",
                        {"TargetRightAscension": bad}) == INVALID_VALUE, bad
    for bad in ("-90.1", "90.5", "nan"):
        assert error_of(http, "PUT", "targetdeclination",
                        {"TargetDeclination": bad}) == INVALID_VALUE, bad
    assert error_of(http, "GET", "targetrightascension") == VALUE_NOT_SET
    assert error_of(http, "PUT", "targetrightascension", {"TargetRightAscension": "13.25"}) == 0
    assert error_of(http, "PUT", "targetdeclination", {"TargetDeclination": "-12.5"}) == 0
    assert http.get("/targetrightascension").json()["Value"] == 13.25
    assert http.get("/targetdeclination").json()["Value"] == -12.5


def test_tracking_rate_writes(http):
    assert error_of(http, "PUT", "trackingrate", {"TrackingRate": "2"}) == 0
    for unsupported in ("0", "1", "3"):  # valid DriveRates this mount does not offer
        assert error_of(http, "PUT", "trackingrate",
                        {"TrackingRate": unsupported}) == INVALID_VALUE
    for invalid in ("5", "-1"):  # ConformU writes 5 and -1
        assert error_of(http, "PUT", "trackingrate", {"TrackingRate": invalid}) == INVALID_VALUE
    assert http.get("/trackingrate").json()["Value"] == 2


def test_false_flags_mean_not_implemented_and_nothing_moves(daemon, http):
    before = daemon.status()
    assert before["state"] == "tracking"
    for flag, uses in CAN_FALSE.items():
        assert http.get(f"/{flag}").json()["Value"] is False, flag
        for method, member, params in uses:
            assert error_of(http, method, member, params) == NOT_IMPLEMENTED, member
    assert error_of(http, "PUT", "moveaxis", {"Axis": "2", "Rate": "0.1"}) == NOT_IMPLEMENTED
    for member in ("doesrefraction", "siteelevation", "sitelatitude", "sitelongitude",
                   "slewsettletime", "utcdate", "commandblind", "commandbool", "commandstring"):
        assert error_of(http, "PUT", member, PUT_PARAMS[member]) == NOT_IMPLEMENTED, member
    assert error_of(http, "PUT", "action", PUT_PARAMS["action"]) == ACTION_NOT_IMPLEMENTED
    for member in ("destinationsideofpier", "sideofpier"):
        assert error_of(http, "GET", member, GET_PARAMS.get(member)) == NOT_IMPLEMENTED
    after = daemon.status()
    assert after["state"] == "tracking" and after["auto_tracking"] is True
    assert after["task"] == before["task"]


# ----------------------------------------------------------------------------- values
def test_radec_and_sidereal_time_match_astropy(daemon, scope):
    """RA/Dec of the reported Alt/Az at UTCDate, in astropy's TETE at the site (< 1 arcsec)."""
    import astropy.units as u
    from astropy.coordinates import TETE, AltAz, EarthLocation, SkyCoord, get_body
    from astropy.time import Time

    site = daemon.settings.site
    loc = EarthLocation.from_geodetic(site.longitude_deg * u.deg, site.latitude_deg * u.deg,
                                      site.height_m * u.m)
    state = {item["Name"]: item["Value"] for item in scope.DeviceState}
    t = Time(state["UTCDate"].rstrip("Z"), format="isot", scale="utc")
    assert abs(t.unix - (time.time() + _offset(daemon))) < 5.0
    observed = SkyCoord(AltAz(az=state["Azimuth"] * u.deg, alt=state["Altitude"] * u.deg,
                              obstime=t, location=loc, pressure=0 * u.hPa))
    tete = observed.transform_to(TETE(obstime=t, location=loc))
    ra_err_arcsec = abs((state["RightAscension"] - tete.ra.hour + 12) % 24 - 12) * 15 * 3600
    dec_err_arcsec = abs(state["Declination"] - tete.dec.deg) * 3600
    assert ra_err_arcsec * abs(math.cos(tete.dec.rad)) < 1.0
    assert dec_err_arcsec < 1.0
    last_h = t.sidereal_time("apparent", longitude=site.longitude_deg * u.deg).hour
    assert abs(((state["SiderealTime"] - last_h + 12) % 24) - 12) * 3600 < 0.01
    # Tracking the Sun: RA/Dec is the Sun's apparent topocentric place (pointing error
    # and the 10 Hz snapshot allow a few arcsec; 36" is the on-Sun tolerance).
    daemon.wait_for(lambda s: s["state"] == "tracking" and s["on_sun"], 60.0, "on sun")
    state = {item["Name"]: item["Value"] for item in scope.DeviceState}
    t = Time(state["UTCDate"].rstrip("Z"), format="isot", scale="utc")
    sun = get_body("sun", t, loc).transform_to(TETE(obstime=t, location=loc))
    sep = SkyCoord(ra=state["RightAscension"] * u.hourangle, dec=state["Declination"] * u.deg,
                   frame=TETE(obstime=t, location=loc)).separation(sun)
    assert sep.arcsec < 60.0, sep.arcsec


def _offset(daemon) -> float:
    return float(daemon.proc.args[daemon.proc.args.index("--time-offset-s") + 1])


# ----------------------------------------------------------------------------- motion
def _velocities(daemon) -> list[float]:
    return [a["velocity_deg_s"] for a in daemon.status()["axes"].values()]


def test_slew_slewing_until_stopped(daemon, scope):
    st = daemon.status()
    az = (st["sun"]["azimuth_deg"] + 3.0) % 360.0
    el = max(-20.0, min(20.0, st["sun"]["elevation_deg"]))
    scope.SlewToAltAzAsync(az, el)
    assert scope.Slewing is True  # Platform 7: True on return from an async slew
    assert scope.Tracking is False
    _wait(lambda: not scope.Slewing, 40.0, "slew end", 0.02)
    assert max(abs(v) for v in _velocities(daemon)) < STILL_DEG_S
    assert scope.Azimuth == pytest.approx(az, abs=0.01)
    assert scope.Altitude == pytest.approx(el, abs=0.01)


def test_abort_and_moveaxis_zero_keep_slewing_until_axes_stop(daemon, scope):
    """Issue 13: Slewing went False at the stop command while the axes still decelerated."""
    for stop in ("abort", "rate0"):
        # 2 deg/s away from the nearer azimuth limit (MoveAxis runs at most 60 s: 120 deg).
        az_axis = daemon.status()["axes"]["azimuth"]["position_deg"]
        scope.MoveAxis(TelescopeAxes.axisPrimary, -2.0 if az_axis > 0 else 2.0)
        _wait(lambda: abs(daemon.status()["axes"]["azimuth"]["velocity_deg_s"]) > 1.5,
              10.0, "azimuth at speed")
        if stop == "abort":
            scope.AbortSlew()
        else:
            scope.MoveAxis(TelescopeAxes.axisPrimary, 0.0)
        assert scope.Slewing is True, stop  # still decelerating from 2 deg/s at 3 deg/s^2
        while scope.Slewing:
            time.sleep(0.01)
        az_when_false = daemon.status()["axes"]["azimuth"]["position_deg"]
        assert max(abs(v) for v in _velocities(daemon)) < STILL_DEG_S, stop
        time.sleep(1.0)
        rest = daemon.status()["axes"]["azimuth"]["position_deg"]
        assert rest == pytest.approx(az_when_false, abs=2e-3), stop
        assert scope.Slewing is False


def test_moveaxis_rate_limits(scope):
    with pytest.raises(InvalidValueException):
        scope.MoveAxis(TelescopeAxes.axisPrimary, 3.5)  # AxisRates maximum is 3.0
    with pytest.raises(InvalidValueException):
        scope.MoveAxis(TelescopeAxes.axisSecondary, -2.5)
    with pytest.raises(NotImplementedException):
        scope.MoveAxis(TelescopeAxes.axisTertiary, 0.0)


def test_parked_nothing_moves(daemon, scope, http):
    scope.Park()
    assert scope.Slewing is True  # Platform 7: Park is async, Slewing until parked
    _wait(lambda: not scope.Slewing, 60.0, "park")
    assert scope.AtPark is True and scope.AtHome is False
    scope.Park()  # a second Park is harmless
    assert scope.AtPark is True
    az0, el0 = positions(daemon)
    with pytest.raises(ParkedException):
        scope.Tracking = True
    for member, params in (("slewtoaltazasync", {"Azimuth": "180", "Altitude": "10"}),
                           ("moveaxis", {"Axis": "0", "Rate": "0.0"}),
                           ("moveaxis", {"Axis": "1", "Rate": "0.0"}),
                           ("moveaxis", {"Axis": "1", "Rate": "0.5"}),
                           ("abortslew", {}), ("tracking", {"Tracking": "True"})):
        assert error_of(http, "PUT", member, params) == INVALID_WHILE_PARKED, member
    scope.Tracking = False  # ITelescopeV4: allowed while parked
    time.sleep(3.0)  # the engine ticks at 10 Hz: 30 chances to move
    st = daemon.status()
    assert st["state"] == "parked" and st["auto_tracking"] is False
    az1, el1 = positions(daemon)
    assert abs(az1 - az0) < 1e-3 and abs(el1 - el0) < 1e-3
    assert scope.AtPark is True and scope.Tracking is False


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(member=st.one_of(st.sampled_from([m for m in SPEC_PUT
                                         if m not in ("unpark", "disconnect", "connected")]),
                        st.text(st.characters(min_codepoint=33, max_codepoint=126),
                                min_size=1, max_size=30)),
       form=st.one_of(
           st.dictionaries(st.sampled_from(["Azimuth", "Altitude", "Axis", "Rate", "Tracking",
                                            "TrackingRate", "ClientTransactionID", "azimuth",
                                            "TargetDeclination", "Connected", "x"]),
                           st.one_of(st.sampled_from(["0", "1", "-1", "nan", "inf", "-inf",
                                                      "1e308", "True", "false", "", " ",
                                                      "0x10", "180", "24", "-0"]),
                                     st.text(max_size=20)),
                           max_size=5),
           st.binary(max_size=300)))
def test_fuzz_put_forms_while_parked(daemon, http, member, form):
    """Hostile PUT forms: never a 5xx, always an Alpaca answer or a 400; nothing moves."""
    path = "/" + member.replace("/", "%2F").replace("?", "%3F").replace("#", "%23")
    if isinstance(form, bytes):
        r = http.put(path, content=form,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    else:
        r = http.put(path, data=form)
    assert r.status_code < 500, (member, form, r.status_code, r.text)
    if r.status_code == 200:
        body = r.json()
        assert isinstance(body["ErrorNumber"], int) and isinstance(body["ErrorMessage"], str)
    else:
        assert r.status_code in (400, 404, 405), (member, form, r.status_code, r.text)


def test_after_fuzz_still_parked_and_unmoved(daemon, scope):
    st = daemon.status()
    assert st["state"] == "parked", st["state"]
    assert st["auto_tracking"] is False
    assert max(abs(v) for v in _velocities(daemon)) < STILL_DEG_S
    assert scope.AtPark is True


def test_unpark_then_tracking(daemon, scope):
    scope.Unpark()
    assert scope.AtPark is False
    scope.Unpark()  # ConformU: a second Unpark is harmless and leaves the mount unparked
    assert scope.AtPark is False and daemon.status()["state"] != "parked"
    scope.Tracking = True
    daemon.wait_for(lambda s: s["state"] == "tracking", 90.0, "tracking")
    assert scope.Tracking is True and scope.Slewing is False


# ----------------------------------------------------------------------------- InvalidOperation
def test_invalid_operation_when_the_state_machine_refuses(tmp_path):
    """Wind stow blocks motion: Tracking = True and slews -> InvalidOperation (0x40B)."""
    path, _ = make_config(tmp_path, window=False, tracking={"auto_track": False},
                          simulator={"wind_mean_m_s": 30.0, "wind_gust_m_s": 0.0})
    d = DaemonProcess(path).wait_ready()
    try:
        d.wait_for(lambda s: s["wind_stowed"], 30.0, "wind stow")
        with httpx.Client(base_url=f"{d.url}/api/v1/telescope/0", timeout=10) as c:
            assert error_of(c, "PUT", "connected", {"Connected": "True"}) == 0
            r = c.put("/tracking", data={"Tracking": "True"}).json()
            assert r["ErrorNumber"] == INVALID_OPERATION and "wind" in r["ErrorMessage"]
            assert error_of(c, "PUT", "slewtoaltazasync",
                            {"Azimuth": "180", "Altitude": "10"}) == INVALID_OPERATION
            assert c.get("/tracking").json()["Value"] is False
        # Discovery is opt-in: this daemon (api.alpaca_discovery unset) does not answer.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            s.sendto(b"alpacadiscovery1", ("127.0.0.1", 32227))
            try:
                reply, _ = s.recvfrom(1024)
            except (TimeoutError, ConnectionRefusedError):
                reply = b""
            assert str(d.port).encode() not in reply
    finally:
        assert d.stop() == 0
