"""Operator commands as typed values, and the motion rules every interface obeys.

Every interface (CLI/HTTP API, Alpaca, Tango, OPC UA, the web page) builds one of these
dataclasses and hands it to ``Engine.execute``; ``check_motion_rules`` is the one place
that says which command is allowed in which state (the table in docs/daemon.md).  A
refusal raises ``StateError`` (a state rule) or ``EnvelopeError`` (a limit), naming the
rule and the limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tracker.control.machine import State
from tracker.errors import EnvelopeError, StateError

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
