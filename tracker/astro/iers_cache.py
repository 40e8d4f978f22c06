"""A binary cache of astropy's IERS table: parse the ASCII files once per installed version.

astropy builds its Earth-orientation table (``IERS_Auto``: the IERS-A file
``finals2000A.all`` with IERS-B values substituted) by parsing ~20 000 lines of
fixed-width ASCII on every process start: ~2.5 s of CPU, most of a cold
``tracker sun``.  ``install()`` loads the same table from an ``.npz`` (no pickle)
in the user's cache folder instead, ~20 ms, and hands it to astropy as
``IERS_Auto.iers_table`` so that ``Time.ut1``, ``AltAz`` and ``data_sources()``
all use it.

The cache file is named by a key of the astropy and astropy-iers-data
versions and the IERS files' paths, sizes and modification times: a new
``astropy-iers-data`` (or an edited file) makes a new key, so a stale cache is
never used.  Written atomically (temporary file + rename).  Folder:
``$HELIO_TRACKER_CACHE_DIR``, else ``$XDG_CACHE_HOME/helio-tracker``, else
``~/.cache/helio-tracker``.  If it is not writable, or the file is damaged,
the table is parsed as before (correct, only slower).  Nothing downloads.

The same file also holds what the ephemeris itself needs, as plain arrays
readable without importing astropy (``earth_orientation()``: MJD, UT1-UTC,
polar motion; ``install_leap_seconds()``: the leap-second table astropy would
give ERFA), so a cold ``tracker sun`` never imports astropy at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

#: Bump when the stored layout changes.
FORMAT_VERSION = 2
_PREFIX = "iers-auto-"
#: A cached table of another installed version unused this long is deleted (s).
STALE_CACHE_S = 30 * 86400.0


def cache_dir() -> Path:
    """The folder holding the cache (not created here)."""
    env = os.environ.get("HELIO_TRACKER_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "helio-tracker"


def _file_stamp(path: str) -> list[Any]:
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


def _package_dir(name: str) -> Path:
    spec = find_spec(name)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"package {name} not installed")
    return Path(list(spec.submodule_search_locations)[0])


def _version(package_dir: Path) -> str:
    """A digest of the package's ``_version.py`` (changes with every release), read not imported."""
    try:
        return hashlib.sha256((package_dir / "_version.py").read_bytes()).hexdigest()[:16]
    except OSError:
        return "unknown"


def iers_files() -> dict[str, str]:
    """Paths of the installed IERS-A, IERS-B and leap-second files (astropy-iers-data)."""
    data = _package_dir("astropy_iers_data") / "data"
    return {"iers_a": str(data / "finals2000A.all"),
            "iers_a_readme": str(data / "ReadMe.finals2000A"),
            "iers_b": str(data / "eopc04.1962-now"),
            "iers_b_readme": str(data / "ReadMe.eopc04"),
            "leap_seconds": str(data / "Leap_Second.dat")}


def cache_key() -> str:
    """Hex key of everything the parsed table depends on: the astropy and astropy-iers-data
    versions, the files' paths, sizes and modification times, the layout version."""
    astropy_dir = _package_dir("astropy")
    iers_dir = _package_dir("astropy_iers_data")
    parts = [FORMAT_VERSION, _version(astropy_dir), _version(iers_dir),
             _file_stamp(str(astropy_dir / "utils" / "iers" / "iers.py")),
             *(_file_stamp(p) for p in iers_files().values())]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def cache_path() -> Path:
    return cache_dir() / f"{_PREFIX}{cache_key()}.npz"


