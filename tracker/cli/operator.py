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
import sys
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


def render_status(st: dict) -> str:
    """One readable screen from the daemon's status JSON."""
    now_s = st.get("time_s")
    lines = []
    auto = "ON" if st.get("auto_tracking") else "off"
    lines.append(f"helio-tracker  {st.get('time_utc', '?')}   state {str(st.get('state', '?')).upper()}"
                 f"   auto-tracking {auto}   boresight {st.get('boresight') or '-'}")
    sun = st.get("sun") or {}
    lines.append(f"Sun       az {_f(sun.get('azimuth_deg'), '9.4f')} deg   el "
                 f"{_f(sun.get('elevation_deg'), '+8.4f')} deg   rates "
                 f"{_f(sun.get('azimuth_rate_deg_s'), '+.5f')} / "
                 f"{_f(sun.get('elevation_rate_deg_s'), '+.5f')} deg/s")
    pt = st.get("pointing") or {}
    err = st.get("pointing_error_arcsec")
    on_sun = "ON SUN" if st.get("on_sun") else "off sun"
    lines.append(f"Pointing  az {_f(pt.get('az_deg'), '9.4f')} deg   el "
                 f"{_f(pt.get('el_deg'), '+8.4f')} deg   error {_f(err, '.1f')} arcsec   {on_sun}")
    for name, ax in (st.get("axes") or {}).items():
        flags = []
        flags.append("enabled" if ax.get("enabled") else "DISABLED")
        if ax.get("moving"):
            flags.append("moving")
        limit = ax.get("limit")
        if limit and limit != "none":
            flags.append(f"LIMIT {limit}")
        cond = ax.get("condition", "ok")
        flags.append("ok" if cond == "ok" else f"FAULT {cond}: {ax.get('fault_text', '')}")
        lines.append(f"  {name:<10} {_f(ax.get('position_deg'), '+10.4f')} deg "
                     f"{_f(ax.get('velocity_deg_s'), '+9.5f')} deg/s   {' '.join(flags)}")
    if st.get("current_window"):
        lines.append(f"Window    now {_window_text(st.get('current_window'), now_s, True)}")
    lines.append(f"Next      {_window_text(st.get('next_window'), now_s, False)}")
    faults = st.get("faults") or []
    if faults:
        for fault in faults:
            lines.append(f"FAULT     {fault.get('source')}: {fault.get('condition')} "
                         f"{fault.get('text', '')} (since {fault.get('time_utc', '?')})"
                         f"  -> fix the cause, then `tracker reset`")
    else:
        lines.append("Faults    none")
    log_info = st.get("log") or {}
    log_text = "ok" if log_info.get("healthy", True) else f"UNHEALTHY: {log_info.get('last_error')}"
    loop = st.get("loop") or {}
    lines.append(f"Wind      {_f(st.get('wind_m_s'), '.1f')} m/s   log {log_text}   loop p50 "
                 f"{_f(loop.get('period_p50_ms'), '.1f')} ms p99 {_f(loop.get('period_p99_ms'), '.1f')}"
                 f" ms, {loop.get('overruns', 0)} overruns")
    ages = st.get("data_ages") or {}
    if ages:
        lines.append("Ages      " + "  ".join(f"{k} {_f(v, '.1f')} s" for k, v in ages.items()))
    flags = [n for n, k in (("SLEWING", "slewing"), ("AT PARK", "at_park"), ("AT HOME", "at_home"))
             if st.get(k)]
    if flags:
        lines.append("          " + "  ".join(flags))
    return "\n".join(lines)


@click.command()
@click.option("--watch", is_flag=True, help="Refresh the screen until Ctrl-C.")
@click.option("--interval", "interval_s", type=FiniteFloatRange(min=0.2), default=1.0,
              show_default=True, help="Refresh interval with --watch, seconds.")
@operator_command
def status(opts: dict, watch: bool, interval_s: float) -> None:
    """State, Sun, pointing error, axes, windows and faults (one screen)."""
    with _client(opts) as client:
        if not watch:
            st = client.status()
            _emit(opts, st, render_status(st))
            return
        try:
            while True:
                try:
                    st = client.status()
                    out = json.dumps(st, default=str) if opts["as_json"] else render_status(st)
                except ApiError as exc:
                    out = (json.dumps({"ok": False, "error": str(exc)}) if opts["as_json"]
                           else f"error: {exc}\n(retrying every {interval_s:g} s; Ctrl-C to quit)")
                if opts["as_json"]:
                    click.echo(out)
                else:
                    click.echo("\x1b[H\x1b[2J" + out, nl=True)
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


def _event_line(ev: dict) -> str:
    return (f"{ev.get('id', ''):>6}  {ev.get('time_utc', ev.get('time_s', ''))}  "
            f"{ev.get('kind', ''):<8} {ev.get('source') or '-':<18} {ev.get('message', '')}")


@click.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until Ctrl-C.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--interval", "interval_s", type=FiniteFloatRange(min=0.2), default=1.0,
              show_default=True, help="Poll interval with --follow, seconds.")
@operator_command
def events(opts: dict, follow: bool, limit: int, interval_s: float) -> None:
    """Recent events: state changes, faults, commands (who, what, result)."""
    with _client(opts) as client:
        batch = client.events(limit=limit)
        if opts["as_json"] and not follow:
            click.echo(json.dumps(batch, default=str))
            return
        from tracker.service.client import DaemonUnreachable

        last_id = 0
        lost = False
        try:
            while True:
                for ev in batch:
                    click.echo(json.dumps(ev, default=str) if opts["as_json"] else _event_line(ev))
                    last_id = max(last_id, int(ev.get("id", 0)))
                if not follow:
                    return
                time.sleep(interval_s)
                try:
                    batch = client.events(limit=1000, after_id=last_id)
                except DaemonUnreachable as exc:  # keep following across daemon restarts
                    if not lost:
                        click.echo(f"warning: {exc} (retrying)", err=True)
                    lost, batch = True, []
                else:
                    lost = False
        except KeyboardInterrupt:
            pass
