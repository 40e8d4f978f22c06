"""Topocentric position and rates of the Sun's centre.

Two paths:

* the reference, ``sun_altaz``/``sun_rates``: the full reduction (the Earth and
  the Sun from JPL DE421, light time, parallax, deflection, aberration,
  IAU 2006/2000A precession-nutation, IERS Earth orientation) in ERFA calls,
  as astropy's ``get_body('sun')`` -> ``AltAz`` but with the JPL ephemeris and
  without astropy's spurious self-deflection of the Sun (see ``_altaz_rad``).
  Within 0.005" of skyfield/DE421 (measured 0.0006").  ~2 ms a call; no
  astropy import (a cold ``tracker sun`` in ~0.5 s of CPU).
* the fast path, ``SunTrack``: built once over a span, then a cubic
  interpolant evaluated in microseconds, within 0.003 arcsec of the reference.

Conventions: azimuth from north through east in [0, 360) degrees; elevation
above the horizon positive, in degrees, negative below (valid targets:
axions cross the Earth).  Geometric (airless) unless ``pressure_hpa > 0``.
Rates in deg/s per SI second.  Times: see ``tracker.astro.timeinput`` (UTC).
Sites: WGS84 geodetic latitude/longitude (deg, east positive), height (m).

``SunTrack`` design: the reference reduction at coarse nodes every
``COARSE_STEP_S`` (4 h) of elapsed TAI time.  Adding the observer's fixed
geocentric position (in its own east-north-up axes) to the topocentric Sun
vector removes the 8.8" diurnal parallax wiggle; the result, expressed as
hour angle (unwrapped), declination and distance in the local equatorial
frame, moves almost uniformly (only diurnal aberration, 0.3", remains).
Cubic Hermite interpolation of those, with 6th-order finite-difference
derivatives, is resampled every ``FINE_STEP_S`` (300 s) into topocentric
east-north-up unit vectors and their exact derivatives, stored as
per-segment cubic polynomials.  Measured error against ``sun_altaz``:
< 0.002 arcsec at any latitude (tests: +-90, +-89, zenith, nadir, a year;
bound 0.003).
A call is then three cubics, two arctangents and a square root.
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from tracker.astro.datasources import (
    StaleIERSWarning,
    check_iers_range,
    de421_path,
    ensure_offline,
    quiet_erfa,
)
from tracker.astro.timeinput import to_unix_s, to_utc_jd, unix_to_utc_jd
from tracker.errors import EphemerisRangeError, TimeInputError, TrackerError

ensure_offline()

_Array = npt.NDArray[np.float64]

__all__ = ["SiteError", "StaleIERSWarning", "SunTrack", "kernel_name", "sun_altaz",
           "sun_distance_au", "sun_enu", "sun_rates"]

logger = logging.getLogger(__name__)

_DEG = math.pi / 180.0
_RAD = 180.0 / math.pi
_AZ_MAX_DEG = math.nextafter(360.0, 0.0)
#: Step of the central differences used by ``sun_rates`` (SI seconds).
RATE_STEP_S = 1.0
#: Longest SunTrack span (s): ten years, ~100 MB of coefficients.
MAX_SPAN_S = 3660.0 * 86400.0
#: Leap-second-free spans only after TAI-UTC became an integer (1972-01-01).
_UNIX_1972_S = 63072000.0


class SiteError(TrackerError, ValueError):
    """A site or atmosphere argument is out of range (latitude, pressure...)."""


def _check_site(lat_deg: float, lon_deg: float, height_m: float) -> tuple[float, float, float]:
    try:
        lat, lon, h = float(lat_deg), float(lon_deg), float(height_m)
    except (TypeError, ValueError):
        raise SiteError(f"site must be numbers, got lat={lat_deg!r} lon={lon_deg!r} "
                        f"height={height_m!r}") from None
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise SiteError(f"latitude {lat_deg!r} deg outside -90..90")
    if not (math.isfinite(lon) and -360.0 <= lon <= 360.0):
        raise SiteError(f"longitude {lon_deg!r} deg outside -360..360")
    if not (math.isfinite(h) and -1000.0 <= h <= 10000.0):
        raise SiteError(f"height {height_m!r} m outside -1000..10000")
    return lat, lon, h


def _utc_mjd(jd1: _Array, jd2: _Array) -> _Array:
    return np.atleast_1d((np.asarray(jd1) - 2400000.5) + np.asarray(jd2))


#: Light-time iterations (each ~1e-4 of the previous correction: 3 reach < 1e-9 s).
_LIGHT_TIME_ITERATIONS = 3
_AU_KM = 149597870.7
_C_AU_PER_DAY = 299792.458 * 86400.0 / _AU_KM
#: astropy's polar motion outside the IERS table (its 50-year mean), arcsec.
_DEFAULT_PM_ARCSEC = (0.035, 0.29)
_ARCSEC = math.pi / (180.0 * 3600.0)
_kernel_lock = threading.Lock()
_kernel: Any = None


def _de421() -> Any:
    """The JPL DE421 kernel (``jplephem``), opened once per process; None when missing."""
    global _kernel
    if _kernel is None:
        with _kernel_lock:
            if _kernel is None:
                from jplephem.spk import SPK

                try:
                    _kernel = SPK.open(de421_path())
                    atexit.register(_kernel.close)  # open for the process's life, closed at exit
                except OSError as exc:
                    logger.warning("%s; using ERFA's epv00 Earth-Sun vector (0.013\" worse)", exc)
                    _kernel = False
    return _kernel or None


def kernel_name() -> str:
    """Which ephemeris gives the Earth-Sun vector: the JPL kernel's name, or ERFA epv00."""
    return "JPL DE421" if _de421() is not None else "ERFA epv00 (DE421 missing)"


