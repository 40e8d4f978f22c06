"""Operator commands talking to the running daemon over its HTTP API.

``tracker status [--watch]``, ``goto``, ``jog``, ``stop``, ``park``, ``unpark``,
``stow``, ``track {start,stop}``, ``reset``, ``events [--follow]``.  Each takes
``--config`` (the daemon's config: API port and token file), ``--url`` (overrides
the address) and ``--json`` (machine-readable output, errors included).

Exit status: 0 done; 3 refused by the daemon (state, envelope or value: the
message says why); 4 the daemon is not reachable; 5 missing or wrong token;
2 bad arguments or config.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from tracker import config as config_mod
from tracker.cli.options import FINITE, FiniteFloatRange
from tracker.errors import ApiError

EXIT_REFUSED = 3
EXIT_UNREACHABLE = 4
EXIT_TOKEN = 5



def _exit_code(exc: ApiError) -> int:
    from tracker.service.auth import TokenUnavailable
    from tracker.service.client import DaemonUnreachable

    if isinstance(exc, DaemonUnreachable):
        return EXIT_UNREACHABLE
    if isinstance(exc, TokenUnavailable) or exc.status == 401:
        return EXIT_TOKEN
    return EXIT_REFUSED


def _client(opts: dict) -> Any:
    from tracker.service.client import Client

    settings = config_mod.load(opts["config_path"])
    return Client.from_settings(settings, url=opts["url"], timeout_s=opts["timeout_s"])


def _emit(opts: dict, data: Any, text: str) -> None:
    if opts["as_json"]:
        click.echo(json.dumps(data, indent=None if isinstance(data, list) else 2, default=str))
    else:
        click.echo(text)


def _fail(opts: dict, exc: ApiError) -> None:
    code = _exit_code(exc)
    if opts["as_json"]:
        click.echo(json.dumps({"ok": False, "error": str(exc), "status": exc.status,
                               "exit_code": code}))
    else:
        click.echo(f"error: {exc}", err=True)
    sys.exit(code)


def operator_command(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --config/--url/--json/--timeout and turn ApiError into a message and exit code."""

    @click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                  help="The daemon's config file (API port, token file). Default: config/sim.toml.")
    @click.option("--url", default=None, help="Daemon API URL, e.g. http://127.0.0.1:8470.")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
    @click.option("--timeout", "timeout_s", type=FiniteFloatRange(min=0.1), default=5.0,
                  show_default=True, help="HTTP timeout, seconds.")
    @functools.wraps(func)
    def wrapper(config_path: str | None, url: str | None, as_json: bool, timeout_s: float,
                **kwargs: Any) -> None:
        opts = {"config_path": config_path, "url": url, "as_json": as_json,
                "timeout_s": timeout_s}
        try:
            func(opts, **kwargs)
        except ApiError as exc:
            _fail(opts, exc)

    return wrapper


# ----------------------------------------------------------------------------- status screen
#: The status screen never gets wider than this (columns).
MAX_COLUMNS = 120
#: ANSI colours (used only when stdout is a terminal and NO_COLOR is not set).
_STATE_COLOURS = {"tracking": "green", "fault": "red", "estop": "red", "manual": "yellow",
                  "slewing": "yellow", "parking": "yellow", "stowing": "yellow",
                  "waiting": "cyan", "parked": "cyan", "stowed": "cyan", "idle": "cyan"}


def _f(value: Any, fmt: str, missing: str = "-") -> str:
    if value is None:
        return missing
    try:
        return format(value, fmt)
    except (TypeError, ValueError):
        return str(value)


def _hm(t_s: float | None) -> str:
    if t_s is None:
        return "--:--"
    return datetime.fromtimestamp(t_s, UTC).strftime("%H:%M")


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


def format_angle_arcsec(arcsec: float | None) -> str:
    """An angle given in arc-seconds, in the unit that reads best: arcsec, arcmin or deg."""
    if arcsec is None or not math.isfinite(arcsec):
        return "-"
    a = abs(arcsec)
    if a < 60.0:
        return f"{arcsec:.1f} arcsec"
    if a < 3600.0:
        return f"{arcsec / 60.0:.2f} arcmin"
    return f"{arcsec / 3600.0:.3f} deg"


