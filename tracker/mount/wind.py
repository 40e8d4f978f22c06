"""The one asynchronous interface the controller uses for a wind sensor (anemometer).

It sits next to the axis interface (``tracker.mount.axis``) because drivers and the
simulator implement it and may import only this low layer, never ``tracker.loop``.
Implementations: ``drivers.weather.ModbusWindSensor`` (Modbus RTU/TCP anemometer),
``drivers.weather.NmeaWindSensor`` (NMEA 0183 MWV on a serial line) and
``simulator.weather.SimWindSensor`` (the simulated mount's wind, in process).

Rules every implementation keeps:
- ``read()`` never raises for a device problem: it returns a reading with
  ``valid=False`` (no answer, bad checksum, status ``V``, unparseable data).
- ``time_s`` is when the value was measured or received, UTC unix seconds, from the
  injected clock.  A sensor that has nothing new returns its latest reading again
  (same ``time_s``); consumers ignore repeated times.
- ``speed_m_s`` is the horizontal wind speed in m/s (>= 0); ``direction_deg`` where
  the wind comes from, degrees clockwise from the sensor's north mark (true north for
  a site-aligned sensor), NaN when unknown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(slots=True)
class WindReading:
    """One anemometer reading.  ``valid`` False means: do not use the numbers.

    ``detail`` says why a reading is invalid (``"bad checksum"``, ``"status V"``...).
    Treat as immutable: not a frozen dataclass only because those cost several times as
    much to build, and the control loop builds one per anemometer reading.
    """

    time_s: float
    speed_m_s: float
    direction_deg: float = math.nan
    valid: bool = True
    detail: str = ""

    @classmethod
    def invalid(cls, time_s: float, detail: str) -> WindReading:
        """A reading that carries no usable value, only its time and the reason."""
        return cls(time_s=time_s, speed_m_s=math.nan, direction_deg=math.nan, valid=False,
                   detail=detail)


@runtime_checkable
class WindSensor(Protocol):
    """An anemometer as the controller sees it."""

    async def read(self) -> WindReading:
        """The latest reading (never raises for a device problem)."""
        ...

    async def close(self) -> None:
        """Release the port or connection (idempotent)."""
        ...


__all__ = ["WindReading", "WindSensor"]
