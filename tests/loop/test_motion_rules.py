"""The motion rules (one table for every interface), checked command by command."""

from __future__ import annotations

import pytest

from tests.support import ROOT
from tracker.control.machine import State
from tracker.errors import EnvelopeError, StateError
from tracker.loop.commands import (
    Goto,
    Jog,
    Park,
    Reset,
    Stop,
    Stow,
    Track,
    Unpark,
    check_motion_rules,
    rules_table,
)

MOVING_COMMANDS = [Goto(100.0, 10.0), Jog("az", 0.1, 10.0), Track(True), Stow()]


@pytest.mark.parametrize("cmd", MOVING_COMMANDS, ids=lambda c: c.name)
@pytest.mark.parametrize("state", [State.FAULT, State.ESTOP, State.OFF, State.PARKED])
def test_nothing_that_moves_is_allowed_in_fault_estop_off_or_parked(cmd, state) -> None:
    with pytest.raises(StateError, match=f"{cmd.name} refused: "):
        check_motion_rules(cmd, state, wind_stowed=False)


def test_parked_refusal_names_the_rule() -> None:
    with pytest.raises(StateError, match="parked: 'unpark' first"):
        check_motion_rules(Track(True), State.PARKED, wind_stowed=False)


def test_fault_refusal_says_reset() -> None:
    with pytest.raises(StateError, match="acknowledge it with 'reset' first"):
        check_motion_rules(Goto(100.0, 5.0), State.FAULT, wind_stowed=False)


@pytest.mark.parametrize("state", list(State))
def test_stop_track_off_and_reset_are_always_allowed(state) -> None:
    for cmd in (Stop(), Track(False), Reset()):
        check_motion_rules(cmd, state, wind_stowed=True)


@pytest.mark.parametrize("state", [s for s in State if s is not State.PARKED])
def test_unpark_only_from_parked(state) -> None:
    with pytest.raises(StateError, match="not parked"):
        check_motion_rules(Unpark(), state, wind_stowed=False)
    check_motion_rules(Unpark(), State.PARKED, wind_stowed=False)


def test_wind_stow_blocks_motion_but_not_stop() -> None:
    for cmd in (Goto(100.0, 10.0), Jog("el", 0.1, 5.0), Track(True), Park()):
        with pytest.raises(StateError, match="stowed for wind"):
            check_motion_rules(cmd, State.STOWED, wind_stowed=True)
    check_motion_rules(Stop(), State.STOWED, wind_stowed=True)


@pytest.mark.parametrize("az", [-0.1, 360.0, 400.0])
def test_sky_azimuth_is_0_to_360(az) -> None:
    with pytest.raises(EnvelopeError, match="outside 0..360"):
        Goto(az, 0.0).validate()
    Goto(az, 0.0, axes=True).validate()       # axis angles on the wrap are the envelope's call


def test_jog_validation() -> None:
    with pytest.raises(EnvelopeError, match="unknown axis"):
        Jog("x", 0.1, 1.0).validate()
    with pytest.raises(EnvelopeError, match="must be in"):
        Jog("az", 0.1, 3600.0).validate()
    with pytest.raises(EnvelopeError, match="finite"):
        Jog("az", float("nan"), 1.0).validate()


def test_the_table_covers_every_state_and_command() -> None:
    rows = rules_table()
    assert len(rows) == 9 * len(State)
    assert ("goto", "parked", "refused: the mount is parked: 'unpark' first (parked means "
            "nothing moves)") in rows
    assert ("stop", "fault", "accepted") in rows


def test_the_documented_table_is_the_one_the_engine_uses() -> None:

    from tracker.loop.commands import rules_markdown
    doc = (ROOT / "docs" / "daemon.md").read_text()
    assert rules_markdown() in doc
