"""The physics record agrees with itself: on-Sun <= tracking <= logged for any log, and a
dry run, ``tracker exposure`` and ``tracker report`` give the same figures for one log."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support import CONFIG_DIR
from tests.support.records import sample_array
from tracker import config
from tracker.log.export import column_name
from tracker.log.exposure import _EPS_S, ExposureAccumulator
from tracker.log.report import build_report
from tracker.log.store import TrackingStore
from tracker.planning.planner import plan
from tracker.service import dryrun

STATES = ["idle", "slewing", "waiting", "acquiring", "tracking", "parked", "manual", "fault"]


@st.composite
def logs(draw) -> np.ndarray:
    n = draw(st.integers(1, 60))
    t = 1.7e9
    rows = []
    for _ in range(n):
        dt = draw(st.floats(0.0, 5.0))
        t += dt + draw(st.sampled_from([0.0, 0.0, 0.0, 3.0]))        # some gaps
        on_sun = draw(st.one_of(st.floats(-1.0, 10.0), st.just(float("nan"))))
        err = draw(st.floats(0.0, 1e4))
        rows.append((t, dt, draw(st.sampled_from(STATES)), draw(st.sampled_from(["a", "b"])),
                     100.0, 5.0, 100.0, 5.0, 100.0, 5.0, err, err, on_sun))
    return sample_array(rows)


@given(rows=logs(), cut=st.floats(0.0, 1.0))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
def test_on_sun_never_exceeds_tracking_nor_tracking_the_logged_time(rows, cut) -> None:
    """Whatever a log holds (even on_sun_s larger than the row, negative, NaN, or on-Sun
    seconds in a non-tracking row): on-Sun <= tracking <= logged <= span."""
    t0 = float(rows["time_s"][0] - rows["dt_s"][0])
    t1 = float(rows["time_s"][-1])
    t1 = t0 + (t1 - t0) * cut if cut > 0 else t1
    acc = ExposureAccumulator(t0, max(t1, t0 + 1e-3), intervals=True)
    acc.feed(rows)
    r = acc.result()
    eps = 1e-6
    # Row lengths are dt_s, but interval and span lengths are differences of float64 epoch
    # seconds (one ulp is 2.4e-7 s in 2026), and a row within _EPS_S of its length counts as
    # fully on the Sun: those figures agree to that much per row, not to a fixed 1 us.
    eps_clock = eps + len(rows) * (float(np.spacing(t1)) + _EPS_S)
    assert r["on_sun_s"] <= r["tracking_s"] + eps
    assert r["tracking_s"] <= r["logged_s"] + eps
    assert r["logged_s"] <= r["span_s"] + eps_clock
    assert r["intervals_s"] <= r["on_sun_s"] + eps_clock
    for b in r["boresights"].values():
        assert b["on_sun_s"] <= b["tracking_s"] + eps


@pytest.fixture(scope="module")
def sim() -> config.Settings:
    return config.load(CONFIG_DIR / "sim.toml")


@pytest.mark.slow
@pytest.mark.parametrize("into_window_s", [-900.0, 1800.0])
async def test_dry_run_exposure_and_report_agree_on_one_log(sim, tmp_path, into_window_s) -> None:
    """Starting before a window, or inside one at park (the slew to the Sun is acquisition,
    not tracking): the dry run's figures are those of ``tracker exposure`` on its log, and
    tracking never exceeds the planned window time."""
    w = next(w for w in plan(sim, 1773964800.0, 1773964800.0 + 86400.0).windows
             if w.end_s - w.start_s > 7200.0)
    db = tmp_path / "run.sqlite"
    start = w.start_s + into_window_s
    report = await dryrun.run(sim, start, 3600.0, db_path=db)
    with TrackingStore(db, readonly=True) as store:
        ex = store.exposure(start, start + 3600.0, settle_s=sim.tracking.settle_s)
    assert report.tracked_s == pytest.approx(ex["on_sun_s"], abs=1e-6)
    assert report.rms_error_arcsec == pytest.approx(ex["rms_error_arcsec"], rel=1e-6)
    assert report.max_error_arcsec == pytest.approx(ex["max_error_arcsec"], rel=1e-6)
    assert ex["on_sun_s"] <= ex["tracking_s"] <= report.available_s + 1e-6
    assert ex["rms_error_arcsec"] < 2.0 and ex["max_error_arcsec"] < 10.0
    if into_window_s > 0:
        assert ex["state_s"].get("acquiring", 0.0) > 10.0
    # per bore, by the encoders and by the truth: the dry run's, exposure's and report's
    # figures are one
    with TrackingStore(db, readonly=True) as store:
        rep = build_report(store, start, start + 3600.0, settings=sim)
    assert set(ex["bores"]) == set(ex["true_bores"]) == {"bore1", "bore2"}
    for key, prefix, dry in (("bores", "", report.bores),
                             ("true_bores", "true_", report.log_true_bores)):
        for name, fig in ex[key].items():
            for q in ("on_sun_s", "effective_s", "mean_off_axis_arcsec"):
                assert dry[name][q] == pytest.approx(fig[q], abs=1e-6), (key, name, q)
                assert rep["total"][key][name][q] == pytest.approx(fig[q], abs=1e-6)
            for q in ("on_sun_s", "effective_s"):          # days.csv's columns, per UTC day
                assert sum(d[column_name(name, prefix + q)] for d in rep["days"]) == \
                    pytest.approx(fig[q], abs=1e-6), (key, name, q)


def test_intervals_carry_the_suns_position_and_distance_and_background_is_the_rest(sim) -> None:
    """Two on-Sun stretches: each interval has the Sun's mean direction (the tracked target)
    and the observer-Sun distance at its middle; off-Sun intervals are the complement."""
    from tracker.astro.ephemeris import sun_altaz, sun_distance_au

    site = (sim.site.latitude_deg, sim.site.longitude_deg, sim.site.height_m)
    t0 = 1782043200.0                                    # 2026-06-21T12:00Z
    rows = []
    for k in range(120):
        t = t0 + k + 1.0
        on = not (40 <= k < 70)
        az, el = sun_altaz(t, *site)
        rows.append((t, 1.0, "tracking" if on else "idle", "main", float(az), float(el),
                     float(az), float(el), 0.0, 0.0, 1.0, 1.0, 1.0 if on else 0.0))
    acc = ExposureAccumulator(t0, t0 + 120.0, intervals=True, site=site)
    acc.feed(sample_array(rows))
    r = acc.result()
    ivs = r["intervals"]
    assert [round(iv["duration_s"]) for iv in ivs] == [40, 50]
    for iv in ivs:
        mid = 0.5 * (iv["start_s"] + iv["end_s"])
        az, el = sun_altaz(mid, *site)
        assert iv["sun_mean_az_deg"] == pytest.approx(float(az), abs=0.01)
        assert iv["sun_mean_el_deg"] == pytest.approx(float(el), abs=0.01)
        assert iv["sun_distance_au"] == pytest.approx(float(sun_distance_au(mid, *site)),
                                                      rel=1e-9)
        assert 1.016 < iv["sun_distance_au"] < 1.017          # near aphelion in June
    off = r["off_sun_intervals"]
    assert [round(o["duration_s"]) for o in off] == [30]
    assert sum(iv["duration_s"] for iv in ivs) + sum(o["duration_s"] for o in off) == \
        pytest.approx(120.0)
