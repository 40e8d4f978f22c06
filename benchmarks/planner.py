"""Time to plan a year of tracking windows for each preset (target: < 5 s per site).

    .venv/bin/python benchmarks/planner.py [--year 2026] [--presets cast,iaxo,...]

Prints, per preset: the SunTrack build time for the year (ephemeris), the
planning time on that track, the total as ``planner.plan`` does it (build +
plan), the number of windows, the tracking fraction and the wrap splits.
Imports and astropy's first-use costs are paid by a warm-up and reported apart.
"""

from __future__ import annotations

import argparse
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

from tracker import config

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


def _load(name: str) -> config.Settings:
    path = CONFIG_DIR / f"{name}.toml"
    data = tomllib.loads(path.read_text())
    data["drives"] = {"kind": "sim"}   # the planner needs no drives
    return config.parse(data, str(path))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--year", type=int, default=2026)
    ap.add_argument("--presets", default="cast,babyiaxo,iaxo,sim")
    args = ap.parse_args()
    t0 = datetime(args.year, 1, 1, tzinfo=UTC).timestamp()
    t1 = datetime(args.year + 1, 1, 1, tzinfo=UTC).timestamp()

    w0 = time.perf_counter()
    from tracker.astro.ephemeris import SunTrack
    from tracker.planning import planner
    warm = _load("cast")
    planner.plan(warm, t0, t0 + 86400.0)
    print(f"warm-up (imports, IERS tables, one day): {time.perf_counter() - w0:.2f} s")
    print(f"{'preset':10} {'build s':>8} {'plan s':>7} {'total s':>8} {'windows':>7} "
          f"{'fraction':>8} {'split':>5}  target < 5 s")
    for name in args.presets.split(","):
        s = _load(name)
        site = s.site
        a = time.perf_counter()
        track = SunTrack(site.latitude_deg, site.longitude_deg, site.height_m, t0 - 120.0,
                         t1 + 120.0)
        b = time.perf_counter()
        result = planner.plan(s, t0, t1, track=track)
        c = time.perf_counter()
        planner.plan(s, t0, t1)   # as callers do it: build + plan
        d = time.perf_counter()
        splits = sum(1 for w in result.windows if w.split_part == 1)
        total = d - c
        print(f"{name:10} {b - a:8.2f} {c - b:7.2f} {total:8.2f} {len(result.windows):7d} "
              f"{result.tracking_fraction:8.4f} {splits:5d}  {'ok' if total < 5.0 else 'SLOW'}")


if __name__ == "__main__":
    main()
