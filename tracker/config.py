"""TOML configuration -> validated, typed settings.

One file describes one installation: the site, the mount's envelope, the axes'
speed limits, the drives, the tracking parameters, the API and the simulator.
Every section has defaults except ``site`` and ``envelope``.  Unknown keys are
errors (a typo must never silently fall back to a default).

Strict: every value must have its own type (no ``"10"`` for a number, no ``true`` for a
rate or an angle, no ``"8470"`` for a port; an integer is accepted for a real number) and
every number lies in a physically sane range; each error names the file, the key, the value
and the rule.  The API binds loopback only unless ``api.allow_remote = true`` (then a loud
warning is logged at load).

Angles are degrees, rates deg/s, accelerations deg/s^2, times seconds, unless
the name says otherwise (``_arcsec``, ``_m_s``...).  Axis positions are in the
mount's own frame: azimuth axis from north through east, possibly beyond
[0, 360) on a cable-wrapped mount; elevation axis above the horizon positive.
"""

from __future__ import annotations

import ipaddress
import logging
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tracker.errors import ConfigError


def _presets_dir() -> Path:
    """The presets' folder: ``config/`` in a checkout, the ``tracker.presets`` package data
    in an installed wheel (the same files)."""
    checkout = Path(__file__).resolve().parent.parent / "config"
    if (checkout / "sim.toml").is_file():
        return checkout
    import importlib.resources
    return Path(str(importlib.resources.files("tracker.presets")))


#: The presets and the configuration used when none is given (BabyIAXO, simulated mount).
CONFIG_DIR = _presets_dir()
DEFAULT_CONFIG = CONFIG_DIR / "sim.toml"
PRESETS = ("sim", "sim-modbus", "sim-opcua", "babyiaxo", "cast", "iaxo")

log = logging.getLogger(__name__)

Finite = Annotated[float, Field(allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


AzimuthDeg = Annotated[float, Field(ge=-540, le=540, allow_inf_nan=False)]
ElevationDeg = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
#: Seconds of a time-out on a drive link: 10 ms .. 10 s.
#: A pointing-model term of the simulated mount: within +-10 deg (36000 arcsec).
TermArcsec = Annotated[float, Field(ge=-36000, le=36000, allow_inf_nan=False)]
LinkTimeoutS = Annotated[float, Field(ge=0.01, le=10, allow_inf_nan=False)]
Baudrate = Annotated[int, Field(ge=300, le=4_000_000)]
Port = Annotated[int, Field(ge=1, le=65535)]


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    h = host.strip().strip("[]")
    if h.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_non_bool(cls, value: Any, info: ValidationInfo) -> Any:
        """``true`` is not 1 (pydantic's Literal[1, -1] or Literal[0.0] would take it)."""
        if isinstance(value, bool) and info.field_name is not None:
            if cls.model_fields[info.field_name].annotation is not bool:
                raise ValueError(f"a boolean ({str(value).lower()}) is not allowed here")
        return value


class Site(_Section):
    """Geodetic site position (WGS84)."""

    name: str = "site"
    latitude_deg: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
    longitude_deg: Annotated[float, Field(ge=-180, le=360, allow_inf_nan=False)]
    height_m: Annotated[float, Field(ge=-500, le=9000, allow_inf_nan=False)] = 0.0


class Boresight(_Section):
    """One end of the magnet that can look at the Sun.

    The sky direction it points to, for axis positions (az_axis, el_axis), is
    azimuth ``az_axis + azimuth_offset_deg`` (mod 360) and elevation
    ``elevation_sign * el_axis``.  CAST's ``rear`` boresight is offset 180,
    sign -1: the detectors at the far end of the magnet look the other way.
    """

    name: str
    azimuth_offset_deg: Literal[0.0, 180.0] = 0.0
    elevation_sign: Literal[1, -1] = 1


class KeepOutZone(_Section):
    """A box in axis coordinates the mount must never enter (degrees)."""

    name: str = "keep-out"
    azimuth_min_deg: AzimuthDeg
    azimuth_max_deg: AzimuthDeg
    elevation_min_deg: ElevationDeg
    elevation_max_deg: ElevationDeg


class Envelope(_Section):
    """Axis ranges the controller may command (the drives' soft limits lie at or beyond)."""

    elevation_min_deg: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
    elevation_max_deg: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
    azimuth_min_deg: Annotated[float, Field(ge=-540, le=540, allow_inf_nan=False)]
    azimuth_max_deg: Annotated[float, Field(ge=-540, le=540, allow_inf_nan=False)]
    boresights: list[Boresight] = Field(default_factory=lambda: [Boresight(name="main")])
    keep_out: list[KeepOutZone] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> Envelope:
        if self.elevation_min_deg >= self.elevation_max_deg:
            raise ValueError("elevation_min_deg must be below elevation_max_deg")
        if self.azimuth_min_deg >= self.azimuth_max_deg:
            raise ValueError("azimuth_min_deg must be below azimuth_max_deg")
        if self.azimuth_max_deg - self.azimuth_min_deg > 720:
            raise ValueError("the azimuth range may span at most 720 degrees")
        names = [b.name for b in self.boresights]
        if not names or len(set(names)) != len(names):
            raise ValueError("boresights need at least one entry and unique names")
        return self

    @property
    def cable_wrap(self) -> bool:
        """True when the azimuth axis covers more than one turn."""
        return self.azimuth_max_deg - self.azimuth_min_deg >= 360.0

    def boresight(self, name: str) -> Boresight:
        for b in self.boresights:
            if b.name == name:
                return b
        allowed = ", ".join(b.name for b in self.boresights)
        raise ConfigError(f"unknown boresight {name!r}; this mount has: {allowed}",
                          key="boresight", value=name, allowed=allowed)


#: A bore's name: letters, digits, ``_ . -`` (it becomes a column and a ROOT branch name).
BoreName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]
#: An alignment offset of a bore's optical axis from the mechanical axis: within +-1 deg.
BoreOffsetArcsec = Annotated[float, Field(ge=-3600, le=3600, allow_inf_nan=False)]


class Bore(_Section):
    """One magnet bore (with its X-ray optics and detector).

    Its optical axis points ``(offset_x_arcsec, offset_y_arcsec)`` away from the mechanical
    axis, on the sky tangent plane of the boresight in use: x along azimuth times
    cos(elevation) (positive towards larger azimuth), y along elevation (positive up).  The
    bore is on the Sun while tracking and its off-axis angle (Sun to optical axis, great
    circle, arc-seconds) is at most ``on_sun_tolerance_arcsec``.  The optics' efficiency at an
    off-axis angle is interpolated linearly in the table ``efficiency_off_axis_arcsec`` (0 or
    more, strictly increasing) -> ``efficiency`` (each in [0, 1]); beyond the last angle the
    last value holds (end the table at 0 where the optics see nothing).
    """

    name: BoreName
    offset_x_arcsec: BoreOffsetArcsec = 0.0
    offset_y_arcsec: BoreOffsetArcsec = 0.0
    on_sun_tolerance_arcsec: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)] = 36.0
    efficiency_off_axis_arcsec: Annotated[
        list[Annotated[float, Field(ge=0, le=36000, allow_inf_nan=False)]],
        Field(min_length=1, max_length=200)] = Field(default_factory=lambda: [0.0])
    efficiency: Annotated[list[Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]],
                          Field(min_length=1, max_length=200)] = Field(
        default_factory=lambda: [1.0])

    @model_validator(mode="after")
    def _table(self) -> Bore:
        angles, eff = self.efficiency_off_axis_arcsec, self.efficiency
        if len(angles) != len(eff):
            raise ValueError(f"bore {self.name!r}: efficiency_off_axis_arcsec has {len(angles)} "
                             f"entries but efficiency has {len(eff)}: one efficiency per angle")
        for i in range(1, len(angles)):
            if angles[i] <= angles[i - 1]:
                raise ValueError(f"bore {self.name!r}: efficiency_off_axis_arcsec must increase "
                                 f"strictly: entry {i} ({angles[i]}) is not above entry {i - 1} "
                                 f"({angles[i - 1]})")
        return self


