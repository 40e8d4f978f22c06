"""Calibration: grid planning, measurement CSV, the fit (the fit recovers a known model), Sun camera, CLI."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from simulator.truth import simulate_grid, simulate_sun_camera, true_direction, truth_model
from tests.support import CONFIG_DIR, arcsecond
from tracker import config
from tracker.cli.main import main
from tracker.mount.calibration import (
    COLUMNS,
    CalibrationError,
    Measurement,
    fit,
    plan_grid,
    read_measurements,
    resolve_sun,
    write_measurements,
)
from tracker.mount.pointing import PointingModel

#: Five misalignment terms of 10-300 arcsec: the simulated mount's truth.
TRUTH = {"IA": 250.0, "IE": -80.0, "NPAE": 40.0, "AN": -150.0, "AW": 60.0}
FIVE = list(TRUTH)


def _with_truth(settings: config.Settings, **terms_arcsec: float) -> config.Settings:
    mis = config.Misalignment(**{f"{k.lower()}_arcsec": v for k, v in terms_arcsec.items()})
    return settings.model_copy(
        update={"simulator": settings.simulator.model_copy(update={"misalignment": mis})})


@pytest.fixture
def mis_settings(sim_settings) -> config.Settings:
    return _with_truth(sim_settings, **TRUTH)


def _sky_error_over_envelope_arcsec(settings, model: PointingModel) -> float:
    """Worst sky distance between the truth and ``model`` over the envelope (arcsec)."""
    env = settings.envelope
    a, e = np.meshgrid(np.linspace(-180.0, 180.0, 73),
                       np.linspace(env.elevation_min_deg, env.elevation_max_deg, 21))
    ta, te = truth_model(settings).axes_to_sky(a, e)
    fa, fe = model.axes_to_sky(a, e)
    return float(np.max(np.hypot((ta - fa) * np.cos(np.radians(te)), te - fe)) * 3600.0)


# ----------------------------------------------------------------------- grid

def test_grid_inside_envelope_and_spread(preset):
    env = preset.envelope
    pts = plan_grid(preset, 30)
    assert len(pts) == 30 and len(set(pts)) == 30
    az = np.array([p[0] for p in pts])
    el = np.array([p[1] for p in pts])
    assert np.all((az >= env.azimuth_min_deg) & (az <= env.azimuth_max_deg))
    assert np.all((el >= env.elevation_min_deg) & (el <= env.elevation_max_deg))
    el_span = env.elevation_max_deg - env.elevation_min_deg
    # the elevation extremes are used (leverage for tan E terms) and the middle too
    assert el.min() < env.elevation_min_deg + 0.06 * el_span
    assert el.max() > env.elevation_max_deg - 0.06 * el_span
    assert len(set(el.round(6))) >= 3
    # azimuth coverage: every sixth of the used range holds a point
    lo = env.azimuth_min_deg if not env.cable_wrap else (env.azimuth_min_deg + env.azimuth_max_deg) / 2 - 180
    span = min(env.azimuth_max_deg - env.azimuth_min_deg, 360.0)
    bins = np.floor((az - lo) / span * 6).clip(0, 5)
    assert set(bins.astype(int)) == set(range(6))


def test_grid_avoids_keep_out_and_is_reproducible(sim_settings):
    env = sim_settings.envelope.model_copy(update={"keep_out": [config.KeepOutZone(
        name="crane", azimuth_min_deg=-60.0, azimuth_max_deg=60.0,
        elevation_min_deg=-30.0, elevation_max_deg=5.0)]})
    s = sim_settings.model_copy(update={"envelope": env})
    for seed in (None, 3):
        pts = plan_grid(s, 30, seed)
        assert len(pts) == 30
        inside = [(a, e) for a, e in pts if -60.0 < a < 60.0 and -30.0 < e < 5.0]
        assert inside == []
    assert plan_grid(s, 30) == plan_grid(s, 30)
    assert plan_grid(s, 30, 3) == plan_grid(s, 30, 3) != plan_grid(s, 30, 4)
    with pytest.raises(CalibrationError, match="at least 3"):
        plan_grid(s, 2)


# ------------------------------------------------------------ the proof

def test_fit_recovers_five_terms_within_one_arcsec(mis_settings):
    """30 grid points, 1 arcsec noise: every term within 1 arcsec, RMS at the noise level."""
    pts = plan_grid(mis_settings, 30)
    rows = simulate_grid(mis_settings, pts, noise_arcsec=1.0, seed=11)
    result = fit(rows, FIVE)
    for name, value in TRUTH.items():
        assert abs(result.model.terms_arcsec[name] - value) < 1.0, name
    assert result.rms_before_arcsec > 200.0
    # radial RMS of two 1-arcsec coordinates is sqrt(2); dof correction sqrt(25/30)
    assert 0.7 * math.sqrt(2) < result.rms_after_arcsec < 1.2 * math.sqrt(2)
    assert result.rejected == ()
    assert result.model.n_points == 30 and result.model.residual_rms_arcsec == result.rms_after_arcsec


@pytest.mark.parametrize("noise_arcsec", [1.0, 2.0])
def test_fit_statistics_over_many_noise_draws(mis_settings, noise_arcsec):
    """Over 20 noise draws: errors agree with the quoted sigmas; the pointing is at noise level.

    NPAE acts on the sky as NPAE sin E (<= 0.42 NPAE at 25 deg elevation), so it is
    the least determined term (sigma ~0.5 arcsec per arcsec of noise with 30 points).
    """
    pts = plan_grid(mis_settings, 30)
    within_1 = 0
    for seed in range(20):
        result = fit(simulate_grid(mis_settings, pts, noise_arcsec, seed), FIVE)
        errors = {k: result.model.terms_arcsec[k] - v for k, v in TRUTH.items()}
        sig = result.model.uncertainties_arcsec
        assert all(abs(errors[k]) < 4.0 * sig[k] for k in TRUTH), (seed, errors, dict(sig))
        assert all(abs(errors[k]) < 1.5 for k in ("IA", "IE", "AN", "AW")), (seed, errors)
        within_1 += all(abs(v) < 1.0 for v in errors.values())
        assert 0.65 < result.rms_after_arcsec / (noise_arcsec * math.sqrt(2)) < 1.25
        assert _sky_error_over_envelope_arcsec(mis_settings, result.model) < 1.5 * noise_arcsec
    if noise_arcsec == 1.0:
        assert within_1 >= 18      # measured: 96 % of draws


def test_default_seven_terms_flag_degenerate_pairs_but_point_well(mis_settings):
    """On a +-25 deg mount CA ~ IA (1/cos E ~ 1) and TF ~ IE: flagged, yet the pointing is fine."""
    rows = simulate_grid(mis_settings, plan_grid(mis_settings, 30), 1.0, 5)
    result = fit(rows)
    assert result.terms == ("IA", "IE", "CA", "NPAE", "AN", "AW", "TF")
    assert any(w.startswith("IA and CA") for w in result.warnings)
    assert any(w.startswith("IE and TF") for w in result.warnings)
    assert result.model.uncertainties_arcsec["CA"] > 2.0
    assert _sky_error_over_envelope_arcsec(mis_settings, result.model) < 1.5


def test_outliers_rejected_and_reported(mis_settings):
    rows = simulate_grid(mis_settings, plan_grid(mis_settings, 30), 1.0, 2)
    bad = {4: (60.0, 0.0), 17: (0.0, -45.0)}
    for i, (dx, dy) in bad.items():
        m = rows[i]
        rows[i] = replace(m, true_az_deg=m.true_az_deg + dx * arcsecond / math.cos(
            math.radians(m.true_el_deg)), true_el_deg=m.true_el_deg + dy * arcsecond)
    result = fit(rows, FIVE)
    assert {label for label, _ in result.rejected} == {"grid point 5", "grid point 18"}
    assert sorted(round(r) for _, r in result.rejected) == pytest.approx([45, 60], abs=4)
    assert result.n_points == 28
    for name, value in TRUTH.items():
        assert abs(result.model.terms_arcsec[name] - value) < 1.0, name
    assert "rejected outlier: grid point 5" in result.report()
    # without rejection the outliers spoil the fit
    kept = fit(rows, FIVE, reject_sigma=1e9)
    assert kept.rejected == () and kept.rms_after_arcsec > 3 * result.rms_after_arcsec


def test_degenerate_fits_refused(mis_settings):
    rows = simulate_grid(mis_settings, plan_grid(mis_settings, 30), 1.0, 2)
    with pytest.raises(CalibrationError, match=r"singular fit: terms (TF, ECEC|ECEC, TF)"):
        fit(rows, ["IA", "IE", "TF", "ECEC"])
    with pytest.raises(CalibrationError, match="4 points cannot determine 5 terms"):
        fit(rows[:4], FIVE)
    flat = [replace(m, axis_el_deg=0.0, true_el_deg=0.0) for m in rows]
    with pytest.raises(CalibrationError, match="no information on NPAE"):
        fit(flat, ["IA", "NPAE"])
    with pytest.raises(CalibrationError, match="unknown pointing term"):
        fit(rows, ["IA", "FOO"])
    with pytest.raises(CalibrationError, match="lack a true direction"):
        fit([replace(rows[0], kind="sun", true_az_deg=None, true_el_deg=None)] + rows, FIVE)


def test_true_direction_is_the_configured_misalignment(mis_settings):
    az, el = true_direction(mis_settings, 100.0, 10.0)
    # IA = 250: the axis points 250 arcsec (in azimuth) west of where the encoder says, and more
    exp = PointingModel(TRUTH).axes_to_sky(100.0, 10.0)
    assert (az, el) == pytest.approx(exp, abs=1e-12)
    assert abs(az - 100.0) > 200 * arcsecond


# ------------------------------------------------------------------ Sun camera

def _times(days: list[str], step_s: float = 1200.0) -> list[float]:
    out: list[float] = []
    for d in days:
        t0 = dt.datetime.fromisoformat(d + "T00:00:00+00:00").timestamp()
        out += list(t0 + np.arange(0.0, 86400.0, step_s))
    return out


@pytest.mark.slow       # astropy's first Sun position costs ~4 s
def test_sun_camera_fit_uses_apparent_sun(mis_settings):
    times = _times(["2025-03-20", "2025-06-21", "2025-12-21"])
    rows = simulate_sun_camera(mis_settings, times, noise_arcsec=1.0, seed=4)
    assert len(rows) > 30
    assert all(m.kind == "sun" and m.true_az_deg is None for m in rows)
    assert all(-25.0 <= m.axis_el_deg <= 25.0 for m in rows)
    result = fit(resolve_sun(rows, mis_settings), FIVE)
    for name, value in TRUTH.items():
        sig = result.model.uncertainties_arcsec[name]
        assert abs(result.model.terms_arcsec[name] - value) < max(1.0, 4 * sig), name
    assert result.rms_after_arcsec < 1.3 * math.sqrt(2)
    assert _sky_error_over_envelope_arcsec(mis_settings, result.model) < 2.0
    # Treating the camera data as geometric (no refraction) is badly wrong near the horizon.
    geometric = fit(resolve_sun([replace(m, pressure_hpa=0.0) for m in rows], mis_settings), FIVE)
    assert geometric.rms_after_arcsec > 30 * result.rms_after_arcsec


@pytest.mark.slow
def test_sun_camera_rear_boresight_of_cast(sim_settings):
    cast = _with_truth(config.load(CONFIG_DIR / "cast.toml"), IA=120.0, IE=-60.0, AN=30.0)
    times = _times(["2025-03-20", "2025-04-20"], step_s=300.0)
    rear = simulate_sun_camera(cast, times, 0.5, 1, boresight="rear")
    front = simulate_sun_camera(cast, times, 0.5, 1, boresight="front")
    assert rear and front
    # the rear end sees the Sun at sunset (west), the axis points east: axis az within 50..130
    assert all(50.0 <= m.axis_az_deg <= 130.0 for m in rear + front)
    rear_hours = {dt.datetime.fromtimestamp(m.time_utc_s, dt.UTC).hour for m in rear}
    front_hours = {dt.datetime.fromtimestamp(m.time_utc_s, dt.UTC).hour for m in front}
    assert min(rear_hours) > max(front_hours)
    result = fit(resolve_sun(rear + front, cast), ["IA", "IE", "AN"])
    assert result.model.terms_arcsec["IA"] == pytest.approx(120.0, abs=2.0)
    assert result.model.terms_arcsec["IE"] == pytest.approx(-60.0, abs=1.0)


# ------------------------------------------------------------------ CSV files

def test_measurement_csv_round_trip(tmp_path, mis_settings):
    grid = simulate_grid(mis_settings, plan_grid(mis_settings, 6), 1.0, 1)
    sun = [Measurement("sun", 95.5, 4.25, time_utc_s=1742450400.0, pressure_hpa=1012.0,
                       temperature_c=5.5, boresight="main")]
    p = tmp_path / "m.csv"
    write_measurements(p, grid + sun)
    back = read_measurements(p)
    assert len(back) == 7
    for a, b in zip(grid + sun, back, strict=True):
        assert b.kind == a.kind and b.boresight == a.boresight
        assert b.axis_az_deg == pytest.approx(a.axis_az_deg, abs=1e-7)
        assert (b.true_az_deg is None) == (a.true_az_deg is None)
    assert back[-1].time_utc_s == 1742450400.0
    assert back[-1].temperature_c == 5.5
    assert p.read_text().splitlines()[-1].startswith("sun,2025-03-20T06:00:00Z,")


HEADER = ",".join(COLUMNS)


@pytest.mark.parametrize("body, line, column, match", [
    ("grid,,10,5,10.1,5.1,,,\nstar,,10,5,10,5,,,\n", 3, "kind", "kind = 'star'"),
    ("grid,,ten,5,10,5,,,\n", 2, "axis_az_deg", "'ten' is not a number"),
    ("grid,,10,,10,5,,,\n", 2, "axis_el_deg", "axis_el_deg is empty"),
    ("grid,,10,5,,,,,\n", 2, "true_az_deg", "grid rows need true_az_deg"),
    ("grid,,10,5,10,,,,\n", 2, "true_el_deg", "both true_az_deg and true_el_deg"),
    ("sun,,10,5,,,,,\n", 2, "time_utc", "sun rows need time_utc"),
    ("sun,2025-03-20T06:00:00,10,5,,,,,\n", 2, "time_utc", "no time zone"),
    ("sun,yesterday,10,5,,,,,\n", 2, "time_utc", "neither ISO 8601"),
    ("grid,,10,95,10,5,,,\n", 2, "axis_el_deg", "outside -90..90"),
    ("grid,,10,5,10,5,,,\ngrid,,nan,5,10,5,,,\n", 3, "axis_az_deg", "must be finite"),
    ("sun,2025-03-20T06:00:00Z,10,5,,,2000,,\n", 2, "pressure_hpa", "outside 0..1200"),
    ("grid,,10,5,10,5,,,,extra\n", 2, None, "more fields than header"),
])
def test_bad_rows_name_file_line_and_column(tmp_path, body, line, column, match):
    p = tmp_path / "bad.csv"
    p.write_text("# a comment line\n" + HEADER + "\n" + body)
    with pytest.raises(CalibrationError, match=match) as info:
        read_measurements(p)
    assert info.value.line == line + 1          # +1 for the comment line
    assert info.value.column == column
    assert f"bad.csv:{line + 1}" in str(info.value)


@pytest.mark.parametrize("text, match", [
    ("", "empty file"),
    ("kind,axis_az_deg\n", "missing column 'axis_el_deg'"),
    ("kind,axis_az_deg,axis_el_deg,colour\n", "unknown column"),
    (HEADER + "\n", "no measurements"),
])
def test_bad_files(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(CalibrationError, match=match):
        read_measurements(p)
    with pytest.raises(CalibrationError, match="cannot read"):
        read_measurements(tmp_path / "missing.csv")


def test_unknown_boresight_in_sun_row(mis_settings):
    row = Measurement("sun", 95.0, 4.0, time_utc_s=1742450400.0, boresight="back")
    with pytest.raises(config.ConfigError, match="unknown boresight 'back'"):
        resolve_sun([row], mis_settings)


# ------------------------------------------------------------------------ CLI

def test_cli_grid_simulate_fit(tmp_path):
    text = (CONFIG_DIR / "sim.toml").read_text() + (
        "\n[simulator.misalignment]\n" + "\n".join(f"{k.lower()}_arcsec = {v}" for k, v in TRUTH.items())
        + "\n")
    cfg = tmp_path / "mis.toml"
    cfg.write_text(text)
    runner = CliRunner()
    grid, meas, model = tmp_path / "grid.csv", tmp_path / "meas.csv", tmp_path / "model.toml"
    r = runner.invoke(main, ["calibrate", "grid", "--config", str(cfg), "--n", "30", "--out", str(grid)])
    assert r.exit_code == 0, r.output
    assert len(grid.read_text().splitlines()) == 31
    r = runner.invoke(main, ["calibrate", "simulate", "--config", str(cfg), "--grid", str(grid),
                             "--noise-arcsec", "1", "--seed", "11", "--out", str(meas)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["calibrate", "fit", str(meas), "--out", str(model),
                             "--terms", ",".join(FIVE)])
    assert r.exit_code == 0, r.output
    assert "sky RMS before" in r.output and "+-" in r.output
    m = PointingModel.load(model)
    assert m.n_points == 30 and m.fit_date_utc.endswith("Z")
    for name, value in TRUTH.items():
        assert abs(m.terms_arcsec[name] - value) < 1.0
    # bad input: clear error, exit status 2, no model written
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "\ngrid,,10,5,x,5,,,\n")
    r = runner.invoke(main, ["calibrate", "fit", str(bad), "--out", str(tmp_path / "no.toml")])
    assert r.exit_code == 2
    assert "bad.csv:2: true_az_deg = 'x' is not a number" in r.output
    assert not (tmp_path / "no.toml").exists()


@pytest.mark.slow
def test_cli_sun_camera_simulate_and_fit(tmp_path):
    cfg = tmp_path / "mis.toml"
    cfg.write_text((CONFIG_DIR / "sim.toml").read_text()
                   + "\n[simulator.misalignment]\nia_arcsec = 100.0\nie_arcsec = -50.0\n")
    runner = CliRunner()
    r = runner.invoke(main, ["calibrate", "simulate", "--config", str(cfg), "--out", "x.csv"])
    assert r.exit_code == 2 and "give --grid FILE and/or --sun-start" in r.output
    meas, model = tmp_path / "sun.csv", tmp_path / "sun.toml"
    r = runner.invoke(main, ["calibrate", "simulate", "--config", str(cfg),
                             "--sun-start", "2025-03-20T00:00:00Z", "--sun-end", "2025-03-21T00:00:00Z",
                             "--sun-step-s", "900", "--noise-arcsec", "0.5", "--out", str(meas)])
    assert r.exit_code == 0, r.output
    rows = read_measurements(meas)
    assert len(rows) >= 10 and all(m.kind == "sun" for m in rows)
    r = runner.invoke(main, ["calibrate", "fit", str(meas), "--config", str(cfg),
                             "--terms", "IA,IE", "--out", str(model)])
    assert r.exit_code == 0, r.output
    m = PointingModel.load(model)
    assert m.terms_arcsec["IA"] == pytest.approx(100.0, abs=1.0)
    assert m.terms_arcsec["IE"] == pytest.approx(-50.0, abs=1.0)


# ----------------------------------------------------------------------- track map

@pytest.mark.parametrize("preset_name, step_deg", [("cast", 5.0), ("babyiaxo", 10.0)])
def test_a_track_map_fit_predicts_the_tilt_at_points_it_never_saw(preset_name, step_deg):
    """The simulated mount's track (seeded pitch and roll against azimuth, as SimMount tilts
    it) measured on one grid; the model with a track map predicts a second, shifted grid
    within about the survey noise, where the terms alone leave the track's pattern."""
    s = config.load(CONFIG_DIR / f"{preset_name}.toml")
    assert s.simulator.track_unevenness_arcsec >= 2.0
    terms = ["IA", "IE", "CA", "AN", "AW"]
    rows = simulate_grid(s, plan_grid(s, 160), noise_arcsec=0.3, seed=3)
    plain = fit(rows, terms)
    mapped = fit(rows, terms, track_map_step_deg=step_deg)
    tm = mapped.model.track_map
    assert tm is not None and plain.model.track_map is None
    assert tm.periodic == (preset_name == "babyiaxo")     # CAST's rails: 80 deg of azimuth
    # A second grid, half a spacing off the first, other noise: out of sample.
    test = simulate_grid(s, [(az + 1.3, el * 0.9) for az, el in plan_grid(s, 60)],
                         noise_arcsec=0.0, seed=9)

    def rms(model: PointingModel) -> float:
        a = np.array([m.axis_az_deg for m in test])
        e = np.array([m.axis_el_deg for m in test])
        pa, pe = model.axes_to_sky(a, e)
        ta = np.array([m.true_az_deg for m in test])
        te = np.array([m.true_el_deg for m in test])
        return float(np.sqrt(np.mean(((ta - pa) * np.cos(np.radians(te))) ** 2
                                     + (te - pe) ** 2)) * 3600.0)

    assert rms(mapped.model) < 0.3                       # the noise-free truth, predicted
    assert rms(mapped.model) < 0.6 * rms(plain.model)
    assert mapped.rms_after_arcsec < plain.rms_after_arcsec
    with pytest.raises(CalibrationError, match="track map step"):
        fit(rows, terms, track_map_step_deg=0.0)


