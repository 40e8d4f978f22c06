"""Pointing model: term signs against exact geometry, exact inverse, TOML file, speed."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from tests.support import CONFIG_DIR, arcsecond
from tracker import config
from tracker.errors import ConfigError
from tracker.mount.pointing import STANDARD_TERMS, TERMS, PointingModel, basis

RNG = np.random.default_rng(7)


def _unit(az_deg: float, el_deg: float) -> np.ndarray:
    """Unit vector (east, north, up) for azimuth from north through east, elevation up."""
    a, e = math.radians(az_deg), math.radians(el_deg)
    return np.array([math.cos(e) * math.sin(a), math.cos(e) * math.cos(a), math.sin(e)])


def _azel(v: np.ndarray) -> tuple[float, float]:
    return (math.degrees(math.atan2(v[0], v[1])) % 360.0,
            math.degrees(math.asin(v[2] / np.linalg.norm(v))))


def _rot(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rotation matrix (right hand) about a unit axis."""
    x, y, z = axis
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[c + x * x * (1 - c), x * y * (1 - c) - z * s, x * z * (1 - c) + y * s],
                     [y * x * (1 - c) + z * s, c + y * y * (1 - c), y * z * (1 - c) - x * s],
                     [z * x * (1 - c) - y * s, z * y * (1 - c) + x * s, c + z * z * (1 - c)]])


def test_identity_is_exact():
    m = PointingModel.identity()
    assert m.axes_to_sky(-250.5, 12.25) == (-250.5, 12.25)
    assert m.sky_to_axes(-250.5, 12.25) == (-250.5, 12.25)


def test_index_terms_signs():
    m = PointingModel({"IA": 36.0, "IE": -18.0})
    az, el = m.axes_to_sky(100.0, 10.0)
    # TPOINT: dA = -IA, dE = +IE (raw encoder -> true direction)
    assert az == pytest.approx(100.0 - 36.0 * arcsecond, abs=1e-12)
    assert el == pytest.approx(10.0 - 18.0 * arcsecond, abs=1e-12)


@pytest.mark.parametrize("az_deg", [0.0, 37.0, 90.0, 200.0, 300.0])
@pytest.mark.parametrize("el_deg", [-25.0, 0.0, 18.0])
def test_axis_tilt_terms_match_rotated_mount(az_deg, el_deg):
    """AN > 0: azimuth axis' top tilted north of the zenith; AW > 0: tilted west.

    The exact geometry: rotate the ideal pointing vector with the tilted mount.
    A 20 arcsec tilt leaves second-order effects below 1e-3 arcsec.
    """
    tilt_arcsec = 20.0
    tilt = math.radians(tilt_arcsec / 3600.0)
    v = _unit(az_deg, el_deg)
    east, north = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    # Tilt north: rotate about the east axis so that up moves towards north (negative angle).
    v_an = _rot(east, -tilt) @ v
    assert (_rot(east, -tilt) @ np.array([0, 0, 1.0]))[1] > 0      # zenith moved north
    # Tilt west: rotate about the north axis so that up moves towards west (negative east).
    v_aw = _rot(north, -tilt) @ v
    assert (_rot(north, -tilt) @ np.array([0, 0, 1.0]))[0] < 0     # zenith moved west
    for name, vec in (("AN", v_an), ("AW", v_aw)):
        true_az, true_el = _azel(vec)
        az, el = PointingModel({name: tilt_arcsec}).axes_to_sky(az_deg, el_deg)
        daz = ((az - true_az + 180.0) % 360.0 - 180.0) * math.cos(math.radians(el_deg))
        assert abs(daz) < 1e-3 * arcsecond, name
        assert abs(el - true_el) < 1e-3 * arcsecond, name


