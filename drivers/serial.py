"""Axis drives behind a two-axis ASCII serial motion controller (pyserial, asyncio).

One ``SerialLink`` owns the port; the two ``SerialAxis`` objects (azimuth,
elevation) share it and take turns through one lock, one request and its reply
at a time.  The protocol is ``drivers.serial_protocol`` (see
``docs/serial-protocol.md``).

I/O never blocks the event loop: the port is opened non-blocking
(``timeout=0, write_timeout=0``) and read from an ``add_reader`` callback that
cuts the byte stream into frames.  Device problems never raise; they are
reported in ``AxisState.condition``:

- no reply within ``timeout_s``, or an unfinished line: ``TIMEOUT``;
- a reply with a bad checksum or malformed words: ``GARBLED_FRAME`` (at once
  when the garbled reply carries our sequence number, else at the timeout);
- ``ER`` replies: ``PROTOCOL_EXCEPTION`` (``ER CK``, the device saw our request
  garbled: ``GARBLED_FRAME``);
- the port cannot be opened or fails: ``LINK_DOWN``; reopened on later calls
  with a bounded exponential backoff (``backoff_min_s`` doubling to ``backoff_max_s``);
- drive faults: the condition of the reported fault code (``tracker.mount.axis.FAULT_CODES``).

Garbage bytes between frames and replies to earlier requests (a late reply
after a timeout: its sequence number is stale) are discarded.  With a comms
condition the position, velocity and flags are the last good reading and
``fresh`` is False.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import serial

from drivers import serial_protocol as sp
from drivers.serial_port import ReaderPort
from tracker.clock import Clock
from tracker.config import Settings
from tracker.mount.axis import Axis, AxisState, Condition, Limit, condition_for_code

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """Result of one transaction: ``condition`` OK with the ``reply``, or why not."""

    condition: Condition
    reply: sp.Reply | None = None
    detail: str = ""


class SerialLink:
    """One serial port to the controller, shared by its axes.

    ``port`` is a device path (``/dev/ttyUSB0``, a ``/dev/serial/by-id`` link or
    a simulator pty); ``timeout_s`` is the longest wait for a reply.
    """

    def __init__(self, port: str, *, baudrate: int = 115200, timeout_s: float = 0.25,
                 backoff_min_s: float = 0.05, backoff_max_s: float = 2.0) -> None:
        if timeout_s <= 0 or backoff_min_s <= 0 or backoff_max_s < backoff_min_s:
            raise ValueError("timeout_s and backoff_min_s must be > 0, "
                             "backoff_max_s >= backoff_min_s")
        self.timeout_s = float(timeout_s)
        self._link = ReaderPort(port, baudrate, self._on_data, what="serial link",
                                exclusive=True, backoff_min_s=backoff_min_s,
                                backoff_max_s=backoff_max_s, on_close=self._on_close)
        self.port = port
        self.baudrate = self._link.baudrate
        self.backoff_min_s = self._link.backoff_min_s
        self.backoff_max_s = self._link.backoff_max_s
        self._lock = asyncio.Lock()
        self._splitter = sp.LineSplitter()
        # Complete lines not yet examined (bounded: a chattering device cannot grow it).
        self._lines: collections.deque[bytes] = collections.deque(maxlen=64)
        self._data_event = asyncio.Event()
        self._seq = 0
        self._users = 0
        # Statistics
        self.transactions = 0
        self.timeouts = 0
        self.garbled = 0
        self.stale = 0

    # ------------------------------------------------------------------ open / close
    @property
    def is_open(self) -> bool:
        return self._link.is_open

    @property
    def link_error(self) -> str:
        return self._link.link_error

    @property
    def open_attempts(self) -> int:
        return self._link.open_attempts

    def acquire(self) -> None:
        """An axis starts using the link (counted, so the last ``release`` closes it)."""
        self._users += 1

    def release(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0:
            self._link.close("closed by caller")

    def try_open(self, *, force: bool = False) -> bool:
        """Open the port unless open; honours the backoff unless ``force``.  Never raises."""
        if self._link.is_open:
            return True
        if not self._link.try_open(force=force):
            return False
        self._splitter.clear()
        self._lines.clear()
        return True

    def _on_data(self, data: bytes) -> None:
        self._lines.extend(self._splitter.feed(data))
        self._data_event.set()

    def _on_close(self) -> None:
        self._data_event.set()  # wake a waiting transaction

    # ------------------------------------------------------------------ transactions
    def _next_seq(self) -> int:
        self._seq = self._seq % sp.SEQ_MAX + 1
        return self._seq

    async def transact(self, words: list[str]) -> Outcome:
        """Send one request and wait for its reply; never raises for link problems."""
        async with self._lock:
            if not self._link.is_open:
                if self._users == 0:
                    return Outcome(Condition.LINK_DOWN, detail="not connected")
                if not self.try_open():
                    return Outcome(Condition.LINK_DOWN, detail=self.link_error)
            self.transactions += 1
            outcome = await self._exchange(words)
            if outcome.condition is Condition.TIMEOUT:
                self.timeouts += 1
            elif outcome.condition is Condition.GARBLED_FRAME:
                self.garbled += 1
            return outcome

    async def _exchange(self, words: list[str]) -> Outcome:
        port = self._link.serial
        assert port is not None
        seq = self._next_seq()
        frame = sp.encode_frame(seq, words)
        try:
            written = port.write(frame)
        except (serial.SerialException, OSError) as exc:
            self._link.lost(exc)
            return Outcome(Condition.LINK_DOWN, detail=self.link_error)
        if written != len(frame):
            with contextlib.suppress(Exception):
                port.reset_output_buffer()
            return Outcome(Condition.TIMEOUT, detail="output blocked: device not reading")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        garbled = ""
        while True:
            while self._lines:
                line = self._lines.popleft()
                try:
                    reply = sp.parse_reply(sp.decode_frame(line))
                except sp.SerialProtocolError as exc:
                    if exc.seq == seq:
                        return Outcome(Condition.GARBLED_FRAME, detail=f"reply garbled: {exc}")
                    garbled = f"garbled line: {exc}"
                    log.debug("%s: dropped %r: %s", self.port, line, exc)
                    continue
                if reply.seq != seq:
                    self.stale += 1
                    log.debug("%s: dropped stale reply #%d (waiting for #%d)",
                              self.port, reply.seq, seq)
                    continue
                return _outcome_of(reply)
            if not self._link.is_open:
                return Outcome(Condition.LINK_DOWN, detail=self.link_error)
            remaining = deadline - loop.time()
            if remaining <= 0:
                if garbled:
                    return Outcome(Condition.GARBLED_FRAME, detail=garbled)
                partial = " (partial line)" if self._splitter.pending else ""
                return Outcome(Condition.TIMEOUT,
                               detail=f"no reply within {self.timeout_s:g} s{partial}")
            self._data_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._data_event.wait(), remaining)


def _outcome_of(reply: sp.Reply) -> Outcome:
    if reply.ok:
        return Outcome(Condition.OK, reply)
    text = f"device error {reply.error_code}: {reply.error_text}".rstrip(": ")
    if reply.error_code == sp.ERR_CHECKSUM:
        return Outcome(Condition.GARBLED_FRAME, reply, text)
    return Outcome(Condition.PROTOCOL_EXCEPTION, reply, text)


class SerialAxis:
    """One axis (``azimuth`` or ``elevation``) of the serial controller; see the module doc.

    Positions are axis degrees (azimuth from north through east, elevation up
    positive), velocities deg/s, ``timestamp_s`` from the injected clock (UTC
    unix seconds).  ``last_command_condition``/``last_command_detail`` tell how the
    last command went (commands return nothing).
    """

    #: On a wire: the engine reads and commands both axes concurrently.
    concurrent_io = True

    def __init__(self, name: str, link: SerialLink, clock: Clock | Callable[[], float]) -> None:
        if name not in sp.AXIS_LETTERS:
            raise ValueError(f"axis name {name!r} is not one of {sorted(sp.AXIS_LETTERS)}")
        self.name = name
        self.link = link
        self.clock = clock
        now_s = getattr(clock, "now_s", clock)
        if not callable(now_s):
            raise TypeError("clock must have now_s() or be a callable giving UTC unix seconds")
        self._now_s: Callable[[], float] = now_s
        self._letter = sp.AXIS_LETTERS[name]
        self._connected = False
        self.last_command_condition = Condition.OK
        self.last_command_detail = ""
        self._last = AxisState(name=name, position_deg=0.0, velocity_deg_s=0.0, enabled=False,
                               moving=False, limit=Limit.NONE, condition=Condition.LINK_DOWN,
                               fault_code=0, fault_text="no reading yet", timestamp_s=0.0,
                               fresh=False)

    async def connect(self) -> None:
        if not self._connected:
            self._connected = True
            self.link.acquire()
        self.link.try_open(force=True)

    async def close(self) -> None:
        if self._connected:
            self._connected = False
            self.link.release()

    async def read(self) -> AxisState:
        out = await self.link.transact(["RD", self._letter])
        now_s = float(self._now_s())
        report = out.reply.report(self._letter) if out.reply is not None else None
        if out.condition is Condition.OK and report is None:
            out = Outcome(Condition.GARBLED_FRAME, detail="reply lacks this axis")
        if out.condition is not Condition.OK or report is None:
            self._last = replace(self._last, condition=out.condition, fault_text=out.detail,
                                 timestamp_s=now_s, fresh=False)
            return self._last
        condition = condition_for_code(report.fault_code)
        text = "" if report.fault_code == 0 else (
            f"{condition.value} (drive fault code {report.fault_code})")
        self._last = AxisState(
            name=self.name, position_deg=report.position_deg,
            velocity_deg_s=report.velocity_deg_s, enabled=report.enabled, moving=report.moving,
            limit=report.limit, condition=condition, fault_code=report.fault_code,
            fault_text=text, timestamp_s=now_s, fresh=True)
        return self._last

    async def _command(self, words: list[str]) -> None:
        out = await self.link.transact(words)
        self.last_command_condition = out.condition
        self.last_command_detail = out.detail
        if out.condition is not Condition.OK:
            log.warning("%s: %s: %s (%s)", self.name, " ".join(words), out.condition.value,
                        out.detail)

    async def command_velocity(self, velocity_deg_s: float) -> None:
        """Raises ``MessageError`` (nothing sent) for a non-finite velocity."""
        await self._command(sp.request_words("VL", self._letter, velocity_deg_s))

    async def command_position(self, position_deg: float, speed_deg_s: float) -> None:
        """Raises ``MessageError`` (nothing sent) unless finite with ``speed_deg_s`` > 0."""
        words = sp.request_words("PS", self._letter, position_deg, speed_deg_s)
        if not speed_deg_s > 0:
            raise sp.MessageError(f"speed {speed_deg_s!r} deg/s must be positive")
        await self._command(words)

    async def stop(self) -> None:
        await self._command(sp.request_words("SP", self._letter))

    async def enable(self) -> None:
        await self._command(sp.request_words("EN", self._letter))

    async def disable(self) -> None:
        await self._command(sp.request_words("DI", self._letter))

    async def reset(self) -> None:
        await self._command(sp.request_words("RS", self._letter))


def make_serial_axes(settings: Settings, clock: Clock | Callable[[], float], *,
                     backoff_min_s: float = 0.05, backoff_max_s: float = 2.0) -> dict[str, Axis]:
    """Both axes of the controller at ``settings.drives.serial`` (port, baudrate, timeout_s).

    ``clock`` stamps the readings: a ``tracker.clock`` object or a callable (UTC unix s).
    """
    cfg = settings.drives.serial
    link = SerialLink(cfg.port, baudrate=cfg.baudrate, timeout_s=cfg.timeout_s,
                      backoff_min_s=backoff_min_s, backoff_max_s=backoff_max_s)
    return {name: SerialAxis(name, link, clock) for name in ("azimuth", "elevation")}
