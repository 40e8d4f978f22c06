"""The ASCII line protocol of the two-axis serial motion controller (pure functions).

One frame per line, both directions (full specification: ``docs/serial-protocol.md``)::

    #<seq> <WORD> <WORD> ...*<CC>\\r\\n

``seq`` is a decimal sequence number 0..65535 that the device echoes in its reply;
``CC`` is the CRC-8 (polynomial 0x07, initial value 0, no reflection, no final XOR:
CRC-8/SMBUS) of every byte from ``#`` up to, not including, ``*``, as two
hexadecimal digits.  Words are separated by single spaces and contain only the
printable ASCII characters 0x21..0x7E other than ``#`` and ``*``.

Requests (host -> device); ``<ax>`` is ``A`` (azimuth) or ``E`` (elevation),
``B`` (both) where allowed::

    RD <ax|B>                 read state           -> OK <report> [<report>]
    VL <ax> <v_deg_s>         run at velocity      -> OK
    PS <ax> <pos_deg> <speed_deg_s>  move and hold -> OK
    SP <ax|B>                 ramp to zero, hold   -> OK
    EN <ax> / DI <ax>         enable / disable     -> OK
    RS <ax>                   reset a fault        -> OK
    HB                        heartbeat, both axes -> OK

A ``<report>`` is six words: ``<ax> <pos_deg> <vel_deg_s> <flags> <limit> <fault>``.
Error replies: ``ER <code> <text words...>``.

Positions are axis degrees (azimuth from north through east, elevation up
positive), velocities deg/s.  Nothing here does I/O; every parse failure raises a
subclass of ``SerialProtocolError``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from tracker.errors import TrackerError
from tracker.mount.axis import Limit

#: Longest frame (bytes, including ``\r\n``) either side sends or accepts.
MAX_FRAME_BYTES = 160
#: Sequence numbers run 1..SEQ_MAX and wrap; 0 means "unknown" in device replies.
SEQ_MAX = 65535
TERMINATOR = b"\r\n"

AXIS_LETTERS: dict[str, str] = {"azimuth": "A", "elevation": "E"}
AXIS_NAMES: dict[str, str] = {v: k for k, v in AXIS_LETTERS.items()}
BOTH = "B"

LIMIT_CODES: dict[Limit, str] = {
    Limit.NONE: "N",
    Limit.SOFT_LOW: "SL",
    Limit.SOFT_HIGH: "SH",
    Limit.HARD_LOW: "HL",
    Limit.HARD_HIGH: "HH",
}
LIMITS_BY_CODE: dict[str, Limit] = {v: k for k, v in LIMIT_CODES.items()}

#: Request commands -> (accepted axis words, number of numeric arguments).
COMMANDS: dict[str, tuple[frozenset[str], int]] = {
    "RD": (frozenset({"A", "E", "B"}), 0),
    "VL": (frozenset({"A", "E"}), 1),
    "PS": (frozenset({"A", "E"}), 2),
    "SP": (frozenset({"A", "E", "B"}), 0),
    "EN": (frozenset({"A", "E"}), 0),
    "DI": (frozenset({"A", "E"}), 0),
    "RS": (frozenset({"A", "E"}), 0),
    "HB": (frozenset(), 0),
}

#: Error reply codes (device -> host).
ERR_CHECKSUM = "CK"   # the request's checksum did not match (it was garbled on the way)
ERR_SYNTAX = "SY"     # unknown command or wrong number of words
ERR_AXIS = "AX"       # axis letter not valid for this command
ERR_ARGUMENT = "AR"   # a number is malformed or out of range
ERR_REFUSED = "RF"    # the drive refused the command (e.g. faulted, disabled)
ERR_INTERNAL = "IN"   # anything else inside the device
ERROR_CODES = frozenset({ERR_CHECKSUM, ERR_SYNTAX, ERR_AXIS, ERR_ARGUMENT, ERR_REFUSED,
                         ERR_INTERNAL})

_NUMBER = re.compile(r"[+-]?[0-9]{1,9}(\.[0-9]{1,12})?")
_SEQ = re.compile(r"[0-9]{1,5}")
_FLAGS = re.compile(r"-|E?M?")
_WORD_BYTES = frozenset(range(0x21, 0x7F)) - {ord("#"), ord("*")}


class SerialProtocolError(TrackerError):
    """A line is not a valid frame of the serial protocol.

    ``seq`` is the sequence number read from the line when one could be read
    (so a garbled reply can be matched to its request), else None.
    """

    def __init__(self, message: str, *, seq: int | None = None) -> None:
        super().__init__(message)
        self.seq = seq


class FrameError(SerialProtocolError):
    """The framing is wrong: missing ``#``/``*``/terminator, bad characters, too long."""