def _seconds_text(value: Any) -> str:
    """A duration in s, with a unit that keeps its digits (0.004 s -> '4.0 ms')."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    if abs(value) < 1.0:
        return f"{value * 1000.0:.1f} ms"
    return f"{value:.1f} s"


def _ages_lines(ages: dict, head: str = "Time data ") -> list[str]:
    """The time-data parts, wrapped between parts to MAX_COLUMNS."""
    lines, line = [], head
    for part in _ages_text(ages).split("   "):
        if line.strip() and line != head and len(line) + 3 + len(part) > MAX_COLUMNS:
            lines.append(line)
            line = " " * len(head)
        line += ("" if line.strip() == head.strip() or not line.strip() else "   ") + part
    lines.append(line)
    return lines


def _ages_text(ages: dict) -> str:
    """The time-data line: each figure with its own unit, dates and versions without one."""
    parts = []
    if ages.get("iers_last_date") is not None:
        left = ages.get("iers_days_left")
        parts.append(f"IERS to {ages['iers_last_date']}"
                     + (f" ({left:.0f} d left)" if isinstance(left, int | float) else ""))
    if isinstance(ages.get("iers_age_days"), int | float):
        parts.append(f"age {ages['iers_age_days']:.1f} d")
    if "ut1_uncertainty_s" in ages:
        parts.append(f"UT1 +/-{_seconds_text(ages.get('ut1_uncertainty_s'))}")
    if ages.get("leap_seconds_expire") is not None:
        expired = ages.get("leap_seconds_expired")
        parts.append(f"leap table {'EXPIRED' if expired else 'to'} {ages['leap_seconds_expire']}")
    if ages.get("astropy_iers_data"):
        parts.append(f"astropy-iers-data {ages['astropy_iers_data']}")
    known = {"iers_last_date", "iers_age_days", "iers_days_left", "ut1_uncertainty_s",
             "leap_seconds_expire", "leap_seconds_expired", "astropy_iers_data"}
    for key, value in ages.items():   # anything newer, shown as it is
        if key not in known:
            unit = " s" if key.endswith("_s") and isinstance(value, int | float) else ""
            parts.append(f"{key} {_f(value, '.1f') if unit else value}{unit}")
    return "   ".join(parts)


def dedupe_words(text: str) -> str:
    """'refused: refused: x' -> 'refused: x'; 'overcurrent overcurrent' -> 'overcurrent'."""
    text = re.sub(r"\b(\w+: )\1+", r"\1", text)
    return re.sub(r"\b(\w+)( \1\b)+", r"\1", text)


def _fault_text(fault: dict) -> str:
    cond = str(fault.get("condition") or "")
    extra = str(fault.get("text") or "")
    what = extra if cond and cond.replace("_", " ") in extra else " ".join(p for p in (cond, extra) if p)
    return dedupe_words(f"{fault.get('source')}: {what}")


def _error_label(st: dict) -> str | None:
    """What the pointing error is measured to, or None when there is no target."""
    task = st.get("task")
    if task == "sun":
        return "error to Sun"
    if task in ("axes", "sky"):
        if st.get("state") in ("parked", "parking"):
            return "error to park"
        if st.get("state") in ("stowed", "stowing"):
            return "error to stow"
        return "error to target"
    return None


def eta_s(st: dict, speeds_deg_s: dict[str, float] | None, accels_deg_s2: dict[str, float] | None,
          ) -> float | None:
    """Rough time to reach the target, s: the slower axis at full speed plus one ramp each way.

    Uses the sky distance per axis (azimuth wrapped to +-180 deg) between pointing and target;
    None when a figure is missing.
    """
    pt, tg = st.get("pointing") or {}, st.get("target") or {}
    try:
        d_az = abs((tg["az_deg"] - pt["az_deg"] + 180.0) % 360.0 - 180.0)
        d_el = abs(tg["el_deg"] - pt["el_deg"])
    except (KeyError, TypeError):
        return None
    if not speeds_deg_s:
        return None
    worst = 0.0
    for name, dist in (("azimuth", d_az), ("elevation", d_el)):
        v = speeds_deg_s.get(name)
        if not v:
            return None
        a = (accels_deg_s2 or {}).get(name) or math.inf
        worst = max(worst, dist / v + (v / a if math.isfinite(a) and dist > 0 else 0.0))
    return worst


def _clip(line: str, width: int = MAX_COLUMNS) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."


def render_status(st: dict, *, colour: bool = False, speeds_deg_s: dict | None = None,
                  accels_deg_s2: dict | None = None) -> str:
    """One readable screen (at most MAX_COLUMNS wide) from the daemon's status JSON."""

    def paint(text: str, fg: str | None, bold: bool = False) -> str:
        return click.style(text, fg=fg, bold=bold) if colour and fg else text

    now_s = st.get("time_s")
    state = str(st.get("state", "?"))
    lines: list[str] = []
    if st.get("auto_tracking"):
        mode = ("auto-tracking on, held by the fault" if state in ("fault", "estop")
                else "auto-tracking ON")
    else:
        mode = "manual (auto-tracking off)"
    lines.append(f"helio-tracker  {st.get('time_utc', '?')}   state "
                 f"{paint(state.upper(), _STATE_COLOURS.get(state), bold=True)}   {mode}   "
                 f"boresight {st.get('boresight') or '-'}")
    sun = st.get("sun") or {}
    lines.append(f"Sun       az {_f(sun.get('azimuth_deg'), '9.4f')} deg   el "
                 f"{_f(sun.get('elevation_deg'), '+8.4f')} deg   rates "
                 f"{_f(sun.get('azimuth_rate_deg_s'), '+.5f')} / "
                 f"{_f(sun.get('elevation_rate_deg_s'), '+.5f')} deg/s")
    pt = st.get("pointing") or {}
    label = _error_label(st)
    err_text = f"{label} {format_angle_arcsec(st.get('pointing_error_arcsec'))}" if label else ""
    if state == "tracking":
        err_text += "   " + (paint("ON SUN", "green", bold=True) if st.get("on_sun")
                             else paint("not on the Sun yet", "yellow"))
    lines.append(f"Pointing  az {_f(pt.get('az_deg'), '9.4f')} deg   el "
                 f"{_f(pt.get('el_deg'), '+8.4f')} deg   {err_text}".rstrip())
    tg = st.get("target") or {}
    task = st.get("task")
    if task in ("sky", "axes", "jog") and state not in ("tracking",):
        what = {"sky": "sky direction", "axes": "axis positions", "jog": "jog"}[task]
        if task == "jog" or tg.get("az_deg") is None:
            lines.append(f"Target    {what}" + ("   moving" if st.get("slewing") else ""))
        else:
            eta = eta_s(st, speeds_deg_s, accels_deg_s2) if st.get("slewing") else None
            eta_text = ("   arrived" if not st.get("slewing") else
                        f"   ETA ~{_duration(eta)}" if eta is not None else "   moving")
            lines.append(f"Target    az {_f(tg.get('az_deg'), '9.4f')} deg   el "
                         f"{_f(tg.get('el_deg'), '+8.4f')} deg   ({what}){eta_text}")
    for name, ax in (st.get("axes") or {}).items():
        flags = ["enabled" if ax.get("enabled") else paint("DISABLED", "yellow")]
        if ax.get("moving"):
            flags.append("moving")
        limit = ax.get("limit")
        if limit and limit != "none":
            flags.append(paint(f"LIMIT {limit}", "yellow"))
        cond = ax.get("condition", "ok")
        if cond != "ok":
            flags.append(paint(f"FAULT {_fault_text({'condition': cond, 'text': ax.get('fault_text')}).split(': ', 1)[-1]}", "red", bold=True))
        else:
            flags.append("ok")
        lines.append(f"  {name:<10} {_f(ax.get('position_deg'), '+10.4f')} deg "
                     f"{_f(ax.get('velocity_deg_s'), '+9.5f')} deg/s   {' '.join(flags)}")
    if st.get("current_window"):
        lines.append(f"Window    now {_window_text(st.get('current_window'), now_s, True)}")
    lines.append(f"Next      {_window_text(st.get('next_window'), now_s, False)}")
    faults = st.get("faults") or []
    if faults:
        for fault in faults:
            since = str(fault.get("time_utc", "?"))[11:19] or "?"
            lines.append(paint(f"FAULT     {_fault_text(fault)} (since {since} UTC)"
                               f" -> fix the cause, then `tracker reset`", "red", bold=True))
    else:
        lines.append("Faults    none")
    log_info = st.get("log") or {}
    log_text = "ok" if log_info.get("healthy", True) else paint(
        f"UNHEALTHY: {log_info.get('last_error')}", "red")
    loop = st.get("loop") or {}
    wind = f"{_f(st.get('wind_m_s'), '.1f')} m/s" + ("  STOWED for wind" if st.get("wind_stowed") else "")
    lines.append(f"Wind      {wind}   log {log_text}   loop p50 "
                 f"{_f(loop.get('period_p50_ms'), '.1f')} ms p99 {_f(loop.get('period_p99_ms'), '.1f')}"
                 f" ms, {loop.get('overruns', 0)} overruns")
    ages = st.get("data_ages") or {}
    if ages:
        lines += _ages_lines(ages)
    flags = [n for n, k in (("SLEWING", "slewing"), ("AT PARK", "at_park"), ("AT HOME", "at_home"))
             if st.get(k)]
    if flags:
        lines.append("          " + "  ".join(flags))
    return "\n".join(_clip_styled(line) for line in lines)