def _to_arrays(table: Any) -> dict[str, npt.NDArray[Any]]:
    """Columns as plain arrays plus a JSON header (units, masks, meta)."""
    arrays: dict[str, npt.NDArray[Any]] = {}  # one per column, each of its own dtype
    columns = []
    for i, name in enumerate(table.colnames):
        col = table[name]
        unit = getattr(col, "unit", None)
        kind = "quantity" if hasattr(col, "value") and unit is not None else "column"
        mask = getattr(col, "mask", None)
        masked = mask is not None and kind == "column" and col.__class__.__name__ == "MaskedColumn"
        data = np.asarray(col.value if kind == "quantity" else
                          (col.filled("") if masked and col.dtype.kind == "U" else col))
        arrays[f"c{i}"] = data
        if masked:
            arrays[f"m{i}"] = np.asarray(mask, dtype=bool)
        columns.append({"name": name, "kind": kind, "unit": str(unit) if unit else "",
                        "masked": bool(masked)})
    meta = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in table.meta.items()}
    header = {"columns": columns, "meta": meta}
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    # The ephemeris' own view, readable without astropy.
    arrays["eo_mjd"] = np.asarray(table["MJD"].value, dtype=float)
    arrays["eo_ut1_utc_s"] = np.asarray(table["UT1_UTC"].value, dtype=float)
    arrays["eo_pm_x_arcsec"] = np.asarray(table["PM_x"].value, dtype=float)
    arrays["eo_pm_y_arcsec"] = np.asarray(table["PM_y"].value, dtype=float)
    arrays["eo_predictive_mjd"] = np.asarray(float(table.meta.get("predictive_mjd",
                                                                  arrays["eo_mjd"][-1])))
    arrays["eo_data_path"] = np.asarray(str(table.meta.get("data_path", "")))
    import erfa

    leap = erfa.leap_seconds.get()
    leap = leap[leap["year"] >= 1972]
    arrays["leap_year"] = np.asarray(leap["year"], dtype=np.int64)
    arrays["leap_month"] = np.asarray(leap["month"], dtype=np.int64)
    arrays["leap_tai_utc"] = np.asarray(leap["tai_utc"], dtype=float)
    arrays["leap_expires"] = np.asarray(erfa.leap_seconds.expires.date().isoformat())
    return arrays


def _from_arrays(data: Any) -> Any:
    import astropy.units as u
    from astropy.table import Column, MaskedColumn
    from astropy.utils import iers

    header = json.loads(bytes(data["header"]).decode())
    table = iers.IERS_Auto()
    for i, col in enumerate(header["columns"]):
        values = data[f"c{i}"]
        if col["kind"] == "quantity":
            table[col["name"]] = u.Quantity(values, col["unit"], copy=False)
        elif col["masked"]:
            table[col["name"]] = MaskedColumn(values, mask=data[f"m{i}"])
        else:
            table[col["name"]] = Column(values)
    table.meta.update(header["meta"])
    return table


