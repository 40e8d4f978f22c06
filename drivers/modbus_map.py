"""The Modbus register map of the axis drives, loaded from TOML into a typed model.

The documented default is ``config/modbus_map.toml``.  The same model is used by
the driver (``drivers.modbus``) and by the simulated drives' server
(``simulator.modbus_server``), so both speak exactly the same map.

Conversions here are the only place raw register values (``_counts``) become
degrees: ``position_counts = round(position_deg * counts_per_deg)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.maps import parse_model, read_toml

Address = Annotated[int, Field(ge=0, le=65535)]
Bit = Annotated[int, Field(ge=0, le=15)]
Word = Annotated[int, Field(ge=0, le=65535)]

DEFAULT_MAP = Path(__file__).resolve().parent.parent / "config" / "modbus_map.toml"

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StatusBlock(_Section):
    """Read block: absolute register addresses of each field (int32 fields take two)."""

    address: Address
    count: Annotated[int, Field(ge=1, le=125)]
    position: Address
    velocity: Address
    flags: Address
    fault_code: Address
    heartbeat_echo: Address


class StatusBits(_Section):
    enabled: Bit
    moving: Bit
    fault: Bit
    soft_low: Bit
    soft_high: Bit
    hard_low: Bit
    hard_high: Bit
    estop: Bit
    braked: Bit


class CommandBlock(_Section):
    """Write block: absolute register addresses of each field."""

    address: Address
    count: Annotated[int, Field(ge=1, le=123)]
    mode: Address
    heartbeat: Address
    target_position: Address
    speed: Address


class Modes(_Section):
    none: Word = 0
    velocity: Word
    position: Word
    stop: Word
    enable: Word
    disable: Word
    reset: Word


def _span(name: str, addr: int, width: int) -> tuple[str, range]:
    return name, range(addr, addr + width)


class RegisterMap(_Section):
    """A whole register map (see ``config/modbus_map.toml`` for the meaning of each key)."""

    word_order: Literal["big", "little"] = "big"
    counts_per_deg: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    counts_per_deg_s: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    status: StatusBlock
    status_bits: StatusBits
    command: CommandBlock
    modes: Modes

    @model_validator(mode="after")
    def _consistent(self) -> RegisterMap:
        s, c = self.status, self.command
        blocks = {
            "status": (range(s.address, s.address + s.count), [
                _span("position", s.position, 2), _span("velocity", s.velocity, 2),
                _span("flags", s.flags, 1), _span("fault_code", s.fault_code, 1),
                _span("heartbeat_echo", s.heartbeat_echo, 1)]),
            "command": (range(c.address, c.address + c.count), [
                _span("mode", c.mode, 1), _span("heartbeat", c.heartbeat, 1),
                _span("target_position", c.target_position, 2), _span("speed", c.speed, 2)]),
        }
        for block, (extent, fields) in blocks.items():
            used: dict[int, str] = {}
            for name, regs in fields:
                for r in regs:
                    if r not in extent:
                        raise ValueError(f"{block}.{name} (register {r}) lies outside the "
                                         f"{block} block {extent.start}..{extent.stop - 1}")
                    if r in used:
                        raise ValueError(f"{block}.{name} overlaps {block}.{used[r]} at register {r}")
                    used[r] = name
        srange = blocks["status"][0]
        crange = blocks["command"][0]
        if set(srange) & set(crange):
            raise ValueError("the status and command blocks overlap")
        bits = self.status_bits.model_dump()
        if len(set(bits.values())) != len(bits):
            raise ValueError("status_bits must all be different bits")
        modes = self.modes.model_dump()
        if len(set(modes.values())) != len(modes):
            raise ValueError("modes must all have different codes")
        return self

    # ---------------------------------------------------------------- conversions
    @property
    def register_span(self) -> tuple[int, int]:
        """(first, last + 1) register address covering both blocks."""
        lo = min(self.status.address, self.command.address)
        hi = max(self.status.address + self.status.count, self.command.address + self.command.count)
        return lo, hi

    def int32_to_words(self, value_counts: int) -> list[int]:
        """Two 16-bit registers for a signed 32-bit value, in this map's word order."""
        if not _INT32_MIN <= value_counts <= _INT32_MAX:
            raise ValueError(f"{value_counts} counts does not fit a signed 32-bit register pair")
        u = value_counts & 0xFFFFFFFF
        hi, lo = u >> 16, u & 0xFFFF
        return [hi, lo] if self.word_order == "big" else [lo, hi]

    def words_to_int32(self, w0: int, w1: int) -> int:
        """Signed 32-bit value from two registers (in register order)."""
        hi, lo = (w0, w1) if self.word_order == "big" else (w1, w0)
        u = (hi << 16) | lo
        return u - 0x100000000 if u & 0x80000000 else u

    def deg_to_counts(self, position_deg: float) -> int:
        return round(position_deg * self.counts_per_deg)

    def counts_to_deg(self, position_counts: int) -> float:
        return position_counts / self.counts_per_deg

    def deg_s_to_counts(self, velocity_deg_s: float) -> int:
        return round(velocity_deg_s * self.counts_per_deg_s)

    def counts_to_deg_s(self, velocity_counts: int) -> float:
        return velocity_counts / self.counts_per_deg_s


def parse_map(data: dict, path: str = "<register map>") -> RegisterMap:
    """Validate a register-map mapping; ``ConfigError`` names the file, key and rule."""
    return parse_model(RegisterMap, data, path, "Modbus register map")


def load_map(path: str | Path | None = None) -> RegisterMap:
    """Read a register map TOML file (default: ``config/modbus_map.toml``)."""
    p = Path(path) if path is not None else DEFAULT_MAP
    data = read_toml(p, "register map")
    return parse_map(data, str(p))


def map_for(settings) -> RegisterMap:
    """The register map a config names (``drives.modbus.register_map``, relative to it)."""
    return load_map(settings.relative_path(settings.drives.modbus.register_map))
