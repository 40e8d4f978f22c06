"""ASCOM Alpaca Telescope interface (device 0) on the daemon's API port.

Implements the Alpaca management API and every ITelescopeV4 member: the members
this alt-az Sun tracker supports answer values; the optional ones it does not
support answer NotImplemented (0x400) and their ``Can...`` flag is False; an
unknown member name answers HTTP 400.  Responses carry ``ClientTransactionID``
(echoed, 0 when missing or invalid), a ``ServerTransactionID`` counting up from
1, ``ErrorNumber`` and ``ErrorMessage``.  ``PUT`` parameters are form-encoded
and their names are case sensitive, as the Alpaca specification requires (a
wrongly capitalised name answers HTTP 400 naming the right spelling); ``GET``
query names are case insensitive.  Missing or unparseable parameters answer
HTTP 400; values out of range InvalidValue (0x401); a target read before it is
set ValueNotSet (0x402); members used while disconnected NotConnected (0x407);
anything that would move a parked mount (Tracking = True included)
InvalidWhileParked (0x408) and nothing moves; commands the state machine
refuses (fault, e-stop, wind stow) InvalidOperation (0x40B).

Altitude/Azimuth are the sky direction of the default boresight (degrees,
azimuth 0..360 from north through east).  RightAscension/Declination are the
same direction in topocentric apparent coordinates (``EquatorialSystem`` 1),
SiderealTime the local apparent sidereal time (hours).  ``Slewing`` is True
while the engine slews, parks, stows or moves an axis, and afterwards until
neither drive reports motion (its "moving" flag), except while tracking
the Sun.  ``Tracking`` is automatic Sun tracking (``TrackingRate`` driveSolar).
Alpaca writes need no bearer token (Alpaca clients cannot send one): they are
accepted only from loopback unless ``api.alpaca_allow_remote`` and can be
switched off with ``api.alpaca_writes = false``; every write is audited by the
engine with source ``alpaca:<client address>``.
"""

from __future__ import annotations

import itertools
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from tracker import __version__ as _version
from tracker.astro.equatorial import altaz_to_radec, local_apparent_sidereal_time_h
from tracker.errors import ConfigError, EnvelopeError, StateError, TrackerError
from tracker.service.auth import client_host, is_loopback

log = logging.getLogger(__name__)

NOT_IMPLEMENTED = 0x400
INVALID_VALUE = 0x401
VALUE_NOT_SET = 0x402
NOT_CONNECTED = 0x407
INVALID_WHILE_PARKED = 0x408
INVALID_OPERATION = 0x40B
ACTION_NOT_IMPLEMENTED = 0x40C
DRIVER_ERROR = 0x500

#: Telescope interface version (Platform 7: Connect/Disconnect/Connecting).
INTERFACE_VERSION = 4
#: MoveAxis keeps an axis moving at most this long without a new command (seconds).
MOVEAXIS_MAX_S = 60.0
#: DriveRates: driveSidereal 0, driveLunar 1, driveSolar 2, driveKing 3.
DRIVE_SOLAR = 2
DRIVE_RATES = (0, 1, 2, 3)
#: EquatorialCoordinateType.equTopocentric (topocentric apparent, true equator of date).
EQU_TOPOCENTRIC = 1
#: An axis counts as stopped below this speed (deg/s) for ``Slewing``.

#: Members answered without a connection.
_ALWAYS = {"connected", "connecting", "name", "description", "driverinfo", "driverversion",
           "interfaceversion", "supportedactions", "connect", "disconnect"}

