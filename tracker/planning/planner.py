"""Tracking windows: when the geometric Sun is inside the envelope, per boresight.

A window is a maximal interval in which the Sun's topocentric geometric
position can be reached by a boresight without leaving the envelope
(elevation range, azimuth axis range with cable wrap, keep-out zones).
Times are UTC unix seconds; window edges are whole seconds (the first and last
whole second inside), except where a window is clipped at the plan's span.

Method: one vectorised ephemeris evaluation on a coarse grid (``step_s``,
default 30 s) finds the runs; each edge is refined to 1 s by evaluating every
whole second of the bracketing step.  An excursion shorter than the grid step
can be missed (the Sun moves <= 0.13 deg in 30 s; envelopes are degrees wide).

Cable wrap: along a window the axis azimuth follows the unwrapped sky azimuth.
The turn is chosen so the whole window fits (the one with the shortest slew
from the previous window's exit, or from park for the first).  If no turn
fits, the window is split where the chosen turn reaches the wrap limit; the
mount unwinds while the Sun is still in the sky, and the next part starts
when the unwind slew plus the pre-position margin allows (``unwind_before``).

Pre-position: the mount waits at the entry axis position from
``preposition_by_s = start_s - tracking.preposition_margin_s``.  ``slew_ok``
flags whether the slew from the previous exit (or park) fits in the gap.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from tracker.errors import TimeInputError
from tracker.mount.envelope import Envelope
from tracker.timefmt import iso_utc as _iso_utc

if TYPE_CHECKING:
    from tracker.config import Settings

log = logging.getLogger(__name__)

#: Coarse scan step of the planner (seconds).
DEFAULT_STEP_S = 30.0

_Array = npt.NDArray[np.float64]
#: Inside-the-envelope predicate over UTC unix seconds (vectorised).
_Inside = Callable[[_Array], npt.NDArray[np.bool_]]


class SunPath(Protocol):
    """What the planner needs of an ephemeris (``tracker.astro.ephemeris.SunTrack``):
    the geometric Sun (azimuth, elevation; degrees) at UTC unix seconds (arrays)."""

    def altaz(self, t_s: _Array) -> tuple[npt.ArrayLike, npt.ArrayLike]: ...


def iso_utc(t_s: float) -> str:
    """Unix seconds -> ISO 8601 UTC with a 'Z', whole seconds (rounded): plan times."""
    return _iso_utc(round(t_s))


@dataclass(frozen=True)
class Window:
    """One tracking window (angles in degrees, times UTC unix seconds).

    Sky angles are the geometric Sun (azimuth from north through east in
    [0, 360), elevation up positive); axis angles are the mount's frame, with
    axis az = sky az - azimuth offset + 360 * ``wrap_turn`` at entry, and
    continuous along the window.
    """

    start_s: float
    end_s: float
    boresight: str
    entry_az_deg: float
    entry_el_deg: float
    exit_az_deg: float
    exit_el_deg: float
    entry_axis_az_deg: float
    entry_axis_el_deg: float
    exit_axis_az_deg: float
    exit_axis_el_deg: float
    wrap_turn: int
    preposition_az_deg: float
    preposition_el_deg: float
    preposition_by_s: float
    #: The Sun was already inside at the plan's start / still inside at its end.
    clipped_start: bool = False
    clipped_end: bool = False
    #: 0: a whole window; 1, 2, ...: parts of a window split at the wrap limit.
    split_part: int = 0
    #: The mount unwinds the cable wrap just before this part (Sun still in the envelope).
    unwind_before: bool = False
    #: Slew time from the previous window's exit (or park) to the entry, and the time for it.
    slew_s: float = 0.0
    gap_s: float = math.inf
    slew_ok: bool = True

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def contains(self, t_s: float) -> bool:
        return self.start_s <= t_s <= self.end_s

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d = {"start_utc": iso_utc(self.start_s), "end_utc": iso_utc(self.end_s),
             "duration_s": round(self.duration_s, 3), **d}
        d["preposition_by_utc"] = iso_utc(self.preposition_by_s)
        if math.isinf(d["gap_s"]):
            d["gap_s"] = None
        for k, v in d.items():
            if isinstance(v, float) and k.endswith("_deg"):
                d[k] = round(v, 6)
        return d


@dataclass(frozen=True)
class Plan:
    """Tracking windows over ``start_s..end_s`` (UTC unix seconds), sorted by start."""

    start_s: float
    end_s: float
    windows: list[Window]
    site: str = ""
    #: Human-readable notes: splits, infeasible slews, clipped windows.
    notes: list[str] = field(default_factory=list)

    @property
    def span_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def available_s(self) -> float:
        """Total window time (seconds)."""
        return float(sum(w.duration_s for w in self.windows))

    @property
    def tracking_fraction(self) -> float:
        """Window time over the plan's span."""
        return self.available_s / self.span_s if self.span_s > 0 else 0.0

    def window_at(self, t_s: float) -> Window | None:
        """The window containing ``t_s`` (edges included), or None."""
        for w in self.windows:
            if w.start_s <= t_s <= w.end_s:
                return w
            if w.start_s > t_s:
                break
        return None

    def next_window(self, t_s: float) -> Window | None:
        """The first window starting strictly after ``t_s``, or None."""
        for w in self.windows:
            if w.start_s > t_s:
                return w
        return None

    def to_json(self) -> dict[str, Any]:
        return {"site": self.site, "start_utc": iso_utc(self.start_s),
                "end_utc": iso_utc(self.end_s), "span_s": self.span_s,
                "available_s": round(self.available_s, 3),
                "tracking_fraction": round(self.tracking_fraction, 6),
                "windows": [w.to_json() for w in self.windows], "notes": list(self.notes)}


