"""The control law: one step for one axis, a pure function of state, measurement and demand.

Velocity feed-forward from the demand's rate plus a position correction, the
correction limited so the axis can always stop in time (``sqrt(2 a |e|)``), the
sum saturated at the axis speed limit and slew-rate limited at its acceleration
limit.  The same law slews (large error, no feed-forward) and tracks (small
error, Sun rate feed-forward).  A range guard keeps the commanded velocity low
enough to stop inside the envelope whatever the demand says.

Units: axis degrees, deg/s, deg/s^2, seconds.  The caller (the engine) turns
sky directions into axis demands through the boresight, the cable wrap and the
pointing model before calling this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class AxisLimits:
    """What the control law may command on one axis."""

    min_deg: float
    max_deg: float
    max_speed_deg_s: float
    max_accel_deg_s2: float


class AxisDemand(NamedTuple):
    """Where the axis should be at the time of the step, and how fast that moves."""

    position_deg: float
    rate_deg_s: float = 0.0


class AxisCommand(NamedTuple):
    """The step's output: the velocity to command and the position error it saw."""

    velocity_deg_s: float
    error_deg: float


#: ``tuple.__new__``: builds a named tuple of the tick's hot path in half the time of its
#: generated ``__new__`` (all fields given, in order).
_new = tuple.__new__


#: Fraction of the acceleration limit used for braking in the position correction,
#: so that noise and the one-tick command latency never make it overshoot.
BRAKING_MARGIN = 0.8


def _stopping_speed(distance_deg: float, accel_deg_s2: float) -> float:
    """Largest speed from which the axis can stop within ``distance_deg`` (>= 0)."""
    if distance_deg <= 0.0:
        return 0.0
    return math.sqrt(2.0 * BRAKING_MARGIN * accel_deg_s2 * distance_deg)


def axis_step(limits: AxisLimits, demand: AxisDemand, measured_deg: float,
              last_velocity_deg_s: float, gain_per_s: float, dt_s: float) -> AxisCommand:
    """One control step for one axis.

    ``measured_deg`` is the encoder position, ``last_velocity_deg_s`` the
    velocity commanded on the previous step (for the acceleration limit),
    ``gain_per_s`` the position loop gain and ``dt_s`` the control period.
    The demand is clamped into the axis range first, so no input can ask for a
    position outside it.
    """
    a = limits.max_accel_deg_s2
    target = demand.position_deg
    if target < limits.min_deg:
        target = limits.min_deg
    elif target > limits.max_deg:
        target = limits.max_deg
    error = target - measured_deg
    # Position correction: proportional near the target, time-optimal far from it.
    correction = gain_per_s * error
    cap = _stopping_speed(abs(error), a)
    if abs(correction) > cap:
        correction = math.copysign(cap, error)
    v = demand.rate_deg_s + correction
    return _new(AxisCommand, (velocity_step(limits, v, measured_deg, last_velocity_deg_s, dt_s),
                              error))


def velocity_step(limits: AxisLimits, velocity_deg_s: float, measured_deg: float,
                  last_velocity_deg_s: float, dt_s: float) -> float:
    """A wanted velocity made safe to command: speed limit, then the acceleration limit
    against the last command (a ramp), then the range guard.  Used for every command:
    position steps, holds (0) and jogs."""
    # ``min(max(v, lo), hi)`` written out: the same result, NaN included (the builtins cost
    # ~100 ns a call on Python 3.11; this runs twice a tick).
    vmax = limits.max_speed_deg_s
    v = velocity_deg_s
    v = -vmax if -vmax > v else v
    v = vmax if vmax < v else v
    dv = limits.max_accel_deg_s2 * dt_s
    lo, hi = last_velocity_deg_s - dv, last_velocity_deg_s + dv
    v = lo if lo > v else v
    v = hi if hi < v else v
    return range_guard(limits, measured_deg, v, dt_s)


def range_guard(limits: AxisLimits, position_deg: float, velocity_deg_s: float,
                dt_s: float) -> float:
    """``velocity_deg_s`` limited so the axis can stop inside its range and cannot step past it.

    Towards a limit at distance d the speed is at most ``sqrt(2 a d)`` (with the
    braking margin) and at most ``d / dt_s`` (one period never crosses the limit).
    Moving away from a limit is never restricted.
    """
    v = velocity_deg_s
    if v > 0.0:
        d = limits.max_deg - position_deg
        cap = _range_cap(d, limits.max_accel_deg_s2, dt_s)
        return v if v <= cap else cap
    if v < 0.0:
        d = position_deg - limits.min_deg
        cap = _range_cap(d, limits.max_accel_deg_s2, dt_s)
        return v if -v <= cap else -cap
    return 0.0 if v != v else v


