"""The facility information model shared by the Tango device and the OPC UA server.

Both servers are clients of the daemon's HTTP API (docs/facility.md): they read the
status snapshot (``GET /api/v1/status``) and send commands with the bearer token, so
the API's validation, refusals and audit apply to them unchanged.  This module says,
once, what they publish: each ``Quantity`` names a Tango attribute / OPC UA variable,
its type, unit (and the UNECE code OPC UA's ``EngineeringUnits`` carry), display
format, alarm/warning limits and how it is read from the status JSON.  ``COMMANDS``
maps the facility command names to API calls.

Frames and units: azimuths are degrees from north through east, elevations degrees
up positive (geometric, no refraction); ``Axis*`` are axis (encoder) positions,
which may wrap beyond 0..360; ``Sun*`` and ``Mount*`` are sky directions.  Times are
ISO 8601 UTC strings.  A value the status does not have (no current window, no
pointing) is ``None``: the servers publish it with an invalid quality / bad status.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tracker.errors import ApiError

log = logging.getLogger(__name__)

#: Status keys that change discretely (state, faults, windows...): the daemon's event stream
#: pushes them within a tick of the engine's change (the rest at a few Hz), and a facility
#: server polls at once when one of them changes.
DISCRETE_KEYS = frozenset({"state", "auto_tracking", "task", "on_sun", "faults",
                           "fault_pending", "slewing", "at_park", "at_home", "wind_stowed",
                           "current_window", "next_window", "boresight", "log", "target"})


def follow_discrete_changes(client: Any, stop: threading.Event,
                            on_change: Callable[[], None]) -> None:
    """Call ``on_change`` whenever the daemon's event stream (``client.watch``) shows a
    discrete change (a key of ``DISCRETE_KEYS``: state, faults, ...), until ``stop`` is set;
    after a dropped stream, again 1 s later.  Blocks: run it in a thread of its own.  The
    facility servers poll at once on it, so their change events follow the engine within a
    tick, not a poll period; without the stream the periodic poll still runs."""
    def on_patch(patch: dict) -> None:
        if not DISCRETE_KEYS.isdisjoint(patch):
            on_change()

    while not stop.is_set():
        try:
            client.watch(on_patch, stop)
        except Exception as exc:
            log.debug("event stream: %s", exc)
            stop.wait(1.0)


#: OPC UA namespace of UNECE Rec. 20 unit codes (OPC UA Part 8, EUInformation).
UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"


def unece_unit_id(code: str) -> int:
    """OPC UA ``EUInformation.UnitId`` of a UNECE Rec. 20 common code (Part 8, 5.6.3).

    The code's ASCII characters, most significant first, in the low bytes of an Int32:
    ``"DD"`` (degree) -> 17476.
    """
    if not 1 <= len(code) <= 3 or not code.isascii() or not code.isalnum():
        raise ValueError(f"not a UNECE common code: {code!r}")
    value = 0
    for ch in code.upper():
        value = (value << 8) | ord(ch)
    return value


@dataclass(frozen=True)
class Unit:
    """A display symbol and its UNECE common code (for OPC UA EngineeringUnits)."""

    symbol: str
    unece: str
    description: str


DEG = Unit("deg", "DD", "degree [unit of angle]")
ARCSEC = Unit("arcsec", "D62", "second [unit of angle]")
M_S = Unit("m/s", "MTS", "metre per second")
SECOND = Unit("s", "SEC", "second [unit of time]")


@dataclass(frozen=True)
class Quantity:
    """One published value: Tango attribute and OPC UA variable ``name``."""

    name: str
    kind: type  # float, bool or str
    get: Callable[[dict], Any]
    description: str
    unit: Unit | None = None
    fmt: str = "%s"
    min_alarm: float | None = None
    max_alarm: float | None = None
    min_warning: float | None = None
    max_warning: float | None = None

    def value(self, status: dict) -> Any:
        """This quantity from a status snapshot, typed; None when the status has no value."""
        try:
            raw = self.get(status)
        except (KeyError, TypeError, IndexError):
            return None
        if raw is None:
            return None
        if self.kind is float:
            x = float(raw)
            return x if math.isfinite(x) else None
        if self.kind is bool:
            return bool(raw)
        return str(raw)

    def alarm_level(self, value: Any) -> str:
        """"alarm", "warning" or "ok" for a value against this quantity's limits."""
        if not isinstance(value, float):
            return "ok"
        if ((self.min_alarm is not None and value < self.min_alarm)
                or (self.max_alarm is not None and value > self.max_alarm)):
            return "alarm"
        if ((self.min_warning is not None and value < self.min_warning)
                or (self.max_warning is not None and value > self.max_warning)):
            return "warning"
        return "ok"


