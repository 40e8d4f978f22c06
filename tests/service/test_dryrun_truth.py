"""Truth in the record: a dry run on the simulated mount logs, per sample, the TRUE pointing error
(where the magnet's mechanical axis really points vs the Sun) beside the encoder-based one; its
report gives both, and the log's exposure agrees with the exposure by the truth.  An engine
without truth (real drives) logs NULL."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.support import CONFIG_DIR
from tests.support.rig import Rig, first_window
from tracker import config
from tracker.log.store import TrackingStore
from tracker.service import dryrun


@pytest.fixture(scope="module")
def sim() -> config.Settings:
    return config.load(CONFIG_DIR / "sim.toml")


async def test_a_dry_run_logs_and_reports_the_true_error(sim, tmp_path) -> None:
    w = first_window(sim)
    db = tmp_path / "dry.sqlite"
    report = await dryrun.run(sim, w.start_s - 600.0, 2400.0, db_path=db)
    assert report.faults == 0 and report.efficiency >= 0.99
    # Targets on the truth (default wind 5 m/s, gusts 3 m/s).
    assert report.true_rms_error_arcsec is not None and report.true_rms_error_arcsec <= 2.0
    assert report.true_max_error_arcsec <= 10.0
    # The log's samples give the same picture as the control-rate truth.
    assert report.log_true_rms_error_arcsec == pytest.approx(report.true_rms_error_arcsec,
                                                             rel=0.3)
    assert report.log_true_max_error_arcsec <= report.true_max_error_arcsec + 1e-9
    # Exposure from the log (encoders) checked against the truth: within 1 %.
    assert report.true_on_sun_s == pytest.approx(report.tracked_s, rel=0.01)
    assert "true error" in report.summary() and "true on-Sun" in report.summary()

    store = TrackingStore(db, readonly=True)
    try:
        rows = store.samples(w.start_s - 600.0, w.start_s + 3000.0)
        tracking = rows["state"] == "tracking"
        assert tracking.sum() > 1000
        true_err = rows["true_error_arcsec"]
        assert np.isfinite(true_err[tracking]).all()
        assert np.isnan(true_err[~tracking]).all()    # no target's truth outside tracking
        # Truth and encoders differ (structure, track, drift) but by arc-seconds, not more.
        diff = np.abs(true_err[tracking] - rows["error_arcsec"][tracking])
        assert 0.0 < float(np.max(diff)) < 5.0
        ex = store.exposure(w.start_s - 600.0, w.start_s + 3000.0, settle_s=sim.tracking.settle_s)
        assert ex["true_rms_error_arcsec"] == pytest.approx(report.log_true_rms_error_arcsec,
                                                            rel=1e-3)
    finally:
        store.close()


async def test_an_engine_without_truth_logs_null(sim, tmp_path) -> None:
    w = first_window(sim)
    rig = Rig(sim, w.start_s - 300.0, db=tmp_path / "real.sqlite")   # no truth port
    await rig.engine.start()
    await rig.run(900.0)
    await rig.engine.shutdown()
    store = TrackingStore(tmp_path / "real.sqlite", readonly=True)
    try:
        rows = store.samples(w.start_s - 300.0, w.start_s + 900.0)
        assert (rows["state"] == "tracking").any()
        assert all(math.isnan(x) for x in rows["true_error_arcsec"])
        ex = store.exposure(w.start_s - 300.0, w.start_s + 900.0)
        assert ex["rms_error_arcsec"] is not None and ex["true_rms_error_arcsec"] is None
    finally:
        store.close()
