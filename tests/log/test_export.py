"""Exports of the physics record to Parquet, ROOT and CSV, read back with the same library."""

from __future__ import annotations

import csv
import math

import pyarrow.parquet as pq
import pytest
import uproot
from click.testing import CliRunner

from tests.log.test_bore_exposure import _write
from tests.support.records import T0_S
from tracker.cli.main import main
from tracker.log.export import INTERVAL_COLUMNS, ExportError, export_record
from tracker.log.store import TrackingStore
from tracker.mount.bores import decode


@pytest.fixture
def log_path(tmp_path):
    path = tmp_path / "log.sqlite"
    with TrackingStore(path) as store:
        # 100 s tracking; the axis 50 arcsec east from 20 to 30 s (see test_bore_exposure)
        _write(store, 100, lambda s: 50.0 if 20 <= s < 30 else 0.0)
    return path


def _expected(path):
    with TrackingStore(path, readonly=True) as store:
        r = store.exposure(T0_S, T0_S + 200, intervals=True)
        rows = store.samples(T0_S, T0_S + 200)
    return r, rows


def _read(fmt: str, out) -> tuple[dict, dict]:
    """(intervals, samples) as {column: numpy array} read back with the writing library."""
    if fmt == "parquet":
        return (pq.read_table(out / "intervals.parquet").to_pydict(),
                pq.read_table(out / "samples.parquet").to_pydict())
    if fmt == "root":
        with uproot.open(out / "record.root") as f:
            return (f["intervals"].arrays(library="np"), f["samples"].arrays(library="np"))
    tables = []
    for name in ("intervals", "samples"):
        with open(out / f"{name}.csv", newline="") as fh:
            lines = list(csv.DictReader(fh))
        tables.append({k: [row[k] for row in lines] for k in lines[0]})
    return tables[0], tables[1]


def _num(v) -> float:
    return math.nan if v in ("", None) else float(v)


@pytest.mark.parametrize("fmt", ["parquet", "root", "csv"])
def test_export_round_trip(tmp_path, log_path, fmt) -> None:
    r, rows = _expected(log_path)
    with TrackingStore(log_path, readonly=True) as store:
        done = export_record(store, fmt, tmp_path / "out", T0_S, T0_S + 200)
    assert done["intervals"] == 3 and done["samples"] == rows.size == 100
    assert done["bores"] == ["far", "near"]
    ivs, samples = _read(fmt, tmp_path / "out")
    assert set(ivs) == set(INTERVAL_COLUMNS)
    want = r["bore_intervals"]
    assert [str(b) for b in ivs["bore"]] == [iv["bore"] for iv in want]
    for col in ("start_s", "end_s", "effective_s", "mean_off_axis_arcsec",
                "max_off_axis_arcsec"):
        assert [_num(v) for v in ivs[col]] == pytest.approx([iv[col] for iv in want]), col
    assert [int(v) for v in ivs["n_samples"]] == [iv["n_samples"] for iv in want]
    # the samples: the log's columns and the per-bore figures unpacked
    assert [_num(v) for v in samples["time_s"]] == pytest.approx(list(rows["time_s"]))
    assert [str(s) for s in samples["state"]] == list(rows["state"])
    near_eff = [_num(v) for v in samples["near_effective_s"]]
    assert near_eff == pytest.approx([decode(t)["near"][3] for t in rows["bores"]])
    # totals from the export = the exposure's per-bore figures
    assert sum(near_eff) == pytest.approx(r["bores"]["near"]["effective_s"], abs=1e-4)
    assert sum(_num(v) for v in samples["far_on_sun_s"]) == pytest.approx(
        r["bores"]["far"]["on_sun_s"], abs=1e-4)
    # no truth in this log (as with real drives): no truth columns
    assert done["truth"] is False and "near_true_effective_s" not in samples


@pytest.mark.parametrize("fmt", ["parquet", "root", "csv"])
def test_export_round_trip_carries_the_truth_per_bore(tmp_path, fmt) -> None:
    """A log with the simulator's truth (the truth 50 arcsec east from 20 to 30 s while the
    encoders see the axis on the Sun): the samples carry ``<bore>_true_*`` columns whose
    totals are the exposure's ``true_bores``."""
    from tests.log.test_true_bores import _record
    path = tmp_path / "truth.sqlite"
    with TrackingStore(path) as store:
        for s in _record(100, lambda k: 50.0 if 20 <= k < 30 else 0.0):
            store.add_sample(s)
    r, rows = _expected(path)
    with TrackingStore(path, readonly=True) as store:
        done = export_record(store, fmt, tmp_path / "out", T0_S, T0_S + 200)
    assert done["truth"] is True and done["samples"] == 100
    _, samples = _read(fmt, tmp_path / "out")
    true_eff = [_num(v) for v in samples["near_true_effective_s"]]
    assert true_eff == pytest.approx([decode(t)["near"][3] for t in rows["true_bores"]])
    for name in ("near", "far"):
        for q in ("on_sun_s", "effective_s"):
            assert sum(_num(v) for v in samples[f"{name}_true_{q}"]) == pytest.approx(
                r["true_bores"][name][q], abs=1e-4), (name, q)
            assert sum(_num(v) for v in samples[f"{name}_{q}"]) == pytest.approx(
                r["bores"][name][q], abs=1e-4), (name, q)
    # by the truth, far (10 arcsec off while the axis is 50 east) was on the Sun 10 s
    assert r["true_bores"]["far"]["on_sun_s"] == pytest.approx(10.0, abs=1e-3)
    assert [_num(v) for v in samples["far_true_max_off_axis_arcsec"]][25] == pytest.approx(
        10.0, abs=1e-3)


def test_export_cli_and_bad_input(tmp_path, log_path) -> None:
    out = tmp_path / "pq"
    res = CliRunner().invoke(main, ["export", "--db", str(log_path), "--format", "parquet",
                                    "--out", str(out), "--config", "config/sim.toml"])
    assert res.exit_code == 0, res.output
    assert "3 bore intervals, 100 samples (bores: bore1, bore2)" in res.output
    # the sim config names bore1 and bore2: their columns are there (NaN: not in this log)
    cols = pq.read_table(out / "samples.parquet").column_names
    assert "bore1_effective_s" in cols and "near_effective_s" not in cols
    res = CliRunner().invoke(main, ["export", "--db", str(log_path), "--format", "hdf5",
                                    "--out", str(out)])
    assert res.exit_code == 2 and "'hdf5' is not one of 'parquet', 'root', 'csv'" in res.output
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with TrackingStore(log_path, readonly=True) as store:
        with pytest.raises(ExportError, match="cannot create the export folder"):
            export_record(store, "csv", blocker / "sub", T0_S, T0_S + 200)
        with pytest.raises(ExportError, match="unknown export format 'xls'"):
            export_record(store, "xls", tmp_path / "x", T0_S, T0_S + 200)
    assert not (tmp_path / "x").exists()
