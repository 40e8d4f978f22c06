"""``tracker daemon`` as a real subprocess on a free loopback port, and its config copies.

``make_config`` writes a tmp copy of a preset (token + log in tmp_path) whose park position is
the Sun's axis position inside a tracking window; ``--time-offset-s`` puts the daemon's clock
there, so it starts next to the Sun and tests do not wait minutes for slews.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import tomllib
from pathlib import Path

import httpx

from tests.support import ROOT, TRACKER
from tests.support.toml_dump import dump_toml
from tracker import config
from tracker.service import auth

__all__ = ["ROOT", "TRACKER", "DaemonProcess", "SimulatorProcess", "free_port", "make_config",
           "window_time"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def window_time(settings: config.Settings, *, into_s: float = 120.0,
                before_end_s: float | None = None) -> tuple[float, dict]:
    """A time ``into_s`` after the start (or ``before_end_s`` before the end) of the next
    tracking window longer than 30 min, and that window."""
    from tracker.planning.planner import plan

    start = time.time()
    p = plan(settings, start, start + 2 * 86400.0)
    for w in p.windows:
        if w.end_s - w.start_s > abs(into_s) + 1800.0 and not (w.clipped_start or w.clipped_end):
            t_s = w.start_s + into_s if before_end_s is None else w.end_s - before_end_s
            return t_s, w.to_json()
    raise AssertionError("no tracking window of more than 30 min in the next 2 days")


def make_config(tmp_path: Path, *, fast: bool = True, window: bool = True,
                base: str = "sim.toml", into_s: float = 120.0, before_end_s: float | None = None,
                **sections: dict) -> tuple[Path, float]:
    """A tmp copy of sim.toml (token + log in tmp_path); returns (path, time offset, seconds).

    The park position is set to where the mount points at the Sun ``into_s`` into a
    window (so the daemon starts on the Sun); ``fast`` raises the axis speeds so that
    test slews take seconds.  ``sections`` override keys per section.  With
    ``window=False`` the park position stays and the offset is 0 (no planning: faster).
    """
    data = tomllib.loads((ROOT / "config" / base).read_text())
    if "modbus" in data.get("drives", {}):
        data["drives"]["modbus"]["register_map"] = str(ROOT / "config" / "modbus_map.toml")
    if "modbus" in data.get("weather", {}):
        # `tracker simulate` serves its wind there (a Modbus TCP anemometer).
        data["weather"]["modbus"]["port"] = free_port()
    data["api"]["token_file"] = str(tmp_path / "token")
    data["store"]["path"] = str(tmp_path / "tracker.sqlite")
    if fast:
        data["axes"]["azimuth"] = {"max_speed_deg_s": 3.0, "max_accel_deg_s2": 3.0}
        data["axes"]["elevation"] = {"max_speed_deg_s": 2.0, "max_accel_deg_s2": 2.0}
    data["tracking"]["settle_s"] = 2.0
    data["tracking"]["preposition_margin_s"] = 10.0
    if not window:
        for section, values in sections.items():
            data.setdefault(section, {}).update(values)
        path = tmp_path / "sim.toml"
        path.write_text(dump_toml(data))
        config.load(path)
        return path, 0.0
    settings = config.parse(data, str(tmp_path / "sim.toml"))
    t_s, win = window_time(settings, into_s=into_s, before_end_s=before_end_s)
    # Start next to the Sun: at the window's entry (or exit) axis position, moved 0.5 deg
    # inside the envelope when it lies on an elevation limit.
    end = "exit" if before_end_s is not None else "entry"
    az, el = win[f"{end}_axis_az_deg"], win[f"{end}_axis_el_deg"]
    el_min, el_max = data["envelope"]["elevation_min_deg"], data["envelope"]["elevation_max_deg"]
    el = min(max(el, el_min + 0.5), el_max - 0.5)
    data["positions"]["park"] = {"azimuth_deg": round(az, 3), "elevation_deg": round(el, 3)}
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    path = tmp_path / "sim.toml"
    path.write_text(dump_toml(data))
    config.load(path)  # must be valid
    return path, t_s - time.time()


class DaemonProcess:
    """``tracker daemon`` in a subprocess; ``url``, ``token``, ``stop()`` -> exit status."""

    def __init__(self, config_path: Path, *, time_offset_s: float = 0.0,
                 port: int | None = None, extra: tuple[str, ...] = ()) -> None:
        self.config_path = config_path
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = config.load(config_path)
        self.token_file = auth.token_path(self.settings)
        args = [TRACKER, "daemon", "--config", str(config_path), "--api-port", str(self.port),
                "--time-offset-s", repr(time_offset_s), *extra]
        self.log_path = config_path.parent / f"daemon-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=config_path.parent)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 90.0) -> DaemonProcess:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.output()}")
            try:
                r = httpx.get(f"{self.url}/api/v1/status", timeout=1.0)
                if r.status_code == 200 and r.json().get("state"):
                    self.token = self.token_file.read_text().strip()
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise AssertionError(f"daemon not ready after {timeout_s} s:\n{self.output()}")

    def status(self) -> dict:
        return httpx.get(f"{self.url}/api/v1/status", timeout=5.0).json()

    def post(self, path: str, body: dict | None = None, *, token: str | None = "default",
             ) -> httpx.Response:
        headers = {}
        if token == "default":
            token = self.token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.post(f"{self.url}/api/v1/{path}", json=body, headers=headers, timeout=10.0)

    def wait_for(self, predicate, timeout_s: float, what: str) -> dict:
        deadline = time.monotonic() + timeout_s
        st = self.status()
        while not predicate(st):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; "
                                     f"last status: {json.dumps(st, indent=1)[:3000]}")
            time.sleep(0.2)
            st = self.status()
        return st

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"daemon did not stop within {timeout_s} s") from None
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


class SimulatorProcess:
    """``tracker simulate --config PATH --time-offset-s OFFSET [extra]`` in a subprocess, its
    output in ``<config dir>/simulate.log``; ready once ``ready_text`` appears there.
    ``stdin_commands``: its stdin is a pipe for ``command()`` (``--stdin-commands``)."""

    def __init__(self, config_path: Path, *, offset_s: float, ready_text: str,
                 extra: tuple[str, ...] = (), stdin_commands: bool = False,
                 timeout_s: float = 60.0) -> None:
        self.log_path = config_path.parent / "simulate.log"
        self._log = open(self.log_path, "wb")
        args = [TRACKER, "simulate", "--config", str(config_path), "--time-offset-s",
                repr(offset_s), *extra]
        if stdin_commands:
            args.append("--stdin-commands")
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE if stdin_commands else subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while ready_text not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"simulator did not start:\n{self.output()}")
            time.sleep(0.1)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def command(self, line: str) -> None:
        """One line to the simulator's stdin commands (``trip azimuth overcurrent``...)."""
        assert self.proc.stdin is not None, "started without stdin_commands"
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM (SIGKILL after ``timeout_s``); the exit status."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode
