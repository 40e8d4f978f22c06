"""Automation: which task and which transitions, as a pure function of the situation.

``decide(situation) -> Decision``: no I/O, no clock, no mutation; tested from a table
(``tests/loop/test_automation.py``).  The engine fires the decision's transitions in order and
takes its task and window.
"""

from __future__ import annotations

from typing import NamedTuple

from tracker.config import Settings
from tracker.control.machine import FOLLOWING, STOPPED, State, next_state
from tracker.loop.tasks import HOLD, Task, TaskKind
from tracker.mount.envelope import Envelope
from tracker.planning.planner import Plan, Window, slew_time_s
from tracker.timefmt import iso_utc

#: Park between windows only when the next pre-position slew starts later than this (s).
PARK_IF_IDLE_FOR_S = 1800.0
#: The pre-position slew starts this factor x the slew time + PREPOSITION_LEAD_S early.
SLEW_TIME_FACTOR = 1.2
PREPOSITION_LEAD_S = 60.0
# Members ``decide`` tests every tick, as module constants (``State.X`` costs ~80 ns on
# Python 3.11: docs/performance.md).
_ACQUIRING, _JOG = State.ACQUIRING, TaskKind.JOG


class Situation(NamedTuple):
    """What the automation sees at UTC time ``t_s`` (mount angles in degrees).  Immutable
    and built once per tick (a named tuple: cheaper to build than a frozen dataclass)."""

    t_s: float
    mono_s: float
    state: State
    auto_tracking: bool
    task: Task
    window: Window | None
    plan: Plan | None
    here_deg: tuple[float, float]
    arrived: bool
    acquired: bool = False
    wind_stow: str = ""            # the cause when the wind supervisor asks for a stow
    wind_calm: bool = False        # stowed for wind and calm for the calm time
    wind_stowed: bool = False
    fault_pending: bool = False
    clock_ok: bool = True          # the clock may be trusted for automatic tracking


class Decision(NamedTuple):
    """Transitions to fire in order ``(trigger, cause)``; the task and window after them;
    ``wind_stowed`` / ``auto_tracking`` when they change (None: unchanged); ``note``: an
    info event to log.  Immutable, one per tick."""

    steps: tuple[tuple[str, str], ...] = ()
    task: Task = HOLD
    window: Window | None = None
    wind_stowed: bool | None = None
    auto_tracking: bool | None = None
    note: str = ""
    opened: bool = False           # a window was (re)opened: the acquisition starts now


class _Builder:
    """Collects the steps of one decision, following the state through the table."""

    __slots__ = ("state", "steps", "task", "window")

    def __init__(self, s: Situation) -> None:
        self.state = s.state
        self.steps: list[tuple[str, str]] = []
        self.task = s.task
        self.window = s.window

    def fire(self, trigger: str, cause: str) -> bool:
        dest = next_state(self.state, trigger)
        if dest is None:
            return False
        self.steps.append((trigger, cause))
        self.state = dest
        return True

    def may(self, trigger: str) -> bool:
        return next_state(self.state, trigger) is not None


class SlewTimes:
    """``slew_time_s`` for one configuration, kept while its inputs repeat (every tick while
    the mount waits for a pre-position slew).  The caller owns it (the engine keeps one
    across ticks) and passes it to ``decide``: a memo of a pure function, so the decision
    is the same with or without it."""

    __slots__ = ("settings", "_last")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: (from, to, seconds) of the last call.
        self._last: tuple[tuple[float, float], tuple[float, float], float] | None = None

    def __call__(self, from_axes: tuple[float, float], to_axes: tuple[float, float]) -> float:
        last = self._last
        if last is not None and last[0] == from_axes and last[1] == to_axes:
            return last[2]
        t = slew_time_s(self.settings, from_axes, to_axes)
        self._last = (from_axes, to_axes, t)
        return t


def stow_task(settings: Settings, here_az_deg: float) -> Task:
    """To the stow position by the shortest way: its direction on the cable-wrap turn
    nearest the mount's azimuth ``here_az_deg`` (deg) inside the envelope (a survival
    position is a direction; on BabyIAXO's wrap the other turn can be 360 deg away)."""
    stow = settings.positions.stow
    az, el = Envelope.from_settings(settings).nearest_turn_axes(
        stow.azimuth_deg, stow.elevation_deg, here_az_deg)
    return Task(TaskKind.AXES, az, el)


def preposition_start_s(settings: Settings, nxt: Window, here_deg: tuple[float, float],
                        slew_times: SlewTimes | None = None) -> float:
    """When (UTC s) the slew from the axes ``here_deg`` (mount degrees) to window ``nxt``'s
    pre-position point starts: its slew time with a margin, and a minute, before the
    pre-position deadline.  Pure."""
    entry = (nxt.preposition_az_deg, nxt.preposition_el_deg)
    slew_s = (slew_times(here_deg, entry) if slew_times is not None
              else slew_time_s(settings, here_deg, entry))
    return nxt.preposition_by_s - (slew_s * SLEW_TIME_FACTOR + PREPOSITION_LEAD_S)


