"""Exposure and pointing statistics over tracking-log samples (pure numpy, no I/O).

Definitions (what a physicist gets from ``tracker exposure``):

- A sample row covers ``(time_s - dt_s, time_s]``; rows straddling the range ends count in
  proportion to their overlap with ``[t0_s, t1_s)``.
- ``on_sun_s``: sum of the rows' ``on_sun_s`` (seconds within the on-Sun tolerance while
  tracking, decided by the control loop at >= the log rate).
- ``tracking_s``: seconds logged in state ``"tracking"``.
- A *tracking stretch* is a run of tracking rows with one boresight and no gap (a row starting
  more than ``gap_tolerance_s`` after the previous row ended).  Pointing error statistics
  (``rms/mean/p95/max_error_arcsec``) use the rows of each stretch that start at least
  ``settle_s`` after the stretch began, weighted by their duration; ``max`` is the largest
  per-interval maximum (``error_max_arcsec``).
- ``true_rms_error_arcsec``/``true_max_error_arcsec``: the same rows' TRUE error (where the
  magnet's mechanical axis really points, from the simulator's truth; sampled at each row's
  end), beside the encoder-based figures; None when the log has no truth (real drives).
- An *exposure interval* is a run of rows fully on-Sun (``on_sun_s == dt_s``) with one
  boresight and no gap: the intervals an axion analysis integrates over.  Rows only partly
  on-Sun (entering/leaving tolerance) are in ``on_sun_s`` but in no interval, so the intervals'
  total is at most ``on_sun_s``.  Each interval has the mean pointing offset measured - target
  in ``az * cos(el)`` and ``el`` (arc-seconds, azimuth difference wrapped to +-180 deg).
- Per bore (rows with the ``bores`` column, see ``tracker.mount.bores``): ``on_sun_s`` (the
  bore's off-axis angle within its tolerance while tracking), ``effective_s`` (on-Sun seconds
  times the optics' efficiency), ``tracking_s``, the mean (duration-weighted) and max off-axis
  angle; a *bore interval* is a run of rows in which the bore is on the Sun for the whole
  row, with one boresight and no gap (``bore_intervals``).  For every bore
  ``effective_s <= on_sun_s <= tracking_s``.
- ``true_bores``: the same per-bore totals from the ``true_bores`` column (each bore's
  off-axis angle from the simulator's TRUE pointing, integrated per tick by the recorder, the
  same definitions); empty when the log has no truth (real drives, older logs).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import numpy as np

from tracker.mount.bores import decode
from tracker.timefmt import iso_utc

_EPS_S = 1e-6


def weighted_stats(errors_arcsec: np.ndarray, weights: np.ndarray,
                   maxima_arcsec: np.ndarray | None = None) -> dict:
    """RMS, mean, 95th percentile (weighted) and max of errors; None values when empty."""
    e = np.asarray(errors_arcsec, dtype=float)
    w = np.asarray(weights, dtype=float)
    keep = np.isfinite(e) & (w > 0)
    e, w = e[keep], w[keep]
    if e.size == 0 or w.sum() <= 0:
        return {"rms_error_arcsec": None, "mean_error_arcsec": None, "p95_error_arcsec": None,
                "max_error_arcsec": None, "stats_s": 0.0}
    total = float(w.sum())
    order = np.argsort(e, kind="stable")
    cum = np.cumsum(w[order])
    p95 = float(e[order][min(np.searchsorted(cum, 0.95 * total - 1e-9), e.size - 1)])
    mx = float(e.max())
    if maxima_arcsec is not None:
        m = np.asarray(maxima_arcsec, dtype=float)[keep]
        if np.isfinite(m).any():
            mx = max(mx, float(np.nanmax(m)))
    return {"rms_error_arcsec": float(np.sqrt(np.sum(w * e * e) / total)),
            "mean_error_arcsec": float(np.sum(w * e) / total),
            "p95_error_arcsec": p95, "max_error_arcsec": mx, "stats_s": total}


def offsets_arcsec(target_az_deg, target_el_deg, measured_az_deg, measured_el_deg):
    """(measured - target) as (az * cos(el), el) offsets in arc-seconds."""
    daz = (np.asarray(measured_az_deg) - np.asarray(target_az_deg) + 180.0) % 360.0 - 180.0
    return (daz * np.cos(np.radians(target_el_deg)) * 3600.0,
            (np.asarray(measured_el_deg) - np.asarray(target_el_deg)) * 3600.0)


@dataclass
class _Interval:
    start_s: float
    end_s: float
    boresight: str
    weight_s: float
    daz_sum: float
    del_sum: float
    err2_sum: float
    err_max: float
    n: int
    #: Weighted sums of the Sun's direction (the tracked target) as an ENU unit vector.
    sun_e: float = 0.0
    sun_n: float = 0.0
    sun_u: float = 0.0
    sun_distance_au: float | None = None

    def to_json(self) -> dict:
        w = self.weight_s if self.weight_s > 0 else 1.0
        e, n, u = self.sun_e, self.sun_n, self.sun_u
        sun = ({"sun_mean_az_deg": math.degrees(math.atan2(e, n)) % 360.0,
                "sun_mean_el_deg": math.degrees(math.atan2(u, math.hypot(e, n)))}
               if (e or n or u) else {"sun_mean_az_deg": None, "sun_mean_el_deg": None})
        return {"start_utc": iso_utc(self.start_s), "end_utc": iso_utc(self.end_s),
                "start_s": self.start_s, "end_s": self.end_s,
                "duration_s": self.end_s - self.start_s, "boresight": self.boresight,
                **sun, "sun_distance_au": self.sun_distance_au,
                "mean_offset_az_cos_el_arcsec": self.daz_sum / w,
                "mean_offset_el_arcsec": self.del_sum / w,
                "rms_error_arcsec": math.sqrt(self.err2_sum / w),
                "max_error_arcsec": self.err_max, "n_samples": self.n}


@dataclass
class ExposureAccumulator:
    """Feed time-ordered chunks of samples (``tracker.log.store.SAMPLE_DTYPE`` arrays), then
    ``result()``.  Chunks may overlap the range; rows are clipped to ``[t0_s, t1_s)``."""

    t0_s: float
    t1_s: float
    settle_s: float = 30.0
    intervals: bool = False
    gap_tolerance_s: float = 1.0
    max_gaps: int = 1000
    #: (latitude deg, longitude deg, height m) of the site: intervals then carry the
    #: Earth-Sun distance at their middle.
    site: tuple[float, float, float] | None = None
    # carried state
    _prev_end_s: float | None = None
    _prev_tracking: bool = False
    _prev_boresight: str = ""
    _stretch_start_s: float = -math.inf
    _n: int = 0
    _logged_s: float = 0.0
    _on_sun_s: float = 0.0
    _tracking_s: float = 0.0
    _state_s: dict = field(default_factory=dict)
    _bs: dict = field(default_factory=dict)          # boresight -> [on_sun_s, tracking_s]
    _bs_code: dict = field(default_factory=dict)     # boresight -> small int
    _err: list = field(default_factory=list)         # (errors, weights, maxima, boresights)
    _true_err: list = field(default_factory=list)    # (true errors, weights)
    _gaps: list = field(default_factory=list)
    _gap_s: float = 0.0
    _n_gaps: int = 0
    _intervals: list = field(default_factory=list)
    _open: _Interval | None = None
    _bores: BoreAccumulator | None = None
    _true_bores: BoreAccumulator | None = None

    def feed(self, rows: np.ndarray) -> None:
        if rows.size == 0:
            return
        t = rows["time_s"].astype(float)
        dt = np.maximum(rows["dt_s"].astype(float), 0.0)
        start = t - dt
        lo = np.maximum(start, self.t0_s)
        hi = np.minimum(t, self.t1_s)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            frac = np.where(dt > 0, np.clip((hi - lo) / np.where(dt > 0, dt, 1.0), 0.0, 1.0),
                            ((t >= self.t0_s) & (t < self.t1_s)).astype(float))
        inside = frac > 0
        weight = dt * frac
        state = rows["state"]
        boresight = rows["boresight"]
        tracking = state == "tracking"
        # On-Sun time counts only while tracking and never exceeds the row's length, whatever
        # a (damaged or foreign) log says: on-Sun <= tracking <= logged, by definition.
        on_sun = np.where(tracking, np.clip(np.nan_to_num(rows["on_sun_s"].astype(float),
                                                          nan=0.0), 0.0, dt), 0.0)

        prev_end = np.concatenate(([self._prev_end_s if self._prev_end_s is not None
                                    else -math.inf], t[:-1]))
        gap = start - prev_end > self.gap_tolerance_s
        if self._prev_end_s is None:
            gap[0] = False
        prev_tracking = np.concatenate(([self._prev_tracking], tracking[:-1]))
        prev_bs = np.concatenate(([self._prev_boresight], boresight[:-1]))
        new_stretch = tracking & (~prev_tracking | (boresight != prev_bs) | gap)
        stretch_start = np.maximum.accumulate(np.where(new_stretch, start, -math.inf))
        stretch_start[~np.isfinite(stretch_start)] = self._stretch_start_s
        settled = tracking & inside & (start >= stretch_start + self.settle_s - _EPS_S)

        # totals
        self._n += int(inside.sum())
        self._logged_s += float(weight.sum())
        self._on_sun_s += float((on_sun * frac).sum())
        self._tracking_s += float(weight[tracking].sum())
        names, codes = _factorize(state)
        per_state = np.bincount(codes, weights=weight, minlength=len(names))
        for k, name in enumerate(names):
            if inside[codes == k].any():
                self._state_s[name] = self._state_s.get(name, 0.0) + float(per_state[k])
        names, codes = _factorize(boresight)
        bs_codes = np.array([self._bs_code.setdefault(n, len(self._bs_code)) for n in names],
                            dtype=np.int16)[codes]
        trk_in = inside & tracking
        for k, name in enumerate(names):
            sel = codes == k
            if (sel & trk_in).any():
                acc = self._bs.setdefault(name, [0.0, 0.0])
                acc[0] += float((on_sun[sel] * frac[sel]).sum())
                acc[1] += float(weight[sel & tracking].sum())
        if settled.any():
            self._err.append((rows["error_arcsec"][settled].astype(np.float32),
                              weight[settled].astype(np.float32),
                              rows["error_max_arcsec"][settled].astype(np.float32),
                              bs_codes[settled]))
            if "true_error_arcsec" in (rows.dtype.names or ()):
                self._true_err.append((rows["true_error_arcsec"][settled].astype(np.float32),
                                       weight[settled].astype(np.float32)))
        # gaps (between two logged rows, clipped to the range)
        for i in np.flatnonzero(gap):
            g0, g1 = max(float(prev_end[i]), self.t0_s), min(float(start[i]), self.t1_s)
            if g1 > g0:
                self._n_gaps += 1
                self._gap_s += g1 - g0
                if len(self._gaps) < self.max_gaps:
                    self._gaps.append({"start_utc": iso_utc(g0), "end_utc": iso_utc(g1),
                                       "duration_s": g1 - g0})
        if self.intervals:
            self._feed_intervals(rows, on_sun, dt, lo, hi, weight, inside, tracking, boresight,
                                 prev_bs, gap)
        if "bores" in (rows.dtype.names or ()):
            if self._bores is None:
                self._bores = BoreAccumulator(self.gap_tolerance_s, self.intervals)
            self._bores.feed(rows["bores"], start, t, dt, frac, lo, hi, inside & tracking,
                             boresight)
        if "true_bores" in (rows.dtype.names or ()):
            if self._true_bores is None:
                self._true_bores = BoreAccumulator(self.gap_tolerance_s, intervals=False)
            self._true_bores.feed(rows["true_bores"], start, t, dt, frac, lo, hi,
                                  inside & tracking, boresight)

        self._prev_end_s = float(t[-1])
        self._prev_tracking = bool(tracking[-1])
        self._prev_boresight = str(boresight[-1])
        self._stretch_start_s = float(stretch_start[-1])

    def _feed_intervals(self, rows, on_sun, dt, lo, hi, weight, inside, tracking, boresight,
                        prev_bs, gap) -> None:
        full = tracking & inside & (dt > 0) & (on_sun >= dt - _EPS_S)
        prev_full = np.concatenate(([self._open is not None], full[:-1]))
        begins = full & (~prev_full | gap | (boresight != prev_bs))
        daz, delv = offsets_arcsec(rows["target_az_deg"], rows["target_el_deg"],
                                   rows["measured_az_deg"], rows["measured_el_deg"])
        err = rows["error_arcsec"].astype(float)
        idx = np.flatnonzero(full)
        if idx.size == 0:
            self._close_open()
            return
        if begins[idx[0]]:
            self._close_open()
        run_id = np.cumsum(begins[idx])          # 0 = continues the open interval
        for rid in np.unique(run_id):
            sel = idx[run_id == rid]
            w = weight[sel]
            az = np.radians(rows["target_az_deg"][sel].astype(float))
            el = np.radians(rows["target_el_deg"][sel].astype(float))
            piece = _Interval(float(lo[sel[0]]), float(hi[sel[-1]]), str(boresight[sel[0]]),
                              float(w.sum()), float((daz[sel] * w).sum()),
                              float((delv[sel] * w).sum()), float((err[sel] ** 2 * w).sum()),
                              float(np.fmax.reduce(rows["error_max_arcsec"][sel])), int(sel.size),
                              float(np.nansum(np.cos(el) * np.sin(az) * w)),
                              float(np.nansum(np.cos(el) * np.cos(az) * w)),
                              float(np.nansum(np.sin(el) * w)))
            if rid == 0 and self._open is not None:
                o = self._open
                o.end_s = piece.end_s
                o.weight_s += piece.weight_s
                o.daz_sum += piece.daz_sum
                o.del_sum += piece.del_sum
                o.err2_sum += piece.err2_sum
                o.err_max = max(o.err_max, piece.err_max)
                o.n += piece.n
                o.sun_e += piece.sun_e
                o.sun_n += piece.sun_n
                o.sun_u += piece.sun_u
            else:
                self._close_open()
                self._open = piece
        if not full[-1]:
            self._close_open()

    def _off_sun_intervals(self, ivs: list[dict]) -> list[dict]:
        """The complement of the on-Sun intervals within [t0, t1) (background time):
        ``start_utc``, ``end_utc``, ``duration_s`` (time not logged, listed in ``gaps``, is
        not told apart here)."""
        edges = sorted((iv["start_s"], iv["end_s"]) for iv in ivs)
        out = []
        t = self.t0_s
        for a, b in edges + [(self.t1_s, self.t1_s)]:
            if a > t + _EPS_S:
                out.append({"start_utc": iso_utc(t), "end_utc": iso_utc(a), "start_s": t,
                            "end_s": a, "duration_s": a - t})
            t = max(t, b)
        return out

    def _close_open(self) -> None:
        if self._open is not None:
            self._intervals.append(self._open)
            self._open = None

    def result(self) -> dict:
        """The statistics as a JSON-able dict (times also as ISO 8601 'Z')."""
        self._close_open()
        if self._err:
            e = np.concatenate([x[0] for x in self._err])
            w = np.concatenate([x[1] for x in self._err])
            m = np.concatenate([x[2] for x in self._err])
            b = np.concatenate([x[3] for x in self._err])
        else:
            e = w = m = np.zeros(0)
            b = np.zeros(0, dtype=np.int16)
        out = {"from_utc": iso_utc(self.t0_s), "to_utc": iso_utc(self.t1_s),
               "from_s": self.t0_s, "to_s": self.t1_s,
               "span_s": self.t1_s - self.t0_s, "n_samples": self._n,
               "logged_s": self._logged_s, "on_sun_s": self._on_sun_s,
               "tracking_s": self._tracking_s,
               "on_sun_fraction_of_tracking": (self._on_sun_s / self._tracking_s
                                               if self._tracking_s > 0 else None),
               "settle_s": self.settle_s}
        out.update(weighted_stats(e, w, m))
        te = np.concatenate([x[0] for x in self._true_err]) if self._true_err else np.zeros(0)
        tw = np.concatenate([x[1] for x in self._true_err]) if self._true_err else np.zeros(0)
        true_stats = weighted_stats(te, tw)
        out["true_rms_error_arcsec"] = true_stats["rms_error_arcsec"]
        out["true_max_error_arcsec"] = true_stats["max_error_arcsec"]
        out["state_s"] = dict(sorted(self._state_s.items()))
        boresights = {}
        for name in sorted(self._bs):
            on, trk = self._bs.get(name, [0.0, 0.0])
            sel = b == self._bs_code.get(name, -1)
            boresights[name] = {"on_sun_s": on, "tracking_s": trk,
                                **weighted_stats(e[sel], w[sel], m[sel])}
        out["boresights"] = boresights
        out["gaps"] = self._gaps
        out["n_gaps"] = self._n_gaps
        out["gap_s"] = self._gap_s
        if self.intervals:
            if self.site is not None and self._intervals:
                from tracker.astro.ephemeris import sun_distance_au
                mids = np.array([0.5 * (iv.start_s + iv.end_s) for iv in self._intervals])
                dist = np.atleast_1d(sun_distance_au(mids, *self.site))
                for iv, d in zip(self._intervals, dist, strict=True):
                    iv.sun_distance_au = float(d)
            ivs = [iv.to_json() for iv in self._intervals]
            out["intervals"] = ivs
            out["intervals_s"] = float(sum(iv["duration_s"] for iv in ivs))
            out["off_sun_intervals"] = self._off_sun_intervals(ivs)
        bores = self._bores.result() if self._bores is not None else ({}, [])
        out["bores"] = bores[0]
        out["true_bores"] = self._true_bores.result()[0] if self._true_bores is not None else {}
        if self.intervals:
            out["bore_intervals"] = bores[1]
        return out



def _factorize(values: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(distinct names, integer code per element) for a string column that changes rarely
    (state, boresight): works on the runs, not on every element."""
    if values.size == 0:
        return [], np.zeros(0, dtype=np.intp)
    heads = np.r_[0, np.flatnonzero(values[1:] != values[:-1]) + 1]
    lookup: dict[str, int] = {}
    head_codes = np.array([lookup.setdefault(str(v), len(lookup)) for v in values[heads]],
                          dtype=np.intp)
    lengths = np.diff(np.r_[heads, values.size])
    return list(lookup), np.repeat(head_codes, lengths)