@pytest.mark.parametrize("el_deg", [-25.0, 5.0, 24.0])
def test_collimation_and_nonperpendicularity_geometry(el_deg):
    """CA > 0 and NPAE > 0 both move the beam to smaller azimuth (left, seen from behind)."""
    ca, npae = 30.0, 25.0
    az, el = PointingModel({"CA": ca}).axes_to_sky(120.0, el_deg)
    # On the sky the collimation shift is CA itself, at any elevation.
    assert (az - 120.0) * math.cos(math.radians(el_deg)) == pytest.approx(-ca * arcsecond, rel=1e-9)
    assert el == el_deg
    az, el = PointingModel({"NPAE": npae}).axes_to_sky(120.0, el_deg)
    assert (az - 120.0) * math.cos(math.radians(el_deg)) == pytest.approx(
        -npae * arcsecond * math.sin(math.radians(el_deg)), rel=1e-9)


def test_flexure_sags_most_at_horizon():
    m = PointingModel({"TF": 40.0})
    _, el0 = m.axes_to_sky(10.0, 0.0)
    _, el25 = m.axes_to_sky(10.0, 25.0)
    assert el0 == pytest.approx(-40.0 * arcsecond)
    assert el25 - 25.0 == pytest.approx(-40.0 * arcsecond * math.cos(math.radians(25.0)))


def test_fast_path_agrees_with_term_basis():
    terms = {k: float(RNG.uniform(-300, 300)) for k in TERMS}
    m = PointingModel(terms)
    a = RNG.uniform(-270, 270, 500)
    e = RNG.uniform(-25, 25, 500)
    az, el = m.axes_to_sky(a, e)
    da = sum(v * basis(k, a, e)[0] for k, v in terms.items())
    de = sum(v * basis(k, a, e)[1] for k, v in terms.items())
    assert np.max(np.abs(az - a - da)) < 1e-6 * arcsecond
    assert np.max(np.abs(el - e - de)) < 1e-6 * arcsecond
    # scalar path equals array path
    for i in range(20):
        s = m.axes_to_sky(float(a[i]), float(e[i]))
        assert s[0] == pytest.approx(az[i], abs=1e-12) and s[1] == pytest.approx(el[i], abs=1e-12)


def _big_model() -> PointingModel:
    return PointingModel({"IA": 300.0, "IE": -250.0, "CA": 180.0, "NPAE": -120.0,
                          "AN": 290.0, "AW": -210.0, "TF": 150.0})


def test_round_trip_over_envelope_arrays(sim_settings):
    env = sim_settings.envelope
    a, e = np.meshgrid(np.linspace(env.azimuth_min_deg, env.azimuth_max_deg, 109),
                       np.linspace(env.elevation_min_deg, env.elevation_max_deg, 51))
    m = _big_model()
    az, el = m.axes_to_sky(a, e)
    # the model really moves things (hundreds of arcsec) ...
    assert np.max(np.abs(az - a)) > 300 * arcsecond
    ra, re = m.sky_to_axes(az, el)
    assert ra.shape == a.shape
    # ... and the inverse is exact, in the same azimuth turn (no mod 360)
    assert np.max(np.abs(ra - a)) < 1e-3 * arcsecond
    assert np.max(np.abs(re - e)) < 1e-3 * arcsecond


def test_round_trip_scalar_and_turn_kept():
    m = _big_model()
    worst = 0.0
    for a, e in zip(RNG.uniform(-270, 270, 300), RNG.uniform(-25, 25, 300), strict=True):
        sky = m.axes_to_sky(float(a), float(e))
        back = m.sky_to_axes(*sky)
        assert isinstance(back[0], float) and isinstance(back[1], float)
        worst = max(worst, abs(back[0] - a), abs(back[1] - e))
    assert worst < 1e-3 * arcsecond
    az, _ = m.sky_to_axes(-259.0, 3.0)
    assert -259.2 < az < -258.8


def test_sky_to_axes_scalar_is_fast():
    m = _big_model()
    n = 2000
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            m.sky_to_axes(123.4, 12.3)
        best = min(best, (time.perf_counter() - t0) / n)
    # target < 10 us on an idle machine; generous bound for a shared CI box
    assert best < 40e-6, f"{best * 1e6:.1f} us per call"


