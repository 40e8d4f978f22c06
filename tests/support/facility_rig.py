"""A real daemon on a simulated mount in another process, for the facility interface tests.

``tracker simulate`` serves the mount over Modbus TCP on loopback and reads fault
commands from its stdin (``trip azimuth overcurrent``, ``estop on``...); ``tracker
daemon`` drives it over Modbus, its clock inside a tracking window, starting on the
Sun (tests.test_daemon.make_config).  ``truth()`` is the simulator's own record of
both axes (its ``status`` command), not the daemon's view.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.support.daemon import DaemonProcess, SimulatorProcess, free_port, make_config
from tracker import config


class FacilityRig:
    """Simulator process + daemon process; ``d`` is the ``DaemonProcess``."""

    def __init__(self, tmp: Path, **sections: dict) -> None:
        self.tmp = tmp
        modbus_port = free_port()
        # The daemon enables the drives, then spends ~1 s (gc, API start) before its first
        # tick: on a loaded 2-core CI machine that exceeded the 1 s drive watchdog and the
        # mount faulted at start-up.  These tests are about the facility interfaces.
        sections.setdefault("drives", {}).setdefault("watchdog_s", 5.0)
        path, offset = make_config(tmp, base="sim-modbus.toml", **sections)
        path.write_text(path.read_text().replace("port = 5020", f"port = {modbus_port}"))
        self.settings = config.load(path)
        assert self.settings.drives.modbus.port == modbus_port
        self.config_path = path
        self.offset_s = offset
        self.sim = SimulatorProcess(path, offset_s=offset, ready_text="modbus tcp",
                                    stdin_commands=True)
        self.sim_log_path = self.sim.log_path
        self.d = DaemonProcess(path, time_offset_s=offset).wait_ready()

    def sim_command(self, line: str) -> None:
        self.sim.command(line)

    def truth(self) -> dict[str, float]:
        """Axis encoder positions (deg) as the simulator reports them (its ``status``)."""
        before = self.sim_log_path.read_text().count("\nazimuth ") + \
            self.sim_log_path.read_text().count("; azimuth ")
        self.sim_command("status")
        deadline = time.monotonic() + 5.0
        while True:
            text = self.sim_log_path.read_text()
            lines = [ln for ln in text.splitlines() if ln.startswith("wind ")]
            if len(lines) > 0 and text.count("; azimuth ") > before:
                line = lines[-1]
                break
            assert time.monotonic() < deadline, "no status line from the simulator"
            time.sleep(0.05)
        out = {}
        for name in ("azimuth", "elevation"):
            m = re.search(rf"{name} (-?[0-9.]+) deg", line)
            assert m, line
            out[name] = float(m.group(1))
        return out

    def close(self) -> None:
        try:
            self.d.kill()
        finally:
            self.sim.stop()