def _range_cap(distance_deg: float, accel_deg_s2: float, dt_s: float) -> float:
    """The speed limit ``distance_deg`` from a range end: the stopping speed, and no more
    than the distance in one period; 0 at or past the end (or NaN)."""
    if not distance_deg > 0.0:
        return 0.0
    stop = _stopping_speed(distance_deg, accel_deg_s2)
    step = distance_deg / dt_s
    return step if step < stop else stop


#: ``math.radians`` / ``math.degrees`` as factors (the same products, without the calls).
_DEG_TO_RAD = math.pi / 180.0
_RAD_TO_DEG = 180.0 / math.pi


def great_circle_arcsec(az1_deg: float, el1_deg: float, az2_deg: float, el2_deg: float) -> float:
    """Angle between two directions (arc-seconds), exact at all separations (Vincenty form)."""
    sin, cos = math.sin, math.cos
    p1 = el1_deg * _DEG_TO_RAD
    p2 = el2_deg * _DEG_TO_RAD
    dl = (az2_deg - az1_deg) * _DEG_TO_RAD
    sp1, cp1 = sin(p1), cos(p1)
    sp2, cp2 = sin(p2), cos(p2)
    sdl, cdl = sin(dl), cos(dl)
    num = math.hypot(cp2 * sdl, cp1 * sp2 - sp1 * cp2 * cdl)
    den = sp1 * sp2 + cp1 * cp2 * cdl
    return math.atan2(num, den) * _RAD_TO_DEG * 3600.0


def nearest_turn_deg(angle_deg: float, reference_deg: float) -> float:
    """``angle_deg`` plus a whole number of turns, as close as possible to ``reference_deg``."""
    return angle_deg + 360.0 * round((reference_deg - angle_deg) / 360.0)


@dataclass(frozen=True, slots=True)
class LoadModel:
    """The controller's model of one axis's static load deflection (a calibrated table).

    The structure between the motor (encoder) and the magnet deflects under a
    load torque by ``compliance_s2`` degrees per deg/s^2 of torque (torque as an
    axis acceleration; ``1 / k``, ``k = J_load (2 pi f_locked_rotor)^2 / J_axis``).
    Torques: gravity unbalance ``-unbalance_deg_s2 cos(el)`` (elevation only;
    positive = nose-heavy) and wind ``wind_deg_s2_per_m2_s2 v^2`` times the
    direction factor (azimuth ``sin(rel)``, elevation ``cos(rel) cos(el)``, with
    ``rel`` = wind-from direction minus the magnet's azimuth).  A gear backlash of
    ``backlash_deg`` (full band) puts the magnet half of it ahead of the encoder in
    the direction of the predicted torque (or behind it without torque: the motor
    then pushes the load along ``rate_sign``).
    """

    compliance_s2: float
    unbalance_deg_s2: float = 0.0
    wind_deg_s2_per_m2_s2: float = 0.0
    backlash_deg: float = 0.0


def _backlash_side(model: LoadModel, torque_deg_s2: float, rate_deg_s: float) -> float:
    half = 0.5 * model.backlash_deg
    if half == 0.0:
        return 0.0
    if torque_deg_s2 != 0.0:
        return math.copysign(half, torque_deg_s2)
    return -math.copysign(half, rate_deg_s) if rate_deg_s != 0.0 else 0.0


