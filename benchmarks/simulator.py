"""The simulated mount characterised: true tracking error vs wind, structural mode, speed.

    python benchmarks/simulator.py [--preset babyiaxo] [--minutes 15] [--speed-hours 2]

1. TRUE pointing error (magnet's mechanical axis vs the Sun, simulator truth)
   after settling, RMS and max, at wind means 0, 5, 10, 15 m/s (gusts 3 m/s =
   turbulence sigma 1 m/s), with and without the wind feed-forward (the
   unbalance feed-forward stays on), side by side; the encoder-based error the
   controller sees beside it.  Harness: ``simulator.harness.track_sun`` (the
   control law + SimMount, 10 Hz).
1b. The same for the ENGINE (``tracker.service.dryrun``: state machine, wind
   supervisor, the engine's load feed-forward from ``[tracking.load_feedforward]``):
   without the wind term (unbalance only) and with it.  At 15 m/s the wind
   supervisor stows on the gusts: the on-Sun seconds say how much was tracked.
2. Every preset at the target condition (5 m/s, gusts 3 m/s): true RMS <= 2",
   max <= 10"; 2b the engine's dry run on each, load feed-forward off and on.
   ``--engine-only``: sections 1b and 2b alone.
3. The structural mode recovered from a simulated step response (a wind step
   on the braked mount; FFT of the load's ring-down) vs the configured one.
4. What each part of the control law and of the mount buys (``--parts``).
5. Speed, side by side with the old rigid-axis simulator (first-order velocity
   lag, backlash, OU gusts; ``git show REF:simulator/mount.py``, default the
   commit before the physics, ``--rigid-ref``) measured in the same run: the
   mount step alone, and the whole in-process dry run (engine, no store) over
   ``--speed-hours`` mostly tracking (target: >= 2880x real time).
6. ``--climate-days N`` (slow: N days of the engine's dry run, ~1300x real time): the
   efficiency over N days in a wind climate (the hourly mean wind Weibull distributed,
   k = 2, mean ``wind_mean_m_s``, persistent from hour to hour), with the wind's
   statistics, the wind stows and the time stowed, and the true error.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator.harness import track_sun  # noqa: E402
from simulator.mount import SimMount  # noqa: E402
from tracker import config  # noqa: E402
from tracker.astro.timeinput import to_unix_s  # noqa: E402

PRESETS = ("sim", "cast", "babyiaxo", "iaxo")
ROOT = Path(__file__).resolve().parent.parent
#: The last commit with the rigid-axis simulator (main before the physics came back).
RIGID_REF = "3ed1c21"


def rigid_mount_class(ref: str):
    """``SimMount`` of the rigid-axis simulator at git ``ref`` (None when git cannot give it)."""
    try:
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:simulator/mount.py"],
                             capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    path = Path(tempfile.mkdtemp()) / "rigid_mount.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("rigid_mount", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.SimMount


def load(name: str) -> config.Settings:
    return config.load(config.CONFIG_DIR / f"{name}.toml")


def mode_from_step(settings: config.Settings, axis: str) -> float:
    """Frequency (Hz) of the load's ring-down after a wind step on the braked mount."""
    sim = settings.simulator.model_copy(update={"track_unevenness_arcsec": 0.0,
                                                "backlash_arcsec": 0.0})
    m = SimMount(settings.model_copy(update={"simulator": sim}))
    m.set_wind(0.0)
    m.step(1.0)
    m.set_wind(12.0, from_deg=m.azimuth.motor_deg + 45.0)
    ax = m.axes[axis]
    dt = 0.01
    x = []
    for _ in range(2000):
        m.step(dt)
        x.append(ax.true_position_deg - ax.motor_deg)
    y = (np.asarray(x) - np.mean(x)) * np.hanning(len(x))
    n = 16 * len(y)
    spec = np.abs(np.fft.rfft(y, n))
    f = np.fft.rfftfreq(n, dt)
    return float(f[int(np.argmax(spec[1:])) + 1])


