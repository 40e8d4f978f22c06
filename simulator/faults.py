"""Fault injection for the simulated mount, its servers and in-process axes.

One ``FaultInjector`` reaches every fault a test, the dry run or an operator
rehearsal may want.  Each fault shows up in the drivers' ``AxisState`` as its
own named ``Condition``:

=====================  ==========================  ==========================
fault                  method                      condition seen by a driver
=====================  ==========================  ==========================
connection dropped     ``drop_connection()``       ``LINK_DOWN``
in-process link lost   ``link(False)``             ``LINK_DOWN``
slow responses         ``delay_responses(s)``      ``TIMEOUT``
garbled frames         ``garble(n)``               ``GARBLED_FRAME``
exception responses    ``exception(code, n)``      ``PROTOCOL_EXCEPTION``
drive trip             ``trip(axis, cond)``        ``OVERCURRENT`` ... (cond)
encoder jump           ``encoder_jump(axis, d)``   ``ENCODER_JUMP``
limit switch           ``limit_switch(axis)``      ``LIMIT_SWITCH``
e-stop                 ``estop(True)``             ``ESTOP``
power loss             ``power_loss()``            ``DRIVE_FAULT`` (+ link)
heartbeat lost         (stop commanding)           ``WATCHDOG``
wind                   ``wind(m_s)``               (weather input)
=====================  ==========================  ==========================
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from drivers.base import Condition
from simulator.mount import SimMount

log = logging.getLogger(__name__)


class FaultInjector:
    """Inject faults into ``mount`` and, when given, a Modbus server and in-process axes.

    ``server`` is a ``simulator.modbus_server.ModbusServerHandle``; ``axes`` maps
    axis names to ``simulator.axis.SimulatedAxis`` objects.
    """

    def __init__(self, mount: SimMount, *, server=None, axes: dict | None = None) -> None:
        self.mount = mount
        self.server = server
        self.axes = axes or {}

    def _names(self, axis: str | None) -> Iterable[str]:
        if axis is None:
            return list(self.mount.axes)
        if axis not in self.mount.axes:
            raise ValueError(f"unknown axis {axis!r}; use 'azimuth' or 'elevation'")
        return [axis]

    def _need_server(self):
        if self.server is None:
            raise ValueError("this fault needs a Modbus server (none attached)")
        return self.server

    def _device(self, axis: str | None) -> int | None:
        if axis is None:
            return None
        return self._need_server().device_ids[axis]

    # ----------------------------------------------------------------- drive faults
    def trip(self, axis: str, condition: Condition = Condition.OVERCURRENT) -> None:
        """Trip a drive with ``condition`` (overcurrent, overtemperature, following error...)."""
        for n in self._names(axis):
            self.mount.axes[n].trip(condition)

    def encoder_jump(self, axis: str, delta_deg: float) -> None:
        for n in self._names(axis):
            self.mount.axes[n].encoder_jump(delta_deg)

    def limit_switch(self, axis: str) -> None:
        """The axis' hard limit switch opens (wiring fault or obstacle): trip LIMIT_SWITCH."""
        for n in self._names(axis):
            self.mount.axes[n].trip(Condition.LIMIT_SWITCH)

    def estop(self, active: bool = True) -> None:
        """Open (or close) the e-stop chain of both drives."""
        for ax in self.mount.axes.values():
            ax.estop(active)

    def power_loss(self) -> None:
        """Mains power fails and returns: both drives brake and come back faulted and disabled;
        the server's connections (if any) are dropped."""
        for ax in self.mount.axes.values():
            ax.trip(Condition.DRIVE_FAULT, "power loss: drive restarted")
        if self.server is not None:
            self.server.drop_connections()

    def wind(self, m_s: float | None) -> None:
        self.mount.set_wind(m_s)

    # ----------------------------------------------------------------- comms faults
    def link(self, up: bool, axis: str | None = None) -> None:
        """Cut or restore the in-process link of ``SimulatedAxis`` objects."""
        for n in self._names(axis):
            if n in self.axes:
                self.axes[n].set_link(up)

    def drop_connection(self) -> int:
        return self._need_server().drop_connections()

    def delay_responses(self, delay_s: float, axis: str | None = None) -> None:
        f = self._need_server().faults
        f.delay_s = float(delay_s)
        f.device_id = self._device(axis)

    def garble(self, count: int = 1, axis: str | None = None) -> None:
        """Garble the next ``count`` replies (-1 = until cleared)."""
        f = self._need_server().faults
        f.garble_count = int(count)
        f.device_id = self._device(axis)

    def exception(self, code: int = 4, count: int = 1, axis: str | None = None) -> None:
        """Answer the next ``count`` requests with Modbus exception ``code`` (-1 = until cleared)."""
        if not 1 <= code <= 255:
            raise ValueError(f"Modbus exception codes are 1..255, not {code}")
        f = self._need_server().faults
        f.exception_code = int(code)
        f.exception_count = int(count)
        f.device_id = self._device(axis)

    def clear(self) -> None:
        """Clear every comms fault and restore links (drive faults need a drive reset)."""
        if self.server is not None:
            self.server.faults.clear()
        for ax in self.axes.values():
            ax.set_link(True)
