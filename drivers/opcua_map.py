"""The OPC UA node map of the axis drives (one PLC, both axes), loaded from TOML into a typed model.

The documented default is ``config/opcua_map.toml``.  The same model is used by
the driver (``drivers.opcua``) and by the simulated PLC (``simulator.opcua_server``),
so both speak exactly the same map.

Node ids are OPC UA string forms (``"ns=2;s=Azimuth.Position"``, ``"ns=3;i=1042"``);
their syntax is checked here, their existence and access rights by the driver at
connect.  Values on the wire are engineering units scaled by ``position_unit_deg``
(axis degrees per PLC position unit) and ``velocity_unit_deg_s`` (deg/s per PLC
velocity unit): ``position_deg = plc_value * position_unit_deg``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from asyncua import ua
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.maps import parse_model, read_toml

DEFAULT_MAP = Path(__file__).resolve().parent.parent / "config" / "opcua_map.toml"

Bit = Annotated[int, Field(ge=0, le=31)]
Word = Annotated[int, Field(ge=0, le=65535)]
#: OPC UA built-in types a command node may have (the driver writes exactly this type).
WriteType = Literal["Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64",
                    "UInt64", "Float", "Double"]

#: Map keys read every cycle (in this order), and keys written by commands.
STATUS_KEYS = ("position", "velocity", "status_word", "fault_code")
COMMAND_KEYS = ("mode", "velocity_setpoint", "position_setpoint", "enable", "brake", "reset",
                "heartbeat")
AXES = ("azimuth", "elevation")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AxisNodes(_Section):
    """Node ids of one axis drive.  Status nodes are read, command nodes written."""

    position: str             # Double (or any number): encoder position, PLC units
    velocity: str             # Double: measured velocity, PLC units
    status_word: str          # unsigned integer: bits, see [status_bits]
    fault_code: str           # unsigned integer: 0 = no fault, else tracker.mount.axis.FAULT_CODES
    mode: str                 # command mode, see [modes]; executed when written
    velocity_setpoint: str    # velocity demand (mode velocity) or speed limit (mode position)
    position_setpoint: str    # target position (mode position)
    enable: str               # Boolean: true = energise, false = ramp down and de-energise
    brake: str                # Boolean: true = apply the holding brake (drive ramps down first)
    reset: str                # Boolean: written true to acknowledge a latched fault
    heartbeat: str            # counter, incremented by the controller on every write

    @field_validator("*")
    @classmethod
    def _node_id_syntax(cls, v: str) -> str:
        try:
            ua.NodeId.from_string(v)
        except (ua.UaError, ValueError) as exc:
            raise ValueError(f"{v!r} is not an OPC UA node id (e.g. 'ns=2;s=Azimuth.Position'): "
                             f"{exc}") from None
        return v


class StatusBits(_Section):
    """Bit numbers (0 = least significant) in the status word."""

    enabled: Bit = 0
    moving: Bit = 1
    fault: Bit = 2
    soft_low: Bit = 3
    soft_high: Bit = 4
    hard_low: Bit = 5
    hard_high: Bit = 6
    estop: Bit = 7
    braked: Bit = 8


class Modes(_Section):
    """Codes written to the mode node."""

    velocity: Word = 1
    position: Word = 2
    stop: Word = 3


class DataTypes(_Section):
    """OPC UA types of the command nodes (the driver writes these exact variant types)."""

    mode: WriteType = "UInt16"
    velocity_setpoint: WriteType = "Double"
    position_setpoint: WriteType = "Double"
    enable: WriteType = "Boolean"
    brake: WriteType = "Boolean"
    reset: WriteType = "Boolean"
    heartbeat: WriteType = "UInt16"


class NodeMap(_Section):
    """A whole node map (see ``config/opcua_map.toml`` for the meaning of each key)."""

    position_unit_deg: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    velocity_unit_deg_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    status_bits: StatusBits = Field(default_factory=StatusBits)
    modes: Modes = Field(default_factory=Modes)
    datatypes: DataTypes = Field(default_factory=DataTypes)
    azimuth: AxisNodes
    elevation: AxisNodes

    @model_validator(mode="after")
    def _distinct(self) -> NodeMap:
        seen: dict[ua.NodeId, str] = {}
        for axis in AXES:
            nodes = getattr(self, axis)
            for key in (*STATUS_KEYS, *COMMAND_KEYS):
                nid = ua.NodeId.from_string(getattr(nodes, key))
                where = f"{axis}.{key}"
                if nid in seen:
                    raise ValueError(f"{where} and {seen[nid]} are the same node "
                                     f"{getattr(nodes, key)!r}")
                seen[nid] = where
        bits = self.status_bits.model_dump()
        if len(set(bits.values())) != len(bits):
            raise ValueError("status_bits must all be different bits")
        modes = self.modes.model_dump()
        if len(set(modes.values())) != len(modes):
            raise ValueError("modes must all have different codes")
        if self.datatypes.heartbeat == "Boolean" or self.datatypes.mode == "Boolean":
            raise ValueError("datatypes.heartbeat and datatypes.mode must be integer types")
        return self

    def nodes(self, axis: str) -> AxisNodes:
        """The node ids of ``axis`` (``"azimuth"`` or ``"elevation"``)."""
        if axis not in AXES:
            raise ValueError(f"unknown axis {axis!r} (azimuth or elevation)")
        return getattr(self, axis)

    def variant_type(self, key: str) -> ua.VariantType:
        """The OPC UA variant type the driver writes to command node ``key``."""
        return ua.VariantType[getattr(self.datatypes, key)]

    @property
    def heartbeat_modulus(self) -> int:
        """The heartbeat counter wraps at this value (fits the heartbeat node's type)."""
        return {"SByte": 2**7, "Byte": 2**8, "Int16": 2**15, "UInt16": 2**16, "Int32": 2**31,
                "UInt32": 2**32, "Int64": 2**63, "UInt64": 2**64, "Float": 2**24,
                "Double": 2**53}[self.datatypes.heartbeat]


def parse_map(data: dict, path: str = "<node map>") -> NodeMap:
    """Validate a node-map mapping; ``ConfigError`` names the file, key and rule."""
    return parse_model(NodeMap, data, path, "OPC UA node map")


def load_map(path: str | Path | None = None) -> NodeMap:
    """Read a node map TOML file (default: ``config/opcua_map.toml``)."""
    p = Path(path) if path is not None else DEFAULT_MAP
    data = read_toml(p, "OPC UA node map")
    return parse_map(data, str(p))


def map_for(settings) -> NodeMap:
    """The node map a config names (``drives.opcua.node_map``, relative to the config file)."""
    return load_map(settings.relative_path(settings.drives.opcua.node_map))
