"""The operator CLI against the real daemon: messages, --json and exit codes.

The daemon's config copy carries its own free port, so the CLI finds the daemon
and the token from ``--config`` alone, as an operator would use it.  Most
commands run in-process with click's runner (real HTTP to the daemon process);
``--watch`` and ``--follow`` run as subprocesses stopped with SIGINT.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from click.testing import CliRunner

from tests.test_daemon import TRACKER, DaemonProcess, free_port, make_config
from tracker.cli.main import main

pytestmark = [pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    port = free_port()
    path, offset = make_config(tmp, api={"port": port})
    d = DaemonProcess(path, time_offset_s=offset, port=port).wait_ready()
    yield d
    d.kill()


def cli(d: DaemonProcess, *args: str):
    result = CliRunner().invoke(main, [*args[:1], "--config", str(d.config_path), *args[1:]])
    return result


def test_status_screen_and_json(daemon):
    daemon.wait_for(lambda s: s["state"] == "tracking" and s["on_sun"], 60.0, "tracking")
    r = cli(daemon, "status")
    assert r.exit_code == 0, r.output
    assert "state TRACKING" in r.stdout and "ON SUN" in r.stdout
    assert "azimuth" in r.stdout and "Faults    none" in r.stdout
    r = cli(daemon, "status", "--json")
    assert r.exit_code == 0
    st = json.loads(r.stdout)
    assert st["state"] == "tracking" and "loop" in st


def test_refusal_message_and_exit_code(daemon):
    r = cli(daemon, "goto", "--az", "180", "--el", "31")
    assert r.exit_code == 3
    assert "above the limit 25.0 deg" in r.stderr
    r = cli(daemon, "goto", "--az", "180", "--el", "31", "--json")
    assert r.exit_code == 3
    out = json.loads(r.stdout)
    assert out["ok"] is False and out["status"] == 422 and "31.0" in out["error"]
    r = cli(daemon, "goto", "--az", "180", "--el", "0", "--boresight", "rear")
    assert r.exit_code == 3 and "unknown boresight" in r.stderr
    assert daemon.status()["state"] == "tracking"


def test_bad_arguments_exit_2(daemon):
    r = cli(daemon, "jog", "--axis", "x", "--rate", "0.1", "--seconds", "1")
    assert r.exit_code == 2
    r = cli(daemon, "jog", "--axis", "az", "--rate", "0.1", "--seconds", "-1")
    assert r.exit_code == 2
    r = cli(daemon, "goto", "--az", "north", "--el", "0")
    assert r.exit_code == 2


def test_unreachable_daemon_exit_4(daemon):
    url = f"http://127.0.0.1:{free_port()}"
    r = cli(daemon, "status", "--url", url)
    assert r.exit_code == 4
    assert "cannot reach the tracker daemon" in r.stderr
    r = cli(daemon, "stop", "--url", url, "--json")
    assert r.exit_code == 4 and json.loads(r.stdout)["ok"] is False


def test_wrong_or_missing_token_exit_5(daemon, tmp_path):
    text = daemon.config_path.read_text()
    other = tmp_path / "other.toml"
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token\n")
    wrong.chmod(0o600)
    other.write_text(text.replace(str(daemon.token_file), str(wrong)))
    r = CliRunner().invoke(main, ["park", "--config", str(other)])
    assert r.exit_code == 5 and "token" in r.stderr
    other.write_text(text.replace(str(daemon.token_file), str(tmp_path / "missing")))
    r = CliRunner().invoke(main, ["park", "--config", str(other)])
    assert r.exit_code == 5 and "no API token file" in r.stderr
    assert daemon.status()["state"] == "tracking"


def test_manual_moves_park_and_track(daemon):
    d = daemon
    st = d.status()
    az = (st["sun"]["azimuth_deg"] + 2.0) % 360.0
    el = max(-20.0, min(20.0, st["sun"]["elevation_deg"]))
    r = cli(d, "goto", "--az", f"{az:.4f}", "--el", f"{el:.4f}")
    assert r.exit_code == 0, r.output
    assert "accepted (state now manual)" in r.stdout
    d.wait_for(lambda s: not s["slewing"] and s["pointing"]["az_deg"] is not None
               and abs(s["pointing"]["az_deg"] - az) < 0.01, 30.0, "goto arrival")
    az0 = d.status()["axes"]["azimuth"]["position_deg"]
    r = cli(d, "jog", "--axis", "az", "--rate", "-0.5", "--seconds", "1", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["command"] == "jog"
    st = d.wait_for(lambda s: not s["axes"]["azimuth"]["moving"] and not s["slewing"], 10.0,
                    "jog end")
    assert st["axes"]["azimuth"]["position_deg"] - az0 == pytest.approx(-0.5, abs=0.1)
    r = cli(d, "stop")
    assert r.exit_code == 0 and "state now idle" in r.stdout
    r = cli(d, "park")
    assert r.exit_code == 0 and "state now parking" in r.stdout
    d.wait_for(lambda s: s["state"] == "parked", 40.0, "parked")
    r = cli(d, "reset")
    assert r.exit_code == 0
    r = cli(d, "track", "start")                       # parked means nothing moves
    assert r.exit_code == 3 and "parked: 'unpark' first" in r.output
    r = cli(d, "unpark")
    assert r.exit_code == 0 and "state now idle" in r.stdout
    r = cli(d, "track", "start")
    assert r.exit_code == 0 and "automatic tracking started" in r.stdout
    d.wait_for(lambda s: s["state"] == "tracking" and s["on_sun"], 60.0, "tracking again")
    r = cli(d, "stow")
    assert r.exit_code == 0 and "state now stowing" in r.stdout
    r = cli(d, "stop")
    assert r.exit_code == 0
    r = cli(d, "track", "start")
    assert r.exit_code == 0
    d.wait_for(lambda s: s["state"] == "tracking", 60.0, "tracking after stow")


def test_events_list_and_json(daemon):
    r = cli(daemon, "events", "--limit", "200")
    assert r.exit_code == 0
    assert "api:127.0.0.1" in r.stdout and "goto refused" in r.stdout
    r = cli(daemon, "events", "--json", "--limit", "5")
    assert r.exit_code == 0
    events = json.loads(r.stdout)
    assert len(events) == 5 and [e["id"] for e in events] == sorted(e["id"] for e in events)


def test_watch_and_follow_stop_on_ctrl_c(daemon):
    base = ["--config", str(daemon.config_path)]
    watch = subprocess.Popen([TRACKER, "status", "--watch", "--interval", "0.3", *base],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    follow = subprocess.Popen([TRACKER, "events", "--follow", "--interval", "0.3", *base],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    r = CliRunner().invoke(main, ["stop", *base])   # an event for --follow to show
    assert r.exit_code == 0
    time.sleep(2.0)
    for p in (watch, follow):
        p.send_signal(signal.SIGINT)
    w_out, w_err = watch.communicate(timeout=20)
    f_out, f_err = follow.communicate(timeout=20)
    assert watch.returncode == 0, (w_err, w_out[-2000:])
    assert follow.returncode == 0, f_err
    assert w_out.count("helio-tracker  ") >= 3          # several refreshed screens
    assert "stop ok" in f_out                           # the new event arrived
