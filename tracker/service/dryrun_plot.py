"""The dry run's picture: the Sun's path against the envelope, the windows, the pointing error."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tracker.config import Settings
from tracker.planning.planner import Plan


def plot_dry_run(settings: Settings, plan: Plan, series: list, path: str | Path,
                 tolerance_arcsec: float) -> None:
    """Write a PNG: sky chart (Sun path, envelope boxes, mount pointing) and error time series."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    env = settings.envelope
    fig, (sky, err) = plt.subplots(2, 1, figsize=(11, 8), constrained_layout=True)
    times = [datetime.fromtimestamp(r[0], UTC) for r in series]
    sun_az = [r[1] for r in series]
    sun_el = [r[2] for r in series]
    sky.scatter(sun_az, sun_el, s=2, c="orange", label="Sun (geometric)")
    tracking = [r for r in series if r[6] == "tracking"]
    sky.scatter([r[3] for r in tracking], [r[4] for r in tracking], s=3, c="tab:blue",
                label="mount pointing while tracking")
    for b in env.boresights:
        lo = env.azimuth_min_deg + b.azimuth_offset_deg
        width = env.azimuth_max_deg - env.azimuth_min_deg
        el_lo = min(b.elevation_sign * env.elevation_min_deg, b.elevation_sign * env.elevation_max_deg)
        height = env.elevation_max_deg - env.elevation_min_deg
        for shift in (-720.0, -360.0, 0.0, 360.0):
            sky.add_patch(Rectangle((lo + shift, el_lo), min(width, 360.0), height, fill=True,
                                    alpha=0.12, color="tab:green",
                                    label=f"envelope ({b.name})" if shift == 0.0 else None))
    sky.set_xlim(0, 360)
    sky.set_ylim(-90, 90)
    sky.set_xlabel("azimuth (deg, from north through east)")
    sky.set_ylabel("elevation (deg)")
    sky.set_title(f"{settings.site.name}: Sun path, envelope and tracking")
    sky.legend(loc="upper right", fontsize=8)
    sky.grid(alpha=0.3)
    for w in plan.windows:
        err.axvspan(datetime.fromtimestamp(w.start_s, UTC), datetime.fromtimestamp(w.end_s, UTC),
                    color="tab:green", alpha=0.12)
    err.plot([t for t, r in zip(times, series, strict=True) if r[6] == "tracking"],
             [r[5] for r in tracking], ".", ms=2, color="tab:blue", label="pointing error")
    err.axhline(tolerance_arcsec, color="tab:red", lw=1, label=f"tolerance {tolerance_arcsec:g} arcsec")
    err.set_yscale("symlog", linthresh=1.0)
    err.set_ylim(bottom=0.0)
    err.set_ylabel("pointing error (arcsec)")
    err.set_xlabel("time (UTC); shaded: tracking windows")
    err.legend(loc="upper right", fontsize=8)
    err.grid(alpha=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)
