"""The simulated mount as a serial motion controller on a pseudo-terminal.

``start_pty_server(mount)`` opens a pty pair, answers the line protocol of
``drivers.serial_protocol`` on the master side (an asyncio reader on the
event loop that calls it) and returns a ``PtyServer``.  The driver opens
``server.path`` with pyserial exactly as it opens a USB-serial adapter.  The
path is a symlink (like ``/dev/serial/by-id/...``) to the current
``/dev/pts/N``, so a dropped and restored link comes back under the same name.

Any valid request refreshes the drive watchdog of the axes it addresses (``RD B``
and ``HB`` both axes).  Commands the drive ignores (not enabled, faulted, e-stop
held) are answered ``ER RF``.

Fault injection (each one shows up in the driver as a named condition):

==================  =====================================  ======================
method              what the wire does                     driver condition
==================  =====================================  ======================
``garble(n)``       next n replies carry a wrong checksum  ``GARBLED_FRAME``
``truncate(n)``     next n replies stop half way, no CRLF  ``TIMEOUT``
``silence(n)``      next n requests get no reply           ``TIMEOUT``
``delay(s, n)``     next n replies come ``s`` seconds late ``TIMEOUT`` (then stale)
``refuse(n)``       next n requests answered ``ER IN``     ``PROTOCOL_EXCEPTION``
``noise(n)``        random bytes before the next n replies ``OK`` (recovered)
``send_garbage(b)`` writes raw bytes now                   ``OK`` (recovered)
``drop_link()``     the port vanishes (pty closed)         ``LINK_DOWN``
``restore_link()``  a new pty behind the same path         ``OK`` after reopen
==================  =====================================  ======================

Drive faults (trip, e-stop, encoder jump, limit switch, watchdog) come from the
``SimAxis`` objects themselves and travel as the fault code of the ``RD`` reply.
``n=-1`` means "until ``clear_faults()``".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import tempfile
import tty
from collections.abc import Iterator

from drivers import serial_protocol as sp
from simulator.mount import SimAxis, SimMount, run_realtime
from tracker.mount.axis import Condition

log = logging.getLogger(__name__)

_AXES = {"A": "azimuth", "E": "elevation"}


class PtyServer:
    """A ``SimMount`` behind the serial protocol on a pty.  Use ``start_pty_server``.

    Unpacks as ``(path, stop)``.  Counters: ``requests`` (valid requests),
    ``bad_requests`` (garbled or invalid ones), ``replies`` (frames written).
    """

    def __init__(self, mount: SimMount, *, step_realtime: bool = False,
                 link_path: str | None = None, period_s: float = 0.01,
                 seed: int = 1) -> None:
        self.mount = mount
        self._loop = asyncio.get_running_loop()
        self._tmpdir: str | None = None
        if link_path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="tracker-serial-")
            link_path = os.path.join(self._tmpdir, "mount")
        self.path = str(link_path)
        self._master_fd: int | None = None
        self._slave_fd: int | None = None
        self._splitter = sp.LineSplitter()
        self._rng = random.Random(seed)
        self._faults: dict[str, int] = {}
        self._delay_s = 0.0
        self._noise_bytes = 12
        self._pending: set[asyncio.TimerHandle] = set()
        self._stepper: asyncio.Task[None] | None = None
        self.requests = 0
        self.bad_requests = 0
        self.replies = 0
        self.stopped = False
        self._open_pty()
        if step_realtime:
            self._stepper = self._loop.create_task(run_realtime(mount, period_s))

    # ------------------------------------------------------------------ lifecycle
    def __iter__(self) -> Iterator[object]:
        yield self.path
        yield self.stop

    @property
    def pts_path(self) -> str | None:
        """The ``/dev/pts/N`` the path currently points to (None while dropped)."""
        return os.ttyname(self._slave_fd) if self._slave_fd is not None else None

    @property
    def link_up(self) -> bool:
        return self._master_fd is not None

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation before the driver configures it
        os.set_blocking(master, False)
        self._master_fd, self._slave_fd = master, slave
        tmp = self.path + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.path)
        self._splitter.clear()
        self._loop.add_reader(master, self._on_readable)
        log.info("serial device on %s -> %s", self.path, os.ttyname(slave))

    def _close_pty(self) -> None:
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        if self._master_fd is not None:
            self._loop.remove_reader(self._master_fd)
            os.close(self._master_fd)
            self._master_fd = None
        if self._slave_fd is not None:
            os.close(self._slave_fd)
            self._slave_fd = None

    def stop(self) -> None:
        """Close the pty, stop stepping the mount, remove the symlink (idempotent)."""
        if self.stopped:
            return
        self.stopped = True
        if self._stepper is not None:
            self._stepper.cancel()
        self._close_pty()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    # ------------------------------------------------------------------ fault injection
    def garble(self, n: int = 1) -> None:
        """The next ``n`` replies carry a wrong checksum."""
        self._faults["garble"] = n

    def truncate(self, n: int = 1) -> None:
        """The next ``n`` replies are cut off half way (no terminator)."""
        self._faults["truncate"] = n

    def silence(self, n: int = 1) -> None:
        """The next ``n`` requests are read but not answered."""
        self._faults["silence"] = n

    def delay(self, delay_s: float, n: int = 1) -> None:
        """The next ``n`` replies are sent ``delay_s`` seconds late."""
        self._delay_s = float(delay_s)
        self._faults["delay"] = n

    def refuse(self, n: int = 1) -> None:
        """The next ``n`` requests are answered ``ER IN`` (a device-side exception)."""
        self._faults["refuse"] = n

    def noise(self, n: int = 1, nbytes: int = 12) -> None:
        """``nbytes`` random bytes go out before each of the next ``n`` replies."""
        self._faults["noise"] = n
        self._noise_bytes = int(nbytes)

    def send_garbage(self, data: bytes) -> None:
        """Write ``data`` to the line now, unframed."""
        self._write(data)

    def clear_faults(self) -> None:
        self._faults.clear()

    def drop_link(self) -> None:
        """The port vanishes: both pty ends close; the path dangles."""
        self._close_pty()

    def restore_link(self) -> None:
        """A fresh pty appears behind the same path."""
        if self._master_fd is None and not self.stopped:
            self._open_pty()

    def _take(self, kind: str) -> bool:
        left = self._faults.get(kind, 0)
        if left == 0:
            return False
        if left > 0:
            self._faults[kind] = left - 1
        return True

    # ------------------------------------------------------------------ I/O
    def _on_readable(self) -> None:
        fd = self._master_fd
        if fd is None:
            return
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:  # cannot happen while we hold the slave open; never spin
            log.error("serial device: read failed, closing the pty: %s", exc)
            self._close_pty()
            return
        for line in self._splitter.feed(data):
            self._handle_line(line)

    def _write(self, data: bytes) -> None:
        fd = self._master_fd
        if fd is None:
            return
        try:
            os.write(fd, data)
        except (BlockingIOError, OSError) as exc:
            log.warning("serial device: reply dropped: %s", exc)

    def _send(self, seq: int, words: list[str]) -> None:
        if self._take("silence"):
            return
        frame = sp.encode_frame(seq, words)
        if self._take("garble"):
            bad = (sp.crc8(frame[:-5]) ^ 0x5A) & 0xFF
            frame = frame[:-4] + f"{bad:02X}".encode() + sp.TERMINATOR
        if self._take("truncate"):
            frame = frame[: len(frame) // 2]
        if self._take("noise"):
            frame = bytes(self._rng.randrange(256) for _ in range(self._noise_bytes)) + frame
        self.replies += 1
        if self._take("delay"):
            handle = self._loop.call_later(self._delay_s, self._write, frame)
            self._pending.add(handle)
            return
        self._write(frame)

    # ------------------------------------------------------------------ requests
    def _handle_line(self, line: bytes) -> None:
        try:
            frame = sp.decode_frame(line)
        except sp.ChecksumError as exc:
            self.bad_requests += 1
            self._send(exc.seq or 0, sp.error_words(sp.ERR_CHECKSUM, "request checksum"))
            return
        except sp.FrameError as exc:
            self.bad_requests += 1
            if exc.seq is not None:
                self._send(exc.seq, sp.error_words(sp.ERR_SYNTAX, str(exc)))
            return
        try:
            req = sp.parse_request(frame)
        except sp.MessageError as exc:
            self.bad_requests += 1
            code = getattr(exc, "error_code", sp.ERR_SYNTAX)
            self._send(frame.seq, sp.error_words(code, str(exc)))
            return
        self.requests += 1
        if self._take("refuse"):
            self._send(req.seq, sp.error_words(sp.ERR_INTERNAL, "injected device exception"))
            return
        try:
            words = self._execute(req)
        except Exception as exc:  # a device never dies on one request
            log.exception("serial device: request %s failed", req)
            words = sp.error_words(sp.ERR_INTERNAL, f"{type(exc).__name__}")
        self._send(req.seq, words)

    def _axes_of(self, letter: str) -> list[SimAxis]:
        if letter in ("B", ""):
            return [self.mount.azimuth, self.mount.elevation]
        return [self.mount.axes[_AXES[letter]]]

    def _execute(self, req: sp.Request) -> list[str]:
        cmd = req.command
        axes = self._axes_of(req.axis)
        for ax in axes:
            ax.heartbeat()
        if cmd == "RD":
            return sp.ok_words([_report(ax, letter) for ax, letter in
                                zip(axes, ("A", "E") if req.axis == "B" else (req.axis,),
                                    strict=True)])
        if cmd == "HB":
            return sp.ok_words()
        ax = axes[0]
        if cmd == "SP":
            for a in axes:
                a.stop()
            return sp.ok_words()
        if cmd == "DI":
            ax.disable()
            return sp.ok_words()
        if cmd == "RS":
            ax.reset()
            if ax.condition is not Condition.OK:
                return sp.error_words(sp.ERR_REFUSED, f"fault stays: {ax.fault_text}")
            return sp.ok_words()
        if cmd == "EN":
            ax.enable()
            if not ax.enabled:
                return sp.error_words(sp.ERR_REFUSED, f"faulted: {ax.fault_text}")
            return sp.ok_words()
        # VL and PS move the axis: refused unless enabled and healthy.
        if not ax.enabled or ax.condition is not Condition.OK:
            why = "disabled" if ax.condition is Condition.OK else f"faulted: {ax.fault_text}"
            return sp.error_words(sp.ERR_REFUSED, why)
        if cmd == "VL":
            ax.command_velocity(req.args[0])
        else:
            ax.command_position(req.args[0], req.args[1])
        return sp.ok_words()


def _report(ax: SimAxis, letter: str) -> sp.AxisReport:
    return sp.AxisReport(letter, ax.encoder_deg, ax.velocity_deg_s, ax.enabled, ax.moving,
                         ax.limit, min(ax.fault_code, 999))


def start_pty_server(mount: SimMount, *, step_realtime: bool = False,
                     link_path: str | None = None) -> PtyServer:
    """Serve ``mount`` on a new pty; call from a running event loop.

    Returns the ``PtyServer`` (fault injection handle), which unpacks as
    ``(pty_path, stop)``.  With ``step_realtime`` the server also steps the mount
    in real time; otherwise the caller steps it.  ``link_path`` chooses the
    symlink's name (default: a fresh temporary folder).
    """
    return PtyServer(mount, step_realtime=step_realtime, link_path=link_path)


__all__ = ["PtyServer", "start_pty_server"]
