"""Wind supervisor: readings in, a stow verdict out.

``WindMonitor`` and ``wind_latch`` are pure (no I/O, no clock of their own);
``WindSupervisor`` adds the one I/O step, reading the sensor through its port.

``WindMonitor`` is fed anemometer readings (``add``) with their times and answers, for
any time ``t`` (``verdict(t)``):

- the mean wind over ``mean_window_s`` (default 600 s, the WMO 10-minute mean);
- the gust: the 3 s running mean (``gust_window_s``) ending at the latest reading, and
  its peak over the mean window, which is the WMO gust (WMO-No. 8, the highest 3 s
  running mean in the reporting period);
- the age of the latest valid reading, and frozen-value detection (identical speed and
  direction for ``frozen_s`` or longer: a stuck sensor or a replaying converter);
- the decision: ``STOW`` (3 s gust above ``gust_stow_m_s``, or mean above
  ``wind_stow_m_s``), ``SENSOR_LOST`` (no valid reading for ``max_age_s``, or frozen:
  stows when ``stow_on_sensor_loss``), ``CALM`` (every valid reading below
  ``wind_resume_m_s`` for ``calm_s``, the sensor healthy all that time), else ``OK``.

Means are arithmetic means of the valid readings inside the window ending at the latest
valid reading (time ``last_valid_s``); the verdict's ``age_s`` says how old that is.
Speeds are m/s, times UTC unix seconds, directions degrees from north through east
(where the wind comes from).

The engine keeps the latch: stow when ``verdict.stow``; leave the wind stow when the
decision is ``CALM``.  ``WindMonitor`` mutates only itself.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from tracker.mount.wind import WindReading, WindSensor

log = logging.getLogger(__name__)


class WindDecision(enum.Enum):
    """What the wind supervisor says at a given time."""

    OK = "ok"                      # no reason to stow; not calm long enough to resume
    STOW = "stow"                  # gust or mean above its limit
    SENSOR_LOST = "sensor_lost"    # no valid reading for max_age_s, or a frozen value
    CALM = "calm"                  # below the resume speed for calm_s: a wind stow may end


# Members tested at every verdict, as module constants (``Enum.X`` costs ~80 ns on Python
# 3.11: docs/performance.md).
_OK, _SENSOR_LOST, _CALM = WindDecision.OK, WindDecision.SENSOR_LOST, WindDecision.CALM
#: ``tuple.__new__``: a named tuple with every field, at half the cost of its ``__new__``.
_new = tuple.__new__


@dataclass(frozen=True, slots=True)
class WindLimits:
    """Thresholds and windows of the wind supervisor (m/s and seconds)."""

    wind_stow_m_s: float = 15.0
    gust_stow_m_s: float = 15.0
    wind_resume_m_s: float = 10.0
    calm_s: float = 600.0
    mean_window_s: float = 600.0
    gust_window_s: float = 3.0
    max_age_s: float = 10.0
    frozen_s: float = 600.0
    stow_on_sensor_loss: bool = True

    def __post_init__(self) -> None:
        for name in ("wind_stow_m_s", "gust_stow_m_s", "wind_resume_m_s", "mean_window_s",
                     "gust_window_s", "max_age_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite value > 0, not {v}")
        for name in ("calm_s", "frozen_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite value >= 0, not {v}")
        if self.wind_resume_m_s > min(self.wind_stow_m_s, self.gust_stow_m_s):
            raise ValueError("wind_resume_m_s must not exceed wind_stow_m_s or gust_stow_m_s")
        if self.gust_window_s > self.mean_window_s:
            raise ValueError("gust_window_s must not exceed mean_window_s")

    @classmethod
    def from_settings(cls, weather: object) -> WindLimits:
        """From a ``tracker.config.Weather`` section (``gust_stow_m_s`` unset = the mean limit)."""
        gust = getattr(weather, "gust_stow_m_s", None)
        stow = weather.wind_stow_m_s  # type: ignore[attr-defined]
        return cls(
            wind_stow_m_s=stow,
            gust_stow_m_s=stow if gust is None else gust,
            wind_resume_m_s=weather.wind_resume_m_s,  # type: ignore[attr-defined]
            calm_s=weather.calm_s,  # type: ignore[attr-defined]
            mean_window_s=getattr(weather, "mean_window_s", 600.0),
            gust_window_s=getattr(weather, "gust_window_s", 3.0),
            max_age_s=getattr(weather, "max_age_s", 10.0),
            frozen_s=getattr(weather, "frozen_s", 600.0),
            stow_on_sensor_loss=getattr(weather, "stow_on_sensor_loss", True),
        )


@dataclass(slots=True)
class WindVerdict:
    """The wind supervisor's answer at ``time_s`` (treat as immutable: not a frozen
    dataclass only because those cost several times as much to build, one per verdict).

    ``stow`` is whether the mount must be (or stay) stowed because of this verdict;
    ``mean_m_s``/``gust_m_s``/``peak_gust_m_s``/``speed_m_s`` are NaN without data;
    ``age_s`` is the age of the latest valid reading (inf if none yet).
    """

    time_s: float
    decision: WindDecision
    stow: bool
    reason: str
    speed_m_s: float
    direction_deg: float
    mean_m_s: float
    gust_m_s: float
    peak_gust_m_s: float
    age_s: float
    frozen: bool
    readings: int
    invalid_readings: int

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly (NaN/inf become None) for the status and the log."""
        def num(x: float) -> float | None:
            return x if math.isfinite(x) else None
        return {
            "decision": self.decision.value, "stow": self.stow, "reason": self.reason,
            "speed_m_s": num(self.speed_m_s), "direction_deg": num(self.direction_deg),
            "mean_m_s": num(self.mean_m_s), "gust_m_s": num(self.gust_m_s),
            "peak_gust_m_s": num(self.peak_gust_m_s), "age_s": num(self.age_s),
            "frozen": self.frozen, "readings": self.readings,
            "invalid_readings": self.invalid_readings,
        }


