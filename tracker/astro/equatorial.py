"""Topocentric apparent equatorial coordinates of a horizontal direction, and sidereal time.

For the ASCOM Alpaca Telescope (``EquatorialSystem = equTopocentric``): the mount's
az/el direction (geometric, no refraction) expressed as right ascension and
declination on the true equator and equinox of date, seen from the site.

Method (ERFA): UT1-UTC and TT-UTC from astropy's time scales (offline IERS and
leap-second tables, looked up once per 10 minutes);
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


#: UT1-UTC and TT-UTC (seconds) are looked up in astropy's tables once per this many
#: seconds of UTC (they change by < 2 ms a day, leap seconds at 0h UTC).
_OFFSETS_REFRESH_S = 600.0
_offsets_cache: dict[int, tuple[float, float]] = {}


def _offsets_s(t_unix_s: float) -> tuple[float, float]:
    """(UT1-UTC, TT-UTC) in seconds, from astropy's IERS and leap-second tables."""
    from astropy.time import Time

    key = int(t_unix_s // _OFFSETS_REFRESH_S)
    hit = _offsets_cache.get(key)
    if hit is None:
        with _quiet_astropy():
            t = Time(key * _OFFSETS_REFRESH_S, format="unix", scale="utc")
            dut1_s = float((t.ut1.mjd - t.mjd) * 86400.0)
            tt_utc_s = float((t.tt.mjd - t.mjd) * 86400.0)
        if len(_offsets_cache) > 64:
            _offsets_cache.clear()
        _offsets_cache[key] = hit = (dut1_s, tt_utc_s)
    return hit


def _ut1_tt(t_unix_s: float) -> tuple[float, float, float, float]:
    """(UT1 jd1, jd2, TT jd1, jd2) of a UTC unix time (unix days + 2440587.5, no leap
    second inside the day's fraction: exact except during a leap second itself)."""
    if not math.isfinite(t_unix_s):
        raise ValueError(f"time {t_unix_s} is not a finite number of seconds")
    dut1_s, tt_utc_s = _offsets_s(t_unix_s)
    day, frac_s = divmod(t_unix_s, 86400.0)
    jd1 = 2440587.5 + day
    return jd1, (frac_s + dut1_s) / 86400.0, jd1, (frac_s + tt_utc_s) / 86400.0


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