def test_from_misalignment():
    mis = config.Misalignment(ia_arcsec=12.0, an_arcsec=-30.0, tf_arcsec=5.0)
    m = PointingModel.from_misalignment(mis)
    assert m.terms_arcsec["IA"] == 12.0 and m.terms_arcsec["AN"] == -30.0
    assert set(m.terms_arcsec) == set(STANDARD_TERMS)


def test_save_load_round_trip(tmp_path):
    m = PointingModel({"IA": 120.5, "AN": -33.25}, {"IA": 0.4, "AN": 0.3},
                      fit_date_utc="2026-11-26T14:00:00Z", residual_rms_arcsec=1.93, n_points=29)
    p = tmp_path / "model.toml"
    m.save(p, fit_info={"rms_before_arcsec": 250.0, "rejected": ["row 7"]})
    back = PointingModel.load(p)
    assert dict(back.terms_arcsec) == {"IA": 120.5, "AN": -33.25}
    assert dict(back.uncertainties_arcsec) == {"IA": 0.4, "AN": 0.3}
    assert back.fit_date_utc == "2026-11-26T14:00:00Z"
    assert back.residual_rms_arcsec == 1.93 and back.n_points == 29
    assert back.axes_to_sky(10.0, 5.0) == m.axes_to_sky(10.0, 5.0)


@pytest.mark.parametrize("text, key", [
    ('[terms_arcsec]\nIA = 1.0\nXYZ = 2.0\n', "terms_arcsec.XYZ"),
    ('[terms_arcsec]\nIA = "big"\n', "terms_arcsec.IA"),
    ('fit_date = "x"\n[terms_arcsec]\nIA = 1.0\n', "fit_date"),
    ('n_points = -3\n[terms_arcsec]\nIA = 1.0\n', "n_points"),
    ('fit_date_utc = "x"\n', "terms_arcsec"),
    ('[terms_arcsec]\nIA = nan\n', "terms_arcsec.IA"),
])
def test_load_bad_file_names_file_and_key(tmp_path, text, key):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        PointingModel.load(p)
    assert info.value.key == key
    assert str(p) in str(info.value)