# --------------------------------------------------------------------- slews
def _axis_time_s(distance_deg: float, speed_deg_s: float, accel_deg_s2: float) -> float:
    """Trapezoidal (or triangular) move from rest to rest, seconds."""
    d = abs(distance_deg)
    if d <= speed_deg_s**2 / accel_deg_s2:
        return 2.0 * math.sqrt(d / accel_deg_s2)
    return d / speed_deg_s + speed_deg_s / accel_deg_s2


def slew_time_s(settings: Settings, from_axes: tuple[float, float],
                to_axes: tuple[float, float]) -> float:
    """Time to slew between axis positions (az, el) in degrees, both axes in parallel.

    Each axis follows a trapezoidal profile at its ``max_speed_deg_s`` and
    ``max_accel_deg_s2``, from rest to rest; the slower axis sets the time.
    Axis azimuth is taken literally (no mod 360: the cable wrap matters).
    """
    az = settings.axes.azimuth
    el = settings.axes.elevation
    return max(_axis_time_s(to_axes[0] - from_axes[0], az.max_speed_deg_s, az.max_accel_deg_s2),
               _axis_time_s(to_axes[1] - from_axes[1], el.max_speed_deg_s, el.max_accel_deg_s2))


# ------------------------------------------------------------------ helpers
def _to_unix_s(x: object) -> float:
    if isinstance(x, int | float | np.floating | np.integer) and not isinstance(x, bool):
        t = float(x)
    else:
        from tracker.astro.timeinput import to_unix_s
        t = float(to_unix_s(x))
    if not math.isfinite(t):
        raise TimeInputError(f"time {x!r} is not a finite number of seconds")
    return t


def _runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """(first, last) indices of each run of True."""
    m = np.concatenate(([False], mask, [False])).astype(np.int8)
    d = np.diff(m)
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _refine(lo_s: _Array, hi_s: _Array, inside: _Inside, rising: bool) -> _Array:
    """Whole-second edges between bracketing times, vectorised over edges.

    For a rising edge (``lo`` outside, ``hi`` inside) the first whole second in
    (lo, hi] that is inside; for a falling edge (``lo`` inside, ``hi``
    outside) the last whole second in [lo, hi) that is inside.  Falls back to
    the inside bracket when no whole second in between is inside.
    """
    if len(lo_s) == 0:
        return np.empty(0)
    width = int(math.ceil(float(np.max(hi_s - lo_s)))) + 2
    base = np.floor(lo_s)
    secs = base[:, None] + np.arange(width)[None, :]
    valid = (secs > lo_s[:, None]) & (secs < hi_s[:, None]) if rising else (
        (secs >= lo_s[:, None]) & (secs < hi_s[:, None]))
    t = np.where(valid, secs, np.where(rising, hi_s, lo_s)[:, None])
    ok = inside(t.ravel()).reshape(t.shape) & valid
    out = np.where(rising, hi_s, lo_s).astype(float)
    for i in range(len(lo_s)):
        idx = np.flatnonzero(ok[i])
        if idx.size:
            out[i] = secs[i, idx[0]] if rising else secs[i, idx[-1]]
    return out


@dataclass
class _Raw:
    start_s: float
    end_s: float
    boresight: str
    clipped_start: bool
    clipped_end: bool


