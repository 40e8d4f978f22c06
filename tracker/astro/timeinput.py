"""Times given by people and programs -> UTC, unambiguously.

Accepted, alone or in a list/array: timezone-aware ``datetime``; ISO-8601
strings with a zone (``Z`` or ``+hh:mm``), including a leap second such as
``2016-12-31T23:59:60Z``; astropy ``Time``; unix seconds (UTC, int/float).
A naive ``datetime``, an ISO string without zone, a bare ``date`` or a
``numpy.datetime64`` is refused with ``TimeInputError``: their zone is a guess.

Unix seconds are POSIX: 86400 per UTC day, leap seconds not counted, so an
instant inside a leap second has no unix value of its own (``to_unix_s``
maps 23:59:60.x onto the next day's 00:00:00.x, as a POSIX clock repeats
it); use an ISO string or astropy ``Time`` for such instants.  (astropy's
own ``format='unix'`` instead stretches the seconds of a leap-second day; it
is not used here.)
"""

from __future__ import annotations

import datetime as _dt
import numbers
import re
from collections.abc import Sequence
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt

from tracker.errors import TimeInputError

_ISO = re.compile(
    r"^\s*(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[Tt ](?P<h>\d{2}):(?P<mi>\d{2})"
    r"(?::(?P<s>\d{2})(?P<frac>[.,]\d+)?)?\s*(?P<zone>[Zz]|UTC|[+-]\d{2}(?::?\d{2})?)?\s*$"
)


_MJD_UNIX_EPOCH = 40587.0


def unix_to_time(unix_s: Any) -> Any:
    """POSIX unix seconds (float or array) -> astropy ``Time`` (UTC), exact on leap-second days."""
    from astropy.time import Time, TimeDelta

    from tracker.astro.datasources import quiet_astropy

    u = np.asarray(unix_s, dtype=float)
    days = np.floor(u / 86400.0)
    with quiet_astropy():
        day_start = Time(days + _MJD_UNIX_EPOCH, format="mjd", scale="utc")
        return (day_start.tai + TimeDelta(u - days * 86400.0, format="sec")).utc


def time_to_unix(t: Any) -> float | npt.NDArray[np.float64]:
    """astropy ``Time`` -> POSIX unix seconds (float, or ndarray for an array Time)."""
    from astropy.time import Time

    from tracker.astro.datasources import quiet_astropy

    with quiet_astropy():
        utc = t.utc
        days = np.floor(utc.mjd)
        seconds = (utc.tai - Time(days, format="mjd", scale="utc").tai).sec
    unix = (days - _MJD_UNIX_EPOCH) * 86400.0 + seconds
    return float(unix) if utc.isscalar else np.asarray(unix, dtype=float)


def _is_number(x: object) -> TypeGuard[numbers.Real]:
    return isinstance(x, numbers.Real) and not isinstance(x, bool | np.bool_)


