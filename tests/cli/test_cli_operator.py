"""The operator CLI against the real daemon: messages, --json and exit codes.

The daemon's config copy carries its own free port, so the CLI finds the daemon
and the token from ``--config`` alone, as an operator would use it.  Most
commands run in-process with click's runner (real HTTP to the daemon process);
``--watch`` and ``--follow`` run as subprocesses stopped with SIGINT.
"""

from __future__ import annotations

import json
import math
import os
import pty
import re
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from tests.support.daemon import ROOT, TRACKER, DaemonProcess, free_port, make_config
from tracker.cli import operator
from tracker.cli.main import main


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


@pytest.mark.network
@pytest.mark.slow
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


@pytest.mark.network
@pytest.mark.slow
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


@pytest.mark.network
@pytest.mark.slow
def test_bad_arguments_exit_2(daemon):
    r = cli(daemon, "jog", "--axis", "x", "--rate", "0.1", "--seconds", "1")
    assert r.exit_code == 2
    r = cli(daemon, "jog", "--axis", "az", "--rate", "0.1", "--seconds", "-1")
    assert r.exit_code == 2
    r = cli(daemon, "goto", "--az", "north", "--el", "0")
    assert r.exit_code == 2


@pytest.mark.network
@pytest.mark.slow
def test_unreachable_daemon_exit_4(daemon):
    url = f"http://127.0.0.1:{free_port()}"
    r = cli(daemon, "status", "--url", url)
    assert r.exit_code == 4
    assert "cannot reach the tracker daemon" in r.stderr
    r = cli(daemon, "stop", "--url", url, "--json")
    assert r.exit_code == 4 and json.loads(r.stdout)["ok"] is False


@pytest.mark.network
@pytest.mark.slow
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


@pytest.mark.network
@pytest.mark.slow
def test_manual_moves_park_and_track(daemon):
    d = daemon
    st = d.status()
    az = (st["sun"]["azimuth_deg"] + 2.0) % 360.0
    el = max(-20.0, min(20.0, st["sun"]["elevation_deg"]))
    r = cli(d, "goto", "--az", f"{az:.4f}", "--el", f"{el:.4f}")
    assert r.exit_code == 0, r.output
    assert "accepted (state now manual)" in r.stdout
    # while it moves: where to, and roughly when (2 deg at 3 deg/s: seconds, not minutes)
    out = cli(d, "status").stdout
    target = next(line for line in out.splitlines() if line.startswith("Target"))
    assert f"az {az:9.4f} deg" in target and "(sky direction)" in target
    assert re.search(r"ETA ~0m0\ds", target) or "arrived" in target, target
    assert "error to target" in out
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
    out = cli(d, "status").stdout
    assert "error to park" in out and "arcsec" in out    # to what, and no "off sun"
    assert "ON SUN" not in out and "off sun" not in out.lower()
    assert "manual (auto-tracking off)" in out
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


@pytest.mark.network
@pytest.mark.slow
def test_events_list_and_json(daemon):
    r = cli(daemon, "events", "--limit", "200")
    assert r.exit_code == 0
    assert "api:127.0.0.1" in r.stdout
    # a refused goto shows what was asked, once: no "refused: refused:"
    assert re.search(r"goto az_deg=180 el_deg=31 refused: sky azimuth", r.stdout), r.stdout
    assert "refused: refused" not in r.stdout
    r = cli(daemon, "events", "--json", "--limit", "5")
    assert r.exit_code == 0
    events = json.loads(r.stdout)
    # time order (a command's audit event is committed at once, the state change it causes a
    # tick later: ids alone are not in time order)
    assert len(events) == 5
    assert [e["time_s"] for e in events] == sorted(e["time_s"] for e in events)


