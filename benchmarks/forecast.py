"""Forecast speed: days on one local worker vs K workers, and a year at 64 workers projected.

    .venv/bin/python benchmarks/forecast.py [--config config/cast.toml] [--days 4]
                                            [--workers 2] [--runs 1]

Runs the same day tasks (seed 1) on one worker, then on ``--workers`` local processes, checks
that both give the same figures, and prints the wall times, the speed-up (target >= 1.8 on
2 cores), the mean cost of one simulated day on one worker, and the time a year of ``--runs``
runs would take on 64 workers from that cost (365 x runs x cost / 64, the days being
independent; the scheduling overhead measured here is added per day).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the checkout's packages first (benchmarks/drivers.py would shadow the drivers package)
sys.path.insert(0, str(ROOT))

from tracker.service import forecast as fc  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "config" / "cast.toml"))
    ap.add_argument("--year", type=int, default=2027)
    ap.add_argument("--days", type=int, default=4)
    ap.add_argument("--first-day", type=int, default=170)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    days = list(range(a.first_day, a.first_day + a.days))
    tasks = fc.make_tasks(a.config, a.year, a.runs, seed=1, days=days)
    print(f"{Path(a.config).name}: {len(tasks)} day tasks ({a.runs} run(s) x {a.days} days "
          f"from day {a.first_day} of {a.year}), {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}")
    t0 = time.perf_counter()
    one = fc.run_tasks(tasks, workers=1)
    wall1 = time.perf_counter() - t0
    t0 = time.perf_counter()
    many = fc.run_tasks(tasks, workers=a.workers)
    wallk = time.perf_counter() - t0

    def strip(rs):
        return [(r.day_index, r.run, r.available_s, r.on_sun_s, r.effective_s) for r in rs]
    same = strip(one) == strip(many)
    per_day = sum(r.wall_s for r in one) / len(one)
    cpu_day = sum(r.cpu_s for r in one) / len(one)
    overhead = max(0.0, wall1 / len(one) - per_day)
    cpu_k = sum(r.cpu_s for r in many)
    print(f"1 worker          {wall1:8.1f} s  ({per_day:.1f} s wall, {cpu_day:.1f} s CPU per "
          f"simulated day)")
    print(f"{a.workers} workers         {wallk:8.1f} s  speed-up {wall1 / wallk:.2f}x "
          f"(target >= 1.8x on 2 cores); the workers got {cpu_k / wallk:.2f} cores on average")
    print(f"same figures      {'yes' if same else 'NO'}")
    for label, cost in (("wall", per_day + overhead), ("CPU", cpu_day + overhead)):
        print(f"a year x {a.runs} run(s) on 64 workers from the {label} cost per day: "
              f"{365 * a.runs * cost / 64 / 60:.1f} min ({365 * a.runs} day tasks at "
              f"{cost:.1f} s; ceil(365 / 64) = 6 rounds: {6 * a.runs * cost / 60:.1f} min "
              "with one task per worker per round)")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