class _WindowMean:
    """Running arithmetic mean of (time, value) samples in (t_latest - window_s, t_latest]."""

    __slots__ = ("window_s", "_q", "_sum")

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._q: collections.deque[tuple[float, float]] = collections.deque()
        self._sum = 0.0

    def add(self, t: float, v: float) -> float:
        q = self._q
        q.append((t, v))
        self._sum += v
        edge = t - self.window_s
        while q and q[0][0] <= edge:
            self._sum -= q.popleft()[1]
        if len(q) == 1:  # re-anchor: no drift from long sums
            self._sum = q[0][1]
        return self._sum / len(q)

    @property
    def mean(self) -> float:
        return self._sum / len(self._q) if self._q else math.nan

    def clear(self) -> None:
        self._q.clear()
        self._sum = 0.0


class _WindowMax:
    """Maximum of (time, value) samples in (t_latest - window_s, t_latest] (monotonic deque)."""

    __slots__ = ("window_s", "_q")

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._q: collections.deque[tuple[float, float]] = collections.deque()

    def add(self, t: float, v: float) -> None:
        q = self._q
        while q and q[-1][1] <= v:
            q.pop()
        q.append((t, v))
        edge = t - self.window_s
        while q and q[0][0] <= edge:
            q.popleft()

    @property
    def max(self) -> float:
        return self._q[0][1] if self._q else math.nan

    def clear(self) -> None:
        self._q.clear()