class AxisLimits(_Section):
    """Speed and acceleration limits of one axis, as the controller may command them."""

    #: <= 10 deg/s: no helioscope mount moves faster (the Sun moves <= 0.005 deg/s).
    max_speed_deg_s: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)]
    max_accel_deg_s2: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)]


class Axes(_Section):
    azimuth: AxisLimits
    elevation: AxisLimits


class AxisPosition(_Section):
    """A named mount position in axis coordinates (degrees)."""

    azimuth_deg: AzimuthDeg
    elevation_deg: ElevationDeg


class Positions(_Section):
    park: AxisPosition
    stow: AxisPosition


class LoadModelAxis(_Section):
    """The controller's load model of one axis (``tracker.control.law.LoadModel``): a
    calibrated table, not the simulator's truth."""

    #: Static deflection of the magnet from its encoder per unit load torque, degrees per
    #: deg/s^2 (1 / k); <= 0.1 (k >= 10 /s^2: a structure with a mode above ~0.5 Hz).
    compliance_s2: Annotated[float, Field(ge=0, le=0.1, allow_inf_nan=False)] = 0.0
    #: Gravity unbalance torque at el = 0, deg/s^2 (+ nose-heavy; elevation only);
    #: |u| <= 1 deg/s^2 (the drives' peak torque).
    unbalance_deg_s2: Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False)] = 0.0
    #: Wind torque per (m/s)^2 at the worst direction, deg/s^2; <= 0.01 (40 m/s would
    #: then be 16 deg/s^2, far beyond any drive).
    wind_deg_s2_per_m2_s2: Annotated[float, Field(ge=0, le=0.01, allow_inf_nan=False)] = 0.0
    #: Gear backlash (full band), arc-seconds; <= 60.
    backlash_arcsec: Annotated[float, Field(ge=0, le=60, allow_inf_nan=False)] = 0.0


