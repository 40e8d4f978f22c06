"""Exposure reports for physicists: JSON, CSV and PNG plots from a tracking log.

``build_report(store, t0_s, t1_s, settings=...)`` gathers, for ``[t0_s, t1_s)``:
the totals and per-boresight figures of ``tracker.log.exposure``, one row per UTC day (on-Sun
seconds, tracking seconds, planned window seconds and efficiency when a config is given,
pointing error statistics, gaps, and per bore ``<bore>_on_sun_s``, ``<bore>_effective_s``,
``<bore>_mean_off_axis_arcsec`` and, when the log has the simulator's truth, the same as
``<bore>_true_...``), time in each state (from the logged samples and from the
state events), the faults, and the exposure intervals.  ``write_report`` writes it to a
folder: ``report.json``, ``days.csv``, ``intervals.csv``, ``states.csv``, ``faults.csv`` and
the plots ``exposure_per_day.png``, ``pointing_error.png`` and ``sky_YYYY-MM-DD.png``.

All times UTC; ISO 8601 with 'Z' in every output.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tracker.errors import TimeInputError
from tracker.log.store import TrackingStore, iso_utc

log = logging.getLogger(__name__)

DAY_S = 86400.0
_DATE = re.compile(r"^\s*(\d{4})-(\d{2})-(\d{2})\s*$")


def parse_when(text: str) -> float:
    """A UTC date ``YYYY-MM-DD`` (its midnight) or an ISO 8601 time with zone -> unix s."""
    m = _DATE.match(text)
    if m:
        import datetime as dt
        try:
            day = dt.datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=dt.UTC)
        except ValueError as exc:
            raise TimeInputError(f"date {text!r}: {exc}") from None
        return day.timestamp()
    from tracker.astro.timeinput import to_unix_s
    return float(to_unix_s(text))


def resolve_range(store: TrackingStore, start: str | None, end: str | None) -> tuple[float, float]:
    """``--from``/``--to`` (either may be None: the log's first/last record) -> (t0, t1)."""
    t0 = parse_when(start) if start else None
    t1 = parse_when(end) if end else None
    if t0 is None or t1 is None:
        rng = store.time_range()
        if rng is None:
            raise TimeInputError(f"the tracking log {store.path} has no samples; "
                                 "give --from and --to")
        t0 = t0 if t0 is not None else float(math.floor(rng[0]))
        t1 = t1 if t1 is not None else float(math.ceil(rng[1]))
    if not t1 > t0:
        raise TimeInputError(f"--to {iso_utc(t1)} must be after --from {iso_utc(t0)}")
    return t0, t1


def day_starts(t0_s: float, t1_s: float) -> list[float]:
    """UTC midnights of the days overlapping ``[t0_s, t1_s)``."""
    d = math.floor(t0_s / DAY_S) * DAY_S
    out = []
    while d < t1_s:
        out.append(d)
        d += DAY_S
    return out


def _state_of(event: dict) -> str | None:
    """The state an event's data moves to, or None (no data, not JSON, not a dict)."""
    data = event.get("data")
    if not isinstance(data, dict) or data.get("invalid_json") is True:
        return None
    state = data.get("to", data.get("state"))
    return state if isinstance(state, str) else None


def state_time_from_events(store: TrackingStore, t0_s: float, t1_s: float) -> dict[str, Any]:
    """Seconds in each state from the state events, clipped to ``[t0_s, t1_s)``.

    The state before ``t0_s`` is the last state event before it; the last state lasts until
    ``t1_s`` or the log's last record, whichever is first.  Also counts entries per state.
    """
    end_s = min(t1_s, store.last_time_s() or t0_s)
    seconds: dict[str, float] = {}
    entries: dict[str, int] = {}
    before = store.state_at(t0_s)
    cur = _state_of(before) if before else None
    cur_t = t0_s
    after_id = 0
    while True:
        batch = store.events(after_id=after_id, kinds=["state"], t0_s=t0_s, t1_s=t1_s,
                             limit=10000)
        if not batch:
            break
        for ev in batch:
            t = min(max(ev["time_s"], t0_s), end_s)
            if cur is not None and t > cur_t:
                seconds[cur] = seconds.get(cur, 0.0) + (t - cur_t)
            cur = _state_of(ev)
            cur_t = max(cur_t, t)
            if cur is not None:
                entries[cur] = entries.get(cur, 0) + 1
        after_id = batch[-1]["id"]
    if cur is not None and end_s > cur_t:
        seconds[cur] = seconds.get(cur, 0.0) + (end_s - cur_t)
    return {"seconds": dict(sorted(seconds.items())), "entries": dict(sorted(entries.items()))}


def _plan(settings, t0_s: float, t1_s: float):
    try:
        from tracker.planning.planner import plan
        return plan(settings, t0_s, t1_s)
    except Exception as exc:   # the report still comes without the plan
        log.warning("no tracking windows in the report: planner failed: %s", exc)
        return None


def _window_s(plan, t0_s: float, t1_s: float, boresight: str | None = None) -> float:
    total = 0.0
    for w in plan.windows:
        if boresight is None or w.boresight == boresight:
            total += max(0.0, min(w.end_s, t1_s) - max(w.start_s, t0_s))
    return total


#: Per-bore figures of a day row (``<bore>_<quantity>``; the truth's as ``<bore>_true_...``).
BORE_DAY_QUANTITIES = ("on_sun_s", "effective_s", "mean_off_axis_arcsec")


def bore_day_figures(exposure: dict, bores: list[str], truth: bool) -> dict[str, float | None]:
    """A day's per-bore columns from its ``exposure`` figures (``bores`` and, with ``truth``,
    ``true_bores``): seconds 0.0 and mean off-axis None for a bore not tracked that day."""
    from tracker.log.export import column_name
    out: dict[str, float | None] = {}
    for key, prefix in (("bores", ""), ("true_bores", "true_")) if truth else (("bores", ""),):
        for b in bores:
            fig = exposure[key].get(b, {})
            for q in BORE_DAY_QUANTITIES:
                out[column_name(b, prefix + q)] = fig.get(q, None if q.endswith("arcsec")
                                                          else 0.0)
    return out


def build_report(store: TrackingStore, t0_s: float, t1_s: float, *, settings=None,
                 settle_s: float | None = None) -> dict:
    """Everything the report files hold, as one JSON-able dict (see module docstring)."""
    if settle_s is None:
        settle_s = settings.tracking.settle_s if settings is not None else 30.0
    site = ((settings.site.latitude_deg, settings.site.longitude_deg, settings.site.height_m)
            if settings is not None else None)
    total = store.exposure(t0_s, t1_s, settle_s=settle_s, intervals=True, per_day=True,
                           site=site)
    intervals = total.pop("intervals")
    per_day = total.pop("days")
    plan = _plan(settings, t0_s, t1_s) if settings is not None else None
    bores = sorted(set(total["bores"]) | set(total["true_bores"]))
    truth = bool(total["true_bores"])
    days = []
    for e in per_day:
        a, b = e["from_s"], e["to_s"]
        row = {"date": e["from_utc"][:10], "from_utc": e["from_utc"], "to_utc": e["to_utc"],
               "on_sun_s": e["on_sun_s"], "tracking_s": e["tracking_s"],
               "available_s": None, "efficiency": None,
               "rms_error_arcsec": e["rms_error_arcsec"],
               "mean_error_arcsec": e["mean_error_arcsec"],
               "p95_error_arcsec": e["p95_error_arcsec"],
               "max_error_arcsec": e["max_error_arcsec"],
               "true_rms_error_arcsec": e["true_rms_error_arcsec"],
               "true_max_error_arcsec": e["true_max_error_arcsec"],
               "n_samples": e["n_samples"], "logged_s": e["logged_s"], "gap_s": e["gap_s"],
               "faults": 0, **bore_day_figures(e, bores, truth)}
        if plan is not None:
            row["available_s"] = _window_s(plan, a, b)
            if row["available_s"] > 0:
                row["efficiency"] = e["on_sun_s"] / row["available_s"]
        days.append(row)
    faults = store.events(kinds=["fault"], t0_s=t0_s, t1_s=t1_s, limit=100_000)
    for f in faults:
        date = f["time_utc"][:10]
        for row in days:
            if row["date"] == date:
                row["faults"] += 1
    report: dict[str, Any] = {
        "from_utc": iso_utc(t0_s), "to_utc": iso_utc(t1_s),
        "generated_utc": iso_utc(round(time.time())),
        "db": str(store.path), "meta": store.meta(),
        "site": None if settings is None else {
            "name": settings.site.name, "latitude_deg": settings.site.latitude_deg,
            "longitude_deg": settings.site.longitude_deg, "height_m": settings.site.height_m},
        "on_sun_tolerance_arcsec": None if settings is None else
        settings.tracking.on_sun_tolerance_arcsec,
        "total": total,
        "days": days,
        "states": {"from_samples_s": total["state_s"],
                   **state_time_from_events(store, t0_s, t1_s)},
        "faults": [{"time_utc": f["time_utc"], "source": f["source"], "message": f["message"],
                    "data": f["data"]} for f in faults],
        "intervals": intervals,
        "day_bore_columns": list(bore_day_figures(total, bores, truth)),
    }
    if plan is not None:
        report["total"]["available_s"] = plan.available_s
        report["total"]["efficiency"] = (total["on_sun_s"] / plan.available_s
                                         if plan.available_s > 0 else None)
        report["windows"] = [w.to_json() for w in plan.windows]
    return report


# ---------------------------------------------------------------------------- files
def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow(["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)
                        for v in r])


def write_intervals_csv(path: str | Path, intervals: list[dict]) -> None:
    """The exposure export: one line per interval of continuous on-Sun tracking."""
    cols = ["start_utc", "end_utc", "duration_s", "boresight", "mean_offset_az_cos_el_arcsec",
            "mean_offset_el_arcsec", "rms_error_arcsec", "max_error_arcsec", "n_samples",
            "sun_mean_az_deg", "sun_mean_el_deg", "sun_distance_au"]
    _write_csv(Path(path), cols, [[iv.get(c) for c in cols] for iv in intervals])


def write_report(report: dict, out_dir: str | Path, *, store: TrackingStore | None = None,
                 settings=None, plots: bool = True, sky_days: int = 7,
                 progress: Callable[[str], None] | None = None) -> list[Path]:
    """Write the report files into ``out_dir`` (created); returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    p = out / "report.json"
    p.write_text(json.dumps(clean_json(report), indent=2, allow_nan=False,
                            default=_json_default) + "\n")
    written.append(p)
    day_cols = ["date", "on_sun_s", "tracking_s", "available_s", "efficiency",
                "rms_error_arcsec", "mean_error_arcsec", "p95_error_arcsec", "max_error_arcsec",
                "true_rms_error_arcsec", "true_max_error_arcsec",
                "n_samples", "logged_s", "gap_s", "faults", *report.get("day_bore_columns", [])]
    p = out / "days.csv"
    _write_csv(p, day_cols, [[d[c] for c in day_cols] for d in report["days"]])
    written.append(p)
    p = out / "intervals.csv"
    write_intervals_csv(p, report["intervals"])
    written.append(p)
    st = report["states"]
    names = sorted(set(st["from_samples_s"]) | set(st["seconds"]))
    p = out / "states.csv"
    _write_csv(p, ["state", "logged_s", "from_events_s", "entries"],
               [[n, st["from_samples_s"].get(n, 0.0), st["seconds"].get(n, 0.0),
                 st["entries"].get(n, 0)] for n in names])
    written.append(p)
    p = out / "faults.csv"
    _write_csv(p, ["time_utc", "source", "message"],
               [[f["time_utc"], f["source"], f["message"]] for f in report["faults"]])
    written.append(p)
    if plots:
        written += plot_all(report, out, store=store, settings=settings, sky_days=sky_days,
                            progress=progress)
    return written


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def clean_json(value: Any) -> Any:
    """NaN/inf -> None recursively (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


# ---------------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _dt64(t_s: np.ndarray) -> np.ndarray:
    return (np.asarray(t_s, dtype=float) * 1e6).astype("datetime64[us]")


def plot_all(report: dict, out: Path, *, store: TrackingStore | None, settings=None,
             sky_days: int = 7, progress: Callable[[str], None] | None = None) -> list[Path]:
    """Exposure per day, the pointing error series and up to ``sky_days`` daily sky charts.

    ``progress(text)``, if given, is told what is being drawn before each plot.
    """
    say = progress or (lambda _text: None)
    say("exposure per day")
    written = [plot_exposure_per_day(report, out / "exposure_per_day.png")]
    t0 = parse_when(report["from_utc"])
    t1 = parse_when(report["to_utc"])
    if store is not None:
        say("pointing error series")
        written.append(plot_error_series(store, t0, t1, out / "pointing_error.png",
                                         report.get("on_sun_tolerance_arcsec")))
    if settings is not None:
        for d0 in day_starts(t0, t1)[:max(sky_days, 0)]:
            date = iso_utc(d0)[:10]
            say(f"sky chart {date}")
            day_plan = _plan(settings, d0, d0 + DAY_S)      # the whole day's windows
            windows = [w.to_json() for w in day_plan.windows] if day_plan is not None else []
            written.append(plot_sky_chart(settings, d0, out / f"sky_{date}.png", store=store,
                                          windows=windows))
    return written


def plot_exposure_per_day(report: dict, path: Path) -> Path:
    """Bars per UTC day: planned window hours, tracking hours and on-Sun hours."""
    plt = _pyplot()
    days = report["days"]
    x = np.arange(len(days))
    fig, ax = plt.subplots(figsize=(max(6.0, min(0.35 * len(days) + 3, 24)), 4.5),
                           constrained_layout=True)
    avail = [d["available_s"] for d in days]
    if any(a is not None for a in avail):
        ax.bar(x, [(a or 0) / 3600 for a in avail], width=0.8, color="none",
               edgecolor="0.3", label="planned windows")
    ax.bar(x - 0.15, [d["tracking_s"] / 3600 for d in days], width=0.3, color="tab:blue",
           label="tracking")
    ax.bar(x + 0.15, [d["on_sun_s"] / 3600 for d in days], width=0.3, color="tab:orange",
           label="on-Sun (within tolerance)")
    step = max(1, len(days) // 20)
    ax.set_xticks(x[::step], [d["date"] for d in days][::step], rotation=45, ha="right")
    ax.set_ylabel("hours per UTC day")
    tot = report["total"]
    ax.set_title(f"Exposure per UTC day, {report['from_utc'][:16]}Z .. "
                 f"{report['to_utc'][:16]}Z\n{tot['on_sun_s'] / 3600:.2f} h on-Sun, "
                 f"{tot['tracking_s'] / 3600:.2f} h tracking", fontsize=10)
    top = max([d["tracking_s"] for d in days] + [a or 0 for a in avail] + [1.0]) / 3600
    ax.set_ylim(0, top * 1.3)
    ax.legend(loc="upper left", fontsize=8, ncol=3)
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_error_series(store: TrackingStore, t0_s: float, t1_s: float, path: Path,
                      tolerance_arcsec: float | None = None, max_points: int = 20000) -> Path:
    """Pointing error (arc-seconds, log scale) against UTC time while tracking."""
    plt = _pyplot()
    rows = store.samples(t0_s, t1_s, columns=("time_s", "state", "boresight", "error_arcsec",
                                              "error_max_arcsec"))
    rows = rows[rows["state"] == "tracking"]
    fig, ax = plt.subplots(figsize=(11, 4.5), constrained_layout=True)
    for name in np.unique(rows["boresight"]):
        r = rows[rows["boresight"] == name]
        t, e, m = r["time_s"], r["error_arcsec"], r["error_max_arcsec"]
        if t.size > max_points:           # keep every point's worst case: max per bin
            k = int(math.ceil(t.size / max_points))
            n = t.size // k * k
            t = t[:n].reshape(-1, k)[:, 0]
            e = e[:n].reshape(-1, k).mean(axis=1)
            m = np.fmax.reduce(m[:n].reshape(-1, k), axis=1)
        ax.plot(_dt64(t), np.maximum(m, 1e-2), ",", color="0.6", alpha=0.6)
        ax.plot(_dt64(t), np.maximum(e, 1e-2), ".", ms=1.5, label=f"{name} (max per row grey)")
    if tolerance_arcsec:
        ax.axhline(tolerance_arcsec, color="tab:red", lw=1,
                   label=f"on-Sun tolerance {tolerance_arcsec:g} arcsec")
    ax.set_yscale("log")
    ax.set_ylabel("pointing error (arcsec, great circle)")
    ax.set_xlabel("UTC")
    ax.set_title(f"Pointing error while tracking, {iso_utc(t0_s)} .. {iso_utc(t1_s)}")
    if rows.size:
        ax.legend(loc="upper right", fontsize=8, markerscale=6)
    else:
        ax.text(0.5, 0.5, "no tracking samples in this period", ha="center",
                transform=ax.transAxes)
    ax.grid(alpha=0.3, which="both")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def envelope_sky_boxes(settings) -> list[tuple[str, float, float, float, float]]:
    """Per boresight, the envelope as sky boxes (name, az0, az1, el0, el1), az in [0, 360]."""
    env = settings.envelope
    boxes = []
    width = env.azimuth_max_deg - env.azimuth_min_deg
    for b in env.boresights:
        el = sorted((b.elevation_sign * env.elevation_min_deg,
                     b.elevation_sign * env.elevation_max_deg))
        if width >= 360.0:
            boxes.append((b.name, 0.0, 360.0, el[0], el[1]))
            continue
        a0 = (env.azimuth_min_deg + b.azimuth_offset_deg) % 360.0
        a1 = a0 + width
        if a1 <= 360.0:
            boxes.append((b.name, a0, a1, el[0], el[1]))
        else:
            boxes.append((b.name, a0, 360.0, el[0], el[1]))
            boxes.append((b.name, 0.0, a1 - 360.0, el[0], el[1]))
    return boxes


def plot_sky_chart(settings, day_s: float, path: Path, *, store: TrackingStore | None = None,
                   windows: list[dict] | None = None, step_s: float = 120.0) -> Path:
    """The Sun's geometric path over one UTC day, the envelope of each boresight, the
    tracking windows (thick) and the logged pointing while tracking."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    from tracker.astro.ephemeris import sun_altaz

    site = settings.site
    t = np.arange(day_s, day_s + DAY_S + 1, step_s)
    az, el = sun_altaz(t, site.latitude_deg, site.longitude_deg, site.height_m)
    az, el = np.asarray(az), np.asarray(el)
    fig, ax = plt.subplots(figsize=(11, 5.5), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    seen = set()
    for name, a0, a1, e0, e1 in envelope_sky_boxes(settings):
        k = [b.name for b in settings.envelope.boresights].index(name)
        ax.add_patch(Rectangle((a0, e0), a1 - a0, e1 - e0, alpha=0.15,
                               color=colours[(k + 2) % len(colours)],
                               label=None if name in seen else f"envelope, boresight {name}"))
        seen.add(name)
    jump = np.abs(np.diff(az)) > 180.0          # do not draw across north
    az_line = np.insert(az, np.flatnonzero(jump) + 1, np.nan)
    el_line = np.insert(el, np.flatnonzero(jump) + 1, np.nan)
    ax.plot(az_line, el_line, color="orange", lw=1, label="Sun (geometric)")
    for h in range(0, 24, 3):                   # hour marks
        j = int(h * 3600 / step_s)
        ax.annotate(f"{h:02d}h", (az[j], el[j]), fontsize=7, color="0.35",
                    xytext=(2, 2), textcoords="offset points")
    day_end = day_s + DAY_S
    first = True
    for w in windows or []:
        w0, w1 = parse_when(w["start_utc"]), parse_when(w["end_utc"])
        if w1 < day_s or w0 > day_end:
            continue
        sel = (t >= w0) & (t <= w1)
        if not sel.any():
            continue
        a, e = az[sel].copy(), el[sel].copy()
        cut = np.flatnonzero(np.abs(np.diff(a)) > 180.0) + 1
        a, e = np.insert(a, cut, np.nan), np.insert(e, cut, np.nan)
        ax.plot(a, e, color="tab:red", lw=3, alpha=0.7,
                label="tracking windows (plan)" if first else None)
        first = False
        ax.annotate(f"{w['start_utc'][11:16]}-{w['end_utc'][11:16]} {w['boresight']}",
                    (az[sel][0], el[sel][0]), fontsize=7, color="tab:red",
                    xytext=(4, -10), textcoords="offset points")
    if store is not None:
        rows = store.samples(day_s, day_end, columns=("state", "measured_az_deg",
                                                     "measured_el_deg"))
        rows = rows[rows["state"] == "tracking"]
        if rows.size:
            k = max(1, rows.size // 5000)
            ax.plot(rows["measured_az_deg"][::k] % 360.0, rows["measured_el_deg"][::k], ".",
                    ms=1.5, color="tab:blue", label="logged pointing while tracking")
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.set_xlim(0, 360)
    ax.set_ylim(-90, 90)
    ax.set_xticks(range(0, 361, 45))
    ax.set_xlabel("azimuth (deg, from north through east)")
    ax.set_ylabel("elevation (deg, geometric)")
    ax.set_title(f"{site.name}: the Sun on {iso_utc(day_s)[:10]} (UTC)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