def _unwrap_deg(az_deg: _Array) -> _Array:
    """Continuous azimuth (no 360 jumps between neighbours), starting at ``az_deg[0]``."""
    d = np.mod(np.diff(az_deg) + 180.0, 360.0) - 180.0
    out: _Array = az_deg[0] + np.concatenate(([0.0], np.cumsum(d)))
    return out


@dataclass
class _Grid:
    t_s: _Array
    az_deg: _Array
    el_deg: _Array


def _scan(settings: Settings, env: Envelope, track: SunPath, t0: float, t1: float,
          step_s: float) -> tuple[list[_Raw], _Grid]:
    n = max(int(math.floor((t1 - t0) / step_s)), 1)
    grid = t0 + step_s * np.arange(n + 1, dtype=float)
    grid = np.append(grid[grid < t1], t1)
    az, el = track.altaz(grid)
    az, el = np.asarray(az, dtype=float), np.asarray(el, dtype=float)
    raws: list[_Raw] = []
    for name in env.boresights:
        inside = env.sky_inside(name, az, el)

        def pred(t: _Array, name: str = name) -> npt.NDArray[np.bool_]:
            a, e = track.altaz(t)
            return env.sky_inside(name, a, e)

        runs = _runs(inside)
        rise_idx = np.array([a for a, _ in runs if a > 0], dtype=int)
        fall_idx = np.array([b for _, b in runs if b < len(grid) - 1], dtype=int)
        starts = _refine(grid[rise_idx - 1], grid[rise_idx], pred, rising=True)
        ends = _refine(grid[fall_idx], grid[fall_idx + 1], pred, rising=False)
        start_of = dict(zip(rise_idx.tolist(), starts.tolist(), strict=True))
        end_of = dict(zip(fall_idx.tolist(), ends.tolist(), strict=True))
        for a, b in runs:
            raws.append(_Raw(start_of.get(a, t0), end_of.get(b, t1), name, a == 0,
                             b == len(grid) - 1))
    raws.sort(key=lambda r: r.start_s)
    # One boresight at a time: a later-starting window is trimmed to start after an overlap.
    out: list[_Raw] = []
    for r in raws:
        if out and r.start_s <= out[-1].end_s:
            r.start_s, r.clipped_start = math.floor(out[-1].end_s) + 1.0, False
            if r.end_s <= r.start_s:
                continue
        out.append(r)
    return out, _Grid(grid, az, el)