def _clip_styled(line: str) -> str:
    """Clip to MAX_COLUMNS visible characters (ANSI colour codes do not count)."""
    if len(click.unstyle(line)) <= MAX_COLUMNS:
        return line
    plain = click.unstyle(line)
    return _clip(plain)


def _window_text(win: dict | None, now_s: float | None, current: bool) -> str:
    if not win:
        return "none"
    start = win.get("start_s", win.get("start"))
    end = win.get("end_s", win.get("end"))
    text = f"{_hm(start)}-{_hm(end)} UTC"
    if now_s is not None:
        if current and end is not None:
            text += f" (ends in {_duration(end - now_s)})"
        elif start is not None:
            text += f" (starts in {_duration(start - now_s)})"
    bs = win.get("boresight")
    return text + (f", boresight {bs}" if bs else "")


def fault_alarm(known: set[str], st: dict) -> tuple[set[str], bool]:
    """(the faults now, True if one is new since ``known``): ring the bell once per fault."""
    faults = {_fault_text(f) for f in st.get("faults") or []}
    if st.get("state") in ("fault", "estop"):
        faults.add(f"state {st['state']}")
    return faults, bool(faults - known)


def use_colour(stream: Any = None) -> bool:
    """Colour and bells only on a terminal, and never with NO_COLOR set."""
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ


