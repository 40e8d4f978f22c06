"""The simulated mount's wind, served the way real anemometers deliver it.

- ``SimWindSensor``: in process (``weather.source = "sim"``), reads ``SimMount.wind_m_s``;
- ``start_modbus_anemometer(mount, cfg)``: a real pymodbus server (TCP on loopback;
  ``start_modbus_rtu_anemometer``: RTU on a pty pair)
  holding speed and direction in the registers ``weather.modbus`` describes (its data
  types, word order, scale and offset), readable as holding (3) or input (4) registers;
- ``start_nmea_anemometer(mount)``: a pty that emits ``$WIMWV`` sentences every
  ``period_s`` like a Gill WindSonic or a Vaisala WXT5xx in NMEA mode.

All three share ``WindFaults``:

===============  =================================================================
``silent``        stop talking: no sentences / no Modbus replies (the client times
                  out) / the in-process sensor repeats its last reading
``garble(n)``     the next n sentences carry a wrong checksum (n=-1: until cleared);
                  Modbus: the next n requests get exception 4 (device failure)
``truncate(n)``   the next n sentences stop half way (NMEA only)
``freeze()``      the value stops changing (a stuck sensor), the time still advances
``clear()``       all of the above off
===============  =================================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import tempfile
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.weather import encode_value, format_mwv
from simulator.modbus_server import _PtyBridge
from simulator.mount import SimMount
from tracker.config import ModbusWind
from tracker.mount.wind import WindReading

log = logging.getLogger(__name__)


@dataclass
class WindFaults:
    """Faults of a simulated anemometer (see the module docstring).  Counts: -1 = until
    ``clear()``."""

    silent: bool = False
    garble_count: int = 0
    truncate_count: int = 0
    frozen_value: tuple[float, float] | None = None

    def garble(self, n: int = 1) -> None:
        self.garble_count = n

    def truncate(self, n: int = 1) -> None:
        self.truncate_count = n

    def clear(self) -> None:
        self.silent = False
        self.garble_count = 0
        self.truncate_count = 0
        self.frozen_value = None

    def take(self, name: str) -> bool:
        left = getattr(self, name)
        if left == 0:
            return False
        if left > 0:
            setattr(self, name, left - 1)
        return True


class _Source:
    """The wind a simulated sensor reports: the mount's, or a frozen value."""

    def __init__(self, mount: SimMount, faults: WindFaults) -> None:
        self.mount = mount
        self.faults = faults

    def freeze(self) -> None:
        """Hold the current value from now on (a stuck sensor)."""
        self.faults.frozen_value = self.value()

    def value(self) -> tuple[float, float]:
        """(speed m/s, direction deg from north, where the wind comes from)."""
        fv = self.faults.frozen_value
        if fv is not None:
            return fv
        return self.mount.wind_m_s, self.mount.wind_direction_deg


class SimWindSensor(_Source):
    """In-process anemometer on a ``SimMount`` (``WindSensor``); ``clock()`` stamps readings."""

    def __init__(self, mount: SimMount, clock: Callable[[], float],
                 faults: WindFaults | None = None) -> None:
        super().__init__(mount, faults or WindFaults())
        self._clock = clock
        self._last: WindReading | None = None

    async def read(self) -> WindReading:
        f = self.faults
        if f.silent and self._last is not None:
            return self._last
        now_s = self._clock()
        if f.silent:
            return WindReading.invalid(now_s, "simulated anemometer silent")
        if f.garble_count and f.take("garble_count"):
            r = WindReading.invalid(now_s, "bad checksum (simulated)")
        else:
            speed, direction = self.value()
            r = WindReading(now_s, speed, direction)
        self._last = r
        return r

    async def close(self) -> None:
        return None


# ---------------------------------------------------------------------------- Modbus
class ModbusAnemometer(_Source):
    """A running Modbus TCP server with the simulated anemometer; ``await stop()`` ends it."""

    def __init__(self, mount: SimMount, cfg: ModbusWind, faults: WindFaults) -> None:
        super().__init__(mount, faults)
        self.cfg = cfg
        regs = [cfg.speed] + ([cfg.direction] if cfg.direction is not None else [])
        self.start = min(r.address for r in regs)
        self.count = max(r.address + r.count for r in regs) - self.start
        self.server: ModbusTcpServer | ModbusSerialServer | None = None
        self.port: int | None = None
        #: RTU: the pty path the client opens.
        self.client_port: str | None = None
        self._bridge: _PtyBridge | None = None
        self.requests = 0
        #: Replies withheld this long while ``faults.silent`` (longer than any client timeout).
        self.silent_delay_s = 30.0

    def fill(self, registers: list[int], start_address: int) -> None:
        speed, direction = self.value()
        cfg = self.cfg
        for reg, v in ((cfg.speed, speed), (cfg.direction, direction)):
            if reg is None:
                continue
            i = reg.address - start_address
            registers[i:i + reg.count] = encode_value(v, reg)

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values: list[int] | list[bool] | None,
                      ) -> ExcCodes | None:
        self.requests += 1
        if set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # an anemometer's values are read-only
        if self.faults.silent:
            await asyncio.sleep(self.silent_delay_s)
        if self.faults.take("garble_count"):
            return ExcCodes.DEVICE_FAILURE
        self.fill(registers, start_address)
        return None

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None

    def device(self) -> SimDevice:
        return SimDevice(id=self.cfg.device_id,
                         simdata=[SimData(address=self.start, count=self.count, values=0,
                                          datatype=DataType.REGISTERS)],
                         action=functools.partial(ModbusAnemometer._action, self))


