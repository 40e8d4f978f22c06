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
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: Bump when the stored layout changes.
FORMAT_VERSION = 1
_PREFIX = "iers-auto-"


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


def cache_key() -> str:
    """Hex key of everything the parsed table depends on (versions, files, format)."""
    from importlib import metadata

    import astropy
    from astropy_iers_data import IERS_A_FILE, IERS_A_README, IERS_B_FILE, IERS_B_README

    try:
        data_version = metadata.version("astropy-iers-data")
    except metadata.PackageNotFoundError:
        data_version = "unknown"
    parts = [FORMAT_VERSION, astropy.__version__, data_version,
             *(_file_stamp(p) for p in (IERS_A_FILE, IERS_A_README, IERS_B_FILE, IERS_B_README))]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def cache_path() -> Path:
    return cache_dir() / f"{_PREFIX}{cache_key()}.npz"


def _to_arrays(table: Any) -> dict[str, np.ndarray]:
    """Columns as plain arrays plus a JSON header (units, masks, meta)."""
    arrays: dict[str, np.ndarray] = {}
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
            np.savez(fh, **_to_arrays(table))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    for old in path.parent.glob(f"{_PREFIX}*.npz"):  # tables of other installed versions
        if old != path:
            try:
                old.unlink()
            except OSError:
                pass


def load_table() -> tuple[Any, str]:
    """The ``IERS_Auto`` table and where it came from (``"cache"``, ``"parsed"``, ...)."""
    from astropy.utils import iers

    if os.path.exists("finals2000A.all"):
        # astropy then reads that file from the working directory (its documented,
        # deprecated behaviour): leave it alone, uncached.
        return iers.IERS_Auto.read(), "parsed (finals2000A.all in the working directory)"
    try:
        path = cache_path()
    except (OSError, ImportError) as exc:
        logger.debug("IERS cache unavailable: %s", exc)
        return iers.IERS_Auto.read(), "parsed"
    try:
        with np.load(path, allow_pickle=False) as data:
            return _from_arrays(data), "cache"
    except FileNotFoundError:
        pass
    except Exception as exc:  # noqa: BLE001 - a damaged cache is re-made, never fatal
        logger.warning("IERS cache %s unreadable (%s); parsing the IERS files", path, exc)
    table = iers.IERS_Auto.read()
    try:
        _write(path, table)
        return table, "parsed, cached"
    except OSError as exc:
        logger.info("IERS cache not written (%s): %s; each start parses the IERS files",
                    path, exc.strerror or exc)
        return table, "parsed (cache folder not writable)"


def install() -> str:
    """Give astropy the cached table (``IERS_Auto.iers_table``) unless it has one; -> source."""
    from astropy.utils import iers

    if iers.IERS_Auto.iers_table is not None:
        return "already loaded"
    table, source = load_table()
    iers.IERS_Auto.iers_table = table
    logger.debug("IERS table: %s", source)
    return source
