"""The state machine: the table's behaviour, guards, refusals and the generated diagram."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tracker.cli.main import main
from tracker.control.machine import TRANSITIONS, State, StateMachine, dot, mermaid
from tracker.errors import StateError


def make(ok=True):
    changes = []
    m = StateMachine(guards={"can_reset": lambda: ok[0] if isinstance(ok, list) else ok},
                     on_change=lambda *a: changes.append(a))
    return m, changes


def test_a_day_of_automatic_tracking_is_logged_with_causes() -> None:
    m, changes = make()
    for trigger in ["enable", "slew", "arrive", "open_window", "acquired", "close_window",
                    "park", "parked"]:
        m.fire(trigger, f"because {trigger}")
    assert m.state is State.PARKED
    assert [c[1] for c in changes] == [State.IDLE, State.SLEWING, State.WAITING, State.ACQUIRING,
                                       State.TRACKING, State.IDLE, State.PARKING, State.PARKED]
    assert changes[3] == (State.WAITING, State.ACQUIRING, "open_window", "because open_window")
    assert changes[4] == (State.ACQUIRING, State.TRACKING, "acquired", "because acquired")


def test_fault_needs_reset_and_reset_is_guarded() -> None:
    healthy = [False]
    m, _ = make(healthy)
    m.fire("enable")
    m.fire("open_window")
    m.fire("fault", "azimuth: overcurrent")
    for trigger in ["open_window", "slew", "park", "manual", "hold", "arrive"]:
        with pytest.raises(StateError, match=f"'{trigger}' is not allowed while fault"):
            m.fire(trigger)
    assert m.fire("reset") is False and m.state is State.FAULT
    healthy[0] = True
    assert m.fire("reset") is True and m.state is State.IDLE


def test_estop_from_anywhere_and_only_reset_leaves_it() -> None:
    for start in [["enable"], ["enable", "open_window"], ["enable", "park"], []]:
        m, _ = make()
        for trig in start:
            m.fire(trig)
        m.fire("estop", "e-stop chain open")
        assert m.state is State.ESTOP
        with pytest.raises(StateError):
            m.fire("stow")
        m.fire("reset")
        assert m.state is State.IDLE


def test_nothing_moves_out_of_fault_but_reset() -> None:
    m, _ = make()
    m.fire("enable")
    m.fire("fault")
    allowed = {t for t, srcs, _ in TRANSITIONS
               if State.FAULT in (srcs if isinstance(srcs, list) else [srcs])}
    assert allowed == {"fault", "estop", "reset", "disable"}
    with pytest.raises(StateError, match="'stow' is not allowed while fault"):
        m.fire("stow", "wind 18 m/s")


def test_parked_is_left_only_by_unpark_or_the_automation() -> None:
    m, _ = make()
    m.fire("enable")
    m.fire("park")
    m.fire("parked")
    allowed = {t for t, srcs, _ in TRANSITIONS
               if State.PARKED in (srcs if isinstance(srcs, list) else [srcs])}
    assert allowed == {"unpark", "slew", "open_window", "fault", "estop", "disable"}
    for trigger in ("manual", "stow", "hold"):
        with pytest.raises(StateError):
            m.fire(trigger)


def test_manual_interrupts_tracking() -> None:
    m, _ = make()
    m.fire("enable")
    m.fire("open_window")
    m.fire("manual", "goto from api")
    assert m.state is State.MANUAL
    assert not m.may("arrive")


def test_diagram_is_generated_from_the_table() -> None:
    text = mermaid()
    assert text.startswith("stateDiagram-v2")
    n_edges = sum(len(s) if isinstance(s, list) else 1 for _, s, d in TRANSITIONS) - sum(
        1 for _, s, d in TRANSITIONS if d in (s if isinstance(s, list) else [s]))
    assert text.count("-->") == n_edges + 1
    assert "fault --> idle: reset [can_reset]" in text
    assert dot().count("->") == n_edges
    result = CliRunner().invoke(main, ["states"])
    assert result.exit_code == 0 and "tracking --> idle: close_window" in result.output
    assert "acquiring --> tracking: acquired" in result.output
