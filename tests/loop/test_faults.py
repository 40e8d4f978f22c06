"""The fault matrix: one end-to-end test per fault on the running daemon.

The real daemon (``tracker.service.daemon.serve``: control loop, engine, store, HTTP API) runs in
this event loop, its drives over real Modbus TCP to a simulated mount served in the same
loop; the clock is shifted into a long tracking window and the mount starts on the Sun.
Each test injects one fault, checks the reaction and state through the API, the events
table in the log file, that no axis left its hard limits (the simulator's record), and the
operator's action through the API.  ``MATRIX`` is the table in docs/faults.md
(``python -m tests.loop.test_faults`` rewrites it).  Also: a short soak (benchmarks/soak.py).

Three seams are patched (``Daemon`` only to keep a handle to stop it), the other two to
reach things that cannot exist here otherwise: both to reach things that cannot exist here otherwise:
``tracker.service.daemon.SystemClock`` is wrapped so a test can step the daemon's clock (a system
clock jump would disturb every other process), and ``tracker.service.daemon._build_axes`` returns
the test's mount next to the real Modbus axes, so the daemon steps that mount in real time
and reads its wind (the wind sensor a site would wire; Modbus drives carry no wind input).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import sqlite3
import subprocess
import sys
import time
import tomllib
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

import tracker.service.daemon as daemon_mod
from simulator.faults import FaultInjector
from simulator.modbus_server import start_modbus_tcp_server
from simulator.mount import SimMount
from simulator.opcua_server import start_opcua_server
from simulator.serial_device import start_pty_server
from simulator.weather import start_modbus_anemometer
from tests.support import ROOT
from tracker import config
from tracker.astro.datasources import StaleIERSWarning, iers_mjd_range
from tracker.astro.ephemeris import sun_altaz
from tracker.clock import SystemClock
from tracker.mount.axis import Condition
from tracker.mount.envelope import Envelope
from tracker.planning.planner import plan
from tracker.service.compose import make_axes


def base_config() -> dict:
    """config/sim-modbus.toml as a dict, with fast axes (test slews take seconds)."""
    data = tomllib.loads((ROOT / "config" / "sim-modbus.toml").read_text())
    data["drives"]["modbus"]["register_map"] = str(ROOT / "config" / "modbus_map.toml")
    data["axes"]["azimuth"] = {"max_speed_deg_s": 3.0, "max_accel_deg_s2": 3.0}
    data["axes"]["elevation"] = {"max_speed_deg_s": 2.0, "max_accel_deg_s2": 2.0}
    data["tracking"]["settle_s"] = 2.0
    data["tracking"]["preposition_margin_s"] = 10.0
    data["simulator"]["wind_gust_m_s"] = 0.5
    return data


def tracking_time(settings: config.Settings, start_s: float, *, into_s: float = 3 * 3600.0,
                  need_after_s: float = 2 * 3600.0) -> float:
    """A time ``into_s`` into the first tracking window after ``start_s`` that lasts at least
    ``need_after_s`` more (so +-1 h clock jumps stay inside it)."""
    p = plan(settings, start_s, start_s + 2 * 86400.0)
    for w in p.windows:
        t = w.start_s + into_s
        if t + need_after_s < w.end_s:
            return t
    raise AssertionError("no long tracking window in the next 2 days")


def sun_axes(settings: config.Settings, t_s: float) -> tuple[float, float]:
    """Axis position (deg) pointing the first boresight at the Sun at ``t_s``."""
    s = settings.site
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StaleIERSWarning)     # the test's own reference
        az, el = sun_altaz(t_s, s.latitude_deg, s.longitude_deg, s.height_m)
    env = Envelope.from_settings(settings)
    return env.sky_to_axes(settings.envelope.boresights[0].name, float(az), float(el))


def same_direction_deg(axis_az_deg: float, az_deg: float) -> float:
    """|axis - az| in degrees modulo a turn (the cable wrap may hold either turn)."""
    return abs((axis_az_deg - az_deg + 180.0) % 360.0 - 180.0)


def merge(data: dict, overrides: dict[str, dict]) -> dict:
    out = json.loads(json.dumps(data))
    for section, values in overrides.items():
        out.setdefault(section, {}).update(values)
    return out


class DaemonRig:
    """One daemon + the simulated mount behind a real drive server + a Modbus TCP anemometer;
    use as ``async with DaemonRig(...) as rig``.  ``drives``: "modbus" (TCP), "opcua" (the
    simulated drive PLC) or "serial" (the line protocol on a pty)."""

    def __init__(self, tmp_path: Path, data: dict, t_s: float, *,
                 db_path: Path | None = None, drives: str = "modbus") -> None:
        self.tmp = tmp_path
        data = json.loads(json.dumps(data))
        data["api"]["token_file"] = str(tmp_path / "token")
        data["store"]["path"] = str(tmp_path / "tracker.sqlite")
        self.data = data
        self.t_s = t_s
        self.drives = drives
        self.db_path = db_path or tmp_path / "tracker.sqlite"
        self.clock: SystemClock | None = None
        self.daemon: Any = None

    async def _serve_drives(self) -> Callable[[], Awaitable[None]]:
        """Serve the mount as the drives of kind ``self.drives``; returns the server's stop."""
        if self.drives == "modbus":
            self.handle, port = await start_modbus_tcp_server(self.mount)
            self.data["drives"]["modbus"]["port"] = port

            async def stop_modbus() -> None:
                await self.handle.stop()      # the handle in use then (a test may replace it)
            return stop_modbus
        self.handle = None
        if self.drives == "opcua":
            shutil.copy(ROOT / "config" / "opcua_map.toml", self.tmp / "opcua_map.toml")
            handle, url = await start_opcua_server(self.mount)
            node_map = str(self.tmp / "opcua_map.toml")
            self.data["drives"] = {"kind": "opcua", "watchdog_s": self.data["drives"]["watchdog_s"],
                                   "opcua": {"endpoint_url": url, "node_map": node_map}}
            return handle.stop
        pty = start_pty_server(self.mount)
        self.data["drives"] = {"kind": "serial", "watchdog_s": self.data["drives"]["watchdog_s"],
                               "serial": {"port": pty.path}}

        async def stop() -> None:
            pty.stop()
        return stop

    async def __aenter__(self) -> DaemonRig:
        settings = config.parse(self.data, str(self.tmp / "sim.toml"))
        az, el = sun_axes(settings, self.t_s)
        self.mount = SimMount(settings, azimuth_deg=az, elevation_deg=el)
        self._stop_drives = await self._serve_drives()
        # The wind reaches the daemon as from a real anemometer: Modbus TCP on loopback.
        wind_cfg = config.parse(self.data, str(self.tmp / "sim.toml")).weather.modbus
        self.anemometer = await start_modbus_anemometer(self.mount, wind_cfg, port=0)
        self.data["weather"]["modbus"]["port"] = self.anemometer.port
        self.settings = config.parse(self.data, str(self.tmp / "sim.toml"))
        self.faults = FaultInjector(self.mount, server=self.handle)
        self.clock = SystemClock(self.t_s - time.time())
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_daemon(daemon: Any) -> None:
            self.daemon = daemon

        self.task = asyncio.create_task(daemon_mod.serve(
            self.settings, api_port=0, db_path=str(self.db_path),
            # The clock is shifted here, not by ``time_offset_s`` (which the daemon allows only
            # for drives it knows to be simulated: a pty could be a real controller).
            ready=ready.set_result, clock=self.clock,
            build_axes=lambda s, clock: (make_axes(s, clock=clock), self.mount),
            on_daemon=on_daemon))
        done, _ = await asyncio.wait({self.task, ready}, timeout=60.0,
                                     return_when=asyncio.FIRST_COMPLETED)
        if self.task in done:
            self.task.result()
            raise AssertionError("daemon ended before it was ready")
        assert ready in done, "daemon not ready within 60 s"
        self.url = ready.result()
        self.token = (self.tmp / "token").read_text().strip()
        self.http = httpx.AsyncClient(base_url=self.url + "/api/v1", timeout=10.0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.daemon is not None:
            self.daemon.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 30.0)
        await self.http.aclose()
        await self._stop_drives()
        await self.anemometer.stop()

    async def stop(self) -> int:
        self.daemon.stop()
        return await asyncio.wait_for(self.task, 30.0)

    # ------------------------------------------------------------------ API
    async def status(self) -> dict:
        r = await self.http.get("/status")
        r.raise_for_status()
        return r.json()

    async def post(self, command: str, body: dict | None = None) -> httpx.Response:
        return await self.http.post(f"/{command}", json=body,
                                    headers={"Authorization": f"Bearer {self.token}"})

    async def wait_for(self, predicate: Callable[[dict], bool], timeout_s: float,
                       what: str) -> tuple[dict, float]:
        """Poll the status until ``predicate``; returns (status, seconds waited)."""
        t0 = time.monotonic()
        st = await self.status()
        while not predicate(st):
            if time.monotonic() - t0 > timeout_s:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; last "
                                     f"status: {json.dumps(st, indent=1, default=str)[:2500]}")
            await asyncio.sleep(0.1)
            st = await self.status()
        return st, time.monotonic() - t0

    async def tracking(self, timeout_s: float = 30.0) -> dict:
        st, _ = await self.wait_for(lambda s: s["state"] == "tracking" and s["on_sun"],
                                    timeout_s, "tracking on the Sun")
        return st

    # ------------------------------------------------------------------ the log and the truth
    def events(self, after_s: float = 0.0) -> list[dict]:
        """Rows of the events table (read from the file, as a reader process would)."""
        db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = db.execute("SELECT time_s, kind, message, data FROM events WHERE time_s >= ? "
                              "ORDER BY id", (after_s,)).fetchall()
        finally:
            db.close()
        return [{"time_s": t, "kind": k, "message": m, "data": d} for t, k, m, d in rows]

    def now_s(self) -> float:
        assert self.clock is not None
        return self.clock.now_s()

    def assert_inside_hard_limits(self) -> None:
        for ax in self.mount.axes.values():
            assert ax.hard_low_deg <= ax.min_true_deg, (ax.name, ax.min_true_deg)
            assert ax.max_true_deg <= ax.hard_high_deg, (ax.name, ax.max_true_deg)