class SampleStats:
    """The exposure statistics of samples as they are recorded (a sink for the engine's
    recorder): the same ``ExposureAccumulator``, so a dry run, ``tracker exposure`` and
    ``tracker report`` give the same figures for the same samples.  ``intervals``: build
    the on-Sun and bore intervals too (a dry run reports the totals only)."""

    def __init__(self, t0_s: float, t1_s: float, *, settle_s: float, chunk: int = 4096,
                 site: tuple[float, float, float] | None = None, intervals: bool = False
                 ) -> None:
        from tracker.log.store import SAMPLE_DTYPE, SAMPLE_FIELDS
        self._dtype = SAMPLE_DTYPE
        self._row = operator.attrgetter(*SAMPLE_FIELDS)
        self._acc = ExposureAccumulator(t0_s, t1_s, settle_s=settle_s, intervals=intervals,
                                        site=site)
        self._rows: list[tuple] = []
        self._chunk = chunk

    def __call__(self, sample) -> None:
        self._rows.append(self._row(sample))
        if len(self._rows) >= self._chunk:
            self._feed()

    def _feed(self) -> None:
        if self._rows:
            self._acc.feed(np.array(self._rows, dtype=self._dtype))
            self._rows = []

    def result(self) -> dict:
        self._feed()
        return self._acc.result()