class _Planner:
    def __init__(self, settings: Settings, env: Envelope, track: SunPath, t0: float, t1: float,
                 grid: _Grid, edges_s: list[float]) -> None:
        self.s = settings
        self.env = env
        self.track = track
        self.grid = grid
        self._cache: dict[float, tuple[float, float]] = {}
        self._sun_at(edges_s)
        self.t0, self.t1 = t0, t1
        self.margin_s = settings.tracking.preposition_margin_s
        self.min_s = settings.tracking.min_window_s
        self.notes: list[str] = []
        park = settings.positions.park
        self.last_axes = (park.azimuth_deg, park.elevation_deg)
        self.last_time_s = t0
        self.windows: list[Window] = []

    def _sun_at(self, t_s: list[float]) -> tuple[_Array, _Array]:
        """Sky (az, el) at a few times; evaluated in one batch and cached."""
        ts = [float(t) for t in t_s]
        missing = sorted({t for t in ts if t not in self._cache})
        if missing:
            az, el = self.track.altaz(np.array(missing))
            self._cache.update(zip(missing, zip(np.atleast_1d(az).tolist(),
                                                np.atleast_1d(el).tolist(), strict=True),
                                   strict=True))
        pairs = [self._cache[t] for t in ts]
        return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])

    def _path(self, name: str, a_s: float, b_s: float
              ) -> tuple[_Array, _Array, _Array, float]:
        """Times, unwrapped axis az without turn, axis el along [a, b].

        Samples: the ends and the coarse scan grid in between (<= step_s apart).
        """
        g = self.grid
        i0 = int(np.searchsorted(g.t_s, a_s, side="right"))
        i1 = int(np.searchsorted(g.t_s, b_s, side="left"))
        (a_az, b_az), (a_el, b_el) = self._sun_at([a_s, b_s])
        t = np.concatenate(([a_s], g.t_s[i0:i1], [b_s]))
        az = np.concatenate(([a_az], g.az_deg[i0:i1], [b_az]))
        el = np.concatenate(([a_el], g.el_deg[i0:i1], [b_el]))
        b = self.env.boresight(name)
        u = _unwrap_deg(az) - b.azimuth_offset_deg
        return t, u, b.elevation_sign * el, float(a_az)

    def _axis_at(self, name: str, t_s: npt.ArrayLike, turn: int, ref_u: float, ref_t_s: float
                 ) -> tuple[_Array, _Array]:
        """Axis (az, el) at times on turn ``turn`` continuing the path through (ref_t, ref_u)."""
        az, el = self.track.altaz(np.asarray(t_s, dtype=float))
        b = self.env.boresight(name)
        ref_az, _ = self._sun_at([ref_t_s])
        d = np.mod(np.asarray(az) - ref_az[0] + 180.0, 360.0) - 180.0
        return ref_u + d - b.azimuth_offset_deg + 360.0 * turn, b.elevation_sign * np.asarray(el)

    def add(self, raw: _Raw) -> None:
        if raw.end_s - raw.start_s < self.min_s:
            return
        name = raw.boresight
        t, u, el_axis, entry_sky_az = self._path(name, raw.start_s, raw.end_s)
        turns = [k for k, _ in self.env.axis_az_turns(name, entry_sky_az)]
        # u[0] = entry sky az - offset; axis = u + 360 k.
        fits = [k for k in turns if np.all(self.env.contains_axes(u + 360.0 * k, el_axis))]
        if fits:
            k = min(fits, key=lambda k: (slew_time_s(self.s, self.last_axes,
                                                     (u[0] + 360.0 * k, el_axis[0])),
                                         abs(u[0] + 360.0 * k - self.env.az_middle_deg)))
            self._emit(raw, raw.start_s, raw.end_s, k, 0, False)
            return
        self._split(raw, t, u, el_axis, turns)

    def _split(self, raw: _Raw, t: _Array, u: _Array, el_axis: _Array, turns: list[int]) -> None:
        name = raw.boresight
        part, start_s, unwind = 1, raw.start_s, False
        while True:
            reach = {}
            for k in turns:
                ok = self.env.contains_axes(u + 360.0 * k, el_axis)
                bad = np.flatnonzero(~ok)
                reach[k] = len(t) if bad.size == 0 else int(bad[0])
            if not reach or max(reach.values()) == 0:
                self.notes.append(f"{name} window from {iso_utc(start_s)}: no wrap turn "
                                  "reaches the Sun after the unwind; rest dropped")
                return
            k = max(reach, key=lambda k: reach[k])
            j = reach[k]
            if j >= len(t):
                self._emit(raw, start_s, raw.end_s, k, part, unwind, clipped_end=raw.clipped_end)
                return
            ref_t, ref_u = float(t[j - 1]), float(u[j - 1])

            def pred(tt: _Array, k: int = k, ref_t: float = ref_t,
                     ref_u: float = ref_u) -> npt.NDArray[np.bool_]:
                a, e = self._axis_at(name, tt, k, ref_u, ref_t)
                return np.asarray(self.env.contains_axes(a, e))  # an array: tt is 1-d

            end_s = float(_refine(np.array([t[j - 1]]), np.array([t[j]]), pred, rising=False)[0])
            self._emit(raw, start_s, end_s, k, part, unwind)
            exit_az, exit_el = self._axis_at(name, [end_s], k, ref_u, ref_t)
            exit_axes = (float(exit_az[0]), float(exit_el[0]))
            # Unwind: the next part starts once the slew to the Sun (on another turn) is done.
            nxt = end_s + self.margin_s
            for _ in range(4):
                if nxt >= raw.end_s:   # also keeps evaluations inside the plan's span
                    break
                a, e = self._sun_at([nxt])
                # Another turn: the continuation of this one (within a few degrees) is blocked.
                cands = [ax for _, ax in self.env.axis_az_turns(name, float(a[0]))
                         if abs(ax - exit_axes[0]) > 180.0]
                if not cands:
                    break
                b = self.env.boresight(name)
                cand_axes = (min(cands, key=lambda ax: abs(ax - exit_axes[0])),
                             b.elevation_sign * float(e[0]))
                nxt = float(math.ceil(end_s + self.margin_s
                                      + slew_time_s(self.s, exit_axes, cand_axes)))
            head = (f"{name} window {iso_utc(raw.start_s)}..{iso_utc(raw.end_s)} reaches the "
                    f"cable-wrap limit at {iso_utc(end_s)}")
            if raw.end_s - nxt < self.min_s:
                self.notes.append(f"{head}: ended there (after an unwind only "
                                  f"{max(raw.end_s - nxt, 0.0):.0f} s would remain)")
                log.info("%s", self.notes[-1])
                return
            self.notes.append(f"{head}: split, unwind, resume at {iso_utc(nxt)}")
            log.info("%s", self.notes[-1])
            t, u, el_axis, entry_sky_az = self._path(name, nxt, raw.end_s)
            turns = [kk for kk, _ in self.env.axis_az_turns(name, entry_sky_az)]
            part, start_s, unwind = part + 1, nxt, True

    def _emit(self, raw: _Raw, start_s: float, end_s: float, turn: int, part: int,
              unwind: bool, clipped_end: bool | None = None) -> None:
        if end_s - start_s < self.min_s:
            return
        name = raw.boresight
        _, u, el_axis, _ = self._path(name, start_s, end_s)
        az, el = self._sun_at([start_s, end_s])
        entry_axis = (float(u[0] + 360.0 * turn), float(el_axis[0]))
        exit_axis = (float(u[-1] + 360.0 * turn), float(el_axis[-1]))
        slew = slew_time_s(self.s, self.last_axes, entry_axis)
        prepos_by = start_s - self.margin_s
        gap = prepos_by - self.last_time_s
        ok = slew <= gap
        if not ok and not (raw.clipped_start and start_s <= raw.start_s):
            # (A window already open when the plan starts has no slew before it to check.)
            note = (f"{name} window at {iso_utc(start_s)}: the slew to the entry takes "
                    f"{slew:.0f} s but only {gap:.0f} s are free before the pre-position time")
            self.notes.append(note)
            log.info("%s", note)
        cl_end = (raw.clipped_end and end_s >= raw.end_s) if clipped_end is None else clipped_end
        self.windows.append(Window(
            start_s=start_s, end_s=end_s, boresight=name,
            entry_az_deg=float(az[0]), entry_el_deg=float(el[0]),
            exit_az_deg=float(az[1]), exit_el_deg=float(el[1]),
            entry_axis_az_deg=entry_axis[0], entry_axis_el_deg=entry_axis[1],
            exit_axis_az_deg=exit_axis[0], exit_axis_el_deg=exit_axis[1],
            wrap_turn=int(turn),
            preposition_az_deg=entry_axis[0], preposition_el_deg=entry_axis[1],
            preposition_by_s=prepos_by,
            clipped_start=raw.clipped_start and start_s <= raw.start_s,
            clipped_end=cl_end, split_part=part, unwind_before=unwind,
            slew_s=slew, gap_s=gap, slew_ok=ok))
        self.last_axes = exit_axis
        self.last_time_s = end_s