# =========================================================================== the matrix
class Row(NamedTuple):
    key: str
    fault: str
    injected: str
    reaction: str
    state: str
    logged: str
    operator: str


#: The fault matrix: one daemon test per row (``test_<key>``); docs/faults.md holds this table.
MATRIX: list[Row] = [
    Row("link_dropped", "Modbus link dropped (server gone about 3 s)",
        "`handle.stop()`, restarted on the same port; a single `drop_connection()` first",
        "a single dropped connection is reconnected within the 0.5 s grace (no fault); a link "
        "lost for longer is a fault; the drives ramp to zero by their own watchdog",
        "fault", "`fault` event `link_down`; drive latches `watchdog`",
        "restore the link, `tracker reset` (the mount holds), `tracker track start`"),
    Row("slow_responses", "responses slower than the timeout",
        "`delay_responses(0.6)` (timeout 0.25 s)",
        "after 0.5 s of timeouts: fault, drives commanded to hold/stop",
        "fault", "`fault` event `timeout`", "fix the link, `tracker reset`"),
    Row("garbled_frames", "garbled frames",
        "`garble(1)`, then `garble(-1)` (every reply)",
        "one garbled reply is ignored; persistent garbling: fault",
        "fault", "`fault` event `garbled_frame`", "fix the line, `tracker reset`"),
    Row("modbus_exception", "Modbus exception responses",
        "`exception(4, -1)` (server device failure)",
        "after 0.5 s: fault", "fault", "`fault` event `protocol_exception`",
        "check the drive, `tracker reset`"),
    Row("drive_trip", "drive trip (overcurrent)", "`trip('elevation', OVERCURRENT)`",
        "both axes stop and hold", "fault", "`fault` event `elevation: overcurrent`",
        "find the cause, `tracker reset` (the mount holds), `tracker track start`"),
    Row("encoder_jump", "encoder jump (0.5 deg)", "`encoder_jump('azimuth', 0.5)`",
        "both axes stop and hold", "fault", "`fault` event `azimuth: encoder_jump`",
        "re-reference the encoder, then `tracker reset` (a reset alone would track 0.5 deg off)"),
    Row("limit_switch", "hard limit switch", "`limit_switch('elevation')`",
        "drive brakes; both axes stop", "fault", "`fault` event `elevation: limit_switch`",
        "inspect the mount, `tracker reset`"),
    Row("estop", "emergency stop", "`estop(True)`",
        "safe torque off; `reset` is refused (409) while the chain is open", "estop",
        "`fault` event `estop`; refused reset audited", "release the e-stop, `tracker reset`"),
    Row("following_error", "following error (azimuth jammed)",
        "azimuth drive speed limited to 1e-6 deg/s; limit 60 arcsec, grace 1 s",
        "fault after the grace time; axes hold", "fault", "`fault` event `following error`",
        "free the axis, `tracker reset`"),
    Row("wind", "wind over the limit", "`wind(20)` (stow 15 m/s), then `wind(2)`; drives over "
        "Modbus TCP, OPC UA and serial in turn",
        "stow; commands refused while stowed; resumes after `weather.calm_s` of calm "
        "(auto_resume)", "stowing -> stowed -> tracking",
        "`state` events with the 3 s gust from the Modbus anemometer, `info` wind calm", "none (or `tracker stow`)"),
    Row("anemometer_lost", "anemometer lost", "the Modbus anemometer server stopped "
        "(`weather.max_age_s` 3 s); drives over Modbus TCP, OPC UA and serial in turn",
        "stow within `max_age_s` + 2 s (`stow_on_sensor_loss`)", "stowing -> stowed",
        "`warning` event `anemometer lost: last valid reading ... (limit 3 s)`, `state` event",
        "repair the sensor; `tracker track start` once it reads again"),
    Row("clock_jump", "clock jump +-1 h", "daemon clock offset +3600 s / -3600 s",
        "re-plan; tracking re-acquires the Sun at the new time", "tracking",
        "`warning` event `clock jumped by +3600.0 s; re-planning` (or -3599.9 s)", "check NTP/the system clock"),
    Row("stale_iers", "stale IERS table (time beyond it)", "daemon clock in 2028",
        "tracking continues (UT1 held at the table's last value)", "tracking",
        "`warning` event `stale IERS table`; status `data_ages.iers_days_left` < 0",
        "install a newer astropy-iers-data"),
    Row("disk_full", "disk full for the log", "4 MiB tmpfs filled up",
        "tracking continues; rows kept in memory; written when space returns", "tracking",
        "status `log.healthy` false with the error; `warning` event after recovery",
        "free disk space"),
    Row("restart_in_fault", "daemon restarted while in fault",
        "`trip('elevation')`, daemon stopped, drives healthy again, daemon started on the same log",
        "starts holding in fault (the unacknowledged fault is read from the log); goto, stow "
        "and track are refused (409) and nothing moves", "fault",
        "`fault` event `unacknowledged fault from before the restart`",
        "`tracker reset` (the mount holds), `tracker track start`"),
    Row("clock_jump_during_jog", "clock jump back during a jog",
        "15 s jog, then the daemon clock set back 3600 s after 5 s",
        "the jog ends after its 15 s of monotonic time; the jump is reported", "manual",
        "`warning` event `clock jumped by -3600.0 s`", "check NTP/the system clock"),
    Row("sqlite_locked", "SQLite file locked by another process",
        "a process holds `BEGIN IMMEDIATE` for 3 s",
        "tracking continues; rows kept in memory; written when the lock goes", "tracking",
        "status `log.healthy` false; `warning` event after recovery",
        "stop the process holding the lock"),
]