class LoadFeedForwardSettings(_Section):
    """Load feed-forward in the engine's demand while tracking or acquiring the Sun."""

    enabled: bool = False
    #: Use the weather supervisor's 3-s wind (speed and direction); off: unbalance only.
    wind: bool = True
    #: Bound on the offset, each axis, arc-seconds (0 < max <= 600: a few arc-seconds
    #: are expected; more means a wrong model, never a reason to move the mount far).
    max_offset_arcsec: Annotated[float, Field(gt=0, le=600, allow_inf_nan=False)] = 60.0
    #: A wind reading older than this (s) gives no wind term (0 < age <= 10).
    max_wind_age_s: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)] = 2.0
    #: A wind speed above this (m/s) is not believed: no wind term (0 < v <= 100).
    max_wind_m_s: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = 40.0
    azimuth: LoadModelAxis = Field(default_factory=LoadModelAxis)
    elevation: LoadModelAxis = Field(default_factory=LoadModelAxis)


class Tracking(_Section):
    """Tracking and planning parameters."""

    control_rate_hz: Annotated[float, Field(ge=1, le=100, allow_inf_nan=False)] = 10.0
    log_rate_hz: Annotated[float, Field(ge=1, le=100, allow_inf_nan=False)] = 1.0
    on_sun_tolerance_arcsec: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)] = 36.0
    following_error_limit_arcsec: Annotated[float, Field(gt=0, le=36000,
                                                         allow_inf_nan=False)] = 600.0
    following_error_grace_s: Annotated[float, Field(ge=0, le=600, allow_inf_nan=False)] = 5.0
    position_gain_per_s: Annotated[float, Field(gt=0, le=20, allow_inf_nan=False)] = 1.0
    min_window_s: Annotated[float, Field(ge=0, le=86400, allow_inf_nan=False)] = 600.0
    preposition_margin_s: Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False)] = 120.0
    settle_s: Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False)] = 30.0
    auto_track: bool = False
    #: Aim this bore's optical axis at the Sun instead of the mechanical axis (a name from
    #: ``[[bores]]``; empty: the mechanical axis).
    reference_bore: str = ""
    #: After a fault or e-stop is reset, resume automatic tracking by itself (default: no,
    #: an operator command 'track on' is needed).
    resume_after_reset: bool = False
    #: The load (unbalance and wind) feed-forward, ``[tracking.load_feedforward]``.
    load_feedforward: LoadFeedForwardSettings = Field(default_factory=LoadFeedForwardSettings)

    @model_validator(mode="after")
    def _log_not_faster_than_control(self) -> Tracking:
        if self.log_rate_hz > self.control_rate_hz:
            raise ValueError(f"log_rate_hz ({self.log_rate_hz}) must not exceed "
                             f"control_rate_hz ({self.control_rate_hz}): one sample per tick "
                             "at most")
        return self


class WindRegister(_Section):
    """One value in an anemometer's Modbus registers: ``value = raw * scale + offset``.

    ``data_type`` is how the raw registers are read: one register (``uint16``, ``int16``)
    or two (``uint32``, ``int32``, ``float32`` IEEE 754); ``word_order = "big"`` means the
    high word sits at ``address``, ``"little"`` at ``address + 1`` (bytes within a
    register are always big-endian, as Modbus sends them).
    """

    address: Annotated[int, Field(ge=0, le=65534)]
    data_type: Literal["uint16", "int16", "uint32", "int32", "float32"] = "uint16"
    word_order: Literal["big", "little"] = "big"
    scale: Finite = 1.0
    offset: Finite = 0.0

    @model_validator(mode="after")
    def _nonzero_scale(self) -> WindRegister:
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self

    @property
    def count(self) -> int:
        """Number of 16-bit registers the value occupies."""
        return 1 if self.data_type in ("uint16", "int16") else 2


class ModbusWind(_Section):
    """A Modbus anemometer (TCP or RTU): where its speed and direction registers are."""

    transport: Literal["tcp", "rtu"] = "tcp"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 5021
    serial_port: str = "/dev/ttyUSB1"
    baudrate: Annotated[int, Field(gt=0)] = 9600
    timeout_s: Positive = 0.5
    device_id: Annotated[int, Field(ge=1, le=247)] = 1
    #: Holding registers (function 3) or input registers (function 4).
    register_kind: Literal["holding", "input"] = "holding"
    #: Wind speed; after scaling in m/s.
    speed: WindRegister = Field(default_factory=lambda: WindRegister(address=0, scale=0.01))
    #: Wind direction (degrees from north, where the wind comes from); None = not read.
    direction: WindRegister | None = Field(
        default_factory=lambda: WindRegister(address=1, scale=0.1))


class NmeaWind(_Section):
    """A serial NMEA 0183 wind sensor sending MWV sentences (Gill WindSonic, Vaisala WXT5xx)."""

    port: str = "/dev/ttyUSB1"
    #: NMEA 0183 is 4800 baud; many ultrasonic sensors are set to 9600 or faster.
    baudrate: Annotated[int, Field(gt=0)] = 4800
    #: Which MWV reference to use: R (relative), T (true/theoretical) or any.
    reference: Literal["R", "T", "any"] = "any"


