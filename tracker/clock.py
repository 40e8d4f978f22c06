"""Injected time.  The core never reads the system clock itself.

All clocks give UTC as unix seconds (float).  ``SystemClock`` is the daemon's,
optionally shifted (``--time-offset-s``, simulated drives only); ``SimClock`` is
advanced explicitly by tests and dry runs, as fast as the CPU allows.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_s(self) -> float:
        """Current UTC time, unix seconds."""


class SystemClock:
    """The system clock, shifted by ``offset_s`` seconds."""

    def __init__(self, offset_s: float = 0.0) -> None:
        self.offset_s = float(offset_s)

    def now_s(self) -> float:
        return time.time() + self.offset_s


class SimClock:
    """A clock that moves only when told to."""

    def __init__(self, start_s: float) -> None:
        self._t = float(start_s)

    def now_s(self) -> float:
        return self._t

    def advance(self, dt_s: float) -> float:
        if dt_s < 0:
            raise ValueError(f"a simulated clock cannot go back ({dt_s} s)")
        self._t += dt_s
        return self._t

    def set(self, t_s: float) -> None:
        """Jump to ``t_s`` (either direction): used to inject clock jumps."""
        self._t = float(t_s)