# ----------------------------------------------------------------------------- derived values
#: Engine state -> Tango DevState name (docs/facility.md).  ``manual`` is MOVING while slewing.
TANGO_STATES: dict[str, str] = {
    "off": "DISABLE",
    "idle": "STANDBY",
    "slewing": "MOVING",
    "waiting": "ON",
    "tracking": "ON",
    "parking": "MOVING",
    "parked": "STANDBY",
    "manual": "STANDBY",
    "stowing": "MOVING",
    "stowed": "STANDBY",
    "fault": "FAULT",
    "estop": "FAULT",
}


def clock_health(status: dict) -> str:
    """"ok", "warning" or "alarm" for the time scales the ephemeris depends on.

    alarm: the leap-second table has expired (UTC -> TAI may be wrong by a second);
    warning: the IERS table is past its last date (UT1 extrapolated) or UT1's
    uncertainty exceeds 0.1 s (about 1.5 arcsec of Sun azimuth).
    """
    ages = status.get("data_ages") or {}
    if ages.get("leap_seconds_expired"):
        return "alarm"
    days_left = ages.get("iers_days_left")
    ut1 = ages.get("ut1_uncertainty_s")
    if (isinstance(days_left, int | float) and days_left < 0) or (
            isinstance(ut1, int | float) and ut1 > 0.1):
        return "warning"
    return "ok"


def device_state(status: dict | None) -> str:
    """The Tango DevState name for a status snapshot (None: daemon unreachable -> UNKNOWN).

    ALARM replaces ON/STANDBY/MOVING while the mount is stowed for wind, a fault is
    pending acknowledgement, or the clock health is "alarm".
    """
    if not status:
        return "UNKNOWN"
    state = TANGO_STATES.get(str(status.get("state")), "UNKNOWN")
    if state == "STANDBY" and status.get("state") == "manual" and status.get("slewing"):
        state = "MOVING"
    if state in ("ON", "STANDBY", "MOVING") and (
            status.get("wind_stowed") or status.get("fault_pending")
            or clock_health(status) == "alarm"):
        state = "ALARM"
    return state


def status_text(status: dict | None, error: str | None = None) -> str:
    """One line for Tango's Status attribute."""
    if not status:
        return f"daemon unreachable: {error}" if error else "no status from the daemon yet"
    parts = [f"engine state {status.get('state')}"]
    if status.get("on_sun"):
        parts.append("on the Sun")
    if status.get("auto_tracking") is False:
        parts.append("automatic tracking off")
    if status.get("wind_stowed"):
        parts.append("stowed for wind")
    for fault in status.get("faults") or []:
        parts.append(f"fault {fault.get('source')}: {fault.get('condition')}"
                     + (f" ({fault['text']})" if fault.get("text") else ""))
    if error:
        parts.append(f"last read failed: {error}")
    return "; ".join(parts)


def _axis(name: str) -> Callable[[dict], Any]:
    return lambda s: s["axes"][name]["position_deg"]


def _window(key: str) -> Callable[[dict], Any]:
    return lambda s: (s.get("current_window") or {}).get(key)


def build_model(settings: Any) -> list[Quantity]:
    """The published quantities; alarm limits come from the installation's config."""
    env = settings.envelope
    trk = settings.tracking
    wx = settings.weather
    return [
        Quantity("TrackerState", str, lambda s: s["state"],
                 "engine state (off, idle, slewing, waiting, tracking, parking, parked, manual, "
                 "stowing, stowed, fault, estop)"),
        Quantity("SunAzimuth", float, lambda s: s["sun"]["azimuth_deg"],
                 "Sun centre azimuth, geometric, degrees from north through east", DEG, "%9.4f"),
        Quantity("SunElevation", float, lambda s: s["sun"]["elevation_deg"],
                 "Sun centre elevation, geometric (no refraction), degrees, up positive",
                 DEG, "%8.4f"),
        Quantity("MountAzimuth", float, lambda s: s["pointing"]["az_deg"],
                 "sky azimuth the boresight points at, degrees from north through east",
                 DEG, "%9.4f"),
        Quantity("MountElevation", float, lambda s: s["pointing"]["el_deg"],
                 "sky elevation the boresight points at, degrees, up positive", DEG, "%8.4f"),
        Quantity("AxisAzimuth", float, _axis("azimuth"),
                 "azimuth axis position (encoder frame, may wrap beyond 0..360), degrees",
                 DEG, "%9.4f", min_alarm=env.azimuth_min_deg, max_alarm=env.azimuth_max_deg),
        Quantity("AxisElevation", float, _axis("elevation"),
                 "elevation axis position, degrees, up positive", DEG, "%8.4f",
                 min_alarm=env.elevation_min_deg, max_alarm=env.elevation_max_deg),
        Quantity("PointingError", float, lambda s: s["pointing_error_arcsec"],
                 "angle between where the boresight points and its target, arcseconds",
                 ARCSEC, "%8.1f", max_warning=trk.on_sun_tolerance_arcsec,
                 max_alarm=trk.following_error_limit_arcsec),
        Quantity("OnSun", bool, lambda s: s["on_sun"],
                 "tracking the Sun within the on-Sun tolerance"),
        Quantity("WindSpeed", float, lambda s: s["wind_m_s"],
                 "wind speed, metres per second (stow above the alarm limit)", M_S, "%5.1f",
                 max_warning=wx.wind_resume_m_s, max_alarm=wx.wind_stow_m_s),
        Quantity("ClockHealth", str, clock_health,
                 "time scales behind the ephemeris: ok, warning (IERS table past its end or "
                 "UT1 uncertain > 0.1 s), alarm (leap-second table expired)"),
        Quantity("UT1Uncertainty", float, lambda s: s["data_ages"]["ut1_uncertainty_s"],
                 "uncertainty of UT1-UTC now, seconds", SECOND, "%6.3f", max_warning=0.1),
        Quantity("WindowStart", str, _window("start_utc"),
                 "start of the current tracking window, ISO 8601 UTC (none outside a window)"),
        Quantity("WindowEnd", str, _window("end_utc"),
                 "end of the current tracking window, ISO 8601 UTC (none outside a window)"),
        Quantity("AutoTracking", bool, lambda s: s["auto_tracking"],
                 "automatic Sun tracking enabled (TrackStart / TrackStop)"),
        Quantity("Slewing", bool, lambda s: s["slewing"], "the mount is slewing"),
        Quantity("AtPark", bool, lambda s: s["at_park"], "parked: nothing moves until Unpark"),
        Quantity("Faults", str, lambda s: "; ".join(
            f"{f.get('source')}: {f.get('condition')}" for f in s["faults"]),
                 "active faults (source: condition), empty when none"),
    ]


