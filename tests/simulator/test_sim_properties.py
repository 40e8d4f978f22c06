"""Property tests: no command sequence takes a simulated axis past its hard limits.

Hypothesis drives both axes with random sequences of every command and drive
fault (including encoder jumps that fool the drive's soft limits into running
at the hard limit switches), with random step lengths, on several presets.
The mount's own record of the true range (``min_true_deg``/``max_true_deg``)
must stay within the hard limit positions.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from simulator.mount import SimMount
from tests.support import CONFIG_DIR
from tracker import config
from tracker.mount.axis import Condition

PRESETS = {name: config.load(CONFIG_DIR / f"{name}.toml") for name in ("sim", "cast", "iaxo")}

axis_name = st.sampled_from(["azimuth", "elevation"])
speed = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)
position = st.floats(min_value=-2000.0, max_value=2000.0, allow_nan=False)

command = st.one_of(
    st.tuples(st.just("velocity"), axis_name, speed),
    st.tuples(st.just("position"), axis_name, position, speed),
    st.tuples(st.sampled_from(["stop", "enable", "disable", "reset", "heartbeat"]), axis_name),
    st.tuples(st.just("jump"), axis_name, st.floats(min_value=-50.0, max_value=50.0)),
    st.tuples(st.just("trip"), axis_name, st.sampled_from(
        [Condition.OVERCURRENT, Condition.FOLLOWING_ERROR, Condition.LIMIT_SWITCH])),
    st.tuples(st.just("estop"), st.booleans()),
    st.tuples(st.just("wind"), st.floats(min_value=0.0, max_value=40.0)),
    st.tuples(st.just("step"), st.floats(min_value=0.001, max_value=30.0)),
    # the dangerous pattern: a wrong encoder, fault cleared, full speed for a while
    st.tuples(st.just("runaway"), axis_name, st.floats(min_value=-60.0, max_value=60.0), speed,
              st.floats(min_value=1.0, max_value=200.0)),
)


def apply(mount: SimMount, cmd: tuple) -> None:
    kind = cmd[0]
    if kind == "step":
        mount.step(cmd[1])
        return
    if kind == "estop":
        for ax in mount.axes.values():
            ax.estop(cmd[1])
        return
    if kind == "wind":
        mount.set_wind(cmd[1])
        return
    ax = mount.axes[cmd[1]]
    if kind == "runaway":
        ax.encoder_jump(cmd[2])
        ax.reset()
        ax.enable()
        ax.command_velocity(cmd[3])
        t = 0.0
        while t < cmd[4]:
            mount.step(0.5)
            ax.heartbeat()
            t += 0.5
    elif kind == "velocity":
        ax.command_velocity(cmd[2])
    elif kind == "position":
        ax.command_position(cmd[2], cmd[3])
    elif kind == "jump":
        ax.encoder_jump(cmd[2])
    elif kind == "trip":
        ax.trip(cmd[2])
    else:
        getattr(ax, kind)()


def assert_within_hard_limits(mount: SimMount) -> None:
    for ax in mount.axes.values():
        assert ax.hard_low_deg <= ax.min_true_deg, (ax.name, ax.min_true_deg, ax.hard_low_deg)
        assert ax.max_true_deg <= ax.hard_high_deg, (ax.name, ax.max_true_deg, ax.hard_high_deg)


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PRESETS))
@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(start=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)),
       commands=st.lists(command, min_size=1, max_size=25))
# Found by hypothesis: a drive past its low soft limit (wrong encoder) pushed back
# at full speed and, after a reset on the high switch, drove on through it.
@example(start=(0.0, 0.0), commands=[("runaway", "elevation", -51.96261935807759, 0.0, 140.0),
                                     ("runaway", "elevation", 0.0, 0.0, 1.0)])
def test_no_command_sequence_passes_the_hard_limits(preset, start, commands):
    s = PRESETS[preset]
    env = s.envelope
    az0 = env.azimuth_min_deg + start[0] * (env.azimuth_max_deg - env.azimuth_min_deg)
    el0 = env.elevation_min_deg + start[1] * (env.elevation_max_deg - env.elevation_min_deg)
    mount = SimMount(s, azimuth_deg=az0, elevation_deg=el0)
    for cmd in commands:
        apply(mount, cmd)
        # keep the drives alive so runs really go somewhere
        for ax in mount.axes.values():
            ax.heartbeat()
    mount.step(60.0)
    assert_within_hard_limits(mount)


@settings(max_examples=40, deadline=None)
@given(jump_deg=st.floats(min_value=-10.0, max_value=-1.5), v=st.floats(0.2, 100.0),
       dt_s=st.floats(0.05, 0.5))
def test_full_speed_into_the_switch_brakes_before_the_hard_limit(jump_deg, v, dt_s):
    """The worst case: the drive thinks it has room and runs at full speed into the switch."""
    s = PRESETS["sim"]
    mount = SimMount(s, elevation_deg=24.0)
    el = mount.elevation
    el.encoder_jump(jump_deg)
    el.reset()
    el.enable()
    el.command_velocity(v)
    t = 0.0
    while t < 100.0 and el.condition is Condition.OK:
        mount.step(dt_s)
        el.heartbeat()
        t += dt_s
    mount.step(30.0)
    assert el.condition is Condition.LIMIT_SWITCH
    assert el.soft_high_deg < el.max_true_deg <= el.hard_high_deg
    assert el.velocity_deg_s == 0.0


def test_the_check_can_fail_with_a_weak_brake():
    """Sanity check of the property itself: a weak brake does overrun the hard limit."""
    s = PRESETS["sim"]
    mount = SimMount(s, elevation_deg=24.0)
    el = mount.elevation
    el.brake_decel_deg_s2 = 0.05  # far too weak for 0.3 deg/s
    el.encoder_jump(-10.0)
    el.reset()
    el.enable()
    el.command_velocity(1.0)
    for _ in range(3000):
        mount.step(0.1)
        el.heartbeat()
    with pytest.raises(AssertionError):
        assert_within_hard_limits(mount)