def decide(s: Situation, settings: Settings, slew_times: SlewTimes | None = None) -> Decision:
    """The automation's decision for this tick (see module docstring).  ``slew_times``: the
    caller's memo of ``slew_time_s`` for ``settings`` (None: computed afresh)."""
    b = _Builder(s)
    wind_stowed: bool | None = None
    auto: bool | None = None
    note = ""
    if s.state in STOPPED:
        return Decision(task=HOLD, window=s.window)
    # Wind: stow unless parked (parked means nothing moves; the brakes hold it).
    if s.wind_stow and s.state is not State.PARKED:
        if s.state is not State.STOWING:
            b.task = stow_task(settings, s.here_deg[0])
            b.fire("stow", s.wind_stow)
        return Decision(tuple(b.steps), b.task, None, wind_stowed=True)
    if s.wind_calm and s.wind_stowed and s.state in (State.STOWED, State.IDLE):
        wind_stowed = False
        resume = settings.weather.auto_resume
        note = ("wind calm for " f"{settings.weather.calm_s:g} s"
                + ("; resuming" if resume else "; staying stowed"))
        if not resume:
            auto = False
    stowed = s.wind_stowed if wind_stowed is None else wind_stowed
    if stowed and s.state is State.IDLE:
        # Stowed for wind, then reset after a fault or restarted: back to the stow
        # position until the wind has been calm for the calm time.
        b.task = stow_task(settings, s.here_deg[0])
        b.fire("stow", "stowed for wind until calm")
        return Decision(tuple(b.steps), b.task, None, wind_stowed, auto, note)
    auto_on = s.auto_tracking if auto is None else auto
    if b.task.kind is _JOG and s.mono_s >= b.task.until_monotonic_s:
        b.task = HOLD
    if s.arrived and b.state in (State.SLEWING, State.PARKING, State.STOWING):
        b.fire({State.SLEWING: "arrive", State.PARKING: "parked",
                State.STOWING: "stowed"}[b.state],
               {State.SLEWING: "at pre-position", State.PARKING: "at park position",
                State.STOWING: "at stow position"}[b.state])
    opened = False
    if b.state in FOLLOWING:
        w = b.window
        if w is not None and s.t_s > w.end_s and s.plan is not None:
            # The window ends at a plan's horizon: the next plan continues it.
            cont = s.plan.window_at(s.t_s)
            if cont is not None and cont.boresight == w.boresight and cont.start_s <= w.end_s:
                b.window = w = cont
        if w is None or s.t_s > w.end_s or s.t_s < w.start_s:
            cause = ("no window" if w is None else "window end (Sun leaves the envelope)"
                     if s.t_s > w.end_s else "clock before the window start")
            b.fire("close_window", cause)
            b.window = None
            b.task = HOLD
        else:
            if b.state is _ACQUIRING and s.acquired:
                b.fire("acquired", "on the Sun within tolerance")
            return Decision(tuple(b.steps), b.task, b.window, wind_stowed, auto, note)
    if not auto_on or stowed or s.fault_pending:
        return Decision(tuple(b.steps), b.task, b.window, wind_stowed, auto, note)
    plan = s.plan
    w = plan.window_at(s.t_s) if plan else None
    if w is not None and s.t_s < w.end_s and b.may("open_window") and s.clock_ok:
        b.window = w
        b.task = Task(TaskKind.SUN, boresight=w.boresight)
        b.fire("open_window", f"window {iso_utc(w.start_s)} - {iso_utc(w.end_s)} "
                              f"({w.boresight})")
        opened = True
        return Decision(tuple(b.steps), b.task, b.window, wind_stowed, auto, note, opened)
    nxt = plan.next_window(s.t_s) if plan else None
    if nxt is not None:
        entry = (nxt.preposition_az_deg, nxt.preposition_el_deg)
        start_slew = preposition_start_s(settings, nxt, s.here_deg, slew_times)
        if s.t_s >= start_slew:
            if b.state is State.WAITING or (b.state is State.SLEWING
                                            and b.task.kind is TaskKind.AXES
                                            and (b.task.az_deg, b.task.el_deg) == entry):
                return Decision(tuple(b.steps), b.task, b.window, wind_stowed, auto, note)
            b.task = Task(TaskKind.AXES, *entry, boresight=nxt.boresight, model=True)
            if not b.fire("slew", f"pre-position for the window at {iso_utc(nxt.start_s)}"):
                b.fire("hold", "re-planning")
            return Decision(tuple(b.steps), b.task, b.window, wind_stowed, auto, note)
        if start_slew - s.t_s < PARK_IF_IDLE_FOR_S and b.state is not State.PARKING:
            return Decision(tuple(b.steps), b.task, b.window, wind_stowed, auto, note)
    if b.state in (State.IDLE, State.WAITING, State.SLEWING, State.STOWED):
        park = settings.positions.park
        b.task = Task(TaskKind.AXES, park.azimuth_deg, park.elevation_deg)
        b.fire("park", "no window soon")
    return Decision(tuple(b.steps), b.task, b.window, wind_stowed, auto, note)
