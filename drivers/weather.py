"""Wind sensors (``tracker.mount.wind.WindSensor``): a Modbus anemometer and an NMEA 0183
serial wind sensor.

Modbus (``ModbusWindSensor``): each ``read()`` is one register read (holding, function 3,
or input, function 4) over TCP or RTU, covering the speed and direction registers of
``weather.modbus``; each value is ``raw * scale + offset`` with the configured data type
and word order (``decode_value``).  Link problems, exception replies and impossible
values (negative, NaN) give an invalid reading, never an exception.

NMEA 0183 (``NmeaWindSensor``): the sensor talks by itself (Gill WindSonic, Vaisala
WXT5xx in NMEA mode, Airmar...); the port is read from an ``add_reader`` callback and
every complete line is parsed at once.  The wind sentence is MWV, "wind speed and
angle" (NMEA 0183 v2.x)::

    $--MWV,<angle>,<R|T>,<speed>,<K|M|N|S>,<A|V>*hh<CR><LF>

angle 0..359.9 degrees (relative to the sensor's north mark / the vessel's bow), R
relative or T theoretical ("true"), speed in km/h (K), m/s (M), knots (N) or statute
mph (S), status A valid / V invalid (a Vaisala WXT then leaves the values empty);
``hh`` is the XOR of every byte between ``$`` and ``*``, two hex digits.  Example
from Vaisala's manual: ``$WIMWV,39,R,1.3,M,A*06``.  A bad checksum, a line cut short
or unparseable, or status V is an invalid reading, counted in ``counts``; other
sentences (MWD, XDR, ...) are ignored.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Callable

from drivers.modbus import CommsError, ModbusLink
from drivers.serial_port import ReaderPort
from tracker.config import ModbusWind, NmeaWind, WindRegister
from tracker.mount.axis import Condition
from tracker.mount.wind import WindReading

log = logging.getLogger(__name__)

#: NMEA 0183 MWV speed units -> m/s factor (1 knot = 1852 m/h; 1 statute mile = 1609.344 m).
MWV_UNIT_TO_M_S = {"K": 1000.0 / 3600.0, "M": 1.0, "N": 1852.0 / 3600.0, "S": 1609.344 / 3600.0}
#: Longest NMEA 0183 sentence, bytes including $ and CR LF (the standard says 82).
NMEA_MAX_LINE = 82


# ---------------------------------------------------------------------------- Modbus values
def decode_value(regs: list[int], reg: WindRegister) -> float:
    """The scaled value of ``reg`` from its raw 16-bit registers (``reg.count`` of them)."""
    if len(regs) != reg.count:
        raise ValueError(f"{reg.data_type} needs {reg.count} registers, got {len(regs)}")
    words = list(regs) if reg.word_order == "big" else list(reversed(regs))
    raw_bytes = b"".join(struct.pack(">H", w & 0xFFFF) for w in words)
    fmt = {"uint16": ">H", "int16": ">h", "uint32": ">I", "int32": ">i", "float32": ">f"}
    raw = struct.unpack(fmt[reg.data_type], raw_bytes)[0]
    return float(raw) * reg.scale + reg.offset


def encode_value(value: float, reg: WindRegister) -> list[int]:
    """Raw registers holding ``value`` (the inverse of ``decode_value``; integers rounded and
    clamped to the type's range).  Used by the simulator's anemometer."""
    raw = (value - reg.offset) / reg.scale
    dt = reg.data_type
    if dt == "float32":
        data = struct.pack(">f", raw)
    else:
        lo, hi, fmt = {"uint16": (0, 0xFFFF, ">H"), "int16": (-0x8000, 0x7FFF, ">h"),
                       "uint32": (0, 0xFFFFFFFF, ">I"),
                       "int32": (-0x80000000, 0x7FFFFFFF, ">i")}[dt]
        data = struct.pack(fmt, max(lo, min(hi, round(raw))) if math.isfinite(raw) else 0)
    words = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
    return words if reg.word_order == "big" else list(reversed(words))


class ModbusWindSensor:
    """An anemometer behind Modbus TCP or RTU (``weather.modbus``).

    ``clock()`` stamps readings (UTC unix seconds).  ``errors`` counts failed reads.
    """

    def __init__(self, cfg: ModbusWind, clock: Callable[[], float], *,
                 port: int | None = None, serial_port: str | None = None) -> None:
        self.cfg = cfg
        self._clock = clock
        self.link = ModbusLink(transport=cfg.transport, host=cfg.host,
                               port=cfg.port if port is None else port,
                               serial_port=cfg.serial_port if serial_port is None else serial_port,
                               baudrate=cfg.baudrate, timeout_s=cfg.timeout_s)
        regs = [cfg.speed] + ([cfg.direction] if cfg.direction is not None else [])
        self._start = min(r.address for r in regs)
        self._count = max(r.address + r.count for r in regs) - self._start
        if self._count > 125:
            raise ValueError("weather.modbus: speed and direction registers must lie within "
                             "125 registers of each other (one read)")
        self.reads = 0
        self.errors = 0
        self.last_error = ""

    async def _read_registers(self) -> list[int]:
        link, cfg = self.link, self.cfg
        if cfg.register_kind == "holding":
            return await link.read_registers(cfg.device_id, self._start, self._count)
        regs = await link._call(lambda: link.client.read_input_registers(
            self._start, count=self._count, device_id=cfg.device_id), 4)
        if len(regs) != self._count:
            raise CommsError(Condition.GARBLED_FRAME,
                             f"expected {self._count} registers, got {len(regs)}")
        return regs

    def _invalid(self, now_s: float, detail: str) -> WindReading:
        self.errors += 1
        self.last_error = detail
        return WindReading.invalid(now_s, detail)

    async def read(self) -> WindReading:
        """One register read -> a reading; an invalid one (with the reason) on any problem."""
        self.reads += 1
        try:
            regs = await self._read_registers()
        except CommsError as exc:
            return self._invalid(self._clock(), f"anemometer {self.link.where}: {exc.text}")
        now_s = self._clock()
        cfg = self.cfg

        def value(reg: WindRegister) -> float:
            i = reg.address - self._start
            return decode_value(regs[i:i + reg.count], reg)

        speed = value(cfg.speed)
        direction = value(cfg.direction) % 360.0 if cfg.direction is not None else math.nan
        if not math.isfinite(speed) or speed < 0:
            return self._invalid(now_s, f"anemometer {self.link.where}: impossible speed "
                                        f"{speed!r} m/s")
        return WindReading(time_s=now_s, speed_m_s=speed, direction_deg=direction)

    async def close(self) -> None:
        self.link.close()


# ---------------------------------------------------------------------------- NMEA 0183
def nmea_checksum(body: bytes) -> int:
    """XOR of the bytes between ``$`` and ``*`` (``body`` excludes both)."""
    c = 0
    for b in body:
        c ^= b
    return c


def format_mwv(angle_deg: float, speed: float, *, unit: str = "M", reference: str = "R",
               status: str = "A", talker: str = "WI") -> bytes:
    """One MWV sentence with its checksum and CR LF (what a sensor sends)."""
    if status == "V":
        body = f"{talker}MWV,,{reference},,{unit},V"
    else:
        body = f"{talker}MWV,{angle_deg % 360.0:05.1f},{reference},{speed:06.2f},{unit},{status}"
    raw = body.encode("ascii")
    return b"$" + raw + f"*{nmea_checksum(raw):02X}\r\n".encode("ascii")


def parse_mwv(line: bytes | str, time_s: float, *, reference: str = "any",
              ) -> WindReading | None:
    """Parse one NMEA line.  An MWV sentence gives a reading (invalid with the reason if
    the checksum, the fields or the status are bad); another sentence type gives None.
    Never raises."""
    if isinstance(line, str):
        line = line.encode("ascii", "replace")
    text = line.strip(b"\r\n \x00")
    start = text.rfind(b"$")
    if start < 0:
        return WindReading.invalid(time_s, "not an NMEA sentence (no $)")
    text = text[start + 1:]
    star = text.rfind(b"*")
    if star < 0 or len(text) - star != 3:
        kind = "MWV " if text[2:5] == b"MWV" else ""
        return WindReading.invalid(time_s, f"truncated {kind}sentence (no *hh checksum)")
    body, given = text[:star], text[star + 1:]
    try:
        want = int(given.decode("ascii"), 16)
    except ValueError:
        return WindReading.invalid(time_s, f"bad checksum field {given!r}")
    got = nmea_checksum(body)
    if got != want:
        return WindReading.invalid(time_s, f"bad checksum: computed {got:02X}, sentence says "
                                           f"{want:02X}")
    try:
        fields = body.decode("ascii").split(",")
    except UnicodeDecodeError:
        return WindReading.invalid(time_s, "non-ASCII bytes in the sentence")
    if len(fields[0]) != 5 or fields[0][2:] != "MWV":
        return None
    if len(fields) < 6:
        return WindReading.invalid(time_s, f"MWV with {len(fields) - 1} fields, expected 5")
    _, angle_s, ref, speed_s, unit, status = fields[:6]
    if status != "A":
        return WindReading.invalid(time_s, f"sensor status {status or '(empty)'} (data invalid)")
    if reference != "any" and ref != reference:
        return None
    if unit not in MWV_UNIT_TO_M_S:
        return WindReading.invalid(time_s, f"unknown MWV speed unit {unit!r}")
    try:
        speed = float(speed_s) * MWV_UNIT_TO_M_S[unit]
        angle = float(angle_s) if angle_s else math.nan
    except ValueError:
        return WindReading.invalid(time_s, f"unparseable MWV numbers {angle_s!r}, {speed_s!r}")
    if not math.isfinite(speed) or speed < 0 or (math.isfinite(angle)
                                                  and not 0 <= angle <= 360):
        return WindReading.invalid(time_s, f"MWV values out of range: {angle_s}, {speed_s}")
    return WindReading(time_s=time_s, speed_m_s=speed,
                       direction_deg=angle % 360.0 if math.isfinite(angle) else math.nan)


class NmeaWindSensor:
    """An NMEA 0183 wind sensor on a serial port (``weather.nmea``), read as it talks.

    ``read()`` returns the latest reading (valid or not; the same object again when
    nothing new came, so its ``time_s`` does not advance).  ``counts`` tallies
    ``sentences`` (MWV parsed), ``valid``, ``bad_checksum``, ``truncated``,
    ``invalid_status``, ``malformed``, ``ignored`` (other sentence types) and
    ``noise_bytes`` (bytes outside any sentence).  A port
    that cannot be opened or fails is reopened with a bounded backoff.
    """

    def __init__(self, cfg: NmeaWind, clock: Callable[[], float], *, port: str | None = None,
                 backoff_min_s: float = 0.1, backoff_max_s: float = 5.0) -> None:
        self.cfg = cfg
        self.port = cfg.port if port is None else port
        self._clock = clock
        self._link = ReaderPort(self.port, cfg.baudrate, self.feed, what="wind sensor",
                                backoff_min_s=backoff_min_s, backoff_max_s=backoff_max_s)
        self._link.link_error = "not opened yet"
        self._buf = bytearray()
        self._latest: WindReading | None = None
        self._closed = False
        self.counts = dict.fromkeys(("sentences", "valid", "bad_checksum", "truncated",
                                     "invalid_status", "malformed", "ignored", "noise_bytes"), 0)

    @property
    def is_open(self) -> bool:
        return self._link.is_open

    @property
    def link_error(self) -> str:
        return self._link.link_error

    def try_open(self) -> bool:
        """Open the port unless open, closed or backing off; never raises."""
        if self._link.is_open:
            return True
        if self._closed or not self._link.try_open():
            return False
        self._buf.clear()
        return True

    def feed(self, data: bytes) -> None:
        """Take raw bytes from the line (split into sentences at LF; a ``$`` inside an
        unfinished line means that line was cut short)."""
        now_s = self._clock()
        for b in data:
            if b == 0x24 and self._buf:  # '$' before the end of the previous sentence
                self._line(bytes(self._buf), now_s, cut=True)
                self._buf.clear()
            if b == 0x0A:
                if self._buf:
                    self._line(bytes(self._buf), now_s, cut=False)
                self._buf.clear()
                continue
            self._buf.append(b)
            if len(self._buf) > NMEA_MAX_LINE:
                self._line(bytes(self._buf), now_s, cut=True)
                self._buf.clear()

    def _line(self, line: bytes, now_s: float, *, cut: bool) -> None:
        if not line.strip(b"\r\n \x00"):
            return
        if b"$" not in line:  # line noise between sentences
            self.counts["noise_bytes"] += len(line)
            return
        if cut:
            self.counts["truncated"] += 1
            self._latest = WindReading.invalid(now_s, "truncated sentence")
            return
        r = parse_mwv(line, now_s, reference=self.cfg.reference)
        if r is None:
            self.counts["ignored"] += 1
            return
        self.counts["sentences"] += 1
        if r.valid:
            self.counts["valid"] += 1
        elif r.detail.startswith(("bad checksum", "bad checksum field")):
            self.counts["bad_checksum"] += 1
        elif r.detail.startswith("truncated"):
            self.counts["truncated"] += 1
        elif r.detail.startswith("sensor status"):
            self.counts["invalid_status"] += 1
        else:
            self.counts["malformed"] += 1
        self._latest = r

    async def read(self) -> WindReading:
        """The latest reading; an invalid one (stamped now) while the port is not open."""
        if not self._link.is_open and not self.try_open():
            return WindReading.invalid(self._clock(), f"wind sensor: {self.link_error}")
        if self._latest is None:
            return WindReading.invalid(self._clock(), "no MWV sentence received yet")
        return self._latest

    async def close(self) -> None:
        self._link.close("closed")
        self._closed = True


__all__ = ["MWV_UNIT_TO_M_S", "ModbusWindSensor", "NmeaWindSensor", "decode_value",
           "encode_value", "format_mwv", "nmea_checksum", "parse_mwv"]
