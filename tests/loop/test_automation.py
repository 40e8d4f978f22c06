"""The automation as a pure function: situation in, transitions + task out (a table)."""

from __future__ import annotations

import pytest

from tests.support import CONFIG_DIR
from tracker import config
from tracker.control.machine import State
from tracker.loop import automation
from tracker.loop.automation import Situation, SlewTimes, decide
from tracker.loop.tasks import HOLD, Task, TaskKind
from tracker.planning.planner import plan

DAY_S = 1773964800.0  # 2026-03-20T00:00:00Z


@pytest.fixture(scope="module")
def sim() -> config.Settings:
    return config.load(CONFIG_DIR / "sim.toml")


@pytest.fixture(scope="module")
def the_plan(sim):
    return plan(sim, DAY_S - 86400.0, DAY_S + 2 * 86400.0)


def situation(sim, the_plan, t_s, state, **kw) -> Situation:
    park = sim.positions.park
    base = dict(t_s=t_s, mono_s=0.0, state=state, auto_tracking=True, task=HOLD, window=None,
                plan=the_plan, here_deg=(park.azimuth_deg, park.elevation_deg), arrived=False)
    base.update(kw)
    return Situation(**base)


def test_fault_estop_off_hold_and_fire_nothing(sim, the_plan) -> None:
    w = the_plan.windows[1]
    for state in (State.FAULT, State.ESTOP, State.OFF):
        d = decide(situation(sim, the_plan, w.start_s + 10, state,
                             task=Task(TaskKind.SUN)), sim)
        assert d.steps == () and d.task == HOLD


def test_window_opens_into_acquiring_never_straight_into_tracking(sim, the_plan) -> None:
    w = the_plan.windows[1]
    d = decide(situation(sim, the_plan, w.start_s + 1.0, State.WAITING), sim)
    assert [s[0] for s in d.steps] == ["open_window"]
    assert d.task.kind is TaskKind.SUN and d.window == w and d.opened


def test_acquired_moves_acquiring_to_tracking_inside_the_window(sim, the_plan) -> None:
    w = the_plan.windows[1]
    s = situation(sim, the_plan, w.start_s + 60, State.ACQUIRING, task=Task(TaskKind.SUN),
                  window=w, acquired=True)
    assert [t for t, _ in decide(s, sim).steps] == ["acquired"]
    s = situation(sim, the_plan, w.start_s + 60, State.ACQUIRING, task=Task(TaskKind.SUN),
                  window=w, acquired=False)
    assert decide(s, sim).steps == ()


def test_window_closes_at_its_planned_end_not_before(sim, the_plan) -> None:
    w = the_plan.windows[1]
    inside = situation(sim, the_plan, w.end_s - 0.05, State.TRACKING, task=Task(TaskKind.SUN),
                       window=w)
    assert decide(inside, sim).steps == ()
    after = situation(sim, the_plan, w.end_s + 0.05, State.TRACKING, task=Task(TaskKind.SUN),
                      window=w)
    d = decide(after, sim)
    assert d.steps[0][0] == "close_window" and d.window is None


def test_a_window_cut_by_a_plan_horizon_continues_in_the_next_plan(sim, the_plan) -> None:
    w = the_plan.windows[1]
    from dataclasses import replace
    cut = replace(w, end_s=w.start_s + 3600.0)     # as a plan ending at that time would give it
    s = situation(sim, the_plan, cut.end_s + 0.1, State.TRACKING, task=Task(TaskKind.SUN),
                  window=cut)
    d = decide(s, sim)
    assert d.steps == () and d.window == w


def test_no_automatic_motion_when_auto_tracking_is_off(sim, the_plan) -> None:
    w = the_plan.windows[1]
    for state in (State.IDLE, State.PARKED, State.STOWED, State.WAITING):
        d = decide(situation(sim, the_plan, w.start_s + 5, state, auto_tracking=False), sim)
        assert d.steps == () and d.task == HOLD


def test_pre_position_slew_starts_with_the_slew_time_lead(sim, the_plan) -> None:
    w = the_plan.windows[1]
    early = situation(sim, the_plan, w.preposition_by_s - 4 * 3600, State.IDLE)
    d = decide(early, sim)
    assert [t for t, _ in d.steps] == ["park"]          # nothing due for hours: park
    late = situation(sim, the_plan, w.preposition_by_s - 30.0, State.PARKED)
    d = decide(late, sim)
    assert [t for t, _ in d.steps] == ["slew"]
    assert d.task.kind is TaskKind.AXES and d.task.model
    assert (d.task.az_deg, d.task.el_deg) == (w.preposition_az_deg, w.preposition_el_deg)


