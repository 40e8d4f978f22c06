"""The load feed-forward's pure parts from tables: the deflection it predicts, the wind
readings it refuses, and its bound (``tracker.control.law.LoadFeedForward``)."""

from __future__ import annotations

import math

import pytest

from tracker.control.law import LoadFeedForward, LoadModel

AS = 1.0 / 3600.0          # one arc-second in degrees
C = 4.0e-3                 # compliance, deg per deg/s^2 (k = 250 /s^2: a 3 Hz mode)
AZ = LoadModel(C, 0.0, 1.0e-3)
EL = LoadModel(C, 0.02, 0.7e-3)
FF = LoadFeedForward(AZ, EL, max_offset_deg=60 * AS, max_wind_m_s=40.0, max_wind_age_s=2.0)


@pytest.mark.parametrize(("el_deg", "expect_el_arcsec"), [
    (0.0, -0.02 * C * 3600),                              # nose-heavy: the magnet sags
    (60.0, -0.02 * C * 3600 * 0.5),                       # cos(el) law
    (90.0, 0.0),
])
def test_no_wind_gives_the_unbalance_sag_alone(el_deg, expect_el_arcsec) -> None:
    d_az, d_el, why = FF.offset_deg(95.0, el_deg, 0.0, 0.0, 0.0, 0.0, 0.5)
    assert why == ""
    assert d_az == 0.0
    assert d_el / AS == pytest.approx(expect_el_arcsec, abs=1e-9)


@pytest.mark.parametrize(("from_deg", "az_arcsec", "el_arcsec"), [
    # 10 m/s at el 0, magnet at az 90: torque c v^2 x (sin rel | cos rel), deflection C x it.
    (180.0, 1.0e-3 * 100 * C * 3600, -0.02 * C * 3600),             # from the right: az +
    (90.0, 0.0, (0.7e-3 * 100 - 0.02) * C * 3600),                   # head-on: el +
    (0.0, -1.0e-3 * 100 * C * 3600, -0.02 * C * 3600),               # from the left: az -
])
def test_wind_deflection_by_direction(from_deg, az_arcsec, el_arcsec) -> None:
    d_az, d_el, why = FF.offset_deg(90.0, 0.0, 0.0, 0.0, 10.0, from_deg, 0.5)
    assert why == ""
    assert d_az / AS == pytest.approx(az_arcsec, abs=1e-6)
    assert d_el / AS == pytest.approx(el_arcsec, abs=1e-6)


UNBALANCE_ONLY = (0.0, -0.02 * C * 3600)


@pytest.mark.parametrize(("speed", "direction", "age", "reason"), [
    (math.nan, 180.0, 0.5, "not finite"),
    (math.inf, 180.0, 0.5, "not finite"),
    (10.0, math.nan, 0.5, "not finite"),       # direction unknown: no direction factor
    (-1.0, 180.0, 0.5, "outside"),
    (41.0, 180.0, 0.5, "outside"),             # not physically believable on a tracking day
    (10.0, 180.0, 2.5, "old"),                 # stale
    (10.0, 180.0, math.inf, "old"),            # never read
    (10.0, 180.0, math.nan, "old"),
])
def test_a_bad_or_stale_wind_reading_gives_no_wind_term(speed, direction, age, reason) -> None:
    d_az, d_el, why = FF.offset_deg(90.0, 0.0, 0.0, 0.0, speed, direction, age)
    assert reason in why
    assert (d_az / AS, d_el / AS) == pytest.approx(UNBALANCE_ONLY, abs=1e-9)


def test_wind_switched_off_is_unbalance_only_without_warning() -> None:
    ff = LoadFeedForward(AZ, EL, 60 * AS, use_wind=False)
    d_az, d_el, why = ff.offset_deg(90.0, 0.0, 0.0, 0.0, 10.0, 180.0, 0.5)
    assert why == "" and (d_az / AS, d_el / AS) == pytest.approx(UNBALANCE_ONLY, abs=1e-9)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_axis_gives_no_feed_forward(bad) -> None:
    for args in ((bad, 10.0, 0.0, 0.0), (90.0, bad, 0.0, 0.0), (90.0, 10.0, bad, 0.0),
                 (90.0, 10.0, 0.0, bad)):
        d_az, d_el, why = FF.offset_deg(*args, 10.0, 180.0, 0.5)
        assert (d_az, d_el) == (0.0, 0.0) and "not finite" in why


@pytest.mark.parametrize(("speed", "el_deg"), [(0.0, 0.0), (39.0, 0.0), (39.0, 30.0)])
def test_the_bound_holds_whatever_the_model(speed, el_deg) -> None:
    huge = LoadModel(0.1, 1.0, 0.01, 60 * AS)      # the config's largest values
    ff = LoadFeedForward(huge, huge, max_offset_deg=60 * AS)
    for from_deg in range(0, 360, 15):
        d_az, d_el, _ = ff.offset_deg(90.0, el_deg, 0.001, -0.001, speed, float(from_deg), 0.1)
        assert abs(d_az) <= 60 * AS + 1e-15 and abs(d_el) <= 60 * AS + 1e-15
    # ... and it binds: unclamped, the sag alone would be 0.1 deg = 360".
    assert ff.offset_deg(90.0, 0.0, 0.0, 0.0)[1] == pytest.approx(-60 * AS)