DOCS = ROOT / "docs" / "faults.md"
TABLE_BEGIN = "<!-- fault-matrix: generated by `python -m tests.loop.test_faults`, checked by the tests -->"
TABLE_END = "<!-- end fault-matrix -->"


def render_table() -> str:
    head = ("| fault | how injected (test) | expected reaction | state | logged | operator |\n"
            "|---|---|---|---|---|---|\n")
    body = "".join(f"| {r.fault} | {r.injected} | {r.reaction} | {r.state} | {r.logged} | "
                   f"{r.operator} |\n" for r in MATRIX)
    return f"{TABLE_BEGIN}\n{head}{body}{TABLE_END}"


def write_docs() -> None:
    text = DOCS.read_text()
    i, j = text.index(TABLE_BEGIN), text.index(TABLE_END) + len(TABLE_END)
    DOCS.write_text(text[:i] + render_table() + text[j:])


# =========================================================================== the tests
pytestmark = [pytest.mark.faults, pytest.mark.network]


@pytest.fixture(scope="module")
def scene() -> tuple[dict, float]:
    """(config dict, daemon time inside a long tracking window)."""
    data = base_config()
    settings = config.parse(data, "<faults>")
    return data, tracking_time(settings, time.time())


def test_docs_table_is_the_matrix() -> None:
    assert render_table() in DOCS.read_text(), "docs/faults.md is stale: python -m tests.loop.test_faults"
    tests = {n[5:] for n in globals() if n.startswith("test_")}
    assert {r.key for r in MATRIX} <= tests


