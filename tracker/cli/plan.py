"""``tracker plan``: the tracking windows for a config and a date range."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime

import click

from tracker import config as config_mod
from tracker.cli.options import FiniteFloatRange
from tracker.errors import TimeInputError


def parse_utc(text: str) -> float:
    """A UTC date ('2026-03-20') or ISO time ('2026-03-20T06:00', zone optional, default UTC)."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TimeInputError(f"--start {text!r} is not a date (YYYY-MM-DD) or an ISO 8601 time "
                             "(YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM])") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def today_start_s(now_s: float | None = None) -> float:
    """00:00 UTC of the current day (of ``now_s``, default the system clock), unix seconds."""
    now_s = time.time() if now_s is None else now_s
    return math.floor(now_s / 86400.0) * 86400.0


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


@click.command("plan")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Config file (default: config/sim.toml).")
@click.option("--start", "start", default=None,
              help="UTC date (YYYY-MM-DD) or ISO time; no zone means UTC. Default: today "
                   "(00:00 UTC).")
@click.option("--days", type=FiniteFloatRange(min=0.0, min_open=True, max=3660.0), default=1.0,
              show_default=True, help="Length of the plan in days.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON object.")
def plan(config_path: str | None, start: str | None, days: float, as_json: bool) -> None:
    """Tracking windows: when the Sun is inside the envelope, per boresight.

    One line per window: start, end (UTC), duration, boresight, the Sun's
    entry and exit azimuth/elevation (sky, geometric, degrees), the cable-wrap
    turn, the pre-position axis point and the time the mount must be there.
    """
    from tracker.planning import planner

    settings = config_mod.load(config_path)
    t0 = parse_utc(start) if start is not None else today_start_s()
    result = planner.plan(settings, t0, t0 + days * 86400.0)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    click.echo(f"{result.site}: {planner.iso_utc(result.start_s)} .. "
               f"{planner.iso_utc(result.end_s)}, {len(result.windows)} windows")
    click.echo(f"{'start (UTC)':20} {'end (UTC)':20} {'duration':>8} {'boresight':9} "
               f"{'entry az/el':>15} {'exit az/el':>15} {'wrap':>4} "
               f"{'pre-position az/el':>19} {'by (UTC)':20}")
    for w in result.windows:
        flags = []
        if w.clipped_start or w.clipped_end:
            flags.append("clipped")
        if w.split_part:
            flags.append(f"part {w.split_part}" + (" after unwind" if w.unwind_before else ""))
        if not w.slew_ok:
            flags.append(f"slew {w.slew_s:.0f} s does not fit")
        click.echo(
            f"{planner.iso_utc(w.start_s):20} {planner.iso_utc(w.end_s):20} "
            f"{_hms(w.duration_s):>8} {w.boresight:9} "
            f"{w.entry_az_deg:7.2f}/{w.entry_el_deg:+7.2f} {w.exit_az_deg:7.2f}/{w.exit_el_deg:+7.2f} "
            f"{w.wrap_turn:+4d} {w.preposition_az_deg:9.2f}/{w.preposition_el_deg:+9.2f} "
            f"{planner.iso_utc(w.preposition_by_s):20}" + (f"  [{', '.join(flags)}]" if flags else ""))
    click.echo(f"tracking fraction {result.tracking_fraction:.4f} "
               f"({result.available_s / 3600.0:.2f} h of {result.span_s / 3600.0:.2f} h)")
    for note in result.notes:
        click.echo(f"note: {note}")