#: Every ITelescopeV4 member (with the common device members), by HTTP method.
TELESCOPE_GET = frozenset("""
    connected connecting description devicestate driverinfo driverversion interfaceversion name
    supportedactions alignmentmode altitude aperturearea aperturediameter athome atpark azimuth
    canfindhome canpark canpulseguide cansetdeclinationrate cansetguiderates cansetpark
    cansetpierside cansetrightascensionrate cansettracking canslew canslewaltaz canslewaltazasync
    canslewasync cansync cansyncaltaz canunpark declination declinationrate doesrefraction
    equatorialsystem focallength guideratedeclination guideraterightascension ispulseguiding
    rightascension rightascensionrate sideofpier siderealtime siteelevation sitelatitude
    sitelongitude slewing slewsettletime targetdeclination targetrightascension tracking
    trackingrate trackingrates utcdate axisrates canmoveaxis destinationsideofpier
    """.split())
TELESCOPE_PUT = frozenset("""
    action commandblind commandbool commandstring connected connect disconnect declinationrate
    doesrefraction guideratedeclination guideraterightascension rightascensionrate sideofpier
    siteelevation sitelatitude sitelongitude slewsettletime targetdeclination
    targetrightascension tracking trackingrate utcdate abortslew findhome moveaxis park
    pulseguide setpark slewtoaltaz slewtoaltazasync slewtocoordinates slewtocoordinatesasync
    slewtotarget slewtotargetasync synctoaltaz synctocoordinates synctotarget unpark
    """.split())


class AlpacaError(Exception):
    """An Alpaca error: ``number`` goes to ErrorNumber (HTTP 200)."""

    def __init__(self, number: int, message: str, *, audited: bool = False) -> None:
        super().__init__(message)
        self.number = number
        #: True when the engine refused (and audited) the command itself.
        self.audited = audited


class BadRequest(Exception):
    """Missing or unparseable parameter: HTTP 400 with a plain-text message."""


class _Params:
    """Request parameters: GET names match in any case, PUT names only as specified."""

    def __init__(self, items: Any, *, case_sensitive: bool) -> None:
        self._items = {k.lower(): (k, v) for k, v in items}
        self.case_sensitive = case_sensitive

    def get(self, name: str, default: str | None = None) -> str | None:
        hit = self._items.get(name.lower())
        if hit is None:
            return default
        if self.case_sensitive and hit[0] != name:
            raise BadRequest(f"parameter {hit[0]!r} must be spelt {name!r} "
                             f"(Alpaca PUT parameter names are case sensitive)")
        return hit[1]

    def lookup(self, name: str) -> str | None:
        """Like ``get`` but a wrongly capitalised name counts as missing (never raises)."""
        hit = self._items.get(name.lower())
        if hit is None or (self.case_sensitive and hit[0] != name):
            return None
        return hit[1]


def _param(params: _Params, name: str) -> str:
    value = params.get(name)
    if value is None:
        raise BadRequest(f"missing parameter {name}")
    return value


def _float(params: _Params, name: str) -> float:
    raw = _param(params, name)
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"parameter {name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise AlpacaError(INVALID_VALUE, f"{name} must be a finite number, not {raw}")
    return value


def _int(params: _Params, name: str) -> int:
    raw = _param(params, name)
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"parameter {name}={raw!r} is not an integer") from None


def _bool(params: _Params, name: str) -> bool:
    raw = _param(params, name)
    low = raw.strip().lower()
    if low == "true":
        return True
    if low == "false":
        return False
    raise BadRequest(f"parameter {name}={raw!r} is not True or False")


def _transaction_id(params: _Params) -> int:
    raw = params.lookup("ClientTransactionID")
    try:
        value = int(raw) if raw is not None else 0
    except ValueError:
        return 0
    return value if 0 <= value <= 0xFFFFFFFF else 0


