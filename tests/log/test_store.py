"""Tracking log: round trip, commit policy, events/audit, exposure figures, disk full, locks.

Real SQLite files throughout; the disk-full cases use SQLite's own ``max_page_count`` limit
(a real "database or disk is full" error) and, when we may mount one, a tiny real tmpfs.
"""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from tests.support.records import T0_S, sample  # noqa: E402
from tracker.log.exposure import ExposureAccumulator, offsets_arcsec, weighted_stats
from tracker.log.store import (
    SAMPLE_DTYPE,
    SAMPLE_FIELDS,
    SCHEMA_VERSION,
    Sample,
    StoreError,
    TrackingStore,
    iso_utc,
)


@pytest.fixture
def store(tmp_path):
    s = TrackingStore(tmp_path / "log" / "tracking.sqlite")
    yield s
    s.close()


def other_connection(store: TrackingStore) -> sqlite3.Connection:
    return sqlite3.connect(store.path, timeout=0.1, isolation_level=None)


def count(store: TrackingStore, table: str = "samples") -> int:
    with other_connection(store) as db:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


# ---------------------------------------------------------------------------- basics
def test_schema_wal_and_round_trip(store):
    with other_connection(store) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    rows = [sample(T0_S + i, error_arcsec=i * 0.5, d_az_arcsec=3.0) for i in range(1, 6)]
    for r in rows:
        store.add_sample(r)
    store.flush()
    got = store.samples(T0_S, T0_S + 10)
    assert got.shape == (5,)
    for r, g in zip(rows, got, strict=True):
        for name in SAMPLE_FIELDS:
            want = getattr(r, name)
            assert g[name] == want or (want != want and g[name] != g[name]), name  # NaN: NULL
    assert store.samples(T0_S + 2, T0_S + 4)["time_s"].tolist() == [T0_S + 2, T0_S + 3]
    assert store.time_range() == (T0_S, T0_S + 5)       # start of the first interval
    with pytest.raises(StoreError, match="unknown sample columns"):
        store.samples(T0_S, T0_S + 1, columns=("time_s", "bogus"))


def test_samples_commit_once_per_interval_of_sample_time(tmp_path):
    s = TrackingStore(tmp_path / "t.sqlite", commit_interval_s=1.0)
    s.add_sample(sample(T0_S))            # first sample commits (no previous commit)
    assert count(s) == 1
    for i in range(1, 10):                # 0.1 s steps: buffered
        s.add_sample(sample(T0_S + 0.1 * i, dt_s=0.1))
    assert count(s) == 1 and s.backlog == 9
    s.add_sample(sample(T0_S + 1.0, dt_s=0.1))
    assert count(s) == 11 and s.backlog == 0
    s.add_sample(sample(T0_S + 1.1, dt_s=0.1))
    s.close()                             # close flushes
    assert count(s) == 12


def test_events_audit_and_last_state(store):
    assert store.last_state() is None
    store.add_sample(sample(T0_S))
    store.add_sample(sample(T0_S + 0.5, dt_s=0.5))        # buffered...
    e1 = store.log_event(T0_S + 0.6, "state", "idle -> tracking: window 1",
                         data={"from": "idle", "to": "tracking", "cause": "window 1",
                               "auto_tracking": True})
    assert count(store, "events") == 1
    assert count(store) == 2                               # ...and committed with the event
    e2 = store.log_event(T0_S + 1, "fault", "azimuth drive trip", source="drive:az",
                         data={"code": 7})
    assert e2 == e1 + 1
    a1 = store.audit(T0_S + 2, "api:127.0.0.1", "goto", {"az_deg": 10.0, "el_deg": 31.0},
                     False, "elevation 31.0 deg is above the limit 25.0 deg")
    assert a1 == 1
    e3 = store.log_event(T0_S + 3, "state", "tracking -> fault: drive trip",
                         data={"from": "tracking", "to": "fault", "cause": "drive trip"})
    last = store.last_state()
    assert last["id"] == e3 and last["state"] == "fault" and last["from"] == "tracking"
    assert last["auto_tracking"] is True                  # latest recorded value
    assert last["wind_stowed"] is None                    # never recorded
    store.log_event(T0_S + 4, "info", "stowed for wind", data={"wind_stowed": True})
    store.log_event(T0_S + 5, "info", "automatic tracking off", data={"auto_tracking": False})
    last = store.last_state()
    assert (last["id"], last["auto_tracking"], last["wind_stowed"]) == (e3, False, True)
    assert last["time_utc"] == iso_utc(T0_S + 3)
    evs = store.events()[:4]
    assert [e["kind"] for e in evs] == ["state", "fault", "command", "state"]
    assert evs[2]["source"] == "api:127.0.0.1" and evs[2]["data"]["ok"] is False
    assert "refused" in evs[2]["message"]
    assert [e["id"] for e in store.events(after_id=e2)][:2] == [e2 + 1, e3]
    assert [e["id"] for e in store.events(limit=2)] == [e3 + 1, e3 + 2]  # the latest two
    assert [e["kind"] for e in store.events(kinds=["fault"])] == ["fault"]
    rec = store.audit_records()
    assert rec == [{"id": 1, "time_s": T0_S + 2, "time_utc": "2026-07-01T00:00:02Z",
                    "source": "api:127.0.0.1", "command": "goto",
                    "args": {"az_deg": 10.0, "el_deg": 31.0}, "ok": False,
                    "result": "elevation 31.0 deg is above the limit 25.0 deg"}]
    # Unknown kinds are kept, as info
    store.log_event(T0_S + 4, "weird", "x")
    assert store.events(limit=1)[0]["kind"] == "info"
    assert store.events(limit=1)[0]["data"] == {"kind": "weird"}


