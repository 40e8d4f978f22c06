"""Offline data for the ephemeris: IERS tables, leap seconds, the JPL DE421 kernel.

Nothing here ever downloads.  ``ensure_offline()`` (called when
``tracker.astro.ephemeris`` is imported) switches astropy to its installed tables
(``astropy-iers-data``) and forbids internet access, at once if astropy's IERS
module is loaded, else the moment it is (an import hook: the ephemeris itself
needs no astropy, see ``tracker.astro.iers_cache``).  DE421 comes from the
``skyfield-data`` package (``de421_path``).  ``data_sources()`` reports which
tables and kernel are used and how old they are (``tracker sun --info``, the
daemon's status).

Times beyond the IERS-A table still give positions: astropy then holds the
last tabulated UT1-UTC and polar motion.  ``check_iers_range()`` warns with a
``StaleIERSWarning`` stating the table's last date and the implied
uncertainty of UT1 in arc-seconds of Earth rotation.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import importlib.abc
import importlib.util
import logging
import math
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: Earth rotation angle per second of UT1, arc-seconds (15" x 1.00273781191135448).
EARTH_ROTATION_ARCSEC_PER_S = 15.0 * 1.00273781191135448
_MJD_UNIX_EPOCH = 40587.0
_lock = threading.RLock()
_done = False
_logged: set[str] = set()


class StaleIERSWarning(UserWarning):
    """Times lie outside the installed IERS table: UT1 (and so azimuth) is uncertain.

    ``table_last_date`` is the table's last date (ISO), ``ut1_uncertainty_s``
    the estimated UT1 error in seconds and ``rotation_uncertainty_arcsec`` the
    same as an angle of Earth rotation (arc-seconds).
    """

    def __init__(self, message: str, *, table_last_date: str = "",
                 ut1_uncertainty_s: float = math.nan,
                 rotation_uncertainty_arcsec: float = math.nan) -> None:
        super().__init__(message)
        self.table_last_date = table_last_date
        self.ut1_uncertainty_s = ut1_uncertainty_s
        self.rotation_uncertainty_arcsec = rotation_uncertainty_arcsec


@contextmanager
def quiet_astropy() -> Iterator[None]:
    """Silence astropy/ERFA notes about table ranges ("dubious year", polar motion).

    ``check_iers_range`` reports those conditions once, in our own words.
    """
    import erfa
    from astropy.utils.exceptions import AstropyWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*dubious year.*", category=erfa.ErfaWarning)
        warnings.filterwarnings("ignore", message="Tried to get polar motions",
                                category=AstropyWarning)
        warnings.filterwarnings("ignore", message=r".*times are outside of range covered by IERS",
                                category=AstropyWarning)
        yield


@contextmanager
def quiet_erfa() -> Iterator[None]:
    """Silence ERFA's "dubious year" note (years past its release + 5); no astropy import."""
    import erfa

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*dubious year.*", category=erfa.ErfaWarning)
        yield


_astropy_done = False


def _configure_astropy() -> None:
    """IERS auto-download off, no maximum table age, internet off, leap seconds from the
    installed files, the parsed IERS table from the binary cache.  Imports astropy."""
    global _astropy_done
    if _astropy_done:
        return
    _astropy_done = True  # first: the cache's slow path comes back here
    from astropy.utils import data as astropy_data
    from astropy.utils import iers

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    astropy_data.conf.allow_internet = False
    from astropy.time import update_leap_seconds

    with warnings.catch_warnings():
        # An expired leap-second file is reported by data_sources(), not here.
        warnings.simplefilter("ignore")
        update_leap_seconds()
    from tracker.astro import iers_cache

    iers_cache.install()  # the parsed IERS table from the binary cache (~20 ms, not ~2 s)
    logger.debug("astropy configured offline (IERS auto-download off)")


