"""ASCOM Alpaca Telescope on the real daemon, through the alpyca client library and raw HTTP."""

from __future__ import annotations

import time

import httpx
import pytest
from alpaca import management
from alpaca.exceptions import (
    InvalidValueException,
    NotConnectedException,
    NotImplementedException,
    ParkedException,
)
from alpaca.telescope import AlignmentModes, DriveRates, Telescope, TelescopeAxes

from tests.support.daemon import DaemonProcess, make_config

pytestmark = [pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    path, offset = make_config(tmp_path_factory.mktemp("alpaca"))
    d = DaemonProcess(path, time_offset_s=offset).wait_ready()
    yield d
    d.kill()


@pytest.fixture(scope="module")
def scope(daemon):
    address = f"127.0.0.1:{daemon.port}"
    t = Telescope(address, 0)
    yield t
    t.rqs.close()


def _wait(pred, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_management_api(daemon):
    address = f"127.0.0.1:{daemon.port}"
    assert management.apiversions(address) == [1]
    desc = management.description(address)
    assert desc["ServerName"] == "helio-tracker"
    devices = management.configureddevices(address)
    assert len(devices) == 1
    assert devices[0]["DeviceType"] == "Telescope" and devices[0]["DeviceNumber"] == 0


def test_not_connected_then_connect(scope, daemon):
    assert scope.Connected is False
    assert scope.Name == "helio-tracker"
    assert scope.InterfaceVersion == 4
    with pytest.raises(NotConnectedException):
        _ = scope.Altitude
    scope.Connect()
    _wait(lambda: not scope.Connecting, 5.0, "connect")
    assert scope.Connected is True


def test_read_members_match_status(scope, daemon):
    daemon.wait_for(lambda s: s["state"] == "tracking" and s["on_sun"], 60.0, "tracking")
    st = daemon.status()
    assert scope.Altitude == pytest.approx(st["pointing"]["el_deg"], abs=0.01)
    assert scope.Azimuth == pytest.approx(st["pointing"]["az_deg"] % 360.0, abs=0.01)
    assert scope.Tracking is True
    assert scope.AtPark is False
    assert scope.AlignmentMode == AlignmentModes.algAltAz
    assert scope.TrackingRates == [DriveRates.driveSolar]
    assert scope.CanSlewAltAz is False and scope.CanSlewAltAzAsync is True
    assert scope.CanPark and scope.CanUnpark and scope.CanSetTracking
    assert scope.CanMoveAxis(TelescopeAxes.axisPrimary)
    assert not scope.CanMoveAxis(TelescopeAxes.axisTertiary)
    rates = scope.AxisRates(TelescopeAxes.axisSecondary)
    assert rates[0].Maximum == daemon.settings.axes.elevation.max_speed_deg_s
    assert scope.SupportedActions == []
    assert "helio-tracker daemon" in " ".join(scope.DriverInfo)  # alpyca splits on commas
    state = {item["Name"]: item["Value"] for item in scope.DeviceState}
    assert state["AtPark"] is False and state["Tracking"] is True
    assert state["Altitude"] == pytest.approx(st["pointing"]["el_deg"], abs=0.01)


def test_unimplemented_members_answer_0x400(scope):
    with pytest.raises(NotImplementedException):
        _ = scope.SideOfPier
    with pytest.raises(NotImplementedException):
        scope.SlewToCoordinatesAsync(1.0, 2.0)
    with pytest.raises(NotImplementedException):
        scope.FindHome()


def test_transaction_ids_and_parameter_name_case(daemon, scope):
    base = f"{daemon.url}/api/v1/telescope/0"
    r1 = httpx.get(f"{base}/altitude", params={"clienttransactionid": "41"}, timeout=5).json()
    r2 = httpx.get(f"{base}/altitude", params={"ClientTransactionID": "42"}, timeout=5).json()
    assert r1["ClientTransactionID"] == 41 and r2["ClientTransactionID"] == 42
    assert r2["ServerTransactionID"] > r1["ServerTransactionID"] > 0
    assert r1["ErrorNumber"] == 0 and r1["ErrorMessage"] == ""
    bad = httpx.get(f"{base}/altitude", params={"ClientTransactionID": "x"}, timeout=5).json()
    assert bad["ClientTransactionID"] == 0
    # PUT form keys are case sensitive (Alpaca spec): a wrong capitalisation is HTTP 400.
    r = httpx.put(f"{base}/slewtoaltazasync",
                  data={"AZIMUTH": "180", "altitude": "31", "ClientTransactionID": "43"},
                  timeout=5)
    assert r.status_code == 400 and "'Azimuth'" in r.text
    # Outside the envelope -> InvalidValue 0x401 with the reason.
    r = httpx.put(f"{base}/slewtoaltazasync",
                  data={"Azimuth": "180", "Altitude": "31", "ClientTransactionID": "43"},
                  timeout=5).json()
    assert r["ErrorNumber"] == 0x401 and "25" in r["ErrorMessage"]
    assert r["ClientTransactionID"] == 43 and "Value" not in r
    # A missing parameter is a bad request (HTTP 400), not an Alpaca error.
    assert httpx.put(f"{base}/slewtoaltazasync", data={"Azimuth": "10"}, timeout=5).status_code == 400
    assert httpx.get(f"{daemon.url}/api/v1/telescope/1/altitude", timeout=5).status_code == 400


def test_slew_outside_envelope_invalid_value_and_nothing_moves(scope, daemon):
    before = daemon.status()
    with pytest.raises(InvalidValueException):
        scope.SlewToAltAzAsync(180.0, 40.0)
    with pytest.raises(InvalidValueException):
        scope.SlewToAltAzAsync(400.0, 0.0)
    with pytest.raises(InvalidValueException):
        scope.MoveAxis(TelescopeAxes.axisPrimary, 100.0)
    after = daemon.status()
    assert after["state"] == before["state"] == "tracking"
    events = httpx.get(f"{daemon.url}/api/v1/events", params={"limit": 50},
                       timeout=5).json()
    refused = [e for e in events if e["kind"] == "command" and e["source"] == "alpaca:127.0.0.1"]
    assert refused and refused[-1]["data"]["ok"] is False


def test_slew_abort_moveaxis_park_unpark_tracking(scope, daemon):
    d = daemon
    st = d.status()
    az = (st["sun"]["azimuth_deg"] + 4.0) % 360.0
    el = max(-20.0, min(20.0, st["sun"]["elevation_deg"]))
    scope.SlewToAltAzAsync(az, el)
    assert scope.Tracking is False
    _wait(lambda: scope.Slewing, 5.0, "slewing")
    _wait(lambda: not scope.Slewing, 30.0, "slew end")
    assert scope.Azimuth == pytest.approx(az, abs=0.01)
    assert scope.Altitude == pytest.approx(el, abs=0.01)
    # MoveAxis, then AbortSlew stops it.
    az0 = d.status()["axes"]["azimuth"]["position_deg"]
    scope.MoveAxis(TelescopeAxes.axisPrimary, 1.0)
    time.sleep(1.5)
    scope.AbortSlew()
    st = d.wait_for(lambda s: not s["axes"]["azimuth"]["moving"], 10.0, "abort")
    moved = st["axes"]["azimuth"]["position_deg"] - az0
    assert 0.5 < moved < 3.0
    # Park; moves are invalid while parked; unpark; tracking on again.
    scope.Park()
    _wait(lambda: scope.AtPark, 40.0, "at park")
    with pytest.raises(ParkedException):
        scope.SlewToAltAzAsync(az, el)
    with pytest.raises(ParkedException):
        scope.MoveAxis(TelescopeAxes.axisSecondary, 0.1)
    scope.Unpark()
    assert scope.AtPark is False
    scope.Tracking = True
    d.wait_for(lambda s: s["state"] == "tracking" and s["on_sun"], 60.0, "tracking")
    assert scope.Tracking is True
    sources = {e["source"] for e in httpx.get(f"{d.url}/api/v1/events",
                                               params={"limit": 200}, timeout=5).json()
               if e["kind"] == "command"}
    assert "alpaca:127.0.0.1" in sources
    scope.Disconnect()
    _wait(lambda: not scope.Connecting, 5.0, "disconnect")
    assert scope.Connected is False


def test_writes_switched_off(tmp_path):
    path, offset = make_config(tmp_path, api={"alpaca_writes": False})
    d = DaemonProcess(path, time_offset_s=offset).wait_ready()
    try:
        t = Telescope(f"127.0.0.1:{d.port}", 0)
        t.Connected = True
        assert t.CanSlewAltAzAsync is False and t.CanPark is False
        assert t.CanSetTracking is False
        with pytest.raises(NotImplementedException):
            t.SlewToAltAzAsync(180.0, 0.0)
        with pytest.raises(NotImplementedException):
            t.Park()
        with pytest.raises(NotImplementedException):
            t.Tracking = False
        assert d.status()["auto_tracking"] is True
        t.rqs.close()
    finally:
        assert d.stop() == 0
