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
in a bounded in-memory backlog (oldest samples dropped first, counted), ``healthy`` turns
False with ``last_error`` set, and every later commit point retries; once a write succeeds the
backlog is written in order and a ``warning`` event records the outage.

Times are UTC unix seconds; angles degrees (azimuth from north through east, elevation up
positive); errors arc-seconds.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from tracker.errors import TrackerError
from tracker.timefmt import iso_utc

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
EVENT_KINDS = ("state", "fault", "command", "warning", "info")


class StoreError(TrackerError):
    """The tracking log cannot be opened or read (not a database, newer schema, locked...)."""


@dataclass(slots=True)
class Sample:
    """One logged interval, ``(time_s - dt_s, time_s]``.

    ``target_*`` is the sky direction wanted (the geometric Sun while tracking), ``measured_*``
    the sky direction of the boresight from the encoders, ``axis_*`` the raw axis positions.
    ``error_arcsec`` is the great-circle angle target<->measured at ``time_s``,
    ``error_max_arcsec`` its maximum over the interval, ``on_sun_s`` the seconds of the
    interval spent within the on-Sun tolerance while tracking.
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


SAMPLE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Sample))
_TEXT_FIELDS = ("state", "boresight")
#: NaN angles/errors are stored as NULL (SQLite has no NaN) and read back as NaN.
_NOT_NULL = {"time_s": " NOT NULL", "dt_s": " NOT NULL", "state": " NOT NULL",
             "boresight": " NOT NULL"}
#: numpy dtype of ``TrackingStore.samples``; strings as fixed-width unicode.
SAMPLE_DTYPE = np.dtype([(name, "U32" if name in _TEXT_FIELDS else "f8")
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
                  "on_sun_s")
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
           float(s.error_arcsec), float(s.error_max_arcsec), float(s.on_sun_s))
    if not (math.isfinite(row[0]) and math.isfinite(row[1]) and row[1] >= 0):
        raise ValueError(f"time_s {row[0]!r} and dt_s {row[1]!r} must be finite, dt_s >= 0")
    return row


def _json(value: Any) -> str:
    try:
        return json.dumps(value, default=str, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError):      # e.g. keys of mixed types: keep it readable
        return json.dumps(repr(value))


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
    file cannot be written (oldest dropped first).  While unhealthy, ``add_sample`` retries
    after 0.5, 1, 2 ... up to ``max_retry_s`` (10) seconds of sample time; events, audit
    records and ``flush()`` retry at once.
    """

    def __init__(self, path: str | Path, *, commit_interval_s: float = 1.0, clock: Any = None,
                 synchronous: str = "FULL", busy_timeout_s: float = 0.05,
                 max_backlog: int = 100_000, open_timeout_s: float = 5.0,
                 readonly: bool = False) -> None:
        if not commit_interval_s >= 0:
            raise StoreError(f"commit_interval_s must be >= 0, got {commit_interval_s!r}")
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise StoreError(f"synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}")
        self.path = Path(path).expanduser()
        self.readonly = bool(readonly)
        self.commit_interval_s = float(commit_interval_s)
        self.busy_timeout_s = float(busy_timeout_s)
        self.max_backlog = int(max_backlog)
        self._clock = clock
        self._lock = threading.RLock()
        self._pending: deque[tuple] = deque()
        self._pending_events: deque[tuple] = deque()   # (table, row tuple)
        self._dropped = 0
        self._last_commit_time_s: float | None = None
        self._outage_start_s: float | None = None
        self._closed = False
        self._retry_s = self.commit_interval_s
        self.max_retry_s = 10.0
        self.healthy = True
        self.last_error: str | None = None
        self.commits = 0
        self.rejected = 0
        if self.readonly and not self.path.is_file():
            raise StoreError(f"no tracking log at {self.path} (give --db FILE, or the config "
                             "whose store.path names it)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of the tracking log {self.path}: "
                             f"{exc.strerror}") from None
        self._db = self._open(synchronous.upper(), open_timeout_s)

    # ------------------------------------------------------------------ opening
    def _open(self, synchronous: str, open_timeout_s: float) -> sqlite3.Connection:
        try:
            target = (self.path.resolve().as_uri() + "?mode=ro" if self.readonly
                      else str(self.path))
            db = sqlite3.connect(target, timeout=open_timeout_s, isolation_level=None,
                                 check_same_thread=False, uri=self.readonly)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the tracking log {self.path}: {exc}") from None
        try:
            if self.readonly:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version != SCHEMA_VERSION:
                    raise StoreError(f"{self.path} is not a tracking log of schema "
                                     f"{SCHEMA_VERSION} (user_version {version})")
                db.execute(f"PRAGMA busy_timeout={int(open_timeout_s * 1000)}")
                return db
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot switch to WAL journal (got {mode!r}); "
                                 "is it on a network file system?")
            db.execute(f"PRAGMA synchronous={synchronous}")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} was written by a newer version (schema {version}, "
                                 f"this software reads up to {SCHEMA_VERSION}); upgrade it")
            if version < SCHEMA_VERSION:
                db.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                db.execute("COMMIT")
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

    def _now_s(self) -> float:
        clock = self._clock
        if clock is None:
            return time.time()
        return float(clock() if callable(clock) else clock.now_s())

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
                self._pending_events.append(
                    ("INSERT OR REPLACE INTO meta (key, value, time_s) VALUES (?, ?, ?)",
                     (key, _json(value), now_s)))
            if changed:
                self._pending_events.append(
                    ("INSERT INTO events (time_s, kind, source, message, data) "
                     "VALUES (?, ?, ?, ?, ?)",
                     (now_s, "info", "store", f"metadata changed: {', '.join(sorted(changed))}",
                      _json({"old": {k: old[k] for k in changed}, "new": changed}))))
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
            interval_s = self.commit_interval_s if self.healthy else self._retry_s
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
            self._pending_events.append(
                ("INSERT INTO events (time_s, kind, source, message, data) VALUES (?, ?, ?, ?, ?)",
                 row))
            ok = self._write(time_s)
            if ok and self._last_event_id is not None:
                return self._last_event_id
            return -1

    def audit(self, time_s: float, source: str, command: str, args: dict, ok: bool,
              result: str) -> int:
        """Record an operator/API command (accepted or refused) and commit it at once.

        Also logs a "command" event so the event stream shows it.  Returns the audit id, or
        -1 if the log is unwritable right now (kept in the backlog).
        """
        time_s = self._time_or_now(time_s)
        source, command, result = str(source), str(command), str(result)
        message = f"{command} {'ok' if ok else 'refused'}: {result}"
        with self._lock:
            self._pending_events.append(
                ("INSERT INTO events (time_s, kind, source, message, data) VALUES (?, ?, ?, ?, ?)",
                 (time_s, "command", source, message,
                  _json({"command": command, "args": args, "ok": bool(ok)}))))
            self._pending_events.append(
                ("INSERT INTO audit (time_s, source, command, args, ok, result, event_id) "
                 "VALUES (?, ?, ?, ?, ?, ?, last_insert_rowid())",
                 (time_s, source, command, _json(args), int(bool(ok)), str(result))))
            done = self._write(time_s)
            if done and self._last_event_id is not None:
                return self._last_event_id
            return -1

    _last_event_id: int | None = None

    def _time_or_now(self, time_s: Any) -> float:
        try:
            t = float(time_s)
        except (TypeError, ValueError):
            t = math.nan
        if not math.isfinite(t):
            log.error("event time %r is not a finite number: using the clock", time_s)
            t = self._now_s()
        return t

    def _write(self, now_s: float) -> bool:
        """Write the backlog in one transaction.  Never raises; returns success."""
        if self._closed:
            log.error("tracking log %s is closed: %d samples and %d events not written",
                      self.path, len(self._pending), len(self._pending_events))
            self._pending.clear()
            self._pending_events.clear()
            return False
        if not self._pending and not self._pending_events:
            self._last_commit_time_s = now_s
            return True
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                if self._pending:
                    db.executemany(_INSERT_SAMPLE, self._pending)
                last_id = None
                for sql, row in self._pending_events:
                    last_id = db.execute(sql, row).lastrowid
                if self._dropped:
                    db.execute("INSERT INTO events (time_s, kind, source, message, data) "
                               "VALUES (?, ?, ?, ?, ?)",
                               (now_s, "warning", "store",
                                f"{self._dropped} samples lost while the log was unwritable",
                                _json({"dropped_samples": self._dropped})))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.rollback()
                raise
        except sqlite3.Error as exc:
            self._fail(now_s, exc)
            return False
        self._pending.clear()
        self._pending_events.clear()
        self._dropped = 0
        self._last_commit_time_s = now_s
        self.commits += 1
        if not self.healthy:
            self._recover(now_s)
        self._last_event_id = last_id
        return True

    def _fail(self, now_s: float, exc: Exception) -> None:
        message = f"tracking log {self.path} not writable: {exc}"
        if self.healthy or message != self.last_error:
            log.error("%s; %d samples and %d events kept in memory, retrying", message,
                      len(self._pending), len(self._pending_events))
        if self.healthy:
            self._outage_start_s = now_s
        # Retry after a growing interval of sample time (each attempt may wait busy_timeout_s).
        self._retry_s = (max(self.commit_interval_s, 0.5) if self.healthy
                         else min(2.0 * self._retry_s, self.max_retry_s))
        self.healthy = False
        self.last_error = message
        self._last_commit_time_s = now_s

    def _recover(self, now_s: float) -> None:
        start = self._outage_start_s if self._outage_start_s is not None else now_s
        log.warning("tracking log %s writable again after %.1f s", self.path, now_s - start)
        error = self.last_error
        self.healthy = True
        self.last_error = None
        self._outage_start_s = None
        self._pending_events.append(
            ("INSERT INTO events (time_s, kind, source, message, data) VALUES (?, ?, ?, ?, ?)",
             (now_s, "warning", "store",
              f"tracking log was unwritable for {now_s - start:.1f} s; backlog written",
              _json({"error": error, "since_utc": iso_utc(start)}))))
        self._write(now_s)

    def flush(self) -> None:
        """Commit everything buffered now (never raises; see ``healthy``)."""
        with self._lock:
            if not self._closed:
                t = self._last_commit_time_s if self._last_commit_time_s is not None else 0.0
                if self._pending:
                    t = max(t, self._pending[-1][0])
                self._write(t)

    def close(self) -> None:
        """Flush and close.  Rows still unwritable are lost (and logged)."""
        with self._lock:
            if self._closed:
                return
            self.flush()
            if self._pending or self._pending_events:
                log.error("closing tracking log %s with %d samples and %d events unwritten: %s",
                          self.path, len(self._pending), len(self._pending_events),
                          self.last_error)
            self._closed = True
            self._db.close()

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
        return {k: json.loads(v) for k, v in self._query("SELECT key, value FROM meta")}

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
        return [{"id": r[0], "time_s": r[1], "time_utc": iso_utc(r[1]), "kind": r[2],
                 "source": r[3], "message": r[4],
                 "data": None if r[5] is None else json.loads(r[5])} for r in rows]

    def audit_records(self, *, limit: int = 100, after_id: int = 0) -> list[dict]:
        """Committed audit records with id > ``after_id``, oldest first."""
        rows = self._query("SELECT id, time_s, source, command, args, ok, result FROM audit "
                           "WHERE id > ? ORDER BY id LIMIT ?", (int(after_id), int(limit)))
        return [{"id": r[0], "time_s": r[1], "time_utc": iso_utc(r[1]), "source": r[2],
                 "command": r[3], "args": json.loads(r[4]), "ok": bool(r[5]),
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

        ``{"id", "time_s", "time_utc", "state", "from", "cause", "auto_tracking", "data"}``;
        ``state`` is ``data["to"]`` (or ``data["state"]``), ``auto_tracking`` is the latest
        value recorded in any event's ``data`` (None if never recorded).
        """
        rows = self._query("SELECT id, time_s, message, data FROM events WHERE kind = 'state' "
                           "ORDER BY id DESC LIMIT 1")
        if not rows:
            return None
        ev_id, t_s, message, raw = rows[0]
        data = json.loads(raw) if raw else {}
        state = data.get("to", data.get("state"))
        if state is None:   # fall back to "a -> b: cause" messages
            tail = message.split("->", 1)[-1]
            state = tail.split(":", 1)[0].strip() or None
        auto = None
        for (raw_d,) in self._query("SELECT data FROM events WHERE data LIKE "
                                    "'%\"auto_tracking\"%' ORDER BY id DESC LIMIT 1"):
            auto = json.loads(raw_d).get("auto_tracking")
        return {"id": ev_id, "time_s": t_s, "time_utc": iso_utc(t_s), "state": state,
                "from": data.get("from"), "cause": data.get("cause"),
                "auto_tracking": auto, "data": data}

    def samples(self, t0_s: float, t1_s: float, *, columns: tuple[str, ...] | None = None
                ) -> np.ndarray:
        """Committed samples with ``t0_s <= time_s < t1_s``, in time order, as a numpy
        structured array of ``SAMPLE_DTYPE`` (or of the named ``columns``)."""
        cols = SAMPLE_FIELDS if columns is None else tuple(columns)
        unknown = [c for c in cols if c not in SAMPLE_FIELDS]
        if unknown:
            raise StoreError(f"unknown sample columns {unknown}; known: {list(SAMPLE_FIELDS)}")
        rows = self._query(f"SELECT {', '.join(cols)} FROM samples WHERE time_s >= ? AND "
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
                 chunk_s: float = 21600.0) -> dict:
        """Exposure and pointing statistics over ``[t0_s, t1_s)``; see ``tracker.log.exposure``.

        ``intervals``: add the exposure intervals.  ``per_day``: add ``"days"``, the same
        statistics (without intervals) for each UTC day overlapping the range, clipped to it,
        from the same single read.  Rows are read in chunks of ``chunk_s`` so a year does not
        need a year in memory.
        """
        from tracker.log.exposure import ExposureAccumulator

        t0_s, t1_s = float(t0_s), float(t1_s)
        acc = ExposureAccumulator(t0_s, t1_s, settle_s=settle_s, intervals=intervals)
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
