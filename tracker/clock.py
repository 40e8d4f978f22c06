"""Injected time.  The core never reads the system clock itself.

Every clock gives two times: ``now_s()``, UTC as unix seconds (what the Sun's position
depends on; it can be stepped by NTP or an operator), and ``monotonic_s()``, seconds that
only ever go forward at the rate of real (or simulated) time, for durations: a jog's
length, a grace time, a timeout.  A wall-clock step therefore never shortens or prolongs
a duration.  ``SystemClock`` is the daemon's (optionally shifted with ``--time-offset-s``,
simulated drives only); ``SimClock`` is advanced explicitly by tests and dry runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def now_s(self) -> float:
        """Current UTC time, unix seconds."""

    def monotonic_s(self) -> float:
        """Seconds on a clock that never steps (durations only; arbitrary origin)."""


class SystemClock:
    """The system clock, shifted by ``offset_s`` seconds; ``time.monotonic`` for durations."""

    def __init__(self, offset_s: float = 0.0) -> None:
        self.offset_s = float(offset_s)

    def now_s(self) -> float:
        return time.time() + self.offset_s

    def monotonic_s(self) -> float:
        return time.monotonic()


class SimClock:
    """A clock that moves only when told to.

    ``advance`` moves both times; ``set`` steps only the UTC time (an injected clock jump),
    as NTP or an operator would step a real system clock.
    """

    def __init__(self, start_s: float) -> None:
        self._t = float(start_s)
        self._mono = 0.0

    def now_s(self) -> float:
        return self._t

    def monotonic_s(self) -> float:
        return self._mono

    def advance(self, dt_s: float) -> float:
        if dt_s < 0:
            raise ValueError(f"a simulated clock cannot go back ({dt_s} s)")
        self._t += dt_s
        self._mono += dt_s
        return self._t

    def set(self, t_s: float) -> None:
        """Step the UTC time to ``t_s`` (either direction); durations are not affected."""
        self._t = float(t_s)


def monotonic_of(clock: object) -> float:
    """``clock.monotonic_s()`` where the clock has one, else ``time.monotonic()``."""
    fn = getattr(clock, "monotonic_s", None)
    return float(fn()) if callable(fn) else time.monotonic()


def monotonic_fn(clock: object) -> Callable[[], float]:
    """The function ``monotonic_of(clock)`` calls, looked up once (for the control tick)."""
    fn = getattr(clock, "monotonic_s", None)
    return fn if callable(fn) else time.monotonic
