"""The tracking log: SQLite, crash-safe, never raising into the control loop.

One file holds the experiment's physics record:

- ``samples``: one row per logged interval (>= 1 Hz): what the mount was asked to point at,
  where the encoders say it pointed, the pointing error and the on-Sun seconds;
- ``events``: state changes, faults, warnings, operator commands (``kind``);
- ``audit``: every operator/API command with its source, arguments and result;
- ``meta``: site, config, software version (``set_meta``).

Durability: WAL journal, ``synchronous=FULL`` (a committed transaction survives a power cut),
samples committed once ``commit_interval_s`` of *sample* time has passed since the last
commit, events and audit records committed at once.  A crash (SIGKILL) or power cut loses at
most the uncommitted samples and never corrupts the file.

Failure handling: ``add_sample``, ``log_event`` and ``audit`` never raise.  When the disk is
full, the database is locked by another process or the file cannot be written, the rows stay
in a bounded in-memory backlog, ``healthy`` turns False with ``last_error`` set, and every
later commit point retries; once a write succeeds the backlog is written in order, in
transactions of up to ``max_rows_per_write`` rows, down to ``chunk_rows`` after the disk
was full (so a little freed space is enough to make progress; doubling back on success),
and a ``warning`` event records the outage and what was dropped.

- Bounds: at most ``max_backlog`` samples (oldest dropped first) and ``max_event_backlog``
  events/audit records in memory.  Over the event bound the oldest command/audit record goes
  first, then the oldest info/warning event; state and fault events go last, and never the
  latest state or fault event.  Every drop is counted and reported in the log.
- Rate: audit records commit at once up to ``audit_rate_per_s`` (burst ``audit_burst``)
  per source and ten times that for all sources; beyond that accepted commands wait for
  the next commit point and refused ones are counted per source and command and logged as
  one summary ``warning``.
- Disk usage of the WAL: ``wal_autocheckpoint`` of 64 pages, ``journal_size_limit`` of
  256 KiB and a ``wal_checkpoint(TRUNCATE)`` every ``checkpoint_interval_s`` of log time (and
  at once when the disk is full), so the WAL stays small on a small disk.
- Close during an outage: what cannot be written is named in an error log message and kept
  in a spill file (JSON lines) in ``spill_dir``, else the system temporary folder; the next
  writer of the same log imports it at start.
- Corrupt file: at start ``PRAGMA quick_check``; a malformed log is moved aside to
  ``<name>.corrupt-<UTC>`` and a new one started with a ``warning`` event
  (``on_corrupt="move_aside"``, the default) or refused with ``StoreError``
  (``on_corrupt="refuse"``).  A file that is not SQLite at all is always refused (it may be
  the wrong path).  Missing tables are recreated at start and when a write finds one missing.
- Rows that do not parse (an event's ``data`` that is not JSON) are read back with the raw
  text and a flag, never raised: ``{"invalid_json": True, "raw": "<text>"}``.

Times are UTC unix seconds; angles degrees (azimuth from north through east, elevation up
positive); errors arc-seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sqlite3
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from tracker.errors import TrackerError
from tracker.timefmt import iso_utc

log = logging.getLogger(__name__)

#: 2: samples gained ``true_error_arcsec`` (the simulator's truth) and ``bores`` (per-bore
#: JSON).  A schema-1 log gains the columns when opened for writing (NULL in old rows) and
#: reads them as NULL (NaN, None for text) when opened read-only.
#: 3: samples gained ``true_bores`` (per-bore figures from the simulator's true pointing, JSON
#: as ``bores``; NULL with real drives), migrated the same way.
SCHEMA_VERSION = 3
#: Oldest schema this software still reads.
OLDEST_READABLE_SCHEMA = 1
EVENT_KINDS = ("state", "fault", "command", "warning", "info")
#: Event kinds that are dropped last from a full backlog (and never the latest of each).
CRITICAL_KINDS = ("state", "fault", "meta")
ON_CORRUPT = ("move_aside", "refuse")
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: WAL sizing: checkpoint every 64 pages (256 KiB at 4 KiB pages); truncate the WAL to this.
WAL_AUTOCHECKPOINT_PAGES = 64
JOURNAL_SIZE_LIMIT_BYTES = 256 * 1024


class StoreError(TrackerError):
    """The tracking log cannot be opened or read (not a database, newer schema, locked...)."""


@dataclass(slots=True)
class Sample:
    """One logged interval, ``(time_s - dt_s, time_s]``.

    ``target_*`` is the sky direction wanted (the geometric Sun while tracking), ``measured_*``
    the sky direction of the boresight from the encoders, ``axis_*`` the raw axis positions.
    ``error_arcsec`` is the great-circle angle target<->measured at ``time_s``,
    ``error_max_arcsec`` its maximum over the interval, ``on_sun_s`` the seconds of the
    interval spent within the on-Sun tolerance while tracking.  ``true_error_arcsec`` is the
    great-circle angle target<->where the magnet's mechanical axis really points at
    ``time_s`` (simulator truth); NaN (NULL in the log) when there is no truth (real drives).
    """

    time_s: float
    dt_s: float
    state: str
    boresight: str
    target_az_deg: float
    target_el_deg: float
    measured_az_deg: float
    measured_el_deg: float
    axis_az_deg: float
    axis_el_deg: float
    error_arcsec: float
    error_max_arcsec: float
    on_sun_s: float
    #: The mechanical axis' true pointing error (simulator truth vs the Sun); NaN with real drives.
    true_error_arcsec: float = math.nan
    #: Per-bore figures of the interval (``tracker.mount.bores.encode``): JSON
    #: ``{bore: [mean_off_axis_arcsec, max_off_axis_arcsec, on_sun_s, effective_s]}``;
    #: None when not recorded.
    bores: str | None = None
    #: The same per-bore figures from the simulator's TRUE pointing of the mechanical axis,
    #: integrated per tick; None with real drives (no truth) or when not recorded.
    true_bores: str | None = None


SAMPLE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Sample))
_TEXT_FIELDS = ("state", "boresight", "bores", "true_bores")
#: Text columns of any length, read as Python objects (str or None).
_OBJECT_FIELDS = ("bores", "true_bores")
#: NaN angles/errors are stored as NULL (SQLite has no NaN) and read back as NaN.
_NOT_NULL = {"time_s": " NOT NULL", "dt_s": " NOT NULL", "state": " NOT NULL",
             "boresight": " NOT NULL"}
#: numpy dtype of ``TrackingStore.samples``; strings as fixed-width unicode.
SAMPLE_DTYPE = np.dtype([(name, "O" if name in _OBJECT_FIELDS
                          else "U32" if name in _TEXT_FIELDS else "f8")
                         for name in SAMPLE_FIELDS])

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    time_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY,
    {", ".join(f"{n} {'TEXT' if n in _TEXT_FIELDS else 'REAL'}{_NOT_NULL.get(n, '')}"
               for n in SAMPLE_FIELDS)}
);
CREATE INDEX IF NOT EXISTS samples_time ON samples (time_s);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_s REAL NOT NULL,
    kind TEXT NOT NULL,
    source TEXT,
    message TEXT NOT NULL,
    data TEXT
);
CREATE INDEX IF NOT EXISTS events_time ON events (time_s);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_s REAL NOT NULL,
    source TEXT NOT NULL,
    command TEXT NOT NULL,
    args TEXT NOT NULL,
    ok INTEGER NOT NULL,
    result TEXT NOT NULL,
    event_id INTEGER
);
"""

