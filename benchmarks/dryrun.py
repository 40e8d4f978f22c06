"""Dry-run speed and tracking accuracy, side by side in one run.

    python benchmarks/dryrun.py [--days 1] [--modbus-hours 2]

1. One simulated day of BabyIAXO (config/sim.toml) at 10 Hz control with the
   in-process simulator, the same engine code path as the daemon: wall time,
   speed-up over real time (target >= 2880x, i.e. a day in <= 30 s), tracking
   efficiency, RMS and maximum pointing error after settling.
2. A two-hour window over Modbus TCP on loopback (real pymodbus server hosting
   the simulator, real Modbus driver): the same figures, and the ratio of the
   two speeds.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tracker import config  # noqa: E402
from tracker.astro.timeinput import to_unix_s  # noqa: E402
from tracker.planning.planner import plan  # noqa: E402
from tracker.service import dryrun  # noqa: E402


def row(label: str, r: dryrun.DryRunReport) -> str:
    def f(x: float | None) -> str:
        return "   n/a" if x is None else f"{x:6.2f}"
    return (f"{label:<34} {r.sim_s:>8.0f} {r.wall_s:>8.1f} {r.speedup:>8.0f}x "
            f"{r.efficiency:>7.4f} {f(r.rms_error_arcsec)} {f(r.max_error_arcsec)} {r.faults:>3}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--modbus-hours", type=float, default=2.0)
    ap.add_argument("--start", default="2026-06-21T00:00:00Z")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    settings = config.load(config.CONFIG_DIR / "sim.toml")
    start_s = float(to_unix_s(args.start))
    print(f"{'run':<34} {'sim s':>8} {'wall s':>8} {'speedup':>9} {'effic.':>7} "
          f"{'rms_as':>6} {'max_as':>6} {'flt':>3}")
    day = asyncio.run(dryrun.run(settings, start_s, args.days * 86400.0))
    print(row(f"in-process, {args.days:g} day(s)", day))
    # The first window that opens after the start: the mount pre-positions as in operation.
    w = next(w for w in plan(settings, start_s, start_s + 2 * 86400.0).windows
             if w.start_s > start_s + 600.0 and not w.clipped_start)
    t0 = w.start_s - 600.0
    mb = asyncio.run(dryrun.run(settings, t0, args.modbus_hours * 3600.0, driver="modbus"))
    print(row(f"Modbus TCP loopback, {args.modbus_hours:g} h", mb))
    sec_per_day = day.wall_s / (day.sim_s / 86400.0)
    print(f"\nin-process: one simulated day in {sec_per_day:.1f} s wall "
          f"(target <= 30 s: {'met' if sec_per_day <= 30 else 'NOT met'}); "
          f"{day.ticks / day.wall_s:,.0f} ticks/s")
    print(f"Modbus TCP: {mb.ticks / mb.wall_s:,.0f} ticks/s, "
          f"{(day.ticks / day.wall_s) / (mb.ticks / mb.wall_s):.1f}x slower than in process")


if __name__ == "__main__":
    main()