def test_meta_written_and_changes_kept(tmp_path):
    path = tmp_path / "t.sqlite"
    with TrackingStore(path) as s:
        s.set_meta(site={"name": "CAST", "latitude_deg": 46.2389}, software="0.1.0")
        assert s.meta() == {"site": {"name": "CAST", "latitude_deg": 46.2389},
                            "software": "0.1.0"}
    with TrackingStore(path) as s:                        # reopen: same schema, same meta
        s.set_meta(software="0.1.0")                      # unchanged: no event
        assert s.events() == []
        s.set_meta(software="0.2.0")
        assert s.meta()["software"] == "0.2.0"
        (ev,) = s.events()
        assert ev["data"] == {"old": {"software": "0.1.0"}, "new": {"software": "0.2.0"}}


def test_bad_files_are_refused_clearly(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not an SQLite file|not a database"):
        TrackingStore(junk)
    newer = tmp_path / "newer.sqlite"
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(StoreError, match="newer version"):
        TrackingStore(newer)
    with pytest.raises(StoreError, match="commit_interval_s"):
        TrackingStore(tmp_path / "x.sqlite", commit_interval_s=-1)


# ---------------------------------------------------------------------------- exposure
def test_exposure_figures_on_known_day(tmp_path):
    store = TrackingStore(tmp_path / "t.sqlite", commit_interval_s=600.0)
    # 09:00-10:00 tracking on "front" with 2" errors except 60 s at 50" (off-Sun) starting
    # 09:30; 15:00-15:20 on "rear" at 4"; the first 30 s of each stretch is settling at 20".
    t = T0_S + 9 * 3600
    for i in range(1, 3601):
        err = 20.0 if i <= 30 else (50.0 if 1800 < i <= 1860 else 2.0)
        store.add_sample(sample(t + i, boresight="front", error_arcsec=err,
                                d_az_arcsec=1.5, d_el_arcsec=-0.5))
    for i in range(1, 601):                                # parked in between, logged
        store.add_sample(sample(t + 3600 + i, state="parked", error_arcsec=900.0))
    t = T0_S + 15 * 3600
    for i in range(1, 1201):
        err = 20.0 if i <= 30 else 4.0
        store.add_sample(sample(t + i, boresight="rear", error_arcsec=err, d_el_arcsec=4.0))
    store.flush()
    r = store.exposure(T0_S, T0_S + 86400, intervals=True)
    assert r["n_samples"] == 3600 + 600 + 1200
    assert r["tracking_s"] == pytest.approx(4800.0)
    assert r["on_sun_s"] == pytest.approx(4800.0 - 60.0)
    assert r["state_s"] == {"parked": pytest.approx(600.0), "tracking": pytest.approx(4800.0)}
    # settled statistics: front 3570 s (60 at 50", rest 2"), rear 1170 s at 4"
    front = np.r_[np.full(60, 50.0), np.full(3510, 2.0)]
    rear = np.full(1170, 4.0)
    both = np.r_[front, rear]
    assert r["stats_s"] == pytest.approx(4740.0)
    assert r["rms_error_arcsec"] == pytest.approx(np.sqrt(np.mean(both ** 2)))
    assert r["mean_error_arcsec"] == pytest.approx(both.mean())
    assert r["p95_error_arcsec"] == pytest.approx(4.0)
    assert r["max_error_arcsec"] == pytest.approx(60.0)   # error_max = 1.2 * 50
    assert r["boresights"]["rear"]["rms_error_arcsec"] == pytest.approx(4.0)
    assert r["boresights"]["front"]["on_sun_s"] == pytest.approx(3540.0)
    assert r["boresights"]["rear"]["tracking_s"] == pytest.approx(1200.0)
    # the gap between the parked rows and the rear window, and nothing else
    assert r["n_gaps"] == 1 and r["gap_s"] == pytest.approx(15 * 3600 - 10 * 3600 - 600)
    assert r["gaps"][0]["start_utc"] == "2026-07-01T10:10:00Z"
    assert r["gaps"][0]["end_utc"] == "2026-07-01T15:00:00Z"
    # intervals: front split by the off-Sun minute, then rear
    ivs = r["intervals"]
    assert [(iv["start_utc"], iv["end_utc"], iv["boresight"]) for iv in ivs] == [
        ("2026-07-01T09:00:00Z", "2026-07-01T09:30:00Z", "front"),
        ("2026-07-01T09:31:00Z", "2026-07-01T10:00:00Z", "front"),
        ("2026-07-01T15:00:00Z", "2026-07-01T15:20:00Z", "rear")]
    assert ivs[0]["mean_offset_az_cos_el_arcsec"] == pytest.approx(1.5, abs=1e-6)
    assert ivs[0]["mean_offset_el_arcsec"] == pytest.approx(-0.5, abs=1e-6)
    assert ivs[2]["mean_offset_el_arcsec"] == pytest.approx(4.0, abs=1e-6)
    assert r["intervals_s"] == pytest.approx(r["on_sun_s"])
    # A range cutting rows in half counts halves; chunking does not change the answer
    half = store.exposure(T0_S + 9 * 3600 + 0.5, T0_S + 9 * 3600 + 100.5)
    assert half["tracking_s"] == pytest.approx(100.0)
    # per UTC day from the same read: the days add up to the total; the range clips them
    two = store.exposure(T0_S - 43200, T0_S + 86400, per_day=True)
    assert [d["from_utc"] for d in two["days"]] == ["2026-06-30T12:00:00Z",
                                                     "2026-07-01T00:00:00Z"]
    assert two["days"][0]["n_samples"] == 0 and two["days"][0]["on_sun_s"] == 0.0
    assert two["days"][1]["on_sun_s"] == pytest.approx(r["on_sun_s"])
    assert two["days"][1]["rms_error_arcsec"] == pytest.approx(r["rms_error_arcsec"])
    chunked = store.exposure(T0_S, T0_S + 86400, intervals=True, chunk_s=777.0)
    assert chunked["intervals"] == [pytest.approx(iv) for iv in r["intervals"]]
    for key, value in r.items():
        if isinstance(value, float):
            assert chunked[key] == pytest.approx(value), key
        elif key != "intervals":
            assert chunked[key] == value, key
    store.close()


def test_exposure_settle_restarts_after_gap_and_boresight_change():
    rows = [sample(T0_S + i, error_arcsec=1.0) for i in range(1, 41)]          # 40 s
    rows += [sample(T0_S + 100 + i, error_arcsec=9.0) for i in range(1, 41)]   # after a gap
    rows += [sample(T0_S + 140 + i, boresight="rear", error_arcsec=5.0) for i in range(1, 41)]
    arr = np.array([tuple(getattr(r, f) for f in SAMPLE_FIELDS) for r in rows],
                   dtype=SAMPLE_DTYPE)
    acc = ExposureAccumulator(T0_S, T0_S + 1000, settle_s=30.0)
    for part in np.array_split(arr, 7):                                       # chunked feed
        acc.feed(part)
    r = acc.result()
    assert r["stats_s"] == pytest.approx(30.0)             # 10 s settled of each stretch
    assert r["boresights"]["main"]["mean_error_arcsec"] == pytest.approx(5.0)
    assert r["boresights"]["rear"]["mean_error_arcsec"] == pytest.approx(5.0)
    assert r["n_gaps"] == 1 and r["gap_s"] == pytest.approx(60.0)


def test_statistics_helpers():
    s = weighted_stats(np.array([1.0, 2.0, 100.0]), np.array([1.0, 1.0, 0.0]))
    assert s["max_error_arcsec"] == 2.0 and s["mean_error_arcsec"] == 1.5
    assert weighted_stats(np.zeros(0), np.zeros(0))["rms_error_arcsec"] is None
    e = np.arange(1.0, 101.0)
    assert weighted_stats(e, np.ones(100))["p95_error_arcsec"] == 95.0
    daz, delv = offsets_arcsec(359.999, 60.0, 0.001, 60.0)      # across north
    assert daz == pytest.approx(0.002 * 3600 * 0.5) and delv == 0.0


# ---------------------------------------------------------------------------- failures
def test_disk_full_reported_and_caught_up(store):
    """SQLite's max_page_count gives a real SQLITE_FULL: rows stay in memory, then land."""
    store.add_sample(sample(T0_S))
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count={pages + 2}")
    n = 0
    while store.healthy and n < 5000:
        n += 1
        store.add_sample(sample(T0_S + n))
    assert not store.healthy and "full" in store.last_error
    for i in range(n + 1, n + 200):                        # keeps going, never raises
        store.add_sample(sample(T0_S + i))
    assert store.log_event(T0_S + n + 200, "fault", "wind alarm") == -1
    assert store.backlog > 0
    store._db.execute("PRAGMA max_page_count=1073741823")  # space returns
    store.add_sample(sample(T0_S + n + 201))               # < retry interval: buffered
    assert not store.healthy
    store.add_sample(sample(T0_S + n + 211))               # retry interval (<= 10 s) passed
    assert store.healthy and store.last_error is None and store.backlog == 0
    times = store.samples(T0_S, T0_S + 1e6)["time_s"]
    assert times.tolist() == [T0_S + i for i in range(n + 202) if i != n + 200] + [T0_S + n + 211]
    msgs = [e["message"] for e in store.events()]
    assert msgs[0] == "wind alarm"
    assert "unwritable" in msgs[1] and "backlog written" in msgs[1]


def test_backlog_is_bounded_and_losses_recorded(tmp_path):
    s = TrackingStore(tmp_path / "t.sqlite", max_backlog=50, busy_timeout_s=0.01)
    s.add_sample(sample(T0_S))
    blocker = other_connection(s)
    blocker.execute("BEGIN EXCLUSIVE")                     # another process holds the lock
    for i in range(1, 201):
        s.add_sample(sample(T0_S + i))
    assert not s.healthy and "locked" in s.last_error and s.backlog == 50
    blocker.execute("COMMIT")
    blocker.close()
    s.flush()
    assert s.healthy
    assert s.samples(T0_S, T0_S + 1e3)["time_s"].tolist() == [T0_S] + [T0_S + i for i in
                                                                        range(151, 201)]
    warnings = [e for e in s.events() if e["kind"] == "warning"]
    assert warnings[0]["data"] == {"dropped_samples": 150}
    s.close()


def test_long_reader_does_not_block_writer(store):
    store.add_sample(sample(T0_S))
    reader = other_connection(store)
    reader.execute("BEGIN")
    assert reader.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 1
    for i in range(1, 300):                                # WAL grows; no checkpoint possible
        store.add_sample(sample(T0_S + i))
    assert store.healthy and store.backlog == 0
    assert reader.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 1   # snapshot
    reader.execute("COMMIT")
    assert reader.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 300
    reader.close()


def test_exclusive_lock_by_another_process(tmp_path):
    path = tmp_path / "t.sqlite"
    s = TrackingStore(path)
    s.add_sample(sample(T0_S))
    with subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time\n"
         f"db = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
         "db.execute('BEGIN EXCLUSIVE'); print('locked', flush=True)\n"
         "sys.stdin.readline(); db.execute('COMMIT')\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout.readline().strip() == "locked"
            for i in range(1, 6):
                s.add_sample(sample(T0_S + i))
            assert s.log_event(T0_S + 5.5, "info", "while locked") == -1
            assert not s.healthy and "locked" in s.last_error
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.wait(timeout=10) == 0
        finally:
            if holder.poll() is None:
                holder.kill()
    s.add_sample(sample(T0_S + 6))                         # < retry interval: still buffered
    assert not s.healthy and s.backlog == 6
    t = T0_S + 6
    while not s.healthy and t < T0_S + 20:                 # retried within 10 s of samples
        t += 1
        s.add_sample(sample(t))
    assert s.healthy and t <= T0_S + 16
    assert len(s.samples(T0_S, T0_S + 100)) == int(t - T0_S) + 1
    assert [e["message"] for e in s.events()][0] == "while locked"
    s.close()


def _can_mount_tmpfs(where) -> bool:
    if os.geteuid() != 0:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)],
                       capture_output=True)
    return r.returncode == 0


