"""TOML configuration -> validated, typed settings.

One file describes one installation: the site, the mount's envelope, the axes'
speed limits, the drives, the tracking parameters, the API and the simulator.
Every section has defaults except ``site`` and ``envelope``.  Unknown keys are
errors (a typo must never silently fall back to a default).

Angles are degrees, rates deg/s, accelerations deg/s^2, times seconds, unless
the name says otherwise (``_arcsec``, ``_m_s``...).  Axis positions are in the
mount's own frame: azimuth axis from north through east, possibly beyond
[0, 360) on a cable-wrapped mount; elevation axis above the horizon positive.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tracker.errors import ConfigError

#: The configuration used when none is given: BabyIAXO envelope, simulated mount.
CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
DEFAULT_CONFIG = CONFIG_DIR / "sim.toml"

Finite = Annotated[float, Field(allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    azimuth_min_deg: Finite
    azimuth_max_deg: Finite
    elevation_min_deg: Finite
    elevation_max_deg: Finite


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


class AxisLimits(_Section):
    """Speed and acceleration limits of one axis, as the controller may command them."""

    max_speed_deg_s: Positive
    max_accel_deg_s2: Positive


class Axes(_Section):
    azimuth: AxisLimits
    elevation: AxisLimits


class AxisPosition(_Section):
    """A named mount position in axis coordinates (degrees)."""

    azimuth_deg: Finite
    elevation_deg: Finite


class Positions(_Section):
    park: AxisPosition
    stow: AxisPosition


class Tracking(_Section):
    """Tracking and planning parameters."""

    control_rate_hz: Annotated[float, Field(gt=0, le=100)] = 10.0
    log_rate_hz: Annotated[float, Field(ge=1, le=100)] = 1.0
    on_sun_tolerance_arcsec: Positive = 36.0
    following_error_limit_arcsec: Positive = 600.0
    following_error_grace_s: NonNegative = 5.0
    position_gain_per_s: Annotated[float, Field(gt=0, le=20)] = 1.0
    min_window_s: NonNegative = 600.0
    preposition_margin_s: NonNegative = 120.0
    settle_s: NonNegative = 30.0
    auto_track: bool = False


class Weather(_Section):
    """Wind stow: stow above ``wind_stow_m_s``; resume when below ``wind_resume_m_s`` for ``calm_s``."""

    wind_stow_m_s: Positive = 15.0
    wind_resume_m_s: Positive = 10.0
    calm_s: NonNegative = 600.0
    auto_stow: bool = True
    auto_resume: bool = True

    @model_validator(mode="after")
    def _hysteresis(self) -> Weather:
        if self.wind_resume_m_s > self.wind_stow_m_s:
            raise ValueError("wind_resume_m_s must not exceed wind_stow_m_s")
        return self


class ModbusDrives(_Section):
    """Modbus connection to the two axis drives (TCP or RTU)."""

    transport: Literal["tcp", "rtu"] = "tcp"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 5020
    serial_port: str = "/dev/ttyUSB0"
    baudrate: Annotated[int, Field(gt=0)] = 115200
    timeout_s: Positive = 0.25
    azimuth_device_id: Annotated[int, Field(ge=1, le=247)] = 1
    elevation_device_id: Annotated[int, Field(ge=1, le=247)] = 2
    #: Register map file, relative to the config file's folder.
    register_map: str = "modbus_map.toml"


class SerialDrives(_Section):
    """Serial (ASCII line protocol) motion controller for both axes."""

    port: str = "/dev/ttyUSB0"
    baudrate: Annotated[int, Field(gt=0)] = 115200
    timeout_s: Positive = 0.25


class Drives(_Section):
    """Which drives to use: the in-process simulator, Modbus drives or a serial controller."""

    kind: Literal["sim", "modbus", "serial"] = "sim"
    #: Drive-side watchdog: without a heartbeat for this long the drives ramp to zero.
    watchdog_s: Positive = 1.0
    modbus: ModbusDrives = Field(default_factory=ModbusDrives)
    serial: SerialDrives = Field(default_factory=SerialDrives)


class Misalignment(_Section):
    """True mechanical errors of the simulated mount (TPOINT-style terms, arc-seconds)."""

    ia_arcsec: Finite = 0.0   # azimuth index (encoder zero) offset
    ie_arcsec: Finite = 0.0   # elevation index offset
    ca_arcsec: Finite = 0.0   # collimation (boresight not perpendicular to elevation axis)
    npae_arcsec: Finite = 0.0  # elevation axis not perpendicular to azimuth axis
    an_arcsec: Finite = 0.0   # azimuth axis tilt towards north
    aw_arcsec: Finite = 0.0   # azimuth axis tilt towards west
    tf_arcsec: Finite = 0.0   # elevation flexure (cos el)


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

    encoder_resolution_arcsec: Positive = 0.5
    #: Gear backlash: the load side sits this far (full band) from the motor, on the flank
    #: that the load torque (or the motion) presses it against, arc-seconds.  Large mounts
    #: drive each axis with torque-biased motor pairs: only a residual remains.
    backlash_arcsec: NonNegative = 0.5
    friction_deg_s2: NonNegative = 0.001
    #: Mean wind at the magnet and its gusts (the peak 3-s excursion over the mean; the
    #: turbulence's standard deviation is a third of it: 20 % intensity at 5 m/s), m/s.
    wind_mean_m_s: NonNegative = 5.0
    wind_gust_m_s: NonNegative = 3.0
    #: Kaimal integral length of the turbulence, m (IEC 61400-1: 8.1 x 0.7 x height 10 m).
    wind_length_m: Annotated[float, Field(gt=1, le=2000, allow_inf_nan=False)] = 56.7
    wind_seed: int = 1
    #: Wheel-on-track azimuth unevenness: peak-to-peak tilt over a turn, arc-seconds.
    track_unevenness_arcsec: NonNegative = 2.0
    azimuth: SimAxisPhysics = Field(default_factory=SimAxisPhysics)
    elevation: SimAxisPhysics = Field(default_factory=lambda: SimAxisPhysics(
        unbalance_deg_s2=0.02, wind_deg_s2_per_m2_s2=0.7e-3))
    #: Hard limit switches sit this far beyond the drive's soft limits (degrees).
    hard_limit_margin_deg: Positive = 1.0
    #: Soft limits sit this far beyond the controller's envelope (degrees).
    soft_limit_margin_deg: NonNegative = 0.5
    #: Hardware speed/acceleration headroom over the controller's limits (ratio >= 1).
    drive_headroom: Annotated[float, Field(ge=1.0, le=5.0)] = 1.2
    misalignment: Misalignment = Field(default_factory=Misalignment)


class Api(_Section):
    """HTTP API and ASCOM Alpaca interface of the daemon."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8470
    token_file: str = "~/.config/helio-tracker/token"
    alpaca_enabled: bool = False
    alpaca_writes: bool = True
    alpaca_allow_remote: bool = False


