"""Crash safety: the mount (``tracker simulate``, its own process) outlives the daemon.

The daemon (``tracker daemon``) runs against the simulator over Modbus TCP with the same
config file and ``--time-offset-s`` (the Sun inside a tracking window).  SIGKILL while
tracking: the log stays whole and the restarted daemon is on the Sun again within 5 s of
its start.  A stalled event loop (SIGSTOP longer than the drive watchdog): the drives stop
by themselves (seen through our own Modbus connection to the simulator), and the daemon,
when it runs again, reports the fault; an operator ``reset`` resumes tracking.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from drivers.modbus import make_modbus_axes
from tests.support.daemon import DaemonProcess, SimulatorProcess, free_port, make_config
from tracker import config
from tracker.mount.axis import AxisState, Condition

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.network]


class Rehearsal:
    """``tracker simulate`` on a free port with a tmp copy of config/sim-modbus.toml."""

    def __init__(self, tmp_path: Path) -> None:
        self.modbus_port = free_port()
        self.path, self.offset = make_config(tmp_path, base="sim-modbus.toml")
        text = self.path.read_text().replace("port = 5020", f"port = {self.modbus_port}")
        self.path.write_text(text)
        self.settings = config.load(self.path)
        assert self.settings.drives.modbus.port == self.modbus_port
        self.db = tmp_path / "tracker.sqlite"
        self.sim = SimulatorProcess(self.path, offset_s=self.offset, ready_text="modbus tcp")

    def daemon(self) -> DaemonProcess:
        return DaemonProcess(self.path, time_offset_s=self.offset)

    def drives(self) -> dict[str, AxisState]:
        """Both drives read over our own Modbus connection (independent of the daemon)."""
        async def read() -> dict[str, AxisState]:
            axes = make_modbus_axes(self.settings, time.time, port=self.modbus_port)
            out = {}
            for name, axis in axes.items():
                await axis.connect()
                out[name] = await axis.read()
                await axis.close()
            return out
        return asyncio.run(read())

    def close(self) -> None:
        self.sim.stop()


@pytest.fixture
def rehearsal(tmp_path):
    r = Rehearsal(tmp_path)
    yield r
    r.close()


def on_sun(s: dict) -> bool:
    return s["state"] == "tracking" and bool(s["on_sun"])


def test_sigkill_while_tracking_log_whole_and_back_on_the_sun(rehearsal):
    r = rehearsal
    d = r.daemon().wait_ready()
    try:
        d.wait_for(on_sun, 60.0, "tracking on the Sun")
        time.sleep(3.0)
        t_kill = time.time() + r.offset
        d.proc.kill()                                    # SIGKILL: no handler, no flush
        d.proc.wait(10)
    finally:
        d.kill()
    # The mount outlives the daemon: its watchdog (1 s) ramps both drives to zero.
    time.sleep(2.0)
    assert r.sim.alive()
    first = r.drives()
    time.sleep(1.0)
    for name, st in r.drives().items():
        assert st.condition is Condition.WATCHDOG, (name, st)
        # Stopped and holding (the drive's position loop against wind and backlash).
        assert abs(st.velocity_deg_s) < 1e-3, (name, st)
        assert abs(st.position_deg - first[name].position_deg) < 0.002, (name, st, first[name])
    # The log: whole, and every second up to the last one before the kill.
    db = sqlite3.connect(r.db)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    times = [t for (t,) in db.execute("SELECT time_s FROM samples ORDER BY time_s")]
    db.close()
    assert times[-1] >= t_kill - 2.0, (t_kill - times[-1])   # 1 s log interval + 1 s commit
    assert len(times) >= 5
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) < 1.5   # no gap
    # Restart: the stale watchdog latch is cleared at start, tracking resumes by itself.
    spawned = time.monotonic()
    d2 = r.daemon()
    try:
        d2.wait_ready()
        st = d2.wait_for(on_sun, 30.0, "on the Sun after the restart")
        db = sqlite3.connect(r.db)
        (started,) = db.execute("SELECT max(time_s) FROM events WHERE message LIKE "
                                "'engine started%'").fetchone()
        warned = db.execute("SELECT count(*) FROM events WHERE kind = 'warning' AND message "
                            "LIKE '%watchdog latched while no controller%' AND time_s >= ?",
                            (t_kill,)).fetchone()[0]
        db.close()
        assert started > t_kill and warned == 2
        back_s = st["time_s"] - started
        print(f"on the Sun {back_s:.2f} s after the restarted engine started, "
              f"{time.monotonic() - spawned:.2f} s after the process was spawned")
        assert back_s < 5.0
        assert st["pointing_error_arcsec"] < r.settings.tracking.on_sun_tolerance_arcsec
        assert d2.stop(signal.SIGTERM) == 0, d2.output()
    finally:
        d2.kill()


def test_event_loop_stall_drives_stop_by_themselves_then_reset(rehearsal):
    r = rehearsal
    d = r.daemon().wait_ready()
    try:
        d.wait_for(on_sun, 60.0, "tracking on the Sun")
        d.proc.send_signal(signal.SIGSTOP)               # the loop stalls for 3 s
        try:
            time.sleep(1.8)
            stalled = r.drives()
            time.sleep(1.2)
        finally:
            d.proc.send_signal(signal.SIGCONT)
        for name, st in stalled.items():
            assert st.condition is Condition.WATCHDOG, (name, st)
            assert abs(st.velocity_deg_s) < 1e-3, (name, st)
        # As designed: the daemon sees the latched watchdog as a fault and holds.
        st = d.wait_for(lambda s: s["state"] == "fault", 10.0, "fault after the stall")
        assert any(f["condition"] == "watchdog" for f in st["faults"]), st["faults"]
        resp = d.post("reset")
        assert resp.status_code == 200, resp.text
        time.sleep(1.0)                                  # a reset holds: still idle
        assert d.status()["state"] == "idle"
        assert d.post("track", {"on": True}).status_code == 200
        d.wait_for(on_sun, 30.0, "tracking again after the reset and 'track on'")
        assert d.stop(signal.SIGTERM) == 0, d.output()
    finally:
        d.kill()
    db = sqlite3.connect(r.db)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
