"""The mount's state machine, declared as data (``transitions`` library).

The machine decides which target applies (Sun, pre-position, park, stow,
manual) and nothing else; the engine computes targets and commands.  Every
transition is reported to ``on_change(source, dest, trigger, cause)`` so it is
logged with its cause.  A trigger that is not allowed in the current state
raises ``StateError`` and changes nothing.

Safety rules encoded here:
- ``fault`` and ``estop`` are left only by the operator's ``reset`` (guarded:
  the cause must have cleared), never by the automation;
- nothing leaves ``fault`` or ``estop`` but ``reset`` (and a deeper fault);
- ``parked`` is left by ``unpark`` (operator) or by the automation's ``slew``/``open_window``
  when automatic tracking was on when it parked (the engine refuses operator motion while
  parked);
- a manual command (goto, jog) is accepted only from a state where the drives
  are healthy.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from transitions import Machine, MachineError

from tracker.errors import StateError


class State(enum.Enum):
    OFF = "off"              # drives not enabled
    IDLE = "idle"            # enabled, holding position, no task
    SLEWING = "slewing"      # moving to a window's pre-position point
    WAITING = "waiting"      # pre-positioned, waiting for the window to open
    ACQUIRING = "acquiring"  # a window is open: moving onto the Sun (not yet on it)
    TRACKING = "tracking"    # following the Sun through a window, acquired
    PARKING = "parking"      # moving to the park position
    PARKED = "parked"        # at park (background data taking)
    MANUAL = "manual"        # operator goto / jog
    STOWING = "stowing"      # moving to the stow position (wind, weather, operator)
    STOWED = "stowed"        # at stow
    FAULT = "fault"          # drives stopped; needs an operator reset
    ESTOP = "estop"          # emergency stop chain open; needs release and reset


S = State
MOVING = [S.IDLE, S.SLEWING, S.WAITING, S.ACQUIRING, S.TRACKING, S.PARKING, S.PARKED, S.MANUAL,
          S.STOWING, S.STOWED]
"""States with healthy, enabled drives (where motion commands may be accepted)."""
#: States in which the drives are commanded to stop.
STOPPED = (S.FAULT, S.ESTOP, S.OFF)
#: States following the Sun.
FOLLOWING = (S.ACQUIRING, S.TRACKING)

#: (trigger, sources, dest): the whole behaviour, as data.  Guards are named in GUARDS.
TRANSITIONS: list[tuple[str, list[State] | State, State]] = [
    ("enable", S.OFF, S.IDLE),
    ("slew", [S.IDLE, S.PARKED, S.WAITING, S.ACQUIRING, S.TRACKING, S.STOWED, S.SLEWING],
     S.SLEWING),
    ("arrive", S.SLEWING, S.WAITING),
    ("open_window", [S.WAITING, S.SLEWING, S.IDLE, S.PARKED, S.STOWED], S.ACQUIRING),
    ("acquired", S.ACQUIRING, S.TRACKING),
    ("reacquire", S.TRACKING, S.ACQUIRING),
    ("close_window", [S.ACQUIRING, S.TRACKING], S.IDLE),
    ("park", [S.IDLE, S.SLEWING, S.WAITING, S.ACQUIRING, S.TRACKING, S.MANUAL, S.STOWED,
              S.STOWING, S.PARKING], S.PARKING),
    ("parked", S.PARKING, S.PARKED),
    ("manual", [S.IDLE, S.SLEWING, S.WAITING, S.ACQUIRING, S.TRACKING, S.PARKING, S.MANUAL,
                S.STOWED, S.STOWING], S.MANUAL),
    ("hold", [S.MANUAL, S.SLEWING, S.WAITING, S.ACQUIRING, S.TRACKING, S.PARKING, S.STOWING,
              S.IDLE], S.IDLE),
    ("unpark", S.PARKED, S.IDLE),
    ("stow", [S.IDLE, S.SLEWING, S.WAITING, S.ACQUIRING, S.TRACKING, S.PARKING, S.MANUAL,
              S.STOWING, S.STOWED], S.STOWING),
    ("stowed", S.STOWING, S.STOWED),
    ("fault", [S.OFF, *MOVING, S.FAULT], S.FAULT),
    ("estop", [S.OFF, *MOVING, S.FAULT, S.ESTOP], S.ESTOP),
    ("reset", [S.FAULT, S.ESTOP], S.IDLE),
    ("disable", [*MOVING, S.FAULT], S.OFF),
]

_NEXT: dict[tuple[State, str], State] = {}
for _trigger, _sources, _dest in TRANSITIONS:
    for _src in (_sources if isinstance(_sources, list) else [_sources]):
        _NEXT[(_src, _trigger)] = _dest


def next_state(state: State, trigger: str) -> State | None:
    """The state ``trigger`` leads to from ``state`` (guards not evaluated), or None."""
    return _NEXT.get((state, trigger))


#: trigger -> name of the guard (a method of the machine's owner given to StateMachine).
GUARDS: dict[str, str] = {"reset": "can_reset"}


class StateMachine:
    """The mount's states and the transitions between them.

    ``guards`` maps a guard name from ``GUARDS`` to a callable returning bool;
    ``on_change(source, dest, trigger, cause)`` is called after every transition.
    """

    #: The current state: set by ``transitions`` only (read it, never assign it).  A plain
    #: attribute, not a property: the tick reads it about six times.
    state: State

    def __init__(self, *, guards: dict[str, Callable[[], bool]] | None = None,
                 on_change: Callable[[State, State, str, str], None] | None = None,
                 initial: State = State.OFF) -> None:
        self._guards = guards or {}
        self._on_change = on_change
        table = []
        for trigger, sources, dest in TRANSITIONS:
            row: dict[str, Any] = {"trigger": trigger, "source": sources, "dest": dest}
            if trigger in GUARDS:
                row["conditions"] = [self._guard(GUARDS[trigger])]
            table.append(row)
        self._machine = Machine(model=self, states=State, transitions=table, initial=initial,
                                auto_transitions=False, send_event=True,
                                ignore_invalid_triggers=False, model_attribute="state")

    def _guard(self, name: str) -> Callable[[Any], bool]:
        def check(_event: Any) -> bool:
            fn = self._guards.get(name)
            return True if fn is None else bool(fn())
        check.__name__ = name
        return check

    def may(self, trigger: str) -> bool:
        """True if ``trigger`` is allowed from the current state (guards not evaluated)."""
        return bool(self._machine.get_transitions(trigger=trigger, source=self.state.name))

    def fire(self, trigger: str, cause: str = "") -> bool:
        """Fire ``trigger`` with a cause for the log; StateError if not allowed here.

        Returns False when a guard refused (e.g. reset while a fault is still present).
        """
        if not self.may(trigger):
            raise StateError(f"'{trigger}' is not allowed while {self.state.value}")
        before = self.state
        try:
            done = bool(getattr(self, trigger)())
        except MachineError as exc:  # pragma: no cover - may() already checked
            raise StateError(str(exc)) from None
        if done and self._on_change is not None:
            self._on_change(before, self.state, trigger, cause)
        return done


def mermaid() -> str:
    """The state diagram as mermaid ``stateDiagram-v2`` text, generated from TRANSITIONS."""
    lines = ["stateDiagram-v2", f"    [*] --> {State.OFF.value}"]
    for trigger, sources, dest in TRANSITIONS:
        srcs = sources if isinstance(sources, list) else [sources]
        guard = f" [{GUARDS[trigger]}]" if trigger in GUARDS else ""
        for src in srcs:
            if src is dest:
                continue
            lines.append(f"    {src.value} --> {dest.value}: {trigger}{guard}")
    return "\n".join(lines) + "\n"


def dot() -> str:
    """The state diagram in graphviz dot, generated from TRANSITIONS."""
    lines = ["digraph states {", "  rankdir=LR; node [shape=box, style=rounded];"]
    for trigger, sources, dest in TRANSITIONS:
        srcs = sources if isinstance(sources, list) else [sources]
        guard = f" [{GUARDS[trigger]}]" if trigger in GUARDS else ""
        for src in srcs:
            if src is not dest:
                lines.append(f'  "{src.value}" -> "{dest.value}" [label="{trigger}{guard}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
