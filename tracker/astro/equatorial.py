"""Topocentric apparent equatorial coordinates of a horizontal direction, and sidereal time.

For the ASCOM Alpaca Telescope (``EquatorialSystem = equTopocentric``): the mount's
az/el direction (geometric, no refraction) expressed as right ascension and
declination on the true equator and equinox of date, seen from the site.

Method (ERFA): UT1 and TT from astropy's time scales (offline IERS tables);
Greenwich apparent sidereal time ``erfa.gst06a`` (IAU 2006/2000A); local
apparent sidereal time = GAST + east longitude; ``erfa.ae2hd`` turns (azimuth,
elevation) at the geodetic latitude into (hour angle, declination); RA = LAST - HA.
Polar motion (< 0.5 arcsec) and diurnal aberration (< 0.32 arcsec) are ignored.
"""

from __future__ import annotations

import math

from tracker.astro.datasources import ensure_offline
from tracker.astro.datasources import quiet_astropy as _quiet_astropy

ensure_offline()

_DEG = math.pi / 180.0
_HOURS_PER_RAD = 12.0 / math.pi


def _ut1_tt(t_unix_s: float) -> tuple[float, float, float, float]:
    """(UT1 jd1, jd2, TT jd1, jd2) of a UTC unix time."""
    from astropy.time import Time

    if not math.isfinite(t_unix_s):
        raise ValueError(f"time {t_unix_s} is not a finite number of seconds")
    with _quiet_astropy():
        t = Time(t_unix_s, format="unix", scale="utc")
        ut1, tt = t.ut1, t.tt
        return float(ut1.jd1), float(ut1.jd2), float(tt.jd1), float(tt.jd2)


def local_apparent_sidereal_time_h(t_unix_s: float, lon_deg: float) -> float:
    """Local apparent sidereal time, hours in [0, 24), at east longitude ``lon_deg``."""
    import erfa

    u1, u2, t1, t2 = _ut1_tt(t_unix_s)
    last_rad = float(erfa.gst06a(u1, u2, t1, t2)) + lon_deg * _DEG
    return (last_rad * _HOURS_PER_RAD) % 24.0


def altaz_to_radec(t_unix_s: float, az_deg: float, el_deg: float, lat_deg: float,
                   lon_deg: float) -> tuple[float, float]:
    """(right ascension hours in [0, 24), declination deg) of a horizontal direction.

    ``az_deg`` from north through east, ``el_deg`` up positive (no refraction);
    ``lat_deg`` geodetic latitude, ``lon_deg`` east longitude.  Result: topocentric
    apparent (true equator and equinox of date) at UTC unix time ``t_unix_s``.
    """
    import erfa

    if not (math.isfinite(az_deg) and math.isfinite(el_deg)):
        raise ValueError(f"direction ({az_deg}, {el_deg}) is not finite")
    last_h = local_apparent_sidereal_time_h(t_unix_s, lon_deg)
    ha_rad, dec_rad = erfa.ae2hd(az_deg * _DEG, el_deg * _DEG, lat_deg * _DEG)
    ra_h = (last_h - float(ha_rad) * _HOURS_PER_RAD) % 24.0
    return ra_h, float(dec_rad) / _DEG
