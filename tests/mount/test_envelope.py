"""Envelope: limits, refusals with exact messages, boresights, cable wrap, keep-out zones."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.presets import load_preset  # noqa: E402
from tracker.errors import EnvelopeError
from tracker.mount.envelope import Envelope

_settings = load_preset


@pytest.fixture
def iaxo() -> Envelope:
    return Envelope.from_settings(_settings("iaxo"))


@pytest.fixture
def cast() -> Envelope:
    return Envelope.from_settings(_settings("cast"))


@pytest.fixture
def tower() -> Envelope:
    zone = {"name": "tower", "azimuth_min_deg": 100.0, "azimuth_max_deg": 120.0,
            "elevation_min_deg": -5.0, "elevation_max_deg": 10.0}
    return Envelope.from_settings(_settings("iaxo", keep_out=[zone]))


def test_from_settings_reads_ranges_and_speeds(iaxo, cast):
    assert (iaxo.az_min_deg, iaxo.az_max_deg, iaxo.el_min_deg, iaxo.el_max_deg) == (
        -270.0, 270.0, -25.0, 25.0)
    assert iaxo.cable_wrap and not cast.cable_wrap
    assert iaxo.max_speed_deg_s == {"azimuth": 1.0, "elevation": 0.5}
    assert set(cast.boresights) == {"front", "rear"}


@pytest.mark.parametrize(("az", "el", "message", "axis", "limit"), [
    (0.0, 31.0, "elevation 31.0 deg is above the limit 25.0 deg", "elevation", 25.0),
    (0.0, -25.5, "elevation -25.5 deg is below the limit -25.0 deg", "elevation", -25.0),
    (-300.0, 0.0, "azimuth -300.0 deg is below the limit -270.0 deg", "azimuth", -270.0),
    (270.25, 0.0, "azimuth 270.25 deg is above the limit 270.0 deg", "azimuth", 270.0),
])
def test_check_axes_refusals_exact(iaxo, az, el, message, axis, limit):
    with pytest.raises(EnvelopeError) as exc:
        iaxo.check_axes(az, el)
    assert str(exc.value) == message
    assert exc.value.axis == axis
    assert exc.value.limit_deg == limit
    assert exc.value.value_deg == (el if axis == "elevation" else az)


def test_check_axes_accepts_limits_inclusive(iaxo):
    for az, el in [(-270.0, -25.0), (270.0, 25.0), (0.0, 0.0)]:
        iaxo.check_axes(az, el)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_check_axes_refuses_non_finite(iaxo, bad):
    with pytest.raises(EnvelopeError, match="elevation .* deg is not a finite number"):
        iaxo.check_axes(0.0, bad)
    with pytest.raises(EnvelopeError, match="azimuth .* deg is not a finite number"):
        iaxo.check_axes(bad, 0.0)
    assert iaxo.contains_axes(bad, 0.0) is False


def test_keep_out_zone(tower):
    with pytest.raises(EnvelopeError) as exc:
        tower.check_axes(110.0, 2.0)
    assert str(exc.value) == ("azimuth 110.0 deg, elevation 2.0 deg is inside keep-out zone "
                              "'tower' (azimuth 100.0..120.0, elevation -5.0..10.0 deg)")
    tower.check_axes(100.0, 2.0)   # the box's edge is allowed
    tower.check_axes(110.0, 10.0)
    tower.check_axes(110.0, 12.0)
    inside = tower.contains_axes(np.array([110.0, 110.0, 99.0, 300.0]),
                                 np.array([2.0, 11.0, 2.0, 0.0]))
    assert inside.tolist() == [False, True, True, False]


def test_contains_axes_scalar_and_vector(iaxo):
    assert iaxo.contains_axes(10.0, 5.0) is True
    assert iaxo.contains_axes(10.0, 26.0) is False
    got = iaxo.contains_axes([-271.0, -270.0, 0.0, 270.0, 271.0], [0, 0, 25.01, 0, 0])
    assert got.tolist() == [False, True, False, True, False]


def test_check_rate(iaxo):
    iaxo.check_rate("azimuth", -1.0)
    with pytest.raises(EnvelopeError) as exc:
        iaxo.check_rate("elevation", 0.6)
    assert str(exc.value) == "elevation rate 0.6 deg/s is above the limit 0.5 deg/s"
    with pytest.raises(EnvelopeError, match="not a finite number"):
        iaxo.check_rate("azimuth", math.nan)
    with pytest.raises(EnvelopeError, match="unknown axis 'roll'"):
        iaxo.check_rate("roll", 0.0)


def test_clamp_axes(iaxo, tower):
    assert iaxo.clamp_axes(300.0, 40.0) == (270.0, 25.0)
    assert iaxo.clamp_axes(-300.0, -40.0) == (-270.0, -25.0)
    assert iaxo.clamp_axes(12.5, 3.0) == (12.5, 3.0)
    # Inside the tower box: the nearest face is azimuth 100.
    az, el = tower.clamp_axes(103.0, 2.0)
    assert (az, el) == (100.0, 2.0)
    tower.check_axes(az, el)
    assert tower.clamp_axes(110.0, 9.0) == (110.0, 10.0)
    with pytest.raises(EnvelopeError):
        iaxo.clamp_axes(math.nan, 0.0)


def test_cast_boresights_sunrise_and_sunset(cast):
    # Sunrise in the east: front end, axis = sky.
    assert cast.sky_to_axes("front", 95.0, 3.0) == (95.0, 3.0)
    # Sunset in the west: rear end, axis turned by 180 and elevation negated.
    assert cast.sky_to_axes("rear", 265.0, 3.0) == (85.0, -3.0)
    assert cast.axes_to_sky("rear", 85.0, -3.0) == (265.0, 3.0)
    assert cast.axes_to_sky("front", 95.0, 3.0) == (95.0, 3.0)
    with pytest.raises(EnvelopeError) as exc:
        cast.sky_to_axes("front", 265.0, 3.0)
    assert str(exc.value) == ("sky azimuth 265.0 deg, elevation 3.0 deg on boresight 'front' "
                              "needs azimuth axis 265.0 deg (mod 360), outside the azimuth range "
                              "50.0..130.0 deg on every turn")
    with pytest.raises(EnvelopeError) as exc:
        cast.sky_to_axes("rear", 265.0, -9.0)
    assert str(exc.value) == ("sky azimuth 265.0 deg, elevation -9.0 deg on boresight 'rear' "
                              "needs elevation axis 9.0 deg, above the limit 8.0 deg")
    with pytest.raises(EnvelopeError, match="unknown boresight 'side'; this mount has: front, rear"):
        cast.sky_to_axes("side", 90.0, 0.0)


def test_sky_to_axes_chooses_wrap_turn(iaxo):
    # Sky azimuth 100 reaches the axis at 100 or -260; default: nearest the middle (0).
    assert iaxo.sky_to_axes("main", 100.0, 5.0) == (100.0, 5.0)
    assert iaxo.sky_to_axes("main", 100.0, 5.0, near_az_deg=-200.0) == (-260.0, 5.0)
    assert iaxo.sky_to_axes("main", 300.0, 5.0) == (-60.0, 5.0)
    assert iaxo.sky_to_axes("main", 300.0, 5.0, near_az_deg=250.0) == (-60.0, 5.0)  # 300 > 270
    assert [k for k, _ in iaxo.axis_az_turns("main", 100.0)] == [-1, 0]
    assert iaxo.axis_az_turns("main", 270.0) == [(-1, -90.0), (0, 270.0)]
    with pytest.raises(EnvelopeError, match="not a finite number"):
        iaxo.sky_to_axes("main", math.nan, 0.0)


def test_sky_to_axes_avoids_keep_out_turn(tower):
    # Axis 110 is in the tower box; the other turn (-250) is free.
    assert tower.sky_to_axes("main", 110.0, 2.0) == (-250.0, 2.0)
    narrow = Envelope.from_settings(_settings(
        "cast", keep_out=[{"name": "crane", "azimuth_min_deg": 60.0, "azimuth_max_deg": 70.0,
                           "elevation_min_deg": -8.0, "elevation_max_deg": 8.0}]))
    with pytest.raises(EnvelopeError) as exc:
        narrow.sky_to_axes("front", 65.0, 0.0)
    assert str(exc.value) == ("sky azimuth 65.0 deg, elevation 0.0 deg on boresight 'front': "
                              "azimuth axis 65.0 deg is inside keep-out zone 'crane'")


def test_sky_inside_matches_scalar_conversion(cast, tower):
    rng = np.random.default_rng(4)
    az = rng.uniform(0, 360, 2000)
    el = rng.uniform(-30, 30, 2000)
    for env in (cast, tower):
        for name in env.boresights:
            fast = env.sky_inside(name, az, el)
            slow = []
            for a, e in zip(az, el, strict=True):
                try:
                    env.sky_to_axes(name, a, e)
                    slow.append(True)
                except EnvelopeError:
                    slow.append(False)
            assert fast.tolist() == slow
            assert 0 < fast.sum() < len(az)
    assert not cast.sky_inside("front", np.nan, 0.0)


@settings(max_examples=300, deadline=None)
@given(sky_az=st.floats(0.0, 360.0, exclude_max=True), sky_el=st.floats(-8.0, 8.0),
       near=st.floats(-400.0, 400.0))
def test_sky_axes_round_trip(sky_az, sky_el, near):
    env = Envelope.from_settings(load_preset("iaxo"))
    az_axis, el_axis = env.sky_to_axes("main", sky_az, sky_el, near_az_deg=near)
    env.check_axes(az_axis, el_axis)
    back_az, back_el = env.axes_to_sky("main", az_axis, el_axis)
    assert math.isclose(back_el, sky_el, abs_tol=1e-12)
    assert abs((back_az - sky_az + 180.0) % 360.0 - 180.0) < 1e-9
    # The chosen turn is the one nearest `near` among those in range.
    others = [a for _, a in env.axis_az_turns("main", sky_az)]
    assert len(others) in (1, 2)
    assert abs(az_axis - near) == min(abs(a - near) for a in others)


def test_nearest_turn_axes_keeps_the_direction_inside_the_envelope(iaxo, cast, tower):
    assert iaxo.nearest_turn_axes(270.0, 0.0, near_az_deg=-120.0) == (-90.0, 0.0)
    assert iaxo.nearest_turn_axes(270.0, 0.0, near_az_deg=100.0) == (270.0, 0.0)
    assert iaxo.nearest_turn_axes(-90.0, 0.0, near_az_deg=200.0) == (270.0, 0.0)
    assert iaxo.nearest_turn_axes(0.0, 0.0, near_az_deg=260.0) == (0.0, 0.0)   # 360: outside
    assert iaxo.nearest_turn_axes(270.0, 0.0, near_az_deg=math.nan) == (270.0, 0.0)
    assert cast.nearest_turn_axes(80.0, 0.0, near_az_deg=-200.0) == (80.0, 0.0)  # no wrap
    # From 150 deg the other turn (110 deg) is nearer but inside the tower box: stay.
    assert tower.nearest_turn_axes(-250.0, 2.0, near_az_deg=150.0) == (-250.0, 2.0)