def test_sun_camera_rows_see_the_track_as_the_mount_tilts():
    """Noise-free Sun-camera rows on the simulated CAST: the encoders plus the track's tilt
    there (as SimMount tilts the magnet) point the axis at the apparent Sun, to 0.01"; the
    encoders alone are off by the rails' pattern."""
    from simulator.mount import mount_track

    cast = config.load(CONFIG_DIR / "cast.toml")
    t0 = dt.datetime(2026, 3, 20, 5, 0, tzinfo=dt.UTC).timestamp()
    times = np.arange(t0, t0 + 3 * 3600.0, 300.0)
    rows = resolve_sun(simulate_sun_camera(cast, times, noise_arcsec=0.0, seed=1), cast)
    assert len(rows) >= 5                    # the Sun above the horizon, below +8 deg
    track = mount_track(cast)
    off_enc, off_true = [], []
    for m in rows:
        pitch, roll = track.tilt_deg(m.axis_az_deg)
        true_az = m.axis_az_deg + roll * math.tan(math.radians(m.axis_el_deg))
        for out, (a, e) in ((off_enc, (m.axis_az_deg, m.axis_el_deg)),
                            (off_true, (true_az, m.axis_el_deg + pitch))):
            out.append(math.hypot((a - m.true_az_deg) * math.cos(math.radians(e)),
                                  e - m.true_el_deg) * 3600.0)
    assert max(off_true) < 0.01
    assert max(off_enc) > 0.5
