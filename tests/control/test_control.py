"""The control law on an ideal axis (the commanded velocity is the axis velocity)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import arcsecond
from tracker.control.law import (
    AxisDemand,
    AxisLimits,
    axis_step,
    great_circle_arcsec,
    nearest_turn_deg,
)

LIM = AxisLimits(min_deg=-25.0, max_deg=25.0, max_speed_deg_s=0.5, max_accel_deg_s2=0.05)
DT = 0.1


def run(demand_at, x0: float, seconds: float, limits: AxisLimits = LIM):
    """Integrate an ideal axis; return positions, velocities and errors per step."""
    x, v = x0, 0.0
    xs, vs, es = [], [], []
    for i in range(round(seconds / DT)):
        cmd = axis_step(limits, demand_at(i * DT), x, v, 1.0, DT)
        v = cmd.velocity_deg_s
        x += v * DT
        xs.append(x)
        vs.append(v)
        es.append(cmd.error_deg)
    return xs, vs, es


def test_slew_respects_speed_and_acceleration_and_arrives_without_overshoot() -> None:
    xs, vs, _ = run(lambda t: AxisDemand(20.0), -20.0, 200.0)
    assert max(abs(v) for v in vs) <= LIM.max_speed_deg_s + 1e-12
    accels = [abs(b - a) / DT for a, b in zip([0.0, *vs], vs, strict=False)]
    assert max(accels) <= LIM.max_accel_deg_s2 + 1e-9
    assert max(xs) <= 20.0 + 1e-3          # no overshoot past the target
    assert abs(xs[-1] - 20.0) < 1 * arcsecond
    # Trapezoid: 40 deg at 0.5 deg/s with 10 s ramps takes ~90 s; the law is within 40 % of that.
    arrived = next(i for i, x in enumerate(xs) if abs(x - 20.0) < 0.01) * DT
    assert 90.0 <= arrived <= 126.0


def test_feed_forward_tracks_a_moving_target_to_sub_arcsecond() -> None:
    rate = 15.0 / 3600.0  # deg/s, the Sun's hour-angle rate
    _, _, es = run(lambda t: AxisDemand(-5.0 + rate * t, rate), -5.0, 120.0)
    assert max(abs(e) for e in es[50:]) < 0.01 * arcsecond


def test_demand_outside_the_range_is_clamped() -> None:
    xs, _, _ = run(lambda t: AxisDemand(80.0), 0.0, 200.0)
    assert max(xs) <= LIM.max_deg
    assert xs[-1] == pytest.approx(LIM.max_deg, abs=1e-3)


def test_range_guard_brakes_before_the_limit_even_with_a_runaway_feed_forward() -> None:
    xs, _, _ = run(lambda t: AxisDemand(30.0, 0.5), 0.0, 200.0)
    assert max(xs) <= LIM.max_deg


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e3, 1e3), st.floats(-10, 10)), min_size=1, max_size=40),
       st.floats(-25.0, 25.0))
def test_no_demand_sequence_leaves_the_range(demands, x0) -> None:
    x, v = x0, 0.0
    for pos, rate in demands:
        for _ in range(50):
            v = axis_step(LIM, AxisDemand(pos, rate), x, v, 1.0, DT).velocity_deg_s
            x += v * DT
            assert LIM.min_deg - 1e-9 <= x <= LIM.max_deg + 1e-9


def test_great_circle_is_the_angle_not_the_azimuth_difference() -> None:
    # 1 degree of azimuth at elevation 60 is half a degree on the sky.
    assert great_circle_arcsec(10.0, 60.0, 11.0, 60.0) == pytest.approx(1800.0, rel=2e-4)
    assert great_circle_arcsec(0.0, 89.9, 180.0, 89.9) == pytest.approx(720.0, rel=1e-6)
    assert great_circle_arcsec(359.9, 0.0, 0.1, 0.0) == pytest.approx(720.0, rel=1e-9)
    assert great_circle_arcsec(12.3, 4.5, 12.3, 4.5) == 0.0
    assert great_circle_arcsec(0.0, 0.0, 180.0, 0.0) == pytest.approx(180 * 3600.0)


def test_nearest_turn() -> None:
    assert nearest_turn_deg(350.0, 0.0) == -10.0
    assert nearest_turn_deg(10.0, 150.0) == 10.0
    assert nearest_turn_deg(10.0, 250.0) == 370.0
    assert math.isclose(nearest_turn_deg(-170.0, 180.0), 190.0)


def test_nan_demand_or_measurement_commands_no_motion() -> None:
    nan = float("nan")
    assert axis_step(LIM, AxisDemand(nan, 0.0), 0.0, 0.0, 1.0, DT).velocity_deg_s == 0.0
    assert axis_step(LIM, AxisDemand(1.0, nan), 0.0, 0.0, 1.0, DT).velocity_deg_s == 0.0
    assert axis_step(LIM, AxisDemand(1.0, 0.0), nan, 0.0, 1.0, DT).velocity_deg_s == 0.0
