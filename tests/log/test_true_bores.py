"""Per-bore exposure by the truth: the recorder integrates each bore's off-axis angle from the
simulator's true pointing tick by tick into ``true_bores``, the store keeps it (schema 3), the
exposure code reads it back with the same definitions as ``bores``; logs of schema 2 (no
``true_bores``) stay readable and are migrated when opened for writing."""

from __future__ import annotations

import math
import sqlite3

import pytest

from tests.support.records import T0_S, two_bores
from tracker.control.machine import State
from tracker.log.store import SAMPLE_FIELDS, SCHEMA_VERSION, Sample, TrackingStore
from tracker.loop.recorder import Measurement, Recorder
from tracker.mount.bores import decode

EL = 20.0


def _az(dx_arcsec: float) -> float:
    return 150.0 + dx_arcsec / 3600.0 / math.cos(math.radians(EL))


def _m(dx_enc_arcsec: float, dx_true_arcsec: float | None) -> Measurement:
    """Encoders see the axis ``dx_enc`` east of the Sun; the truth is ``dx_true`` (None: no
    truth, as with real drives)."""
    true_sky = (math.nan, math.nan) if dx_true_arcsec is None else (_az(dx_true_arcsec), EL)
    return Measurement((_az(dx_enc_arcsec), EL), (150.0, EL), abs(dx_enc_arcsec),
                       math.nan if dx_true_arcsec is None else abs(dx_true_arcsec), true_sky)