def _earth_sun(tdb1: _Array, tdb2: _Array, *, sun_only: bool = False
               ) -> tuple[_Array, ...]:
    """Barycentric Earth position (au) and velocity (au/day), and the Sun (au), ICRF axes.

    JPL DE421 inside its span (1899-07-29 .. 2053-10-09), ERFA's epv00 outside.
    Shapes ``(n, 3)``.  With ``sun_only`` only the Sun is returned.
    """
    import erfa

    kernel = _de421()
    n = tdb1.size
    inside = np.zeros(n, dtype=bool)
    sun = np.empty((n, 3))
    earth_p = np.empty((n, 3))
    earth_v = np.empty((n, 3))
    if kernel is not None:
        seg_sun, seg_emb, seg_earth = kernel[0, 10], kernel[0, 3], kernel[3, 399]
        jd = tdb1 + tdb2
        inside = (jd > seg_sun.start_jd) & (jd < seg_sun.end_jd)
        if inside.any():
            t1, t2 = tdb1[inside], tdb2[inside]
            sun[inside] = (seg_sun.compute(t1, t2) / _AU_KM).T
            if not sun_only:
                p_emb, v_emb = seg_emb.compute_and_differentiate(t1, t2)
                p_e, v_e = seg_earth.compute_and_differentiate(t1, t2)
                earth_p[inside] = ((p_emb + p_e) / _AU_KM).T
                earth_v[inside] = ((v_emb + v_e) / _AU_KM).T
    if not inside.all():
        out = ~inside
        helio, bary = erfa.epv00(tdb1[out], tdb2[out])
        sun[out] = bary["p"] - helio["p"]
        earth_p[out], earth_v[out] = bary["p"], bary["v"]
    if sun_only:
        return (sun,)
    return earth_p, earth_v, sun


def _interp_iers(mjd: _Array, frac: _Array, values: _Array, table_mjd: _Array,
                 *, leap_jumps: bool, outside: float | None) -> _Array:
    """astropy's IERS interpolation: linear in time between daily rows; UT1-UTC jumps of a
    leap second removed; outside the table the end values (or ``outside``)."""
    i = np.searchsorted(table_mjd, mjd, side="right")
    i1 = np.clip(i, 1, table_mjd.size - 1)
    i0 = i1 - 1
    v0, v1 = values[i0], values[i1]
    dv = v1 - v0
    if leap_jumps:
        dv = dv - np.round(dv)
    val = v0 + (mjd - table_mjd[i0] + frac) / (table_mjd[i1] - table_mjd[i0]) * dv
    val = np.where(i == 0, values[0] if outside is None else outside, val)
    return np.where(i == table_mjd.size, values[-1] if outside is None else outside, val)