#: Columns the exposure statistics need (and the intervals' offsets).
_STATS_COLUMNS = ("time_s", "dt_s", "state", "boresight", "error_arcsec", "error_max_arcsec",
                  "on_sun_s", "true_error_arcsec", "bores", "true_bores")
_INTERVAL_COLUMNS = ("target_az_deg", "target_el_deg", "measured_az_deg", "measured_el_deg")

_INSERT_SAMPLE = (f"INSERT INTO samples ({', '.join(SAMPLE_FIELDS)}) "
                  f"VALUES ({', '.join('?' * len(SAMPLE_FIELDS))})")




def _sample_row(s: Sample) -> tuple:
    """The row to insert, with plain Python types; ValueError/TypeError for a bad sample.

    (Explicit attributes: ``dataclasses.astuple`` deep-copies and costs ~300 us a row.)
    """
    row = (float(s.time_s), float(s.dt_s), str(s.state), str(s.boresight),
           float(s.target_az_deg), float(s.target_el_deg), float(s.measured_az_deg),
           float(s.measured_el_deg), float(s.axis_az_deg), float(s.axis_el_deg),
           float(s.error_arcsec), float(s.error_max_arcsec), float(s.on_sun_s),
           float(s.true_error_arcsec), None if s.bores is None else str(s.bores),
           None if s.true_bores is None else str(s.true_bores))
    if not (math.isfinite(row[0]) and math.isfinite(row[1]) and row[1] >= 0):
        raise ValueError(f"time_s {row[0]!r} and dt_s {row[1]!r} must be finite, dt_s >= 0")
    return row


def _sample_columns(db: sqlite3.Connection) -> set[str]:
    return {r[1] for r in db.execute("PRAGMA table_info(samples)")}


def _add_missing_sample_columns(db: sqlite3.Connection) -> None:
    """Migration: add the sample columns an older log lacks (nullable: old rows read NaN)."""
    have = _sample_columns(db)
    for n in SAMPLE_FIELDS:
        if n not in have:
            db.execute(f"ALTER TABLE samples ADD COLUMN {n} "
                       f"{'TEXT' if n in _TEXT_FIELDS else 'REAL'}")


def _json(value: Any) -> str:
    try:
        return json.dumps(value, default=str, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError):      # e.g. keys of mixed types: keep it readable
        return json.dumps(repr(value))


_INSERT = {
    "samples": _INSERT_SAMPLE,
    "events": "INSERT INTO events (time_s, kind, source, message, data) VALUES (?, ?, ?, ?, ?)",
    "audit": ("INSERT INTO audit (time_s, source, command, args, ok, result, event_id) "
              "VALUES (?, ?, ?, ?, ?, ?, last_insert_rowid())"),
    "meta": "INSERT OR REPLACE INTO meta (key, value, time_s) VALUES (?, ?, ?)",
}

#: One pending event-like record: (sequence number, kind, ((table, row), ...)).
_Record = tuple[int, str, tuple[tuple[str, tuple], ...]]


def loads_or_flag(raw: str | None) -> Any:
    """JSON text -> value; text that does not parse -> ``{"invalid_json": True, "raw": raw}``."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return {"invalid_json": True, "raw": str(raw)}


def _as_dict(value: Any) -> dict:
    """``value`` if it is a dict, else {} (an unparsable or odd ``data`` reads as empty)."""
    return value if isinstance(value, dict) and not _invalid(value) else {}


def _invalid(value: Any) -> bool:
    return isinstance(value, dict) and value.get("invalid_json") is True and "raw" in value


def utc_stamp(t_s: float | None = None) -> str:
    """Compact UTC time for file names: ``20260701T000000Z``."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if t_s is None else t_s))


