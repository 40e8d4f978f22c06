"""Modbus TCP / RTU axis drives (pymodbus async client), register map from config.

One ``ModbusLink`` (a TCP connection or an RTU serial line) is shared by the
axes on it; each ``ModbusAxis`` is one drive (one Modbus device id).  Per control
cycle an axis does two transactions: one read of the contiguous status block
(``read()``) and one write-multiple of the command block, which carries the
heartbeat counter (every command).  See ``config/modbus_map.toml``.

Device problems never raise: ``read()`` reports them as conditions
(``LINK_DOWN``, ``TIMEOUT``, ``GARBLED_FRAME``, ``PROTOCOL_EXCEPTION``) with the
last good position and ``fresh=False``.  A failed command is reported by the
next ``read()``.  A lost link is reopened with bounded exponential backoff
(``BACKOFF_MIN_S`` .. ``BACKOFF_MAX_S``), never blocking a cycle for longer than
the configured timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from drivers.modbus_map import RegisterMap, map_for
from drivers.status_word import decode_state
from tracker.mount.axis import AxisState, Condition, stale_state

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0
#: Consecutive timeouts after which pymodbus drops a TCP connection (then LINK_DOWN).
MAX_NO_RESPONSES = 10

EXCEPTION_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                   4: "server device failure", 5: "acknowledge", 6: "server device busy",
                   8: "memory parity error", 10: "gateway path unavailable",
                   11: "gateway target failed to respond"}


class CommsError(Exception):
    """Internal: a failed transaction, with the condition it stands for."""

    def __init__(self, condition: Condition, text: str) -> None:
        super().__init__(text)
        self.condition = condition
        self.text = text


class _GarbledFrame(Exception):
    pass


class ModbusLink:
    """One Modbus connection (TCP or RTU) shared by the drives on it.

    ``transport`` is ``"tcp"`` (``host``, ``port``) or ``"rtu"`` (``serial_port``,
    ``baudrate``); ``timeout_s`` bounds each transaction.
    """

    def __init__(self, *, transport: str = "tcp", host: str = "127.0.0.1", port: int = 502,
                 serial_port: str = "", baudrate: int = 115200, timeout_s: float = 0.25) -> None:
        self.transport = transport
        self.timeout_s = timeout_s
        if transport == "tcp":
            self.where = f"{host}:{port}"
        elif transport == "rtu":
            self.where = serial_port
        else:
            raise ValueError(f"unknown Modbus transport {transport!r} (tcp or rtu)")
        self._params = (host, port, serial_port, baudrate)
        # pymodbus clients need a running event loop: made on first use.
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._lock = asyncio.Lock()
        self._backoff_s = BACKOFF_MIN_S
        self._next_attempt_s = 0.0
        self._ever_connected = False
        self._up = False
        self._closed = False
        self.connects = 0
        self.failed_connects = 0

    @property
    def client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        """The pymodbus client (created on first use, inside the event loop)."""
        if self._client is None:
            host, port, serial_port, baudrate = self._params
            if self.transport == "tcp":
                self._client = AsyncModbusTcpClient(
                    host, port=port, timeout=self.timeout_s, retries=0, reconnect_delay=0)
            else:
                self._client = AsyncModbusSerialClient(
                    serial_port, baudrate=baudrate, timeout=self.timeout_s, retries=0,
                    reconnect_delay=0)
            self._client.set_max_no_responses(MAX_NO_RESPONSES)
            self._install_garble_detector()
        return self._client

    def _install_garble_detector(self) -> None:
        """Make pymodbus' frame decoder report a garbled reply at once (not as a timeout)."""
        assert self._client is not None
        ctx = self._client.ctx
        framer = ctx.framer
        original = framer.decode
        rtu = self.transport == "rtu"

        def decode(data: bytes) -> tuple[int, int, int, bytes]:
            result = original(data)
            if rtu:
                garbled = result[0] > 0 and not result[3]      # CRC check failed
            else:
                garbled = len(data) >= 8 and data[2:4] != b"\x00\x00"  # MBAP protocol id != 0
            if garbled:
                fut = ctx.response_future
                if not fut.done():
                    fut.set_exception(_GarbledFrame())
                return len(data), 0, 0, b""
            return result

        framer.decode = decode  # type: ignore[method-assign]

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def ensure(self) -> None:
        """Connect if needed (respecting the backoff); raise ``CommsError(LINK_DOWN)`` if down."""
        if self.client.connected:
            return
        if self._closed:
            raise CommsError(Condition.LINK_DOWN, "link closed")
        if self._up:
            # The connection was lost since the last transaction: report it once;
            # the next call reconnects at once.
            self._up = False
            log.warning("%s: connection lost; reconnecting", self.where)
            raise CommsError(Condition.LINK_DOWN, f"{self.where}: connection lost; reconnecting")
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.client.connected:
                return
            now = time.monotonic()
            if now < self._next_attempt_s:
                raise CommsError(Condition.LINK_DOWN,
                                 f"{self.where}: link down, retry in {self._next_attempt_s - now:.2f} s")
            ok = False
            try:
                ok = await self.client.connect()
            except Exception as exc:  # noqa: BLE001 - a driver never raises into the loop
                log.debug("%s: connect failed: %s", self.where, exc)
            if ok:
                self._backoff_s = BACKOFF_MIN_S
                self.connects += 1
                if self._ever_connected:
                    log.info("%s: reconnected", self.where)
                self._ever_connected = True
                self._up = True
                return
            self.failed_connects += 1
            self._next_attempt_s = time.monotonic() + self._backoff_s
            self._backoff_s = min(2.0 * self._backoff_s, BACKOFF_MAX_S)
            raise CommsError(Condition.LINK_DOWN, f"{self.where}: cannot connect")

    async def _call(self, request, function_code: int) -> list[int]:
        await self.ensure()
        try:
            rr = await request()
        except _GarbledFrame:
            raise CommsError(Condition.GARBLED_FRAME, f"{self.where}: garbled reply frame") from None
        except ConnectionException as exc:
            raise CommsError(Condition.LINK_DOWN, f"{self.where}: {exc}") from None
        except ModbusIOException as exc:
            if not self.client.connected:
                raise CommsError(Condition.LINK_DOWN, f"{self.where}: connection lost") from None
            msg = str(exc)
            if "No response" in msg:
                self._resync()
                raise CommsError(Condition.TIMEOUT,
                                 f"{self.where}: no answer within {self.timeout_s} s") from None
            if "transaction id" in msg or "device id" in msg:
                # the answer to an earlier, timed-out request arrived late
                self._resync()
                raise CommsError(Condition.TIMEOUT, f"{self.where}: late reply: {msg}") from None
            raise CommsError(Condition.GARBLED_FRAME, f"{self.where}: bad reply: {msg}") from None
        except (TimeoutError, ModbusException, OSError) as exc:
            raise CommsError(Condition.LINK_DOWN, f"{self.where}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a driver never raises into the loop
            log.exception("%s: unexpected error in a Modbus transaction", self.where)
            raise CommsError(Condition.LINK_DOWN, f"{self.where}: unexpected error: {exc}") from None
        if rr.isError():
            code = getattr(rr, "exception_code", 0)
            raise CommsError(Condition.PROTOCOL_EXCEPTION,
                             f"Modbus exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})")
        if rr.function_code != function_code:
            # A late answer to an earlier request (pymodbus does not always match ids)
            self._resync()
            raise CommsError(Condition.TIMEOUT,
                             f"{self.where}: late reply (function {rr.function_code}, "
                             f"expected {function_code})")
        return rr.registers

    def _resync(self) -> None:
        """After a timeout, drop the connection so that no late reply to the timed-out
        request can ever be taken for the answer to a later one (pymodbus does not reliably
        reject replies by transaction id).  The next transaction reconnects at once."""
        self._up = False
        self._next_attempt_s = 0.0
        with contextlib.suppress(Exception):
            self.client.close()

    async def read_registers(self, device_id: int, address: int, count: int) -> list[int]:
        regs = await self._call(lambda: self.client.read_holding_registers(
            address, count=count, device_id=device_id), 3)
        if len(regs) != count:
            raise CommsError(Condition.GARBLED_FRAME,
                             f"{self.where}: expected {count} registers, got {len(regs)}")
        return regs

    async def write_registers(self, device_id: int, address: int, values: list[int]) -> None:
        await self._call(lambda: self.client.write_registers(address, values, device_id=device_id),
                         16)

    async def write_register(self, device_id: int, address: int, value: int) -> None:
        await self._call(lambda: self.client.write_register(address, value, device_id=device_id), 6)

    def close(self) -> None:
        self._closed = True
        self._up = False
        if self._client is not None:
            self._client.close()

    def reopen(self) -> None:
        """Allow connecting again after ``close()``."""
        self._closed = False
        self._next_attempt_s = 0.0


class ModbusAxis:
    """One axis drive on a ``ModbusLink`` (``tracker.mount.axis.Axis``).

    ``clock()`` gives reading timestamps (UTC unix seconds).  Positions are
    axis degrees as the drive's encoder reports them.
    """

    #: On a wire: the engine reads and commands both axes concurrently.
    concurrent_io = True

    def __init__(self, name: str, link: ModbusLink, device_id: int, regmap: RegisterMap,
                 clock: Callable[[], float]) -> None:
        self.name = name
        self.link = link
        self.device_id = device_id
        self.map = regmap
        self._clock = clock
        self._hb = 0
        self._last: AxisState | None = None
        self._pending: CommsError | None = None
        s, c = regmap.status, regmap.command
        self._s0 = s.address
        self._pos_i = s.position - s.address
        self._vel_i = s.velocity - s.address
        self._flags_i = s.flags - s.address
        self._code_i = s.fault_code - s.address
        self._mode_i = c.mode - c.address
        self._hb_i = c.heartbeat - c.address
        self._tp_i = c.target_position - c.address
        self._sp_i = c.speed - c.address
        b = regmap.status_bits
        self._bits = (1 << b.enabled, 1 << b.moving, 1 << b.soft_low, 1 << b.soft_high,
                      1 << b.hard_low, 1 << b.hard_high)
        self.errors = 0

    async def connect(self) -> None:
        self.link.reopen()
        try:
            await self.link.ensure()
        except CommsError as exc:
            log.warning("%s: %s", self.name, exc.text)

    async def close(self) -> None:
        self.link.close()

    def _stale(self, err: CommsError, now_s: float) -> AxisState:
        self.errors += 1
        return stale_state(self.name, self._last, err.condition, err.text, now_s)

    async def read(self) -> AxisState:
        m = self.map
        s = m.status
        try:
            regs = await self.link.read_registers(self.device_id, s.address, s.count)
        except CommsError as exc:
            return self._stale(exc, self._clock())
        now_s = self._clock()
        i = self._pos_i
        pos = m.words_to_int32(regs[i], regs[i + 1]) / m.counts_per_deg
        i = self._vel_i
        vel = m.words_to_int32(regs[i], regs[i + 1]) / m.counts_per_deg_s
        flags = regs[self._flags_i]
        code = regs[self._code_i]
        pending = self._pending if code == 0 else None
        if pending is not None:
            self._pending = None      # the lost command is reported once, with this reading
        state = decode_state(self.name, pos, vel, flags, code, self._bits, now_s,
                             (pending.condition, pending.text) if pending else None)
        self._last = state
        return state

    async def _command(self, mode: int, target_counts: int = 0, speed_counts: int = 0) -> None:
        m = self.map
        self._hb = (self._hb + 1) & 0xFFFF
        values = [0] * m.command.count
        values[self._mode_i] = mode
        values[self._hb_i] = self._hb
        values[self._tp_i:self._tp_i + 2] = m.int32_to_words(target_counts)
        values[self._sp_i:self._sp_i + 2] = m.int32_to_words(speed_counts)
        try:
            await self.link.write_registers(self.device_id, m.command.address, values)
        except CommsError as exc:
            self._pending = exc
            self.errors += 1
        else:
            # A later command got through: an earlier lost one is no longer "the last command".
            self._pending = None

    @staticmethod
    def _clamp_counts(x: float) -> int:
        return max(-(2**31), min(2**31 - 1, round(x)))

    async def command_velocity(self, velocity_deg_s: float) -> None:
        m = self.map
        await self._command(m.modes.velocity,
                            speed_counts=self._clamp_counts(velocity_deg_s * m.counts_per_deg_s))

    async def command_position(self, position_deg: float, speed_deg_s: float) -> None:
        m = self.map
        await self._command(m.modes.position,
                            target_counts=self._clamp_counts(position_deg * m.counts_per_deg),
                            speed_counts=self._clamp_counts(abs(speed_deg_s) * m.counts_per_deg_s))

    async def stop(self) -> None:
        await self._command(self.map.modes.stop)

    async def enable(self) -> None:
        await self._command(self.map.modes.enable)

    async def disable(self) -> None:
        await self._command(self.map.modes.disable)

    async def reset(self) -> None:
        await self._command(self.map.modes.reset)

    async def heartbeat(self) -> None:
        """Refresh the drive's watchdog without a command (one single-register write)."""
        self._hb = (self._hb + 1) & 0xFFFF
        try:
            await self.link.write_register(self.device_id, self.map.command.heartbeat, self._hb)
        except CommsError as exc:
            self._pending = exc
            self.errors += 1


def make_modbus_axes(settings, clock: Callable[[], float], *, port: int | None = None,
                     serial_port: str | None = None,
                     regmap: RegisterMap | None = None) -> dict[str, ModbusAxis]:
    """Both axes as configured in ``settings.drives.modbus``.

    Over TCP each axis gets its own connection (the two drives' transactions can
    then be in flight together: ``asyncio.gather`` the two reads); over RTU both
    share the one serial line.  ``port``/``serial_port`` override the configured
    TCP port / serial device.
    """
    md = settings.drives.modbus
    regmap = regmap or map_for(settings)

    def link() -> ModbusLink:
        return ModbusLink(transport=md.transport, host=md.host,
                          port=md.port if port is None else port,
                          serial_port=md.serial_port if serial_port is None else serial_port,
                          baudrate=md.baudrate, timeout_s=md.timeout_s)

    az_link = link()
    el_link = link() if md.transport == "tcp" else az_link
    return {
        "azimuth": ModbusAxis("azimuth", az_link, md.azimuth_device_id, regmap, clock),
        "elevation": ModbusAxis("elevation", el_link, md.elevation_device_id, regmap, clock),
    }
