"""Task -> axis demands through the named frames (sky -> mount -> encoder).

``resolve`` is pure: the task, the Sun's sky position and rates, the frames and the
previous tick's mount azimuth (for cable-wrap continuity) in; encoder-frame demands and
the sky target out.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from tracker.astro.ephemeris import SunTrack
from tracker.config import Settings
from tracker.control.law import AxisDemand, LoadFeedForward, LoadModel, nearest_turn_deg
from tracker.loop.tasks import Task, TaskKind
from tracker.loop.weather import WindDecision, WindVerdict
from tracker.mount.envelope import Envelope
from tracker.mount.frames import Frames
from tracker.planning.planner import Window

log = logging.getLogger(__name__)

#: ``tuple.__new__``: a named tuple of the tick's hot path at half the cost (see law._new).
_new = tuple.__new__

#: Least time between two warnings of the load feed-forward (s of the engine's clock).
LOAD_WARNING_PERIOD_S = 60.0
#: Sampling of the rest of a window when choosing the cable-wrap turn to re-acquire on (s).
REACQUIRE_STEP_S = 300.0
# Members tested every tick, as module constants (``Enum.X`` costs ~80 ns on Python 3.11:
# docs/performance.md).
_SUN, _SENSOR_LOST = TaskKind.SUN, WindDecision.SENSOR_LOST


class Demand(NamedTuple):
    """Encoder-frame demands for both axes, the sky target (az, el deg) and, for the Sun,
    the mount azimuth used (the next tick's continuity reference).  Immutable, one per tick
    (a named tuple: cheaper to build than a frozen dataclass)."""

    azimuth: AxisDemand
    elevation: AxisDemand
    target_sky: tuple[float, float]
    mount_az_deg: float


def resolve(task: Task, sun: tuple[float, float, float, float], frames: Frames, *,
            boresight: str, sun_ref_az_deg: float | None, entry_az_deg: float | None,
            here_az_deg: float) -> Demand | None:
    """Demands for ``task`` (None for HOLD and JOG, which command velocities).

    ``sun`` = (az, el, az rate, el rate): geometric sky, degrees and deg/s.
    ``sun_ref_az_deg``: last tick's mount azimuth while tracking (None at the start of a
    window: then the envelope's turn nearest ``entry_az_deg`` is taken).
    """
    kind = task.kind
    if kind is _SUN:
        az, el, az_rate, el_rate = sun
        b = task.boresight or boresight
        if sun_ref_az_deg is None:
            sun_ref_az_deg = frames.sky_to_mount(b, az, el, near_az_deg=entry_az_deg)[0]
        m_az, m_el = frames.sky_to_mount_continuous(b, az, el, sun_ref_az_deg)
        sign = frames.elevation_sign(b)
        e_az, e_el = frames.mount_to_encoder(m_az, m_el)
        return _new(Demand, (_new(AxisDemand, (e_az, az_rate)),
                             _new(AxisDemand, (e_el, sign * el_rate)), (az, el), m_az))
    if kind is TaskKind.AXES:
        target = frames.mount_to_sky(task.boresight or boresight, task.az_deg, task.el_deg)
        if task.model:
            e_az, e_el = frames.mount_to_encoder(task.az_deg, task.el_deg)
        else:
            e_az, e_el = task.az_deg, task.el_deg
        return Demand(AxisDemand(e_az), AxisDemand(e_el), target, task.az_deg)
    if kind is TaskKind.SKY:
        m_az, m_el = frames.sky_to_mount(task.boresight, task.az_deg, task.el_deg,
                                         near_az_deg=here_az_deg)
        e_az, e_el = frames.mount_to_encoder(m_az, m_el)
        return Demand(AxisDemand(e_az), AxisDemand(e_el), (task.az_deg, task.el_deg), m_az)
    return None


def reacquire_shift_deg(path_az_deg: npt.NDArray[np.float64], path_el_deg: npt.NDArray[np.float64],
                        here_az_deg: float,
                        inside: Callable[[npt.NDArray[np.float64], npt.NDArray[np.float64]],
                                         object]) -> float:
    """The multiple of 360 deg to add to a planned mount path (azimuth continuous, elevation;
    mount degrees, from now to the window's end) so that it starts nearest ``here_az_deg``
    while no point the plan has inside the envelope falls outside it (``inside``: vectorised
    envelope test); 0.0 (the plan's turn) if no nearer turn fits.  Pure."""
    planned_ok = np.asarray(inside(path_az_deg, path_el_deg), dtype=bool)
    best, best_dist = 0.0, abs(path_az_deg[0] - here_az_deg)
    k0 = round((here_az_deg - path_az_deg[0]) / 360.0)
    for k in (k0 - 1, k0, k0 + 1):
        shift = 360.0 * k
        dist = abs(path_az_deg[0] + shift - here_az_deg)
        if k == 0 or dist >= best_dist - 1e-9:
            continue
        if bool(np.all(np.asarray(inside(path_az_deg + shift, path_el_deg)) | ~planned_ok)):
            best, best_dist = shift, dist
    return best


def planned_turn_az(envelope: Envelope, w: Window, sun_az_deg: float) -> float:
    """The mount azimuth (deg) the plan has for the Sun at sky azimuth ``sun_az_deg`` in
    window ``w``: on the cable-wrap turn that lies on the window's path from its entry to
    its exit.  Pure."""
    offset = envelope.boresight(w.boresight).azimuth_offset_deg
    lo, hi = sorted((w.entry_axis_az_deg, w.exit_axis_az_deg))
    base = nearest_turn_deg(sun_az_deg - offset, 0.5 * (lo + hi))
    for cand in (base, base - 360.0, base + 360.0):
        if lo - 1.0 <= cand <= hi + 1.0:
            return cand
    return nearest_turn_deg(sun_az_deg - offset, w.entry_axis_az_deg)


def acquisition_az(envelope: Envelope, frames: Frames, track: SunTrack | None, w: Window,
                   t_s: float, sun_az_deg: float, here_az_deg: float) -> float:
    """The mount azimuth (deg) to acquire the Sun on in window ``w`` at ``t_s`` (UTC s):
    the plan's turn, or the turn nearest the mount (``here_az_deg``, encoder) if the rest
    of the window, now to its end, stays inside the envelope on it.  So re-acquiring
    mid-window (after a restart, a stow or a fault) never slews a turn round when the wrap
    already holds the Sun; and never takes a turn that would run into a limit before the
    window ends.  Pure (``track`` samples the Sun every ``REACQUIRE_STEP_S``)."""
    planned = planned_turn_az(envelope, w, sun_az_deg)
    end_s = min(w.end_s, track.end_s) if track is not None else t_s
    if track is None or not math.isfinite(here_az_deg) or end_s <= t_s:
        return planned
    offset = envelope.boresight(w.boresight).azimuth_offset_deg
    sign = frames.elevation_sign(w.boresight)
    times = np.append(np.arange(t_s, end_s, REACQUIRE_STEP_S), end_s)
    az, el = track.altaz(times)
    path_az = np.degrees(np.unwrap(np.radians(np.asarray(az) - offset)))
    path_az += planned - path_az[0]
    return planned + reacquire_shift_deg(path_az, sign * np.asarray(el), here_az_deg,
                                         envelope.contains_axes)


class LoadOffset:
    """The engine's load feed-forward on a Sun demand: ``apply`` shifts the encoder-frame
    demand by minus the predicted magnet-from-encoder deflection (so the magnet, not the
    encoder, lands on the Sun), bounded by ``LoadFeedForward``; warnings rate-limited."""

    def __init__(self, ff: LoadFeedForward) -> None:
        self.ff = ff
        self._warned_s = -math.inf
        #: The last (azimuth, elevation) offset applied, axis degrees (for status/tests).
        self.last_deg = (0.0, 0.0)

    @classmethod
    def from_settings(cls, settings: Settings) -> LoadOffset | None:
        """None unless ``[tracking.load_feedforward] enabled``."""
        c = settings.tracking.load_feedforward
        if not c.enabled:
            return None
        az, el = (LoadModel(a.compliance_s2, a.unbalance_deg_s2 if a is c.elevation else 0.0,
                            a.wind_deg_s2_per_m2_s2, a.backlash_arcsec / 3600.0)
                  for a in (c.azimuth, c.elevation))
        return cls(LoadFeedForward(az, el, c.max_offset_arcsec / 3600.0, c.wind,
                                   c.max_wind_m_s, c.max_wind_age_s))

    def apply(self, demand: Demand, here: tuple[float, float], wind: WindVerdict | None,
              t_s: float) -> Demand:
        """``demand`` minus the bounded deflection at the encoders ``here`` (az, el deg) in
        the wind ``wind`` (its 3-s mean and direction; lost, frozen or old: none)."""
        if wind is None:   # no anemometer configured: the unbalance alone, no warning
            v, d, age = 0.0, 0.0, 0.0
        elif wind.decision is _SENSOR_LOST:   # lost or frozen: no wind term
            v, d, age = math.nan, math.nan, math.inf
        else:
            v, d, age = wind.gust_m_s, wind.direction_deg, wind.age_s + (t_s - wind.time_s)
        a, e = demand.azimuth, demand.elevation
        d_az, d_el, why = self.ff.offset_deg(here[0], here[1], a.rate_deg_s, e.rate_deg_s,
                                             v, d, age)
        if why and t_s - self._warned_s >= LOAD_WARNING_PERIOD_S:
            self._warned_s = t_s
            log.warning("load feed-forward: %s", why)
        self.last_deg = (d_az, d_el)
        return _new(Demand, (_new(AxisDemand, (a.position_deg - d_az, a.rate_deg_s)),
                             _new(AxisDemand, (e.position_deg - d_el, e.rate_deg_s)),
                             demand.target_sky, demand.mount_az_deg))