def faults_since(rig: DaemonRig, t_s: float) -> list[dict]:
    return [e for e in rig.events(t_s) if e["kind"] == "fault"]


async def fault_then_reset(rig: DaemonRig, inject: Callable[[], Any], text: str, *,
                           repair: Callable[[], Any] | None = None, state: str = "fault",
                           detect_s: float = 5.0) -> dict:
    """Tracking -> inject -> the expected state, a fault event containing ``text``, the mount
    stopped -> repair -> `reset` through the API -> tracking on the Sun again."""
    await rig.tracking()
    t0 = rig.now_s()
    res = inject()
    if asyncio.iscoroutine(res):
        await res
    st, waited = await rig.wait_for(lambda s: s["state"] == state, detect_s, state)
    # The log commits in batches: the fault event reaches the file within a commit interval.
    for _ in range(50):
        if any(text in e["message"] for e in faults_since(rig, t0)):
            break
        await asyncio.sleep(0.1)
    assert any(text in e["message"] for e in faults_since(rig, t0)), rig.events(t0)
    await asyncio.sleep(2.0)
    for ax in rig.mount.axes.values():
        assert abs(ax.velocity_deg_s) < 1e-3, (ax.name, ax.velocity_deg_s)   # stopped
    if repair is not None:
        res = repair()
        if asyncio.iscoroutine(res):
            await res
    r = await rig.post("reset")
    assert r.status_code == 200, r.text
    # A reset acknowledges and holds: nothing moves until automatic tracking is asked for.
    await asyncio.sleep(2.0)
    st = await rig.status()
    assert st["state"] == "idle" and not st["auto_tracking"], st["state"]
    for ax in rig.mount.axes.values():
        assert abs(ax.velocity_deg_s) < 1e-3, (ax.name, ax.velocity_deg_s)
    r = await rig.post("track", {"on": True})
    assert r.status_code == 200, r.text
    await rig.tracking(30.0)
    rig.assert_inside_hard_limits()
    return {"detect_s": waited}