def test_real_disk_full_on_tmpfs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if not _can_mount_tmpfs(mnt):
        pytest.skip("cannot mount a tmpfs here (needs root); max_page_count test covers it")
    try:
        s = TrackingStore(mnt / "t.sqlite")
        s.add_sample(sample(T0_S))
        filler = mnt / "filler"
        with open(filler, "wb", buffering=0) as f:         # fill the file system
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        n = 0
        while s.healthy and n < 20000:
            n += 1
            s.add_sample(sample(T0_S + n))
        assert not s.healthy and ("full" in s.last_error or "I/O" in s.last_error)
        filler.unlink()                                    # space returns
        s.flush()                                          # retry now
        s.add_sample(sample(T0_S + n + 1))
        assert s.healthy
        assert len(s.samples(T0_S, T0_S + 1e6)) == n + 2
        with sqlite3.connect(s.path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        s.close()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_nan_numpy_and_bad_samples_never_poison_the_log(tmp_path):
    s = TrackingStore(tmp_path / "t.sqlite", clock=lambda: T0_S)      # callable clock
    s.set_meta(site="x")
    nan = float("nan")
    s.add_sample(Sample(T0_S + 1, 1.0, "parked", "main", nan, nan, np.float32(1.5),
                        np.float64(2.5), 3.0, 4.0, nan, nan, 0.0))    # NaN stored as NULL
    s.add_sample(sample(nan))                                         # rejected, logged
    s.add_sample(sample(T0_S + 2, dt_s=-1.0))                         # rejected
    s.add_sample(Sample(T0_S + 3, 1.0, "parked", "main", *["x"] * 9))  # rejected
    s.add_sample(sample(T0_S + 4))
    s.flush()
    assert s.healthy and s.rejected == 3
    got = s.samples(T0_S, T0_S + 10)
    assert got["time_s"].tolist() == [T0_S + 1, T0_S + 4]
    assert math.isnan(got["error_arcsec"][0]) and math.isnan(got["target_az_deg"][0])
    assert got["measured_az_deg"][0] == 1.5 and got["measured_el_deg"][0] == 2.5
    with other_connection(s) as db:
        assert db.execute("SELECT time_s FROM meta").fetchone()[0] == T0_S
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.events()


def test_exposure_ignores_nan_rows_without_warnings(store):
    nan = float("nan")
    for i in range(1, 101):
        s = sample(T0_S + i, error_arcsec=3.0)
        if 50 < i <= 60:                     # encoder read failed: no error known
            s.error_arcsec = s.error_max_arcsec = s.on_sun_s = nan
        store.add_sample(s)
    store.flush()
    r = store.exposure(T0_S, T0_S + 200, settle_s=0.0, intervals=True)
    assert r["on_sun_s"] == pytest.approx(90.0) and r["tracking_s"] == pytest.approx(100.0)
    assert r["rms_error_arcsec"] == pytest.approx(3.0) and r["stats_s"] == pytest.approx(90.0)
    assert [iv["duration_s"] for iv in r["intervals"]] == [50.0, 40.0]


def test_odd_event_input_is_stored_not_raised(store):
    assert store.log_event(None, "info", 42, source=7, data={1: "a", "b": (1, 2)}) > 0
    assert store.audit(float("nan"), "cli", "goto", {"az": float("nan")}, True, None) == 1
    assert store.healthy
    evs = store.events()
    assert evs[0]["message"] == "42" and evs[0]["source"] == "7"
    assert math.isfinite(evs[0]["time_s"]) and math.isfinite(evs[1]["time_s"])
    store.close()
    assert store.log_event(T0_S, "info", "after close") == -1      # logged, not raised
    store.add_sample(sample(T0_S))


def test_readonly_reader_sees_writer_and_changes_nothing(tmp_path):
    path = tmp_path / "a b?#.sqlite"                       # URI-special characters
    with pytest.raises(StoreError, match="no tracking log"):
        TrackingStore(path, readonly=True)
    assert not path.exists()
    w = TrackingStore(path)
    w.add_sample(sample(T0_S))
    r = TrackingStore(path, readonly=True)
    w.add_sample(sample(T0_S + 1))
    assert len(r.samples(T0_S, T0_S + 10)) == 2            # sees committed rows live
    r.log_event(T0_S, "info", "must not land")             # refused by SQLite, not raised
    assert not r.healthy and "readonly" in r.last_error
    r.close()
    assert w.events() == []
    w.close()