class _ConfigureAstropyOnImport(importlib.abc.MetaPathFinder):
    """One-shot import hook: configure astropy offline right after ``astropy.utils.iers``
    is first imported, by anyone.  So the ephemeris need not import astropy itself (0.7 s
    of a cold start) and astropy still never downloads."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "astropy.utils.iers":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module: Any) -> None:
            original(module)
            _configure_astropy()

        # Deliberate: this one loader is wrapped so astropy is configured once imported.
        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def ensure_offline(*, astropy_now: bool = False) -> None:
    """Make sure astropy never touches the network; idempotent and thread-safe.

    IERS auto-download off, no maximum table age (an old table is reported by
    ``check_iers_range``/``data_sources``, not refreshed), internet access off
    for astropy's data utilities, leap seconds from the installed files.  If
    astropy's IERS module is not imported yet this happens the moment anything
    imports it (an import hook), unless ``astropy_now`` asks for it at once.
    """
    global _done
    if _done and (_astropy_done or not astropy_now):
        return
    with _lock:
        if not _done:
            if "astropy.utils.iers" in sys.modules:
                _configure_astropy()
            else:
                sys.meta_path.insert(0, _ConfigureAstropyOnImport())
            _done = True
        if astropy_now:
            _configure_astropy()


def _iers_table() -> Any:
    from astropy.utils import iers

    ensure_offline(astropy_now=True)
    return iers.IERS_Auto.open()


@functools.lru_cache(maxsize=1)
def iers_mjd_range() -> tuple[float, float, float]:
    """(first MJD, last MJD, first predicted MJD) of the IERS-A table in use."""
    from tracker.astro.iers_cache import earth_orientation

    eo = earth_orientation()
    return float(eo.mjd[0]), float(eo.mjd[-1]), float(eo.predictive_mjd)


def _mjd_to_iso(mjd: float) -> str:
    return (_dt.datetime(1970, 1, 1) + _dt.timedelta(days=mjd - _MJD_UNIX_EPOCH)).date().isoformat()


def ut1_uncertainty_s(mjd: float) -> float:
    """Estimated UT1 error (s) at ``mjd`` (UTC) with the installed table.

    Inside the table: IERS Bulletin A's prediction error
    0.00025 (MJD - MJD_last_observed)**0.75 s (0 for observed days).  Beyond
    its last date astropy holds UT1-UTC constant, so the table's final drift
    rate times the days beyond is added.  Leap seconds announced after the
    leap-second table's expiry are not included.
    """
    first, last, predictive = iers_mjd_range()
    if mjd < first:
        return math.nan
    sigma = 0.00025 * math.pow(max(mjd - predictive, 0.0), 0.75)
    if mjd > last:
        sigma += _final_drift_s_per_day() * (mjd - last)
    return sigma


@functools.lru_cache(maxsize=1)
def _final_drift_s_per_day() -> float:
    """|d(UT1-UTC)/dt| over the table's last 30 days (s/day)."""
    from tracker.astro.iers_cache import earth_orientation

    ut1 = earth_orientation().ut1_utc_s[-31:]
    return abs(float(ut1[-1] - ut1[0])) / 30.0


def check_iers_range(mjd_utc: Any, *, stacklevel: int = 3) -> bool:
    """Warn (``StaleIERSWarning`` + log) if any MJD (UTC) lies outside the IERS table.

    Returns True when all times are covered.  Results are still computed by
    the caller: astropy holds the nearest tabulated Earth-orientation values.
    """
    mjd = np.asarray(mjd_utc, dtype=float)
    if mjd.size == 0:
        return True
    first, last, _ = iers_mjd_range()
    lo, hi = float(np.min(mjd)), float(np.max(mjd))
    if first <= lo and hi <= last:
        return True
    if hi > last:
        sigma_s = ut1_uncertainty_s(hi)
        when = f"up to {_mjd_to_iso(hi)}, beyond the IERS table's last date {_mjd_to_iso(last)}"
        msg = (f"times {when}: UT1-UTC and polar motion held at their last tabulated values; "
               f"UT1 uncertain by about {sigma_s:.3f} s, i.e. {sigma_s * EARTH_ROTATION_ARCSEC_PER_S:.2f} "
               f"arcsec of Earth rotation (azimuth/hour angle). Install a newer astropy-iers-data.")
    else:
        sigma_s = math.nan
        msg = (f"times from {_mjd_to_iso(lo)} lie before the IERS table's first date "
               f"{_mjd_to_iso(first)}: UT1-UTC and polar motion held at the first tabulated values; "
               f"UT1 uncertain (up to several seconds, i.e. tens of arcsec of Earth rotation)")
    if msg not in _logged:  # once per distinct message: a daemon calls this every rebuild
        _logged.add(msg)
        logger.warning("stale IERS data: %s", msg)
    warnings.warn(StaleIERSWarning(msg, table_last_date=_mjd_to_iso(last), ut1_uncertainty_s=sigma_s,
                                   rotation_uncertainty_arcsec=sigma_s * EARTH_ROTATION_ARCSEC_PER_S),
                  stacklevel=stacklevel)
    return False