class WindMonitor:
    """Wind supervisor state: feed ``add(reading)``, ask ``verdict(t)``.

    ``start_s`` is when supervision began (UTC unix s): without any valid reading the
    sensor counts as lost ``max_age_s`` after it.  Readings whose ``time_s`` is not
    later than the previous one are ignored (a sensor re-reporting its latest value).
    """

    def __init__(self, limits: WindLimits, start_s: float) -> None:
        self.limits = limits
        self.start_s = float(start_s)
        self._mean = _WindowMean(limits.mean_window_s)
        self._gust = _WindowMean(limits.gust_window_s)
        self._peak = _WindowMax(limits.mean_window_s)
        self._last_time_s = -math.inf
        self._last_valid_s: float | None = None
        self._ok_since_s: float | None = None   # start of the current healthy stretch
        self._last_above_resume_s = -math.inf
        self._speed_m_s = math.nan
        self._direction_deg = math.nan
        self._gust_now_m_s = math.nan
        self._run_value: tuple[float, float] | None = None
        self._run_since_s = -math.inf
        self.readings = 0
        self.invalid_readings = 0
        self.last_invalid_detail = ""
        self._calm_reason: tuple[WindLimits | None, str] = (None, "")

    def add(self, reading: WindReading) -> bool:
        """Take one reading; False (and nothing changes) if its time is not new."""
        t = float(reading.time_s)
        if not math.isfinite(t) or t <= self._last_time_s:
            return False
        self._last_time_s = t
        self.readings += 1
        speed, direction = float(reading.speed_m_s), float(reading.direction_deg)
        if not reading.valid or not math.isfinite(speed) or speed < 0:
            self.invalid_readings += 1
            self.last_invalid_detail = reading.detail or (
                "invalid reading" if not reading.valid else f"bad speed {speed!r} m/s")
            return True
        lim = self.limits
        if self._last_valid_s is None or t - self._last_valid_s > lim.max_age_s:
            # A new healthy stretch: the old means describe another time.
            self._ok_since_s = t
            self._mean.clear()
            self._gust.clear()
            self._peak.clear()
        value = (speed, direction if math.isfinite(direction) else -1.0)
        if value != self._run_value:
            if self._frozen_at(self._last_valid_s):
                self._ok_since_s = t  # a frozen stretch ends: calm must be re-earned
            self._run_value = value
            self._run_since_s = t
        self._last_valid_s = t
        self._speed_m_s = speed
        self._direction_deg = direction
        self._mean.add(t, speed)
        g = self._gust.add(t, speed)
        self._gust_now_m_s = g
        self._peak.add(t, g)
        if speed >= lim.wind_resume_m_s:
            self._last_above_resume_s = t
        return True

    def extend(self, readings: Iterable[WindReading]) -> None:
        for r in readings:
            self.add(r)

    def _frozen_at(self, last_valid_s: float | None) -> bool:
        fs = self.limits.frozen_s
        return (fs > 0 and last_valid_s is not None and self._run_value is not None
                and last_valid_s - self._run_since_s >= fs)

    @property
    def last_valid_s(self) -> float | None:
        return self._last_valid_s

    def verdict(self, t_s: float) -> WindVerdict:
        """The supervisor's answer at ``t_s`` (UTC unix s); changes nothing."""
        lim = self.limits
        last = self._last_valid_s
        age = math.inf if last is None else t_s - last
        frozen = self._frozen_at(last)
        mean, gust, peak = self._mean.mean, self._gust_now_m_s, self._peak.max
        lost_for = t_s - (self.start_s if last is None else last)
        if frozen:
            decision = WindDecision.SENSOR_LOST
            reason = (f"anemometer frozen at {self._speed_m_s:.2f} m/s for "
                      f"{(last or 0.0) - self._run_since_s:.0f} s (limit {lim.frozen_s:g} s)")
            stow = lim.stow_on_sensor_loss
        elif lost_for > lim.max_age_s:
            decision = WindDecision.SENSOR_LOST
            what = ("no reading yet" if last is None
                    else f"last valid reading {age:.1f} s ago")
            detail = f"; {self.last_invalid_detail}" if self.last_invalid_detail else ""
            reason = f"anemometer lost: {what} (limit {lim.max_age_s:g} s){detail}"
            stow = lim.stow_on_sensor_loss
        elif last is not None and gust > lim.gust_stow_m_s:
            decision, stow = WindDecision.STOW, True
            reason = (f"wind gust {gust:.1f} m/s ({lim.gust_window_s:g} s mean) above "
                      f"{lim.gust_stow_m_s:g} m/s")
        elif last is not None and mean > lim.wind_stow_m_s:
            decision, stow = WindDecision.STOW, True
            reason = (f"mean wind {mean:.1f} m/s ({lim.mean_window_s:g} s) above "
                      f"{lim.wind_stow_m_s:g} m/s")
        elif (last is not None and self._ok_since_s is not None
              and t_s - (self._ok_since_s if self._ok_since_s > self._last_above_resume_s
                         else self._last_above_resume_s) >= lim.calm_s):   # max(), unrolled
            decision, stow = WindDecision.CALM, False
            if self._calm_reason[0] is not lim:   # formatted once per limits, not per verdict
                self._calm_reason = (lim, f"wind below {lim.wind_resume_m_s:g} m/s for "
                                          f"{lim.calm_s:g} s")
            reason = self._calm_reason[1]
        else:
            decision, stow = _OK, False
            reason = ""
        return WindVerdict(     # positional: a dataclass's __init__ takes keywords slower
            t_s, decision, stow, reason,
            self._speed_m_s if last is not None else math.nan,
            self._direction_deg if last is not None else math.nan,
            mean, gust, peak, age, frozen, self.readings, self.invalid_readings)