def plan(settings: Settings, start: object, end: object, *, track: SunPath | None = None,
         envelope: Envelope | None = None,
         step_s: float = DEFAULT_STEP_S) -> Plan:
    """Tracking windows of ``settings``' mount between ``start`` and ``end``.

    ``start``/``end``: unix seconds, aware datetimes or ISO strings with a zone
    (anything ``tracker.astro.timeinput.to_unix_s`` takes).  ``track``: an object
    with ``altaz(t_unix_s) -> (az_deg, el_deg)`` on numpy arrays covering the
    span (default: a ``tracker.astro.ephemeris.SunTrack`` built here).
    """
    t0, t1 = _to_unix_s(start), _to_unix_s(end)
    if not t1 > t0:
        raise TimeInputError(f"plan end {iso_utc(t1)} is not after its start {iso_utc(t0)}")
    if not (math.isfinite(step_s) and 1.0 <= step_s <= 600.0):
        raise ValueError(f"step_s {step_s} must be within 1..600 s")
    env = envelope or Envelope.from_settings(settings)
    if track is None:
        from tracker.astro.ephemeris import SunTrack
        site = settings.site
        track = SunTrack(site.latitude_deg, site.longitude_deg, site.height_m,
                         t0 - 120.0, t1 + 120.0)
    raws, grid = _scan(settings, env, track, t0, t1, step_s)
    edges = [t for r in raws for t in (r.start_s, r.end_s)]
    planner = _Planner(settings, env, track, t0, t1, grid, edges)
    for raw in raws:
        planner.add(raw)
    for w in planner.windows:
        if w.clipped_start or w.clipped_end:
            planner.notes.append(f"{w.boresight} window {iso_utc(w.start_s)}..{iso_utc(w.end_s)} "
                                 "is clipped at the plan's span")
    return Plan(t0, t1, planner.windows, site=settings.site.name, notes=planner.notes)
