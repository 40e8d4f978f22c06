"""The tracking log's true error column (simulator truth beside the encoder-based error) and the
migration that keeps schema-1 logs (without it) readable and writable."""

from __future__ import annotations

import math
import sqlite3

import pytest

from tests.support.records import T0_S, sample
from tracker.log.store import SCHEMA_VERSION, Sample, TrackingStore

#: The samples table as schema 1 wrote it (before ``true_error_arcsec``).
SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL, time_s REAL NOT NULL);
CREATE TABLE samples (id INTEGER PRIMARY KEY, time_s REAL NOT NULL, dt_s REAL NOT NULL,
    state TEXT NOT NULL, boresight TEXT NOT NULL, target_az_deg REAL, target_el_deg REAL,
    measured_az_deg REAL, measured_el_deg REAL, axis_az_deg REAL, axis_el_deg REAL,
    error_arcsec REAL, error_max_arcsec REAL, on_sun_s REAL);
CREATE INDEX samples_time ON samples (time_s);
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, time_s REAL NOT NULL,
    kind TEXT NOT NULL, source TEXT, message TEXT NOT NULL, data TEXT);
CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, time_s REAL NOT NULL,
    source TEXT NOT NULL, command TEXT NOT NULL, args TEXT NOT NULL, ok INTEGER NOT NULL,
    result TEXT NOT NULL, event_id INTEGER);
"""


def with_truth(s: Sample, true_error_arcsec: float) -> Sample:
    return Sample(s.time_s, s.dt_s, s.state, s.boresight, s.target_az_deg, s.target_el_deg,
                  s.measured_az_deg, s.measured_el_deg, s.axis_az_deg, s.axis_el_deg,
                  s.error_arcsec, s.error_max_arcsec, s.on_sun_s, true_error_arcsec)


def schema_1_log(path) -> None:
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_1)
    for i in range(120):
        s = sample(T0_S + i, error_arcsec=2.0)
        db.execute("INSERT INTO samples (time_s, dt_s, state, boresight, target_az_deg, "
                   "target_el_deg, measured_az_deg, measured_el_deg, axis_az_deg, axis_el_deg, "
                   "error_arcsec, error_max_arcsec, on_sun_s) VALUES "
                   "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (s.time_s, s.dt_s, s.state, s.boresight, s.target_az_deg, s.target_el_deg,
                    s.measured_az_deg, s.measured_el_deg, s.axis_az_deg, s.axis_el_deg,
                    s.error_arcsec, s.error_max_arcsec, s.on_sun_s))
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()


def test_true_error_is_stored_beside_the_encoder_error_and_null_without_truth(tmp_path):
    store = TrackingStore(tmp_path / "t.sqlite", clock=lambda: T0_S)
    for i in range(100):
        store.add_sample(with_truth(sample(T0_S + i, error_arcsec=1.0), 3.0 if i % 2 else 4.0))
    store.add_sample(sample(T0_S + 100, error_arcsec=1.0))   # real drives: no truth
    store.flush()
    rows = store.samples(T0_S, T0_S + 200)
    assert rows["true_error_arcsec"][1] == 3.0 and rows["true_error_arcsec"][2] == 4.0
    assert math.isnan(rows["true_error_arcsec"][-1])
    (nulls,), = store._query("SELECT COUNT(*) FROM samples WHERE true_error_arcsec IS NULL")
    assert nulls == 1
    r = store.exposure(T0_S - 1.0, T0_S + 200, settle_s=0.0)   # the first row ends at T0_S
    assert r["rms_error_arcsec"] == pytest.approx(1.0)
    assert r["true_rms_error_arcsec"] == pytest.approx(math.sqrt((9.0 + 16.0) / 2), rel=1e-3)
    assert r["true_max_error_arcsec"] == pytest.approx(4.0)
    store.close()


def test_a_log_without_truth_reports_no_true_error(tmp_path):
    store = TrackingStore(tmp_path / "t.sqlite", clock=lambda: T0_S)
    for i in range(50):
        store.add_sample(sample(T0_S + i))
    store.flush()
    r = store.exposure(T0_S, T0_S + 100, settle_s=0.0)
    assert r["rms_error_arcsec"] == pytest.approx(2.0)
    assert r["true_rms_error_arcsec"] is None and r["true_max_error_arcsec"] is None
    store.close()


def test_a_schema_1_log_reads_read_only_with_null_truth(tmp_path):
    path = tmp_path / "old.sqlite"
    schema_1_log(path)
    store = TrackingStore(path, readonly=True)
    rows = store.samples(T0_S, T0_S + 200)
    assert len(rows) == 120 and all(math.isnan(x) for x in rows["true_error_arcsec"])
    r = store.exposure(T0_S - 1.0, T0_S + 200, settle_s=0.0)
    assert r["on_sun_s"] == pytest.approx(120.0)
    assert r["true_rms_error_arcsec"] is None
    store.close()
    # Read-only means untouched: still schema 1, no new column.
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert "true_error_arcsec" not in {r[1] for r in db.execute("PRAGMA table_info(samples)")}
    db.close()


def test_a_schema_1_log_opened_for_writing_gains_the_column_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.sqlite"
    schema_1_log(path)
    store = TrackingStore(path, clock=lambda: T0_S)
    store.add_sample(with_truth(sample(T0_S + 500), 2.5))
    store.flush()
    rows = store.samples(T0_S, T0_S + 1000)
    assert len(rows) == 121
    assert math.isnan(rows["true_error_arcsec"][0]) and rows["true_error_arcsec"][-1] == 2.5
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