class Store(_Section):
    """Tracking log (SQLite).  A relative path is relative to the working directory."""

    path: str = "tracker.sqlite"


class Pointing(_Section):
    """Pointing model file (TOML, from ``tracker calibrate fit``); empty = identity."""

    model_file: str = ""


class Settings(_Section):
    """A whole installation's configuration."""

    site: Site
    envelope: Envelope
    axes: Axes
    positions: Positions
    tracking: Tracking = Field(default_factory=Tracking)
    weather: Weather = Field(default_factory=Weather)
    drives: Drives = Field(default_factory=Drives)
    simulator: Simulator = Field(default_factory=Simulator)
    api: Api = Field(default_factory=Api)
    store: Store = Field(default_factory=Store)
    pointing: Pointing = Field(default_factory=Pointing)
    #: Folder of the file this was loaded from (for relative paths); not a TOML key.
    source_path: str = ""

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
    if settings.drives.kind == "modbus":
        map_path = settings.relative_path(settings.drives.modbus.register_map)
        if not map_path.is_file():
            raise ConfigError(
                f"{path}: drives.modbus.register_map = {settings.drives.modbus.register_map!r}: "
                f"file {map_path} does not exist",
                path=str(path), key="drives.modbus.register_map",
                value=settings.drives.modbus.register_map, allowed="an existing TOML file")
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

