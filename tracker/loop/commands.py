"""Operator commands as typed values, and the motion rules every interface obeys.

Every interface (CLI/HTTP API, Alpaca, Tango, OPC UA, the web page) builds one of these
dataclasses and hands it to ``Engine.execute``; ``check_motion_rules`` is the one place
that says which command is allowed in which state (the table in docs/daemon.md), and
``effect`` says what an allowed command changes (a pure function of the command and the
controller's state).  A refusal raises ``StateError`` (a state rule) or ``EnvelopeError``
(a limit), naming the rule and the limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tracker.config import Settings
from tracker.control.machine import State
from tracker.errors import EnvelopeError, StateError
from tracker.loop.automation import stow_task
from tracker.loop.tasks import HOLD, Task, TaskKind
from tracker.mount.envelope import Envelope
from tracker.mount.frames import Frames

#: Longest accepted jog (s).
MAX_JOG_S = 600.0
AXIS_NAMES = {"az": "azimuth", "el": "elevation", "azimuth": "azimuth", "elevation": "elevation"}


@dataclass(frozen=True, slots=True)
class Goto:
    """Go to a sky direction (azimuth 0..360 deg, elevation deg) with ``boresight``, or with
    ``axes``, to mount (axis) angles: azimuth in the cable-wrap range."""

    az_deg: float
    el_deg: float
    boresight: str | None = None
    axes: bool = False
    name = "goto"

    def args(self) -> dict[str, Any]:
        return {"az_deg": self.az_deg, "el_deg": self.el_deg, "boresight": self.boresight,
                "axes": self.axes}

    def validate(self) -> None:
        if not (math.isfinite(self.az_deg) and math.isfinite(self.el_deg)):
            raise EnvelopeError(f"target ({self.az_deg}, {self.el_deg}) is not a finite number")
        if not self.axes and not 0.0 <= self.az_deg < 360.0:
            raise EnvelopeError(f"sky azimuth {self.az_deg:g} deg is outside 0..360 deg "
                                "(axis positions on the cable wrap: use axes=true)",
                                axis="azimuth", value_deg=self.az_deg)


@dataclass(frozen=True, slots=True)
class Jog:
    """Run one axis ("az"/"el") at ``rate_deg_s`` for ``seconds`` (monotonic time)."""

    axis: str
    rate_deg_s: float
    seconds: float
    name = "jog"

    def args(self) -> dict[str, Any]:
        return {"axis": self.axis, "rate_deg_s": self.rate_deg_s, "seconds": self.seconds}

    @property
    def axis_name(self) -> str:
        return AXIS_NAMES[self.axis]

    def validate(self) -> None:
        if self.axis not in AXIS_NAMES:
            raise EnvelopeError(f"unknown axis {self.axis!r}: use 'az' or 'el'")
        if not (math.isfinite(self.rate_deg_s) and math.isfinite(self.seconds)):
            raise EnvelopeError("jog rate and duration must be finite numbers")
        if not 0 < self.seconds <= MAX_JOG_S:
            raise EnvelopeError(f"jog duration {self.seconds:g} s must be in (0, {MAX_JOG_S:g}] s")


@dataclass(frozen=True, slots=True)
class Stop:
    name = "stop"

    def args(self) -> dict[str, Any]:
        return {}

    def validate(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Park(Stop):
    name = "park"


@dataclass(frozen=True, slots=True)
class Unpark(Stop):
    name = "unpark"


@dataclass(frozen=True, slots=True)
class Stow(Stop):
    name = "stow"


@dataclass(frozen=True, slots=True)
class Reset(Stop):
    name = "reset"


@dataclass(frozen=True, slots=True)
class Track:
    """Automatic tracking on or off."""

    on: bool
    name = "track"

    def args(self) -> dict[str, Any]:
        return {"on": self.on}

    def validate(self) -> None:
        if not isinstance(self.on, bool):
            raise EnvelopeError(f"track 'on' must be true or false, not {self.on!r}")


Command = Goto | Jog | Stop | Park | Unpark | Stow | Reset | Track

#: The motion rules: the states in which each command is refused, and why.  Commands not
#: listed for a state are allowed there (``stop`` is allowed everywhere).
_FAULTED = {State.FAULT: "the mount is in fault: acknowledge it with 'reset' first",
            State.ESTOP: "the emergency stop is active: release it, then 'reset'",
            State.OFF: "the drives are not enabled"}
_PARKED = {State.PARKED: "the mount is parked: 'unpark' first (parked means nothing moves)"}
REFUSED: dict[str, dict[State, str]] = {
    "goto": {**_FAULTED, **_PARKED},
    "jog": {**_FAULTED, **_PARKED},
    "track_on": {**_FAULTED, **_PARKED},
    "park": dict(_FAULTED),
    "stow": {**_FAULTED, **_PARKED},
    "unpark": {s: f"the mount is not parked (state {s.value}): nothing to unpark"
               for s in State if s is not State.PARKED},
}
#: While stowed for wind, these are refused until the wind calms.
WIND_BLOCKED = ("goto", "jog", "track_on", "park")


def rule_key(cmd: Command) -> str:
    if isinstance(cmd, Track):
        return "track_on" if cmd.on else "track_off"
    return cmd.name


def check_motion_rules(cmd: Command, state: State, *, wind_stowed: bool) -> None:
    """Raise ``StateError`` if ``cmd`` is not allowed in ``state`` (the motion rules)."""
    key = rule_key(cmd)
    reason = REFUSED.get(key, {}).get(state)
    if reason:
        raise StateError(f"{cmd.name} refused: {reason}")
    if wind_stowed and key in WIND_BLOCKED:
        raise StateError(f"{cmd.name} refused: stowed for wind; motion is blocked until the "
                         "wind calms")


def rules_table() -> list[tuple[str, str, str]]:
    """(command, state, result) for every pair: the table in docs/daemon.md."""
    rows = []
    for key in ("goto", "jog", "track_on", "track_off", "park", "unpark", "stow", "stop",
                "reset"):
        for s in State:
            reason = REFUSED.get(key, {}).get(s)
            rows.append((key, s.value, f"refused: {reason}" if reason else "accepted"))
    return rows


def rules_markdown() -> str:
    """The motion rules as a markdown table (states x commands), for docs/daemon.md."""
    keys = ("goto", "jog", "track_on", "track_off", "park", "unpark", "stow", "stop", "reset")
    short = {"the mount is in fault: acknowledge it with 'reset' first": "reset first",
             "the emergency stop is active: release it, then 'reset'": "release, reset",
             "the drives are not enabled": "drives off",
             "the mount is parked: 'unpark' first (parked means nothing moves)": "unpark first"}
    lines = ["| state | " + " | ".join(k.replace("_", " ") for k in keys) + " |",
             "| --- |" + " --- |" * len(keys)]
    for s in State:
        cells = []
        for k in keys:
            reason = REFUSED.get(k, {}).get(s)
            cells.append("ok" if not reason else ("not parked" if k == "unpark"
                                                  else short.get(reason, reason)))
        lines.append(f"| {s.value} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Effect:
    """What an allowed command changes, applied by the engine in this order: automatic
    tracking (None: unchanged; ``announce``: logged even when unchanged), the tracking
    window left, the boresight and the task (None: unchanged), then the transition
    ``trigger`` fired (None: none) with ``cause``."""

    cause: str
    auto_tracking: bool | None = None
    announce: bool = False
    leave_window: bool = False
    boresight: str | None = None
    task: Task | None = None
    trigger: str | None = None


@dataclass(frozen=True, slots=True)
class Context:
    """The controller's state a command's effect depends on: the machine's state and its
    ``may(trigger)``, the boresight in use, the axes' last reading (encoder degrees; NaN
    before the first), the monotonic time (s) and the configuration."""

    state: State
    may: Callable[[str], bool]
    boresight: str
    here_deg: tuple[float, float]
    monotonic_s: float
    settings: Settings
    envelope: Envelope
    frames: Frames


def effect(cmd: Command, c: Context, source: str) -> Effect:
    """What ``cmd`` (validated, allowed by the motion rules; not ``Reset``, which talks to
    the drives) changes; raises ``StateError``/``EnvelopeError`` before anything changes
    when the state machine or the envelope refuses it.  Pure."""
    if isinstance(cmd, Reset):
        raise TypeError("a reset talks to the drives: Engine.execute applies it")

    def require(trigger: str) -> None:
        if not c.may(trigger):
            raise StateError(f"{cmd.name} refused: not possible while {c.state.value}")

    cause = f"{cmd.name} from {source}"
    if isinstance(cmd, Goto):
        require("manual")
        b = cmd.boresight or c.boresight
        c.settings.envelope.boresight(b)                  # an unknown name is refused
        if cmd.axes:
            c.envelope.check_axes(cmd.az_deg, cmd.el_deg)
            task = Task(TaskKind.AXES, cmd.az_deg, cmd.el_deg, boresight=b)
        else:
            near = c.here_deg[0] if math.isfinite(c.here_deg[0]) else None
            c.frames.sky_to_mount(b, cmd.az_deg, cmd.el_deg, near_az_deg=near)
            task = Task(TaskKind.SKY, cmd.az_deg, cmd.el_deg, boresight=b)
        return Effect(cause, False, leave_window=True, boresight=b, task=task,
                      trigger="manual")
    if isinstance(cmd, Jog):
        require("manual")
        name = cmd.axis_name
        c.envelope.check_rate(name, cmd.rate_deg_s)
        az, el = c.here_deg
        travel = cmd.rate_deg_s * cmd.seconds
        c.envelope.check_axes(az + travel if name == "azimuth" else az,
                              el + travel if name == "elevation" else el)
        return Effect(cause, False, leave_window=True, trigger="manual", task=Task(
            TaskKind.JOG, jog_axis=name, jog_rate_deg_s=cmd.rate_deg_s,
            until_monotonic_s=c.monotonic_s + cmd.seconds))
    if isinstance(cmd, Track):
        cause = f"{cmd.name} {'on' if cmd.on else 'off'} from {source}"
        if cmd.on and c.state is State.MANUAL:
            return Effect(cause, True, announce=True, task=HOLD, trigger="hold")
        if not cmd.on and c.state in (State.ACQUIRING, State.TRACKING, State.SLEWING,
                                      State.WAITING):
            return Effect(cause, False, announce=True, leave_window=True, task=HOLD,
                          trigger="hold")
        return Effect(cause, cmd.on, announce=True)
    if isinstance(cmd, Park):
        if c.state is State.PARKED:
            return Effect(cause, False)
        require("park")
        p = c.settings.positions.park
        return Effect(cause, False, leave_window=True, trigger="park",
                      task=Task(TaskKind.AXES, p.azimuth_deg, p.elevation_deg))
    if isinstance(cmd, Unpark):
        require("unpark")
        # The operator takes over: the automation would park again at once.
        return Effect(cause, False, task=HOLD, trigger="unpark")
    if isinstance(cmd, Stow):
        if c.state is State.STOWED:
            return Effect(cause, False)
        require("stow")
        return Effect(cause, False, leave_window=True, trigger="stow",
                      task=stow_task(c.settings, c.here_deg[0]))
    if isinstance(cmd, Stop):
        return Effect(cause, False, leave_window=True, task=HOLD,
                      trigger="hold" if c.may("hold") else None)
    raise TypeError(f"no effect for {cmd!r}")