class ChecksumError(SerialProtocolError):
    """The frame is well formed but its CRC-8 does not match its contents."""


class MessageError(SerialProtocolError):
    """The frame is intact but its words are not a valid request or reply."""


# --------------------------------------------------------------------------- CRC and frames

def _make_crc8_table(poly: int = 0x07) -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return tuple(table)


_CRC8_TABLE = _make_crc8_table()


def crc8(data: bytes) -> int:
    """CRC-8/SMBUS (poly 0x07, init 0x00, no reflection, xorout 0) of ``data``."""
    crc = 0
    for b in data:
        crc = _CRC8_TABLE[crc ^ b]
    return crc


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded line: its sequence number and its words (command or status first)."""

    seq: int
    words: tuple[str, ...]


def encode_frame(seq: int, words: Sequence[str]) -> bytes:
    """``#<seq> <words...>*<CC>\\r\\n``.  Raises ``MessageError`` for words that cannot be sent."""
    if not 0 <= seq <= SEQ_MAX:
        raise MessageError(f"sequence number {seq} outside 0..{SEQ_MAX}")
    if not words:
        raise MessageError("a frame needs at least one word")
    for w in words:
        if not w or any(ord(c) not in _WORD_BYTES for c in w):
            raise MessageError(f"word {w!r} is empty or has characters the protocol cannot carry")
    body = f"#{seq} {' '.join(words)}".encode("ascii")
    frame = body + b"*" + f"{crc8(body):02X}".encode("ascii") + TERMINATOR
    if len(frame) > MAX_FRAME_BYTES:
        raise MessageError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
    return frame


def _seq_of(line: bytes) -> int | None:
    m = re.match(rb"#([0-9]{1,5}) ", line)
    if m is None:
        return None
    seq = int(m.group(1))
    return seq if seq <= SEQ_MAX else None


def decode_frame(line: bytes) -> Frame:
    """Parse one line (with or without its ``\\r\\n``) into a ``Frame``.

    Raises ``FrameError`` or ``ChecksumError`` (both ``SerialProtocolError``);
    never anything else, whatever the bytes.
    """
    if line.endswith(TERMINATOR):
        line = line[:-2]
    if len(line) + 2 > MAX_FRAME_BYTES:
        raise FrameError(f"line of {len(line)} bytes is too long", seq=_seq_of(line))
    if not line.startswith(b"#"):
        raise FrameError("frame does not start with '#'")
    star = line.rfind(b"*")
    if star < 0 or len(line) - star != 3:
        raise FrameError("frame does not end with '*' and two checksum digits",
                         seq=_seq_of(line))
    body, check = line[:star], line[star + 1:]
    seq = _seq_of(body + b" ")
    if any(b not in _WORD_BYTES and b != 0x20 for b in body[1:]):
        raise FrameError("frame contains bytes outside printable ASCII", seq=seq)
    if not all(c in b"0123456789ABCDEFabcdef" for c in check):
        raise FrameError(f"checksum field {check!r} is not hexadecimal", seq=seq)
    expected = int(check.decode("ascii"), 16)
    actual = crc8(body)
    if actual != expected:
        raise ChecksumError(f"checksum {expected:02X} does not match contents ({actual:02X})",
                            seq=seq)
    text = body[1:].decode("ascii")
    parts = text.split(" ")
    if any(p == "" for p in parts):
        raise FrameError("words must be separated by single spaces", seq=seq)
    if len(parts) < 2 or not _SEQ.fullmatch(parts[0]) or int(parts[0]) > SEQ_MAX:
        raise FrameError("frame needs a sequence number 0..65535 and at least one word", seq=seq)
    return Frame(int(parts[0]), tuple(parts[1:]))


