"""Choose and build the axis drivers a config asks for (``drives.kind``), and the
wind sensor (``weather.source``).

- ``sim``: in-process ``SimulatedAxis`` objects over a ``SimMount`` (pass ``mount``);
- ``modbus``: ``drivers.modbus`` over TCP or RTU;
- ``serial``: ``drivers.serial`` (imported only when used);
- ``opcua``: ``drivers.opcua``, both axes over one OPC UA session to the drive PLC.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from tracker.errors import ConfigError
from tracker.mount.axis import Axis
from tracker.mount.wind import WindSensor


def as_time_callable(clock: Any) -> Callable[[], float]:
    """Accept a ``tracker.clock`` object (``now_s()``) or a plain callable (UTC unix s)."""
    now_s = getattr(clock, "now_s", None)
    if callable(now_s):
        return now_s
    if callable(clock):
        return clock
    raise TypeError("clock must be a callable returning UTC unix seconds or have now_s()")


def make_axes(settings, *, clock: Any, mount=None) -> dict[str, Axis]:
    """``{"azimuth": Axis, "elevation": Axis}`` for ``settings.drives.kind``.

    ``clock`` stamps the readings; ``mount`` (a ``simulator.mount.SimMount``) is
    required for ``kind = "sim"``.
    """
    now = as_time_callable(clock)
    kind = settings.drives.kind
    if kind == "sim":
        if mount is None:
            raise ConfigError("drives.kind = 'sim' needs a simulated mount (mount=SimMount(...))",
                              key="drives.kind", value=kind)
        from simulator.axis import SimulatedAxis
        return {name: SimulatedAxis(mount.axes[name], now) for name in ("azimuth", "elevation")}
    if kind == "modbus":
        from drivers.modbus import make_modbus_axes
        return dict(make_modbus_axes(settings, now))
    if kind == "serial":
        serial = importlib.import_module("drivers.serial")
        return dict(serial.make_serial_axes(settings, now))
    if kind == "opcua":
        from drivers.opcua import make_opcua_axes
        return dict(make_opcua_axes(settings, now))
    raise ConfigError(f"unknown drives.kind {kind!r}", key="drives.kind", value=kind,
                      allowed="sim, modbus, serial, opcua")


def make_wind_sensor(settings, *, clock: Any, mount=None) -> WindSensor | None:
    """The anemometer ``settings.weather.source`` names, or None for ``"none"``.

    ``sim`` reads the simulated mount's wind in process (pass ``mount``, a
    ``simulator.mount.SimMount``); ``modbus`` and ``nmea`` are ``drivers.weather``
    sensors on ``weather.modbus`` / ``weather.nmea``.  ``clock`` stamps the readings.
    Nothing is opened here: the NMEA port opens on the first ``read()``, the Modbus
    connection on the first transaction.
    """
    now = as_time_callable(clock)
    source = settings.weather.source
    if source == "none":
        return None
    if source == "sim":
        if mount is None:
            raise ConfigError(
                "weather.source = 'sim' needs the simulated mount in process; with "
                f"drives.kind = {settings.drives.kind!r} set weather.source to 'modbus', "
                "'nmea' or 'none'", key="weather.source", value=source,
                allowed="modbus, nmea, none")
        from simulator.weather import SimWindSensor
        return SimWindSensor(mount, now)
    if source == "modbus":
        from drivers.weather import ModbusWindSensor
        return ModbusWindSensor(settings.weather.modbus, now)
    if source == "nmea":
        from drivers.weather import NmeaWindSensor
        return NmeaWindSensor(settings.weather.nmea, now)
    raise ConfigError(f"unknown weather.source {source!r}", key="weather.source", value=source,
                      allowed="sim, modbus, nmea, none")


def make_wind(settings: Any, *, clock: Any, mount: Any = None) -> Any:
    """The wind supervisor (``tracker.loop.weather.WindSupervisor``) over the anemometer
    ``weather.source`` names, or None for ``"none"``."""
    from tracker.loop.weather import make_wind_supervisor

    return make_wind_supervisor(make_wind_sensor(settings, clock=clock, mount=mount),
                                settings.weather, as_time_callable(clock))


def make_truth(settings: Any, mount: Any = None) -> Callable[[], tuple[float, float]] | None:
    """The truth port for ``Engine(true_direction=...)``: where the magnet's mechanical axis
    really is, in the mount frame (azimuth from north through east, elevation up, degrees),
    from the simulated mount's load-side axis angles through the simulator's real
    misalignment.  None without a simulated mount in process (real drives have no truth;
    the log's ``true_error_arcsec`` is then NULL)."""
    if mount is None:
        return None
    from simulator.truth import truth_model

    model = truth_model(settings)
    az_axis, el_axis = mount.azimuth, mount.elevation

    def truth() -> tuple[float, float]:
        return model.axes_to_sky(az_axis.true_position_deg, el_axis.true_position_deg)

    return truth
