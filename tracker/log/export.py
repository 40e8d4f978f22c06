"""Export the physics record: the per-bore on-Sun intervals and the per-sample record, to
Parquet (pyarrow), ROOT (uproot; TTrees for IAXO's analysis frameworks) or CSV.

Two tables (schema in ``docs/tracking-log.md``):

- ``intervals``: one row per bore interval (a run of samples with the bore on the Sun for
  the whole sample, one boresight, no gap): ``start_s``, ``end_s`` (UTC unix s),
  ``duration_s``, ``bore``, ``boresight``, ``mean_off_axis_arcsec`` (duration-weighted),
  ``max_off_axis_arcsec``, ``effective_s`` (on-Sun seconds times the optics' efficiency),
  ``n_samples``, ``start_utc``, ``end_utc`` (ISO 8601 'Z').
- ``samples``: one row per logged sample (the SQLite ``samples`` columns, ``bores`` unpacked
  into ``<bore>_off_axis_arcsec``, ``<bore>_max_off_axis_arcsec``, ``<bore>_on_sun_s``,
  ``<bore>_effective_s``; NaN where a sample has no bore figures, e.g. not tracking); when the
  range has the simulator's truth (dry runs), ``true_bores`` likewise into
  ``<bore>_true_off_axis_arcsec``, ``<bore>_true_max_off_axis_arcsec``,
  ``<bore>_true_on_sun_s``, ``<bore>_true_effective_s``.

Files: ``parquet`` -> ``intervals.parquet`` + ``samples.parquet``; ``csv`` ->
``intervals.csv`` + ``samples.csv``; ``root`` -> ``record.root`` with TTrees ``intervals`` and
``samples``.  Samples are read and written in chunks, so a year does not need a year in memory.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from tracker.errors import TrackerError
from tracker.log.store import SAMPLE_FIELDS, TrackingStore
from tracker.mount.bores import decode

FORMATS = ("parquet", "root", "csv")
INTERVAL_COLUMNS = ("start_s", "end_s", "duration_s", "bore", "boresight",
                    "mean_off_axis_arcsec", "max_off_axis_arcsec", "effective_s", "n_samples",
                    "start_utc", "end_utc")
_TEXT = ("bore", "boresight", "start_utc", "end_utc", "state")
BORE_QUANTITIES = ("off_axis_arcsec", "max_off_axis_arcsec", "on_sun_s", "effective_s")


class ExportError(TrackerError):
    """An export that cannot be written (unknown format, unwritable folder)."""


def column_name(bore: str, quantity: str) -> str:
    """The per-bore sample column: ``<bore>_<quantity>`` with ``.``/``-`` as ``_`` (valid
    ROOT branch and Parquet column names)."""
    return f"{re.sub(r'[^A-Za-z0-9_]', '_', bore)}_{quantity}"


def interval_table(intervals: list[dict]) -> dict[str, np.ndarray]:
    """The bore intervals (``exposure(...)["bore_intervals"]``) as columns."""
    out: dict[str, np.ndarray] = {}
    for c in INTERVAL_COLUMNS:
        vals = [iv.get(c) for iv in intervals]
        if c in _TEXT:
            out[c] = np.array([str(v) for v in vals], dtype=object)
        elif c == "n_samples":
            out[c] = np.array(vals, dtype=np.int64)
        else:
            out[c] = np.array([math.nan if v is None else v for v in vals], dtype=np.float64)
    return out


def sample_table(rows: np.ndarray, bores: list[str], *, truth: bool = False
                 ) -> dict[str, np.ndarray]:
    """Samples (``TrackingStore.samples``) as columns, per-bore figures unpacked (with
    ``truth``, also the ``true_bores`` figures as ``<bore>_true_<quantity>``)."""
    out: dict[str, np.ndarray] = {}
    for c in SAMPLE_FIELDS:
        if c in ("bores", "true_bores"):
            continue
        out[c] = (rows[c].astype(object) if c in _TEXT or rows.dtype[c].kind == "U"
                  else rows[c].astype(np.float64))
    for column, prefix in (("bores", ""), ("true_bores", "true_")) if truth else (("bores", ""),):
        figs = [decode(t) for t in rows[column]]
        for b in bores:
            for k, q in enumerate(BORE_QUANTITIES):
                out[column_name(b, prefix + q)] = np.array(
                    [f[b][k] if b in f else math.nan for f in figs], dtype=np.float64)
    return out


class _Writer:
    """One table in one format, written chunk by chunk."""

    def __init__(self, fmt: str, path: Path, tree: str, root_file: Any = None) -> None:
        self.fmt, self.path, self.tree, self.root_file = fmt, path, tree, root_file
        self._pq: Any = None
        self._csv: Any = None
        self._fh: Any = None
        self._root_tree: Any = None
        self.rows = 0

    def write(self, cols: dict[str, np.ndarray]) -> None:
        n = len(next(iter(cols.values()))) if cols else 0
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq
            table = pa.table({k: pa.array(v.tolist() if v.dtype == object else v)
                              for k, v in cols.items()})
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.path, table.schema)
            self._pq.write_table(table)
        elif self.fmt == "csv":
            if self._csv is None:
                self._fh = open(self.path, "w", newline="")
                self._csv = csv.writer(self._fh)
                self._csv.writerow(list(cols))
            for i in range(n):
                self._csv.writerow(["" if isinstance(v[i], float) and math.isnan(v[i])
                                    else v[i] for v in cols.values()])
        else:
            import awkward as ak
            branches = {k: (ak.Array([str(x) for x in v]) if v.dtype == object else v)
                        for k, v in cols.items()}
            if self._root_tree is None:
                self.root_file[self.tree] = branches
                self._root_tree = self.root_file[self.tree]
            elif n:
                self._root_tree.extend(branches)
        self.rows += n

    def close(self) -> None:
        if self._pq is not None:
            self._pq.close()
        if self._fh is not None:
            self._fh.close()


def export_record(store: TrackingStore, fmt: str, out_dir: str | Path, t0_s: float,
                  t1_s: float, *, settle_s: float = 30.0, bores: list[str] | None = None,
                  chunk_s: float = 21600.0) -> dict:
    """Write the intervals and the samples of ``[t0_s, t1_s)`` into ``out_dir`` (created) in
    ``fmt``; returns ``{"files": [...], "intervals": n, "samples": n, "bores": [...]}``.

    ``bores``: the per-bore sample columns (default: the bores found in the range).  The
    truth columns are written when the range has per-bore truth (``exposure()["true_bores"]``).
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the export folder {out}: {exc.strerror}") from None
    r = store.exposure(t0_s, t1_s, settle_s=settle_s, intervals=True)
    names = list(bores) if bores is not None else sorted(set(r["bores"]) | set(r["true_bores"]))
    truth = bool(r["true_bores"])
    root_file = None
    if fmt == "root":
        import uproot
        files = [out / "record.root"]
        root_file = uproot.recreate(files[0])
        iw = _Writer(fmt, files[0], "intervals", root_file)
        sw = _Writer(fmt, files[0], "samples", root_file)
    else:
        files = [out / f"intervals.{fmt}", out / f"samples.{fmt}"]
        iw, sw = _Writer(fmt, files[0], "intervals"), _Writer(fmt, files[1], "samples")
    try:
        iw.write(interval_table(r["bore_intervals"]))
        lo = t0_s
        while lo < t1_s:
            hi = min(lo + chunk_s, t1_s)
            # rows cover (time_s - dt_s, time_s]: those ending in (lo, hi]
            rows = store.samples(lo + 1e-6, hi + 1e-6)
            if rows.size or sw.rows == 0 and hi >= t1_s:
                sw.write(sample_table(rows, names, truth=truth))
            lo = hi
    finally:
        iw.close()
        sw.close()
        if root_file is not None:
            root_file.close()
    return {"files": [str(f) for f in files], "intervals": iw.rows, "samples": sw.rows,
            "bores": names, "truth": truth}