async def test_link_dropped(tmp_path, scene):
    data, t_s = scene
    async with DaemonRig(tmp_path, data, t_s) as rig:
        await rig.tracking()
        t0 = rig.now_s()
        assert rig.faults.drop_connection() >= 1
        await asyncio.sleep(1.5)
        st = await rig.status()
        assert st["state"] == "tracking" and not faults_since(rig, t0)   # reconnected in grace
        port = rig.handle.port

        async def pull() -> None:
            await rig.handle.stop()

        async def plug() -> None:
            await asyncio.sleep(1.0)
            assert rig.mount.azimuth.condition is Condition.WATCHDOG    # drives stopped alone
            rig.handle, _ = await start_modbus_tcp_server(rig.mount, port=port)
            rig.faults.server = rig.handle
            # The operator waits for the link (reconnect back-off up to a few s), then resets:
            # the drives report the watchdog they latched while the link was down.
            st, _ = await rig.wait_for(lambda s: all(a["condition"] == "watchdog"
                                                     for a in s["axes"].values()), 15.0,
                                       "link back, drives showing their watchdog")

        await fault_then_reset(rig, pull, "link_down", repair=plug)


async def test_slow_responses(tmp_path, scene):
    data, t_s = scene
    async with DaemonRig(tmp_path, data, t_s) as rig:
        await fault_then_reset(rig, lambda: rig.faults.delay_responses(0.6), "timeout",
                               repair=rig.faults.clear)


async def test_garbled_frames(tmp_path, scene):
    data, t_s = scene
    async with DaemonRig(tmp_path, data, t_s) as rig:
        await rig.tracking()
        t0 = rig.now_s()
        rig.faults.garble(1)
        await asyncio.sleep(1.0)
        assert (await rig.status())["state"] == "tracking" and not faults_since(rig, t0)
        await fault_then_reset(rig, lambda: rig.faults.garble(-1), "garbled_frame",
                               repair=rig.faults.clear)


async def test_modbus_exception(tmp_path, scene):
    data, t_s = scene
    async with DaemonRig(tmp_path, data, t_s) as rig:
        await fault_then_reset(rig, lambda: rig.faults.exception(4, -1), "protocol_exception",
                               repair=rig.faults.clear)


async def test_drive_trip(tmp_path, scene):
    data, t_s = scene
    async with DaemonRig(tmp_path, data, t_s) as rig:
        await fault_then_reset(rig, lambda: rig.faults.trip("elevation", Condition.OVERCURRENT),
                               "elevation: overcurrent")


async def test_restart_in_fault(tmp_path, scene):
    data, t_s = scene
    db = tmp_path / "tracker.sqlite"
    async with DaemonRig(tmp_path, data, t_s, db_path=db) as rig:
        await rig.tracking()
        rig.faults.trip("elevation", Condition.OVERCURRENT)
        await rig.wait_for(lambda s: s["state"] == "fault", 5.0, "fault")
        assert await rig.stop() == 0
    t_restart = t_s + 120.0
    async with DaemonRig(tmp_path, data, t_restart, db_path=db) as rig:
        st, _ = await rig.wait_for(lambda s: s["state"] == "fault", 10.0, "fault at start")
        start = {n: a.true_position_deg for n, a in rig.mount.axes.items()}
        for command, body in (("goto", {"az_deg": st["sun"]["azimuth_deg"], "el_deg": 0.0}),
                              ("stow", None), ("track", {"on": True})):
            r = await rig.post(command, body)
            assert r.status_code == 409 and "reset" in r.json()["detail"], (command, r.text)
        await asyncio.sleep(5.0)
        assert (await rig.status())["state"] == "fault"
        moved = {n: abs(a.true_position_deg - start[n]) for n, a in rig.mount.axes.items()}
        assert max(moved.values()) < 0.005, moved
        assert any("unacknowledged fault from before the restart" in e["message"]
                   for e in rig.events(t_s))
        assert (await rig.post("reset")).status_code == 200
        await asyncio.sleep(2.0)
        assert (await rig.status())["state"] == "idle"
        assert (await rig.post("track", {"on": True})).status_code == 200
        await rig.tracking(60.0)
        rig.assert_inside_hard_limits()