def _speeds(opts: dict) -> tuple[dict, dict]:
    try:
        settings = config_mod.load(opts["config_path"])
    except Exception:
        return {}, {}
    axes = settings.axes
    return ({"azimuth": axes.azimuth.max_speed_deg_s, "elevation": axes.elevation.max_speed_deg_s},
            {"azimuth": axes.azimuth.max_accel_deg_s2, "elevation": axes.elevation.max_accel_deg_s2})


@click.command()
@click.option("--watch", is_flag=True, help="Refresh the screen until Ctrl-C.")
@click.option("--interval", "interval_s", type=FiniteFloatRange(min=0.2), default=1.0,
              show_default=True, help="Refresh interval with --watch, seconds.")
@operator_command
def status(opts: dict, watch: bool, interval_s: float) -> None:
    """State, Sun, pointing error, axes, windows and faults (one screen).

    On a terminal the state is coloured; with --watch a new fault rings the bell and is
    shown in red until it is reset.
    """
    colour = use_colour() and not opts["as_json"]
    speeds, accels = _speeds(opts)
    with _client(opts) as client:
        if not watch:
            st = client.status()
            _emit(opts, st, render_status(st, colour=colour, speeds_deg_s=speeds,
                                          accels_deg_s2=accels))
            return
        known_faults: set[str] = set()
        try:
            while True:
                bell = ""
                try:
                    st = client.status()
                    if opts["as_json"]:
                        out = json.dumps(st, default=str)
                    else:
                        out = render_status(st, colour=colour, speeds_deg_s=speeds,
                                            accels_deg_s2=accels)
                        known_faults, new = fault_alarm(known_faults, st)
                        bell = "\a" if new and colour else ""
                except ApiError as exc:
                    out = (json.dumps({"ok": False, "error": str(exc)}) if opts["as_json"]
                           else f"error: {exc}\n(retrying every {interval_s:g} s; Ctrl-C to quit)")
                if opts["as_json"]:
                    click.echo(out)
                else:
                    click.echo("\x1b[H\x1b[2J" + bell + out, nl=True)
                time.sleep(interval_s)
        except KeyboardInterrupt:
            pass