class Weather(_Section):
    """Wind stow and the anemometer it listens to.

    Stow when the 3 s gust (``gust_window_s``) exceeds ``gust_stow_m_s`` (unset: the same
    as ``wind_stow_m_s``) or the mean over ``mean_window_s`` exceeds ``wind_stow_m_s``;
    resume when every reading stays below ``wind_resume_m_s`` for ``calm_s``.  No valid
    reading for ``max_age_s`` (or identical values for ``frozen_s``; 0 = never) is a
    lost sensor, which stows when ``stow_on_sensor_loss``.  ``source`` picks the
    anemometer: the simulated mount's wind (``sim``), a Modbus anemometer, an NMEA 0183
    serial sensor, or ``none`` (no wind supervision at all).
    """

    source: Literal["sim", "modbus", "nmea", "none"] = "sim"
    wind_stow_m_s: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = 15.0
    gust_stow_m_s: Positive | None = None
    wind_resume_m_s: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = 10.0
    calm_s: Annotated[float, Field(ge=0, le=86400, allow_inf_nan=False)] = 600.0
    mean_window_s: Positive = 600.0
    gust_window_s: Positive = 3.0
    max_age_s: Positive = 10.0
    frozen_s: NonNegative = 600.0
    stow_on_sensor_loss: bool = True
    auto_stow: bool = True
    auto_resume: bool = True
    modbus: ModbusWind = Field(default_factory=ModbusWind)
    nmea: NmeaWind = Field(default_factory=NmeaWind)

    @model_validator(mode="after")
    def _hysteresis(self) -> Weather:
        gust = self.wind_stow_m_s if self.gust_stow_m_s is None else self.gust_stow_m_s
        if self.wind_resume_m_s > min(self.wind_stow_m_s, gust):
            raise ValueError("wind_resume_m_s must not exceed wind_stow_m_s or gust_stow_m_s")
        if self.gust_window_s > self.mean_window_s:
            raise ValueError("gust_window_s must not exceed mean_window_s")
        return self


class Interlock(_Section):
    """Independent Sun interlock (``tracker.loop.interlock``): a second Sun position (PSA) must
    agree with the tracked sky target within ``bound_deg`` (great circle) while tracking."""

    enabled: bool = True
    #: Largest accepted disagreement, degrees; 0.02 (twice PSA's error) .. 1.0.
    bound_deg: Annotated[float, Field(ge=0.02, le=1.0, allow_inf_nan=False)] = 0.05


class ClockCheck(_Section):
    """Time integrity: refuse automatic tracking when the clock cannot be trusted.

    Tracking is refused when the kernel's maximum clock error, turned into pointing
    error at the Sun's angular speed, exceeds ``max_share_of_tolerance`` of
    ``tracking.on_sun_tolerance_arcsec``, or when the kernel says the clock is not
    synchronised.  ``override = true`` (an operator's decision) tracks anyway.
    """

    max_share_of_tolerance: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.5
    override: bool = False


class ModbusDrives(_Section):
    """Modbus connection to the two axis drives (TCP or RTU)."""

    transport: Literal["tcp", "rtu"] = "tcp"
    host: str = "127.0.0.1"
    port: Port = 5020
    serial_port: str = "/dev/ttyUSB0"
    baudrate: Baudrate = 115200
    timeout_s: LinkTimeoutS = 0.25
    azimuth_device_id: Annotated[int, Field(ge=1, le=247)] = 1
    elevation_device_id: Annotated[int, Field(ge=1, le=247)] = 2
    #: Register map file, relative to the config file's folder.
    register_map: str = "modbus_map.toml"


class SerialDrives(_Section):
    """Serial (ASCII line protocol) motion controller for both axes."""

    port: str = "/dev/ttyUSB0"
    baudrate: Baudrate = 115200
    timeout_s: LinkTimeoutS = 0.25


class OpcUaDrives(_Section):
    """OPC UA client session to the drive PLC (both axes; see ``docs/opcua.md``)."""

    endpoint_url: str = "opc.tcp://127.0.0.1:4840"
    #: Node map file, relative to the config file's folder.
    node_map: str = "opcua_map.toml"
    #: "None" (a lab network only) or "Basic256Sha256" (mode SignAndEncrypt).
    security_policy: Literal["None", "Basic256Sha256"] = "None"
    #: Client certificate and private key (PEM or DER), relative to the config file's folder.
    certificate: str = ""
    private_key: str = ""
    #: The PLC's certificate to pin; empty = take it from the server's endpoint list.
    server_certificate: str = ""
    #: User name for the session (empty = anonymous) and a file holding the password.
    user: str = ""
    password_file: str = ""
    #: Bound on each request (read, write, connect), seconds.
    timeout_s: Positive = 0.25

    @model_validator(mode="after")
    def _security(self) -> OpcUaDrives:
        if not self.endpoint_url.startswith("opc.tcp://"):
            raise ValueError(f"endpoint_url {self.endpoint_url!r} must start with opc.tcp://")
        if self.security_policy != "None" and not (self.certificate and self.private_key):
            raise ValueError(f"security_policy {self.security_policy!r} needs certificate and "
                             "private_key")
        if self.password_file and not self.user:
            raise ValueError("password_file is set but user is empty")
        return self