class BoreAccumulator:
    """Per-bore exposure from the ``bores`` column (see the module docstring), fed in time
    order; carries open intervals across chunks."""

    def __init__(self, gap_tolerance_s: float = 1.0, intervals: bool = True) -> None:
        self.gap_tolerance_s = gap_tolerance_s
        #: Build the bore intervals (False: the totals alone, the same figures).
        self.intervals = intervals
        #: bore -> [on_sun_s, effective_s, tracking_s, off-axis * s, weight s, max off-axis]
        self._tot: dict[str, list[float]] = {}
        self._open: dict[str, dict] = {}
        self._done: list[dict] = []
        self._prev_end_s: float | None = None
        self._prev_boresight = ""

    def feed(self, texts, start, end, dt, frac, lo, hi, tracking, boresight) -> None:
        # plain Python values, once per chunk (numpy scalars cost ~100 ns per use)
        start, end, dt, frac = start.tolist(), end.tolist(), dt.tolist(), frac.tolist()
        lo, hi, tracking = lo.tolist(), hi.tolist(), tracking.tolist()
        boresight = [str(b) for b in boresight.tolist()]
        tots, opened, done, intervals = self._tot, self._open, self._done, self.intervals
        for i, text in enumerate(texts):
            bs, dti = boresight[i], dt[i]
            cont = (self._prev_end_s is not None
                    and start[i] - self._prev_end_s <= self.gap_tolerance_s
                    and bs == self._prev_boresight)
            figures = decode(text) if tracking[i] else {}
            if not cont or not figures:
                self._close_all()
            f = frac[i]
            w = dti * f
            for name, (mean_a, max_a, on_s, eff_s) in figures.items():
                tot = tots.get(name)
                if tot is None:
                    tot = tots[name] = [0.0, 0.0, 0.0, 0.0, 0.0, -1.0]
                # each within 0..its bound, NaN as 0 (written out: no min/max calls)
                on_s = 0.0 if not on_s > 0.0 else (dti if on_s > dti else on_s)
                eff_s = 0.0 if not eff_s > 0.0 else (on_s if eff_s > on_s else eff_s)
                tot[0] += on_s * f
                tot[1] += eff_s * f
                tot[2] += w
                if mean_a == mean_a:
                    tot[3] += mean_a * w
                    tot[4] += w
                if max_a == max_a and max_a > tot[5]:
                    tot[5] = max_a
                if not intervals:
                    continue
                iv = opened.get(name)
                if not (dti > 0 and on_s >= dti - _EPS_S):     # not on the Sun throughout
                    if iv is not None:
                        done.append(opened.pop(name))
                    continue
                if iv is None:
                    iv = opened[name] = {"start_s": lo[i], "end_s": hi[i], "bore": name,
                                         "boresight": bs, "_a": 0.0, "_w": 0.0,
                                         "max_off_axis_arcsec": -1.0, "effective_s": 0.0,
                                         "n_samples": 0}
                iv["end_s"] = hi[i]
                if mean_a == mean_a:
                    iv["_a"] += mean_a * w
                    iv["_w"] += w
                if max_a == max_a and max_a > iv["max_off_axis_arcsec"]:
                    iv["max_off_axis_arcsec"] = max_a
                iv["effective_s"] += eff_s * f
                iv["n_samples"] += 1
            for name in [n for n in opened if n not in figures]:
                done.append(opened.pop(name))
            self._prev_end_s = end[i]
            self._prev_boresight = bs

    def _close_all(self) -> None:
        self._done.extend(self._open.values())
        self._open.clear()

    def result(self) -> tuple[dict, list[dict]]:
        """({bore: totals}, bore intervals in time order)."""
        self._close_all()
        totals = {name: {"on_sun_s": t[0], "effective_s": t[1], "tracking_s": t[2],
                         "mean_off_axis_arcsec": t[3] / t[4] if t[4] > 0 else None,
                         "max_off_axis_arcsec": t[5] if t[5] >= 0 else None}
                  for name, t in sorted(self._tot.items())}
        ivs = []
        for iv in sorted(self._done, key=lambda d: (d["start_s"], d["bore"])):
            a, w = iv.pop("_a"), iv.pop("_w")
            ivs.append({"start_utc": iso_utc(iv["start_s"]), "end_utc": iso_utc(iv["end_s"]),
                        **iv, "duration_s": iv["end_s"] - iv["start_s"],
                        "mean_off_axis_arcsec": a / w if w > 0 else None,
                        "max_off_axis_arcsec": (iv["max_off_axis_arcsec"]
                                                if iv["max_off_axis_arcsec"] >= 0 else None)})
        self._done = []
        return totals, ivs