async def test_clock_jump_during_jog(tmp_path, scene):
    data, t_s = scene
    async with DaemonRig(tmp_path, data, t_s) as rig:
        await rig.tracking()
        el0 = rig.mount.elevation.true_position_deg
        r = await rig.post("jog", {"axis": "el", "rate_deg_s": -0.05, "seconds": 15.0})
        assert r.status_code == 200, r.text
        await asyncio.sleep(5.0)
        rig.clock.offset_s -= 3600.0
        await asyncio.sleep(15.0)
        st = await rig.status()
        assert abs(rig.mount.elevation.velocity_deg_s) < 1e-3, st["task"]
        assert rig.mount.elevation.true_position_deg - el0 == pytest.approx(-0.75, abs=0.1)
        assert any("clock jumped by -3600" in e["message"] for e in rig.events(t_s - 7200.0))


async def test_encoder_jump(tmp_path, scene):
    data, t_s = scene
    async with DaemonRig(tmp_path, data, t_s) as rig:
        await fault_then_reset(rig, lambda: rig.faults.encoder_jump("azimuth", 0.5),
                               "azimuth: encoder_jump",
                               repair=rig.mount.azimuth.clear_encoder_offset)
        # On the true Sun again, not 0.5 deg off.
        az, _ = sun_axes(rig.settings, rig.now_s())
        assert same_direction_deg(rig.mount.azimuth.true_position_deg, az) < 0.01


async def test_limit_switch(tmp_path, scene):
    data, t_s = scene
    async with DaemonRig(tmp_path, data, t_s) as rig:
        await fault_then_reset(rig, lambda: rig.faults.limit_switch("elevation"),
                               "elevation: limit_switch")


async def test_estop(tmp_path, scene):
    data, t_s = scene
    async with DaemonRig(tmp_path, data, t_s) as rig:

        async def release() -> None:
            r = await rig.post("reset")                  # the chain is still open: refused
            assert r.status_code == 409, r.text
            assert (await rig.status())["state"] == "estop"
            rig.faults.estop(False)

        await fault_then_reset(rig, lambda: rig.faults.estop(True), "estop", repair=release,
                               state="estop")
        db = sqlite3.connect(f"file:{rig.db_path}?mode=ro", uri=True)
        resets = db.execute("SELECT source, ok, result FROM audit WHERE command = 'reset' "
                            "ORDER BY id").fetchall()
        db.close()
        assert [r[1] for r in resets] == [0, 1], resets          # refused, then accepted
        assert resets[0][0] == "api:127.0.0.1" and "estop" in resets[0][2], resets


async def test_following_error(tmp_path, scene):
    data, t_s = scene
    data = merge(data, {"tracking": {"following_error_limit_arcsec": 60.0,
                                     "following_error_grace_s": 1.0}})
    async with DaemonRig(tmp_path, data, t_s) as rig:
        speed = rig.mount.azimuth.max_speed_deg_s

        def jam() -> None:
            rig.mount.azimuth.max_speed_deg_s = 1e-6

        def free() -> None:
            rig.mount.azimuth.max_speed_deg_s = speed

        await fault_then_reset(rig, jam, "following error", repair=free, detect_s=30.0)


@pytest.mark.parametrize("drives", ["modbus", "opcua", "serial"])
async def test_wind(tmp_path, scene, drives):
    """The stow does not depend on how the drives are wired: Modbus TCP, OPC UA or serial."""
    data, t_s = scene
    settings = config.parse(data, "<wind>")
    az, _ = sun_axes(settings, t_s)
    stow_az = az + (10.0 if az < 200.0 else -10.0)
    data = merge(data, {"weather": {"calm_s": 3.0},
                        "positions": {"stow": {"azimuth_deg": stow_az, "elevation_deg": 0.0},
                                      "park": data["positions"]["park"]}})
    async with DaemonRig(tmp_path, data, t_s, drives=drives) as rig:
        await rig.tracking()
        assert (await rig.http.get("/info")).json()["drives"] == drives
        t0 = rig.now_s()
        rig.faults.wind(20.0)
        await rig.wait_for(lambda s: s["state"] in ("stowing", "stowed"), 5.0, "stowing")
        st, _ = await rig.wait_for(lambda s: s["state"] == "stowed", 30.0, "stowed")
        assert st["wind_stowed"]
        assert rig.mount.azimuth.encoder_deg == pytest.approx(stow_az, abs=0.01)
        r = await rig.post("goto", {"az_deg": 180.0, "el_deg": 5.0})
        assert r.status_code == 409 and "wind" in r.text
        rig.faults.wind(2.0)
        await rig.tracking(30.0)
        ev = rig.events(t0)
        assert any(e["kind"] == "state" and "-> stowing" in e["message"] and "wind gust" in
                   e["message"] and "(3 s mean) above 15 m/s" in e["message"] for e in ev), ev
        assert any(e["kind"] == "info" and "wind calm" in e["message"] for e in ev), ev
        rig.assert_inside_hard_limits()


