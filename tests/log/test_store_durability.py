"""The tracking log under a full disk and with a corrupt file.

Real SQLite files throughout.  The full disk is a real 2 MiB tmpfs when we may mount one
(root), else SQLite's own ``max_page_count`` (a real SQLITE_FULL).  The corrupt file is a
real log with a b-tree page overwritten; ``PRAGMA integrity_check`` of SQLite itself confirms
the damage before the store sees it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support.records import T0_S, sample
from tracker.log.report import build_report, state_time_from_events
from tracker.log.store import (
    JOURNAL_SIZE_LIMIT_BYTES,
    WAL_AUTOCHECKPOINT_PAGES,
    StoreError,
    TrackingStore,
)


def rows(path: Path, table: str = "samples") -> int:
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def wal_bytes(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


@pytest.fixture
def tmp_tempdir(tmp_path, monkeypatch):
    """The system temporary folder, for the spill fallback, inside this test's folder."""
    d = tmp_path / "systmp"
    d.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(d))
    return d


# ---------------------------------------------------------------------------- the WAL
def test_wal_is_checkpointed_and_kept_small(tmp_path):
    """SQLite's default (1000 pages) let the WAL reach ~4 MB; ours stays near 64 pages."""
    path = tmp_path / "t.sqlite"
    s = TrackingStore(path, commit_interval_s=0.0, synchronous="NORMAL")  # the WAL is the same
    db = s._db
    assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_AUTOCHECKPOINT_PAGES
    assert db.execute("PRAGMA journal_size_limit").fetchone()[0] == JOURNAL_SIZE_LIMIT_BYTES
    page = db.execute("PRAGMA page_size").fetchone()[0]
    biggest = 0
    for i in range(1000):                      # 1000 commits of one row: >= 1000 WAL frames
        s.add_sample(sample(T0_S + i))
        biggest = max(biggest, wal_bytes(path))
    assert s.healthy and rows(path) == 1000
    # at most the checkpoint threshold plus one transaction's frames
    assert biggest <= (WAL_AUTOCHECKPOINT_PAGES + 8) * (page + 24), biggest
    # the periodic TRUNCATE checkpoint (every 60 s of log time) empties it
    s.add_sample(sample(T0_S + 1100))
    assert wal_bytes(path) == 0
    assert s.checkpoint("PASSIVE") == (0, 0, 0)
    with pytest.raises(StoreError, match="unknown checkpoint mode"):
        s.checkpoint("NOW")
    s.close()