def parse_iso_utc(text: str) -> str:
    """An ISO-8601 string with zone -> normalised UTC ``YYYY-MM-DDTHH:MM:SS[.f]``.

    The fraction of a second is kept digit for digit; a leap second (``:60``)
    is kept as such.  Raises ``TimeInputError`` without a zone or when invalid.
    """
    m = _ISO.match(text)
    if m is None:
        raise TimeInputError(
            f"cannot read time {text!r}: expected ISO-8601 with a zone, e.g. "
            "'2024-06-21T12:00:00Z' or '2024-06-21T14:00:00+02:00'")
    zone = m["zone"]
    if zone is None:
        raise TimeInputError(
            f"time {text!r} has no time zone; add 'Z' for UTC or an offset such as '+01:00'")
    sec = int(m["s"] or 0)
    frac = (m["frac"] or "").replace(",", ".")
    if sec > 60:
        raise TimeInputError(f"time {text!r}: seconds must be 0..60")
    try:
        base = _dt.datetime(int(m["y"]), int(m["mo"]), int(m["d"]), int(m["h"]), int(m["mi"]),
                            min(sec, 59))
    except ValueError as exc:
        raise TimeInputError(f"time {text!r}: {exc}") from None
    if zone not in ("Z", "z", "UTC"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
        if hours > 23 or minutes > 59:
            raise TimeInputError(f"time {text!r}: invalid zone offset {zone!r}")
        base -= sign * _dt.timedelta(hours=hours, minutes=minutes)
    if sec == 60 and not _is_leap_second_minute(base):
        raise TimeInputError(
            f"time {text!r}: no leap second was inserted at that minute (UTC {base:%Y-%m-%d %H:%M})")
    out_sec = 60 if sec == 60 else base.second
    return f"{base:%Y-%m-%dT%H:%M}:{out_sec:02d}{frac}"


def _is_leap_second_minute(utc: _dt.datetime) -> bool:
    """True if a leap second ends the UTC minute containing ``utc`` (per ERFA's table)."""
    import erfa

    if (utc.hour, utc.minute) != (23, 59):
        return False
    nxt = utc.date() + _dt.timedelta(days=1)
    if nxt.day != 1:
        return False
    table = erfa.leap_seconds.get()
    for prev, cur in zip(table[:-1], table[1:], strict=True):
        if (int(cur["year"]), int(cur["month"])) == (nxt.year, nxt.month):
            return float(cur["tai_utc"] - prev["tai_utc"]) > 0.5
    return False


def _datetime_to_iso_utc(value: _dt.datetime) -> str:
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise TimeInputError(
            f"naive datetime {value.isoformat()} refused: its time zone is unknown; "
            "use an aware datetime, e.g. datetime(..., tzinfo=timezone.utc)")
    utc = value.astimezone(_dt.UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds")


def _refuse(value: object) -> TimeInputError:
    if isinstance(value, np.datetime64):
        return TimeInputError(
            f"numpy.datetime64 {value} refused: it carries no time zone; "
            "pass unix seconds, an aware datetime or an ISO string with 'Z'")
    if isinstance(value, _dt.date):
        return TimeInputError(f"date {value} refused: give a time of day with a zone")
    return TimeInputError(
        f"cannot interpret {value!r} ({type(value).__name__}) as a time; expected unix seconds, "
        "an aware datetime, an ISO-8601 string with zone or an astropy Time")


def _scalar_to_time(value: object) -> Any:
    from astropy.time import Time

    if isinstance(value, Time):
        if not value.isscalar:
            raise TimeInputError("nested arrays of astropy Time are not supported")
        return value
    if _is_number(value):
        return unix_to_time(float(value))
    if isinstance(value, str):
        return _time_from_iso([parse_iso_utc(value)])[0]
    if isinstance(value, _dt.datetime):
        return _time_from_iso([_datetime_to_iso_utc(value)])[0]
    raise _refuse(value)


def _time_from_iso(isos: list[str]) -> Any:
    from astropy.time import Time

    from tracker.astro.datasources import quiet_astropy

    try:
        with quiet_astropy():
            return Time(isos, format="isot", scale="utc")
    except ValueError as exc:
        raise TimeInputError(f"invalid time {isos if len(isos) > 1 else isos[0]!r}: {exc}") from None


def to_time(times: Any) -> Any:
    """Any accepted time (or array of them) -> astropy ``Time`` (UTC scale when parsed).

    Scalar in, scalar ``Time`` out; list/array in, array ``Time`` of the same
    length out.  Raises ``TimeInputError`` for naive or unreadable times.
    """
    from astropy.time import Time

    from tracker.astro.datasources import ensure_offline

    ensure_offline()
    if isinstance(times, Time):
        return times
    if isinstance(times, np.ndarray) and times.dtype.kind in "iuf":
        if not np.all(np.isfinite(times)):
            raise TimeInputError("unix seconds must be finite (found NaN or infinity)")
        return unix_to_time(times.astype(float))
    if isinstance(times, np.ndarray) and times.dtype.kind == "M":
        raise _refuse(times.flat[0] if times.size else np.datetime64("NaT"))
    if isinstance(times, np.ndarray | Sequence) and not isinstance(times, str | bytes):
        items = list(np.asarray(times, dtype=object).ravel()) if isinstance(times, np.ndarray) \
            else list(times)
        if not items:
            return unix_to_time(np.zeros(0))
        if all(_is_number(x) for x in items):
            return to_time(np.asarray(items, dtype=float))
        if all(isinstance(x, str | _dt.datetime) for x in items):
            isos = [parse_iso_utc(x) if isinstance(x, str) else _datetime_to_iso_utc(x)
                    for x in items]
            return _time_from_iso(isos)
        parts = [_scalar_to_time(x) for x in items]
        from tracker.astro.datasources import quiet_astropy

        with quiet_astropy():
            return Time([p.utc for p in parts])
    if _is_number(times) and not np.isfinite(float(times)):
        raise TimeInputError(f"unix seconds must be finite, got {times!r}")
    return _scalar_to_time(times)


def to_unix_s(times: Any) -> float | npt.NDArray[np.float64]:
    """Any accepted time (or array of them) -> UTC unix seconds (float or float ndarray).

    Leap seconds are not counted (POSIX); see the module docstring.
    """
    if _is_number(times):
        value = float(times)
        if not np.isfinite(value):
            raise TimeInputError(f"unix seconds must be finite, got {times!r}")
        return value
    if isinstance(times, np.ndarray) and times.dtype.kind in "iuf":
        out = times.astype(np.float64)
        if not np.all(np.isfinite(out)):
            raise TimeInputError("unix seconds must be finite (found NaN or infinity)")
        return float(out) if out.ndim == 0 else out
    return time_to_unix(to_time(times))


_JD_UNIX_EPOCH = 2440587.5


def _erfa_ready() -> Any:
    """ERFA with the installed leap-second table (astropy-iers-data, via the cache)."""
    import erfa

    from tracker.astro.iers_cache import install_leap_seconds

    global _LEAPS_INSTALLED
    if not _LEAPS_INSTALLED:
        install_leap_seconds()
        _LEAPS_INSTALLED = True
    return erfa


_LEAPS_INSTALLED = False


def unix_to_utc_jd(unix_s: npt.ArrayLike
                   ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """POSIX unix seconds -> UTC two-part quasi-JD (ERFA convention), exact on leap-second days."""
    from tracker.astro.datasources import quiet_erfa

    erfa = _erfa_ready()
    u = np.asarray(unix_s, dtype=float)
    days = np.floor(u / 86400.0)
    with quiet_erfa():
        tai1, tai2 = erfa.utctai(_JD_UNIX_EPOCH + days, np.zeros_like(days))
        utc: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] = erfa.taiutc(
            tai1, tai2 + (u - days * 86400.0) / 86400.0)  # erfa's ufuncs: untyped
        return utc


def iso_to_utc_jd(isos: list[str]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Normalised UTC ISO strings (``parse_iso_utc`` output) -> UTC two-part quasi-JD."""
    from tracker.astro.datasources import quiet_erfa

    erfa = _erfa_ready()
    n = len(isos)
    fields = np.zeros((6, n))
    for i, text in enumerate(isos):
        date, _, clock = text.partition("T")
        y, mo, d = date.split("-")
        h, mi, sec = clock.split(":")
        fields[:, i] = (int(y), int(mo), int(d), int(h), int(mi), float(sec))
    with quiet_erfa():
        utc: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] = erfa.dtf2d(
            "UTC", fields[0].astype(np.int32), fields[1].astype(np.int32),
            fields[2].astype(np.int32), fields[3].astype(np.int32),
            fields[4].astype(np.int32), fields[5])  # erfa's ufuncs: untyped
        return utc


def to_utc_jd(times: Any) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], bool]:
    """Any accepted time (or array of them) -> (jd1, jd2, is_scalar), UTC two-part quasi-JD.

    The arrays have the input's shape (0-d for a scalar).  Unix seconds and ISO
    strings are converted with ERFA alone (no astropy import: the cold-start
    path); other forms go through ``to_time``.  Same validation and errors as
    ``to_time``.
    """
    if _is_number(times):
        value = float(times)
        if not np.isfinite(value):
            raise TimeInputError(f"unix seconds must be finite, got {times!r}")
        jd1, jd2 = unix_to_utc_jd(np.asarray(value))
        return np.asarray(jd1), np.asarray(jd2), True
    if isinstance(times, np.ndarray) and times.dtype.kind in "iuf":
        if not np.all(np.isfinite(times)):
            raise TimeInputError("unix seconds must be finite (found NaN or infinity)")
        jd1, jd2 = unix_to_utc_jd(times.astype(float))
        return np.asarray(jd1), np.asarray(jd2), times.ndim == 0
    if isinstance(times, str):
        jd1, jd2 = iso_to_utc_jd([parse_iso_utc(times)])
        return np.asarray(jd1[0]), np.asarray(jd2[0]), True
    if isinstance(times, list | tuple) and times:
        if all(_is_number(x) for x in times):
            return to_utc_jd(np.asarray(times, dtype=float))
        if all(isinstance(x, str) for x in times):
            jd1, jd2 = iso_to_utc_jd([parse_iso_utc(x) for x in times])
            return np.asarray(jd1), np.asarray(jd2), False
    t = to_time(times)
    from tracker.astro.datasources import quiet_astropy

    with quiet_astropy():
        utc = t.utc
        return np.asarray(utc.jd1), np.asarray(utc.jd2), bool(t.isscalar)


def utc_jd_to_iso(jd1: npt.NDArray[np.float64], jd2: npt.NDArray[np.float64],
                  digits: int = 3) -> list[str]:
    """UTC two-part quasi-JD -> ``YYYY-MM-DDTHH:MM:SS.fff`` strings (leap second as :60)."""
    from tracker.astro.datasources import quiet_erfa

    erfa = _erfa_ready()
    with quiet_erfa():
        ymdf = erfa.d2dtf("UTC", digits, np.atleast_1d(jd1), np.atleast_1d(jd2))
    out = []
    for y, mo, d, hmsf in zip(ymdf[0], ymdf[1], ymdf[2], ymdf[3], strict=True):
        h, mi, sec, frac = int(hmsf["h"]), int(hmsf["m"]), int(hmsf["s"]), int(hmsf["f"])
        out.append(f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{sec:02d}.{frac:0{digits}d}")
    return out