def _altaz_rad(jd1: Any, jd2: Any, lat: float, lon: float, h: float,
               pressure_hpa: float, temperature_c: float, relative_humidity: float, *,
               with_distance: bool = False) -> tuple[_Array, ...]:
    """The reduction of the Sun: (azimuth, elevation) in radians at UTC quasi-JDs ``jd1 + jd2``.

    ERFA throughout, the Earth and the Sun from JPL DE421 (jplephem), the Earth's
    orientation from the installed IERS table (``tracker.astro.iers_cache``):
    the astrometry context of the site (``erfa.apco``: IAU 2006/2000A CIP and
    CIO locator, Earth rotation angle from UT1, polar motion, the observer's
    barycentric position and velocity), the Sun's barycentric position at the
    light-emission time (iterated), and its topocentric direction carried
    through light deflection, annual + diurnal aberration and the
    bias-precession-nutation matrix (as ``erfa.atciqz`` for a distant source)
    to CIRS, then to the horizon (``erfa.atioq``; refraction only if
    ``pressure_hpa > 0``).

    This is astropy's own ``ICRS -> AltAz`` path step for step (same ERFA
    calls, same IERS interpolation) with two differences: DE421 replaces
    ERFA's analytic epv00 Earth-Sun vector (up to 0.013" away), and the Sun is
    handed over as a direction, so its deflection by itself is computed for a
    distant source (< 0.001"), not from the ill-conditioned few-km light-time
    vector that gives astropy's ``get_body('sun') -> AltAz`` a spurious term of
    up to 5.7" (e.g. 2023-07-13 at 33 S 151 E).

    ``with_distance`` adds the topocentric distance in metres.  Shapes follow ``jd1``.
    """
    import erfa

    from tracker.astro.iers_cache import earth_orientation

    shape = np.shape(jd1)
    u1 = np.asarray(jd1, dtype=float).reshape(-1)
    u2 = np.broadcast_to(np.asarray(jd2, dtype=float), shape).reshape(-1)
    eo = earth_orientation()
    with quiet_erfa():
        tai1, tai2 = erfa.utctai(u1, u2)
        tt1, tt2 = erfa.taitt(tai1, tai2)
        mjd = np.floor(u1 - 2400000.5 + u2)
        frac = u1 - (2400000.5 + mjd) + u2
        dut1 = _interp_iers(mjd, frac, eo.ut1_utc_s, eo.mjd, leap_jumps=True, outside=None)
        ut11, ut12 = erfa.utcut1(u1, u2, dut1)
        xp = _interp_iers(mjd, frac, eo.pm_x_arcsec, eo.mjd, leap_jumps=False,
                          outside=_DEFAULT_PM_ARCSEC[0]) * _ARCSEC
        yp = _interp_iers(mjd, frac, eo.pm_y_arcsec, eo.mjd, leap_jumps=False,
                          outside=_DEFAULT_PM_ARCSEC[1]) * _ARCSEC
        # TDB - TT at the geocentre (the site's term is < 2 us), as astropy.
        tdb1 = tt1
        tdb2 = tt2 + erfa.dtdb(tt1, tt2, 0.0, 0.0, 0.0, 0.0) / 86400.0
        earth_p, earth_v, sun_now = _earth_sun(tdb1, tdb2)
        ebpv = np.empty(u1.size, dtype=erfa.dt_pv)
        ebpv["p"], ebpv["v"] = earth_p, earth_v
        ehp = earth_p - sun_now
        x, y = erfa.bpn2xy(erfa.pnm06a(tt1, tt2))
        s = erfa.s06(tt1, tt2, x, y)
        era = erfa.era00(ut11, ut12)
        sp = erfa.sp00(tt1, tt2)
        if pressure_hpa > 0.0:
            refa, refb = erfa.refco(pressure_hpa, temperature_c, relative_humidity, 1.0)
        else:
            refa, refb = 0.0, 0.0
        astrom = erfa.apco(tt1, tt2, ebpv, ehp, x, y, s, era, lon * _DEG, lat * _DEG, h,
                           xp, yp, sp, refa, refb)
        observer = astrom["eb"]
        light_time_d = np.zeros(u1.size)
        for _ in range(_LIGHT_TIME_ITERATIONS):
            (sun,) = _earth_sun(tdb1, tdb2 - light_time_d, sun_only=True)
            topocentric = sun - observer
            dist_au = np.sqrt(np.sum(topocentric * topocentric, axis=-1))
            light_time_d = dist_au / _C_AU_PER_DAY
        direction = topocentric / dist_au[:, None]
        natural = erfa.ld(1.0, direction, direction, astrom["eh"], astrom["em"], 1e-6)
        proper = erfa.ab(natural, astrom["v"], astrom["em"], astrom["bm1"])
        ri, di = erfa.c2s(erfa.rxp(astrom["bpn"], proper))
        az, zenith, _, _, _ = erfa.atioq(erfa.anp(ri), di, astrom)
    el = 0.5 * math.pi - zenith
    az_out, el_out = np.reshape(az, shape), np.reshape(el, shape)
    if with_distance:
        return az_out, el_out, np.reshape(dist_au * _AU_KM * 1000.0, shape)
    return az_out, el_out


def _observer_enu_m(lat: float, lon: float, h: float) -> _Array:
    """The observer's geocentric position (metres, WGS84) in its own east-north-up axes."""
    import erfa

    x, y, z = erfa.gd2gc(1, lon * _DEG, lat * _DEG, h)
    sp, cp = math.sin(lat * _DEG), math.cos(lat * _DEG)
    sl, cl = math.sin(lon * _DEG), math.cos(lon * _DEG)
    return np.array([-sl * x + cl * y,
                     -sp * cl * x - sp * sl * y + cp * z,
                     cp * cl * x + cp * sl * y + sp * z])