# ---------------------------------------------------------------------------- the backlog
def test_event_backlog_bounded_oldest_audits_first_latest_state_and_fault_kept(tmp_path):
    s = TrackingStore(tmp_path / "t.sqlite", max_event_backlog=20, busy_timeout_s=0.01,
                      audit_rate_per_s=1e6, audit_burst=10_000)
    s.add_sample(sample(T0_S))
    blocker = sqlite3.connect(s.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")                     # the file cannot be written
    t = T0_S + 1
    assert s.log_event(t, "state", "idle -> tracking", data={"from": "idle", "to": "tracking"}) \
        == -1
    assert s.log_event(t + 1, "fault", "azimuth drive trip") == -1
    for i in range(100):                                   # a flood of refusals and notes
        s.audit(t + 2 + i, "api:127.0.0.1", "goto", {"i": i}, False, "no token")
        s.log_event(t + 2 + i, "info", f"note {i}")
    assert s.log_event(t + 200, "state", "tracking -> fault",
                       data={"from": "tracking", "to": "fault"}) == -1
    for i in range(30):                                    # only state events now
        s.log_event(t + 201 + i, "state", f"x{i}", data={"to": "idle"})
    assert s.event_backlog == 20
    assert not s.healthy and "locked" in s.last_error
    dropped = dict(s.dropped_events)
    assert dropped["audit"] == 100 and dropped["note"] == 100 and dropped["critical"] == 13
    blocker.execute("COMMIT")
    blocker.close()
    s.flush()
    assert s.healthy and s.event_backlog == 0
    evs = s.events(limit=1000)
    kinds = [e["kind"] for e in evs]
    assert "command" not in kinds and "info" not in kinds
    # the latest fault is never dropped, nor the latest state
    assert [e["message"] for e in evs if e["kind"] == "fault"] == ["azimuth drive trip"]
    states = [e["message"] for e in evs if e["kind"] == "state"]
    assert states[-1] == "x29" and len(states) == 19
    assert s.last_state()["state"] == "idle"
    loss = [e for e in evs if e["kind"] == "warning" and "dropped_records" in (e["data"] or {})]
    assert loss[0]["data"]["dropped_records"] == {"audit": 100, "note": 100, "critical": 13}
    assert s.audit_records() == []
    s.close()


def test_refusals_over_the_rate_are_counted_not_stored_accepted_ones_deferred(tmp_path):
    """Per source 1/s, burst 5; all sources together 10/s, burst 50 (on an injected
    monotonic clock, so the counts are exact)."""
    now = [100.0]
    s = TrackingStore(tmp_path / "t.sqlite", audit_rate_per_s=1.0, audit_burst=5,
                      monotonic=lambda: now[0])
    ids = [s.audit(T0_S + i * 1e-3, "api:127.0.0.1", "goto", {}, False, "no token")
           for i in range(300)]
    assert [i > 0 for i in ids] == [True] * 5 + [False] * 295
    assert s.suppressed_refusals == {"api:127.0.0.1 goto": 295}
    # other sources have buckets of their own, up to the bound of all sources (50)
    ids = [s.audit(T0_S + 1, f"api:127.0.1.{k}", "goto", {}, False, "no token")
           for k in range(60)]
    assert [i > 0 for i in ids] == [True] * 45 + [False] * 15
    # the bound of all sources reached: an accepted command waits for the next commit
    assert s.audit(T0_S + 2, "cli", "stop", {}, True, "accepted") == -1
    assert rows(s.path, "audit") == 50
    now[0] += 1.0                      # 1 s later: 1 token for the source, 10 for all
    assert s.audit(T0_S + 3, "api:127.0.0.1", "goto", {}, False, "no token") > 0
    assert s.audit(T0_S + 3, "api:127.0.0.1", "goto", {}, False, "no token") == -1
    s.flush()
    recs = s.audit_records(limit=1000)
    assert len(recs) == 52
    assert [(r["command"], r["ok"]) for r in recs[-2:]] == [("stop", True), ("goto", False)]
    # counted refusals are reported with the next commit, each counted once
    notes = [e for e in s.events(limit=1000) if e["kind"] == "warning"]
    assert notes[0]["message"] == "295 refused commands over 1/s not logged one by one"
    assert notes[-1]["data"]["suppressed_refusals"] == {"api:127.0.0.1 goto": 1}
    assert sum(sum(n["data"]["suppressed_refusals"].values()) for n in notes) == 311
    s.close()


def _fill_with_max_page_count(s: TrackingStore, start: int) -> int:
    pages = s._db.execute("PRAGMA page_count").fetchone()[0]
    s._db.execute(f"PRAGMA max_page_count={pages + 1}")
    n = start
    while s.healthy and n < start + 20000:
        n += 1
        s.add_sample(sample(T0_S + n))
    assert not s.healthy and "full" in s.last_error
    return n


def test_backlog_written_in_chunks_when_only_a_little_space_returns(tmp_path):
    """One transaction for the whole backlog needs more room than was freed; chunks of 100
    rows make progress with what there is."""
    s = TrackingStore(tmp_path / "t.sqlite", commit_interval_s=0.0, chunk_rows=100)
    s.add_sample(sample(T0_S))
    n = _fill_with_max_page_count(s, 0)
    for i in range(n + 1, n + 3000):
        s.add_sample(sample(T0_S + i))
    backlog = s.backlog
    assert backlog > 2900
    committed = rows(s.path)
    pages = s._db.execute("PRAGMA page_count").fetchone()[0]
    s._db.execute(f"PRAGMA max_page_count={pages + 4}")   # a little room: ~400 rows
    s.flush()
    assert not s.healthy                                   # still more than fits...
    gained = rows(s.path) - committed
    assert gained >= 100 and gained % 100 == 0             # ...but whole chunks got in
    assert s.backlog == backlog - gained
    s._db.execute("PRAGMA max_page_count=1073741823")
    s.flush()
    assert s.healthy and s.backlog == 0 and rows(s.path) == n + 2999 + 1 - 0
    s.close()


def test_one_commit_point_writes_a_bounded_number_of_rows(tmp_path):
    s = TrackingStore(tmp_path / "t.sqlite", commit_interval_s=1.0, max_rows_per_write=500)
    s.add_sample(sample(T0_S))
    n = _fill_with_max_page_count(s, 0)
    for i in range(n + 1, n + 2001):
        s.add_sample(sample(T0_S + i * 0.001))             # < retry interval: buffered
    s._db.execute("PRAGMA max_page_count=1073741823")
    before = s.backlog
    s.add_sample(sample(T0_S + n + 100))                   # a commit point
    assert s.healthy and s.backlog == before + 1 - 500     # the rest at the next ones
    s.add_sample(sample(T0_S + n + 102))
    assert s.backlog == before + 2 - 1000
    s.close()
    assert rows(s.path) == n + 1 + 2000 + 2


def test_close_during_outage_spills_and_next_start_imports(tmp_path, tmp_tempdir, caplog):
    spill = tmp_path / "spill"
    path = tmp_path / "t.sqlite"
    s = TrackingStore(path, spill_dir=spill)
    s.add_sample(sample(T0_S))
    n = _fill_with_max_page_count(s, 0)
    s.log_event(T0_S + n, "fault", "e-stop pressed", data={"to": "fault"})
    s.audit(T0_S + n, "cli", "reset", {}, False, "e-stop still pressed")
    unwritten = s.backlog
    with caplog.at_level(logging.ERROR, logger="tracker.log.store"):
        s.close()
    assert s.unwritten == (unwritten, 2)       # the fault; the command event with its audit
    (f,) = spill.glob("*.jsonl")
    assert s.spill_path == f
    msg = [r.getMessage() for r in caplog.records if "closing tracking log" in r.getMessage()]
    assert f"{unwritten} samples and 2 events unwritten" in msg[0] and str(f) in msg[0]
    lines = f.read_text().splitlines()
    assert json.loads(lines[0])["spill_of"] == str(path.resolve())
    assert len(lines) == 1 + unwritten + 2                 # header, samples, 2 records
    committed = rows(path)
    assert committed + unwritten == n + 1
    s2 = TrackingStore(path, spill_dir=spill)              # space is back: import
    assert s2.imported == [f] and not f.exists()
    assert rows(path) == n + 1
    assert s2.samples(T0_S, T0_S + 1e6)["time_s"].tolist() == [T0_S + i for i in range(n + 1)]
    evs = s2.events()
    assert [e["message"] for e in evs if e["kind"] == "fault"] == ["e-stop pressed"]
    assert s2.audit_records()[0]["result"] == "e-stop still pressed"
    assert any("imported" in e["message"] and str(f) in e["message"] for e in evs)
    s2.close()
    assert list(tmp_tempdir.iterdir()) == []


def test_spill_falls_back_to_the_system_temp_folder(tmp_path, tmp_tempdir):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the spill folder should be")
    s = TrackingStore(tmp_path / "t.sqlite", spill_dir=blocked)
    s.add_sample(sample(T0_S))
    _fill_with_max_page_count(s, 0)
    s.close()
    assert s.spill_path is not None and s.spill_path.parent == tmp_tempdir
    with TrackingStore(tmp_path / "t.sqlite", spill_dir=blocked) as s2:
        assert s2.imported == [s.spill_path]


# ---------------------------------------------------------------------------- real tmpfs
@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a 2 MiB tmpfs needs root (the max_page_count tests cover the "
                    "logic without it)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"mount -t tmpfs not permitted here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path) -> Path:
    filler = mnt / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def test_full_2mib_tmpfs_outage_catch_up_and_spill(small_fs, tmp_path, tmp_tempdir):
    """10 Hz samples on a 2 MiB file system: the WAL never fills it, the backlog lands
    after space returns, and a close during a second outage leaves a spill file."""
    path = small_fs / "log.sqlite"
    spill = tmp_path / "spill"                             # another file system
    s = TrackingStore(path, spill_dir=spill, audit_rate_per_s=5.0, audit_burst=5)
    t = T0_S
    biggest_wal = 0
    for _ in range(3000):                                  # 300 s of 10 Hz samples
        t += 0.1
        s.add_sample(sample(t, dt_s=0.1))
        biggest_wal = max(biggest_wal, wal_bytes(path))
    assert s.healthy and biggest_wal < 600_000, biggest_wal
    filler = _fill(small_fs)
    written_before = None
    for i in range(1500):                                  # 150 s of outage
        t += 0.1
        s.add_sample(sample(t, dt_s=0.1))
        if i % 10 == 0:
            s.audit(t, "alpaca:127.0.0.1", "connected", {}, False, "no token")
        if not s.healthy and written_before is None:
            written_before = rows(path)
    assert not s.healthy and ("full" in s.last_error or "I/O" in s.last_error)
    assert s.log_event(t, "fault", "wind alarm") == -1
    assert s.backlog > 1000 and s.event_backlog <= 10
    filler.unlink()                                        # space returns
    t_back = t
    while not s.healthy or s.backlog:
        t += 0.1
        s.add_sample(sample(t, dt_s=0.1))
        # the retry interval (<= 10 s), then 1000 rows a commit point (1 s)
        assert t - t_back <= 13.0, "backlog not written within 13 s"
    assert rows(path) == round((t - T0_S) / 0.1)           # every sample, none lost
    assert [e["message"] for e in s.events(kinds=["fault"])] == ["wind alarm"]
    warnings = [e["message"] for e in s.events(kinds=["warning"])]
    assert any("refused commands" in m for m in warnings)
    assert any("unwritable for" in m and "backlog" in m for m in warnings)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # second outage, then a stop (what SIGTERM does: the daemon closes the log)
    filler = _fill(small_fs)
    while s.healthy:
        t += 0.1
        s.add_sample(sample(t, dt_s=0.1))
    for _ in range(100):
        t += 0.1
        s.add_sample(sample(t, dt_s=0.1))
    s.close()
    assert s.spill_path is not None and s.spill_path.parent == spill
    assert s.unwritten[0] >= 100
    # restart on the still-full disk: the sound file is not mistaken for a malformed one;
    # the spill file's rows wait in memory and the file stays until they are written
    s2 = TrackingStore(path, spill_dir=spill)
    assert not s2.healthy and s2.backlog == s.unwritten[0]
    assert s2.imported == [] and s.spill_path.exists()
    assert not list(small_fs.glob("*.corrupt-*"))
    filler.unlink()
    s2.flush()
    assert s2.healthy and s2.imported == [s.spill_path] and not s.spill_path.exists()
    assert rows(path) == round((t - T0_S) / 0.1)
    s2.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


WRITER = r"""
import signal, sys
from tests.support.records import T0_S, sample
from tracker.log.store import TrackingStore

store = TrackingStore(sys.argv[1], spill_dir=sys.argv[2])
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))   # as the daemon: stop, then close
t = T0_S
print("start", flush=True)
reported = False
while not stop:
    t += 0.1
    store.add_sample(sample(t, dt_s=0.1))
    if not store.healthy and store.backlog > 50 and not reported:
        print("outage", flush=True)
        reported = True
store.close()
print("closed", store.spill_path, store.unwritten[0], flush=True)
"""


def test_sigterm_during_outage_leaves_a_spill_file(small_fs, tmp_path):
    """A process that closes the log on SIGTERM (as the daemon does) while the disk is full."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    spill = tmp_path / "spill"
    path = small_fs / "log.sqlite"
    proc = subprocess.Popen([sys.executable, str(script), str(path), str(spill)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "start"
        filler = _fill(small_fs)
        assert proc.stdout.readline().strip() == "outage"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        closed = proc.stdout.readline().split()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    filler.unlink()
    assert closed[0] == "closed" and Path(closed[1]).parent == spill
    n = int(closed[2])
    assert n > 50
    lines = Path(closed[1]).read_text().splitlines()
    assert sum('"samples"' in line for line in lines[1:]) == n


# ---------------------------------------------------------------------------- corrupt files
def _written_log(path: Path, n: int = 3000) -> None:
    with TrackingStore(path, commit_interval_s=100.0) as s:
        s.log_event(T0_S, "state", "off -> idle", data={"from": "off", "to": "idle"})
        for i in range(n):
            s.add_sample(sample(T0_S + i))


def _corrupt_page(path: Path) -> None:
    """Overwrite the root page of the samples b-tree (an interior page) with garbage."""
    with sqlite3.connect(path) as db:
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'samples'"
                          ).fetchone()[0]
        page = db.execute("PRAGMA page_size").fetchone()[0]
    with open(path, "r+b") as f:
        f.seek((root - 1) * page)
        f.write(bytes(range(256)) * (page // 256))
    with sqlite3.connect(path) as db:                      # SQLite itself says: damaged
        try:
            result = db.execute("PRAGMA integrity_check").fetchall()
        except sqlite3.DatabaseError as exc:
            result = [(str(exc),)]
    assert result != [("ok",)], result


def test_malformed_log_moved_aside_and_new_one_started(tmp_path):
    path = tmp_path / "t.sqlite"
    _written_log(path)
    _corrupt_page(path)
    damaged = path.read_bytes()
    s = TrackingStore(path)
    assert s.moved_aside is not None and s.moved_aside.name.startswith("t.sqlite.corrupt-")
    assert s.moved_aside.read_bytes() == damaged           # kept as it was, for recovery
    assert s.healthy
    (ev,) = s.events()
    assert ev["kind"] == "warning" and "malformed" in ev["message"]
    assert ev["data"]["moved_aside"] == str(s.moved_aside)
    assert s.last_state() is None                          # nothing trusted from the old file
    s.add_sample(sample(T0_S))
    s.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_big_malformed_log_checked_in_background_and_moved_aside_at_next_start(tmp_path):
    """A log too big to check before use (a year at 1 Hz is ~2 GB: ~45 s of quick_check) is
    checked on a second connection while the writer goes on."""
    path = tmp_path / "t.sqlite"
    _written_log(path)
    _corrupt_page(path)
    s = TrackingStore(path, check_sync_max_bytes=0)
    assert s.moved_aside is None                           # not checked before use...
    assert s.wait_checked(60.0)
    assert s.malformed and not s.healthy                   # ...but found and reported
    marker = path.with_name("t.sqlite.malformed")
    assert marker.read_text().strip() == s.malformed
    s.close()
    with pytest.raises(StoreError, match="found by the check of an earlier run"):
        TrackingStore(path, on_corrupt="refuse")
    s2 = TrackingStore(path)                               # the next start moves it aside
    assert s2.moved_aside is not None and not marker.exists() and s2.healthy
    s2.close()
    good = tmp_path / "good.sqlite"
    _written_log(good)
    s3 = TrackingStore(good, check_sync_max_bytes=0)
    assert s3.wait_checked(60.0) and s3.malformed is None and s3.healthy
    s3.close()


def test_malformed_log_refused_clearly_when_configured(tmp_path):
    path = tmp_path / "t.sqlite"
    _written_log(path)
    _corrupt_page(path)
    damaged = path.read_bytes()
    with pytest.raises(StoreError, match=r"is malformed \(PRAGMA quick_check: .*refusing"):
        TrackingStore(path, on_corrupt="refuse")
    with pytest.raises(StoreError, match="is malformed"):
        TrackingStore(path, readonly=True)
    assert path.read_bytes() == damaged                    # untouched, nothing moved
    assert not list(tmp_path.glob("*.corrupt-*"))
    with pytest.raises(StoreError, match="on_corrupt must be one of"):
        TrackingStore(tmp_path / "x.sqlite", on_corrupt="ignore")


def test_not_sqlite_at_all_is_refused_and_untouched(tmp_path):
    path = tmp_path / "thesis.tex"
    path.write_text("\\documentclass{article}\n" * 100)
    with pytest.raises(StoreError, match="not an SQLite file"):
        TrackingStore(path)
    assert path.read_text() == "\\documentclass{article}\n" * 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


def test_invalid_json_rows_read_back_flagged_by_every_reader(tmp_path):
    path = tmp_path / "t.sqlite"
    with TrackingStore(path) as s:
        s.log_event(T0_S, "state", "idle -> tracking: window",
                    data={"from": "idle", "to": "tracking", "auto_tracking": True})
        for i in range(1, 100):
            s.add_sample(sample(T0_S + i))
        s.audit(T0_S + 50, "cli", "goto", {"az_deg": 1.0}, True, "accepted")
        s.set_meta(site="x")
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO events (time_s, kind, source, message, data) VALUES "
                   "(?, 'state', 'engine', 'tracking -> idle: stop', '{not json')", (T0_S + 60,))
        db.execute("INSERT INTO events (time_s, kind, source, message, data) VALUES "
                   "(?, 'fault', 'drive:az', 'trip', '[1, 2')", (T0_S + 61,))
        db.execute("INSERT INTO events (time_s, kind, source, message, data) VALUES "
                   "(?, 'info', 'x', 'auto', '{\"auto_tracking\": tru')", (T0_S + 62,))
        db.execute("UPDATE audit SET args = 'nope{'")
        db.execute("UPDATE meta SET value = '\"unterminated'")
    s = TrackingStore(path)                                # the start does not crash
    last = s.last_state()
    assert last["state"] == "idle"                         # from the message
    assert last["data"] == {"invalid_json": True, "raw": "{not json"}
    assert last["auto_tracking"] is None                   # the latest record is unreadable
    evs = s.events()
    assert evs[-2]["data"] == {"invalid_json": True, "raw": "[1, 2"}
    assert s.audit_records()[0]["args"] == {"invalid_json": True, "raw": "nope{"}
    assert s.meta() == {"site": {"invalid_json": True, "raw": '"unterminated'}}
    assert s.exposure(T0_S, T0_S + 100, settle_s=0.0)["tracking_s"] == pytest.approx(99.0)
    states = state_time_from_events(s, T0_S, T0_S + 100)
    assert states["seconds"]["tracking"] == pytest.approx(60.0)
    report = build_report(s, T0_S, T0_S + 100)
    assert report["faults"][0]["data"] == {"invalid_json": True, "raw": "[1, 2"}
    s.close()


def test_dropped_samples_table_recreated_at_start_and_while_running(tmp_path):
    path = tmp_path / "t.sqlite"
    _written_log(path, n=10)
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE samples")
    s = TrackingStore(path, commit_interval_s=0.0)
    assert s.healthy
    warn = [e for e in s.events() if e["kind"] == "warning"]
    assert warn[-1]["data"] == {"recreated": ["samples"]}
    s.add_sample(sample(T0_S + 100))
    assert rows(path) == 1
    with sqlite3.connect(path) as db:                      # dropped under a running writer
        db.execute("DROP TABLE samples")
    s.add_sample(sample(T0_S + 101))
    assert s.healthy and rows(path) == 1
    assert "no such table: samples" in s.events()[-1]["message"]
    s.close()
