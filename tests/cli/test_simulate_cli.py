"""``tracker simulate`` as a real process: it listens, serves the mount in real time, stops on signals."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from drivers.modbus import make_modbus_axes
from tests.support import CONFIG_DIR, ROOT
from tracker import config
from tracker.mount.axis import Condition

pytestmark = pytest.mark.network

CMD = [sys.executable, "-c", "from tracker.cli.main import main; main()", "simulate"]


def start(*args: str, stdin=subprocess.DEVNULL) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([*CMD, *args], stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line


def stop(proc: subprocess.Popen, sig: int) -> tuple[int, str]:
    proc.send_signal(sig)
    out, _err = proc.communicate(timeout=10)
    return proc.returncode, out


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_simulate_serves_the_mount_in_real_time_and_stops_cleanly(sig):
    proc, line = start("--config", str(CONFIG_DIR / "sim-modbus.toml"), "--modbus-port", "0")
    try:
        assert line.startswith("modbus tcp 127.0.0.1:"), line
        port = int(line.split()[2].rsplit(":", 1)[1])
        settings = config.load(CONFIG_DIR / "sim-modbus.toml")
        axes = make_modbus_axes(settings, time.time, port=port)
        az = axes["azimuth"]
        await az.connect()
        a = await az.read()
        # at park; the encoder zero drifts by up to the preset's encoder_drift_arcsec
        assert a.ok and a.position_deg == pytest.approx(180.0, abs=1.0 / 3600.0)
        await az.enable()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:
            await az.command_velocity(0.2)  # heartbeats too
            await asyncio.sleep(0.05)
        a = await az.read()
        assert a.ok and a.moving
        # about 1 s of real time at up to 0.06 deg/s^2: a few hundredths of a degree
        elapsed = time.monotonic() - t0
        assert 0.005 < a.position_deg - 180.0 < 0.5 * 0.06 * (elapsed + 0.2) ** 2
        await asyncio.sleep(1.5)  # go quiet: the drive's watchdog (1 s) trips in real time
        a = await az.read()
        assert a.condition is Condition.WATCHDOG
        await az.close()
    finally:
        rc, out = stop(proc, sig)
    assert rc == 0
    assert "stopped" in out


def test_simulate_bad_config_exits_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[site]\nlatitude_deg = 123\n", encoding="utf-8")
    r = subprocess.run([*CMD, "--config", str(bad)], capture_output=True, text=True,
                       cwd=str(ROOT), timeout=30)
    assert r.returncode == 2
    assert "latitude_deg" in r.stderr


def test_simulate_port_in_use_exits_2():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([*CMD, "--config", str(CONFIG_DIR / "sim-modbus.toml"),
                            "--modbus-port", str(port)], capture_output=True, text=True,
                           cwd=str(ROOT), timeout=30, env={**os.environ})
    assert r.returncode == 2
    assert str(port) in r.stderr


@pytest.mark.slow
async def test_simulate_serial_pty_serves_the_same_mount():
    from drivers.serial import make_serial_axes

    proc, line = start("--config", str(CONFIG_DIR / "sim-modbus.toml"), "--modbus-port", "0",
                       "--serial-pty", "--no-anemometer")
    try:
        assert line.startswith("modbus tcp"), line
        assert proc.stdout is not None
        pty_line = proc.stdout.readline()
        assert pty_line.startswith("serial pty "), pty_line
        path = pty_line.split()[2]
        settings = config.load(CONFIG_DIR / "sim-modbus.toml")
        s = settings.model_copy(update={"drives": settings.drives.model_copy(update={
            "serial": settings.drives.serial.model_copy(update={"port": path})})})
        axes = make_serial_axes(s, time.time)
        el = axes["elevation"]
        await el.connect()
        e = await el.read()
        assert e.ok and e.position_deg == pytest.approx(0.0, abs=1e-4)
        await el.close()
    finally:
        rc, out = stop(proc, signal.SIGTERM)
    assert rc == 0 and "stopped" in out


@pytest.mark.slow
async def test_simulate_takes_fault_commands_on_stdin():
    proc, line = start("--config", str(CONFIG_DIR / "sim-modbus.toml"), "--modbus-port", "0",
                       "--stdin-commands", stdin=subprocess.PIPE)
    try:
        assert line.startswith("modbus tcp"), line
        port = int(line.split()[2].rsplit(":", 1)[1])
        assert proc.stdin is not None and proc.stdout is not None
        while "fault commands" not in proc.stdout.readline():
            pass
        settings = config.load(CONFIG_DIR / "sim-modbus.toml")
        el = make_modbus_axes(settings, time.time, port=port)["elevation"]
        await el.connect()
        assert (await el.read()).ok
        proc.stdin.write("trip elevation following_error\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "tripped elevation: following_error"
        e = await el.read()
        assert e.condition is Condition.FOLLOWING_ERROR and e.fault_code == 3
        proc.stdin.write("nonsense\n")
        proc.stdin.flush()
        assert proc.stdout.readline().startswith("error: unknown command")
        await el.close()
    finally:
        rc, out = stop(proc, signal.SIGINT)
    assert rc == 0 and "stopped" in out