def test_load_missing_and_invalid_toml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        PointingModel.load(tmp_path / "nope.toml")
    p = tmp_path / "x.toml"
    p.write_text("[terms_arcsec\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        PointingModel.load(p)


def test_unknown_term_in_code_is_rejected():
    with pytest.raises(ConfigError, match="unknown pointing term"):
        PointingModel({"IQ": 1.0})
    with pytest.raises(ConfigError, match="finite"):
        PointingModel({"IA": math.inf})


def test_from_settings(tmp_path, sim_settings):
    assert PointingModel.from_settings(sim_settings).terms_arcsec == {}
    PointingModel({"IA": 12.5}).save(tmp_path / "model.toml")
    text = (tmp_path / "model.toml").read_text()
    assert "IA = 12.5" in text
    cfg = tmp_path / "site.toml"
    cfg.write_text((CONFIG_DIR / "sim.toml").read_text() + '\n[pointing]\nmodel_file = "model.toml"\n')
    s = config.load(cfg)
    assert dict(PointingModel.from_settings(s).terms_arcsec) == {"IA": 12.5}
    cfg.write_text((CONFIG_DIR / "sim.toml").read_text() + '\n[pointing]\nmodel_file = "gone.toml"\n')
    with pytest.raises(ConfigError, match="gone.toml: cannot read"):
        PointingModel.from_settings(config.load(cfg))


def test_offsets_and_describe():
    m = PointingModel({"IA": 36.0, "TF": 10.0}, {"IA": 0.5})
    dx, dy = m.offsets_arcsec(50.0, 0.0)
    assert float(dx) == pytest.approx(-36.0, abs=1e-6)
    assert float(dy) == pytest.approx(-10.0, abs=1e-6)
    text = m.describe()
    assert text.splitlines() == ["IA        +36.00 +- 0.50 arcsec", "TF        +10.00 arcsec"]
    assert PointingModel.identity().describe() == "(identity)"


def test_models_compare_and_hash_by_value():
    a = PointingModel({"IA": 1.0, "AN": 2.0})
    b = PointingModel({"AN": 2.0, "IA": 1.0})
    assert a == b and hash(a) == hash(b)
    assert a != PointingModel({"IA": 1.5, "AN": 2.0})
    assert len({a, b, PointingModel.identity()}) == 2


def test_track_map_interpolates_wraps_and_holds_its_ends(tmp_path) -> None:
    from tracker.mount.pointing import TrackMap

    turn = TrackMap(0.0, 90.0, (0.0, 4.0, 0.0, -4.0), (1.0, 1.0, 1.0, 3.0))
    assert turn.periodic
    assert turn.tilt_deg(45.0) == pytest.approx((2.0 / 3600.0, 1.0 / 3600.0))
    assert turn.tilt_deg(315.0) == pytest.approx((-2.0 / 3600.0, 2.0 / 3600.0))   # the join
    assert turn.tilt_deg(-45.0) == turn.tilt_deg(315.0) == turn.tilt_deg(675.0)    # any turn
    rails = TrackMap(50.0, 40.0, (1.0, 2.0, 3.0), (0.0, 0.0, 0.0))
    assert not rails.periodic
    assert rails.tilt_deg(70.0)[0] == pytest.approx(1.5 / 3600.0)
    assert rails.tilt_deg(140.0)[0] == pytest.approx(3.0 / 3600.0)     # past the end: held
    assert rails.tilt_deg(20.0)[0] == pytest.approx(1.0 / 3600.0)      # before the start
    # In the model: dE = pitch, dA = roll tan E; exact inverse; saved and loaded as it was.
    m = PointingModel({"IE": 2.0}, track_map=turn)
    az, el = m.axes_to_sky(45.0, 30.0)
    assert (el - 30.0) * 3600.0 == pytest.approx(2.0 + 2.0)
    assert (az - 45.0) * 3600.0 == pytest.approx(1.0 * math.tan(math.radians(30.0)))
    assert m.sky_to_axes(az, el) == pytest.approx((45.0, 30.0), abs=1e-9)
    arr = m.axes_to_sky(np.array([45.0, 315.0]), np.array([30.0, 10.0]))
    assert arr[1][0] == pytest.approx(el) and arr[0][0] == pytest.approx(az)
    m.save(tmp_path / "m.toml")
    assert PointingModel.load(tmp_path / "m.toml") == m


@pytest.mark.parametrize("table, message", [
    ("start_deg = 0.0\nstep_deg = 0.0\npitch_arcsec = [0, 1]\nroll_arcsec = [0, 1]", "step"),
    ("start_deg = 0.0\nstep_deg = 10.0\npitch_arcsec = [0, 1]\nroll_arcsec = [0]", "same length"),
    ("start_deg = 0.0\nstep_deg = 10.0\npitch_arcsec = [0, nan]\nroll_arcsec = [0, 1]", "finite"),
    ("start_deg = 0.0\nstep_deg = 10.0\npitch_arcsec = 1\nroll_arcsec = [0, 1]", "list"),
    ("start_deg = 0.0\nstep_deg = 100.0\npitch_arcsec = [0, 1, 2, 3]\nroll_arcsec = [0, 1, 2, 3]",
     "more than a turn"),
    ("start_deg = 0.0\npitch_arcsec = [0, 1]\nroll_arcsec = [0, 1]", "needs exactly"),
])
def test_a_bad_track_map_is_refused_naming_the_key(tmp_path, table, message) -> None:
    p = tmp_path / "m.toml"
    p.write_text(f"[terms_arcsec]\nIA = 1.0\n\n[track_map]\n{table}\n")
    with pytest.raises(ConfigError, match=message) as exc:
        PointingModel.load(p)
    assert str(p) in str(exc.value) and "track_map" in str(exc.value)
