"""An independent, simple solar-position algorithm: PSA (Plataforma Solar de Almeria).

Written from the published equations, for the Sun interlock only: it shares no
code, no library and no data with ``tracker.astro.ephemeris`` (pure numpy, no
astropy/ERFA/skyfield, no IERS table, no leap-second table).

References:

* M. Blanco-Muriel, D. C. Alarcon-Padilla, T. Lopez-Moratalla, M. Lara-Coira,
  "Computing the solar vector", Solar Energy 70 (2001) 431-441,
  doi:10.1016/S0038-092X(00)00156-0 (the algorithm, eqs. 3-16).
* M. J. Blanco, K. Milidonis, A. Bonanos, "Updating the PSA sun position
  algorithm", Solar Energy 212 (2020) 339-341, doi:10.1016/j.solener.2020.10.084
  (the 15 coefficients refitted for 2020-2050, used here).

Method (numbers are the paper's equations): days ``n`` since 2000-01-01 12:00
UT; the Moon's ascending node ``omega`` (3), the Sun's mean longitude ``L`` (4)
and mean anomaly ``g`` (5); ecliptic longitude (6) and obliquity (7); right
ascension and declination (8, 9); Greenwich and local mean sidereal time
(10, 11); hour angle (12); the direction in the horizon frame (13, 14, here
as an east-north-up vector, robust at the zenith) and the parallax of an
observer on a sphere of the Earth's mean radius one astronomical unit from
the Sun (15, 16).  UT is taken as UTC (|UT1-UTC| < 0.9 s, < 14").

Geometric (no refraction), topocentric.  Azimuth from north through east in
[0, 360) degrees, elevation above the horizon in degrees (negative below).
Times: UTC unix seconds.  Sites: latitude/longitude in degrees, east positive.

Accuracy measured against ``tracker.astro.ephemeris.sun_altaz`` (astropy's full
reduction): see ``MAX_ERROR_DEG`` and docs/ephemeris.md; good enough for a
0.05 deg interlock, far too coarse for tracking.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["MAX_ERROR_DEG", "VALID_FROM_UNIX_S", "VALID_TO_UNIX_S", "psa_altaz", "psa_enu",
           "psa_enu_scalar"]

#: Span where the error is measured <= ``MAX_ERROR_DEG``: 2000-01-01T00:00Z .. 2061-01-01T00:00Z
#: (UTC unix s).  The 2020 coefficients were fitted to 2020-2050; the error grows slowly outside.
VALID_FROM_UNIX_S = 946684800.0
VALID_TO_UNIX_S = 2871763200.0
#: Bound on the great-circle error against the full reduction (``sun_altaz``) inside the valid
#: span, any latitude: measured 0.0087 deg max over 2020-2050, 0.0097 deg over 2000-2019,
#: 0.0083 deg over 2051-2060 (30 000 random times per span; tests/astro/test_psa.py checks the
#: presets' sites, the equator and the poles).
MAX_ERROR_DEG = 0.01

#: Blanco et al. (2020), Table 1: eqs. (3)-(7) and (10) coefficients, in the paper's order.
_P = (2.267127827, -9.300339267e-4, 4.895036035, 1.720279602e-2, 6.239468336,
      1.720200135e-2, 3.338320972e-2, 3.497596876e-4, -1.544353226e-4, -8.689729360e-6,
      4.090904909e-1, -6.213605399e-9, 4.418094944e-5, 6.697096103, 6.570984737e-2)
_EARTH_MEAN_RADIUS_KM = 6371.01
_AU_KM = 149597890.0
_UNIX_J2000_DAYS = 10957.5  # 2000-01-01T12:00 UT in days since 1970-01-01T00:00


def psa_enu(t_unix_s: Any, lat_deg: float, lon_deg: float) -> npt.NDArray[np.float64]:
    """Topocentric unit vectors (east, north, up) towards the Sun, shape ``t.shape + (3,)``.

    ``t_unix_s``: UTC unix seconds (float or array).  No range check: outside
    ``VALID_FROM_UNIX_S..VALID_TO_UNIX_S`` the error grows (callers check).
    """
    t = np.asarray(t_unix_s, dtype=float)
    day = t / 86400.0
    n = day - _UNIX_J2000_DAYS                      # days since J2000.0 (UT)
    hour_ut = (day - np.floor(day)) * 24.0          # UT hour of the day
    p = _P
    omega = p[0] + p[1] * n                         # (3) ascending node of the Moon, rad
    mean_lon = p[2] + p[3] * n                      # (4) mean longitude of the Sun, rad
    mean_anom = p[4] + p[5] * n                     # (5) mean anomaly, rad
    ecl_lon = (mean_lon + p[6] * np.sin(mean_anom) + p[7] * np.sin(2.0 * mean_anom)
               + p[8] + p[9] * np.sin(omega))       # (6) ecliptic longitude, rad
    obliquity = p[10] + p[11] * n + p[12] * np.cos(omega)  # (7), rad
    sin_lon = np.sin(ecl_lon)
    ra = np.arctan2(np.cos(obliquity) * sin_lon, np.cos(ecl_lon))  # (8)
    dec = np.arcsin(np.sin(obliquity) * sin_lon)                    # (9)
    gmst_h = p[13] + p[14] * n + hour_ut                            # (10), hours
    hour_angle = np.radians(gmst_h * 15.0 + lon_deg) - ra           # (11), (12)
    phi = math.radians(lat_deg)
    sin_phi, cos_phi = math.sin(phi), math.cos(phi)
    cos_dec, sin_dec = np.cos(dec), np.sin(dec)
    cos_h = np.cos(hour_angle)
    # (13), (14) as a vector: geocentric direction in the site's east-north-up axes.
    east = -cos_dec * np.sin(hour_angle)
    north = sin_dec * cos_phi - cos_dec * cos_h * sin_phi
    up = sin_dec * sin_phi + cos_dec * cos_h * cos_phi
    # (15), (16): parallax, the observer raised by the Earth's mean radius (Sun at 1 AU).
    up = up - _EARTH_MEAN_RADIUS_KM / _AU_KM
    enu = np.stack([east, north, up], axis=-1)
    unit: npt.NDArray[np.float64] = enu / np.sqrt(np.sum(enu * enu, axis=-1, keepdims=True))
    return unit


def psa_enu_scalar(t_unix_s: float, sin_lat: float, cos_lat: float, lon_deg: float,
                   _sin: Any = math.sin, _cos: Any = math.cos) -> tuple[float, float, float]:
    """``psa_enu`` for one time, in plain floats (a few microseconds: the per-tick path).

    The site is given as sin/cos of the latitude (precomputed once) and the
    longitude in degrees.  Same equations, same numbers as ``psa_enu`` (to ~1e-15).
    """
    day = t_unix_s / 86400.0
    n = day - _UNIX_J2000_DAYS
    hour_ut = (day - math.floor(day)) * 24.0
    p = _P
    omega = p[0] + p[1] * n
    mean_anom = p[4] + p[5] * n
    ecl_lon = (p[2] + p[3] * n + p[6] * _sin(mean_anom) + p[7] * _sin(2.0 * mean_anom)
               + p[8] + p[9] * _sin(omega))
    obliquity = p[10] + p[11] * n + p[12] * _cos(omega)
    sin_lon = _sin(ecl_lon)
    ra = math.atan2(_cos(obliquity) * sin_lon, _cos(ecl_lon))
    sin_dec = _sin(obliquity) * sin_lon
    cos_dec = math.sqrt(1.0 - sin_dec * sin_dec)
    gmst_h = p[13] + p[14] * n + hour_ut
    hour_angle = math.radians(gmst_h * 15.0 + lon_deg) - ra
    cos_h = _cos(hour_angle)
    east = -cos_dec * _sin(hour_angle)
    north = sin_dec * cos_lat - cos_dec * cos_h * sin_lat
    up = sin_dec * sin_lat + cos_dec * cos_h * cos_lat - _EARTH_MEAN_RADIUS_KM / _AU_KM
    norm = math.sqrt(east * east + north * north + up * up)
    return east / norm, north / norm, up / norm


def psa_altaz(t_unix_s: Any, lat_deg: float, lon_deg: float,
              height_m: float = 0.0) -> tuple[Any, Any]:
    """(azimuth_deg, elevation_deg) of the Sun by PSA: floats for a scalar time, else arrays.

    Geometric topocentric; ``height_m`` is accepted for symmetry with
    ``sun_altaz`` and ignored (< 0.02" for any site on Earth).  Raises
    ``ValueError`` for a latitude outside -90..90 or a non-finite argument.
    """
    if not (math.isfinite(lat_deg) and -90.0 <= lat_deg <= 90.0):
        raise ValueError(f"latitude {lat_deg!r} deg outside -90..90")
    if not math.isfinite(lon_deg):
        raise ValueError(f"longitude {lon_deg!r} deg is not finite")
    if not math.isfinite(height_m):
        raise ValueError(f"height {height_m!r} m is not finite")
    enu = psa_enu(t_unix_s, lat_deg, lon_deg)
    e, n, u = enu[..., 0], enu[..., 1], enu[..., 2]
    az = np.degrees(np.arctan2(e, n)) % 360.0
    az = np.where(az >= 360.0, 0.0, az)
    el = np.degrees(np.arctan2(u, np.hypot(e, n)))
    if np.ndim(t_unix_s) == 0:
        return float(az), float(el)
    return az, el