@pytest.mark.network
@pytest.mark.slow
def test_watch_and_follow_stop_on_ctrl_c(daemon):
    base = ["--config", str(daemon.config_path)]
    watch = subprocess.Popen([TRACKER, "status", "--watch", "--interval", "0.3", *base],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    follow = subprocess.Popen([TRACKER, "events", "--follow", "--interval", "0.3", *base],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # both running (a start takes seconds on a loaded machine; Ctrl-C before the first
    # screen is click's "Aborted!", exit 1)
    w_first = watch.stdout.readline()
    f_first = follow.stdout.readline()
    time.sleep(1.0)
    r = CliRunner().invoke(main, ["stop", *base])   # an event for --follow to show
    assert r.exit_code == 0
    time.sleep(2.0)
    for p in (watch, follow):
        p.send_signal(signal.SIGINT)
    w_out, w_err = watch.communicate(timeout=20)
    f_out, f_err = follow.communicate(timeout=20)
    w_out, f_out = w_first + w_out, f_first + f_out
    assert watch.returncode == 0, w_err
    assert follow.returncode == 0, f_err
    assert w_out.count("helio-tracker  ") >= 3          # several refreshed screens
    assert "stop ok" in f_out                           # the new event arrived


@pytest.mark.network
@pytest.mark.slow
def test_status_units_widths_and_time_data(daemon):
    st = daemon.status()
    out = cli(daemon, "status").stdout
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 120, max(lines, key=len)
    ages = st["data_ages"]
    first = next(i for i, line in enumerate(lines) if line.startswith("Time data"))
    rest = [line for line in lines[first + 1:] if line.startswith(" " * 10) and line.strip()]
    time_line = " ".join([lines[first], *rest[:1]])
    # dates and versions carry no unit; UT1 in ms keeps its digits (0.003 s is not "0.0 s")
    assert f"IERS to {ages['iers_last_date']}" in time_line
    assert f"astropy-iers-data {ages['astropy_iers_data']}" in time_line
    assert not re.search(r"\d{4}-\d{2}-\d{2} s\b", time_line)
    assert not time_line.rstrip().endswith(" s")
    assert not re.search(r"\d+\.\d+\.\d+\S* s\b", time_line)   # a version is not seconds
    assert f"UT1 +/-{ages['ut1_uncertainty_s'] * 1000:.1f} ms" in time_line
    assert "ut1_uncertainty_s" not in out


def test_large_angles_read_in_degrees():
    assert operator.format_angle_arcsec(13.5) == "13.5 arcsec"
    assert operator.format_angle_arcsec(125.0) == "2.08 arcmin"
    assert operator.format_angle_arcsec(559271.0) == "155.353 deg"   # 559271 / 3600
    assert operator.format_angle_arcsec(float("nan")) == "-"


def test_fault_screen_wording():
    """A fault: the mode says tracking is held, the drive's text is not repeated."""
    st = {"time_utc": "2026-12-02T10:00:00.000Z", "time_s": 1796205600.0, "state": "fault",
          "auto_tracking": True, "boresight": "main", "task": "hold",
          "sun": {"azimuth_deg": 180.0, "elevation_deg": 10.0, "azimuth_rate_deg_s": 0.004,
                  "elevation_rate_deg_s": 0.0},
          "pointing": {"az_deg": 180.0, "el_deg": 10.0}, "target": {"az_deg": None, "el_deg": None},
          "pointing_error_arcsec": None, "on_sun": False,
          "axes": {"azimuth": {"position_deg": 180.0, "velocity_deg_s": 0.0, "enabled": False,
                               "moving": False, "limit": "none", "condition": "overcurrent",
                               "fault_text": "drive overcurrent", "fresh": True}},
          "faults": [{"source": "azimuth", "condition": "overcurrent",
                      "text": "drive overcurrent", "time_utc": "2026-12-02T09:59:58.000Z"}]}
    out = operator.render_status(st)
    assert "state FAULT   auto-tracking on, held by the fault" in out
    assert "auto-tracking ON" not in out
    assert "FAULT     azimuth: drive overcurrent (since 09:59:58 UTC)" in out
    assert "overcurrent drive overcurrent" not in out and "overcurrent overcurrent" not in out
    assert "error" not in out.split("Pointing", 1)[1].splitlines()[0]   # no target, no error
    coloured = operator.render_status(st, colour=True)
    assert "\x1b[31m" in coloured or "\x1b[91m" in coloured          # red on a terminal
    assert max(len(line) for line in out.splitlines()) <= 120


def test_bell_once_per_new_fault():
    tracking = {"state": "tracking", "faults": []}
    fault = {"state": "fault", "faults": [{"source": "azimuth", "condition": "overcurrent",
                                           "text": "drive overcurrent"}]}
    known, ring = operator.fault_alarm(set(), tracking)
    assert not ring and known == set()
    known, ring = operator.fault_alarm(known, fault)
    assert ring and "azimuth: drive overcurrent" in known
    known, ring = operator.fault_alarm(known, fault)       # the same fault: no second bell
    assert not ring
    second = {"state": "fault", "faults": [*fault["faults"], {"source": "elevation",
              "condition": "following_error", "text": ""}]}
    known, ring = operator.fault_alarm(known, second)      # another one: bell again
    assert ring
    known, ring = operator.fault_alarm(known, tracking)    # reset: quiet
    assert not ring and known == set()


def test_event_messages_keep_arguments_and_drop_repeats():
    ev = {"id": 7, "time_s": 1.0, "time_utc": "x", "kind": "command", "source": "api:127.0.0.1",
          "message": "stop refused: refused: 'hold' is not allowed while parked",
          "data": {"command": "stop", "args": {}, "ok": False}}
    assert operator.event_message(ev) == "stop refused: 'hold' is not allowed while parked"
    ev = dict(ev, message="goto ok: accepted",
              data={"command": "goto", "args": {"az_deg": 180.0, "el_deg": 10.25,
                                                "boresight": None, "axes": False}, "ok": True})
    assert operator.event_message(ev) == "goto az_deg=180 el_deg=10.25 ok: accepted"
    assert operator.dedupe_words("azimuth: overcurrent overcurrent") == "azimuth: overcurrent"


@pytest.mark.network
@pytest.mark.slow
def test_events_time_order_and_filters(daemon):
    r = cli(daemon, "events", "--limit", "1000", "--json")
    every = json.loads(r.stdout)
    times = [e["time_s"] for e in every]
    assert times == sorted(times)
    r = cli(daemon, "events", "--kind", "command", "--json", "--limit", "1000")
    commands = json.loads(r.stdout)
    assert commands and {e["kind"] for e in commands} == {"command"}
    # The same commands, compared where both reads overlap (each reads the latest 1000 events
    # of a running daemon, and a loaded machine logs more between the two reads).
    lo, hi = min(e["id"] for e in commands), max(e["id"] for e in every)
    assert [e["id"] for e in commands if e["id"] <= hi] == \
        [e["id"] for e in every if e["kind"] == "command" and e["id"] >= lo]
    r = cli(daemon, "events", "--kind", "state,command", "--limit", "1000")
    kinds = {line.split()[2] for line in r.stdout.splitlines() if line[:6].strip().isdigit()}
    assert kinds == {"state", "command"}
    # --since: a duration back from the daemon's clock, or a UTC time
    r = cli(daemon, "events", "--since", "1d", "--json", "--limit", "1000")
    assert len(json.loads(r.stdout)) == len(every)      # the module's daemon is minutes old
    middle_s = every[len(every) // 2]["time_s"]
    iso = datetime.fromtimestamp(math.floor(middle_s * 1e6) / 1e6, UTC).isoformat()
    since_s = datetime.fromisoformat(iso).timestamp()     # the instant the CLI is given
    r = cli(daemon, "events", "--since", iso, "--json", "--limit", "1000")
    later = json.loads(r.stdout)
    assert later and all(e["time_s"] >= since_s for e in later)
    last_id = max(e["id"] for e in every)             # the daemon may log more meanwhile
    assert [e["id"] for e in later if e["id"] <= last_id] == \
        [e["id"] for e in every if e["time_s"] >= since_s]
    assert len(later) < len(every)
    r = cli(daemon, "events", "--since", "yesterday-ish")
    assert r.exit_code == 2 and "neither a duration" in r.output


@pytest.mark.network
@pytest.mark.slow
def test_colour_on_a_terminal_only(daemon):
    """On a pty the state is coloured; piped, or with NO_COLOR, it is plain."""
    args = [TRACKER, "status", "--config", str(daemon.config_path)]
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    code, tty_out = _run_on_pty(args, env)
    state = daemon.status()["state"].upper()
    assert code == 0 and "state \x1b[" in tty_out and state in tty_out
    piped = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert piped.returncode == 0 and "\x1b[" not in piped.stdout
    code, tty_out = _run_on_pty(args, {**env, "NO_COLOR": "1"})
    assert code == 0 and "\x1b[" not in tty_out


def _run_on_pty(args: list[str], env: dict) -> tuple[int, str]:
    """Run with stdout on a pseudo-terminal; (exit status, what it wrote)."""
    main_fd, child_fd = pty.openpty()
    p = subprocess.Popen(args, stdout=child_fd, stderr=subprocess.DEVNULL, env=env)
    os.close(child_fd)
    chunks = []
    while True:
        try:
            data = os.read(main_fd, 4096)
        except OSError:   # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    p.wait(30)
    os.close(main_fd)
    return p.returncode, b"".join(chunks).decode(errors="replace")


def test_mistyped_command_gets_a_suggestion():
    r = CliRunner().invoke(main, ["stauts"])
    assert r.exit_code == 2
    assert "No such command 'stauts'. Did you mean 'status'" in r.output
    r = CliRunner().invoke(main, ["evnets"])
    assert "Did you mean 'events'" in r.output
    r = CliRunner().invoke(main, ["xyzzy"])
    assert r.exit_code == 2 and "See 'tracker --help'" in r.output


def test_shell_completion_lists_commands_and_options():
    env = {**os.environ, "_TRACKER_COMPLETE": "bash_complete", "COMP_WORDS": "tracker st",
           "COMP_CWORD": "1"}
    r = subprocess.run([TRACKER], env=env, capture_output=True, text=True, timeout=60)
    names = {line.split(",", 1)[1] for line in r.stdout.splitlines()}
    assert names == {"states", "status", "stop", "stow"}
    env.update(COMP_WORDS="tracker events --ki", COMP_CWORD="2")
    r = subprocess.run([TRACKER], env=env, capture_output=True, text=True, timeout=60)
    assert "plain,--kind" in r.stdout.splitlines()
    env = {**os.environ, "_TRACKER_COMPLETE": "bash_source"}
    r = subprocess.run([TRACKER], env=env, capture_output=True, text=True, timeout=60)
    assert "complete -o nosort -F _tracker_completion tracker" in r.stdout
    assert "_TRACKER_COMPLETE=bash_source tracker" in (ROOT / "docs" / "daemon.md").read_text()


def test_plan_defaults_to_today():
    r = CliRunner().invoke(main, ["plan", "--config", str(ROOT / "config" / "sim.toml")])
    assert r.exit_code == 0, r.output
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert r.output.splitlines()[0].split(": ", 1)[1].startswith(f"{today}T00:00:00")


def test_states_png_is_laid_out_to_read(tmp_path):
    from tracker.cli.states import readable_dot
    from tracker.control.machine import TRANSITIONS, dot

    raw_arrows = dot().count(" -> ")
    text = readable_dot()
    assert text.count(" -> ") < raw_arrows / 2          # about 70 arrows become about 30
    # every transition of the table is still drawn: as an arrow or in a note's list
    for trigger, sources, dest in TRANSITIONS:
        for src in sources if isinstance(sources, list) else [sources]:
            if src is dest:
                continue
            assert (f'"{src.value}" -> "{dest.value}"' in text
                    or (f'"from_{trigger}" -> "{dest.value}"' in text
                        and src.value in text.split(f'"from_{trigger}" [', 1)[1].split("];")[0])
                    ), (trigger, src, dest)
    if shutil.which("dot") is None:
        pytest.skip("graphviz 'dot' is not installed: PNG not rendered")
    out = tmp_path / "states.png"
    r = CliRunner().invoke(main, ["states", "--png", str(out), "--rankdir", "LR"])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.network
@pytest.mark.slow
def test_report_shows_progress(daemon, tmp_path):
    db = daemon.settings.store.path
    r = subprocess.run([TRACKER, "report", "--db", str(db), "--config", str(daemon.config_path),
                        "--out", str(tmp_path / "rep"), "--no-plots"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    steps = [line for line in r.stderr.splitlines() if line.startswith("[")]
    assert any("computing exposure" in s for s in steps) and steps[-1].endswith("done")
    assert re.match(r"\[\s*\d+\.\d s\] opening the tracking log", steps[0])
    assert "wrote" in r.stdout and (tmp_path / "rep" / "report.json").exists()
    r = subprocess.run([TRACKER, "report", "--db", str(db), "--config", str(daemon.config_path),
                        "--out", str(tmp_path / "rep2"), "--no-plots", "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "opening the tracking log" not in r.stderr