async def start_modbus_rtu_anemometer(mount: SimMount, cfg: ModbusWind, *,
                                      faults: WindFaults | None = None) -> ModbusAnemometer:
    """Serve ``mount``'s wind over Modbus RTU on a pty pair; the client opens
    ``handle.client_port`` (at ``cfg.baudrate``)."""
    handle = ModbusAnemometer(mount, cfg, faults or WindFaults())
    bridge = _PtyBridge()
    handle._bridge = bridge
    server = ModbusSerialServer([handle.device()], port=bridge.server_path,
                                baudrate=cfg.baudrate)
    await server.serve_forever(background=True)
    for _ in range(2):  # let pymodbus' serial transport finish its set-up callbacks
        await asyncio.sleep(0)
    handle.server = server
    handle.client_port = bridge.client_path
    log.info("simulated Modbus RTU anemometer on %s, device %d", bridge.client_path,
             cfg.device_id)
    return handle


async def start_modbus_anemometer(mount: SimMount, cfg: ModbusWind, *, host: str = "127.0.0.1",
                                  port: int = 0, faults: WindFaults | None = None,
                                  ) -> ModbusAnemometer:
    """Serve ``mount``'s wind over Modbus TCP on ``host:port`` (0 = any free port; the
    bound one is ``handle.port``) with the register layout of ``cfg``."""
    handle = ModbusAnemometer(mount, cfg, faults or WindFaults())
    server = ModbusTcpServer([handle.device()], address=(host, port))
    try:
        await server.serve_forever(background=True)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {host}:{port} (port in use?)") from exc
    handle.server = server
    sockets = getattr(server.transport, "sockets", None) or ()
    handle.port = sockets[0].getsockname()[1] if sockets else port
    log.info("simulated Modbus anemometer on %s:%s, device %d", host, handle.port,
             cfg.device_id)
    return handle


# ---------------------------------------------------------------------------- NMEA pty
class NmeaAnemometer(_Source):
    """A pty emitting MWV sentences every ``period_s``; the driver opens ``path``.

    Unpacks as ``(path, stop)``.  ``sent`` counts sentences written.  ``unit`` is the
    MWV speed unit (M, K, N or S), ``talker`` the talker id (``WI`` weather instrument,
    ``II`` integrated instrumentation as a Gill WindSonic sends).
    """

    def __init__(self, mount: SimMount, faults: WindFaults, *, period_s: float = 0.25,
                 unit: str = "M", talker: str = "WI", link_path: str | None = None) -> None:
        super().__init__(mount, faults)
        if period_s <= 0:
            raise ValueError(f"period_s must be > 0, not {period_s}")
        self.period_s = period_s
        self.unit = unit
        self.talker = talker
        self._tmpdir: str | None = None
        if link_path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="tracker-wind-")
            link_path = os.path.join(self._tmpdir, "anemometer")
        self.path = str(link_path)
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master_fd: int | None = master
        self._slave_fd: int | None = slave
        tmp = self.path + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.path)
        self.sent = 0
        self.dropped = 0
        self.stopped = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    def __iter__(self) -> Iterator[object]:
        yield self.path
        yield self.stop

    def sentence(self) -> bytes:
        """The next sentence as it goes on the wire (faults applied)."""
        speed_m_s, direction = self.value()
        factor = {"M": 1.0, "K": 3.6, "N": 3600.0 / 1852.0, "S": 3600.0 / 1609.344}[self.unit]
        line = format_mwv(direction, speed_m_s * factor, unit=self.unit, talker=self.talker)
        f = self.faults
        if f.take("garble_count"):
            star = line.rindex(b"*")
            bad = (int(line[star + 1:star + 3], 16) ^ 0x5A) & 0xFF
            line = line[:star + 1] + f"{bad:02X}".encode() + b"\r\n"
        if f.take("truncate_count"):
            line = line[: len(line) // 2]
        return line

    def write(self, data: bytes) -> None:
        fd = self._master_fd
        if fd is None:
            return
        try:
            os.write(fd, data)
        except (BlockingIOError, OSError):
            self.dropped += 1  # nobody reads the port: the pty buffer is full

    async def _run(self) -> None:
        while True:
            if not self.faults.silent:
                self.write(self.sentence())
                self.sent += 1
            await asyncio.sleep(self.period_s)

    def stop(self) -> None:
        """Stop sending, close the pty, remove the symlink (idempotent)."""
        if self.stopped:
            return
        self.stopped = True
        self._task.cancel()
        for fd in (self._master_fd, self._slave_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master_fd = self._slave_fd = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)


def start_nmea_anemometer(mount: SimMount, *, period_s: float = 0.25, unit: str = "M",
                          talker: str = "WI", link_path: str | None = None,
                          faults: WindFaults | None = None) -> NmeaAnemometer:
    """Emit ``mount``'s wind as MWV sentences on a new pty; call from a running event loop."""
    return NmeaAnemometer(mount, faults or WindFaults(), period_s=period_s, unit=unit,
                          talker=talker, link_path=link_path)


__all__ = ["ModbusAnemometer", "NmeaAnemometer", "SimWindSensor", "WindFaults",
           "start_modbus_anemometer", "start_modbus_rtu_anemometer", "start_nmea_anemometer"]
