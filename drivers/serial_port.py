"""A serial port read by the event loop, shared by the serial drive link and the NMEA wind
sensor: opened without blocking, retried with exponential backoff, every chunk read handed
to a callback, closed on a read error.  Link problems never raise: they land in
``link_error`` (a sentence for the operator) and the next ``try_open`` retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import serial

log = logging.getLogger(__name__)

#: Bytes read per readable event.
READ_CHUNK = 4096


class ReaderPort:
    """``port`` (a device path or pty) at ``baudrate``; ``on_data(bytes)`` gets what is read.

    ``what`` names the device in messages ("serial link", "wind sensor");
    ``exclusive`` asks for an exclusive lock (a drive link must not be shared);
    ``on_close()`` is called whenever an open port closes (to wake a waiting reader).
    Backoff: ``backoff_min_s`` after the first failure, doubled up to ``backoff_max_s``,
    back to the minimum after a successful open.
    """

    def __init__(self, port: str, baudrate: int, on_data: Callable[[bytes], None], *,
                 what: str, exclusive: bool = False, backoff_min_s: float = 0.1,
                 backoff_max_s: float = 5.0,
                 on_close: Callable[[], None] | None = None) -> None:
        if backoff_min_s <= 0 or backoff_max_s < backoff_min_s:
            raise ValueError("backoff_min_s must be > 0 and backoff_max_s >= backoff_min_s")
        self.port = port
        self.baudrate = int(baudrate)
        self.what = what
        self.backoff_min_s = float(backoff_min_s)
        self.backoff_max_s = float(backoff_max_s)
        self._on_data = on_data
        self._on_close = on_close
        self._exclusive = exclusive
        self.serial: serial.Serial | None = None
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backoff_s = self.backoff_min_s
        self._next_open_s = 0.0  # time.monotonic() of the next allowed open attempt
        self.link_error = "not connected"
        self.open_attempts = 0

    @property
    def is_open(self) -> bool:
        return self.serial is not None

    def try_open(self, *, force: bool = False) -> bool:
        """Open the port unless open; honours the backoff unless ``force``.  Never raises."""
        if self.serial is not None:
            return True
        now = time.monotonic()
        if not force and now < self._next_open_s:
            return False
        self.open_attempts += 1
        port = serial.Serial(baudrate=self.baudrate, timeout=0, write_timeout=0,
                             exclusive=self._exclusive or None)
        port.port = self.port
        try:
            port.open()
            fd = port.fileno()
            loop = asyncio.get_running_loop()
            loop.add_reader(fd, self._on_readable)
        except (serial.SerialException, OSError, ValueError) as exc:
            with contextlib.suppress(Exception):
                port.close()
            self.link_error = f"cannot open {self.port}: {exc}"
            self._back_off()
            log.warning("%s: %s; next attempt in %.2f s", self.what, self.link_error,
                        self._next_open_s - now)
            return False
        self.serial, self._fd, self._loop = port, fd, loop
        self._backoff_s = self.backoff_min_s
        self.link_error = ""
        log.info("%s open on %s at %d baud", self.what, self.port, self.baudrate)
        return True

    def close(self, why: str, *, back_off: bool = False) -> None:
        """Close the port (if open); ``why`` becomes ``link_error``.  ``back_off``: wait
        before the next open attempt (after a failure, not after a caller's close)."""
        if self.serial is None:
            return
        if self._loop is not None and self._fd is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
        with contextlib.suppress(Exception):
            self.serial.close()
        self.serial = self._fd = None
        self.link_error = why
        if back_off:
            self._back_off()
        if self._on_close is not None:
            self._on_close()

    def lost(self, exc: BaseException) -> None:
        """The port failed (read or write error): close it and back off."""
        log.warning("%s %s lost: %s", self.what, self.port, exc)
        self.close(f"link lost: {exc}", back_off=True)

    def _back_off(self) -> None:
        self._next_open_s = time.monotonic() + self._backoff_s
        self._backoff_s = min(2.0 * self._backoff_s, self.backoff_max_s)

    def _on_readable(self) -> None:
        port = self.serial
        if port is None:
            return
        try:
            data = port.read(READ_CHUNK)
        except (serial.SerialException, OSError) as exc:
            self.lost(exc)
            return
        if data:
            self._on_data(data)
