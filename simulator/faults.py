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

from simulator.mount import SimMount
from tracker.mount.axis import Condition

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
        ids = self._need_server().device_ids
        if axis not in ids:
            raise ValueError(f"unknown axis {axis!r}; use 'azimuth' or 'elevation'")
        return ids[axis]

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
        dev, delay_s = self._device(axis), float(delay_s)
        if not delay_s >= 0.0:
            raise ValueError(f"a delay must be >= 0 s, not {delay_s}")
        f.delay_s, f.device_id = delay_s, dev

    def garble(self, count: int = 1, axis: str | None = None) -> None:
        """Garble the next ``count`` replies (-1 = until cleared)."""
        f = self._need_server().faults
        dev = self._device(axis)
        f.garble_count, f.device_id = int(count), dev

    def exception(self, code: int = 4, count: int = 1, axis: str | None = None) -> None:
        """Answer the next ``count`` requests with Modbus exception ``code`` (-1 = until cleared)."""
        if not 1 <= code <= 255:
            raise ValueError(f"Modbus exception codes are 1..255, not {code}")
        f = self._need_server().faults
        dev = self._device(axis)
        f.exception_code, f.exception_count, f.device_id = int(code), int(count), dev

    def clear(self) -> None:
        """Clear every comms fault and restore links (drive faults need a drive reset)."""
        if self.server is not None:
            self.server.faults.clear()
        for ax in self.axes.values():
            ax.set_link(True)

    # ----------------------------------------------------------------- text commands
    def command(self, line: str) -> str:
        """Run one text command (``tracker simulate`` reads them from stdin); return a reply.

        ``help`` lists them.  A bad command changes nothing and replies ``error: ...``.
        """
        words = line.split()
        if not words:
            return ""
        name, args = words[0].lower(), words[1:]
        handler = _COMMANDS.get(name)
        if handler is None:
            return f"error: unknown command {name!r}; try 'help'"
        try:
            return handler(self, args)
        except (ValueError, IndexError, KeyError) as exc:
            return f"error: {name}: {exc or 'missing argument'}; try 'help'"

    def status(self) -> str:
        parts = [f"wind {self.mount.wind_m_s:.1f} m/s"]
        for ax in self.mount.axes.values():
            parts.append(f"{ax.name} {ax.encoder_deg:.5f} deg {ax.velocity_deg_s:+.5f} deg/s "
                         f"{'enabled' if ax.enabled else 'disabled'} {ax.limit.value} "
                         f"{ax.condition.value}")
        return "; ".join(parts)


def _condition(word: str) -> Condition:
    try:
        cond = Condition(word.lower())
    except ValueError:
        raise ValueError(f"unknown condition {word!r}") from None
    return cond


_HELP = """commands:
  status                         positions, flags and conditions
  trip AXIS CONDITION            e.g. trip azimuth overcurrent (overtemperature, following_error...)
  jump AXIS DELTA_DEG            encoder jump
  limit AXIS                     limit switch trips
  estop on|off                   open / close the e-stop chain
  power                          power loss (drives fault, connections dropped)
  wind M_S|model                 override the wind speed / back to the seeded model
  drop                           drop every Modbus connection
  delay SECONDS [AXIS]           delay Modbus answers
  garble COUNT [AXIS]            garble the next COUNT answers (-1: until cleared)
  exception CODE COUNT [AXIS]    answer with a Modbus exception
  clear                          clear the comms faults
  help                           this text"""


def _opt_axis(args: list[str], i: int) -> str | None:
    return args[i] if len(args) > i else None


_COMMANDS = {
    "help": lambda f, a: _HELP,
    "status": lambda f, a: f.status(),
    "trip": lambda f, a: (f.trip(a[0], _condition(a[1])), f"tripped {a[0]}: {a[1]}")[1],
    "jump": lambda f, a: (f.encoder_jump(a[0], float(a[1])), f"encoder jump {a[0]} {a[1]} deg")[1],
    "limit": lambda f, a: (f.limit_switch(a[0]), f"limit switch {a[0]}")[1],
    "estop": lambda f, a: (f.estop({"on": True, "off": False}[a[0].lower()]), f"e-stop {a[0]}")[1],
    "power": lambda f, a: (f.power_loss(), "power loss")[1],
    "wind": lambda f, a: (f.wind(None if a[0] == "model" else float(a[0])), f"wind {a[0]}")[1],
    "drop": lambda f, a: f"dropped {f.drop_connection()} connection(s)",
    "delay": lambda f, a: (f.delay_responses(float(a[0]), _opt_axis(a, 1)), f"delay {a[0]} s")[1],
    "garble": lambda f, a: (f.garble(int(a[0]), _opt_axis(a, 1)), f"garble {a[0]}")[1],
    "exception": lambda f, a: (f.exception(int(a[0]), int(a[1]), _opt_axis(a, 2)),
                               f"exception {a[0]} x {a[1]}")[1],
    "clear": lambda f, a: (f.clear(), "comms faults cleared")[1],
}
