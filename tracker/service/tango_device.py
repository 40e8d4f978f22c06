"""Tango device server ``HelioTracker``: the daemon seen from a Tango control system.

A client of the daemon's HTTP API (docs/facility.md), in its own process: a polling
thread reads ``GET /api/v1/status`` at ``facility.poll_hz``, keeps the snapshot the
attribute reads answer from, and pushes change and archive events when a value (or
the State) changes.  A second thread follows the daemon's event stream
(``GET /api/v1/stream``) and wakes the poll at once when a discrete key (state,
faults, window...) changes, so those events follow the engine within a tick.  Commands go to the API with the bearer token and the source
``tango:<device>@<client ip>#<client pid> via api:<address>``, so the engine checks
them exactly as it checks the CLI's; a refusal raises ``DevFailed`` with reason
``HelioTracker_Refused`` (``HelioTracker_Unreachable`` when the daemon does not
answer) and the engine's reason as description.

Attributes and their units, formats and alarm limits come from
``tracker.service.facility_model`` (shared with the OPC UA server).  Device
properties: ``ConfigFile`` (the daemon's TOML config: API address, token file, alarm
limits; empty = the file given to ``tracker tango --config``) and ``ApiUrl``
(overrides the address).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import tango
from tango import AttrQuality, AttrWriteType, DevState
from tango.server import Device, attribute, command, device_property

from tracker import config as config_mod
from tracker.service import facility_model as fm

log = logging.getLogger(__name__)

#: Config used when the ConfigFile property is empty (set by ``tracker tango --config``).
DEFAULT_CONFIG: str | None = None
#: API URL used when the ApiUrl property is empty (set by ``tracker tango --api-url``).
DEFAULT_API_URL: str = ""

_PLACEHOLDER: dict[type, Any] = {float: float("nan"), bool: False, str: ""}
_DTYPE: dict[type, Any] = {float: float, bool: bool, str: str}


def api_client(settings: Any, url: str = "") -> Any:
    """An API client for the daemon of ``settings`` (``facility.api_url`` or ``[api]``)."""
    from tracker.service.client import Client

    client = Client.from_settings(settings, url=url or settings.facility.api_url or None,
                                  timeout_s=5.0)
    return client


class HelioTracker(Device):
    """Solar tracker of an axion helioscope (el/az mount pointing at the Sun's centre)."""

    ConfigFile = device_property(dtype=str, default_value="",
                                 doc="the tracker daemon's TOML config file")
    ApiUrl = device_property(dtype=str, default_value="",
                             doc="daemon API URL (empty: from the config)")

    # ------------------------------------------------------------------ lifecycle
    def init_device(self) -> None:
        super().init_device()
        path = self.ConfigFile or DEFAULT_CONFIG
        self._settings = config_mod.load(Path(path) if path else None)
        self._model = {q.name: q for q in fm.build_model(self._settings)}
        url = self.ApiUrl or DEFAULT_API_URL
        self._client = api_client(self._settings, url)
        self._poll_client = api_client(self._settings, url)
        self._lock = threading.Lock()
        self._status: dict | None = None
        self._status_time_s = time.time()
        self._error: str | None = None
        self._published: dict[str, Any] = {}
        self._period_s = 1.0 / self._settings.facility.poll_hz
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.set_state(DevState.UNKNOWN)
        self.set_status(fm.status_text(None))
        self.set_change_event("State", True, False)
        self.set_archive_event("State", True, False)
        self.set_change_event("Status", True, False)
        self._poller = threading.Thread(target=self._poll_loop, name="helio-poll", daemon=True)
        self._watch_client = api_client(self._settings, url)
        self._watcher = threading.Thread(target=self._watch_loop, name="helio-watch",
                                         daemon=True)
        if getattr(self, "_attributes_added", False):  # Init command: attributes exist
            self._start_threads()

    def initialize_dynamic_attributes(self) -> None:
        for q in self._model.values():
            kwargs: dict[str, Any] = {
                "name": q.name, "dtype": _DTYPE[q.kind], "access": AttrWriteType.READ,
                "doc": q.description, "label": q.name, "fget": self._read_quantity,
                "format": q.fmt,
            }
            if q.unit is not None:
                kwargs["unit"] = q.unit.symbol
            for key in ("min_alarm", "max_alarm", "min_warning", "max_warning"):
                limit = getattr(q, key)
                if limit is not None:
                    kwargs[key] = limit
            self.add_attribute(attribute(**kwargs))
            self.set_change_event(q.name, True, False)
            self.set_archive_event(q.name, True, False)
        self._attributes_added = True
        self._start_threads()

    def _start_threads(self) -> None:
        self._poller.start()
        self._watcher.start()

    def delete_device(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._poller.ident is not None:
            self._poller.join(2.0)
        self._client.close()
        self._poll_client.close()
        self._watch_client.close()

    # ------------------------------------------------------------------ polling and events
    def _poll_loop(self) -> None:
        with tango.EnsureOmniThread():
            next_s = time.monotonic()
            while not self._stop.is_set():
                self._poll_once()
                next_s += self._period_s
                delay = next_s - time.monotonic()
                if delay < 0:
                    next_s = time.monotonic()
                    delay = 0.0
                self._wake.wait(delay)
                self._wake.clear()

    def _watch_loop(self) -> None:
        """Poll at once on a discrete change in the daemon's event stream."""
        fm.follow_discrete_changes(self._watch_client, self._stop, self._wake.set)

    def _poll_once(self) -> None:
        try:
            status = self._poll_client.status()
            error = None
        except Exception as exc:  # unreachable daemon, bad answer: keep serving, say so
            status, error = None, str(exc)
        with self._lock:
            if status is not None:
                self._status, self._status_time_s = status, time.time()
            else:
                self._status = None
            self._error = error
        try:
            self._publish(status, error)
        except Exception:
            log.exception("pushing Tango events failed")

    def _publish(self, status: dict | None, error: str | None) -> None:
        """Push change + archive events for every value that changed since the last push."""
        t = time.time()
        state = getattr(DevState, fm.device_state(status))
        text = fm.status_text(status, error)
        if self._published.get("State") != state:
            self._published["State"] = state
            self.set_state(state)
            self.push_change_event("State", state)
            self.push_archive_event("State", state)
        if self._published.get("Status") != text:
            self._published["Status"] = text
            self.set_status(text)
            self.push_change_event("Status", text)
        for name, q in self._model.items():
            value = q.value(status) if status else None
            if name in self._published and self._published[name] == value:
                continue
            if (name in self._published and isinstance(value, float)
                    and isinstance(self._published[name], float)
                    and value != value and self._published[name] != self._published[name]):
                continue
            self._published[name] = value
            quality = _quality(q, value)
            shown = _PLACEHOLDER[q.kind] if value is None else value
            self.push_change_event(name, shown, t, quality)
            self.push_archive_event(name, shown, t, quality)

    def _read_quantity(self, attr: Any) -> None:
        q = self._model[attr.get_name()]
        with self._lock:
            status, t = self._status, self._status_time_s
        value = q.value(status) if status else None
        if value is None:
            attr.set_value_date_quality(_PLACEHOLDER[q.kind], t, AttrQuality.ATTR_INVALID)
        else:
            attr.set_value_date_quality(value, t, _quality(q, value))

    def dev_state(self) -> DevState:
        with self._lock:
            status = self._status
        return getattr(DevState, fm.device_state(status))

    def dev_status(self) -> str:
        with self._lock:
            status, error = self._status, self._error
        return fm.status_text(status, error)

    # ------------------------------------------------------------------ commands
    def _source(self) -> str:
        ident = self.get_client_ident()
        who = "unknown"
        if ident is not None:
            ip = str(getattr(ident, "client_ip", "") or "").removeprefix("giop:tcp:")
            who = f"{ip or 'unknown'}#{getattr(ident, 'client_pid', 0)}"
        return fm.source_name("tango", f"{self.get_name()}@{who}")

    def _run(self, name: str, argument: Any = None) -> None:
        try:
            fm.execute(self._client, name, argument, source=self._source())
        except fm.CommandRefused as exc:
            reason = ("HelioTracker_Unreachable" if exc.status is None
                      and "reach" in str(exc) else "HelioTracker_Refused")
            tango.Except.throw_exception(reason, str(exc), f"HelioTracker.{name}")
        finally:
            self._wake.set()  # publish the command's effect now, not at the next poll

    @command
    def TrackStart(self) -> None:
        """Start automatic Sun tracking (refused while parked or faulted)."""
        self._run("TrackStart")

    @command
    def TrackStop(self) -> None:
        """Stop automatic Sun tracking; the axes hold."""
        self._run("TrackStop")

    @command
    def Park(self) -> None:
        """Move to the park position."""
        self._run("Park")

    @command
    def Unpark(self) -> None:
        """Leave the park position and hold."""
        self._run("Unpark")

    @command
    def Stow(self) -> None:
        """Move to the stow (survival) position."""
        self._run("Stow")

    @command
    def Stop(self) -> None:
        """Stop both axes with a controlled ramp and hold."""
        self._run("Stop")

    @command
    def Reset(self) -> None:
        """Acknowledge faults and reset the drives (the axes stay stopped)."""
        self._run("Reset")

    @command(dtype_in=(float,), doc_in="[azimuth_deg, elevation_deg]: sky direction, degrees "
                                       "(azimuth from north through east, elevation up)")
    def Goto(self, az_el_deg: Any) -> None:
        """Slew the boresight to a sky direction, checked against the envelope."""
        self._run("Goto", [float(x) for x in az_el_deg])


def _quality(q: fm.Quantity, value: Any) -> AttrQuality:
    if value is None:
        return AttrQuality.ATTR_INVALID
    level = q.alarm_level(value)
    if level == "alarm":
        return AttrQuality.ATTR_ALARM
    if level == "warning":
        return AttrQuality.ATTR_WARNING
    return AttrQuality.ATTR_VALID


def run(instance: str, *, config_path: str | None, nodb: bool, settings: Any,
        api_url: str | None = None) -> None:
    """Run the device server ``HelioTracker/<instance>`` until interrupted (``tracker tango``).

    With ``nodb`` no Tango database is needed: the device ``facility.tango_device`` is
    served on ``facility.tango_host:tango_port`` (clients use
    ``tango://<host>:<port>/<device>#dbase=no``).  Otherwise the device must be
    registered in the database of ``TANGO_HOST`` (docs/facility.md).
    """
    global DEFAULT_CONFIG, DEFAULT_API_URL
    DEFAULT_CONFIG = config_path
    DEFAULT_API_URL = api_url or ""
    fac = settings.facility
    host = fac.tango_host
    args = [instance, "-ORBendPoint", f"giop:tcp:{host}:{fac.tango_port or ''}"]
    if nodb:
        args += ["-nodb", "-dlist", fac.tango_device]
    HelioTracker.run_server(args=args)