def load_deflection_deg(azimuth: LoadModel, elevation: LoadModel, el_deg: float,
                        az_deg: float, wind_m_s: float = 0.0,
                        wind_from_deg: float = 0.0, az_rate_deg_s: float = 0.0,
                        el_rate_deg_s: float = 0.0) -> tuple[float, float]:
    """Predicted (azimuth, elevation) deflection of the magnet from its encoders, degrees.

    Signs: positive = the load sits at a larger axis angle than the encoder.  The
    feed-forward subtracts it from the axis demand, so the *magnet* (not the
    encoder) lands on the demand: ``AxisDemand(demand_deg - deflection_deg, rate)``.
    ``wind_m_s`` is the measured wind (anemometer), ``wind_from_deg`` where it
    comes from (degrees from north through east); 0 m/s gives the unbalance only.
    """
    if not (math.isfinite(wind_m_s) and wind_m_s >= 0.0):
        raise ValueError(f"wind speed must be a finite value >= 0 m/s, not {wind_m_s}")
    rel = math.radians(wind_from_deg - az_deg)
    cos_el = math.cos(math.radians(el_deg))
    w2 = wind_m_s * wind_m_s
    t_az = azimuth.wind_deg_s2_per_m2_s2 * w2 * math.sin(rel)
    t_el = (elevation.wind_deg_s2_per_m2_s2 * w2 * math.cos(rel)
            - elevation.unbalance_deg_s2) * cos_el
    return (t_az * azimuth.compliance_s2 + _backlash_side(azimuth, t_az, az_rate_deg_s),
            t_el * elevation.compliance_s2 + _backlash_side(elevation, t_el, el_rate_deg_s))


@dataclass(frozen=True, slots=True)
class LoadFeedForward:
    """The engine's load feed-forward: a controller load model, its bounds and the wind rules.

    ``offset_deg`` answers the (azimuth, elevation) axis-frame deflection to subtract
    from the encoder-frame demand (``load_deflection_deg``'s sign: + = magnet at a
    larger axis angle than its encoder), each axis clamped to +-``max_offset_deg``.
    The wind term is used only for a fresh (age <= ``max_wind_age_s``), finite,
    physically sane (0..``max_wind_m_s``) reading with a known direction, and only
    with ``use_wind``; otherwise the unbalance term alone.  A non-finite result gives
    no feed-forward at all.
    """

    azimuth: LoadModel
    elevation: LoadModel
    max_offset_deg: float
    use_wind: bool = True
    max_wind_m_s: float = 40.0
    max_wind_age_s: float = 2.0

    def wind_m_s(self, speed_m_s: float, direction_deg: float,
                 age_s: float) -> tuple[float, float, str]:
        """(speed m/s, from-direction deg, "") to use, or (0, 0, why the wind term is dropped)."""
        if not self.use_wind:
            return 0.0, 0.0, ""
        if not (math.isfinite(speed_m_s) and math.isfinite(direction_deg)):
            return 0.0, 0.0, f"wind reading not finite ({speed_m_s} m/s from {direction_deg} deg)"
        if not (0.0 <= speed_m_s <= self.max_wind_m_s):
            return 0.0, 0.0, (f"wind {speed_m_s:g} m/s outside 0..{self.max_wind_m_s:g} m/s")
        if not (age_s <= self.max_wind_age_s):   # NaN age: stale too
            return 0.0, 0.0, f"wind reading {age_s:.1f} s old (limit {self.max_wind_age_s:g} s)"
        return speed_m_s, direction_deg, ""

    def offset_deg(self, az_deg: float, el_deg: float, az_rate_deg_s: float,
                   el_rate_deg_s: float, speed_m_s: float = math.nan,
                   direction_deg: float = math.nan,
                   age_s: float = math.inf) -> tuple[float, float, str]:
        """(azimuth, elevation) deflection in axis degrees, bounded, and a warning ("" if none).

        ``az_deg``/``el_deg``: the axes (encoder frame); rates deg/s in the axis frame;
        the wind as the supervisor measured it (m/s, from-direction deg, age s).
        """
        v, d, why = self.wind_m_s(speed_m_s, direction_deg, age_s)
        if not all(map(math.isfinite, (az_deg, el_deg, az_rate_deg_s, el_rate_deg_s))):
            return 0.0, 0.0, "axis position or rate not finite: no load feed-forward"
        d_az, d_el = load_deflection_deg(self.azimuth, self.elevation, el_deg, az_deg, v, d,
                                         az_rate_deg_s, el_rate_deg_s)
        if not (math.isfinite(d_az) and math.isfinite(d_el)):
            return 0.0, 0.0, "load deflection not finite: no load feed-forward"
        m = self.max_offset_deg     # each clamped to +-m (finite here), without min/max calls
        return (m if d_az > m else (-m if d_az < -m else d_az),
                m if d_el > m else (-m if d_el < -m else d_el), why)