@pytest.mark.parametrize("drives", ["modbus", "opcua", "serial"])
async def test_anemometer_lost(tmp_path, scene, drives):
    """A silent anemometer stows the mount, whatever link the drives are on."""
    data, t_s = scene
    max_age_s = 3.0
    data = merge(data, {"weather": {"max_age_s": max_age_s},
                        "positions": {"stow": data["positions"]["park"],
                                      "park": data["positions"]["park"]}})
    async with DaemonRig(tmp_path, data, t_s, drives=drives) as rig:
        await rig.tracking()
        t0 = rig.now_s()
        await rig.anemometer.stop()
        _, waited_s = await rig.wait_for(lambda s: s["state"] in ("stowing", "stowed"),
                                         max_age_s + 2.0 + 2.0, "stowing on sensor loss")
        assert waited_s <= max_age_s + 2.0 + 0.5        # + 0.5 s: the status poll's own period
        await rig.wait_for(lambda s: s["state"] == "stowed", 60.0, "stowed")
        for _ in range(50):
            ev = rig.events(t0)
            if any("anemometer lost" in e["message"] for e in ev if e["kind"] == "warning"):
                break
            await asyncio.sleep(0.1)
        assert any(e["kind"] == "warning" and "anemometer lost: last valid reading" in
                   e["message"] and f"(limit {max_age_s:g} s)" in e["message"] for e in ev), ev
        assert any(e["kind"] == "state" and "-> stowing" in e["message"] for e in ev), ev
        rig.assert_inside_hard_limits()


@pytest.mark.parametrize("jump_s", [3600.0, -3600.0])
async def test_clock_jump(tmp_path, scene, jump_s):
    data, t_s = scene
    async with DaemonRig(tmp_path, data, t_s) as rig:
        await rig.tracking()
        t0 = rig.now_s()
        rig.clock.offset_s += jump_s
        await rig.wait_for(lambda s: s["state"] == "tracking" and s["on_sun"]
                           and abs(s["time_s"] - t0 - jump_s) < 300, 60.0, "re-acquired")
        ev = [e for e in rig.events(min(t0, t0 + jump_s) - 10) if e["kind"] == "warning"]
        assert any("clock jumped by" in e["message"]
                   and abs(json.loads(e["data"])["jump_s"] - jump_s) < 1.0 for e in ev), ev
        az, el = sun_axes(rig.settings, rig.now_s())
        assert same_direction_deg(rig.mount.azimuth.true_position_deg, az) < 0.02
        assert abs(rig.mount.elevation.true_position_deg - el) < 0.02
        rig.assert_inside_hard_limits()


async def test_stale_iers(tmp_path):
    data = base_config()
    first, last, _ = iers_mjd_range()
    beyond_s = (last - 40587.0 + 120.0) * 86400.0         # 120 days after the table's end
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StaleIERSWarning)     # planning the test's own time
        t_s = tracking_time(config.parse(data, "<iers>"), beyond_s)
    async with DaemonRig(tmp_path, data, t_s) as rig:
        st = await rig.tracking()
        assert st["data_ages"]["iers_days_left"] < 0
        ev = [e for e in rig.events() if e["kind"] == "warning"]
        assert any("stale IERS table" in e["message"] for e in ev), ev
        await asyncio.sleep(2.0)
        st = await rig.status()
        assert st["state"] == "tracking" and st["on_sun"] and st["loop"]["errors"] == 0
        rig.assert_inside_hard_limits()


def _sample_gaps(db_path: Path, t0: float) -> tuple[int, float]:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    times = [t for (t,) in db.execute("SELECT time_s FROM samples WHERE time_s >= ? "
                                      "ORDER BY time_s", (t0,))]
    db.close()
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    return len(times), max(gaps) if gaps else math.inf


