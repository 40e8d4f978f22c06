"""What an allowed command changes (``commands.effect``), state by state: pure, so checked
as a table against the state machine's transitions and the sim preset's envelope."""

from __future__ import annotations

import math

import pytest

from tests.support import CONFIG_DIR
from tracker import config
from tracker.control.machine import State, next_state
from tracker.errors import ConfigError, EnvelopeError, StateError
from tracker.loop.commands import (
    Context,
    Goto,
    Jog,
    Park,
    Reset,
    Stop,
    Stow,
    Track,
    Unpark,
    check_motion_rules,
    effect,
)
from tracker.loop.tasks import HOLD, TaskKind
from tracker.mount.envelope import Envelope
from tracker.mount.frames import Frames
from tracker.mount.pointing import PointingModel

SETTINGS = config.load(CONFIG_DIR / "sim.toml")
ENVELOPE = Envelope.from_settings(SETTINGS)
BORESIGHT = SETTINGS.envelope.boresights[0].name


def context(state: State, here=(180.0, 10.0), mono_s: float = 100.0) -> Context:
    return Context(state, lambda trigger: next_state(state, trigger) is not None, BORESIGHT,
                   here, mono_s, SETTINGS, ENVELOPE,
                   Frames(ENVELOPE, PointingModel.identity()))


COMMANDS = [Goto(200.0, 10.0), Goto(190.0, 5.0, axes=True), Jog("el", 0.05, 10.0),
            Track(True), Track(False), Park(), Unpark(), Stow(), Stop()]


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.value)
@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: f"{c.name}{c.args()}")
def test_every_allowed_command_fires_a_transition_the_state_machine_has(cmd, state) -> None:
    try:
        check_motion_rules(cmd, state, wind_stowed=False)
        e = effect(cmd, context(state), "op")
    except StateError:
        return                                   # refused before anything changes
    if e.trigger is not None:
        assert next_state(state, e.trigger) is not None, (state, e.trigger)
    if isinstance(cmd, Track):
        assert e.auto_tracking is cmd.on and e.announce
    else:
        # every operator command other than 'track on' leaves automatic tracking off
        assert e.auto_tracking is False
    if e.task is not None and e.task.kind is TaskKind.AXES:
        ENVELOPE.check_axes(e.task.az_deg, e.task.el_deg)   # never a demand outside it


def test_goto_and_jog_take_over_from_the_automation() -> None:
    e = effect(Goto(200.0, 10.0), context(State.TRACKING), "api:10.0.0.1")
    assert (e.trigger, e.auto_tracking, e.leave_window, e.boresight) == (
        "manual", False, True, BORESIGHT)
    assert (e.task.kind, e.task.az_deg, e.task.el_deg) == (TaskKind.SKY, 200.0, 10.0)
    assert e.cause == "goto from api:10.0.0.1"
    e = effect(Jog("el", 0.05, 10.0), context(State.IDLE, mono_s=50.0), "cli")
    assert (e.task.kind, e.task.jog_axis, e.task.jog_rate_deg_s) == (
        TaskKind.JOG, "elevation", 0.05)
    assert e.task.until_monotonic_s == 60.0       # monotonic time, not UTC


def test_track_off_leaves_the_window_while_following_the_sun_and_only_then() -> None:
    for state in (State.ACQUIRING, State.TRACKING, State.SLEWING, State.WAITING):
        e = effect(Track(False), context(state), "op")
        assert (e.task, e.trigger, e.leave_window) == (HOLD, "hold", True)
    e = effect(Track(False), context(State.IDLE), "op")
    assert (e.task, e.trigger, e.leave_window, e.auto_tracking) == (None, None, False, False)
    e = effect(Track(True), context(State.MANUAL), "op")
    assert (e.task, e.trigger, e.auto_tracking) == (HOLD, "hold", True)


def test_park_and_stow_when_already_there_only_turn_automatic_tracking_off() -> None:
    assert effect(Park(), context(State.PARKED), "op").trigger is None
    assert effect(Stow(), context(State.STOWED), "op").trigger is None
    e = effect(Park(), context(State.IDLE), "op")
    park = SETTINGS.positions.park
    assert (e.trigger, e.task.az_deg, e.task.el_deg) == ("park", park.azimuth_deg,
                                                          park.elevation_deg)


def test_stow_takes_the_cable_wrap_turn_nearest_the_mount() -> None:
    stow = SETTINGS.positions.stow
    lo, hi = SETTINGS.envelope.azimuth_min_deg, SETTINGS.envelope.azimuth_max_deg
    for here_az in (lo + 1.0, hi - 1.0):
        e = effect(Stow(), context(State.TRACKING, here=(here_az, 10.0)), "op")
        assert e.task.az_deg % 360.0 == pytest.approx(stow.azimuth_deg % 360.0)
        candidates = [stow.azimuth_deg + k * 360.0 for k in range(-2, 3)
                      if lo <= stow.azimuth_deg + k * 360.0 <= hi]
        assert e.task.az_deg == min(candidates, key=lambda a: abs(a - here_az))


@pytest.mark.parametrize("cmd, match", [
    (Goto(100.0, 31.0), "above the limit"),
    (Goto(100.0, 10.0, boresight="nope"), "nope"),
    (Goto(9999.0, 10.0, axes=True), "azimuth"),
    (Jog("az", 0.2, 600.0), "azimuth"),        # 180 + 120 deg: beyond +270
    (Jog("el", 50.0, 1.0), "elevation"),
])
def test_a_command_outside_the_envelope_is_refused_with_the_limit(cmd, match) -> None:
    with pytest.raises((EnvelopeError, ConfigError), match=match):
        effect(cmd, context(State.IDLE), "op")


def test_jog_before_the_first_reading_is_refused() -> None:
    with pytest.raises(EnvelopeError):
        effect(Jog("az", 0.1, 1.0), context(State.IDLE, here=(math.nan, math.nan)), "op")


def test_unpark_needs_park_and_reset_is_not_an_effect() -> None:
    with pytest.raises(StateError, match="not possible while idle"):
        effect(Unpark(), context(State.IDLE), "op")
    assert effect(Unpark(), context(State.PARKED), "op").trigger == "unpark"
    with pytest.raises(TypeError, match="reset"):
        effect(Reset(), context(State.FAULT), "op")
    assert effect(Stop(), context(State.PARKED), "op").trigger is None
