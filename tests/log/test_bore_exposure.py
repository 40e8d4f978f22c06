"""Per-bore exposure: recorded tick by tick, stored, and read back by the exposure code;
logs of the older schema stay readable and are migrated when opened for writing."""

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


def _m(dx_arcsec: float) -> Measurement:
    """The mechanical axis ``dx_arcsec`` east of the Sun (on the sky) at elevation EL."""
    paz = 150.0 + dx_arcsec / 3600.0 / math.cos(math.radians(EL))
    return Measurement((paz, EL), (150.0, EL), abs(dx_arcsec))


def _record(samples: list[Sample], ticks: list[tuple[float, State, float]]) -> None:
    rec = Recorder(1.0, 2.0, [samples.append], two_bores())
    for t, state, dx in ticks:
        rec.record(t, state, "main", _m(dx), state is State.TRACKING and abs(dx) <= 36, (0, 0))
    rec.flush(ticks[-1][0])


def test_recorder_integrates_each_bore_tick_by_tick() -> None:
    samples: list[Sample] = []
    # 0.1 s ticks: 0.5 s on the Sun exactly, then 0.5 s with the axis 30 arcsec east
    ticks = [(T0_S + 0.1 * k, State.TRACKING, 0.0 if k <= 5 else 30.0) for k in range(11)]
    _record(samples, ticks)
    (s,) = samples
    got = decode(s.bores)
    # near: off-axis 10 then 40 arcsec -> on-Sun 0.5 s (efficiency 1 - 0.1 * 10/60)
    near, far = got["near"], got["far"]
    assert near[0] == pytest.approx(25.0, abs=1e-3) and near[1] == pytest.approx(40.0, abs=1e-3)
    assert near[2] == pytest.approx(0.5, abs=1e-6)
    assert near[3] == pytest.approx(0.5 * (1 - 0.1 * 10 / 60), abs=1e-4)
    # far: off-axis 40 then 10 -> on-Sun 0.5 s, from the second half
    assert far[2] == pytest.approx(0.5, abs=1e-6) and far[1] == pytest.approx(40.0, abs=1e-3)


def test_non_tracking_samples_carry_no_bore_figures() -> None:
    samples: list[Sample] = []
    _record(samples, [(T0_S + 0.1 * k, State.ACQUIRING, 0.0) for k in range(11)])
    assert [s.bores for s in samples] == [None]


def _write(store: TrackingStore, seconds: int, dx_of) -> None:
    """1 s samples, 10 ticks each, the axis ``dx_of(second)`` arcsec east of the Sun."""
    samples: list[Sample] = []
    ticks = [(T0_S + 0.1 * k, State.TRACKING, dx_of(k // 10)) for k in range(10 * seconds + 1)]
    _record(samples, ticks)
    for s in samples:
        store.add_sample(s)
    store.flush()


def test_exposure_per_bore_and_bore_intervals_from_the_store(tmp_path) -> None:
    with TrackingStore(tmp_path / "log.sqlite") as store:
        # 100 s: on the Sun, except 20..29 s the axis sits 50 arcsec east (near: 60 arcsec off)
        _write(store, 100, lambda s: 50.0 if 20 <= s < 30 else 0.0)
        r = store.exposure(T0_S, T0_S + 200, intervals=True)
    near, far = r["bores"]["near"], r["bores"]["far"]
    eff10 = 1 - 0.1 * 10 / 60
    # intervals (t_prev, t] take the tick at t: near is 60 arcsec off for ticks 20.0..29.9 s
    assert near["on_sun_s"] == pytest.approx(90.0, abs=1e-3)
    assert near["effective_s"] == pytest.approx(90.0 * eff10, abs=0.01)
    # far: 40 arcsec off while on the Sun, 10 arcsec while the axis is 50 east
    assert far["on_sun_s"] == pytest.approx(10.0, abs=1e-3)
    assert far["tracking_s"] == pytest.approx(100.0, abs=1e-3)
    assert far["max_off_axis_arcsec"] == pytest.approx(40.0, abs=1e-3)
    assert near["effective_s"] <= near["on_sun_s"] <= near["tracking_s"]
    ivs = {(iv["bore"], round(iv["start_s"] - T0_S, 1), round(iv["end_s"] - T0_S, 1))
           for iv in r["bore_intervals"]}
    # rows only partly on the Sun start no interval
    assert ivs == {("near", 0.0, 19.0), ("near", 30.0, 100.0), ("far", 20.0, 29.0)}
    first = next(iv for iv in r["bore_intervals"] if iv["bore"] == "near")
    assert first["mean_off_axis_arcsec"] == pytest.approx(10.0, abs=1e-3)
    assert first["effective_s"] == pytest.approx(first["duration_s"] * eff10, abs=1e-3)
    assert first["boresight"] == "main" and first["n_samples"] == 19


def _old_log(path) -> None:
    """A tracking log as schema 1 wrote it (no ``true_error_arcsec`` nor ``bores`` column)."""
    cols = [f for f in SAMPLE_FIELDS if f not in ("bores", "true_error_arcsec", "true_bores")]
    db = sqlite3.connect(path)
    db.executescript(f"""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL, time_s REAL NOT NULL);
        CREATE TABLE samples (id INTEGER PRIMARY KEY, {', '.join(
            f'{c} TEXT' if c in ('state', 'boresight') else f'{c} REAL' for c in cols)});
        CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, time_s REAL NOT NULL,
            kind TEXT NOT NULL, source TEXT, message TEXT NOT NULL, data TEXT);
        CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, time_s REAL NOT NULL,
            source TEXT NOT NULL, command TEXT NOT NULL, args TEXT NOT NULL, ok INTEGER NOT NULL,
            result TEXT NOT NULL, event_id INTEGER);
        PRAGMA user_version=1;""")
    db.executemany(f"INSERT INTO samples ({', '.join(cols)}) VALUES "
                   f"({', '.join('?' * len(cols))})",
                   [(T0_S + k, 1.0, "tracking", "main", 150.0, EL, 150.0, EL, 0, 0, 1.0, 1.0,
                     1.0) for k in range(1, 61)])
    db.commit()
    db.close()


def test_an_old_log_reads_without_bores_and_is_migrated_for_writing(tmp_path) -> None:
    path = tmp_path / "old.sqlite"
    _old_log(path)
    with TrackingStore(path, readonly=True) as ro:
        r = ro.exposure(T0_S, T0_S + 100)
        got = ro.samples(T0_S, T0_S + 100)
    assert r["on_sun_s"] == pytest.approx(60.0) and r["bores"] == {}
    assert got.size == 60 and all(b is None for b in got["bores"])
    with TrackingStore(path) as store:
        store.add_sample(Sample(T0_S + 61, 1.0, "tracking", "main", 150.0, EL, 150.0, EL,
                                0.0, 0.0, 1.0, 1.0, 1.0, bores='{"near":[10,10,1,0.98]}'))
        store.flush()
        r = store.exposure(T0_S, T0_S + 100)
    assert r["on_sun_s"] == pytest.approx(61.0)
    assert r["bores"]["near"]["effective_s"] == pytest.approx(0.98)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert db.execute("SELECT COUNT(*), COUNT(bores) FROM samples").fetchone() == (61, 1)
    db.close()


def test_a_newer_log_is_refused(tmp_path) -> None:
    path = tmp_path / "new.sqlite"
    TrackingStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    from tracker.log.store import StoreError
    with pytest.raises(StoreError, match="schema"):
        TrackingStore(path, readonly=True)