def mount_speed(settings: config.Settings, seconds: float = 600.0, mount_class=SimMount) -> float:
    """Simulated s per wall s of SimMount.step(0.1) alone, both axes tracking."""
    m = mount_class(settings, azimuth_deg=100.0, elevation_deg=10.0)
    for ax in m.axes.values():
        ax.enable()
    m.azimuth.command_velocity(0.004)
    m.elevation.command_velocity(0.002)
    n = int(seconds / 0.1)
    t0 = time.perf_counter()
    for _ in range(n):
        m.step(0.1)
        m.azimuth.heartbeat()
        m.elevation.heartbeat()
    return seconds / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="babyiaxo")
    ap.add_argument("--minutes", type=float, default=15.0, help="tracking per table row")
    ap.add_argument("--speed-hours", type=float, default=2.0)
    ap.add_argument("--start", default="2026-06-21T00:00:00Z")
    ap.add_argument("--parts", action="store_true", help="also section 4 (slow)")
    ap.add_argument("--rigid-ref", default=RIGID_REF)
    ap.add_argument("--engine-only", action="store_true", help="sections 1b and 2b alone")
    ap.add_argument("--engine-hours", type=float, default=1.0, help="dry run per row, 1b/2b")
    ap.add_argument("--climate-days", type=float, default=0.0,
                    help="section 6: days of dry run in a wind climate (0: skip)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    start_s = float(to_unix_s(args.start))
    dur = args.minutes * 60.0
    s = load(args.preset)
    if args.engine_only:
        engine_wind(s, args.preset, start_s, args.engine_hours)
        engine_presets(start_s, args.engine_hours)
        return

    print(f"1. true error vs wind ({args.preset}, {args.minutes:g} min per row after 2 min "
          f"settling; arcsec)")
    print(f"{'wind mean':>9} {'gust':>5} | {'no wind FF':^27} | {'wind FF':^27}")
    print(f"{'m/s':>9} {'m/s':>5} | {'true rms':>8} {'true max':>8} {'enc rms':>8} | "
          f"{'true rms':>8} {'true max':>8} {'enc rms':>8}")
    for mean, gust in ((0.0, 0.0), (5.0, 3.0), (10.0, 3.0), (15.0, 3.0)):
        row = []
        for ff in (False, True):
            r = track_sun(s, start_s, dur, preset=args.preset, wind_mean_m_s=mean,
                          wind_gust_m_s=gust, wind_feedforward=ff)
            row.append(f"{r.true_rms_arcsec:8.2f} {r.true_max_arcsec:8.2f} "
                       f"{r.encoder_rms_arcsec:8.2f}")
        print(f"{mean:9.0f} {gust:5.0f} | {row[0]} | {row[1]}")

    engine_wind(s, args.preset, start_s, args.engine_hours)

    print("\n2. every preset at 5 m/s, gusts 3 m/s (target: true rms <= 2, max <= 10 arcsec)")
    for name in PRESETS:
        r = track_sun(load(name), start_s, dur, preset=name, wind_mean_m_s=5.0,
                      wind_gust_m_s=3.0)
        ok = r.true_rms_arcsec <= 2.0 and r.true_max_arcsec <= 10.0
        print(f"   {name:<9} true rms {r.true_rms_arcsec:5.2f}  max {r.true_max_arcsec:5.2f}"
              f"   encoder rms {r.encoder_rms_arcsec:5.2f}  max {r.encoder_max_arcsec:5.2f}"
              f"   {'met' if ok else 'NOT met'}")

    engine_presets(start_s, args.engine_hours)

    print("\n3. structural mode from a step response (braked mount, wind step; FFT)")
    for name in PRESETS:
        ps = load(name)
        for axis in ("azimuth", "elevation"):
            conf = getattr(ps.simulator, axis).mode_hz
            zeta = getattr(ps.simulator, axis).mode_damping
            got = mode_from_step(ps, axis)
            expect = conf * math.sqrt(1 - zeta * zeta)
            print(f"   {name:<9} {axis:<9} configured {conf:5.2f} Hz, recovered {got:5.3f} Hz "
                  f"({100 * (got / expect - 1):+.2f} % of the damped frequency)")

    if args.parts:
        parts_table(s, args, start_s, dur)
    speed(s, args, start_s)
    if args.climate_days > 0:
        climate(s, args.preset, args.start, args.climate_days)


def climate(s: config.Settings, preset: str, start: str, days: float) -> None:
    """Section 6: efficiency over ``days`` in a wind climate, with its statistics."""
    import sqlite3
    import tempfile

    import numpy as np

    from simulator.mount import wind_climate
    from tracker.service import dryrun

    sim = s.simulator.model_copy(update={"wind_weibull_k": 2.0})
    cs = s.model_copy(update={"simulator": sim})
    w = wind_climate(cs)                                            # the mount's own draw
    assert w is not None
    hours = np.array([w.hour_m_s(n) for n in range(int(days * 24))])
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "log.sqlite"
        r = asyncio.run(dryrun.run(cs, float(to_unix_s(start)), days * 86400.0, db_path=db))
        con = sqlite3.connect(db)
        stows = con.execute("SELECT count(*) FROM events WHERE kind = 'state' AND message "
                            "LIKE '%-> stowing: wind%'").fetchone()[0]
        con.close()
    stowed = r.state_seconds.get("stowed", 0.0) + r.state_seconds.get("stowing", 0.0)
    print(f"\n6. {days:g} days in a wind climate ({preset}, from {start}; hourly mean wind "
          f"Weibull k = 2, mean {sim.wind_mean_m_s:g} m/s, hour-to-hour correlation "
          f"{sim.wind_hour_correlation:g})")
    print(f"   hourly mean wind: mean {hours.mean():.1f}, median {np.median(hours):.1f}, max "
          f"{hours.max():.1f} m/s; daily means "
          + ", ".join(f"{d:.1f}" for d in hours[: int(days) * 24].reshape(-1, 24).mean(axis=1)))
    print(f"   wind stows {stows}, stowed {stowed / 3600.0:.1f} h; efficiency {r.efficiency:.4f} "
          f"({r.tracked_s:.0f} of {r.available_s:.0f} s); true rms / max "
          f"{r.true_rms_error_arcsec or float('nan'):.2f} / "
          f"{r.true_max_error_arcsec or float('nan'):.2f} arcsec; {r.faults} faults; "
          f"{r.speedup:.0f}x real time")


def with_load_ff(settings: config.Settings, enabled: bool, wind: bool = True,
                 **simulator: float) -> config.Settings:
    """``settings`` with ``[tracking.load_feedforward]`` switched, simulator values replaced."""
    tr = settings.tracking
    lf = tr.load_feedforward.model_copy(update={"enabled": enabled, "wind": wind})
    return settings.model_copy(update={
        "tracking": tr.model_copy(update={"load_feedforward": lf}),
        "simulator": settings.simulator.model_copy(update=simulator)})


def engine_window_run(settings: config.Settings, start_s: float, hours: float):
    """The engine's dry run for ``hours`` from 10 min before the first window that long."""
    from tracker.planning.planner import plan
    from tracker.service import dryrun

    w = next(w for w in plan(settings, start_s, start_s + 3 * 86400.0).windows
             if w.start_s > start_s + 600.0 and not w.clipped_start
             and w.end_s - w.start_s >= hours * 3600.0 - 600.0)
    return asyncio.run(dryrun.run(settings, w.start_s - 600.0, hours * 3600.0))


def _cells(r) -> str:
    nan = float("nan")
    return (f"{r.true_rms_error_arcsec or nan:5.2f} / {r.true_max_error_arcsec or nan:5.2f} "
            f"({r.rms_error_arcsec or nan:4.2f}) {r.tracked_s:5.0f} s")


def engine_wind(s: config.Settings, preset: str, start_s: float, hours: float) -> None:
    """Section 1b: the engine's true error vs wind, its wind feed-forward off and on."""
    print(f"\n1b. the engine's dry run ({preset}, {hours:g} h from 10 min before a window): "
          "true rms / max (encoder rms) on-Sun s")
    print(f"{'wind mean':>9} {'gust':>5} | {'no wind FF (unbalance FF)':^31} | "
          f"{'wind FF':^31}")
    for mean, gust in ((0.0, 0.0), (5.0, 3.0), (10.0, 3.0), (15.0, 3.0)):
        row = [_cells(engine_window_run(with_load_ff(s, True, ff, wind_mean_m_s=mean,
                                                     wind_gust_m_s=gust), start_s, hours))
               for ff in (False, True)]
        print(f"{mean:9.0f} {gust:5.0f} | {row[0]:>31} | {row[1]:>31}")


def engine_presets(start_s: float, hours: float = 1.0) -> None:
    """Section 2b: the engine itself (dry run) on each preset, load feed-forward off and on."""
    print(f"\n2b. the engine's dry run, {hours:g} h from 10 min before a window, 5 m/s, gusts 3 "
          "(arcsec; true rms / max (encoder rms), on-Sun s by the log's encoders, by the truth)")
    for name in PRESETS:
        for ff in (False, True):
            r = engine_window_run(with_load_ff(load(name), ff), start_s, hours)
            ok = ((r.true_rms_error_arcsec or 99.0) <= 2.0
                  and (r.true_max_error_arcsec or 99.0) <= 10.0)
            print(f"   {name:<9} load FF {'on ' if ff else 'off'}  {_cells(r)} / "
                  f"{r.true_on_sun_s or 0.0:.0f} s   {'met' if ok else 'NOT met'}")


def parts_table(s: config.Settings, args, start_s: float, dur: float) -> None:
    print(f"\n4. what each part buys ({args.preset}, arcsec; true rms / max)")
    parts = [
        ("full: rate + unbalance + wind FF", {}),
        ("no wind FF", {"wind_feedforward": False}),
        ("no unbalance FF", {"unbalance_feedforward": False}),
        ("no FF at all (rate FF kept)", {"wind_feedforward": False,
                                          "unbalance_feedforward": False}),
        ("no rate FF (position loop only)", {"rate_feedforward": False}),
        ("position gain 2/s instead of 1/s", {"gain_per_s": 2.0}),
        ("controller model exact (0 % error)", {"model_error": 0.0}),
        ("controller model 30 % off", {"model_error": 0.3}),
    ]
    print(f"   {'':<36} {'5 m/s, gusts 3':>16} {'10 m/s, gusts 3':>16}")
    for label, kw in parts:
        cells = []
        for mean in (5.0, 10.0):
            r = track_sun(s, start_s, dur, preset=args.preset, wind_mean_m_s=mean,
                          wind_gust_m_s=3.0, **kw)
            cells.append(f"{r.true_rms_arcsec:6.2f} / {r.true_max_arcsec:5.2f}")
        print(f"   {label:<36} {cells[0]:>16} {cells[1]:>16}")
    for label, upd in (("mount: no track unevenness", {"track_unevenness_arcsec": 0.0}),
                       ("mount: no backlash", {"backlash_arcsec": 0.0}),
                       ("mount: drive velocity loops 1.0 Hz", "vloop")):
        sim = s.simulator
        if upd == "vloop":
            upd = {ax: getattr(sim, ax).model_copy(update={"velocity_loop_hz": 1.0})
                   for ax in ("azimuth", "elevation")}
        ms = s.model_copy(update={"simulator": sim.model_copy(update=upd)})
        cells = []
        for mean in (5.0, 10.0):
            r = track_sun(ms, start_s, dur, preset=args.preset, wind_mean_m_s=mean,
                          wind_gust_m_s=3.0)
            cells.append(f"{r.true_rms_arcsec:6.2f} / {r.true_max_arcsec:5.2f}")
        print(f"   {label:<36} {cells[0]:>16} {cells[1]:>16}")



def speed(s: config.Settings, args, start_s: float) -> None:
    import simulator.mount as sim_mount
    from tracker.planning.planner import plan
    from tracker.service import dryrun

    print(f"\n5. speed, side by side with the rigid-axis simulator ({args.rigid_ref})")
    rigid = rigid_mount_class(args.rigid_ref)
    if rigid is None:
        print(f"   (git cannot show {args.rigid_ref}:simulator/mount.py: no rigid reference)")
    w = next(w for w in plan(s, start_s, start_s + 2 * 86400.0).windows
             if w.start_s > start_s + 600.0 and not w.clipped_start)
    new_class = sim_mount.SimMount
    results: dict[str, tuple[float, float, object]] = {}
    # Interleaved (rigid, new, rigid, new): the machine's load drifts; the best of two counts.
    for _ in range(2):
        for label, cls in (("rigid", rigid), ("physics", new_class)):
            if cls is None:
                continue
            sps = mount_speed(s, mount_class=cls)
            sim_mount.SimMount = cls          # what dryrun.run builds its mount from
            try:
                r = asyncio.run(dryrun.run(s, w.start_s - 600.0, args.speed_hours * 3600.0))
            finally:
                sim_mount.SimMount = new_class
            best = results.get(label)
            results[label] = (max(sps, best[0]) if best else sps,
                              max(r.speedup, best[1]) if best else r.speedup, r)
    for label, (sps, dry, r) in results.items():
        print(f"   {label:<8} SimMount.step(0.1) {sps:>9,.0f}x real time "
              f"({0.1 / sps * 1e6:5.1f} us a period); dry run {args.speed_hours:g} h mostly "
              f"tracking at 10 Hz {dry:>6,.0f}x (efficiency {r.efficiency:.4f}, true rms "
              f"{r.true_rms_error_arcsec or float('nan'):.2f} arcsec)")
    if "rigid" in results:
        (s0, d0, _), (s1, d1, _) = results["rigid"], results["physics"]
        print(f"   physics / rigid: mount step {s1 / s0:.2f}, dry run {d1 / d0:.2f} "
              f"(the same run, best of two each)")
    print("   (benchmarks/dryrun.py runs the whole day, with its idle night)")


if __name__ == "__main__":
    main()
