"""One simulated-time harness for dry runs, the soak and the tests.

Each step: ``engine.tick()`` at the clock's time, then the physics advances by the step
(``step_physics(dt_s)``: the simulated mount), then the clock.  The step is the control
period, or longer (``step_s`` may return more) while nothing moves and nothing is due.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol


class _Engine(Protocol):
    period_s: float

    async def tick(self) -> None: ...


class _Clock(Protocol):
    def now_s(self) -> float: ...

    def monotonic_s(self) -> float: ...

    def advance(self, dt_s: float) -> float: ...


class SimulatedTime:
    """Steps an engine and its physics on a simulated clock (see the module docstring)."""

    def __init__(self, engine: _Engine, clock: _Clock, step_physics: Callable[[float], None]
                 ) -> None:
        self.engine = engine
        self.clock = clock
        self.step_physics = step_physics
        self.ticks = 0

    async def run(self, seconds: float, *,
                  until: Callable[[], bool] | None = None,
                  step_s: Callable[[float], float] | None = None,
                  observe: Callable[[float, float], None] | None = None,
                  before: Callable[[], Awaitable[None]] | None = None,
                  on_error: Callable[[BaseException], None] | None = None) -> None:
        """Run ``seconds`` of simulated time (or until ``until()`` after a step).

        ``before()`` runs before each tick (fault injection, operator actions);
        ``step_s(t)``: the step to take after the tick at ``t`` (default: the control
        period); ``observe(dt, t_end)`` is called after each step; ``on_error`` receives an
        exception from a tick (the run goes on) instead of it ending the run.
        """
        clock, period = self.clock, self.engine.period_s
        # Simulated seconds are counted on the monotonic clock: an injected step of the UTC
        # clock neither ends the run early nor prolongs it.
        end_mono = clock.monotonic_s() + seconds
        while clock.monotonic_s() < end_mono - 1e-9:
            if before is not None:
                await before()
            t = clock.now_s()
            try:
                await self.engine.tick()
            except Exception as exc:
                if on_error is None:
                    raise
                on_error(exc)
            self.ticks += 1
            dt = step_s(t) if step_s is not None else period
            rest = end_mono - clock.monotonic_s()
            if rest < dt:
                dt = rest
            self.step_physics(dt)
            clock.advance(dt)
            if observe is not None:
                observe(dt, t + dt)
            if until is not None and until():
                return