def _write(path: Path, table: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            # numpy's stub: a **dict of arrays also matches savez's allow_pickle: bool.
            np.savez(fh, **_to_arrays(table))  # type: ignore[arg-type]
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    # Tables of other installed versions go once unused for a while: not at once, since two
    # installations (two venvs of one user) would otherwise delete each other's file and
    # both parse at every start.
    stale_before_s = time.time() - STALE_CACHE_S
    for old in path.parent.glob(f"{_PREFIX}*.npz"):
        try:
            if old != path and old.stat().st_mtime < stale_before_s:
                old.unlink()
        except OSError:
            pass


def _parse_with_astropy() -> Any:
    """The slow path: astropy parses the ASCII files (offline), leap seconds updated first."""
    from tracker.astro.datasources import ensure_offline

    ensure_offline(astropy_now=True)
    from astropy.utils import iers

    return iers.IERS_Auto.read()


def _ensure_file() -> tuple[Path | None, Any, str]:
    """(cache file or None, freshly parsed table or None, how it was obtained)."""
    if os.path.exists("finals2000A.all"):
        # astropy then reads that file from the working directory (its documented,
        # deprecated behaviour): leave it alone, uncached.
        return None, _parse_with_astropy(), "parsed (finals2000A.all in the working directory)"
    try:
        path = cache_path()
    except (OSError, ImportError) as exc:
        logger.debug("IERS cache unavailable: %s", exc)
        return None, _parse_with_astropy(), "parsed"
    if path.is_file():
        try:
            os.utime(path)  # in use: another installation's clean-up keeps it
        except OSError:
            pass
        return path, None, "cache"
    table = _parse_with_astropy()
    try:
        _write(path, table)
        return path, table, "parsed, cached"
    except OSError as exc:
        logger.info("IERS cache not written (%s): %s; each start parses the IERS files",
                    path, exc.strerror or exc)
        return None, table, "parsed (cache folder not writable)"


def _open(path: Path) -> Any:
    return np.load(path, allow_pickle=False)


def load_table() -> tuple[Any, str]:
    """The astropy ``IERS_Auto`` table and where it came from (``"cache"``, ``"parsed"``...)."""
    path, table, source = _ensure_file()
    if table is not None:
        return table, source
    assert path is not None
    try:
        with _open(path) as data:
            return _from_arrays(data), source
    except Exception as exc:  # noqa: BLE001 - a damaged cache is re-made, never fatal
        logger.warning("IERS cache %s unreadable (%s); parsing the IERS files", path, exc)
        _discard(path)
        path, table, source = _ensure_file()
        if table is not None or path is None:
            return (table if table is not None else _parse_with_astropy()), source
        with _open(path) as data:
            return _from_arrays(data), source


def _discard(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


@dataclass(frozen=True)
class EarthOrientation:
    """The IERS values the ephemeris interpolates: daily rows at UTC midnight.

    ``mjd`` (UTC), ``ut1_utc_s`` (s), ``pm_x_arcsec``/``pm_y_arcsec`` (polar
    motion, arcsec), the first predicted MJD, the IERS-A file's path and how
    the values were obtained (``source``).  IERS-B values where available, as
    astropy's ``IERS_Auto`` combines them.
    """

    mjd: npt.NDArray[np.float64]
    ut1_utc_s: npt.NDArray[np.float64]
    pm_x_arcsec: npt.NDArray[np.float64]
    pm_y_arcsec: npt.NDArray[np.float64]
    predictive_mjd: float
    data_path: str
    source: str
    leap_year: npt.NDArray[np.int64]
    leap_month: npt.NDArray[np.int64]
    leap_tai_utc: npt.NDArray[np.float64]
    leap_expires: str


_EO: EarthOrientation | None = None


def _eo_from(data: Any, source: str) -> EarthOrientation:
    return EarthOrientation(
        mjd=np.array(data["eo_mjd"]), ut1_utc_s=np.array(data["eo_ut1_utc_s"]),
        pm_x_arcsec=np.array(data["eo_pm_x_arcsec"]), pm_y_arcsec=np.array(data["eo_pm_y_arcsec"]),
        predictive_mjd=float(data["eo_predictive_mjd"]), data_path=str(data["eo_data_path"]),
        source=source, leap_year=np.array(data["leap_year"]),
        leap_month=np.array(data["leap_month"]), leap_tai_utc=np.array(data["leap_tai_utc"]),
        leap_expires=str(data["leap_expires"]))


def earth_orientation() -> EarthOrientation:
    """The IERS values (once per process; from the cache without importing astropy)."""
    global _EO
    if _EO is not None:
        return _EO
    path, table, source = _ensure_file()
    eo: EarthOrientation | None = None
    if path is not None:
        try:
            with _open(path) as data:
                eo = _eo_from(data, source)
        except Exception as exc:  # noqa: BLE001 - damaged: parse again
            logger.warning("IERS cache %s unreadable (%s); parsing the IERS files", path, exc)
            _discard(path)
            path, table, source = _ensure_file()
    if eo is None:
        if table is None:
            table = _parse_with_astropy()
        eo = _eo_from(_to_arrays(table), source)
    _EO = eo
    return eo


class _LeapTable:
    """A leap-second array with an ``expires`` date, as ``erfa.leap_seconds.update`` reads it."""

    def __init__(self, array: npt.NDArray[np.void], expires: Any) -> None:
        self._array, self.expires = array, expires

    def __array__(self, dtype: Any = None, copy: Any = None) -> npt.NDArray[np.void]:
        return self._array

    def __getitem__(self, key: Any) -> Any:
        return self._array[key]


def install_leap_seconds() -> None:
    """Give ERFA the leap-second table astropy would (from astropy-iers-data), via the cache."""
    import datetime as dt

    import erfa

    eo = earth_orientation()
    table = np.zeros(eo.leap_year.size, dtype=erfa.dt_eraLEAPSECOND)
    table["year"], table["month"], table["tai_utc"] = eo.leap_year, eo.leap_month, eo.leap_tai_utc
    expires = dt.datetime.fromisoformat(eo.leap_expires)
    erfa.leap_seconds.update(_LeapTable(table, expires))


def install() -> str:
    """Give astropy the cached table (``IERS_Auto.iers_table``) unless it has one; -> source."""
    from astropy.utils import iers

    if iers.IERS_Auto.iers_table is not None:
        return "already loaded"
    table, source = load_table()
    iers.IERS_Auto.iers_table = table
    logger.debug("IERS table: %s", source)
    return source
