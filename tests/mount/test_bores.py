"""Bores: off-axis geometry, the efficiency table, and fitting a bore's offset from the Sun."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from tests.support import CONFIG_DIR
from tracker import config
from tracker.cli.main import main
from tracker.mount import calibration as cal
from tracker.mount.bores import BoreSet, decode, encode, tangent_offset_arcsec


def _set(*offsets: tuple[float, float]) -> BoreSet:
    return BoreSet.from_config([config.Bore(
        name=f"b{i}", offset_x_arcsec=x, offset_y_arcsec=y, on_sun_tolerance_arcsec=36.0,
        efficiency_off_axis_arcsec=[0.0, 60.0, 300.0], efficiency=[1.0, 0.9, 0.0])
        for i, (x, y) in enumerate(offsets)])


def test_off_axis_angle_adds_the_pointing_offset_and_the_bore_offset() -> None:
    bores = _set((10.0, 0.0), (0.0, -20.0), (-3.0, 4.0))
    el = 60.0
    # the mechanical axis 5 arcsec east on the sky (az * cos el) and 1 arcsec low
    paz = 200.0 + 5.0 / 3600.0 / math.cos(math.radians(el))
    got = bores.off_axis_arcsec(200.0, el, paz, el - 1.0 / 3600.0)
    assert got == pytest.approx([math.hypot(15.0, -1.0), math.hypot(5.0, -21.0),
                                 math.hypot(2.0, 3.0)], abs=1e-6)
    # azimuth wraps through north: 359.999... vs 0.0
    got = bores.off_axis_arcsec(0.0, 0.0, 360.0 - 10.0 / 3600.0, 0.0)
    assert got[0] == pytest.approx(0.0, abs=1e-6)


def test_efficiency_interpolates_and_holds_the_end_values() -> None:
    bores = _set((0.0, 0.0))
    assert [bores.efficiency(0, a) for a in (0.0, 30.0, 60.0, 180.0, 300.0, 900.0)] == \
        pytest.approx([1.0, 0.95, 0.9, 0.45, 0.0, 0.0])
    assert bores.efficiency(0, math.nan) == 0.0


def test_efficiency_is_np_interp_of_the_table() -> None:
    """The per-tick interpolation gives np.interp's values, on and between the knots and
    beyond both ends, for a one-point table too."""
    angles, eff = [0.0, 30.0, 60.0, 120.0, 300.0, 600.0], [1.0, 0.98, 0.93, 0.80, 0.40, 0.0]
    bores = BoreSet(("a", "one"), ((0.0, 0.0), (0.0, 0.0)), (36.0, 36.0),
                    ((tuple(angles), tuple(eff)), ((10.0,), (0.7,))))
    xs = np.r_[np.linspace(-5.0, 700.0, 2821), angles]
    got = [bores.efficiency(0, float(x)) for x in xs]
    assert got == pytest.approx(list(np.interp(xs, angles, eff)), abs=1e-12)
    assert [bores.efficiency(1, x) for x in (0.0, 10.0, 99.0)] == [0.7, 0.7, 0.7]


def test_a_samples_ticks_sum_each_bores_angle_and_efficiency_from_the_tables() -> None:
    """``figures`` (the recorder's per-sample sums) against an independent per-tick sum of
    ``np.interp`` of each bore's table at its off-axis angle: on and off the Sun, on every
    segment of the table and beyond it, through north, for a one-point table too."""
    bores = BoreSet.from_config([
        config.Bore(name="near", offset_x_arcsec=10.0, offset_y_arcsec=-5.0,
                    on_sun_tolerance_arcsec=120.0, efficiency_off_axis_arcsec=[0.0, 60.0, 300.0],
                    efficiency=[1.0, 0.9, 0.0]),
        config.Bore(name="far", offset_x_arcsec=-200.0, offset_y_arcsec=30.0,
                    on_sun_tolerance_arcsec=400.0, efficiency_off_axis_arcsec=[20.0, 250.0],
                    efficiency=[0.8, 0.5]),
        config.Bore(name="flat", offset_x_arcsec=0.0, offset_y_arcsec=0.0,
                    on_sun_tolerance_arcsec=30.0, efficiency_off_axis_arcsec=[0.0],
                    efficiency=[0.7])])
    rng = np.random.default_rng(7)
    ticks = []
    want = np.zeros((3, 4))
    want_max = [-1.0] * 3
    for _ in range(400):
        taz, tel = rng.uniform(-1.0, 1.0) % 360.0, rng.uniform(-25.0, 60.0)
        paz = (taz + rng.normal(0.0, 0.05)) % 360.0
        pel = tel + rng.normal(0.0, 0.05)
        dt = rng.uniform(0.05, 0.15)
        daz = (paz - taz + 180.0) % 360.0 - 180.0
        dx, dy = daz * math.cos(math.radians(tel)) * 3600.0, (pel - tel) * 3600.0
        assert tangent_offset_arcsec(taz, tel, paz, pel) == pytest.approx((dx, dy), abs=1e-9)
        ticks.append((dt, *tangent_offset_arcsec(taz, tel, paz, pel)))
        for i in range(3):
            ox, oy = bores.offsets_arcsec[i]
            a = math.hypot(dx + ox, dy + oy)
            on = a <= bores.tolerances_arcsec[i]
            eff = float(np.interp(a, *bores.tables[i]))
            want[i] += (a * dt, on * dt, on * dt * eff, dt)
            want_max[i] = max(want_max[i], a)
    figs = bores.figures(ticks, cap_s=1e9)
    got = np.array([[mean, on, eff] for mean, _, on, eff in figs])
    assert got == pytest.approx(np.column_stack((want[:, 0] / want[:, 3], want[:, 1:3])),
                                rel=1e-12)
    # some ticks on and some off the Sun, on each bore
    assert all(0.0 < w[1] < w[3] for w in want)
    assert [f[1] for f in figs] == pytest.approx(want_max, rel=1e-12)
    # the seconds are capped at the sample's length; no ticks: no angles, no seconds
    assert [f[2] for f in bores.figures(ticks, cap_s=1.0)] == [1.0, 1.0, 1.0]
    empty = bores.figures([], cap_s=1.0)
    assert all(math.isnan(a) and math.isnan(m) and (on, eff) == (0.0, 0.0)
               for a, m, on, eff in empty)


def test_the_record_text_round_trips_and_foreign_text_reads_empty() -> None:
    text = encode(["a", "b"], [(1.5, 2.0, 1.0, 0.98), (math.nan, 3.0, 0.0, 0.0)])
    assert decode(text)["a"] == (1.5, 2.0, 1.0, 0.98)
    assert math.isnan(decode(text)["b"][0])
    assert decode(None) == {} and decode("not json") == {} and decode("[1, 2]") == {}


def test_the_record_text_is_json_of_each_figure_rounded_to_a_millionth() -> None:
    rng = np.random.default_rng(3)
    names = ['a "quoted" bore', "50%", "b\\c", "bore4"]
    for scale in (1e-7, 1.0, 3600.0, 1e9):
        figures = [tuple(float(x) for x in rng.normal(0.0, scale, 4)) for _ in names]
        figures[1] = (0.5, -0.0, 1.0, 2.5e-7)
        raw = json.loads(encode(names, figures))
        assert list(raw) == names
        for name, fig in zip(names, figures, strict=True):
            assert raw[name] == [round(x, 6) for x in fig]
    # a non-finite figure is null, the others as before
    raw = json.loads(encode(names[:2], [(math.inf, 1.25, 0.1, 0.2), (0.0, math.nan, 1.0, -1.0)]))
    assert raw == {names[0]: [None, 1.25, 0.1, 0.2], names[1]: [0.0, None, 1.0, -1.0]}
    with pytest.raises(ValueError, match="2 bores need 8 figures"):
        encode(names[:2], [(1.0, 2.0, 3.0, 4.0)])


def _sun_rows(settings: config.Settings, offset_xy: tuple[float, float], noise_arcsec: float,
              n: int = 40) -> list[cal.Measurement]:
    """Sun rows with the Sun centred in a bore at ``offset_xy``: the encoders read the Sun's
    axis direction minus the offset (identity pointing), plus noise."""
    rng = np.random.default_rng(7)
    times = 1782014400.0 + np.linspace(0.0, 3 * 3600.0, n)        # 2026-06-21 04:00Z on
    az, el = cal.apparent_sun_axis_direction(settings, times, pressure_hpa=0.0)
    rows = []
    for t, a, e in zip(times, az, el, strict=True):
        dx = offset_xy[0] + rng.normal(0.0, noise_arcsec)
        dy = offset_xy[1] + rng.normal(0.0, noise_arcsec)
        rows.append(cal.Measurement("sun", float(a - dx / 3600.0 / math.cos(math.radians(e))),
                                    float(e - dy / 3600.0), time_utc_s=float(t)))
    return rows


def test_a_bores_offset_is_fitted_from_sun_measurements() -> None:
    settings = config.load(CONFIG_DIR / "babyiaxo.toml")
    fit = cal.fit_bore_offset(settings, _sun_rows(settings, (14.0, -7.0), 1.0), "bore2")
    assert fit.n == 40 and fit.bore == "bore2"
    assert fit.sigma_x_arcsec == pytest.approx(1.0 / math.sqrt(40), rel=0.35)
    assert abs(fit.offset_x_arcsec - 14.0) < 4 * fit.sigma_x_arcsec
    assert abs(fit.offset_y_arcsec + 7.0) < 4 * fit.sigma_y_arcsec
    assert fit.rms_arcsec == pytest.approx(math.sqrt(2.0), rel=0.35)


def test_bore_fit_refuses_an_unknown_bore_and_too_few_rows() -> None:
    settings = config.load(CONFIG_DIR / "babyiaxo.toml")
    rows = _sun_rows(settings, (0.0, 0.0), 1.0, n=2)
    with pytest.raises(cal.CalibrationError, match="unknown bore 'bore9'; this config has: "
                       "bore1, bore2"):
        cal.fit_bore_offset(settings, rows, "bore9")
    with pytest.raises(cal.CalibrationError, match="at least 2 sun measurements, got 1"):
        cal.fit_bore_offset(settings, rows[:1], "bore1")


def test_calibrate_bore_cli(tmp_path) -> None:
    settings = config.load(CONFIG_DIR / "babyiaxo.toml")
    path = tmp_path / "sun.csv"
    cal.write_measurements(path, _sun_rows(settings, (-9.0, 3.0), 0.0, n=5))
    r = CliRunner().invoke(main, ["calibrate", "bore", str(path), "--bore", "bore1",
                                  "--config", str(CONFIG_DIR / "babyiaxo.toml")])
    assert r.exit_code == 0, r.output
    assert "offset_x_arcsec = -9.00\noffset_y_arcsec = 3.00" in r.output
    r = CliRunner().invoke(main, ["calibrate", "bore", str(path), "--bore", "nope",
                                  "--config", str(CONFIG_DIR / "babyiaxo.toml")])
    assert r.exit_code == 2 and "unknown bore 'nope'" in r.output


def test_aim_point_puts_the_offset_optical_axis_on_the_target() -> None:
    from tracker.mount.bores import aim_point
    az, el = aim_point(0.001, 40.0, 30.0, -12.0)
    # the optical axis of a bore at (30, -12) arcsec from the mechanical axis aimed there
    off = _set((30.0, -12.0)).off_axis_arcsec(0.001, 40.0, az, el)
    assert off[0] == pytest.approx(0.0, abs=0.01)
    assert az == pytest.approx((0.001 - 30.0 / 3600 / math.cos(math.radians(el))) % 360.0)
    # relative offsets: aiming bore "b1" makes it the zero of the set
    rel = BoreSet.from_config([config.Bore(name="b0", offset_x_arcsec=5.0),
                               config.Bore(name="b1", offset_x_arcsec=30.0,
                                           offset_y_arcsec=-12.0)], reference="b1")
    assert rel.offsets_arcsec == ((-25.0, 12.0), (0.0, 0.0))