# ----------------------------------------------------------------------------- commands
def _done(opts: dict, result: dict, text: str) -> None:
    _emit(opts, result, f"{text} (state now {result.get('state', '?')})")


@click.command()
@click.option("--az", "az_deg", type=FINITE, required=True, help="Azimuth, deg from north through east.")
@click.option("--el", "el_deg", type=FINITE, required=True, help="Elevation, deg, up positive.")
@click.option("--boresight", default=None, help="Boresight name (default: the first).")
@click.option("--axes", is_flag=True, help="AZ/EL are axis positions, not a sky direction.")
@operator_command
def goto(opts: dict, az_deg: float, el_deg: float, boresight: str | None, axes: bool) -> None:
    """Slew to a sky direction (checked against the envelope first)."""
    with _client(opts) as client:
        result = client.goto(az_deg, el_deg, boresight=boresight, axes=axes)
    what = "axes" if axes else f"boresight {boresight or '(default)'}"
    _done(opts, result, f"goto az {az_deg:.4f} el {el_deg:+.4f} deg ({what}) accepted")


@click.command()
@click.option("--axis", type=click.Choice(["az", "el"]), required=True)
@click.option("--rate", "rate_deg_s", type=FINITE, required=True, help="deg/s, sign = direction.")
@click.option("--seconds", type=FiniteFloatRange(min=0, min_open=True), required=True,
              help="Duration, seconds.")
@operator_command
def jog(opts: dict, axis: str, rate_deg_s: float, seconds: float) -> None:
    """Run one axis at a rate for a duration, then stop."""
    with _client(opts) as client:
        result = client.jog(axis, rate_deg_s, seconds)
    _done(opts, result, f"jog {axis} at {rate_deg_s:+.4f} deg/s for {seconds:g} s accepted")


def _simple(name: str, help_text: str, done_text: str) -> click.Command:
    @operator_command
    def cmd(opts: dict) -> None:
        with _client(opts) as client:
            result = client.command(name)
        _done(opts, result, done_text)

    cmd.__doc__ = help_text
    return click.command(name)(cmd)


stop = _simple("stop", "Stop both axes with a controlled ramp and hold.", "stop accepted")
park = _simple("park", "Move to the park position.", "park accepted")
unpark = _simple("unpark", "Leave the park position (hold, ready for commands).", "unpark accepted")
stow = _simple("stow", "Move to the stow (survival) position.", "stow accepted")
reset = _simple("reset", "Acknowledge faults and reset the drives (axes stay stopped).",
                "reset accepted")


@click.command()
@click.argument("action", type=click.Choice(["start", "stop"]))
@operator_command
def track(opts: dict, action: str) -> None:
    """Start or stop automatic Sun tracking."""
    with _client(opts) as client:
        result = client.track(action == "start")
    _done(opts, result, f"automatic tracking {'started' if action == 'start' else 'stopped'}")


#: Events fetched when filtering (the API's page size).
EVENTS_PAGE = 1000


def event_message(ev: dict) -> str:
    """The event's message with command arguments and without repeated words."""
    msg = str(ev.get("message", ""))
    data = ev.get("data") or {}
    if ev.get("kind") == "command" and isinstance(data, dict) and data.get("command"):
        args = data.get("args") or {}
        arg_text = " ".join(f"{k}={_arg(v)}" for k, v in args.items()
                            if v is not None and v is not False)
        result = msg.split(": ", 1)[1] if ": " in msg else msg
        verdict = "ok" if data.get("ok") else "refused"
        result = re.sub(rf"^(?:{verdict}: )+", "", result)
        msg = f"{data['command']}{' ' + arg_text if arg_text else ''} {verdict}: {result}"
    return dedupe_words(msg)