class TrackingStore:
    """SQLite tracking log.  One writer per file; any number of readers (other processes).

    ``path``: the database file (parent folders are created).  ``commit_interval_s``: sample
    time between commits of buffered samples (what a crash may lose).  ``clock``: optional
    object with ``now_s()`` (or a callable returning UTC unix seconds) used to time-stamp
    ``set_meta`` (default: system time).
    ``synchronous``: SQLite ``synchronous`` pragma; keep ``"FULL"`` for real operation
    (a dry run on a simulated clock may pass ``"NORMAL"``: crash-safe, not power-cut-safe).
    ``busy_timeout_s``: how long one write attempt waits for another connection's lock before
    giving up until the next commit point.  ``max_backlog``: samples kept in memory while the
    file cannot be written (oldest dropped first); ``max_event_backlog``: events and audit
    records kept (see the module docstring for the order of drops).  While unhealthy,
    ``add_sample`` retries after 0.5, 1, 2 ... up to ``max_retry_s`` (10) seconds of sample
    time; events, audit records and ``flush()`` retry at once.  ``chunk_rows``: rows per
    transaction when writing a backlog after a full disk (a transaction holds up to
    ``max_rows_per_write`` rows while writes succeed: one sync each); ``max_rows_per_write``: rows one commit point writes
    at most (the rest at the next ones; ``flush``/``close`` write all), so catching up never
    stalls the caller long.  ``checkpoint_interval_s``: log time between WAL truncations.
    ``spill_dir``: where ``close`` keeps unwritable rows (then the system temporary folder).
    ``on_corrupt``: ``"move_aside"`` or ``"refuse"`` a log that fails ``PRAGMA quick_check``.
    ``audit_rate_per_s``/``audit_burst``: audit records committed at once (token bucket on
    ``monotonic``, seconds).  ``check_sync_max_bytes``: a file up to this size is checked
    before use (``PRAGMA quick_check`` reads it all: ~1.5 s for 64 MiB); a bigger one is
    checked by a background thread on its own connection, and damage found there makes
    ``healthy`` False, is logged and leaves a ``<name>.malformed`` marker so that the next
    start moves the file aside (or refuses it).
    """

    @property
    def healthy(self) -> bool:
        """True while the log is writable and no check found the file malformed."""
        return self._writable and self.malformed is None

    def __init__(self, path: str | Path, *, commit_interval_s: float = 1.0, clock: Any = None,
                 synchronous: str = "FULL", busy_timeout_s: float = 0.05,
                 max_backlog: int = 100_000, open_timeout_s: float = 5.0,
                 readonly: bool = False, max_event_backlog: int = 10_000,
                 chunk_rows: int = 100, max_rows_per_write: int = 1000,
                 checkpoint_interval_s: float = 60.0, spill_dir: str | Path | None = None,
                 on_corrupt: str = "move_aside", audit_rate_per_s: float = 10.0,
                 audit_burst: int = 50, check_sync_max_bytes: int = 64 << 20,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if not commit_interval_s >= 0:
            raise StoreError(f"commit_interval_s must be >= 0, got {commit_interval_s!r}")
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise StoreError(f"synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}")
        if on_corrupt not in ON_CORRUPT:
            raise StoreError(f"on_corrupt must be one of {ON_CORRUPT}, got {on_corrupt!r}")
        for name, value, low in (("max_backlog", max_backlog, 1),
                                 ("max_event_backlog", max_event_backlog, 10),
                                 ("chunk_rows", chunk_rows, 1),
                                 ("max_rows_per_write", max_rows_per_write, 1),
                                 ("audit_burst", audit_burst, 1)):
            if not (isinstance(value, int) and value >= low):
                raise StoreError(f"{name} must be an integer >= {low}, got {value!r}")
        if not (checkpoint_interval_s > 0 and audit_rate_per_s > 0):
            raise StoreError("checkpoint_interval_s and audit_rate_per_s must be > 0")
        self.path = Path(path).expanduser()
        self.readonly = bool(readonly)
        self._have_columns: set[str] | None = None
        self.commit_interval_s = float(commit_interval_s)
        self.busy_timeout_s = float(busy_timeout_s)
        self.max_backlog = int(max_backlog)
        self.max_event_backlog = int(max_event_backlog)
        self.chunk_rows = int(chunk_rows)
        self._chunk = int(max_rows_per_write)      # rows per transaction now (adaptive)
        self.max_rows_per_write = int(max_rows_per_write)
        self.checkpoint_interval_s = float(checkpoint_interval_s)
        self.spill_dir = None if spill_dir in (None, "") else Path(spill_dir).expanduser()
        self.on_corrupt = on_corrupt
        self.audit_rate_per_s = float(audit_rate_per_s)
        self.audit_burst = int(audit_burst)
        self._clock = clock
        self._lock = threading.RLock()
        self._pending: deque[tuple] = deque()
        # Pending events/audit/meta by drop class, each in sequence order.
        self._records: dict[str, deque[_Record]] = {
            "critical": deque(), "note": deque(), "audit": deque()}
        self._critical_kinds: Counter[str] = Counter()
        self._seq = 0
        self._dropped = 0
        #: Records dropped from the event backlog since the last report, by class.
        self.dropped_events: Counter[str] = Counter()
        #: Refused commands over the audit rate, by "source command", since the last report.
        self.suppressed_refusals: Counter[str] = Counter()
        # Token buckets (tokens, monotonic time of the last refill): per source, and for all
        # sources together at 10x the rate and burst.
        self._buckets: dict[str, list[float]] = {}
        self._monotonic = monotonic
        self._all_bucket = [10.0 * self.audit_burst, monotonic()]
        self._last_commit_time_s: float | None = None
        self._last_checkpoint_s: float | None = None
        self._outage_start_s: float | None = None
        self._closed = False
        self._retry_s = self.commit_interval_s
        self.max_retry_s = 10.0
        self._writable = True
        #: What a ``quick_check`` found wrong with this file (None: nothing found).
        self.malformed: str | None = None
        self.check_sync_max_bytes = int(check_sync_max_bytes)
        self._checker: threading.Thread | None = None
        self.last_error: str | None = None
        self.commits = 0
        self.rejected = 0
        #: Where a malformed log was moved at open (None when it was not).
        self.moved_aside: Path | None = None
        #: The spill file written by ``close`` (None when nothing was left unwritten).
        self.spill_path: Path | None = None
        #: (samples, events) ``close`` could not write to the log.
        self.unwritten: tuple[int, int] = (0, 0)
        #: Spill files imported (deleted once their rows were written).
        self.imported: list[Path] = []
        self._spill_sources: list[Path] = []
        if self.readonly and not self.path.is_file():
            raise StoreError(f"no tracking log at {self.path} (give --db FILE, or the config "
                             "whose store.path names it)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of the tracking log {self.path}: "
                             f"{exc.strerror}") from None
        self._check_magic()
        self._db = self._open(synchronous.upper(), open_timeout_s)
        if self._checker is not None:
            self._checker.start()
        if not self.readonly:
            if self.moved_aside is not None:
                self.log_event(self._now_s(), "warning",
                               f"tracking log was malformed ({self._corrupt_detail}); moved "
                               f"aside to {self.moved_aside} and a new log started",
                               source="store", data={"moved_aside": str(self.moved_aside),
                                                     "quick_check": self._corrupt_detail})
            self._import_spills()

    # ------------------------------------------------------------------ opening
    _corrupt_detail = ""

    def _check_magic(self) -> None:
        """Refuse a non-empty file that is not SQLite at all (perhaps the wrong path)."""
        try:
            with open(self.path, "rb") as f:
                head = f.read(16)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"cannot read the tracking log {self.path}: {exc.strerror}"
                             ) from None
        if head and head != _SQLITE_MAGIC:
            raise StoreError(f"{self.path} is not an SQLite file (not a database); refusing "
                             "to touch it: give the path of a tracking log")

    def _quick_check(self, db: sqlite3.Connection) -> str | None:
        """None when ``PRAGMA quick_check`` passes, else what it (or SQLite) reported.

        Only damage counts (SQLITE_CORRUPT, SQLITE_NOTADB or problems listed by the check);
        an I/O error, a full disk or a lock raises StoreError: the file may be fine.
        """
        try:
            rows = db.execute("PRAGMA quick_check(20)").fetchall()
        except sqlite3.DatabaseError as exc:
            name = str(getattr(exc, "sqlite_errorname", ""))
            if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
                return str(exc)
            db.close()
            raise StoreError(f"cannot check the tracking log {self.path}: {exc} (disk full, "
                             "I/O error or locked; the file was not touched)") from None
        if rows == [("ok",)]:
            return None
        lines = [line for r in rows for line in str(r[0]).splitlines() if line.strip()]
        text = "; ".join(lines[:6]) + (f"; ... ({len(lines) - 6} more)" if len(lines) > 6 else "")
        return text or "no result"

    def _marker_path(self) -> Path:
        return self.path.with_name(self.path.name + ".malformed")

    def _background_check(self) -> None:
        """``quick_check`` of a big log on a read-only connection of its own (the writer goes
        on meanwhile); damage found is logged, recorded and marked for the next start."""
        try:
            db = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True,
                                 check_same_thread=False)
        except sqlite3.Error as exc:
            log.warning("cannot check the tracking log %s: %s", self.path, exc)
            return
        try:
            problem = self._quick_check(db)
        except StoreError as exc:
            log.warning("%s", exc)
            return
        finally:
            db.close()
        if problem is None:
            return
        log.error("tracking log %s is malformed (PRAGMA quick_check: %s); the next start "
                  "%s it", self.path, problem,
                  "moves aside" if self.on_corrupt == "move_aside" else "refuses")
        with self._lock:
            self.malformed = problem
            if self.readonly:
                return
            try:
                self._marker_path().write_text(problem + "\n")
            except OSError as exc:
                log.error("cannot write %s: %s", self._marker_path(), exc.strerror)
            if self._closed:
                return
            self._add_record("warning", (("events", (
                self._now_s(), "warning", "store",
                f"tracking log is malformed (PRAGMA quick_check: {problem}); the next start "
                f"{'moves it aside' if self.on_corrupt == 'move_aside' else 'refuses it'}",
                _json({"quick_check": problem}))),))
            self._write(self._now_s())

    def wait_checked(self, timeout_s: float | None = None) -> bool:
        """Wait for a background ``quick_check``; True when none is still running."""
        if self._checker is not None:
            self._checker.join(timeout_s)
            return not self._checker.is_alive()
        return True

    def _move_aside(self) -> Path:
        target = self.path.with_name(f"{self.path.name}.corrupt-{utc_stamp()}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{utc_stamp()}-{n}")
        for suffix in ("-wal", "-shm", ""):     # the main file last: never lose it
            src = self.path.with_name(self.path.name + suffix)
            if src.exists():
                os.replace(src, target.with_name(target.name + suffix))
        return target

    def _connect(self, open_timeout_s: float) -> sqlite3.Connection:
        target = (self.path.resolve().as_uri() + "?mode=ro" if self.readonly
                  else str(self.path))
        try:
            return sqlite3.connect(target, timeout=open_timeout_s, isolation_level=None,
                                   check_same_thread=False, uri=self.readonly)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the tracking log {self.path}: {exc}") from None

    def _open(self, synchronous: str, open_timeout_s: float) -> sqlite3.Connection:
        db = self._connect(open_timeout_s)
        size = self.path.stat().st_size if self.path.is_file() else 0
        marker = self._marker_path()
        problem = None
        if marker.is_file():
            problem = (marker.read_text(errors="replace").strip() or "malformed") + \
                " (found by the check of an earlier run)"
        elif 0 < size <= self.check_sync_max_bytes:
            problem = self._quick_check(db)
        elif size > self.check_sync_max_bytes:
            self._checker = threading.Thread(target=self._background_check, daemon=True,
                                             name=f"quick_check {self.path.name}")
        if problem is not None:
            db.close()
            if self.readonly or self.on_corrupt == "refuse":
                raise StoreError(
                    f"tracking log {self.path} is malformed (PRAGMA quick_check: {problem}); "
                    "refusing to use it. Move it aside (or recover rows with the sqlite3 "
                    "shell's .recover) and start again")
            self._corrupt_detail = problem
            try:
                self.moved_aside = self._move_aside()
            except OSError as exc:
                raise StoreError(f"tracking log {self.path} is malformed ({problem}) and "
                                 f"cannot be moved aside: {exc.strerror}") from None
            marker.unlink(missing_ok=True)
            log.error("tracking log %s is malformed (%s): moved aside to %s; starting a new log",
                      self.path, problem, self.moved_aside)
            db = self._connect(open_timeout_s)
        try:
            if self.readonly:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if not OLDEST_READABLE_SCHEMA <= version <= SCHEMA_VERSION:
                    raise StoreError(f"{self.path} is not a tracking log of schema "
                                     f"{OLDEST_READABLE_SCHEMA}..{SCHEMA_VERSION} "
                                     f"(user_version {version})")
                db.execute(f"PRAGMA busy_timeout={int(open_timeout_s * 1000)}")
                return db
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot switch to WAL journal (got {mode!r}); "
                                 "is it on a network file system?")
            db.execute(f"PRAGMA synchronous={synchronous}")
            db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT_BYTES}")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} was written by a newer version (schema {version}, "
                                 f"this software reads up to {SCHEMA_VERSION}); upgrade it")
            missing = self._missing_tables(db)
            if version < SCHEMA_VERSION or missing:
                if missing and version == SCHEMA_VERSION:
                    log.error("tracking log %s lacks table(s) %s: recreated (empty)", self.path,
                              ", ".join(missing))
                self._create_schema(db)
                if missing and version == SCHEMA_VERSION:
                    db.execute("INSERT INTO events (time_s, kind, source, message, data) "
                               "VALUES (?, ?, ?, ?, ?)",
                               (self._now_s(), "warning", "store",
                                f"table(s) {', '.join(missing)} were missing; recreated empty",
                                _json({"recreated": missing})))
            db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
        except StoreError:
            db.close()
            raise
        except sqlite3.Error as exc:
            db.close()
            raise StoreError(f"cannot open the tracking log {self.path}: {exc} "
                             "(not an SQLite file, locked by another process, or unreadable)"
                             ) from None
        return db

    @staticmethod
    def _missing_tables(db: sqlite3.Connection) -> list[str]:
        have = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return [t for t in ("meta", "samples", "events", "audit") if t not in have]

    @staticmethod
    def _create_schema(db: sqlite3.Connection) -> None:
        """Create missing tables and indexes and add sample columns a log of an older schema
        lacks (NULL in its old rows), idempotent, in one transaction."""
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            _add_missing_sample_columns(db)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.rollback()
            raise

    def _now_s(self) -> float:
        clock = self._clock
        if clock is None:
            return time.time()
        return float(clock() if callable(clock) else clock.now_s())

    # ------------------------------------------------------------------ the backlog
    def _add_record(self, kind: str, statements: tuple[tuple[str, tuple], ...]) -> None:
        """Queue one event/audit/meta record, dropping the least important over the bound."""
        self._seq += 1
        if kind in CRITICAL_KINDS:
            cls = "critical"
            self._critical_kinds[kind] += 1
        elif kind == "command":
            cls = "audit"
        else:
            cls = "note"
        self._records[cls].append((self._seq, kind, statements))
        while self.event_backlog > self.max_event_backlog:
            self._drop_one()

    def _drop_one(self) -> None:
        for cls in ("audit", "note"):
            if self._records[cls]:
                self._records[cls].popleft()
                self.dropped_events[cls] += 1
                return
        crit = self._records["critical"]
        # The oldest state/fault/meta record that is not the latest of its kind.
        for i, (_, kind, _) in enumerate(crit):
            if self._critical_kinds[kind] > 1:
                del crit[i]
                self._critical_kinds[kind] -= 1
                self.dropped_events["critical"] += 1
                return
        _, kind, _ = crit.popleft()                # only the latest of each kind remain
        self._critical_kinds[kind] -= 1
        self.dropped_events["critical"] += 1

    def _next_records(self, n: int) -> list[tuple[str, _Record]]:
        """The next ``n`` pending records in sequence order (not removed)."""
        iters = {cls: iter(q) for cls, q in self._records.items()}
        heads = {cls: next(it, None) for cls, it in iters.items()}
        out: list[tuple[str, _Record]] = []
        while len(out) < n:
            live = [(rec[0], cls) for cls, rec in heads.items() if rec is not None]
            if not live:
                break
            _, cls = min(live)
            rec = heads[cls]
            assert rec is not None
            out.append((cls, rec))
            heads[cls] = next(iters[cls], None)
        return out

    def _remove_records(self, taken: Iterable[tuple[str, _Record]]) -> None:
        for cls, _ in taken:
            _, kind, _ = self._records[cls].popleft()
            if cls == "critical":
                self._critical_kinds[kind] -= 1

    @property
    def event_backlog(self) -> int:
        """Events, audit and metadata records buffered in memory and not yet committed."""
        return sum(len(q) for q in self._records.values())

    def _loss_notes(self, now_s: float) -> list[tuple[str, tuple]]:
        """Warning events for what was dropped or suppressed since the last report."""
        notes = []
        if self._dropped:
            notes.append(("events", (now_s, "warning", "store",
                                     f"{self._dropped} samples lost while the log was "
                                     "unwritable", _json({"dropped_samples": self._dropped}))))
        if self.dropped_events:
            d = dict(self.dropped_events)
            notes.append(("events", (now_s, "warning", "store",
                                     f"{sum(d.values())} events/audit records lost from the "
                                     "full in-memory backlog", _json({"dropped_records": d}))))
        if self.suppressed_refusals:
            d = dict(self.suppressed_refusals)
            notes.append(("events", (now_s, "warning", "store",
                                     f"{sum(d.values())} refused commands over "
                                     f"{self.audit_rate_per_s:g}/s not logged one by one",
                                     _json({"suppressed_refusals": d}))))
        return notes

    def _clear_loss_counters(self) -> None:
        self._dropped = 0
        self.dropped_events.clear()
        self.suppressed_refusals.clear()

    # ------------------------------------------------------------------ writing
    def set_meta(self, **kv: Any) -> None:
        """Record installation metadata (site, config, software version...), JSON-encoded.

        A key whose value changes is overwritten and an ``info`` event keeps the change.
        Never raises on write errors (like ``log_event``).
        """
        now_s = self._now_s()
        with self._lock:
            try:
                old = self.meta()
            except StoreError:
                old = {}
            changed = {k: v for k, v in kv.items() if k in old and old[k] != json.loads(_json(v))}
            for key, value in kv.items():
                self._add_record("meta", (("meta", (key, _json(value), now_s)),))
            if changed:
                self._add_record("info", (("events", (
                    now_s, "info", "store", f"metadata changed: {', '.join(sorted(changed))}",
                    _json({"old": {k: old[k] for k in changed}, "new": changed}))),))
            self._write(now_s)

    def add_sample(self, sample: Sample) -> None:
        """Buffer one sample; commit when ``commit_interval_s`` of sample time has passed."""
        with self._lock:
            if self._closed:
                log.warning("sample at %s after close ignored", sample.time_s)
                return
            try:
                row = _sample_row(sample)
            except (TypeError, ValueError) as exc:
                self.rejected += 1
                log.error("bad sample not logged (%s): %r", exc, sample)
                return
            self._pending.append(row)
            if len(self._pending) > self.max_backlog:
                self._pending.popleft()
                self._dropped += 1
            t = sample.time_s
            interval_s = self.commit_interval_s if self._writable else self._retry_s
            if (self._last_commit_time_s is None
                    or abs(t - self._last_commit_time_s) >= interval_s):
                self._write(t)

    def log_event(self, time_s: float, kind: str, message: str, *, source: str | None = None,
                  data: dict | None = None) -> int:
        """Record an event and commit it at once (with any buffered samples).

        ``kind``: "state", "fault", "command", "warning" or "info" (anything else is stored
        as "info" with the original kind in ``data``).  State events carry
        ``data={"from": ..., "to": ..., "cause": ..., "auto_tracking": bool}``.
        Returns the event id, or -1 if the log is unwritable right now (the event is kept in
        the backlog and written later).
        """
        time_s = self._time_or_now(time_s)
        if kind not in EVENT_KINDS:
            log.warning("unknown event kind %r stored as 'info'", kind)
            data = {**(data or {}), "kind": kind}
            kind = "info"
        row = (time_s, str(kind), None if source is None else str(source), str(message),
               None if data is None else _json(data))
        with self._lock:
            self._add_record(kind, (("events", row),))
            return self._write_and_id(time_s)

    def audit(self, time_s: float, source: str, command: str, args: dict, ok: bool,
              result: str) -> int:
        """Record an operator/API command (accepted or refused).

        Also logs a "command" event so the event stream shows it.  Committed at once while
        under the rate: ``audit_rate_per_s`` (burst ``audit_burst``) per source, ten times
        that for all sources together.  Over it, an accepted command waits for the next
        commit point and a refused one is only counted (one summary ``warning`` event per
        commit).  Returns the audit id, or -1 if it is not committed now (unwritable,
        deferred or counted).
        """
        time_s = self._time_or_now(time_s)
        source, command, result = str(source), str(command), str(result)
        message = f"{command} {'ok' if ok else 'refused'}: {result}"
        with self._lock:
            now_mono = self._monotonic()
            bucket = self._buckets.pop(source, None) or [float(self.audit_burst), now_mono]
            self._buckets[source] = bucket                 # most recent last
            if len(self._buckets) > 4096:
                del self._buckets[next(iter(self._buckets))]
            for b, scale in ((bucket, 1.0), (self._all_bucket, 10.0)):
                b[0] = min(scale * self.audit_burst,
                           b[0] + (now_mono - b[1]) * scale * self.audit_rate_per_s)
                b[1] = now_mono
            within_rate = self._all_bucket[0] >= 1.0 and (ok or bucket[0] >= 1.0)
            if within_rate:
                self._all_bucket[0] -= 1.0
                bucket[0] -= 0.0 if ok else 1.0
            elif not ok:
                self.suppressed_refusals[f"{source} {command}"] += 1
                return -1
            self._add_record("command", (
                ("events", (time_s, "command", source, message,
                            _json({"command": command, "args": args, "ok": bool(ok)}))),
                ("audit", (time_s, source, command, _json(args), int(bool(ok)), result))))
            if not within_rate:
                return -1
            return self._write_and_id(time_s)

    #: The record whose row id ``log_event``/``audit`` return, and that id once committed.
    _want_seq: int = 0
    _want_id: int | None = None
    _rows_written = 0

    def _write_and_id(self, now_s: float) -> int:
        self._want_seq, self._want_id = self._seq, None
        self._write(now_s)
        return -1 if self._want_id is None else self._want_id

    def _time_or_now(self, time_s: Any) -> float:
        try:
            t = float(time_s)
        except (TypeError, ValueError):
            t = math.nan
        if not math.isfinite(t):
            log.error("event time %r is not a finite number: using the clock", time_s)
            t = self._now_s()
        return t

    def _write(self, now_s: float, *, max_rows: int | None = None) -> bool:
        """Write the backlog in transactions of ``_chunk`` rows, up to ``max_rows``
        (default ``max_rows_per_write``).  Never raises; True when nothing is left."""
        if self._closed:
            log.error("tracking log %s is closed: %d samples and %d events not written",
                      self.path, len(self._pending), self.event_backlog)
            self._pending.clear()
            for q in self._records.values():
                q.clear()
            self._critical_kinds.clear()
            return False
        budget = self.max_rows_per_write if max_rows is None else max_rows
        retried_schema = False
        while True:
            try:
                done = self._write_chunks(now_s, budget)
                break
            except sqlite3.Error as exc:
                if (not retried_schema and isinstance(exc, sqlite3.OperationalError)
                        and "no such table" in str(exc)):
                    retried_schema = True
                    try:
                        self._create_schema(self._db)
                        log.error("tracking log %s: %s; table recreated", self.path, exc)
                        self._add_record("warning", (("events", (
                            now_s, "warning", "store", f"{exc}: table recreated (empty)",
                            _json({"error": str(exc)}))),))
                        continue
                    except sqlite3.Error as exc2:
                        exc = exc2
                self._fail(now_s, exc)
                return False
        self._last_commit_time_s = now_s
        if not self._writable:
            self._recover(now_s)                   # queues a warning event
            left = budget - self._rows_written
            if left > 0:
                try:
                    done = self._write_chunks(now_s, left)
                except sqlite3.Error as exc:
                    self._fail(now_s, exc)
                    return False
        if (self._last_checkpoint_s is None
                or abs(now_s - self._last_checkpoint_s) >= self.checkpoint_interval_s):
            self.checkpoint()
            self._last_checkpoint_s = now_s
        done = done and not self._pending and not self.event_backlog
        if done and self._spill_sources:
            self._forget_spill_sources()
        return done

    def _forget_spill_sources(self) -> None:
        """The rows of the imported spill files are safe elsewhere: delete the files."""
        for path in self._spill_sources:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.error("cannot delete the imported spill file %s: %s (delete it, or its "
                          "rows are imported twice)", path, exc.strerror)
                continue
            self.imported.append(path)
            log.warning("imported spill file %s into %s", path, self.path)
        self._spill_sources = []

    def _write_chunks(self, now_s: float, budget: int) -> bool:
        """Commit up to ``budget`` backlog rows, ``_chunk`` per transaction; raises
        sqlite3.Error (what was committed before stays committed and leaves the backlog)."""
        db = self._db
        self._rows_written = 0
        # A commit point makes at most 2 transactions (2 syncs); flush/close make all.
        transactions = 2 if budget <= self.max_rows_per_write else 1 << 62
        while budget > 0 and transactions > 0:
            transactions -= 1
            chunk = self._chunk
            n_samples = min(len(self._pending), chunk, budget)
            records = self._next_records(max(chunk - n_samples, 0)
                                         if n_samples else min(chunk, budget))
            last = n_samples == len(self._pending) and len(records) == self.event_backlog
            notes = self._loss_notes(now_s) if last else []
            if not n_samples and not records and not notes:
                return True
            last_id = want_id = None
            db.execute("BEGIN IMMEDIATE")
            try:
                if n_samples:
                    db.executemany(_INSERT_SAMPLE, islice(self._pending, n_samples))
                for _, (seq, _, statements) in records:
                    for table, row in statements:
                        last_id = db.execute(_INSERT[table], row).lastrowid
                    if seq == self._want_seq:
                        want_id = last_id
                for table, row in notes:
                    db.execute(_INSERT[table], row)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.rollback()
                raise
            for _ in range(n_samples):
                self._pending.popleft()
            if want_id is not None:
                self._want_id = want_id
            self._remove_records(records)
            if notes:
                self._clear_loss_counters()
            self.commits += 1
            budget -= n_samples + len(records)
            self._rows_written += n_samples + len(records)
            if n_samples + len(records) >= chunk:   # a full chunk fitted: grow back
                self._chunk = min(self.max_rows_per_write, 2 * chunk)
            if last:
                return True
        return False

    def checkpoint(self, mode: str = "TRUNCATE", *, quiet: bool = False
                   ) -> tuple[int, int, int] | None:
        """Checkpoint the WAL into the database (``TRUNCATE`` empties the WAL file);
        returns SQLite's (busy, wal pages, checkpointed pages) or None on an error."""
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise StoreError(f"unknown checkpoint mode {mode!r}")
        with self._lock:
            if self._closed or self.readonly:
                return None
            try:
                busy, wal, done = self._db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
            except sqlite3.Error as exc:
                log.log(logging.DEBUG if quiet else logging.WARNING,
                        "WAL checkpoint of %s failed: %s", self.path, exc)
                return None
            return int(busy), int(wal), int(done)

    def _fail(self, now_s: float, exc: Exception) -> None:
        message = f"tracking log {self.path} not writable: {exc}"
        if self._writable or message != self.last_error:
            log.error("%s; %d samples and %d events kept in memory, retrying", message,
                      len(self._pending), self.event_backlog)
        if self._writable:
            self._outage_start_s = now_s
        if "full" in str(exc):      # give the WAL's space back to the file system
            self.checkpoint("TRUNCATE", quiet=True)
            self._chunk = max(self.chunk_rows, self._chunk // 4)   # and retry smaller
        # Retry after a growing interval of sample time (each attempt may wait busy_timeout_s).
        self._retry_s = (max(self.commit_interval_s, 0.5) if self._writable
                         else min(2.0 * self._retry_s, self.max_retry_s))
        self._writable = False
        self.last_error = message
        self._last_commit_time_s = now_s

    def _recover(self, now_s: float) -> None:
        """Healthy again: queue the warning event that records the outage."""
        start = self._outage_start_s if self._outage_start_s is not None else now_s
        n_samples, n_events = len(self._pending), self.event_backlog
        log.warning("tracking log %s writable again after %.1f s (%d samples, %d events "
                    "still to write)", self.path, now_s - start, n_samples, n_events)
        error = self.last_error
        self._writable = True
        self.last_error = None
        self._outage_start_s = None
        rest = ("backlog written" if not n_samples and not n_events else
                f"writing the rest of the backlog ({n_samples} samples, {n_events} events)")
        self._add_record("warning", (("events", (
            now_s, "warning", "store",
            f"tracking log was unwritable for {now_s - start:.1f} s; {rest}",
            _json({"error": error, "since_utc": iso_utc(start), "samples_left": n_samples,
                   "events_left": n_events}))),))

    def flush(self) -> None:
        """Commit everything buffered now (never raises; see ``healthy``)."""
        with self._lock:
            if not self._closed:
                t = self._last_commit_time_s if self._last_commit_time_s is not None else 0.0
                if self._pending:
                    t = max(t, self._pending[-1][0])
                self._write(t, max_rows=1 << 62)

    def close(self) -> None:
        """Flush and close.  Rows still unwritable go to a spill file (see ``spill_path``,
        ``unwritten``), imported by the next writer of this log; an error names them."""
        with self._lock:
            if self._closed:
                return
            self.flush()
            n_samples, n_events = len(self._pending), self.event_backlog
            if n_samples or n_events or self._dropped or self.dropped_events \
                    or self.suppressed_refusals:
                self.unwritten = (n_samples, n_events)
                self.spill_path = self._spill()
                if self.spill_path is not None:     # the imported files' rows are in it
                    self._forget_spill_sources()
                where = (f"kept in the spill file {self.spill_path} (imported by the next "
                         "start)" if self.spill_path is not None
                         else "LOST: no space for a spill file in " + ", ".join(
                             str(d) for d in self._spill_dirs()))
                log.error("closing tracking log %s with %d samples and %d events unwritten "
                          "(%s): %s", self.path, n_samples, n_events, self.last_error, where)
            self._pending.clear()
            for q in self._records.values():
                q.clear()
            self._closed = True
            self._db.close()

    # ------------------------------------------------------------------ spill files
    def _spill_dirs(self) -> list[Path]:
        dirs = [] if self.spill_dir is None else [self.spill_dir]
        tmp = Path(tempfile.gettempdir())
        return dirs + ([tmp] if tmp not in dirs else [])

    def spill_prefix(self) -> str:
        """File-name prefix of this log's spill files (its name and a hash of its path)."""
        digest = hashlib.sha1(str(self.path.resolve()).encode()).hexdigest()[:10]
        return f"helio-tracker-spill-{self.path.name}-{digest}-"

    def _spill_lines(self, with_samples: bool) -> list[str]:
        lines = [json.dumps({"spill_of": str(self.path.resolve()), "time_utc": iso_utc(
            time.time()), "schema": SCHEMA_VERSION, "error": self.last_error})]
        if with_samples:
            lines += [json.dumps({"samples": [None if isinstance(v, float) and math.isnan(v)
                                              else v for v in row]})
                      for row in self._pending]
        lines += [json.dumps({"kind": kind, "rows": [[t, list(r)] for t, r in statements]})
                  for _, (_, kind, statements) in self._next_records(self.event_backlog)]
        lines += [json.dumps({"kind": "warning", "rows": [[t, list(r)]]})
                  for t, r in self._loss_notes(self._now_s())]
        if not with_samples and self._pending:
            n = len(self._pending)
            lines.append(json.dumps({"kind": "warning", "rows": [["events", [
                self._now_s(), "warning", "store", f"{n} samples lost at close: no space for "
                "them in a spill file", _json({"dropped_samples": n})]]]}))
        return lines

    def _spill(self) -> Path | None:
        """Write the backlog as JSON lines to the first spill folder with room; if none has
        room for it all, the events alone.  Returns the file, or None."""
        for with_samples in (True, False):
            text = "\n".join(self._spill_lines(with_samples)) + "\n"
            for folder in self._spill_dirs():
                target = folder / f"{self.spill_prefix()}{utc_stamp()}-{os.getpid()}.jsonl"
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                    with open(target, "x", encoding="utf-8") as f:
                        f.write(text)
                        f.flush()
                        os.fsync(f.fileno())
                    return target
                except OSError as exc:
                    log.error("cannot write spill file %s: %s", target, exc.strerror)
                    try:
                        target.unlink()
                    except OSError:
                        pass
        return None

    def _import_spills(self) -> None:
        """Write the rows of this log's spill files (from a close during an outage) and
        delete each file once its rows are committed."""
        files = sorted({p for d in self._spill_dirs() if d.is_dir()
                        for p in d.glob(self.spill_prefix() + "*.jsonl")})
        for path in files:
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                log.error("cannot read spill file %s: %s", path, exc.strerror)
                continue
            samples, records, bad = [], [], 0
            for line in lines[1:]:
                try:
                    item = json.loads(line)
                    if "samples" in item:
                        row = tuple(math.nan if v is None else v for v in item["samples"])
                        # A spill of an older schema lacks the newer (nullable) columns.
                        samples.append(row + (None,) * (len(SAMPLE_FIELDS) - len(row)))
                    else:
                        records.append((str(item["kind"]), tuple(
                            (str(t), tuple(r)) for t, r in item["rows"]
                            if str(t) in _INSERT)))
                except (ValueError, TypeError, KeyError):
                    bad += 1
            with self._lock:
                self._spill_sources.append(path)
                self._pending.extendleft(reversed(samples))
                for kind, statements in records:
                    self._add_record(kind, statements)
                now_s = self._now_s()
                self._add_record("warning", (("events", (
                    now_s, "warning", "store",
                    f"imported {len(samples)} samples and {len(records)} events from the "
                    f"spill file {path} written at close during an outage"
                    + (f" ({bad} unreadable lines skipped)" if bad else ""),
                    _json({"spill_file": str(path), "samples": len(samples),
                           "events": len(records), "bad_lines": bad}))),))
                if not self._write(now_s, max_rows=1 << 62):
                    log.error("spill file %s not imported yet (%s): its rows wait in memory "
                              "with the rest of the backlog; the file is deleted once they "
                              "are written", path, self.last_error)

    def __enter__(self) -> TrackingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def backlog(self) -> int:
        """Samples buffered in memory and not yet committed."""
        return len(self._pending)

    # ------------------------------------------------------------------ reading
    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            if self._closed:
                raise StoreError(f"tracking log {self.path} is closed")
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the tracking log {self.path}: {exc}") from None

    def meta(self) -> dict[str, Any]:
        """Metadata as set by ``set_meta`` (committed values only)."""
        return {k: loads_or_flag(v) for k, v in self._query("SELECT key, value FROM meta")}

    def events(self, *, limit: int = 100, after_id: int = 0, kinds: Any = None,
               t0_s: float | None = None, t1_s: float | None = None) -> list[dict]:
        """Committed events with id > ``after_id``, oldest first, at most ``limit``.

        With ``after_id`` 0 and no time range, the *latest* ``limit`` events (still oldest
        first).  Each: ``{"id", "time_s", "time_utc", "kind", "source", "message", "data"}``.
        """
        where, args = ["id > ?"], [int(after_id)]
        if kinds:
            kinds = [kinds] if isinstance(kinds, str) else list(kinds)
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            args += kinds
        if t0_s is not None:
            where.append("time_s >= ?")
            args.append(float(t0_s))
        if t1_s is not None:
            where.append("time_s < ?")
            args.append(float(t1_s))
        newest = after_id == 0 and t0_s is None and t1_s is None
        sql = (f"SELECT id, time_s, kind, source, message, data FROM events "
               f"WHERE {' AND '.join(where)} ORDER BY id {'DESC' if newest else 'ASC'} LIMIT ?")
        rows = self._query(sql, (*args, int(limit)))
        if newest:
            rows.reverse()
        out = []
        for r in rows:
            data = loads_or_flag(r[5])
            ev = {"id": r[0], "time_s": r[1], "time_utc": iso_utc(r[1]), "kind": r[2],
                  "source": r[3], "message": r[4], "data": data}
            if _invalid(data):
                log.error("tracking log %s: event %s has data that is not JSON: %.80r",
                          self.path, r[0], r[5])
            out.append(ev)
        return out

    def audit_records(self, *, limit: int = 100, after_id: int = 0) -> list[dict]:
        """Committed audit records with id > ``after_id``, oldest first."""
        rows = self._query("SELECT id, time_s, source, command, args, ok, result FROM audit "
                           "WHERE id > ? ORDER BY id LIMIT ?", (int(after_id), int(limit)))
        return [{"id": r[0], "time_s": r[1], "time_utc": iso_utc(r[1]), "source": r[2],
                 "command": r[3], "args": loads_or_flag(r[4]), "ok": bool(r[5]),
                 "result": r[6]} for r in rows]

    def state_at(self, t_s: float) -> dict | None:
        """The latest "state" event strictly before ``t_s`` (as in ``events``), or None."""
        rows = self._query("SELECT id FROM events WHERE kind = 'state' AND time_s < ? "
                           "ORDER BY time_s DESC, id DESC LIMIT 1", (float(t_s),))
        if not rows:
            return None
        return self.events(after_id=rows[0][0] - 1, limit=1)[0]

    def last_time_s(self) -> float | None:
        """Time of the latest committed sample or event, or None for an empty log."""
        (a,), = self._query("SELECT MAX(time_s) FROM samples")
        (b,), = self._query("SELECT MAX(time_s) FROM events")
        vals = [v for v in (a, b) if v is not None]
        return max(vals) if vals else None

    def last_state(self) -> dict | None:
        """The latest "state" event, for resuming after a restart, or None.

        ``{"id", "time_s", "time_utc", "state", "from", "cause", "auto_tracking",
        "wind_stowed", "data"}``; ``state`` is ``data["to"]`` (or ``data["state"]``);
        ``auto_tracking`` and ``wind_stowed`` are the latest values recorded in any event's
        ``data`` (None if never recorded).
        """
        rows = self._query("SELECT id, time_s, message, data FROM events WHERE kind = 'state' "
                           "ORDER BY id DESC LIMIT 1")
        if not rows:
            return None
        ev_id, t_s, message, raw = rows[0]
        raw_data = loads_or_flag(raw)
        data = _as_dict(raw_data)
        state = data.get("to", data.get("state"))
        if not isinstance(state, str):
            state = None
        if state is None:   # fall back to "a -> b: cause" messages
            tail = message.split("->", 1)[-1]
            state = tail.split(":", 1)[0].strip() or None
        return {"id": ev_id, "time_s": t_s, "time_utc": iso_utc(t_s), "state": state,
                "from": data.get("from"), "cause": data.get("cause"),
                "auto_tracking": self._latest_flag("auto_tracking"),
                "wind_stowed": self._latest_flag("wind_stowed"),
                "data": {} if raw_data is None else raw_data}

    def _latest_flag(self, key: str) -> Any:
        """The value of ``key`` in the latest event whose data has it (None if none)."""
        for (raw,) in self._query("SELECT data FROM events WHERE data LIKE ? "
                                  "ORDER BY id DESC LIMIT 1", (f'%"{key}"%',)):
            return _as_dict(loads_or_flag(raw)).get(key)
        return None

    def samples(self, t0_s: float, t1_s: float, *, columns: tuple[str, ...] | None = None
                ) -> np.ndarray:
        """Committed samples with ``t0_s <= time_s < t1_s``, in time order, as a numpy
        structured array of ``SAMPLE_DTYPE`` (or of the named ``columns``)."""
        cols = SAMPLE_FIELDS if columns is None else tuple(columns)
        unknown = [c for c in cols if c not in SAMPLE_FIELDS]
        if unknown:
            raise StoreError(f"unknown sample columns {unknown}; known: {list(SAMPLE_FIELDS)}")
        if self._have_columns is None:
            self._have_columns = {r[1] for r in self._query("PRAGMA table_info(samples)")}
        # Columns an older log lacks read as NULL (NaN, or None for text).
        select = [c if c in self._have_columns else f"NULL AS {c}" for c in cols]
        rows = self._query(f"SELECT {', '.join(select)} FROM samples WHERE time_s >= ? AND "
                           f"time_s < ? ORDER BY time_s, id", (float(t0_s), float(t1_s)))
        dtype = np.dtype([(c, SAMPLE_DTYPE[c]) for c in cols])
        return np.array(rows, dtype=dtype) if rows else np.zeros(0, dtype=dtype)

    def time_range(self) -> tuple[float, float] | None:
        """(start of the first, end of the last) committed sample interval, or None when
        there are no samples."""
        (lo, hi), = self._query("SELECT MIN(time_s - dt_s), MAX(time_s) FROM samples")
        return None if lo is None else (lo, hi)

    def exposure(self, t0_s: float, t1_s: float, *, settle_s: float = 30.0,
                 intervals: bool = False, per_day: bool = False,
                 chunk_s: float = 21600.0,
                 site: tuple[float, float, float] | None = None) -> dict:
        """Exposure and pointing statistics over ``[t0_s, t1_s)``; see ``tracker.log.exposure``.

        ``intervals``: add the exposure intervals.  ``per_day``: add ``"days"``, the same
        statistics (without intervals) for each UTC day overlapping the range, clipped to it,
        from the same single read.  Rows are read in chunks of ``chunk_s`` so a year does not
        need a year in memory.
        """
        from tracker.log.exposure import ExposureAccumulator

        t0_s, t1_s = float(t0_s), float(t1_s)
        acc = ExposureAccumulator(t0_s, t1_s, settle_s=settle_s, intervals=intervals, site=site)
        # A margin before t0 lets a tracking stretch that began earlier be recognised as
        # settled; rows end at time_s, so rows after t1 + margin cannot overlap the range.
        margin_s = max(60.0, settle_s + 30.0)
        days: list[tuple[float, float, ExposureAccumulator]] = []
        if per_day:
            d = math.floor(t0_s / 86400.0) * 86400.0
            while d < t1_s:
                days.append((d - margin_s, d + 86400.0 + margin_s,
                             ExposureAccumulator(max(d, t0_s), min(d + 86400.0, t1_s),
                                                 settle_s=settle_s)))
                d += 86400.0
        columns = _STATS_COLUMNS + (_INTERVAL_COLUMNS if intervals else ())
        lo = t0_s - margin_s
        while lo < t1_s + margin_s:
            hi = min(lo + chunk_s, t1_s + margin_s)
            rows = self.samples(lo, hi, columns=columns)
            acc.feed(rows)
            for a, b, day_acc in days:
                if a < hi and b > lo and rows.size:
                    t = rows["time_s"]
                    day_acc.feed(rows[(t >= a) & (t < b)])
            lo = hi
        out = acc.result()
        if per_day:
            out["days"] = [day_acc.result() for _, _, day_acc in days]
        return out
