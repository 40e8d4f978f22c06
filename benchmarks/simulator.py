"""The simulated mount characterised: true tracking error vs wind, structural mode, speed.

    python benchmarks/simulator.py [--preset babyiaxo] [--minutes 15] [--speed-hours 2]

1. TRUE pointing error (magnet's mechanical axis vs the Sun, simulator truth)
   after settling, RMS and max, at wind means 0, 5, 10, 15 m/s (gusts 3 m/s =
   turbulence sigma 1 m/s; plus the 5 m/s row with sigma 3 m/s), with and
   without the wind feed-forward (the unbalance feed-forward stays on), side by
   side; the encoder-based error the controller sees beside it.  Harness:
   ``simulator.harness.track_sun`` (the control law + SimMount, 10 Hz).
2. Every preset at the target condition (5 m/s, gusts 3 m/s): true RMS <= 2",
   max <= 10".
3. The structural mode recovered from a simulated step response (a wind step
   on the braked mount; FFT of the load's ring-down) vs the configured one.
4. Speed: simulated seconds per wall second of the mount step alone, and of the
   whole in-process dry run (engine + store-less) over ``--speed-hours``, as a
   simulated day's wall time (target: a day in <= 30 s, >= 2880x).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator.harness import track_sun  # noqa: E402
from simulator.mount import SimMount  # noqa: E402
from tracker import config  # noqa: E402
from tracker.astro.timeinput import to_unix_s  # noqa: E402

PRESETS = ("sim", "cast", "babyiaxo", "iaxo")


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


def mount_speed(settings: config.Settings, seconds: float = 600.0) -> float:
    """Simulated s per wall s of SimMount.step(0.1) alone, both axes tracking."""
    m = SimMount(settings, azimuth_deg=100.0, elevation_deg=10.0)
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
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    start_s = float(to_unix_s(args.start))
    dur = args.minutes * 60.0
    s = load(args.preset)

    print(f"1. true error vs wind ({args.preset}, {args.minutes:g} min per row after 2 min "
          f"settling; arcsec)")
    print(f"{'wind mean':>9} {'gust':>5} | {'no wind FF':^27} | {'wind FF':^27}")
    print(f"{'m/s':>9} {'m/s':>5} | {'true rms':>8} {'true max':>8} {'enc rms':>8} | "
          f"{'true rms':>8} {'true max':>8} {'enc rms':>8}")
    for mean, gust in ((0.0, 0.0), (5.0, 3.0), (5.0, 9.0), (10.0, 3.0), (15.0, 3.0)):
        row = []
        for ff in (False, True):
            r = track_sun(s, start_s, dur, preset=args.preset, wind_mean_m_s=mean,
                          wind_gust_m_s=gust, wind_feedforward=ff)
            row.append(f"{r.true_rms_arcsec:8.2f} {r.true_max_arcsec:8.2f} "
                       f"{r.encoder_rms_arcsec:8.2f}")
        print(f"{mean:9.0f} {gust:5.0f} | {row[0]} | {row[1]}")
    print("   (gust 9 m/s = turbulence sigma 3 m/s: 60 % intensity, a stress case)")

    print("\n2. every preset at 5 m/s, gusts 3 m/s (target: true rms <= 2, max <= 10 arcsec)")
    for name in PRESETS:
        r = track_sun(load(name), start_s, dur, preset=name, wind_mean_m_s=5.0,
                      wind_gust_m_s=3.0)
        ok = r.true_rms_arcsec <= 2.0 and r.true_max_arcsec <= 10.0
        print(f"   {name:<9} true rms {r.true_rms_arcsec:5.2f}  max {r.true_max_arcsec:5.2f}"
              f"   encoder rms {r.encoder_rms_arcsec:5.2f}  max {r.encoder_max_arcsec:5.2f}"
              f"   {'met' if ok else 'NOT met'}")

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

    print("\n5. speed")
    sps = mount_speed(s)
    print(f"   SimMount.step(0.1) alone: {sps:,.0f}x real time "
          f"({0.1 / sps * 1e6:.1f} us per control period)")
    from tracker.planning.planner import plan
    from tracker.service import dryrun

    w = next(w for w in plan(s, start_s, start_s + 2 * 86400.0).windows
             if w.start_s > start_s + 600.0 and not w.clipped_start)
    r = asyncio.run(dryrun.run(s, w.start_s - 600.0, args.speed_hours * 3600.0))
    tracking_day_s = 86400.0 / r.speedup
    print(f"   dry run, {args.speed_hours:g} h mostly tracking at 10 Hz: {r.speedup:,.0f}x real "
          f"time (a day at this rate: {tracking_day_s:.1f} s wall); efficiency "
          f"{r.efficiency:.4f}, encoder rms {r.rms_error_arcsec or float('nan'):.2f} arcsec")
    print("   (benchmarks/dryrun.py runs the whole day, with its idle night)")


if __name__ == "__main__":
    main()