class Drives(_Section):
    """Which drives to use: the in-process simulator, Modbus, serial or OPC UA drives."""

    kind: Literal["sim", "modbus", "serial", "opcua"] = "sim"
    #: Drive-side watchdog: without a heartbeat for this long the drives ramp to zero.
    watchdog_s: Annotated[float, Field(ge=0.1, le=10, allow_inf_nan=False)] = 1.0
    modbus: ModbusDrives = Field(default_factory=ModbusDrives)
    serial: SerialDrives = Field(default_factory=SerialDrives)
    opcua: OpcUaDrives = Field(default_factory=OpcUaDrives)

    @model_validator(mode="after")
    def _link_faster_than_watchdog(self) -> Drives:
        link = {"modbus": self.modbus, "serial": self.serial}.get(self.kind)
        if link is not None and link.timeout_s >= self.watchdog_s:
            raise ValueError(f"drives.{self.kind}.timeout_s ({link.timeout_s}) must be below "
                             f"watchdog_s ({self.watchdog_s}): one lost reply would trip the "
                             "drives' watchdog")
        return self


class Misalignment(_Section):
    """True mechanical errors of the simulated mount (TPOINT-style terms, arc-seconds)."""

    ia_arcsec: TermArcsec = 0.0   # azimuth index (encoder zero) offset
    ie_arcsec: TermArcsec = 0.0   # elevation index offset
    ca_arcsec: TermArcsec = 0.0   # collimation (boresight not perp. to el axis)
    npae_arcsec: TermArcsec = 0.0  # elevation axis not perp. to azimuth axis
    an_arcsec: TermArcsec = 0.0   # azimuth axis tilt towards north
    aw_arcsec: TermArcsec = 0.0   # azimuth axis tilt towards west
    tf_arcsec: TermArcsec = 0.0   # elevation flexure (cos el)


class SimAxisPhysics(_Section):
    """One simulated axis's structure, drive and loads (see ``simulator/physics.py``).

    Torques are given as accelerations of the whole axis (torque / total axis
    inertia, deg/s^2), so no masses are needed.  The defaults are a 10-20 m,
    50-250 t payload on a telescope-class mount (see ``config/*.toml`` for each
    preset's reasons).
    """

    #: Lowest locked-rotor structural mode between motor (encoder) and load (magnet), Hz.
    mode_hz: Annotated[float, Field(gt=0.1, le=50, allow_inf_nan=False)] = 3.0
    #: Its damping ratio (welded steel structures: 1-3 %).
    mode_damping: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = 0.02
    #: Motor-side share of the axis inertia (motors and gears reflected through the ratio).
    motor_inertia_fraction: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = 0.3
    #: Bandwidth of the drive's own velocity loop, Hz (about half the structural mode).
    velocity_loop_hz: Annotated[float, Field(gt=0, le=20, allow_inf_nan=False)] = 1.5
    #: Peak motor torque as an axis acceleration, deg/s^2 (the drive's current limit).
    #: Beyond it (a storm on an unstowed mount) the axis runs away and trips on overspeed.
    #: The simulator never uses less than twice the drive's acceleration limit.
    torque_limit_deg_s2: Positive = 1.0
    #: Gravity unbalance torque at el = 0 as an axis acceleration, deg/s^2 (elevation only;
    #: positive = nose-heavy, pulling the magnet's front end down; scales with cos(el)).
    unbalance_deg_s2: Finite = 0.0
    #: Wind torque per (m/s)^2 as an axis acceleration, deg/s^2 per (m/s)^2.
    wind_deg_s2_per_m2_s2: NonNegative = 1.0e-3
    #: Amplitude of the slow thermal drift of the encoder zero, arc-seconds.
    encoder_drift_arcsec: NonNegative = 0.5
    #: Its period, seconds (the daily temperature cycle).
    encoder_drift_period_s: Positive = 86400.0


