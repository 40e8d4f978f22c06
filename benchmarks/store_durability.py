"""Tracking log under load and outage: the store before issue 11 and now, side by side.

Loads the previous ``tracker/log/store.py`` (``--old PATH``; default: the one of commit
7df4046, before issue 11) next to the current one and runs the same work on each, on real
SQLite files in a temporary folder (``synchronous=FULL`` as the daemon):

- ``wal_max_kib``: the largest WAL file seen during 3000 commits of one sample each;
- ``commit_ms``: mean wall time of one ``add_sample`` that commits (10 Hz samples, 1 s
  commit interval), p99 of all ``add_sample`` calls;
- ``flood_s``/``flood_rows``: 3000 refused commands (``audit``) in a tight loop: wall time and
  audit rows written (the old store commits each one with a sync);
- ``catchup_max_ms``: after an outage of 6000 samples (SQLITE_FULL from ``max_page_count``),
  the longest single ``add_sample`` call once space is back (the old store writes the whole
  backlog in one call);
- ``open_s``: opening a 67 MB log (1M samples): the check before use costs this much.

Run: ``.venv/bin/python benchmarks/store_durability.py [--old PATH]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.records import T0_S  # noqa: E402


def load_store(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def sample(mod: ModuleType, t_s: float, dt_s: float = 0.1):
    return mod.Sample(t_s, dt_s, "tracking", "main", 120.0, 10.0, 120.0001, 10.0001,
                      120.0001, 10.0001, 0.5, 0.6, dt_s)


def p99(values: list[float]) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, math.ceil(0.99 * len(v)) - 1)]


def run(mod: ModuleType, folder: Path, big: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    # WAL size
    path = folder / "wal.sqlite"
    s = mod.TrackingStore(path, commit_interval_s=0.0)
    wal = path.with_name(path.name + "-wal")
    biggest = 0
    for i in range(3000):
        s.add_sample(sample(mod, T0_S + i, 1.0))
        biggest = max(biggest, wal.stat().st_size if wal.exists() else 0)
    s.close()
    out["wal_max_kib"] = biggest / 1024
    # commit cost at 10 Hz
    s = mod.TrackingStore(folder / "rate.sqlite")
    calls, commits = [], []
    for i in range(600):
        c0 = s.commits
        t0 = time.perf_counter()
        s.add_sample(sample(mod, T0_S + 0.1 * i))
        dt = time.perf_counter() - t0
        calls.append(dt)
        if s.commits != c0:
            commits.append(dt)
    s.close()
    out["commit_ms"] = 1e3 * sum(commits) / len(commits)
    out["add_sample_p99_ms"] = 1e3 * p99(calls)
    # flood of refusals
    path = folder / "flood.sqlite"
    s = mod.TrackingStore(path)
    t0 = time.perf_counter()
    for i in range(3000):
        s.audit(T0_S + i * 1e-3, "alpaca:127.0.0.1", "connected", {}, False, "no token")
    out["flood_s"] = time.perf_counter() - t0
    s.flush()
    out["flood_rows"] = len(s.audit_records(limit=100_000))
    s.close()
    # catch-up after an outage
    s = mod.TrackingStore(folder / "outage.sqlite")
    s.add_sample(sample(mod, T0_S))
    pages = s._db.execute("PRAGMA page_count").fetchone()[0]
    s._db.execute(f"PRAGMA max_page_count={pages + 1}")
    t = T0_S
    for _ in range(6000):
        t += 0.1
        s.add_sample(sample(mod, t))
    s._db.execute("PRAGMA max_page_count=1073741823")
    worst = 0.0
    for _ in range(300):
        t += 0.1
        t0 = time.perf_counter()
        s.add_sample(sample(mod, t))
        worst = max(worst, time.perf_counter() - t0)
    out["catchup_max_ms"] = 1e3 * worst
    out["catchup_backlog_left"] = s.backlog
    s.close()
    # open a big log
    t0 = time.perf_counter()
    s = mod.TrackingStore(big)
    out["open_s"] = time.perf_counter() - t0
    s.close()
    return out


def make_big(mod: ModuleType, path: Path) -> None:
    import sqlite3

    mod.TrackingStore(path).close()
    row = mod._sample_row(sample(mod, T0_S, 1.0))
    with sqlite3.connect(path) as db:
        for k in range(50):
            db.executemany(mod._INSERT_SAMPLE, [(T0_S + k * 20000 + i,) + row[1:]
                                                for i in range(20000)])
            db.commit()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", default=None, help="the previous store.py (default: commit 7df4046's)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
        folder = Path(tmp)
        old_path = Path(args.old) if args.old else folder / "old_store.py"
        if not args.old:
            old_path.write_text(subprocess.run(
                ["git", "-C", str(ROOT), "show", "7df4046:tracker/log/store.py"],
                check=True, capture_output=True, text=True).stdout)
        new = load_store(ROOT / "tracker" / "log" / "store.py", "store_new")
        old = load_store(old_path, "store_old")
        results = {}
        for label, mod in (("old", old), ("new", new)):
            sub = folder / label
            sub.mkdir()
            big = sub / "big.sqlite"
            make_big(mod, big)
            results[label] = run(mod, sub, big)
    print(f"{'':24s}{'old':>12s}{'new':>12s}{'new/old':>10s}")
    for key in results["new"]:
        a, b = results["old"][key], results["new"][key]
        ratio = f"{b / a:10.2f}" if a else f"{'-':>10s}"
        print(f"{key:24s}{a:12.3f}{b:12.3f}{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