# ----------------------------------------------------------------------------- commands
@dataclass(frozen=True)
class Command:
    """A facility command: its API call and what it does."""

    name: str
    description: str
    takes_az_el: bool = False


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("TrackStart", "start automatic Sun tracking (refused while parked or faulted)"),
    Command("TrackStop", "stop automatic Sun tracking (the axes hold)"),
    Command("Park", "move to the park position"),
    Command("Unpark", "leave the park position and hold"),
    Command("Stow", "move to the stow (survival) position"),
    Command("Stop", "stop both axes with a controlled ramp and hold"),
    Command("Reset", "acknowledge faults and reset the drives (axes stay stopped)"),
    Command("Goto", "slew the boresight to a sky direction [azimuth_deg, elevation_deg]",
            takes_az_el=True),
)}


class CommandRefused(Exception):
    """The daemon (or the argument check) refused a facility command; ``str`` says why."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def az_el_argument(value: Any) -> tuple[float, float]:
    """``[azimuth_deg, elevation_deg]``: exactly two finite numbers, else ``CommandRefused``."""
    try:
        items = list(value)
    except TypeError:
        raise CommandRefused("Goto needs [azimuth_deg, elevation_deg]: two numbers") from None
    if len(items) != 2:
        raise CommandRefused(f"Goto needs [azimuth_deg, elevation_deg]: two numbers, "
                             f"not {len(items)}")
    out = []
    for label, x in zip(("azimuth_deg", "elevation_deg"), items, strict=True):
        if isinstance(x, bool) or not isinstance(x, int | float):
            raise CommandRefused(f"Goto {label} must be a number, not {type(x).__name__}")
        if not math.isfinite(float(x)):
            raise CommandRefused(f"Goto {label} must be finite, not {x}")
        out.append(float(x))
    return out[0], out[1]


def execute(client: Any, name: str, argument: Any = None, *, source: str) -> dict:
    """Run facility command ``name`` through the API client as ``source``; the API's result.

    Raises ``CommandRefused`` with the daemon's reason (envelope, state, token...) or the
    argument check's; nothing is sent for an unknown command or a bad argument.  What a
    state allows (parked: nothing moves until Unpark) is the engine's motion-rules table,
    the one every interface goes through.
    """
    cmd = COMMANDS.get(name)
    if cmd is None:
        raise CommandRefused(f"unknown command {name!r}; known: {', '.join(COMMANDS)}")
    if cmd.takes_az_el:
        az_deg, el_deg = az_el_argument(argument)
    elif argument is not None:
        raise CommandRefused(f"{name} takes no argument")
    try:
        if name == "TrackStart":
            return client.track(True, source=source)
        if name == "TrackStop":
            return client.track(False, source=source)
        if name == "Goto":
            return client.goto(az_deg, el_deg, source=source)
        return client.command(name.lower(), source=source)
    except ApiError as exc:
        raise CommandRefused(str(exc), status=getattr(exc, "status", None)) from None


def source_name(interface: str, client: str) -> str:
    """An audit source ``<interface>:<client>`` the API accepts (other characters become ``_``)."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:/@[]#-")
    cleaned = "".join(c if c in allowed else "_" for c in client)[:100] or "unknown"
    return f"{interface}:{cleaned}"