class LineSplitter:
    """Cuts a byte stream into candidate frames, recovering from noise.

    Bytes before a ``#`` are garbage and dropped.  A ``#`` before the current line's
    ``\\r\\n`` starts a new line and drops the unfinished one (a partial line).  A
    line longer than ``MAX_FRAME_BYTES`` without a terminator is dropped.  Returned
    lines still need ``decode_frame``.  ``dropped_bytes`` counts what was thrown away.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.dropped_bytes = 0

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        for b in data:
            if b == 0x23:  # '#'
                self.dropped_bytes += len(self._buf)
                self._buf = bytearray(b"#")
            elif not self._buf:
                self.dropped_bytes += 1
            else:
                self._buf.append(b)
                if b == 0x0A and self._buf.endswith(TERMINATOR):
                    out.append(bytes(self._buf))
                    self._buf = bytearray()
                elif len(self._buf) > MAX_FRAME_BYTES:
                    self.dropped_bytes += len(self._buf)
                    self._buf = bytearray()
        return out

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line held back."""
        return len(self._buf)

    def clear(self) -> None:
        self.dropped_bytes += len(self._buf)
        self._buf = bytearray()


# --------------------------------------------------------------------------- numbers

def format_position_deg(value_deg: float) -> str:
    """Degrees to 1e-6 (0.0036 arc-second)."""
    _check_finite(value_deg, "position")
    return f"{value_deg:+.6f}"


def format_rate_deg_s(value_deg_s: float) -> str:
    """Degrees per second to 1e-8 (so sidereal-scale rates keep 7 significant digits)."""
    _check_finite(value_deg_s, "rate")
    return f"{value_deg_s:+.8f}"


def _check_finite(value: float, what: str) -> None:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or abs(value) >= 1e8):
        raise MessageError(f"{what} {value!r} is not a finite number below 1e8")


def parse_number(word: str) -> float:
    """A decimal number as the protocol writes it (no exponent, no inf/nan)."""
    if not _NUMBER.fullmatch(word):
        raise MessageError(f"{word!r} is not a decimal number")
    return float(word)


# --------------------------------------------------------------------------- requests

@dataclass(frozen=True, slots=True)
class Request:
    """A decoded request: command, axis letter ("" for HB) and numeric arguments."""

    seq: int
    command: str
    axis: str
    args: tuple[float, ...] = ()


def request_words(command: str, axis: str = "", *args: float) -> list[str]:
    """Words of a request; numbers are formatted for their meaning (positions, rates)."""
    if command not in COMMANDS:
        raise MessageError(f"unknown command {command!r}")
    axes, nargs = COMMANDS[command]
    if (axis not in axes) if axes else axis:
        raise MessageError(f"command {command} does not take axis {axis!r}")
    if len(args) != nargs:
        raise MessageError(f"command {command} takes {nargs} numbers, got {len(args)}")
    words = [command] + ([axis] if axis else [])
    if command == "VL":
        words.append(format_rate_deg_s(args[0]))
    elif command == "PS":
        words += [format_position_deg(args[0]), format_rate_deg_s(args[1])]
    return words


def parse_request(frame: Frame) -> Request:
    """Validate a request frame; raises ``MessageError`` with an ``error_code`` attribute."""
    words = frame.words
    cmd = words[0]
    if cmd not in COMMANDS:
        raise _request_error(ERR_SYNTAX, f"unknown command {cmd!r}", frame.seq)
    axes, nargs = COMMANDS[cmd]
    expected_words = 1 + (1 if axes else 0) + nargs
    if len(words) != expected_words:
        raise _request_error(ERR_SYNTAX, f"{cmd} takes {expected_words - 1} arguments",
                             frame.seq)
    axis = words[1] if axes else ""
    if axes and axis not in axes:
        raise _request_error(ERR_AXIS, f"{cmd} does not take axis {axis!r}", frame.seq)
    try:
        args = tuple(parse_number(w) for w in words[1 + (1 if axes else 0):])
    except MessageError as exc:
        raise _request_error(ERR_ARGUMENT, str(exc), frame.seq) from None
    if cmd == "PS" and args[1] <= 0:
        raise _request_error(ERR_ARGUMENT, "speed must be positive", frame.seq)
    return Request(frame.seq, cmd, axis, args)