async def _log_outage(rig: DaemonRig, block: Callable[[], Any], unblock: Callable[[], Any],
                      what: str) -> None:
    await rig.tracking()
    t0 = rig.now_s()
    block()
    st, _ = await rig.wait_for(lambda s: s["log"]["healthy"] is False, 10.0, "log unhealthy")
    assert what in (st["log"]["last_error"] or ""), st["log"]
    await asyncio.sleep(2.0)
    st = await rig.status()
    # Tracking goes on (the store may already write again into what its WAL freed).
    assert st["state"] == "tracking" and st["on_sun"], st["state"]
    unblock()
    await rig.wait_for(lambda s: s["log"]["healthy"] is True, 15.0, "log healthy again")
    await asyncio.sleep(1.5)
    n, gap = _sample_gaps(rig.db_path, t0 - 2.0)
    assert n >= 5 and gap < 1.5, (n, gap)          # every second of the outage is in the file
    assert any(e["kind"] == "warning" for e in rig.events(t0)), rig.events(t0)
    assert (await rig.status())["loop"]["errors"] == 0
    rig.assert_inside_hard_limits()


async def test_disk_full(tmp_path, scene):
    data, t_s = scene
    fs = tmp_path / "fs"
    fs.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(fs)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    filler = fs / "filler"
    try:
        async with DaemonRig(tmp_path, data, t_s, db_path=fs / "log.sqlite") as rig:
            def fill() -> None:
                with open(filler, "wb") as f, contextlib.suppress(OSError):
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()

            await _log_outage(rig, fill, filler.unlink, "full")
    finally:
        subprocess.run(["umount", "-l", str(fs)], check=False)


async def test_sqlite_locked(tmp_path, scene):
    data, t_s = scene
    async with DaemonRig(tmp_path, data, t_s) as rig:
        holder: list[subprocess.Popen] = []
        code = ("import sqlite3, sys, time\n"
                "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                "db.execute('BEGIN IMMEDIATE')\n"
                "print('locked', flush=True)\n"
                "sys.stdin.readline()\n"
                "db.execute('COMMIT')\n")

        def lock() -> None:
            p = subprocess.Popen([sys.executable, "-c", code, str(rig.db_path)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert p.stdout.readline().strip() == "locked"
            holder.append(p)

        def unlock() -> None:
            p = holder.pop()
            p.communicate("\n", timeout=10)

        try:
            await _log_outage(rig, lock, unlock, "locked")
        finally:
            for p in holder:
                p.kill()
                p.wait()


if __name__ == "__main__":
    write_docs()


def _load_soak():
    import importlib.util
    if "benchmarks_soak" in sys.modules:
        return sys.modules["benchmarks_soak"]
    spec = importlib.util.spec_from_file_location("benchmarks_soak",
                                                  ROOT / "benchmarks" / "soak.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["benchmarks_soak"] = mod
    spec.loader.exec_module(mod)
    return mod


async def test_short_soak_every_fault_logged_and_recovered():
    """6 simulated hours with a fault every 20 min on average (the full soak: benchmarks/soak.py)."""
    soak = _load_soak()
    settings = config.load(ROOT / "config" / "sim.toml")
    rep = await soak.soak(settings, 1772359200.0, 0.25, seed=3, mean_interval_s=1200.0)
    print(rep.summary())
    assert not rep.exceptions, rep.exceptions[0]
    assert len(rep.injected) >= 8
    assert len({f.kind for f in rep.injected}) >= 4
    assert all(f.logged for f in rep.injected), rep.summary()
    assert all(f.recover_s is not None for f in rep.faults), rep.summary()
    assert not rep.unexpected, rep.summary()
    assert rep.inside_limits and rep.available_s > 3600.0 and rep.efficiency > 0.3


async def test_clock_jump_back_before_the_window_start_is_no_fault():
    """Engine level (simulated clock): tracking 10 min into a window, the clock jumps back 1 h
    to where the Sun is below the envelope: the window closes, no tick raises, no fault."""
    from tests.support.rig import Rig, first_window
    from tracker.control.machine import State

    sim = config.load(ROOT / "config" / "sim.toml")
    w = first_window(sim)
    rig = Rig(sim, w.start_s + 600.0, at=(w.entry_axis_az_deg, w.entry_axis_el_deg))
    await rig.engine.start()
    await rig.run(300.0, until=lambda e: e.on_sun)
    assert rig.engine.machine.state is State.TRACKING
    rig.clock.set(rig.clock.now_s() - 3600.0)
    await rig.run(5.0)                         # a tick that raises fails this test
    assert rig.engine.machine.state not in (State.FAULT, State.ESTOP, State.TRACKING)
    assert not rig.engine.fault_history
    await rig.run(3600.0, until=lambda e: e.on_sun)
    assert rig.engine.machine.state is State.TRACKING and rig.engine.on_sun
    rig.assert_inside_hard_limits()
