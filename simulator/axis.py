"""``SimulatedAxis``: the ``tracker.mount.axis.Axis`` interface in process, over a ``SimAxis``.

No wire in between: commands go straight to the simulated drive.  The only comms
fault that makes sense in process is a lost link (``link_down``): then commands
are dropped (the drive's watchdog will stop the axis) and ``read()`` returns the
last good values with ``Condition.LINK_DOWN`` and ``fresh=False``.
"""

from __future__ import annotations

from collections.abc import Callable

from simulator.mount import SimAxis
from tracker.mount.axis import AxisState, Condition, stale_state

# Members tested every tick, as module constants (``Enum.X`` costs ~80 ns on Python 3.11:
# docs/performance.md).
_OK = Condition.OK


class SimulatedAxis:
    """An ``Axis`` over one ``SimAxis``; ``clock()`` gives the reading timestamps (UTC unix s)."""

    #: In process: one axis after the other is cheaper than asyncio.gather.
    concurrent_io = False

    def __init__(self, sim: SimAxis, clock: Callable[[], float]) -> None:
        self.name = sim.name
        self.sim = sim
        self._clock = clock
        self.link_up = True
        self._connected = False
        self._last: AxisState | None = None

    def set_link(self, up: bool) -> None:
        """Fault injection: cut (``False``) or restore the in-process link."""
        self.link_up = bool(up)

    def _live(self) -> bool:
        return self._connected and self.link_up

    async def connect(self) -> None:
        self._connected = True

    async def close(self) -> None:
        self._connected = False

    async def read(self) -> AxisState:
        now_s = self._clock()
        if not (self._connected and self.link_up):
            return stale_state(self.name, self._last, Condition.LINK_DOWN,
                               "simulated link down" if self._connected else "not connected",
                               now_s)
        s = self.sim
        condition = s.condition
        state = AxisState(self.name, s.encoder_deg, s.velocity_deg_s, s.enabled, s.moving,
                          s.limit, condition, 0 if condition is _OK else s.fault_code,
                          s.fault_text, now_s)
        self._last = state
        return state

    async def command_velocity(self, velocity_deg_s: float) -> None:
        if self._connected and self.link_up:    # ``_live()``, inline: every tick, twice
            self.sim.command_velocity(velocity_deg_s)

    async def command_position(self, position_deg: float, speed_deg_s: float) -> None:
        if self._live():
            self.sim.command_position(position_deg, speed_deg_s)

    async def stop(self) -> None:
        if self._live():
            self.sim.stop()

    async def enable(self) -> None:
        if self._live():
            self.sim.enable()

    async def disable(self) -> None:
        if self._live():
            self.sim.disable()

    async def reset(self) -> None:
        if self._live():
            self.sim.reset()

    async def heartbeat(self) -> None:
        """Refresh the drive's watchdog without commanding anything."""
        if self._live():
            self.sim.heartbeat()
