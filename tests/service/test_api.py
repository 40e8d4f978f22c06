"""The HTTP API of the real daemon (subprocess, simulated mount, free loopback port).

The tests of this module share one daemon and run in file order: refusals first
(nothing may move), then goto, jog, stop, park and automatic tracking again.
"""

from __future__ import annotations

import math
import time

import httpx
import pytest

from tests.support.daemon import DaemonProcess, make_config
from tracker.service.api import is_loopback

pytestmark = [pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    path, offset = make_config(tmp_path_factory.mktemp("api"))
    d = DaemonProcess(path, time_offset_s=offset).wait_ready()
    yield d
    d.kill()


def _events(d, **params) -> list[dict]:
    r = httpx.get(f"{d.url}/api/v1/events", params={"limit": 1000, **params}, timeout=5)
    assert r.status_code == 200
    return r.json()


def _axes(st: dict) -> tuple[float, float]:
    return st["axes"]["azimuth"]["position_deg"], st["axes"]["elevation"]["position_deg"]


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("127.5.0.1") and is_loopback("::1")
    assert is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("192.168.1.10") and not is_loopback("testclient")


def test_openapi_document_lists_commands_with_bearer(daemon):
    doc = httpx.get(f"{daemon.url}/openapi.json", timeout=5).json()
    paths = doc["paths"]
    for p in ("status", "plan", "events", "goto", "jog", "stop", "park", "unpark", "stow",
              "track", "reset"):
        assert f"/api/v1/{p}" in paths, p
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert paths["/api/v1/goto"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in paths["/api/v1/status"]["get"]


def test_starts_tracking_by_itself(daemon):
    st = daemon.wait_for(lambda s: s["state"] == "tracking" and s["on_sun"], 60.0,
                                 "tracking on the Sun")
    assert st["auto_tracking"] is True


def test_commands_need_the_token_and_move_nothing(daemon):
    d = daemon
    before = d.status()
    last_id = max([e["id"] for e in _events(d)] or [0])
    missing = d.post("stop", token=None)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "token" in missing.json()["detail"]
    wrong = d.post("goto", {"az_deg": 180.0, "el_deg": 0.0}, token=d.token[:-1] + "x")
    assert wrong.status_code == 401
    basic = httpx.post(f"{d.url}/api/v1/park", headers={"Authorization": f"Basic {d.token}"},
                       timeout=5)
    assert basic.status_code == 401
    after = d.status()
    assert after["state"] == before["state"] == "tracking"
    assert after["auto_tracking"] is True
    # Nothing reached the engine; the refusal is audited (once per source per 10 s).
    cmds = [e for e in _events(d, after_id=last_id) if e["kind"] == "command"]
    assert len(cmds) == 1, cmds
    assert cmds[0]["data"]["command"] == "stop" and cmds[0]["data"]["ok"] is False
    assert "token" in cmds[0]["message"] and cmds[0]["source"] == "api:127.0.0.1"


def test_goto_outside_envelope_refused_with_reason_and_audited(daemon):
    d = daemon
    before = d.status()
    last_id = max([e["id"] for e in _events(d)] or [0])
    sun_az = before["sun"]["azimuth_deg"]
    r = d.post("goto", {"az_deg": sun_az, "el_deg": 31.0})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "31" in detail and "25" in detail and "elevation" in detail
    after = d.status()
    assert after["state"] == "tracking" and after["auto_tracking"] is True
    cmds = [e for e in _events(d, after_id=last_id) if e["kind"] == "command"]
    assert len(cmds) == 1
    assert cmds[0]["source"] == "api:127.0.0.1"
    assert "refused" in cmds[0]["message"] and cmds[0]["data"]["ok"] is False
    # Too fast a jog is refused too, before anything moves.
    r = d.post("jog", {"axis": "el", "rate_deg_s": 50.0, "seconds": 1.0})
    assert r.status_code == 422, r.text
    assert d.status()["state"] == "tracking"


@pytest.mark.parametrize("path,body", [
    ("jog", {"axis": "x", "rate_deg_s": 0.1, "seconds": 1}),
    ("jog", {"axis": "az", "rate_deg_s": 0.1, "seconds": -1}),
    ("jog", {"axis": "az", "rate_deg_s": 0.1}),
    ("goto", {"az_deg": "north", "el_deg": 0}),
    ("goto", {"az_deg": 10, "el_deg": 0, "speed": 3}),
    ("track", {"on": "maybe"}),
    ("goto", {"az_deg": 1e308, "el_deg": 0}),
    ("goto", {"az_deg": 10, "el_deg": 91}),
    ("jog", {"axis": "az", "rate_deg_s": 1e308, "seconds": 1}),
    ("jog", {"axis": "az", "rate_deg_s": 0.1, "seconds": 1e9}),
])
def test_invalid_bodies_get_422(daemon, path, body):
    r = daemon.post(path, body)
    assert r.status_code == 422
    assert r.json()["detail"]


def test_nan_target_refused(daemon):
    d = daemon
    r = httpx.post(f"{d.url}/api/v1/goto", content=b'{"az_deg": NaN, "el_deg": 0}',
                   headers={"Authorization": f"Bearer {d.token}",
                            "Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 422
    assert d.status()["state"] == "tracking"


def test_goto_sky_direction_arrives(daemon):
    d = daemon
    st = d.status()
    target_az = (st["sun"]["azimuth_deg"] + 3.0) % 360.0
    target_el = max(-20.0, min(20.0, st["sun"]["elevation_deg"] - 2.0))
    r = d.post("goto", {"az_deg": target_az, "el_deg": target_el})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "manual"

    def arrived(s):
        p = s["pointing"]
        return (p["az_deg"] is not None
                and abs((p["az_deg"] - target_az + 180) % 360 - 180) < 0.01
                and abs(p["el_deg"] - target_el) < 0.01 and not s["slewing"])
    st = d.wait_for(arrived, 30.0, "goto arrival")
    assert st["state"] == "manual" and st["auto_tracking"] is False


def test_jog_moves_one_axis_by_rate_times_duration(daemon):
    d = daemon
    az0, el0 = _axes(d.status())
    r = d.post("jog", {"axis": "az", "rate_deg_s": 0.5, "seconds": 2.0})
    assert r.status_code == 200, r.text
    time.sleep(1.0)
    assert d.status()["axes"]["azimuth"]["moving"]
    st = d.wait_for(lambda s: not s["axes"]["azimuth"]["moving"] and not s["slewing"], 15.0,
                    "jog end")
    az1, el1 = _axes(st)
    assert az1 - az0 == pytest.approx(1.0, abs=0.15)
    assert abs(el1 - el0) < 0.01


def test_stop_holds(daemon):
    d = daemon
    el0 = d.status()["axes"]["elevation"]["position_deg"]
    rate = 0.5 if el0 < 0 else -0.5          # towards the middle: 10 deg stay inside
    r = d.post("jog", {"axis": "el", "rate_deg_s": rate, "seconds": 20.0})
    assert r.status_code == 200, r.text
    time.sleep(1.0)
    r = d.post("stop")
    assert r.status_code == 200
    assert r.json()["state"] == "idle"
    st = d.wait_for(lambda s: not s["axes"]["elevation"]["moving"], 10.0, "stopped")
    el_stop = st["axes"]["elevation"]["position_deg"]
    time.sleep(1.0)
    assert abs(d.status()["axes"]["elevation"]["position_deg"] - el_stop) < 0.005
    # stopped well before the 10 deg the jog would have covered
    assert 0.2 < abs(el_stop - el0) < 2.0


def test_park_then_track_again(daemon):
    d = daemon
    r = d.post("park")
    assert r.status_code == 200 and r.json()["state"] == "parking"
    st = d.wait_for(lambda s: s["state"] == "parked", 40.0, "parked")
    park = d.settings.positions.park
    az, el = _axes(st)
    assert az == pytest.approx(park.azimuth_deg, abs=0.01)
    assert el == pytest.approx(park.elevation_deg, abs=0.01)
    assert st["at_park"] is True
    r = d.post("track", {"on": True})
    assert r.status_code == 409 and "parked: 'unpark' first" in r.json()["detail"]
    assert d.status()["state"] == "parked"
    assert d.post("unpark").status_code == 200
    r = d.post("track", {"on": True})
    assert r.status_code == 200, r.text
    st = d.wait_for(lambda s: s["state"] == "tracking" and s["on_sun"], 60.0, "tracking again")
    assert st["auto_tracking"] is True
    assert st["pointing_error_arcsec"] < d.settings.tracking.on_sun_tolerance_arcsec


def test_plan_and_events(daemon):
    d = daemon
    plan = httpx.get(f"{d.url}/api/v1/plan", timeout=60).json()
    assert plan["windows"], plan
    w = plan["windows"][0]
    assert w["end_s"] > w["start_s"]
    t = time.perf_counter()
    again = httpx.get(f"{d.url}/api/v1/plan", timeout=60).json()
    assert again == plan and time.perf_counter() - t < 1.0      # cached, not recomputed
    for params in ({"start_s": 1e9 + 10, "end_s": 1e9 + 5}, {"start_s": 1e20},
                   {"start_s": -1e12}, {"start_s": "nan"}, {"start_s": 1e9, "end_s": 1e9 + 1e8}):
        bad = httpx.get(f"{d.url}/api/v1/plan", params=params, timeout=5)
        assert bad.status_code == 422, (params, bad.text)
    bad = httpx.get(f"{d.url}/api/v1/events", params={"after_id": 10**20}, timeout=5)
    assert bad.status_code == 422
    events = _events(d)
    cmds = [e for e in events if e["kind"] == "command"]
    names = [e["data"]["command"] for e in cmds]
    for name in ("goto", "jog", "stop", "park", "track"):
        assert name in names, names
    assert all(e["source"] == "api:127.0.0.1" for e in cmds)
    # Paging: after_id gives only newer events, oldest first.
    mid = events[len(events) // 2]["id"]
    newer = _events(d, after_id=mid)
    assert newer and all(e["id"] > mid for e in newer)
    assert [e["id"] for e in newer] == sorted(e["id"] for e in newer)


def test_status_shape(daemon):
    st = daemon.status()
    for key in ("time_utc", "state", "auto_tracking", "boresight", "sun", "axes", "pointing",
                "pointing_error_arcsec", "on_sun", "next_window", "current_window", "faults",
                "wind_m_s", "log", "slewing", "at_park", "at_home", "loop"):
        assert key in st, key
    assert set(st["axes"]) == {"azimuth", "elevation"}
    assert st["log"]["healthy"] is True
    assert math.isfinite(st["sun"]["azimuth_deg"])


async def test_remote_clients_need_the_token_for_reads_and_get_no_alpaca(tmp_path):
    """A client on another machine cannot exist in this sandbox: the real app, engine,
    simulated drives and store run in process, and the ASGI transport presents the
    request as coming from 192.0.2.10 (TEST-NET-1).  Everything else is real."""
    from simulator.mount import SimMount
    from tracker import config
    from tracker.clock import SystemClock
    from tracker.log.store import TrackingStore
    from tracker.loop.engine import Engine
    from tracker.service.api import create_app
    from tracker.service.compose import make_axes
    from tracker.service.daemon import Daemon

    path, _ = make_config(tmp_path, window=False)
    settings = config.load(path)
    clock = SystemClock()
    mount = SimMount(settings)
    engine = Engine(settings, make_axes(settings, clock=clock, mount=mount),
                    TrackingStore(tmp_path / "log.sqlite", clock=clock), clock)
    await engine.start()
    try:
        for allow_remote in (False, True):
            s = settings.model_copy(update={"api": settings.api.model_copy(
                update={"alpaca_allow_remote": allow_remote})})
            daemon = Daemon(s, engine, clock, token="remote-test-token")
            daemon._refresh_snapshot()
            transport = httpx.ASGITransport(app=create_app(daemon), client=("192.0.2.10", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://tracker") as c:
                r = await c.get("/api/v1/status")
                assert r.status_code == 401
                r = await c.get("/api/v1/status",
                                headers={"Authorization": "Bearer remote-test-token"})
                assert r.status_code == 200 and r.json()["state"] == engine.state
                r = await c.post("/api/v1/stop")
                assert r.status_code == 401
                r = await c.post("/api/v1/stop",
                                 headers={"Authorization": "Bearer remote-test-token"})
                assert r.status_code == 200
                r = await c.get("/api/v1/telescope/0/connected")
                assert r.status_code == (200 if allow_remote else 403)
                r = await c.get("/management/v1/configureddevices")
                assert r.status_code == (200 if allow_remote else 403)
        sources = {e["source"] for e in engine.events(limit=100) if e["kind"] == "command"}
        assert "api:192.0.2.10" in sources
    finally:
        await engine.shutdown()


def test_docs_page_loads_its_assets_from_the_daemon_not_a_cdn(daemon) -> None:
    """/docs works on an offline control PC: every script and style it names is served here."""
    import re

    page = httpx.get(f"{daemon.url}/docs", timeout=5.0)
    assert page.status_code == 200
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs and all(r.startswith("/") for r in refs), refs
    for ref in refs:
        assert httpx.get(daemon.url + ref, timeout=5.0).status_code == 200, ref