def _arg(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _event_line(ev: dict, colour: bool = False) -> str:
    kind = str(ev.get("kind", ""))
    head = (f"{ev.get('id', ''):>6}  {ev.get('time_utc', ev.get('time_s', ''))}  "
            f"{kind:<8} {ev.get('source') or '-':<16} ")
    body = event_message(ev)
    width = max(40, MAX_COLUMNS - len(head))
    chunks = textwrap.wrap(body, width) or [""]
    text = head + ("\n" + " " * len(head)).join(chunks)
    if colour:
        fg = {"fault": "red", "warning": "yellow", "state": "green"}.get(kind)
        if kind == "command" and not (ev.get("data") or {}).get("ok", True):
            fg = "magenta"
        if fg:
            text = click.style(text, fg=fg, bold=kind == "fault")
    return text


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)\s*$", re.IGNORECASE)


def parse_since(text: str, now_s: float) -> float:
    """``--since``: a duration back from now ('90s', '10m', '2h', '1d') or a UTC date/ISO time."""
    m = _DURATION.match(text)
    if m:
        unit = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
        return now_s - float(m.group(1)) * unit[m.group(2).lower()]
    from tracker.cli.plan import parse_utc
    from tracker.errors import TimeInputError

    try:
        return parse_utc(text)
    except TimeInputError:
        raise click.BadParameter(f"{text!r} is neither a duration (90s, 10m, 2h, 1d) nor a UTC "
                                 f"date/ISO time (2026-12-02, 2026-12-02T06:00Z)",
                                 param_hint="--since") from None


def _keep(ev: dict, kinds: set[str], since_s: float | None) -> bool:
    if kinds and ev.get("kind") not in kinds:
        return False
    return since_s is None or float(ev.get("time_s") or 0.0) >= since_s


def _time_order(batch: list[dict]) -> list[dict]:
    return sorted(batch, key=lambda e: (float(e.get("time_s") or 0.0), int(e.get("id", 0))))


@click.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until Ctrl-C.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--kind", "kinds", multiple=True, metavar="KIND",
              help="Only these kinds (repeat or comma-separate): state, command, fault, "
                   "warning, info.")
@click.option("--since", "since", metavar="WHEN",
              help="Only events since: a duration back (90s, 10m, 2h, 1d) or a UTC date/ISO time.")
@click.option("--interval", "interval_s", type=FiniteFloatRange(min=0.2), default=1.0,
              show_default=True, help="Poll interval with --follow, seconds.")
@operator_command
def events(opts: dict, follow: bool, limit: int, kinds: tuple[str, ...], since: str | None,
           interval_s: float) -> None:
    """Recent events in time order: state changes, faults, commands (who, what, arguments, result).

    On a terminal faults are red and a new fault rings the bell with --follow.
    """
    colour = use_colour() and not opts["as_json"]
    wanted = {k.strip() for item in kinds for k in item.split(",") if k.strip()}
    with _client(opts) as client:
        since_s = None
        if since is not None:
            since_s = parse_since(since, float(client.status().get("time_s") or time.time()))
        filtering = bool(wanted) or since_s is not None
        raw = client.events(limit=EVENTS_PAGE if filtering else limit)
        last_id = max((int(e.get("id", 0)) for e in raw), default=0)
        batch = _time_order([e for e in raw if _keep(e, wanted, since_s)])[-limit:]
        if opts["as_json"] and not follow:
            click.echo(json.dumps(batch, default=str))
            return
        if filtering and len(raw) >= EVENTS_PAGE and not opts["as_json"] and since_s is not None \
                and raw and float(raw[0].get("time_s") or 0.0) > since_s:
            click.echo(f"note: only the latest {EVENTS_PAGE} events were searched", err=True)
        from tracker.service.client import DaemonUnreachable

        lost = False
        try:
            while True:
                for ev in batch:
                    if opts["as_json"]:
                        click.echo(json.dumps(ev, default=str))
                    else:
                        bell = "\a" if colour and follow and ev.get("kind") == "fault" else ""
                        click.echo(bell + _event_line(ev, colour))
                if not follow:
                    return
                time.sleep(interval_s)
                try:
                    raw = client.events(limit=1000, after_id=last_id)
                except DaemonUnreachable as exc:  # keep following across daemon restarts
                    if not lost:
                        click.echo(f"warning: {exc} (retrying)", err=True)
                    lost, raw = True, []
                else:
                    lost = False
                last_id = max([last_id, *(int(e.get("id", 0)) for e in raw)])
                batch = _time_order([e for e in raw if _keep(e, wanted, since_s)])
        except KeyboardInterrupt:
            pass