def _check_atmosphere(pressure_hpa: float, temperature_c: float, relative_humidity: float) -> None:
    if not (math.isfinite(pressure_hpa) and 0.0 <= pressure_hpa <= 1200.0):
        raise SiteError(f"pressure {pressure_hpa!r} hPa outside 0..1200 (0 = geometric)")
    if not (math.isfinite(temperature_c) and -80.0 <= temperature_c <= 60.0):
        raise SiteError(f"temperature {temperature_c!r} C outside -80..60")
    if not (math.isfinite(relative_humidity) and 0.0 <= relative_humidity <= 1.0):
        raise SiteError(f"relative humidity {relative_humidity!r} outside 0..1 (a fraction)")


def _enu(az_rad: _Array, el_rad: _Array) -> _Array:
    """Unit vectors (..., 3) east, north, up from azimuth/elevation (radians)."""
    cos_el = np.cos(el_rad)
    return np.stack([cos_el * np.sin(az_rad), cos_el * np.cos(az_rad), np.sin(el_rad)], axis=-1)


def _az_el_deg(enu: _Array) -> tuple[_Array, _Array]:
    e, n, up = enu[..., 0], enu[..., 1], enu[..., 2]
    az = np.degrees(np.arctan2(e, n)) % 360.0
    az = np.where(az >= 360.0, 0.0, az)
    el = np.degrees(np.arctan2(up, np.sqrt(e * e + n * n)))
    return az, el


def _rates_from_enu(p: _Array, v: _Array) -> tuple[_Array, _Array]:
    """d(az)/dt, d(el)/dt (deg/s) from an ENU direction ``p`` and its derivative ``v`` (1/s)."""
    e, n, up = p[..., 0], p[..., 1], p[..., 2]
    de, dn, dup = v[..., 0], v[..., 1], v[..., 2]
    rh2 = e * e + n * n
    with np.errstate(divide="ignore", invalid="ignore"):
        az_rate = (n * de - e * dn) / rh2
        el_rate = (rh2 * dup - up * (e * de + n * dn)) / (np.sqrt(rh2) * (rh2 + up * up))
    return np.degrees(az_rate), np.degrees(el_rate)


def _prepare(times: Any) -> tuple[_Array, _Array, bool]:
    jd1, jd2, scalar = to_utc_jd(times)
    check_iers_range(_utc_mjd(jd1, jd2), stacklevel=4)
    return jd1, jd2, scalar


def _out(values: _Array, scalar: bool) -> float | _Array:
    return float(values.reshape(-1)[0]) if scalar else values


def sun_altaz(times: Any, lat_deg: float, lon_deg: float, height_m: float, *,
              pressure_hpa: float = 0.0, temperature_c: float = 10.0,
              relative_humidity: float = 0.0) -> tuple[Any, Any]:
    """Topocentric (azimuth_deg, elevation_deg) of the Sun's centre (the reference reduction).

    ``times``: see ``tracker.astro.timeinput`` (scalar -> floats, array -> arrays).
    ``pressure_hpa`` 0 (default) gives the geometric direction the magnet
    tracks; > 0 applies ERFA's refraction (``refco``, optical, 1 micron, as
    astropy's ``AltAz``) with the given temperature and relative humidity
    (0..1).  Times beyond the IERS table give a ``StaleIERSWarning`` and still
    a result.
    """
    lat, lon, h = _check_site(lat_deg, lon_deg, height_m)
    _check_atmosphere(pressure_hpa, temperature_c, relative_humidity)
    jd1, jd2, scalar = _prepare(times)
    az, el = _altaz_rad(jd1, jd2, lat, lon, h, pressure_hpa, temperature_c, relative_humidity)
    az_deg, el_deg = _az_el_deg(_enu(az, el))
    return _out(az_deg, scalar), _out(el_deg, scalar)


def sun_enu(times: Any, lat_deg: float, lon_deg: float, height_m: float) -> _Array:
    """Geometric unit vectors (east, north, up) towards the Sun, shape ``(..., 3)``."""
    lat, lon, h = _check_site(lat_deg, lon_deg, height_m)
    jd1, jd2, _ = _prepare(times)
    az, el = _altaz_rad(jd1, jd2, lat, lon, h, 0.0, 10.0, 0.0)
    return _enu(az, el)


def sun_distance_au(times: Any, lat_deg: float, lon_deg: float, height_m: float
                    ) -> float | _Array:
    """Distance observer-Sun (centre), astronomical units, at UTC ``times`` (the axion flux
    at the detector scales with its inverse square)."""
    lat, lon, h = _check_site(lat_deg, lon_deg, height_m)
    jd1, jd2, scalar = _prepare(times)
    _, _, dist_m = _altaz_rad(jd1, jd2, lat, lon, h, 0.0, 10.0, 0.0, with_distance=True)
    return _out(dist_m / (_AU_KM * 1000.0), scalar)


