"""Dry-run speed and tracking accuracy, side by side in one run.

    python benchmarks/dryrun.py [--days 1] [--presets sim,cast,babyiaxo,iaxo] [--modbus-hours 2]
                                [--python OTHER_PYTHON]

1. One simulated day of each preset (config/<preset>.toml) at its control rate with the
   in-process simulator, the same engine code path as the daemon, without and with the
   SQLite log (``--db``): speed-up over real time for both (target >= 2880x, i.e. a day in
   <= 30 s), tracking efficiency, RMS and maximum pointing error after settling.  The
   figures of the two runs must agree (the log only records).
2. A window over Modbus TCP on loopback (real pymodbus server hosting the simulator, real
   Modbus driver) for config/sim.toml: the same figures, and the ratio of the two speeds
   (``--modbus-hours 0`` skips it).

Wall-clock ratios depend on the machine and its load: compare runs made side by side.  The
``cpu`` columns divide by the process's CPU time instead (``time.process_time``): on a shared
machine that is the figure to compare; the target is judged on the wall ratio.

They depend on the interpreter's build too, which the first line names: the same code runs
up to 1.3x faster on a statically linked CPython (libpython in the executable, as
Debian's ``/usr/bin/python3``) than on one built with ``--enable-shared`` and no
``--enable-optimizations`` (as pyenv's here); and on whether the tick's modules run compiled
(``setup.py``: 1.4-1.8x), which the first line says as well.  ``--python OTHER_PYTHON`` runs each preset
under a second interpreter (a venv with this project installed) right after this one, so
the two are compared in the same minutes (docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import platform
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tracker import compiled, config  # noqa: E402
from tracker.astro.timeinput import to_unix_s  # noqa: E402
from tracker.planning.planner import plan  # noqa: E402
from tracker.service import dryrun  # noqa: E402

#: The speed-up over real time a simulated day must reach (a day in 30 s).
TARGET_RATIO = 2880.0
PRESETS = "sim,cast,babyiaxo,iaxo"


def _f(x: float | None) -> str:
    return "   n/a" if x is None else f"{x:6.2f}"


def _cpu_ratio(r: dryrun.DryRunReport) -> float:
    """Simulated seconds per CPU second of the process."""
    return r.sim_s / r.cpu_s if r.cpu_s > 0 else 0.0


def _figures(r: dryrun.DryRunReport) -> tuple:
    return (r.efficiency, r.rms_error_arcsec, r.max_error_arcsec, r.faults, r.ticks)


def _interpreter() -> str:
    """This interpreter: version, executable and how libpython is linked (Linux: from the
    process's memory map; a shared one runs the tick slower, docs/performance.md)."""
    try:
        with open("/proc/self/maps") as maps:
            shared = "shared" if "libpython" in maps.read() else "static"
    except OSError:
        shared = "unknown"
    flags = [f for f in ("--enable-optimizations", "--with-lto")
             if f in str(sysconfig.get_config_var("CONFIG_ARGS"))]
    from simulator import axis, mount  # noqa: F401  (the compiled modules a dry run imports)
    from tracker.loop import engine  # noqa: F401
    n = len(compiled.loaded())
    return (f"Python {platform.python_version()} {sys.executable}: libpython {shared}"
            + (f", {' '.join(flags)}" if flags else "")
            + (f"; {n} modules compiled (mypyc)" if n else "; no module compiled (pure Python)"))


def _row(preset: str, settings: config.Settings, start_s: float, span_s: float) -> str:
    """One preset's line: its day without and with the SQLite log, and whether both meet
    the target."""
    plain = asyncio.run(dryrun.run(settings, start_s, span_s, config_name=preset))
    with tempfile.TemporaryDirectory() as tmp:
        logged = asyncio.run(dryrun.run(settings, start_s, span_s, config_name=preset,
                                        db_path=Path(tmp) / "dry-run.db"))
    met = min(plain.speedup, logged.speedup) >= TARGET_RATIO
    same = "" if _figures(plain) == _figures(logged) else "  (figures differ with --db!)"
    return (f"{plain.ticks:>8} {plain.wall_s:>7.1f} {plain.speedup:>6.0f}x "
            f"{_cpu_ratio(plain):>5.0f}x {logged.wall_s:>7.1f} {logged.speedup:>6.0f}x "
            f"{_cpu_ratio(logged):>5.0f}x  {plain.efficiency:>7.4f} "
            f"{_f(plain.rms_error_arcsec)} {_f(plain.max_error_arcsec)} {plain.faults:>3}  "
            f"{'met' if met else 'NOT met'}{same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--presets", default=PRESETS, help=f"comma-separated (default {PRESETS})")
    ap.add_argument("--modbus-hours", type=float, default=2.0)
    ap.add_argument("--start", default="2026-06-21T00:00:00Z")
    ap.add_argument("--python", metavar="OTHER_PYTHON",
                    help="also run each preset under this interpreter, right after this one")
    ap.add_argument("--row", metavar="PRESET", help=argparse.SUPPRESS)   # --python's child
    ap.add_argument("--describe", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    start_s = float(to_unix_s(args.start))
    span_s = args.days * 86400.0
    if args.describe or args.row:
        print(_interpreter() if args.describe else _row(
            args.row, config.load(config.CONFIG_DIR / f"{args.row}.toml"), start_s, span_s))
        return
    other = [args.python, __file__, "--days", str(args.days), "--start", args.start]
    print(f"{args.days:g} simulated day(s) from {args.start}, in process; ratio = simulated / "
          f"wall seconds (target >= {TARGET_RATIO:.0f}x)")
    print(f"{'A: ' if args.python else ''}{_interpreter()}")
    if args.python:
        described = subprocess.run([*other, "--describe"], capture_output=True, text=True,
                                   check=True)
        print(f"B: {described.stdout.strip()}")
    print(f"\n{'preset':<12} {'ticks':>8} {'wall s':>7} {'ratio':>7} {'cpu':>6} "
          f"{'wall s':>7} {'ratio':>7} {'cpu':>6}  "
          f"{'effic.':>7} {'rms_as':>6} {'max_as':>6} {'flt':>3}  target")
    print(f"{'':<12} {'':>8} {'(no --db)':>22} {'(--db)':>22}")
    for preset in args.presets.split(","):
        settings = config.load(config.CONFIG_DIR / f"{preset}.toml")
        label = preset + (" A" if args.python else "")
        print(f"{label:<12} {_row(preset, settings, start_s, span_s)}", flush=True)
        if args.python:
            row = subprocess.run([*other, "--row", preset], capture_output=True, text=True,
                                 check=True)
            print(f"{preset + ' B':<12} {row.stdout.rstrip()}", flush=True)
    if args.modbus_hours <= 0:
        return
    settings = config.load(config.CONFIG_DIR / "sim.toml")
    day = asyncio.run(dryrun.run(settings, start_s, span_s, config_name="sim"))
    # The first window that opens after the start: the mount pre-positions as in operation.
    w = next(w for w in plan(settings, start_s, start_s + 2 * 86400.0).windows
             if w.start_s > start_s + 600.0 and not w.clipped_start)
    mb = asyncio.run(dryrun.run(settings, w.start_s - 600.0, args.modbus_hours * 3600.0,
                                driver="modbus"))
    print(f"\nModbus TCP loopback, {args.modbus_hours:g} h of sim.toml: {mb.speedup:.0f}x, "
          f"{mb.ticks / mb.wall_s:,.0f} ticks/s, efficiency {mb.efficiency:.4f}, rms "
          f"{_f(mb.rms_error_arcsec).strip()} arcsec; "
          f"{(day.ticks / day.wall_s) / (mb.ticks / mb.wall_s):.1f}x slower than in process")


if __name__ == "__main__":
    main()
