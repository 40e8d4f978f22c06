"""A track map in the pointing model, on the engine and the simulator's truth: the simulated
CAST (3" p-p rails) in its evening window tracks closer to the Sun with the model fitted to
a simulated survey grid (the terms and a 5-deg track map) than with the terms alone, and
those than with the identity model; over the whole window (93 min), whose azimuths span
more of the rails than its first half hour does."""

from __future__ import annotations

import pytest

from simulator.truth import simulate_grid
from tests.support import CONFIG_DIR
from tracker import config
from tracker.mount.calibration import fit, plan_grid
from tracker.planning.planner import plan
from tracker.service import dryrun


def _with_model(settings: config.Settings, path: str) -> config.Settings:
    return settings.model_copy(
        update={"pointing": settings.pointing.model_copy(update={"model_file": path})})


@pytest.mark.slow
async def test_the_fitted_track_map_brings_the_magnet_closer_to_the_sun(tmp_path) -> None:
    cast = config.load(CONFIG_DIR / "cast.toml")
    rows = simulate_grid(cast, plan_grid(cast, 120), noise_arcsec=0.3, seed=3)
    terms = ["IA", "IE", "CA", "AN", "AW"]
    fit(rows, terms).model.save(tmp_path / "terms.toml")
    fit(rows, terms, track_map_step_deg=5.0).model.save(tmp_path / "mapped.toml")
    w = plan(cast, "2026-03-20T00:00:00Z", "2026-03-21T00:00:00Z").windows[-1]
    assert w.boresight == "rear"                                    # the evening window
    true_rms = {}
    for name in ("", "terms.toml", "mapped.toml"):
        s = _with_model(cast, str(tmp_path / name) if name else "")
        r = await dryrun.run(s, w.start_s - 600.0, w.end_s - w.start_s + 600.0)
        assert r.faults == 0 and r.efficiency >= 0.99
        true_rms[name] = r.true_rms_error_arcsec
    assert true_rms[""] > 1.0                 # the rails' tilt the encoders cannot see
    assert true_rms["mapped.toml"] < 0.8
    assert true_rms["mapped.toml"] < 0.85 * true_rms["terms.toml"] < true_rms[""]