class AlpacaTelescope:
    """Telescope device 0 over a daemon backend (see ``tracker.service.api.Backend``)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.settings = backend.settings
        self.connected = False
        self._server_ids = itertools.count(1)
        self._target_ra_h: float | None = None
        self._target_dec_deg: float | None = None
        self._radec_cache: tuple[float, float, float, float, float] | None = None
        site = self.settings.site
        self.get_members: dict[str, Callable[[_Params], Any]] = {
            "connected": lambda p: self.connected,
            "connecting": lambda p: False,
            "name": lambda p: "helio-tracker",
            "description": lambda p: f"Solar tracker for an axion helioscope: {site.name}",
            "driverinfo": lambda p: "helio-tracker daemon: ASCOM Alpaca Telescope for Sun "
                                    "tracking on an alt-az mount",
            "driverversion": lambda p: _version,
            "interfaceversion": lambda p: INTERFACE_VERSION,
            "supportedactions": lambda p: [],
            "alignmentmode": lambda p: 0,
            "altitude": lambda p: self._pointing("el_deg"),
            "azimuth": lambda p: self._pointing("az_deg") % 360.0,
            "rightascension": lambda p: self._radec()[0],
            "declination": lambda p: self._radec()[1],
            "rightascensionrate": lambda p: 0.0,
            "declinationrate": lambda p: 0.0,
            "equatorialsystem": lambda p: EQU_TOPOCENTRIC,
            "doesrefraction": lambda p: False,
            "siderealtime": lambda p: self._sidereal_time_h(),
            "utcdate": lambda p: self._utc_date(),
            "sitelatitude": lambda p: float(site.latitude_deg),
            "sitelongitude": lambda p: float(site.longitude_deg),
            "siteelevation": lambda p: float(site.height_m),
            "slewing": lambda p: self._slewing(self._status()),
            "tracking": lambda p: bool(self._status().get("auto_tracking", False)),
            "trackingrate": lambda p: DRIVE_SOLAR,
            "trackingrates": lambda p: [DRIVE_SOLAR],
            "atpark": lambda p: self._parked(),
            # CanFindHome is False: this mount has no home position, so it is never at it.
            "athome": lambda p: False,
            "ispulseguiding": lambda p: False,
            "targetrightascension": lambda p: self._target("TargetRightAscension",
                                                           self._target_ra_h),
            "targetdeclination": lambda p: self._target("TargetDeclination",
                                                        self._target_dec_deg),
            "canfindhome": lambda p: False,
            "canpulseguide": lambda p: False,
            "cansetdeclinationrate": lambda p: False,
            "cansetguiderates": lambda p: False,
            "cansetpark": lambda p: False,
            "cansetpierside": lambda p: False,
            "cansetrightascensionrate": lambda p: False,
            "canslew": lambda p: False,
            "canslewasync": lambda p: False,
            "canslewaltaz": lambda p: False,
            "cansync": lambda p: False,
            "cansyncaltaz": lambda p: False,
            "canslewaltazasync": lambda p: self._writes,
            "canpark": lambda p: self._writes,
            "canunpark": lambda p: self._writes,
            "cansettracking": lambda p: self._writes,
            "canmoveaxis": self._can_move_axis,
            "devicestate": self._device_state,
            "axisrates": self._axis_rates,
        }
        self.put_members: dict[str, Callable[[_Params, str], Awaitable[None]]] = {
            "connected": self._put_connected,
            "connect": self._connect,
            "disconnect": self._disconnect,
            "tracking": self._put_tracking,
            "trackingrate": self._put_tracking_rate,
            "targetrightascension": self._put_target_ra,
            "targetdeclination": self._put_target_dec,
            "slewtoaltazasync": self._slew_alt_az_async,
            "abortslew": self._abort_slew,
            "moveaxis": self._move_axis,
            "park": self._park,
            "unpark": self._unpark,
        }

    # ------------------------------------------------------------------ helpers
    @property
    def _writes(self) -> bool:
        return bool(self.settings.api.alpaca_writes)

    def _status(self) -> dict:
        return self.backend.status()

    def _time_s(self, status: dict) -> float:
        t = status.get("time_s")
        return float(t) if isinstance(t, int | float) else float(self.backend.now_s())

    def _pointing(self, key: str) -> float:
        value = (self._status().get("pointing") or {}).get(key)
        if value is None:
            raise AlpacaError(DRIVER_ERROR, "the mount position is not known yet (no axis reading)")
        return float(value)

    def _radec(self) -> tuple[float, float]:
        """(RA hours, Dec deg), topocentric apparent, of where the mount points now."""
        status = self._status()
        pointing = status.get("pointing") or {}
        az, el = pointing.get("az_deg"), pointing.get("el_deg")
        if az is None or el is None:
            raise AlpacaError(DRIVER_ERROR, "the mount position is not known yet (no axis reading)")
        t_s = self._time_s(status)
        cache = self._radec_cache
        if cache is not None and cache[:3] == (t_s, float(az), float(el)):
            return cache[3], cache[4]
        site = self.settings.site
        ra_h, dec_deg = altaz_to_radec(t_s, float(az) % 360.0, float(el), site.latitude_deg,
                                       site.longitude_deg)
        self._radec_cache = (t_s, float(az), float(el), ra_h, dec_deg)
        return ra_h, dec_deg

    def _sidereal_time_h(self) -> float:
        return local_apparent_sidereal_time_h(self._time_s(self._status()),
                                              self.settings.site.longitude_deg)

    def _utc_date(self) -> str:
        """The daemon clock as ISO 8601 UTC with a Z suffix (Alpaca's UTCDate format)."""
        t = datetime.fromtimestamp(self._time_s(self._status()), tz=UTC)
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"

    @staticmethod
    def _slewing(status: dict) -> bool:
        """The engine's slewing flag, or (except while tracking) a drive still moving (its
        "moving" flag: a held axis jittering in the wind is not slewing)."""
        if status.get("slewing"):
            return True
        if status.get("state") == "tracking":
            return False
        return any(bool(axis.get("moving")) for axis in (status.get("axes") or {}).values())

    def _parked(self) -> bool:
        status = self._status()
        return (bool(status.get("at_park")) or status.get("state") == "parked"
                or self.backend.state() == "parked")

    @staticmethod
    def _target(name: str, value: float | None) -> float:
        if value is None:
            raise AlpacaError(VALUE_NOT_SET, f"{name} has not been set")
        return value

    def _need_writes(self, member: str) -> None:
        if not self._writes:
            raise AlpacaError(NOT_IMPLEMENTED, f"{member}: Alpaca writes are switched off on this "
                                               f"daemon (api.alpaca_writes = false)")

    def _not_parked(self, member: str) -> None:
        if self._parked():
            raise AlpacaError(INVALID_WHILE_PARKED,
                              f"{member} is invalid while parked: nothing moves until Unpark")

    def _axis(self, params: _Params) -> int:
        axis = _int(params, "Axis")
        if axis not in (0, 1, 2):
            raise AlpacaError(INVALID_VALUE,
                              f"Axis {axis} does not exist (0 azimuth, 1 altitude, 2 tertiary)")
        return axis

    def _device_state(self, params: _Params) -> list[dict[str, Any]]:
        """Platform 7 DeviceState: the operational properties in one call."""
        st = self._status()
        state: list[dict[str, Any]] = [
            {"Name": "Altitude", "Value": self._pointing("el_deg")},
            {"Name": "AtHome", "Value": False},
            {"Name": "AtPark", "Value": self._parked()},
            {"Name": "Azimuth", "Value": self._pointing("az_deg") % 360.0},
        ]
        ra_h, dec_deg = self._radec()
        state += [
            {"Name": "Declination", "Value": dec_deg},
            {"Name": "IsPulseGuiding", "Value": False},
            {"Name": "RightAscension", "Value": ra_h},
            {"Name": "SiderealTime", "Value": self._sidereal_time_h()},
            {"Name": "Slewing", "Value": self._slewing(st)},
            {"Name": "Tracking", "Value": bool(st.get("auto_tracking", False))},
            {"Name": "UTCDate", "Value": self._utc_date()},
            {"Name": "TimeStamp", "Value": self._utc_date()},
        ]
        return state

    def _can_move_axis(self, params: _Params) -> bool:
        return self._axis(params) in (0, 1) and self._writes

    def _axis_rates(self, params: _Params) -> list[dict[str, float]]:
        axis = self._axis(params)
        if axis == 2:
            return []
        limits = self.settings.axes.azimuth if axis == 0 else self.settings.axes.elevation
        return [{"Maximum": limits.max_speed_deg_s, "Minimum": 0.0}]

    async def _engine(self, name: str, source: str, **kwargs: Any) -> None:
        try:
            await self.backend.command(name, source=source, **kwargs)
        except EnvelopeError as exc:
            raise AlpacaError(INVALID_VALUE, str(exc), audited=True) from None
        except ConfigError as exc:
            raise AlpacaError(INVALID_VALUE, str(exc), audited=True) from None
        except StateError as exc:
            if self._parked():
                raise AlpacaError(INVALID_WHILE_PARKED, str(exc), audited=True) from None
            raise AlpacaError(INVALID_OPERATION, str(exc), audited=True) from None
        except TrackerError as exc:
            raise AlpacaError(DRIVER_ERROR, str(exc), audited=True) from None

    # ------------------------------------------------------------------ PUT members
    async def _put_connected(self, params: _Params, source: str) -> None:
        self.connected = _bool(params, "Connected")

    async def _connect(self, params: _Params, source: str) -> None:
        self.connected = True

    async def _disconnect(self, params: _Params, source: str) -> None:
        self.connected = False

    async def _put_tracking(self, params: _Params, source: str) -> None:
        on = _bool(params, "Tracking")
        self._need_writes("tracking")
        if on:
            # ITelescopeV4: Tracking = True while parked is InvalidWhileParked; False is allowed.
            self._not_parked("Tracking = True")
        await self._engine("set_auto_tracking", source, on=on)

    async def _put_tracking_rate(self, params: _Params, source: str) -> None:
        rate = _int(params, "TrackingRate")
        if rate not in DRIVE_RATES:
            raise AlpacaError(INVALID_VALUE, f"TrackingRate {rate} is not a DriveRates value "
                                             f"(0 sidereal, 1 lunar, 2 solar, 3 King)")
        if rate != DRIVE_SOLAR:
            raise AlpacaError(INVALID_VALUE, f"TrackingRate {rate} is not supported: this mount "
                                             f"tracks the Sun only (TrackingRates = [2])")

    async def _put_target_ra(self, params: _Params, source: str) -> None:
        ra_h = _float(params, "TargetRightAscension")
        if not 0.0 <= ra_h < 24.0:
            raise AlpacaError(INVALID_VALUE, f"TargetRightAscension {ra_h} is outside 0..24 hours")
        self._target_ra_h = ra_h

    async def _put_target_dec(self, params: _Params, source: str) -> None:
        dec_deg = _float(params, "TargetDeclination")
        if not -90.0 <= dec_deg <= 90.0:
            raise AlpacaError(INVALID_VALUE,
                              f"TargetDeclination {dec_deg} is outside -90..90 degrees")
        self._target_dec_deg = dec_deg

    async def _slew_alt_az_async(self, params: _Params, source: str) -> None:
        az_deg = _float(params, "Azimuth")
        el_deg = _float(params, "Altitude")
        self._need_writes("slewtoaltazasync")
        if not 0.0 <= az_deg <= 360.0:
            raise AlpacaError(INVALID_VALUE, f"Azimuth {az_deg} is outside 0..360 degrees")
        if not -90.0 <= el_deg <= 90.0:
            raise AlpacaError(INVALID_VALUE, f"Altitude {el_deg} is outside -90..90 degrees")
        self._not_parked("SlewToAltAzAsync")
        await self._engine("goto", source, az_deg=az_deg, el_deg=el_deg, boresight=None, axes=False)

    async def _abort_slew(self, params: _Params, source: str) -> None:
        self._need_writes("abortslew")
        self._not_parked("AbortSlew")
        await self._engine("stop", source)

    async def _move_axis(self, params: _Params, source: str) -> None:
        axis = self._axis(params)
        rate_deg_s = _float(params, "Rate")
        self._need_writes("moveaxis")
        if axis == 2:  # CanMoveAxis(2) is False
            raise AlpacaError(NOT_IMPLEMENTED, "MoveAxis: this mount has no tertiary axis")
        limits = self.settings.axes.azimuth if axis == 0 else self.settings.axes.elevation
        if abs(rate_deg_s) > limits.max_speed_deg_s:
            raise AlpacaError(INVALID_VALUE, f"Rate {rate_deg_s} deg/s exceeds the axis limit "
                                             f"{limits.max_speed_deg_s} deg/s")
        self._not_parked("MoveAxis")
        if rate_deg_s == 0.0:
            await self._engine("stop", source)
        else:
            await self._engine("jog", source, axis="az" if axis == 0 else "el",
                               rate_deg_s=rate_deg_s, seconds=MOVEAXIS_MAX_S)

    async def _park(self, params: _Params, source: str) -> None:
        self._need_writes("park")
        await self._engine("park", source)

    async def _unpark(self, params: _Params, source: str) -> None:
        self._need_writes("unpark")
        if not self._parked():
            return  # ITelescopeV4 / ConformU: Unpark when not parked is harmless, moves nothing
        await self._engine("unpark", source)

    # ------------------------------------------------------------------ dispatch
    def _reply(self, client_tid: int, *, value: Any = None, has_value: bool = False,
               number: int = 0, message: str = "") -> JSONResponse:
        body: dict[str, Any] = {}
        if has_value:
            body["Value"] = value
        body.update({"ClientTransactionID": client_tid,
                     "ServerTransactionID": next(self._server_ids),
                     "ErrorNumber": number, "ErrorMessage": message})
        return JSONResponse(body)

    def _audit_refused(self, member: str, source: str, reason: str) -> None:
        """A write refused before the engine (parameters, writes off, not connected...):
        audited like the API's refusals before the engine (once per source per 10 s)."""
        audit = getattr(self.backend, "audit_refused", None)
        if audit is not None:
            audit(member, source, reason[:500])

    async def handle(self, request: Request, device_number: str, member: str) -> Response:
        if not self.settings.api.alpaca_allow_remote and not is_loopback(client_host(request)):
            return PlainTextResponse("Alpaca is served to loopback clients only", status_code=403)
        if device_number != "0":
            return PlainTextResponse(f"no telescope device number {device_number[:40]!r} "
                                     f"(only 0)", status_code=400)
        member = member.lower()
        known = TELESCOPE_PUT if request.method == "PUT" else TELESCOPE_GET
        if member not in known:
            other = "GET" if request.method == "PUT" else "PUT"
            also = (TELESCOPE_GET if request.method == "PUT" else TELESCOPE_PUT)
            why = (f"{member[:40]!r} is not a Telescope member for {request.method} "
                   f"(only {other})" if member in also
                   else f"{member[:40]!r} is not an ITelescopeV4 member")
            return PlainTextResponse(why, status_code=400)
        if request.method == "PUT":
            raw = (await request.body()).decode("utf-8", errors="replace")
            params = _Params(parse_qsl(raw, keep_blank_values=True), case_sensitive=True)
        else:
            params = _Params(request.query_params.items(), case_sensitive=False)
        client_tid = _transaction_id(params)
        source = f"alpaca:{client_host(request)}"
        try:
            if not self.connected and member not in _ALWAYS:
                raise AlpacaError(NOT_CONNECTED, f"{member}: the telescope is not connected "
                                                 f"(set Connected or call Connect first)")
            if request.method == "GET" and member in self.get_members:
                value = self.get_members[member](params)
                return self._reply(client_tid, value=value, has_value=True)
            if request.method == "PUT" and member in self.put_members:
                await self.put_members[member](params, source)
                return self._reply(client_tid)
            if member == "action":
                raise AlpacaError(ACTION_NOT_IMPLEMENTED, "this telescope supports no actions "
                                                          "(SupportedActions is empty)")
            raise AlpacaError(NOT_IMPLEMENTED, f"{request.method} {member} is not implemented "
                                               f"by this telescope")
        except AlpacaError as exc:
            if exc.number != NOT_IMPLEMENTED:
                log.info("alpaca %s %s from %s: error 0x%X %s", request.method, member,
                         source, exc.number, exc)
            if request.method == "PUT" and not exc.audited:
                self._audit_refused(member, source, f"alpaca error 0x{exc.number:X}: {exc}")
            return self._reply(client_tid, number=exc.number, message=str(exc),
                               value=None, has_value=request.method == "GET")
        except BadRequest as exc:
            if request.method == "PUT":
                self._audit_refused(member, source, f"bad request: {exc}")
            return PlainTextResponse(str(exc), status_code=400)
        except Exception as exc:  # never an HTTP 500 to an Alpaca client
            log.exception("alpaca %s %s failed", request.method, member)
            return self._reply(client_tid, number=DRIVER_ERROR, message=f"internal error: {exc}",
                               value=None, has_value=request.method == "GET")


def _text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


#: Alpaca answers errors in the JSON body (HTTP 200), except these HTTP-level ones.
_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _text("bad request: unknown device number, or a missing or malformed parameter"),
    403: _text("Alpaca is served to loopback clients only (api.alpaca_allow_remote)"),
}