class Simulator(_Section):
    """The simulated mount's physics and disturbances."""

    encoder_resolution_arcsec: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)] = 0.5
    #: Gear backlash: the load side sits this far (full band) from the motor, on the flank
    #: that the load torque (or the motion) presses it against, arc-seconds.  Large mounts
    #: drive each axis with torque-biased motor pairs: only a residual remains.
    backlash_arcsec: Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False)] = 0.5
    friction_deg_s2: Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)] = 0.001
    #: Mean wind at the magnet and its gusts (the peak 3-s excursion over the mean; the
    #: turbulence's standard deviation is a third of it: 20 % intensity at 5 m/s), m/s.
    wind_mean_m_s: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 5.0
    wind_gust_m_s: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 3.0
    #: Kaimal integral length of the turbulence, m (IEC 61400-1: 8.1 x 0.7 x height 10 m).
    wind_length_m: Annotated[float, Field(gt=1, le=2000, allow_inf_nan=False)] = 56.7
    #: A wind climate for runs of days: the mean wind varies hour by hour, Weibull
    #: distributed with this shape (2 = Rayleigh, typical inland) and mean ``wind_mean_m_s``,
    #: the gusts in proportion (the same turbulence intensity).  Unset: a steady mean.
    wind_weibull_k: Annotated[float, Field(ge=1, le=10, allow_inf_nan=False)] | None = None
    #: Hour-to-hour correlation of that mean wind (0: independent hours; 0.9: weather that
    #: lasts about a day).
    wind_hour_correlation: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.9
    wind_seed: int = 1
    #: Wheel-on-track azimuth unevenness: peak-to-peak tilt over a turn, arc-seconds.
    track_unevenness_arcsec: NonNegative = 2.0
    azimuth: SimAxisPhysics = Field(default_factory=SimAxisPhysics)
    elevation: SimAxisPhysics = Field(default_factory=lambda: SimAxisPhysics(
        unbalance_deg_s2=0.02, wind_deg_s2_per_m2_s2=0.7e-3))
    #: Hard limit switches sit this far beyond the drive's soft limits (degrees).
    hard_limit_margin_deg: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)] = 1.0
    #: Soft limits sit this far beyond the controller's envelope (degrees).
    soft_limit_margin_deg: Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)] = 0.5
    #: Hardware speed/acceleration headroom over the controller's limits (ratio >= 1).
    drive_headroom: Annotated[float, Field(ge=1.0, le=5.0)] = 1.2
    misalignment: Misalignment = Field(default_factory=Misalignment)


class Api(_Section):
    """HTTP API and ASCOM Alpaca interface of the daemon."""

    #: Loopback unless ``allow_remote`` (``""``, ``"0"``, ``"0.0.0.0"`` are all interfaces).
    host: str = "127.0.0.1"
    port: Port = 8470
    allow_remote: bool = False
    token_file: str = "~/.config/helio-tracker/token"
    alpaca_enabled: bool = False
    alpaca_writes: bool = True
    alpaca_allow_remote: bool = False
    #: Answer Alpaca discovery ('alpacadiscovery1' on UDP) when Alpaca is enabled (opt-in);
    #: loopback only unless ``alpaca_allow_remote``.
    alpaca_discovery: bool = False
    alpaca_discovery_port: Annotated[int, Field(ge=1, le=65535)] = 32227
    #: Host header names accepted besides the bind host, localhost, 127.0.0.1 and [::1]
    #: (DNS rebinding protection): the names remote clients use to reach this daemon.
    allowed_hosts: list[str] = Field(default_factory=list)
    #: Requests per second and burst per client address (token bucket; 429 beyond).
    rate_limit_per_s: Annotated[float, Field(gt=0, le=100_000, allow_inf_nan=False)] = 200.0
    rate_limit_burst: Annotated[int, Field(ge=1, le=1_000_000)] = 400
    #: Requests of one client address in progress at once (429 beyond).
    max_inflight_per_source: Annotated[int, Field(ge=1, le=10_000)] = 16
    #: Largest request body accepted (bytes): Alpaca forms and API JSON are a few hundred bytes.
    max_body_bytes: Annotated[int, Field(ge=256, le=1_048_576)] = 4096
    #: Seconds a client may take to send a request's headers, and its body (slowloris).
    header_timeout_s: Annotated[float, Field(gt=0, le=300, allow_inf_nan=False)] = 10.0
    body_timeout_s: Annotated[float, Field(gt=0, le=300, allow_inf_nan=False)] = 10.0
    #: Simultaneous connections + requests served; beyond, uvicorn answers 503.
    max_connections: Annotated[int, Field(ge=4, le=100_000)] = 256

    @model_validator(mode="after")
    def _loopback_unless_allowed(self) -> Api:
        if not self.allow_remote and not is_loopback(self.host):
            raise ValueError(f"api.host = {self.host!r} is not a loopback address (127.0.0.1, "
                             "::1, localhost): the API would be reachable from other machines; "
                             "set api.allow_remote = true to allow that")
        return self