def evaluate(limits: WindLimits, readings: Iterable[WindReading], t_s: float,
             start_s: float | None = None) -> WindVerdict:
    """The verdict at ``t_s`` after ``readings`` (supervision from ``start_s``, default the
    first reading's time or ``t_s``).  A pure function, for tests and replays."""
    rs = list(readings)
    if start_s is None:
        start_s = rs[0].time_s if rs else t_s
    mon = WindMonitor(limits, start_s)
    mon.extend(rs)
    return mon.verdict(t_s)


class WindJudgement(NamedTuple):
    """One supervision step for the engine (``WindSupervisor.judge``): the verdict;
    ``stow``, the reason to start a wind stow now ("" for none: within the limits, stowed
    already, or ``auto_stow`` off); ``calm``, calm for ``calm_s`` (a wind stow may end);
    ``events``, (kind, message) for the log, each condition reported once: the sensor
    lost or valid again, a stow withheld because nothing may move (parked, in fault)."""

    verdict: WindVerdict
    stow: str
    calm: bool
    events: tuple[tuple[str, str], ...] = ()


class WindSupervisor:
    """A wind sensor, its ``WindMonitor`` and the stow latch, for the engine.

    I/O and decision are apart: ``sample()`` reads the sensor once into the monitor
    (``poll_forever`` does it at the sensor's own pace in a task, so a slow or dead
    anemometer never stalls a control tick); ``judge(t, ...)`` is bookkeeping on the
    monitor's verdict at ``t``.  The stow latch itself is the automation's
    (``automation.decide``: stow unless parked; release when calm, from ``stowed`` or
    ``idle``).  ``sensor`` None (``weather.source = "none"``) gives no supervisor at all:
    build none.
    """

    def __init__(self, sensor: WindSensor, limits: WindLimits, start_s: float) -> None:
        self.sensor = sensor
        self.monitor = WindMonitor(limits, start_s)
        self._lost = False
        self._withheld_reported = False
        self.read_errors = 0

    async def sample(self) -> WindReading | None:
        """Read the sensor once into the monitor (a raising driver counts as no reading)."""
        try:
            r = await self.sensor.read()
        except Exception as exc:  # noqa: BLE001 - a sensor must never break the loop
            self.read_errors += 1
            log.warning("wind sensor read failed: %s", exc)
            return None
        self.monitor.add(r)
        return r

    async def poll_forever(self, period_s: float) -> None:
        """``sample()`` every ``period_s`` seconds until cancelled."""
        if not period_s > 0:
            raise ValueError(f"period_s must be > 0, not {period_s}")
        while True:
            await self.sample()
            await asyncio.sleep(period_s)

    def judge(self, t_s: float, *, stowed: bool, held: str = "",
              auto_stow: bool = True) -> WindJudgement:
        """The verdict at ``t_s`` for a mount ``stowed`` for wind or not, ``held`` (the
        state's name while nothing may move: parked, fault, e-stop, off; else "")."""
        v = self.monitor.verdict(t_s)
        events: list[tuple[str, str]] = []
        lost = v.decision is _SENSOR_LOST
        if lost != self._lost:
            self._lost = lost
            events.append(("warning", v.reason) if lost
                          else ("info", "anemometer readings valid again"))
        stow = v.reason if (v.stow and not stowed and auto_stow) else ""
        if stow and held and not self._withheld_reported:
            self._withheld_reported = True
            events.append(("warning", f"{v.reason}: {held}, not stowing (nothing moves "
                                      "while parked or in fault)"))
        elif not v.stow:
            self._withheld_reported = False
        return _new(WindJudgement, (v, stow, v.decision is _CALM,
                                    tuple(events) if events else ()))

    def restart(self, start_s: float) -> None:
        """Supervise afresh from ``start_s`` (UTC s): after a clock jump the monitor's
        time windows are meaningless."""
        self.monitor = WindMonitor(self.monitor.limits, start_s)

    async def close(self) -> None:
        await self.sensor.close()


def make_wind_supervisor(sensor: WindSensor | None, weather: object,
                         clock: Callable[[], float]) -> WindSupervisor | None:
    """A supervisor for ``sensor`` with the limits of the ``[weather]`` section, supervision
    starting now (``clock()``, UTC unix s); None without a sensor."""
    if sensor is None:
        return None
    return WindSupervisor(sensor, WindLimits.from_settings(weather), clock())


__all__ = ["WindDecision", "WindJudgement", "WindLimits", "WindMonitor", "WindReading",
           "WindSensor", "WindSupervisor", "WindVerdict", "evaluate", "make_wind_supervisor"]
