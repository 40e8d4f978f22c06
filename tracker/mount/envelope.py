"""The mount's envelope: axis ranges, cable wrap, keep-out zones, speed limits.

Axis positions are in the mount's own frame, degrees: the azimuth axis from
north through east, possibly outside [0, 360) on a cable-wrapped mount; the
elevation axis up positive.  Sky directions are topocentric azimuth in
[0, 360) from north through east and elevation up positive.

A boresight maps axes to sky (``config.Boresight``): sky azimuth = axis
azimuth + ``azimuth_offset_deg`` (mod 360), sky elevation = ``elevation_sign``
* axis elevation.  Range limits are inclusive; keep-out boxes are open (their
edges are allowed).  Pure: no drivers, no ephemeris.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, overload

import numpy as np
import numpy.typing as npt

from tracker.errors import EnvelopeError

if TYPE_CHECKING:
    from tracker.config import Settings

log = logging.getLogger(__name__)

AXES = ("azimuth", "elevation")


def _fmt(value_deg: float) -> str:
    """Degrees for messages: 31 -> '31.0', 31.04 -> '31.04' (at most 6 decimals)."""
    if not math.isfinite(value_deg):
        return str(value_deg)
    s = f"{value_deg:.6f}".rstrip("0")
    return s + "0" if s.endswith(".") else s


@dataclass(frozen=True)
class KeepOut:
    """An open box in axis coordinates the mount must never enter (degrees)."""

    name: str
    az_min_deg: float
    az_max_deg: float
    el_min_deg: float
    el_max_deg: float

    @overload
    def contains(self, az_axis_deg: float, el_axis_deg: float) -> bool: ...
    @overload
    def contains(self, az_axis_deg: npt.NDArray[np.float64], el_axis_deg: npt.NDArray[np.float64]
                 ) -> npt.NDArray[np.bool_]: ...
    def contains(self, az_axis_deg: float | npt.NDArray[np.float64],
                 el_axis_deg: float | npt.NDArray[np.float64]) -> bool | npt.NDArray[np.bool_]:
        return ((az_axis_deg > self.az_min_deg) & (az_axis_deg < self.az_max_deg)
                & (el_axis_deg > self.el_min_deg) & (el_axis_deg < self.el_max_deg))


@dataclass(frozen=True)
class BoresightGeometry:
    """Sky = (axis az + azimuth_offset_deg mod 360, elevation_sign * axis el)."""

    name: str
    azimuth_offset_deg: float
    elevation_sign: int


class Envelope:
    """Limits of the mount in axis coordinates, with boresight geometry.

    ``az_min_deg..az_max_deg`` may span up to 720 degrees (cable wrap);
    ``max_speed_deg_s`` / ``max_accel_deg_s2`` are keyed by axis name
    (``"azimuth"``, ``"elevation"``).
    """

    def __init__(self, *, az_min_deg: float, az_max_deg: float, el_min_deg: float,
                 el_max_deg: float, boresights: list[BoresightGeometry],
                 keep_out: list[KeepOut] | None = None,
                 max_speed_deg_s: dict[str, float] | None = None,
                 max_accel_deg_s2: dict[str, float] | None = None) -> None:
        if not (az_min_deg < az_max_deg and el_min_deg < el_max_deg):
            raise EnvelopeError("envelope ranges must have min < max")
        if not boresights:
            raise EnvelopeError("an envelope needs at least one boresight")
        self.az_min_deg = float(az_min_deg)
        self.az_max_deg = float(az_max_deg)
        self.el_min_deg = float(el_min_deg)
        self.el_max_deg = float(el_max_deg)
        self.boresights: dict[str, BoresightGeometry] = {b.name: b for b in boresights}
        self.keep_out: list[KeepOut] = list(keep_out or [])
        self.max_speed_deg_s = dict(max_speed_deg_s or {})
        self.max_accel_deg_s2 = dict(max_accel_deg_s2 or {})

    @classmethod
    def from_settings(cls, settings: Settings) -> Envelope:
        """Build from ``config.Settings`` (envelope section and axis limits)."""
        env = settings.envelope
        axes = settings.axes
        return cls(
            az_min_deg=env.azimuth_min_deg, az_max_deg=env.azimuth_max_deg,
            el_min_deg=env.elevation_min_deg, el_max_deg=env.elevation_max_deg,
            boresights=[BoresightGeometry(b.name, float(b.azimuth_offset_deg),
                                          int(b.elevation_sign)) for b in env.boresights],
            keep_out=[KeepOut(z.name, z.azimuth_min_deg, z.azimuth_max_deg,
                              z.elevation_min_deg, z.elevation_max_deg) for z in env.keep_out],
            max_speed_deg_s={"azimuth": axes.azimuth.max_speed_deg_s,
                             "elevation": axes.elevation.max_speed_deg_s},
            max_accel_deg_s2={"azimuth": axes.azimuth.max_accel_deg_s2,
                              "elevation": axes.elevation.max_accel_deg_s2},
        )

    # ------------------------------------------------------------------ basics
    @property
    def cable_wrap(self) -> bool:
        """True when the azimuth axis covers at least one full turn."""
        return self.az_max_deg - self.az_min_deg >= 360.0

    @property
    def az_middle_deg(self) -> float:
        return 0.5 * (self.az_min_deg + self.az_max_deg)

    def boresight(self, name: str) -> BoresightGeometry:
        try:
            return self.boresights[name]
        except KeyError:
            allowed = ", ".join(self.boresights)
            raise EnvelopeError(f"unknown boresight {name!r}; this mount has: {allowed}") from None

    def __repr__(self) -> str:
        return (f"Envelope(az {self.az_min_deg}..{self.az_max_deg}, el {self.el_min_deg}.."
                f"{self.el_max_deg}, boresights {list(self.boresights)}, "
                f"{len(self.keep_out)} keep-out zones)")

    # ------------------------------------------------------------------ checks
    def check_axes(self, az_axis_deg: float, el_axis_deg: float) -> None:
        """Raise ``EnvelopeError`` unless the axis position is inside the envelope."""
        for axis, value in (("azimuth", az_axis_deg), ("elevation", el_axis_deg)):
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise EnvelopeError(f"{axis} {value!r} is not a number", axis=axis) from None
            if not math.isfinite(v):
                raise EnvelopeError(f"{axis} {v} deg is not a finite number", axis=axis,
                                    value_deg=v)
        az, el = float(az_axis_deg), float(el_axis_deg)
        for axis, v, lo, hi in (("elevation", el, self.el_min_deg, self.el_max_deg),
                                ("azimuth", az, self.az_min_deg, self.az_max_deg)):
            if v > hi:
                raise EnvelopeError(f"{axis} {_fmt(v)} deg is above the limit {_fmt(hi)} deg",
                                    axis=axis, value_deg=v, limit_deg=hi)
            if v < lo:
                raise EnvelopeError(f"{axis} {_fmt(v)} deg is below the limit {_fmt(lo)} deg",
                                    axis=axis, value_deg=v, limit_deg=lo)
        for zone in self.keep_out:
            if zone.contains(az, el):
                raise EnvelopeError(
                    f"azimuth {_fmt(az)} deg, elevation {_fmt(el)} deg is inside keep-out "
                    f"zone {zone.name!r} (azimuth {_fmt(zone.az_min_deg)}..{_fmt(zone.az_max_deg)}"
                    f", elevation {_fmt(zone.el_min_deg)}..{_fmt(zone.el_max_deg)} deg)")

    def nearest_turn_axes(self, az_axis_deg: float, el_axis_deg: float, near_az_deg: float
                          ) -> tuple[float, float]:
        """The same mount direction (azimuth +- whole turns, elevation as given), on the turn
        nearest ``near_az_deg`` that is inside the envelope; the position as given when no
        other turn is (a cable wrap reaches one direction on up to two turns)."""
        best = az_axis_deg
        if math.isfinite(near_az_deg):
            for k in (-2, -1, 1, 2):
                cand = az_axis_deg + 360.0 * k
                if (abs(cand - near_az_deg) < abs(best - near_az_deg)
                        and self.contains_axes(cand, el_axis_deg)):
                    best = cand
        return best, el_axis_deg

    @overload
    def contains_axes(self, az_axis_deg: float, el_axis_deg: float) -> bool: ...
    @overload
    def contains_axes(self, az_axis_deg: npt.ArrayLike, el_axis_deg: npt.ArrayLike
                      ) -> bool | npt.NDArray[np.bool_]: ...
    def contains_axes(self, az_axis_deg: npt.ArrayLike, el_axis_deg: npt.ArrayLike
                      ) -> bool | npt.NDArray[np.bool_]:
        """True where the axis position is inside (vectorised; NaN is outside)."""
        az = np.asarray(az_axis_deg, dtype=np.float64)
        el = np.asarray(el_axis_deg, dtype=np.float64)
        ok = ((az >= self.az_min_deg) & (az <= self.az_max_deg)
              & (el >= self.el_min_deg) & (el <= self.el_max_deg))
        for zone in self.keep_out:
            ok &= ~zone.contains(az, el)
        return bool(ok) if ok.ndim == 0 else ok

    def check_rate(self, axis: str, rate_deg_s: float) -> None:
        """Raise ``EnvelopeError`` if ``|rate_deg_s|`` exceeds the axis' max speed (or is NaN)."""
        if axis not in AXES:
            raise EnvelopeError(f"unknown axis {axis!r}; expected 'azimuth' or 'elevation'")
        r = float(rate_deg_s)
        if not math.isfinite(r):
            raise EnvelopeError(f"{axis} rate {r} deg/s is not a finite number", axis=axis)
        limit = self.max_speed_deg_s.get(axis)
        if limit is not None and abs(r) > limit:
            raise EnvelopeError(
                f"{axis} rate {_fmt(r)} deg/s is above the limit {_fmt(limit)} deg/s",
                axis=axis, value_deg=r, limit_deg=limit)

    def clamp_axes(self, az_axis_deg: float, el_axis_deg: float) -> tuple[float, float]:
        """The nearest axis position inside the ranges and outside every keep-out box."""
        az, el = float(az_axis_deg), float(el_axis_deg)
        if not (math.isfinite(az) and math.isfinite(el)):
            raise EnvelopeError(f"cannot clamp a non-finite position ({az}, {el})")
        az = min(max(az, self.az_min_deg), self.az_max_deg)
        el = min(max(el, self.el_min_deg), self.el_max_deg)
        for zone in self.keep_out:
            if zone.contains(az, el):
                faces = [(az - zone.az_min_deg, zone.az_min_deg, el),
                         (zone.az_max_deg - az, zone.az_max_deg, el),
                         (el - zone.el_min_deg, az, zone.el_min_deg),
                         (zone.el_max_deg - el, az, zone.el_max_deg)]
                inside = [f for f in faces
                          if self.az_min_deg <= f[1] <= self.az_max_deg
                          and self.el_min_deg <= f[2] <= self.el_max_deg]
                _, az, el = min(inside or faces, key=lambda f: f[0])
        return az, el

    # ------------------------------------------------------------ sky <-> axes
    @overload
    def axes_to_sky(self, boresight: str, az_axis_deg: float, el_axis_deg: float
                    ) -> tuple[float, float]: ...
    @overload
    def axes_to_sky(self, boresight: str, az_axis_deg: npt.ArrayLike, el_axis_deg: npt.ArrayLike
                    ) -> tuple[float, float] | tuple[npt.NDArray[np.float64],
                                                     npt.NDArray[np.float64]]: ...
    def axes_to_sky(self, boresight: str, az_axis_deg: npt.ArrayLike, el_axis_deg: npt.ArrayLike
                    ) -> tuple[float, float] | tuple[npt.NDArray[np.float64],
                                                     npt.NDArray[np.float64]]:
        """Sky (azimuth in [0, 360), elevation) the boresight points at; vectorised."""
        b = self.boresight(boresight)
        az = np.mod(np.asarray(az_axis_deg, dtype=np.float64) + b.azimuth_offset_deg, 360.0)
        el = b.elevation_sign * np.asarray(el_axis_deg, dtype=np.float64)
        if az.ndim == 0:
            return float(az), float(el)
        return az, el

    def axis_az_turns(self, boresight: str, sky_az_deg: float) -> list[tuple[int, float]]:
        """All (turn, axis azimuth) inside the azimuth range for a sky azimuth.

        Axis azimuth = sky azimuth - offset + 360 * turn, with sky azimuth
        first reduced to [0, 360).
        """
        b = self.boresight(boresight)
        base = float(np.mod(sky_az_deg, 360.0)) - b.azimuth_offset_deg
        k_lo = math.ceil((self.az_min_deg - base) / 360.0 - 1e-12)
        k_hi = math.floor((self.az_max_deg - base) / 360.0 + 1e-12)
        out = []
        for k in range(k_lo, k_hi + 1):
            a = base + 360.0 * k
            if self.az_min_deg - 1e-9 <= a <= self.az_max_deg + 1e-9:
                out.append((k, min(max(a, self.az_min_deg), self.az_max_deg)))
        return out

    def sky_to_axes(self, boresight: str, sky_az_deg: float, sky_el_deg: float, *,
                    near_az_deg: float | None = None) -> tuple[float, float]:
        """Axis position that points ``boresight`` at the sky direction.

        On a cable wrap the turn whose axis azimuth is nearest ``near_az_deg``
        (default: the middle of the azimuth range) among those inside the
        envelope.  ``EnvelopeError`` says why, in sky and axis terms, if none fits.
        """
        b = self.boresight(boresight)
        for name, v in (("sky azimuth", sky_az_deg), ("sky elevation", sky_el_deg)):
            if not math.isfinite(float(v)):
                raise EnvelopeError(f"{name} {float(v)} deg is not a finite number")
        sky_az, sky_el = float(sky_az_deg) % 360.0, float(sky_el_deg)
        el_axis = b.elevation_sign * sky_el
        where = f"sky azimuth {_fmt(sky_az)} deg, elevation {_fmt(sky_el)} deg"
        for lo_hi, limit in ((el_axis > self.el_max_deg, self.el_max_deg),
                             (el_axis < self.el_min_deg, self.el_min_deg)):
            if lo_hi:
                side = "above" if limit == self.el_max_deg else "below"
                raise EnvelopeError(
                    f"{where} on boresight {boresight!r} needs elevation axis {_fmt(el_axis)} deg, "
                    f"{side} the limit {_fmt(limit)} deg",
                    axis="elevation", value_deg=el_axis, limit_deg=limit)
        turns = self.axis_az_turns(boresight, sky_az)
        if not turns:
            base = sky_az - b.azimuth_offset_deg
            raise EnvelopeError(
                f"{where} on boresight {boresight!r} needs azimuth axis {_fmt(base % 360.0)} deg "
                f"(mod 360), outside the azimuth range {_fmt(self.az_min_deg)}.."
                f"{_fmt(self.az_max_deg)} deg on every turn", axis="azimuth", value_deg=base)
        near = self.az_middle_deg if near_az_deg is None else float(near_az_deg)
        if not math.isfinite(near):
            raise EnvelopeError(f"near_az_deg {near} is not a finite number")
        blocked = []
        for _, az_axis in sorted(turns, key=lambda t: abs(t[1] - near)):
            zones = [z.name for z in self.keep_out if z.contains(az_axis, el_axis)]
            if not zones:
                return az_axis, el_axis
            blocked.append(f"azimuth axis {_fmt(az_axis)} deg is inside keep-out zone "
                           f"{zones[0]!r}")
        raise EnvelopeError(f"{where} on boresight {boresight!r}: " + "; ".join(blocked))

    def sky_inside(self, boresight: str, sky_az_deg: npt.ArrayLike, sky_el_deg: npt.ArrayLike
                   ) -> npt.NDArray[np.bool_]:
        """Vectorised: True where some turn of the axes points ``boresight`` there."""
        b = self.boresight(boresight)
        az = np.asarray(sky_az_deg, dtype=float)
        el_axis = b.elevation_sign * np.asarray(sky_el_deg, dtype=float)
        ok_el = (el_axis >= self.el_min_deg) & (el_axis <= self.el_max_deg)
        # Smallest axis azimuth >= az_min on the same sky meridian.
        first = self.az_min_deg + np.mod(az - b.azimuth_offset_deg - self.az_min_deg, 360.0)
        inside: npt.NDArray[np.bool_] = np.zeros(np.broadcast(az, el_axis).shape, dtype=bool)
        span = self.az_max_deg - self.az_min_deg
        for k in range(int(span // 360.0) + 1):
            cand = first + 360.0 * k
            inside |= self.contains_axes(cand, el_axis) if self.keep_out else (
                cand <= self.az_max_deg)
        finite: npt.NDArray[np.bool_] = np.isfinite(az)
        return inside & ok_el & finite