class Facility(_Section):
    """Facility interfaces: the Tango device server and the OPC UA server (docs/facility.md).

    Both run as their own processes and are clients of the daemon's HTTP API (``api_url``,
    empty = the ``[api]`` section's address) with its token file.  They listen on loopback
    only unless ``allow_remote`` is true.
    """

    api_url: str = ""
    poll_hz: Annotated[float, Field(gt=0.0, le=20.0)] = 10.0
    allow_remote: bool = False
    tango_instance: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "helio"
    tango_device: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")] = (
        "helio/tracker/1")
    tango_host: str = "127.0.0.1"
    tango_port: Annotated[int, Field(ge=0, le=65535)] = 0
    opcua_host: str = "127.0.0.1"
    opcua_port: Annotated[int, Field(ge=0, le=65535)] = 4840
    opcua_security: Literal["none", "basic256sha256"] = "none"
    opcua_certificate: str = ""
    opcua_private_key: str = ""
    opcua_users_file: str = ""

    @model_validator(mode="after")
    def _checks(self) -> Facility:

        for key in ("tango_host", "opcua_host"):
            host = getattr(self, key)
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback and not self.allow_remote:
                raise ValueError(f"facility.{key} = {host!r} is not a loopback address: set "
                                 f"facility.allow_remote = true to serve other machines")
        if self.opcua_security == "basic256sha256" and not (
                self.opcua_certificate and self.opcua_private_key):
            raise ValueError("facility.opcua_security = 'basic256sha256' needs "
                             "facility.opcua_certificate and facility.opcua_private_key")
        return self


class Store(_Section):
    """Tracking log (SQLite).  A relative path is relative to the working directory."""

    path: str = "tracker.sqlite"
    #: A log failing ``PRAGMA quick_check`` at start: move it aside and start a new one, or
    #: refuse to start.
    on_corrupt: Literal["move_aside", "refuse"] = "move_aside"
    #: Where rows unwritable at stop (disk full) are kept (then the system temporary folder);
    #: empty: the system temporary folder only.
    spill_dir: str = ""


class Pointing(_Section):
    """Pointing model file (TOML, from ``tracker calibrate fit``); empty = identity."""

    model_file: str = ""


class Forecast(_Section):
    """Year forecasts (``tracker forecast``): the site's wind climatology, fault rates, and the
    coarser control period a forecast day runs at.

    Each simulated day's mean wind is drawn from a Weibull distribution of shape
    ``wind_weibull_k`` whose mean is that month's ``wind_monthly_mean_m_s`` (January first);
    the simulated gusts' standard deviation (the simulator's
    Ornstein-Uhlenbeck wind) is ``gust_ratio`` times the day's mean.  Drive faults come as a
    Poisson process of ``drive_faults_per_day``; each keeps the mount down for an exponential
    time of mean ``fault_downtime_mean_s`` until an operator resets it.  The defaults are
    placeholders for a northern German site, not measurements.
    """

    wind_monthly_mean_m_s: Annotated[
        list[Annotated[float, Field(ge=0, le=50, allow_inf_nan=False)]],
        Field(min_length=12, max_length=12)] = Field(default_factory=lambda: [
            5.2, 5.0, 4.8, 4.2, 3.9, 3.7, 3.6, 3.5, 3.9, 4.4, 4.8, 5.1])
    wind_weibull_k: Annotated[float, Field(ge=1, le=5, allow_inf_nan=False)] = 2.0
    gust_ratio: Annotated[float, Field(ge=0, le=3, allow_inf_nan=False)] = 0.2
    drive_faults_per_day: Annotated[float, Field(ge=0, le=24, allow_inf_nan=False)] = 0.05
    fault_downtime_mean_s: Annotated[float, Field(ge=0, le=86400, allow_inf_nan=False)] = 1800.0
    #: Control rate of a forecast day (Hz): coarser than the daemon's for speed (2 Hz tracks
    #: the Sun within the on-Sun tolerance; the exposure it gives is the forecast's, not the
    #: daemon's).
    control_rate_hz: Annotated[float, Field(ge=1, le=100, allow_inf_nan=False)] = 2.0
    #: Longest simulated step while parked with nothing due (s).
    idle_step_s: Annotated[float, Field(ge=0.1, le=8, allow_inf_nan=False)] = 5.0