def sun_rates(times: Any, lat_deg: float, lon_deg: float, height_m: float, *,
              pressure_hpa: float = 0.0, temperature_c: float = 10.0,
              relative_humidity: float = 0.0) -> tuple[Any, Any]:
    """(azimuth_rate_deg_s, elevation_rate_deg_s) of the Sun, per SI second.

    Central differences of the reference ``sun_altaz`` over +-``RATE_STEP_S``
    (relative error ~1e-9), taken on the direction vector so azimuth
    wrap-around does not matter.  Near the zenith the azimuth rate is large
    (infinite exactly at it: NaN).
    """
    import erfa

    lat, lon, h = _check_site(lat_deg, lon_deg, height_m)
    _check_atmosphere(pressure_hpa, temperature_c, relative_humidity)
    jd1, jd2, scalar = _prepare(times)
    shape = np.shape(jd1)
    step_d = RATE_STEP_S / 86400.0
    with quiet_erfa():  # +-1 SI second: steps in TAI
        tai1, tai2 = erfa.utctai(np.reshape(jd1, -1), np.reshape(jd2, -1))
        u1, u2 = erfa.taiutc(np.concatenate([tai1, tai1]),
                             np.concatenate([tai2 - step_d, tai2 + step_d]))
    az, el = _altaz_rad(u1, u2, lat, lon, h, pressure_hpa, temperature_c, relative_humidity)
    enu = _enu(az, el).reshape(2, -1, 3)
    minus = enu[0].reshape(shape + (3,))
    plus = enu[1].reshape(shape + (3,))
    p = 0.5 * (plus + minus)
    v = (plus - minus) / (2.0 * RATE_STEP_S)
    az_rate, el_rate = _rates_from_enu(p, v)
    return _out(np.asarray(az_rate), scalar), _out(np.asarray(el_rate), scalar)


def _leap_steps_unix(start_s: float, end_s: float) -> tuple[list[float], list[float]]:
    """Unix times in (start_s, end_s] where TAI-UTC steps, and the step sizes (s)."""
    from tracker.astro.timeinput import _erfa_ready

    erfa = _erfa_ready()
    times: list[float] = []
    steps: list[float] = []
    table = erfa.leap_seconds.get()
    for prev, cur in zip(table[:-1], table[1:], strict=True):
        year, month = int(cur["year"]), int(cur["month"])
        days = (np.datetime64(f"{year:04d}-{month:02d}-01") - np.datetime64("1970-01-01")).astype(int)
        unix_s = float(days) * 86400.0
        if start_s < unix_s <= end_s:
            times.append(unix_s)
            steps.append(float(cur["tai_utc"] - prev["tai_utc"]))
    return times, steps


def _hermite(p0: _Array, p1: _Array, m0: _Array, m1: _Array, s: _Array,
             step: float) -> tuple[_Array, _Array]:
    """Cubic Hermite value and d/dx on [0, step], ``s`` in [0, 1]; m = df/dx."""
    s2 = s * s
    s3 = s2 * s
    h00 = 2 * s3 - 3 * s2 + 1
    h10 = s3 - 2 * s2 + s
    h01 = -2 * s3 + 3 * s2
    h11 = s3 - s2
    value = h00 * p0 + h10 * step * m0 + h01 * p1 + h11 * step * m1
    d00 = 6 * s2 - 6 * s
    d10 = 3 * s2 - 4 * s + 1
    d11 = 3 * s2 - 2 * s
    deriv = (d00 * (p0 - p1)) / step + d10 * m0 + d11 * m1
    return value, deriv