def test_the_slew_time_memo_is_the_callers_and_changes_no_decision(sim, the_plan) -> None:
    """No module state: the memo is an object the caller owns (the engine keeps one)."""
    w = the_plan.windows[1]
    memo = SlewTimes(sim)
    for t in (w.preposition_by_s - 4 * 3600, w.preposition_by_s - 600.0,
              w.preposition_by_s - 30.0, w.preposition_by_s - 30.0):
        s = situation(sim, the_plan, t, State.PARKED)
        assert decide(s, sim, memo) == decide(s, sim)
    assert not [n for n, v in vars(automation).items() if n.startswith("_last")]


def test_arrival_ends_slews_parks_and_stows(sim, the_plan) -> None:
    t = the_plan.windows[1].start_s - 4 * 3600
    for state, trigger, dest_task in ((State.PARKING, "parked", TaskKind.AXES),
                                      (State.STOWING, "stowed", TaskKind.AXES)):
        d = decide(situation(sim, the_plan, t, state, arrived=True, auto_tracking=False,
                             task=Task(TaskKind.AXES, 0.0, 0.0)), sim)
        assert [s[0] for s in d.steps] == [trigger] and d.task.kind is dest_task


def test_wind_stows_from_anywhere_but_parked_and_blocks_automation(sim, the_plan) -> None:
    w = the_plan.windows[1]
    stow = sim.positions.stow
    d = decide(situation(sim, the_plan, w.start_s + 100, State.TRACKING,
                         task=Task(TaskKind.SUN), window=w, wind_stow="wind 20 m/s"), sim)
    assert [s[0] for s in d.steps] == ["stow"] and d.wind_stowed is True
    assert (d.task.az_deg, d.task.el_deg) == (stow.azimuth_deg, stow.elevation_deg)
    # From the wrap's - side the stow direction (270 deg) is nearer on the - turn: -90 deg.
    for here_az, stow_az in ((-120.0, -90.0), (100.0, 270.0), (60.0, -90.0), (250.0, 270.0)):
        d = decide(situation(sim, the_plan, w.start_s + 100, State.TRACKING, window=w,
                             task=Task(TaskKind.SUN), here_deg=(here_az, 10.0),
                             wind_stow="wind 20 m/s"), sim)
        assert (d.task.az_deg, d.task.el_deg) == (stow_az, stow.elevation_deg), here_az
    parked = decide(situation(sim, the_plan, w.start_s + 100, State.PARKED,
                              wind_stow="wind 20 m/s", auto_tracking=False), sim)
    assert parked.steps == () and parked.task == HOLD
    stowed = decide(situation(sim, the_plan, w.start_s + 100, State.STOWED, wind_stowed=True), sim)
    assert stowed.steps == ()


def test_stowed_for_wind_and_idle_after_a_reset_or_restart_goes_back_to_stow(sim, the_plan) -> None:
    w = the_plan.windows[1]
    stow = sim.positions.stow
    d = decide(situation(sim, the_plan, w.start_s + 100, State.IDLE, wind_stowed=True), sim)
    assert d.steps == (("stow", "stowed for wind until calm"),) and d.window is None
    assert (d.task.az_deg, d.task.el_deg) == (stow.azimuth_deg, stow.elevation_deg)
    assert d.wind_stowed is None                      # still stowed for wind
    # calm for the calm time already: released where it is, and the window opens
    d = decide(situation(sim, the_plan, w.start_s + 100, State.IDLE, wind_stowed=True,
                         wind_calm=True), sim)
    assert d.wind_stowed is False and [s[0] for s in d.steps] == ["open_window"]
    # nothing moves out of fault or park for it
    for state in (State.FAULT, State.PARKED):
        d = decide(situation(sim, the_plan, w.start_s + 100, state, wind_stowed=True,
                             auto_tracking=False), sim)
        assert d.steps == ()


def test_jog_ends_on_monotonic_time(sim, the_plan) -> None:
    jog = Task(TaskKind.JOG, jog_axis="azimuth", jog_rate_deg_s=0.1, until_monotonic_s=100.0)
    t = the_plan.windows[1].start_s - 4 * 3600
    running = decide(situation(sim, the_plan, t, State.MANUAL, task=jog, mono_s=99.9,
                               auto_tracking=False), sim)
    assert running.task == jog
    # A UTC step of an hour either way changes nothing: only monotonic time ends it.
    for dt in (-3600.0, 3600.0):
        still = decide(situation(sim, the_plan, t + dt, State.MANUAL, task=jog, mono_s=99.9,
                                 auto_tracking=False), sim)
        assert still.task == jog
    ended = decide(situation(sim, the_plan, t, State.MANUAL, task=jog, mono_s=100.0,
                             auto_tracking=False), sim)
    assert ended.task == HOLD
