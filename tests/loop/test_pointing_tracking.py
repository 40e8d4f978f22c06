"""Issue 7 proof: on a misaligned simulated mount, tracking meets the accuracy targets with the
fitted pointing model and misses them without it.  Errors are the simulator's truth (where the
magnet really points), not what the encoders say."""

from __future__ import annotations

import pytest

from simulator.truth import simulate_grid
from tests.support import CONFIG_DIR
from tracker import config
from tracker.mount.calibration import fit, plan_grid
from tracker.mount.pointing import PointingModel
from tracker.planning.planner import plan
from tracker.service import dryrun

MISALIGNMENT = {"ia_arcsec": 250.0, "ie_arcsec": -80.0, "npae_arcsec": 40.0,
                "an_arcsec": -150.0, "aw_arcsec": 60.0}


@pytest.fixture(scope="module")
def misaligned() -> config.Settings:
    s = config.load(CONFIG_DIR / "sim.toml")
    sim = s.simulator.model_copy(update={
        "misalignment": s.simulator.misalignment.model_copy(update=MISALIGNMENT)})
    return s.model_copy(update={"simulator": sim})


@pytest.fixture(scope="module")
def fitted(misaligned) -> PointingModel:
    rows = simulate_grid(misaligned, plan_grid(misaligned, n=30, seed=3), noise_arcsec=1.0, seed=4)
    result = fit(rows, terms=["IA", "IE", "NPAE", "AN", "AW"])
    for name, true in (("IA", 250.0), ("IE", -80.0), ("NPAE", 40.0), ("AN", -150.0), ("AW", 60.0)):
        assert result.model.terms_arcsec[name] == pytest.approx(true, abs=1.5)
    return result.model


async def _track(settings, model) -> dryrun.DryRunReport:
    w = plan(settings, "2026-03-20T00:00:00Z", "2026-03-21T00:00:00Z").windows[0]
    return await dryrun.run(settings, w.start_s - 400.0, 1500.0, pointing=model)


@pytest.mark.slow
async def test_tracking_with_the_fitted_model_meets_the_targets(misaligned, fitted) -> None:
    report = await _track(misaligned, fitted)
    assert report.true_rms_error_arcsec is not None
    assert report.true_rms_error_arcsec <= 3.0
    assert report.true_max_error_arcsec <= 10.0


@pytest.mark.slow
async def test_tracking_without_the_model_misses_them(misaligned) -> None:
    report = await _track(misaligned, PointingModel.identity())
    # The encoders say all is well; the magnet is off by the misalignment.
    assert report.rms_error_arcsec <= 2.0
    assert report.true_rms_error_arcsec > 100.0
