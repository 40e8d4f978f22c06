"""``tracker exposure`` and ``tracker report`` show each bore's exposure by the encoders and,
when the log has the simulator's truth, by the truth; a log without truth shows no truth."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from tests.log.test_true_bores import _record
from tracker.cli.main import main
from tracker.log.store import TrackingStore


def _log(path, truth: bool) -> None:
    with TrackingStore(path) as store:
        for s in _record(100, lambda k: (50.0 if 20 <= k < 30 else 0.0) if truth else None):
            store.add_sample(s)


@pytest.mark.parametrize("truth", [True, False])
def test_exposure_and_report_show_each_bore_by_the_encoders_and_by_the_truth(tmp_path,
                                                                            truth) -> None:
    db = tmp_path / "log.sqlite"
    _log(db, truth)
    run = CliRunner().invoke
    res = run(main, ["exposure", "--db", str(db), "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    assert r["bores"]["near"]["on_sun_s"] == pytest.approx(100.0, abs=1e-3)
    if truth:
        assert r["true_bores"]["near"]["on_sun_s"] == pytest.approx(90.0, abs=1e-3)
        assert r["true_bores"]["far"]["on_sun_s"] == pytest.approx(10.0, abs=1e-3)
    else:
        assert r["true_bores"] == {}
    res = run(main, ["exposure", "--db", str(db)])
    assert res.exit_code == 0, res.output
    assert "bore near     on-Sun 100.0 s" in res.output and "(encoders)" in res.output
    assert ("on-Sun 90.0 s" in res.output and "(simulator truth)" in res.output) is truth
    out = tmp_path / "rep"
    res = run(main, ["report", "--db", str(db), "--out", str(out), "--no-plots"])
    assert res.exit_code == 0, res.output
    assert ("(simulator truth)" in res.output) is truth
    with open(out / "days.csv") as f:
        (day,) = list(csv.DictReader(f))
    assert float(day["near_on_sun_s"]) == pytest.approx(100.0, abs=1e-3)
    assert float(day["far_on_sun_s"]) == 0.0 and day["far_mean_off_axis_arcsec"] != ""
    assert ("near_true_on_sun_s" in day) is truth
    if truth:
        assert float(day["near_true_on_sun_s"]) == pytest.approx(90.0, abs=1e-3)
        assert float(day["far_true_effective_s"]) == pytest.approx(
            r["true_bores"]["far"]["effective_s"], rel=1e-5)