def de421_path() -> str:
    """Path of the JPL DE421 kernel shipped in ``skyfield-data`` (found without importing it)."""
    spec = importlib.util.find_spec("skyfield_data")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("JPL DE421 kernel not found: package skyfield-data not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "de421.bsp")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"JPL DE421 kernel not found: {path} missing")
    return path


def skyfield_de421() -> tuple[Any, Any]:
    """(timescale, DE421 kernel) for skyfield, from installed files only.

    The timescale uses skyfield's built-in Delta T / leap-second data; DE421
    (1900-2050) comes from the ``skyfield-data`` package.  The kernel keeps
    its file open: call its ``close()`` when done.
    """
    import os

    from skyfield.api import Loader
    from skyfield_data import get_skyfield_data_path

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skyfield-data's finals2000A expiry note
        path = get_skyfield_data_path()
    if not os.path.isfile(os.path.join(path, "de421.bsp")):
        raise FileNotFoundError(f"DE421 not found in skyfield-data folder {path}")
    load = Loader(path, verbose=False)
    return load.timescale(builtin=True), load("de421.bsp")


@functools.lru_cache(maxsize=1)
def _leap_second_expiry() -> _dt.date:
    from astropy.utils import iers

    ensure_offline(astropy_now=True)
    expires: _dt.date = iers.LeapSeconds.auto_open().expires.utc.datetime.date()  # astropy: untyped
    return expires


@functools.lru_cache(maxsize=1)
def _static_sources() -> dict[str, Any]:
    """Versions, paths and table dates: fixed for the life of the process."""
    import os
    from importlib import metadata

    import astropy
    import erfa

    def _version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    from tracker.astro.iers_cache import earth_orientation

    try:
        de421 = de421_path()
    except FileNotFoundError:
        de421 = ""
    return {
        "astropy": astropy.__version__,
        "astropy_iers_data": _version("astropy-iers-data"),
        "erfa": erfa.__version__,
        "skyfield": _version("skyfield"),
        "skyfield_data": _version("skyfield-data"),
        "iers_path": earth_orientation().data_path,
        "iers_cache": earth_orientation().source,
        "de421_path": de421,
        "de421_present": bool(de421) and os.path.isfile(de421),
    }


def data_sources(now_s: float | None = None) -> dict[str, Any]:
    """The data the ephemeris uses and their ages (days) at ``now_s`` (UTC unix s).

    Keys: ``astropy``, ``astropy_iers_data``, ``erfa``, ``skyfield``,
    ``skyfield_data`` (versions); ``iers_table`` (``path``, ``first_date``,
    ``last_observed_date``, ``last_date``, ``age_days`` since the last
    observed value, ``days_left`` until its last date, negative beyond it,
    ``ut1_uncertainty_now_s``, ``cache``: how this process got the parsed
    table); ``leap_seconds`` (``expires``, ``expired``, ``days_left``);
    ``ephemerides`` (``kernel``: the JPL kernel of the Earth-Sun vector,
    ``reference``, ``cross_check``, ``de421_path``, ``de421_present``);
    ``offline`` (download switches).
    Cheap after the first call (~0.1 ms): fine for a status snapshot.
    """
    import time

    from astropy.utils import data as astropy_data
    from astropy.utils import iers

    ensure_offline(astropy_now=True)
    static = _static_sources()
    if now_s is None:
        now_s = time.time()
    now_mjd = now_s / 86400.0 + _MJD_UNIX_EPOCH
    first, last, predictive = iers_mjd_range()
    leap_expires = _leap_second_expiry()
    now_date = _dt.datetime.fromtimestamp(now_s, tz=_dt.UTC).date()
    return {
        **{k: static[k] for k in ("astropy", "astropy_iers_data", "erfa", "skyfield",
                                  "skyfield_data")},
        "iers_table": {
            "path": static["iers_path"],
            "first_date": _mjd_to_iso(first),
            "last_observed_date": _mjd_to_iso(predictive - 1),
            "last_date": _mjd_to_iso(last),
            "age_days": round(now_mjd - predictive, 2),
            "days_left": round(last - now_mjd, 2),
            "ut1_uncertainty_now_s": round(ut1_uncertainty_s(now_mjd), 5),
            "cache": static["iers_cache"],
        },
        "leap_seconds": {
            "expires": leap_expires.isoformat(),
            "expired": leap_expires < now_date,
            "days_left": (leap_expires - now_date).days,
        },
        "ephemerides": {
            "kernel": ("JPL DE421 (1899-07-29 .. 2053-10-09)" if static["de421_present"]
                       else "none: ERFA epv00 (DE421 missing)"),
            "reference": ("JPL DE421 Earth and Sun (jplephem) + ERFA reduction (IAU 2006/2000A, "
                          "light time, deflection, aberration, IERS Earth orientation); "
                          "ERFA epv00 outside DE421's span"),
            "cross_check": "skyfield with JPL DE421",
            "de421_path": static["de421_path"],
            "de421_present": static["de421_present"],
        },
        "offline": {
            "iers_auto_download": bool(iers.conf.auto_download),
            "astropy_allow_internet": bool(astropy_data.conf.allow_internet),
        },
    }