def create_router(backend: Any) -> APIRouter:
    """Routes for the Alpaca management API and ``/api/v1/telescope/{n}/{member}``."""
    router = APIRouter(tags=["alpaca"])
    scope = AlpacaTelescope(backend)
    # Load the time scales' tables now, not in the first request on the running loop.
    local_apparent_sidereal_time_h(backend.now_s(), backend.settings.site.longitude_deg)
    settings = backend.settings
    server_ids = itertools.count(1)
    unique_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"helio-tracker:{settings.site.name}"))

    def management(request: Request, value: Any) -> Response:
        if not settings.api.alpaca_allow_remote and not is_loopback(client_host(request)):
            return PlainTextResponse("Alpaca is served to loopback clients only", status_code=403)
        params = _Params(request.query_params.items(), case_sensitive=False)
        return JSONResponse({"Value": value, "ClientTransactionID": _transaction_id(params),
                             "ServerTransactionID": next(server_ids),
                             "ErrorNumber": 0, "ErrorMessage": ""})

    @router.get("/management/apiversions", responses={403: _RESPONSES[403]})
    async def apiversions(request: Request) -> Response:
        """Alpaca API versions served: [1]."""
        return management(request, [1])

    @router.get("/management/v1/description", responses={403: _RESPONSES[403]})
    async def description(request: Request) -> Response:
        """Alpaca server description."""
        return management(request, {
            "ServerName": "helio-tracker", "Manufacturer": "helio-tracker",
            "ManufacturerVersion": _version, "Location": settings.site.name})

    @router.get("/management/v1/configureddevices", responses={403: _RESPONSES[403]})
    async def configureddevices(request: Request) -> Response:
        """The one device: Telescope 0."""
        return management(request, [{
            "DeviceName": f"helio-tracker {settings.site.name}", "DeviceType": "Telescope",
            "DeviceNumber": 0, "UniqueID": unique_id}])

    @router.get("/api/v1/telescope/{device_number}/{member}", responses=_RESPONSES)
    async def telescope_get(request: Request, device_number: str, member: str) -> Response:
        """Alpaca Telescope properties (query parameters, names case-insensitive)."""
        return await scope.handle(request, device_number, member)

    @router.put("/api/v1/telescope/{device_number}/{member}", responses=_RESPONSES)
    async def telescope_put(request: Request, device_number: str, member: str) -> Response:
        """Alpaca Telescope methods and property writes (form-encoded, names case sensitive)."""
        return await scope.handle(request, device_number, member)

    router.alpaca_telescope = scope  # type: ignore[attr-defined]
    return router
