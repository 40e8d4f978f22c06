"""Independent Sun interlock: is the target the engine tracks really the Sun?

A second opinion on the Sun's position, from a different algorithm (PSA,
``tracker.astro.psa``: published equations, no astropy/ERFA, no IERS table),
compared every tick with the sky target the engine is tracking.  A wrong
site, a wrong clock handed to the ephemeris, a frame mix-up or a corrupted
SunTrack shows as a separation above ``bound_deg``; the engine then raises a
fault that stops the drives.  (DKIST's safety PLC runs such an independent check.)

Pure and cheap: ``check`` is a few microseconds of float arithmetic, no I/O,
no state changed.  Frames: the target is the *sky* direction (geometric,
topocentric, per boresight): azimuth from north through east in degrees (any
real value: 370 and 10 are the same direction, so a cable-wrapped mount's sky
azimuth is fine), elevation above the horizon in degrees (negative below).
Times: UTC unix seconds.  The bound must exceed PSA's own error
(``MAX_ERROR_DEG``, 0.01 deg) with margin: at least 0.02 deg.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tracker.astro.psa import (
    MAX_ERROR_DEG,
    VALID_FROM_UNIX_S,
    VALID_TO_UNIX_S,
    psa_enu,
    psa_enu_scalar,
)

__all__ = ["DEFAULT_BOUND_DEG", "MAX_BOUND_DEG", "MIN_BOUND_DEG", "InterlockVerdict",
           "SunInterlock"]

#: Default disagreement bound, degrees of great circle (issue 12).
DEFAULT_BOUND_DEG = 0.05
#: Smallest accepted bound: twice PSA's measured error bound, so a right target never trips.
MIN_BOUND_DEG = 2.0 * MAX_ERROR_DEG
#: Largest accepted bound: beyond a degree the check no longer protects anything.
MAX_BOUND_DEG = 1.0

_DEG = math.pi / 180.0


@dataclass(frozen=True, slots=True)
class InterlockVerdict:
    """The interlock's answer for one tick.

    ``ok``: the target lies within ``bound_deg`` of the independent Sun.
    ``separation_deg``: great-circle angle between target and independent Sun
    (NaN when it could not be computed).  ``reason``: empty when ok, else one
    sentence for the fault and the log.
    """

    ok: bool
    separation_deg: float
    reason: str = ""


class SunInterlock:
    """``SunInterlock(lat_deg, lon_deg, height_m, bound_deg=0.05)``; ``check(t_s, az, el)``.

    Site: WGS84 geodetic latitude/longitude in degrees (east positive),
    height in metres (accepted, not needed at this accuracy).  Bad arguments
    raise ``ValueError`` naming the value and the rule.
    """

    def __init__(self, lat_deg: float, lon_deg: float, height_m: float = 0.0,
                 bound_deg: float = DEFAULT_BOUND_DEG) -> None:
        for name, value in (("lat_deg", lat_deg), ("lon_deg", lon_deg), ("height_m", height_m),
                            ("bound_deg", bound_deg)):
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value):
                raise ValueError(f"SunInterlock {name} must be a finite number, got {value!r}")
        if not -90.0 <= lat_deg <= 90.0:
            raise ValueError(f"SunInterlock latitude {lat_deg!r} deg outside -90..90")
        if not -360.0 <= lon_deg <= 360.0:
            raise ValueError(f"SunInterlock longitude {lon_deg!r} deg outside -360..360")
        if not MIN_BOUND_DEG <= bound_deg <= MAX_BOUND_DEG:
            raise ValueError(
                f"SunInterlock bound_deg {bound_deg!r} outside "
                f"{MIN_BOUND_DEG:g}..{MAX_BOUND_DEG:g} "
                f"(the independent algorithm itself errs by up to {MAX_ERROR_DEG:g} deg)")
        self.lat_deg, self.lon_deg, self.height_m = float(lat_deg), float(lon_deg), float(height_m)
        self.bound_deg = float(bound_deg)
        self._sin_lat = math.sin(self.lat_deg * _DEG)
        self._cos_lat = math.cos(self.lat_deg * _DEG)
        # Compare chord lengths, not angles, on the fast path: |a - b| = 2 sin(angle / 2).
        self._bound_chord2 = (2.0 * math.sin(0.5 * self.bound_deg * _DEG)) ** 2

    @classmethod
    def from_settings(cls, settings: Any) -> SunInterlock | None:
        """The interlock a ``tracker.config.Settings`` asks for, or None when disabled."""
        cfg = settings.interlock
        if not cfg.enabled:
            return None
        site = settings.site
        return cls(site.latitude_deg, site.longitude_deg, site.height_m, cfg.bound_deg)

    def check(self, t_s: float, target_az_deg: float, target_el_deg: float) -> InterlockVerdict:
        """Verdict for tracking the sky target (az, el in degrees) at ``t_s`` (UTC unix s).

        Not ok when the separation exceeds ``bound_deg``, when an input is not
        finite, or when ``t_s`` lies outside the years where the independent
        algorithm is validated (2000-2060): a check that cannot be made fails safe.
        """
        try:
            t, az, el = float(t_s), float(target_az_deg), float(target_el_deg)
        except (TypeError, ValueError):
            return InterlockVerdict(False, math.nan, f"interlock input not a number: t={t_s!r} "
                                    f"az={target_az_deg!r} el={target_el_deg!r}")
        if not (math.isfinite(t) and math.isfinite(az) and math.isfinite(el)):
            return InterlockVerdict(False, math.nan, f"interlock input not finite: t={t!r} "
                                    f"az={az!r} el={el!r}")
        if not VALID_FROM_UNIX_S <= t <= VALID_TO_UNIX_S:
            return InterlockVerdict(False, math.nan, f"time {t:.0f} (UTC unix s) outside the "
                                    "independent Sun algorithm's validated years 2000-2060")
        if not -90.0 <= el <= 90.0:
            return InterlockVerdict(False, math.nan, f"target elevation {el!r} deg outside -90..90")
        e, n, u = psa_enu_scalar(t, self._sin_lat, self._cos_lat, self.lon_deg)
        cos_el = math.cos(el * _DEG)
        de = cos_el * math.sin(az * _DEG) - e
        dn = cos_el * math.cos(az * _DEG) - n
        du = math.sin(el * _DEG) - u
        chord2 = de * de + dn * dn + du * du
        separation_deg = 2.0 * math.asin(min(1.0, 0.5 * math.sqrt(chord2))) / _DEG
        if chord2 <= self._bound_chord2:
            return InterlockVerdict(True, separation_deg)
        return InterlockVerdict(
            False, separation_deg,
            f"target az {az:.4f} el {el:+.4f} deg is {separation_deg:.4f} deg from the independent "
            f"Sun (bound {self.bound_deg:g} deg)")

    def separation_deg(self, t_s: Any, target_az_deg: Any, target_el_deg: Any) -> np.ndarray:
        """Great-circle separation (deg) of targets from the independent Sun, vectorised.

        Arrays broadcast together; no validity checks (use ``check`` per tick).
        """
        sun = psa_enu(np.asarray(t_s, dtype=float), self.lat_deg, self.lon_deg)
        az = np.radians(np.asarray(target_az_deg, dtype=float))
        el = np.radians(np.asarray(target_el_deg, dtype=float))
        cos_el = np.cos(el)
        target = np.stack(np.broadcast_arrays(cos_el * np.sin(az), cos_el * np.cos(az),
                                              np.sin(el)), axis=-1)
        cross = np.linalg.norm(np.cross(target, sun), axis=-1)
        separation: np.ndarray = np.degrees(np.arctan2(cross, np.sum(target * sun, axis=-1)))
        return separation

    def ok_all(self, t_s: Any, target_az_deg: Any, target_el_deg: Any) -> np.ndarray:
        """Vectorised ``check(...).ok`` (booleans; NaN or out-of-years inputs are False)."""
        t = np.asarray(t_s, dtype=float)
        sep = self.separation_deg(t, target_az_deg, target_el_deg)
        valid = (t >= VALID_FROM_UNIX_S) & (t <= VALID_TO_UNIX_S)
        return np.asarray(valid & (sep <= self.bound_deg))
