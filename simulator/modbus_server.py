"""The simulated mount behind a real pymodbus server (TCP, or RTU over a pty pair).

Each axis is one Modbus device (``drives.modbus.azimuth_device_id`` /
``elevation_device_id``) with the register map of ``drivers.modbus_map``.  The
server uses pymodbus' ``SimDevice``/``SimData`` API (the one kept in pymodbus
4.0) with an ``action`` hook: a read fills the status block from the
``SimAxis``; a write of the command block is executed on the ``SimAxis``.

Server-side fault injection (``ServerFaults``, reachable as ``handle.faults``):
connection drop, responses delayed past the client's timeout, garbled frames
(bad CRC on RTU; a malformed MBAP header on TCP), Modbus exception codes.  Drive
faults (trip, encoder jump, limit switch, e-stop) are injected on the
``SimAxis`` itself (see ``simulator.faults``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import tty
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.modbus_map import RegisterMap, map_for
from simulator.mount import SimAxis, SimMount
from tracker.mount.axis import Limit

log = logging.getLogger(__name__)

_READ_CODES = frozenset((3, 4))


@dataclass
class ServerFaults:
    """Comms faults the server injects.  Counts of -1 mean "until cleared".

    ``device_id`` (None = all) restricts ``exception_*``, ``delay_s`` and ``garble``.
    """

    delay_s: float = 0.0
    exception_code: int = 0
    exception_count: int = 0
    garble_count: int = 0
    device_id: int | None = None
    requests: int = 0
    log: list[str] = field(default_factory=list)

    def clear(self) -> None:
        self.delay_s = 0.0
        self.exception_code = 0
        self.exception_count = 0
        self.garble_count = 0
        self.device_id = None

    def _applies(self, device_id: int) -> bool:
        return self.device_id is None or self.device_id == device_id


class DriveRegisters:
    """Translates between one ``SimAxis`` and its Modbus registers."""

    def __init__(self, axis: SimAxis, regmap: RegisterMap) -> None:
        self.axis = axis
        self.map = regmap
        self.heartbeat_counter = 0
        self._cmd = [0] * regmap.command.count

    def fill_status(self, regs: list[int], start_address: int) -> None:
        """Write the axis' current status into ``regs`` (the device's register list)."""
        m = self.map
        s = m.status
        ax = self.axis
        b = m.status_bits
        i = s.position - start_address
        regs[i:i + 2] = m.int32_to_words(m.deg_to_counts(ax.encoder_deg))
        i = s.velocity - start_address
        regs[i:i + 2] = m.int32_to_words(m.deg_s_to_counts(ax.velocity_deg_s))
        lim = ax.limit
        code = ax.fault_code
        flags = ((ax.enabled << b.enabled) | (ax.moving << b.moving) | ((code != 0) << b.fault)
                 | ((lim is Limit.SOFT_LOW) << b.soft_low)
                 | ((lim is Limit.SOFT_HIGH) << b.soft_high)
                 | ((lim is Limit.HARD_LOW) << b.hard_low)
                 | ((lim is Limit.HARD_HIGH) << b.hard_high)
                 | (ax.estop_active << b.estop) | (ax.braked << b.braked))
        regs[s.flags - start_address] = flags
        regs[s.fault_code - start_address] = code
        regs[s.heartbeat_echo - start_address] = self.heartbeat_counter

    def write(self, address: int, values: list[int]) -> ExcCodes | None:
        """Apply a register write; only the command block is writable."""
        m = self.map
        c = m.command
        first, end = c.address, c.address + c.count
        if address < first or address + len(values) > end:
            return ExcCodes.ILLEGAL_ADDRESS
        cmd = self._cmd
        for k, v in enumerate(values):
            cmd[address - first + k] = v
        ax = self.axis
        hb_i = c.heartbeat - first
        if address <= c.heartbeat < address + len(values):
            hb = cmd[hb_i]
            if hb != self.heartbeat_counter:
                self.heartbeat_counter = hb
                ax.heartbeat()
        if not address <= c.mode < address + len(values):
            return None
        mode = cmd[c.mode - first]
        modes = m.modes
        if mode == modes.none:
            return None
        tp = c.target_position - first
        sp = c.speed - first
        if mode == modes.velocity:
            ax.command_velocity(m.counts_to_deg_s(m.words_to_int32(cmd[sp], cmd[sp + 1])))
        elif mode == modes.position:
            ax.command_position(m.counts_to_deg(m.words_to_int32(cmd[tp], cmd[tp + 1])),
                                abs(m.counts_to_deg_s(m.words_to_int32(cmd[sp], cmd[sp + 1]))))
        elif mode == modes.stop:
            ax.stop()
        elif mode == modes.enable:
            ax.enable()
        elif mode == modes.disable:
            ax.disable()
        elif mode == modes.reset:
            ax.reset()
        else:
            return ExcCodes.ILLEGAL_VALUE
        return None


class ModbusServerHandle:
    """A running Modbus server hosting a ``SimMount``.

    ``port`` is the bound TCP port (TCP), ``client_port`` the pty path a client
    opens (RTU).  ``faults`` holds the comms faults to inject; ``stop()`` ends it.
    """

    def __init__(self, mount: SimMount, regmap: RegisterMap, transport: str) -> None:
        self.mount = mount
        self.map = regmap
        self.transport = transport
        self.faults = ServerFaults()
        md = mount.settings.drives.modbus
        self.device_ids = {"azimuth": md.azimuth_device_id, "elevation": md.elevation_device_id}
        self.drives = {name: DriveRegisters(mount.axes[name], regmap) for name in mount.axes}
        self.server: ModbusTcpServer | ModbusSerialServer | None = None
        self.port: int | None = None
        self.client_port: str | None = None
        self._bridge: _PtyBridge | None = None

    def devices(self) -> list[SimDevice]:
        lo, hi = self.map.register_span
        out = []
        for name, dev_id in self.device_ids.items():
            out.append(SimDevice(
                id=dev_id,
                simdata=[SimData(address=lo, count=hi - lo, values=0,
                                 datatype=DataType.REGISTERS)],
                action=functools.partial(self._action, name, dev_id)))
        return out

    async def _action(self, name: str, device_id: int, function_code: int, start_address: int,
                      address: int, count: int, registers: list[int],
                      set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        f = self.faults
        f.requests += 1
        if f._applies(device_id):
            if f.delay_s > 0.0:
                await asyncio.sleep(f.delay_s)
            if f.exception_count and f.exception_code:
                if f.exception_count > 0:
                    f.exception_count -= 1
                return ExcCodes(f.exception_code)
        drive = self.drives[name]
        if set_values is None:
            drive.fill_status(registers, start_address)
            return None
        return drive.write(address, [int(v) for v in set_values])

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        f = self.faults
        if not sending or f.garble_count == 0 or len(data) < 8:
            return data
        if self.transport == "rtu":
            dev = data[0]
        else:
            dev = data[6]
        if not f._applies(dev):
            return data
        if f.garble_count > 0:
            f.garble_count -= 1
        if self.transport == "rtu":
            return data[:-1] + bytes([data[-1] ^ 0xFF])  # bad CRC
        return data[:2] + b"\xbe\xef" + data[4:]  # MBAP protocol id must be 0

    def drop_connections(self) -> int:
        """Close every client connection now (TCP); returns how many were dropped."""
        if self.server is None:
            return 0
        conns = list(self.server.active_connections.values())
        for c in conns:
            c.close()
        log.info("modbus server: dropped %d connection(s)", len(conns))
        return len(conns)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None


async def start_modbus_tcp_server(mount: SimMount, host: str = "127.0.0.1", port: int = 0,
                                  regmap: RegisterMap | None = None,
                                  ) -> tuple[ModbusServerHandle, int]:
    """Serve ``mount`` over Modbus TCP on ``host:port`` (0 = any free port).

    Returns the handle (``await handle.stop()`` ends it) and the bound port.
    """
    handle = ModbusServerHandle(mount, regmap or map_for(mount.settings), "tcp")
    server = ModbusTcpServer(handle.devices(), address=(host, port),
                             trace_packet=handle._trace_packet)
    try:
        await server.serve_forever(background=True)
    except RuntimeError as exc:  # pymodbus: "Could not start listen"
        raise OSError(f"cannot listen on {host}:{port} (port in use?)") from exc
    handle.server = server
    sockets = getattr(server.transport, "sockets", None) or ()
    handle.port = sockets[0].getsockname()[1] if sockets else port
    log.info("modbus TCP server for the simulated mount on %s:%s", host, handle.port)
    return handle, handle.port


class _PtyBridge:
    """Two pty pairs joined back to back: the server opens one slave, the client the other.

    Both slave paths behave like the two ends of a null-modem cable.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.m_server, self.s_server = os.openpty()
        self.m_client, self.s_client = os.openpty()
        for fd in (self.s_server, self.s_client):
            tty.setraw(fd)
        self.server_path = os.ttyname(self.s_server)
        self.client_path = os.ttyname(self.s_client)
        for fd in (self.m_server, self.m_client):
            os.set_blocking(fd, False)
        self._loop.add_reader(self.m_server, self._pump, self.m_server, self.m_client)
        self._loop.add_reader(self.m_client, self._pump, self.m_client, self.m_server)

    def _pump(self, src: int, dst: int) -> None:
        try:
            data = os.read(src, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        with contextlib.suppress(OSError):
            os.write(dst, data)

    def close(self) -> None:
        for fd in (self.m_server, self.m_client):
            with contextlib.suppress(Exception):
                self._loop.remove_reader(fd)
        for fd in (self.m_server, self.m_client, self.s_server, self.s_client):
            with contextlib.suppress(OSError):
                os.close(fd)


async def start_modbus_rtu_server(mount: SimMount, regmap: RegisterMap | None = None,
                                  baudrate: int = 115200) -> tuple[ModbusServerHandle, str]:
    """Serve ``mount`` over Modbus RTU on a pseudo-terminal pair.

    Returns the handle (``await handle.stop()``) and the pty path the client opens.
    """
    handle = ModbusServerHandle(mount, regmap or map_for(mount.settings), "rtu")
    bridge = _PtyBridge()
    handle._bridge = bridge
    server = ModbusSerialServer(handle.devices(), port=bridge.server_path, baudrate=baudrate,
                                trace_packet=handle._trace_packet)
    await server.serve_forever(background=True)
    for _ in range(2):  # let pymodbus' serial transport finish its set-up callbacks
        await asyncio.sleep(0)
    handle.server = server
    handle.client_port = bridge.client_path
    log.info("modbus RTU server for the simulated mount on %s", bridge.client_path)
    return handle, bridge.client_path