def _record(seconds: int, dx_true_of) -> list[Sample]:
    """1 s samples of 10 ticks; the encoders see the axis on the Sun, the truth
    ``dx_true_of(second)`` arcsec east."""
    samples: list[Sample] = []
    rec = Recorder(1.0, 2.0, [samples.append], two_bores())
    for k in range(10 * seconds + 1):
        rec.record(T0_S + 0.1 * k, State.TRACKING, "main", _m(0.0, dx_true_of(k // 10)), True,
                   (0, 0))
    rec.flush(T0_S + 0.1 * 10 * seconds)
    return samples


def test_recorder_integrates_each_bore_by_the_truth_beside_the_encoders() -> None:
    # the truth: 30 arcsec east for the whole second the encoders see on the Sun
    (s,) = _record(1, lambda _: 30.0)
    enc, true = decode(s.bores), decode(s.true_bores)
    assert enc["near"][0] == pytest.approx(10.0, abs=1e-3)          # encoders: 10 arcsec off
    assert enc["near"][2] == pytest.approx(1.0, abs=1e-6)
    # truth: near is 40 arcsec off (beyond its 36 arcsec tolerance), far 10 arcsec off
    assert true["near"][0] == pytest.approx(40.0, abs=1e-3) and true["near"][2] == 0.0
    assert true["far"][0] == pytest.approx(10.0, abs=1e-3)
    assert true["far"][2] == pytest.approx(1.0, abs=1e-6)
    assert true["far"][3] == pytest.approx(1.0 - 0.1 * 10 / 60, abs=1e-5)


def test_without_truth_a_sample_carries_no_truetwo_bores() -> None:
    samples = _record(3, lambda _: None)
    assert len(samples) == 3
    assert all(s.bores is not None and s.true_bores is None for s in samples)


def test_exposure_by_the_truth_from_the_store(tmp_path) -> None:
    with TrackingStore(tmp_path / "log.sqlite") as store:
        # 100 s; the truth is 50 arcsec east for 20..29 s (near 60 off, far 10 off)
        for s in _record(100, lambda k: 50.0 if 20 <= k < 30 else 0.0):
            store.add_sample(s)
        store.flush()
        r = store.exposure(T0_S, T0_S + 200, per_day=True)
    near, far = r["true_bores"]["near"], r["true_bores"]["far"]
    assert near["on_sun_s"] == pytest.approx(90.0, abs=1e-3)
    assert near["effective_s"] == pytest.approx(90.0 * (1 - 0.1 * 10 / 60), abs=0.01)
    assert far["on_sun_s"] == pytest.approx(10.0, abs=1e-3)
    assert far["max_off_axis_arcsec"] == pytest.approx(40.0, abs=1e-3)
    # the encoders saw the axis on the Sun all along: near 100 s, far never
    assert r["bores"]["near"]["on_sun_s"] == pytest.approx(100.0, abs=1e-3)
    assert r["bores"]["far"]["on_sun_s"] == 0.0
    (day,) = r["days"]
    assert day["true_bores"] == r["true_bores"]


def _schema_2_log(path) -> None:
    """A tracking log as schema 2 wrote it (``bores`` and ``true_error_arcsec``, no
    ``true_bores``)."""
    cols = [f for f in SAMPLE_FIELDS if f != "true_bores"]
    db = sqlite3.connect(path)
    db.executescript(f"""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL, time_s REAL NOT NULL);
        CREATE TABLE samples (id INTEGER PRIMARY KEY, {', '.join(
            f'{c} TEXT' if c in ('state', 'boresight', 'bores') else f'{c} REAL'
            for c in cols)});
        CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, time_s REAL NOT NULL,
            kind TEXT NOT NULL, source TEXT, message TEXT NOT NULL, data TEXT);
        CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, time_s REAL NOT NULL,
            source TEXT NOT NULL, command TEXT NOT NULL, args TEXT NOT NULL, ok INTEGER NOT NULL,
            result TEXT NOT NULL, event_id INTEGER);
        PRAGMA user_version=2;""")
    db.executemany(f"INSERT INTO samples ({', '.join(cols)}) VALUES "
                   f"({', '.join('?' * len(cols))})",
                   [(T0_S + k, 1.0, "tracking", "main", 150.0, EL, 150.0, EL, 0, 0, 1.0, 1.0,
                     1.0, 1.5, '{"near":[10,10,1,0.98]}') for k in range(1, 61)])
    db.commit()
    db.close()


def test_a_schema_2_log_reads_without_truth_per_bore_and_is_migrated_for_writing(
        tmp_path) -> None:
    path = tmp_path / "v2.sqlite"
    _schema_2_log(path)
    with TrackingStore(path, readonly=True) as ro:
        r = ro.exposure(T0_S, T0_S + 100)
        got = ro.samples(T0_S, T0_S + 100)
    assert r["bores"]["near"]["effective_s"] == pytest.approx(60 * 0.98)
    assert r["true_bores"] == {} and all(t is None for t in got["true_bores"])
    db = sqlite3.connect(path)     # read-only left it as it was
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    db.close()
    with TrackingStore(path) as store:
        store.add_sample(Sample(T0_S + 61, 1.0, "tracking", "main", 150.0, EL, 150.0, EL,
                                0.0, 0.0, 1.0, 1.0, 1.0, 1.5, bores='{"near":[10,10,1,0.98]}',
                                true_bores='{"near":[20,20,1,0.97]}'))
        store.flush()
        r = store.exposure(T0_S, T0_S + 100)
    assert r["bores"]["near"]["effective_s"] == pytest.approx(61 * 0.98)
    assert r["true_bores"]["near"]["effective_s"] == pytest.approx(0.97)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert db.execute("SELECT COUNT(*), COUNT(bores), COUNT(true_bores) FROM samples"
                      ).fetchone() == (61, 61, 1)
    db.close()


_DIE_MID_MIGRATION = r"""
import os, sys
import tracker.log.store as store_mod

original = store_mod._add_missing_sample_columns

def add_then_die(db):
    original(db)                  # the ALTER TABLEs ran, the transaction is not committed
    os._exit(9)

store_mod._add_missing_sample_columns = add_then_die
store_mod.TrackingStore(sys.argv[1])
"""


def test_a_crash_during_the_migration_leaves_the_schema_2_log_as_it_was(tmp_path) -> None:
    """The process dies between adding ``true_bores`` and committing: the log is still a
    whole schema-2 log (no column, its rows intact), and migrates on the next open."""
    import subprocess
    import sys

    from tests.support import ROOT
    path = tmp_path / "v2.sqlite"
    _schema_2_log(path)
    proc = subprocess.run([sys.executable, "-c", _DIE_MID_MIGRATION, str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    assert "true_bores" not in {r[1] for r in db.execute("PRAGMA table_info(samples)")}
    assert db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 60
    db.close()
    with TrackingStore(path) as store:
        r = store.exposure(T0_S, T0_S + 100)
    assert r["bores"]["near"]["effective_s"] == pytest.approx(60 * 0.98)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