def _request_error(code: str, text: str, seq: int) -> MessageError:
    err = MessageError(text, seq=seq)
    err.error_code = code  # type: ignore[attr-defined]
    return err


# --------------------------------------------------------------------------- replies

@dataclass(frozen=True, slots=True)
class AxisReport:
    """One axis as the device reports it (axis degrees, deg/s, drive fault code)."""

    axis: str  # "A" or "E"
    position_deg: float
    velocity_deg_s: float
    enabled: bool
    moving: bool
    limit: Limit
    fault_code: int

    def words(self) -> list[str]:
        flags = ("E" if self.enabled else "") + ("M" if self.moving else "")
        if not 0 <= self.fault_code <= 999:
            raise MessageError(f"fault code {self.fault_code} outside 0..999")
        return [self.axis, format_position_deg(self.position_deg),
                format_rate_deg_s(self.velocity_deg_s), flags or "-",
                LIMIT_CODES[self.limit], str(int(self.fault_code))]


REPORT_WORDS = 6


@dataclass(frozen=True, slots=True)
class Reply:
    """A decoded reply: ``ok`` with axis reports (may be empty), or an error code and text."""

    seq: int
    ok: bool
    reports: tuple[AxisReport, ...] = ()
    error_code: str = ""
    error_text: str = ""

    def report(self, axis: str) -> AxisReport | None:
        for r in self.reports:
            if r.axis == axis:
                return r
        return None


def ok_words(reports: Sequence[AxisReport] = ()) -> list[str]:
    words = ["OK"]
    for r in reports:
        words += r.words()
    return words


def error_words(code: str, text: str = "") -> list[str]:
    """``ER <code> <text>``; the text is cleaned to protocol-safe words and shortened."""
    if code not in ERROR_CODES:
        raise MessageError(f"unknown error code {code!r}")
    clean = "".join(c if 0x21 <= ord(c) <= 0x7E and c not in "#*" else " " for c in text)
    words = ["ER", code] + clean.split()
    while len(" ".join(words)) > MAX_FRAME_BYTES - 16 and len(words) > 2:
        words.pop()
    return words


def _parse_report(words: Sequence[str]) -> AxisReport:
    axis, pos, vel, flags, limit, fault = words
    if axis not in AXIS_NAMES:
        raise MessageError(f"report for unknown axis {axis!r}")
    if not _FLAGS.fullmatch(flags) or flags == "":
        raise MessageError(f"flags {flags!r} are not '-', 'E', 'M' or 'EM'")
    if limit not in LIMITS_BY_CODE:
        raise MessageError(f"limit {limit!r} is not one of {sorted(LIMITS_BY_CODE)}")
    if not re.fullmatch(r"[0-9]{1,3}", fault):
        raise MessageError(f"fault code {fault!r} is not 0..999")
    return AxisReport(axis, parse_number(pos), parse_number(vel), "E" in flags, "M" in flags,
                      LIMITS_BY_CODE[limit], int(fault))


def parse_reply(frame: Frame) -> Reply:
    """Validate a reply frame; raises ``MessageError`` if its words are not a reply."""
    words = frame.words
    if words[0] == "ER":
        if len(words) < 2 or words[1] not in ERROR_CODES:
            raise MessageError("error reply without a known error code", seq=frame.seq)
        return Reply(frame.seq, False, error_code=words[1], error_text=" ".join(words[2:]))
    if words[0] != "OK":
        raise MessageError(f"reply status {words[0]!r} is neither OK nor ER", seq=frame.seq)
    rest = words[1:]
    if len(rest) % REPORT_WORDS:
        raise MessageError(f"reply has {len(rest)} report words, not a multiple of "
                           f"{REPORT_WORDS}", seq=frame.seq)
    try:
        reports = tuple(_parse_report(rest[i:i + REPORT_WORDS])
                        for i in range(0, len(rest), REPORT_WORDS))
    except MessageError as exc:
        raise MessageError(str(exc), seq=frame.seq) from None
    return Reply(frame.seq, True, reports)