class SunTrack:
    """Fast geometric Sun position and rates over a span, for the control loop.

    ``SunTrack(lat_deg, lon_deg, height_m, start, end)``: ``start``/``end`` in
    any form ``sun_altaz`` takes (from 1972 on).  ``altaz(t)``, ``rates(t)`` and
    ``altaz_rates(t)`` take UTC unix seconds (float -> floats, ndarray ->
    ndarrays) in ``[start_s, end_s]``; outside it they raise
    ``EphemerisRangeError``, never extrapolate.  Within 0.003 arcsec (great
    circle) of ``sun_altaz`` (measured <= 0.002 arcsec); rates per SI second.
    Leap seconds inside the span are handled (unix time jumps, the Sun not).
    Building costs one reduction per 4 h of span: a few ms for a day,
    ~0.1 s for a year (CPU time here; the first build in a process also
    loads the IERS cache and opens DE421, ~0.05 s).  Thread-safe for concurrent reads.
    """

    #: Spacing of the reduction's nodes (elapsed TAI seconds).
    COARSE_STEP_S = 14400.0
    #: Spacing of the stored ENU cubic segments (divides COARSE_STEP_S).
    FINE_STEP_S = 300.0
    _PAD = 3  # extra coarse nodes at each end for the 6th-order derivatives
    _CHUNK = 32768

    def __init__(self, lat_deg: float, lon_deg: float, height_m: float, start: Any,
                 end: Any) -> None:
        import erfa

        self.lat_deg, self.lon_deg, self.height_m = _check_site(lat_deg, lon_deg, height_m)
        start_s = to_unix_s(start)
        end_s = to_unix_s(end)
        if not (np.ndim(start_s) == 0 and np.ndim(end_s) == 0):
            raise TimeInputError("SunTrack start and end must be single times")
        self.start_s, self.end_s = float(start_s), float(end_s)
        if not self.end_s > self.start_s:
            raise EphemerisRangeError(
                f"SunTrack end ({self.end_s}) must be after start ({self.start_s})")
        if self.end_s - self.start_s > MAX_SPAN_S:
            raise EphemerisRangeError(
                f"SunTrack span of {(self.end_s - self.start_s) / 86400.0:.0f} days exceeds "
                f"{MAX_SPAN_S / 86400.0:.0f} days; build one per year")
        if self.start_s < _UNIX_1972_S:
            raise EphemerisRangeError("SunTrack supports spans from 1972-01-01 on "
                                      "(use sun_altaz for earlier times)")
        leap_times, leap_steps = _leap_steps_unix(self.start_s, self.end_s)
        self._leap_unix = leap_times
        self._leap_cum = list(np.cumsum(leap_steps)) if leap_steps else []
        span_x = self._x_scalar(self.end_s)
        self.span_elapsed_s = span_x

        # Coarse reduction nodes in elapsed TAI seconds from start.
        big, pad = self.COARSE_STEP_S, self._PAD
        n_coarse = max(1, math.ceil(span_x / big))
        k = np.arange(-pad, n_coarse + pad + 1)
        start1, start2 = unix_to_utc_jd(np.asarray([self.start_s]))
        with quiet_erfa():
            tai1, tai2 = erfa.utctai(start1, start2)
            n1, n2 = erfa.taiutc(np.full(k.size, tai1[0]), tai2[0] + k * big / 86400.0)
        check_iers_range(_utc_mjd(n1[pad:len(k) - pad], n2[pad:len(k) - pad]), stacklevel=2)
        az, el, dist_m = _altaz_rad(n1, n2, self.lat_deg, self.lon_deg, self.height_m, 0.0, 10.0,
                                    0.0, with_distance=True)
        # Geocentre-referred vector: adding the observer's fixed position (ENU, metres)
        # removes the 8.8" diurnal parallax wiggle, leaving only diurnal aberration (0.3").
        obs = _observer_enu_m(self.lat_deg, self.lon_deg, self.height_m)
        g = _enu(az, el) * dist_m[:, None] + obs
        sin_lat, cos_lat = math.sin(self.lat_deg * _DEG), math.cos(self.lat_deg * _DEG)
        # Local equatorial frame: a -> equator on the meridian, b -> east, c -> pole.
        a = -sin_lat * g[:, 1] + cos_lat * g[:, 2]
        b = g[:, 0]
        c = cos_lat * g[:, 1] + sin_lat * g[:, 2]
        lam = np.unwrap(np.arctan2(b, a))
        dec = np.arctan2(c, np.hypot(a, b))
        rho = np.sqrt(a * a + b * b + c * c)

        def d6(f: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:  # 6th-order central first derivative
            return (-f[:-6] + 9 * f[1:-5] - 45 * f[2:-4] + 45 * f[4:-2] - 9 * f[5:-1]
                    + f[6:]) / (60.0 * big)

        dlam, ddec, drho = d6(lam), d6(dec), d6(rho)
        lam, dec, rho = lam[pad:-pad], dec[pad:-pad], rho[pad:-pad]  # nodes 0..n_coarse

        # Resample on the fine grid: topocentric ENU unit vectors and exact derivatives.
        fine = self.FINE_STEP_S
        n_fine = max(1, math.ceil(span_x / fine))
        xf = np.arange(n_fine + 1) * fine
        seg = np.minimum((xf // big).astype(np.intp), n_coarse - 1)
        s = (xf - seg * big) / big
        lam_f, dlam_f = _hermite(lam[seg], lam[seg + 1], dlam[seg], dlam[seg + 1], s, big)
        dec_f, ddec_f = _hermite(dec[seg], dec[seg + 1], ddec[seg], ddec[seg + 1], s, big)
        rho_f, drho_f = _hermite(rho[seg], rho[seg + 1], drho[seg], drho[seg + 1], s, big)
        cl, sl, cd, sd = np.cos(lam_f), np.sin(lam_f), np.cos(dec_f), np.sin(dec_f)
        a_f, b_f, c_f = rho_f * cd * cl, rho_f * cd * sl, rho_f * sd
        da = drho_f * cd * cl - rho_f * (sd * cl * ddec_f + cd * sl * dlam_f)
        db = drho_f * cd * sl - rho_f * (sd * sl * ddec_f - cd * cl * dlam_f)
        dc = drho_f * sd + rho_f * cd * ddec_f
        topo = np.stack([b_f, -sin_lat * a_f + cos_lat * c_f, cos_lat * a_f + sin_lat * c_f])
        topo -= obs[:, None]
        dtopo = np.stack([db, -sin_lat * da + cos_lat * dc, cos_lat * da + sin_lat * dc])
        norm = np.sqrt((topo * topo).sum(axis=0))
        p = topo / norm
        m = (dtopo - p * (p * dtopo).sum(axis=0)) / norm * fine
        p0, p1, m0, m1 = p[:, :-1], p[:, 1:], m[:, :-1], m[:, 1:]
        # Per segment, per component: value = c0 + c1 u + c2 u^2 + c3 u^3, u in [0, 1].
        c0, c1 = p0, m0
        c2 = 3 * (p1 - p0) - 2 * m0 - m1
        c3 = 2 * (p0 - p1) + m0 + m1
        # Table rows: W0..W3, S0..S3, U0..U3 with W = -east, S = -north (so that
        # azimuth = atan2(W, S) + 180 deg needs no negation); columns: segments, plus one
        # constant-slope segment at the end so t == end_s needs no index clipping.
        c = np.stack([c0, c1, c2, c3], axis=1)  # (3 components, 4 coefficients, n_fine)
        c[:2] *= -1.0
        last = np.zeros((3, 4, 1))
        last[:, 0, 0], last[:, 1, 0] = p[:, -1], m[:, -1]
        last[:2] *= -1.0
        self._coef_t = np.ascontiguousarray(np.concatenate([c, last], axis=2).reshape(12, -1))
        self._n_seg = n_fine
        self._inv_fine = 1.0 / fine
        self._row: tuple[int, list[float]] = (-1, [])
        logger.debug("SunTrack %.0f..%.0f: %d reduction nodes, %d segments",
                     self.start_s, self.end_s, len(k), n_fine)

    # -- time mapping -------------------------------------------------------------------------
    def _x_scalar(self, t_s: float) -> float:
        x = t_s - self.start_s
        for unix_s, cum in zip(self._leap_unix, self._leap_cum, strict=True):
            if t_s >= unix_s:
                x = t_s - self.start_s + cum
        return x

    def _range_error(self, t_s: Any) -> EphemerisRangeError:
        return EphemerisRangeError(
            f"time {t_s} outside this SunTrack's span {self.start_s:.3f}..{self.end_s:.3f} "
            "(UTC unix s); build a SunTrack covering it")

    def covers(self, t_s: float) -> bool:
        """True when ``t_s`` (UTC unix s) lies inside the span."""
        return self.start_s <= t_s <= self.end_s

    # -- scalar fast path ---------------------------------------------------------------------
    def _row_for(self, t_s: float) -> tuple[list[float], float]:
        if not (self.start_s <= t_s <= self.end_s):
            raise self._range_error(t_s)
        x = t_s - self.start_s
        if self._leap_unix:
            x = self._x_scalar(t_s)
        q = x * self._inv_fine
        j = int(q)
        cached = self._row
        if cached[0] != j:
            cached = (j, self._coef_t[:, j].tolist())
            self._row = cached
        return cached[1], q - j

    def altaz_rates(self, t_s: float, _atan2: Any = math.atan2, _sqrt: Any = math.sqrt
                    ) -> tuple[float, float, float, float]:
        """(az_deg, el_deg, az_rate_deg_s, el_rate_deg_s) at one time (UTC unix s), floats."""
        r, u = self._row_for(t_s)
        w = ((r[3] * u + r[2]) * u + r[1]) * u + r[0]
        s = ((r[7] * u + r[6]) * u + r[5]) * u + r[4]
        up = ((r[11] * u + r[10]) * u + r[9]) * u + r[8]
        dw = (3.0 * r[3] * u + 2.0 * r[2]) * u + r[1]
        ds = (3.0 * r[7] * u + 2.0 * r[6]) * u + r[5]
        dup = (3.0 * r[11] * u + 2.0 * r[10]) * u + r[9]
        rh2 = w * w + s * s
        rh = _sqrt(rh2)
        az = _atan2(w, s) * _RAD + 180.0
        if az >= 360.0:
            az -= 360.0
        el = _atan2(up, rh) * _RAD
        if rh2 == 0.0:
            return az, el, math.nan, math.nan
        k = self._inv_fine * _RAD
        az_rate = (s * dw - w * ds) / rh2 * k
        el_rate = (rh2 * dup - up * (w * dw + s * ds)) / (rh * (rh2 + up * up)) * k
        return az, el, az_rate, el_rate

    def _altaz_scalar(self, t_s: float, _atan2: Any = math.atan2, _sqrt: Any = math.sqrt
                      ) -> tuple[float, float]:
        r, u = self._row_for(t_s)
        w = ((r[3] * u + r[2]) * u + r[1]) * u + r[0]
        s = ((r[7] * u + r[6]) * u + r[5]) * u + r[4]
        up = ((r[11] * u + r[10]) * u + r[9]) * u + r[8]
        az = _atan2(w, s) * _RAD + 180.0
        if az >= 360.0:
            az -= 360.0
        return az, _atan2(up, _sqrt(w * w + s * s)) * _RAD

    # -- vector path --------------------------------------------------------------------------
    def _vector(self, t_s: _Array, with_rates: bool) -> tuple[_Array, ...]:
        t = np.asarray(t_s, dtype=float)
        shape = t.shape
        t = t.reshape(-1)
        n_out = 4 if with_rates else 2
        outs = [np.empty(t.size) for _ in range(n_out)]
        if t.size == 0:
            return tuple(o.reshape(shape) for o in outs)
        lo, hi = float(np.min(t)), float(np.max(t))
        if not (self.start_s <= lo and hi <= self.end_s):  # also catches NaN
            bad = t[~((t >= self.start_s) & (t <= self.end_s))]
            raise self._range_error(bad[0] if bad.size else t[0])
        coef_t = self._coef_t
        leap_cum = np.concatenate([[0.0], self._leap_cum]) if self._leap_unix else None
        k = self._inv_fine * _RAD
        u_buf = np.empty(min(t.size, self._CHUNK))
        with np.errstate(divide="ignore", invalid="ignore"):
            for i0 in range(0, t.size, self._CHUNK):
                tc = t[i0:i0 + self._CHUNK]
                sl = slice(i0, i0 + tc.size)
                u = u_buf[:tc.size]
                np.subtract(tc, self.start_s, out=u)
                if leap_cum is not None:
                    u += leap_cum[np.searchsorted(self._leap_unix, tc, side="right")]
                u *= self._inv_fine
                j = u.astype(np.intp)
                u -= j
                r = coef_t.take(j, axis=1)  # (12, m): contiguous rows of coefficients
                w = r[3] * u
                w += r[2]
                w *= u
                w += r[1]
                w *= u
                w += r[0]
                s = r[7] * u
                s += r[6]
                s *= u
                s += r[5]
                s *= u
                s += r[4]
                up = r[11] * u
                up += r[10]
                up *= u
                up += r[9]
                up *= u
                up += r[8]
                rh2 = w * w
                rh2 += s * s
                rh = np.sqrt(rh2)
                az = outs[0][sl]
                np.arctan2(w, s, out=az)  # in [-180, 180] deg before the shift
                az *= _RAD
                az += 180.0
                np.minimum(az, _AZ_MAX_DEG, out=az)  # 360.0 only by rounding, never returned
                el = outs[1][sl]
                np.divide(up, rh, out=el)  # rh = 0 -> +-inf -> +-90 deg
                np.arctan(el, out=el)
                el *= _RAD
                if with_rates:
                    dw = (3.0 * r[3] * u + 2.0 * r[2]) * u + r[1]
                    ds = (3.0 * r[7] * u + 2.0 * r[6]) * u + r[5]
                    dup = (3.0 * r[11] * u + 2.0 * r[10]) * u + r[9]
                    outs[2][sl] = (s * dw - w * ds) / rh2 * k
                    outs[3][sl] = (rh2 * dup - up * (w * dw + s * ds)) / (rh * (rh2 + up * up)) * k
        return tuple(o.reshape(shape) for o in outs)

    # -- public -------------------------------------------------------------------------------
    def altaz(self, t_s: Any) -> tuple[Any, Any]:
        """(azimuth_deg, elevation_deg), geometric, at UTC unix seconds (float or ndarray)."""
        if isinstance(t_s, float | int) and not isinstance(t_s, bool):
            return self._altaz_scalar(float(t_s))
        if np.ndim(t_s) == 0:
            return self._altaz_scalar(float(t_s))
        az, el = self._vector(t_s, False)
        return az, el

    def rates(self, t_s: Any) -> tuple[Any, Any]:
        """(azimuth_rate_deg_s, elevation_rate_deg_s) at UTC unix seconds (float or ndarray)."""
        if np.ndim(t_s) == 0:
            return self.altaz_rates(float(t_s))[2:]
        _, _, az_rate, el_rate = self._vector(t_s, True)
        return az_rate, el_rate

    def altaz_rates_array(self, t_s: _Array) -> tuple[_Array, ...]:
        """(az_deg, el_deg, az_rate_deg_s, el_rate_deg_s) arrays at UTC unix seconds."""
        return self._vector(t_s, True)