class Settings(_Section):
    """A whole installation's configuration."""

    site: Site
    envelope: Envelope
    axes: Axes
    positions: Positions
    tracking: Tracking = Field(default_factory=Tracking)
    weather: Weather = Field(default_factory=Weather)
    interlock: Interlock = Field(default_factory=Interlock)
    clock: ClockCheck = Field(default_factory=ClockCheck)
    drives: Drives = Field(default_factory=Drives)
    simulator: Simulator = Field(default_factory=Simulator)
    api: Api = Field(default_factory=Api)
    facility: Facility = Field(default_factory=Facility)
    store: Store = Field(default_factory=Store)
    pointing: Pointing = Field(default_factory=Pointing)
    #: The magnet's bores (``[[bores]]``); none listed: one bore ``axis`` on the mechanical
    #: axis with the tracking tolerance and efficiency 1 (see ``bore_list``).
    bores: list[Bore] = Field(default_factory=list, max_length=64)
    forecast: Forecast = Field(default_factory=Forecast)
    #: Folder of the file this was loaded from (for relative paths); not a TOML key.
    source_path: str = ""

    @model_validator(mode="after")
    def _watchdog_spans_ticks(self) -> Settings:
        period_s = 1.0 / self.tracking.control_rate_hz
        if self.drives.watchdog_s < 2.0 * period_s:
            raise ValueError(f"drives.watchdog_s ({self.drives.watchdog_s}) must be at least two "
                             f"control periods (2 / tracking.control_rate_hz = {2 * period_s:g} s)"
                             ": the heartbeat comes once a tick")
        return self

    @model_validator(mode="after")
    def _positions_inside(self) -> Settings:
        env = self.envelope
        for label, pos in (("park", self.positions.park), ("stow", self.positions.stow)):
            if not (env.azimuth_min_deg <= pos.azimuth_deg <= env.azimuth_max_deg
                    and env.elevation_min_deg <= pos.elevation_deg <= env.elevation_max_deg):
                raise ValueError(
                    f"positions.{label} ({pos.azimuth_deg}, {pos.elevation_deg}) lies outside the "
                    f"envelope azimuth {env.azimuth_min_deg}..{env.azimuth_max_deg}, "
                    f"elevation {env.elevation_min_deg}..{env.elevation_max_deg}")
        return self

    @field_validator("bores")
    @classmethod
    def _bores_unique(cls, bores: list[Bore]) -> list[Bore]:
        names = [b.name for b in bores]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate name(s) {', '.join(dup)}: each bore needs its own name")
        return bores

    @model_validator(mode="after")
    def _reference_bore_known(self) -> Settings:
        ref = self.tracking.reference_bore
        if not ref:
            return self
        names = [b.name for b in self.bore_list]
        if ref not in names:
            raise ValueError(f"tracking.reference_bore = {ref!r} is not a bore; the bores are: "
                             f"{', '.join(names)}")
        b = self.bore_list[names.index(ref)]
        offset = (b.offset_x_arcsec ** 2 + b.offset_y_arcsec ** 2) ** 0.5
        limit = 0.5 * self.interlock.bound_deg * 3600.0
        if self.interlock.enabled and offset > limit:
            raise ValueError(f"tracking.reference_bore = {ref!r}: its offset ({offset:.0f} "
                             f"arcsec) exceeds half the Sun interlock's bound ({limit:.0f} "
                             "arcsec): the interlock would refuse the aim point")
        return self

    @property
    def bore_list(self) -> list[Bore]:
        """The configured bores, or one bore ``axis`` on the mechanical axis."""
        if self.bores:
            return list(self.bores)
        return [Bore(name="axis", on_sun_tolerance_arcsec=self.tracking.on_sun_tolerance_arcsec)]

    def relative_path(self, name: str) -> Path:
        """``name`` resolved against the folder of the config file (``~`` expanded)."""
        p = Path(name).expanduser()
        if p.is_absolute() or not self.source_path:
            return p
        return Path(self.source_path).parent / p

    @property
    def control_period_s(self) -> float:
        return 1.0 / self.tracking.control_rate_hz


def _format_error(path: str, err: dict) -> str:
    key = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
    msg = err.get("msg", "invalid")
    if "input" in err and err.get("type") not in ("missing",):
        value = err["input"]
        if isinstance(value, dict):
            value = "{...}"
        return f"{path}: {key} = {value!r}: {msg}"
    return f"{path}: {key}: {msg}"


def parse(data: dict, path: str = "<config>") -> Settings:
    """Validate a config mapping; raise ``ConfigError`` naming file, key, value and rule."""
    try:
        settings = Settings.model_validate({**data, "source_path": str(path)})
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        lines = [_format_error(str(path), e) for e in errors]
        first = errors[0]
        raise ConfigError(
            "invalid configuration:\n  " + "\n  ".join(lines),
            path=str(path),
            key=".".join(str(p) for p in first.get("loc", ())),
            value=first.get("input"),
            allowed=first.get("msg"),
        ) from None
    if settings.api.allow_remote and not is_loopback(settings.api.host):
        log.warning("%s: api.host = %r with api.allow_remote = true: the API listens beyond "
                    "this machine (every interface for '', '0', '0.0.0.0', '::'); only the "
                    "token protects the mount", path, settings.api.host)
    if settings.drives.kind == "modbus":
        map_path = settings.relative_path(settings.drives.modbus.register_map)
        if not map_path.is_file():
            raise ConfigError(
                f"{path}: drives.modbus.register_map = {settings.drives.modbus.register_map!r}: "
                f"file {map_path} does not exist",
                path=str(path), key="drives.modbus.register_map",
                value=settings.drives.modbus.register_map, allowed="an existing TOML file")
    if settings.drives.kind == "opcua":
        ou = settings.drives.opcua
        for key in ("node_map", "certificate", "private_key", "server_certificate",
                    "password_file"):
            name = getattr(ou, key)
            if name and not settings.relative_path(name).is_file():
                raise ConfigError(
                    f"{path}: drives.opcua.{key} = {name!r}: file "
                    f"{settings.relative_path(name)} does not exist",
                    path=str(path), key=f"drives.opcua.{key}", value=name,
                    allowed="an existing file")
    return settings


def load(path: str | Path | None = None) -> Settings:
    """Read and validate a TOML config file (default: ``config/sim.toml``)."""
    p = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc.strerror}", path=str(p)) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}", path=str(p)) from None
    return parse(data, str(p))

