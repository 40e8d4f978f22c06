"""The control tick: small parts called in one order, and the operator commands.

One ``tick()`` reads top to bottom, each step using only what the steps above produced
this tick and the explicit ``Previous`` record of the last tick:

0. the Sun's position and rates now (``sunplan.SunAndPlan``: track and plan);
1. read both drives (``AxisBus``);
2. measure: the boresight's sky direction and its error against the current task's target
   (``recorder.measure``);
3. supervise: clock, drives, wind, acquisition, the Sun interlock; each returns a verdict
   (``supervise``, ``weather``, ``interlock``);
4. act on safety verdicts (fault, e-stop) at once;
5. decide: the automation, a pure function of the situation (``automation.decide``);
6. fire the decision's transitions;
7. resolve the task into encoder-frame demands through the named frames (``demand``);
8. control law per axis (``tracker.control.law``);
9. command both drives;
10. record the sample (``recorder.Recorder``) and keep the ``Previous`` record.

Time comes from the injected clock (UTC for the Sun, monotonic for durations).  Operator
commands are typed (``commands``), checked against one table of motion rules and the
envelope, audited whether accepted or not, and applied between ticks as the pure
``commands.effect`` says.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tracker.astro.timesync import ClockSync
from tracker.clock import Clock, monotonic_fn
from tracker.config import Settings
from tracker.control import law
from tracker.control.law import AxisLimits
from tracker.control.machine import FOLLOWING, STOPPED, State, StateMachine
from tracker.errors import StateError, TrackerError
from tracker.loop import automation
from tracker.loop.commands import Command, Context, Effect, Reset, check_motion_rules, effect
from tracker.loop.demand import Demand, LoadOffset, acquisition_az, resolve
from tracker.loop.interlock import InterlockVerdict, SunInterlock
from tracker.loop.recorder import Measurement, Recorder, measure
from tracker.loop.restore import restore
from tracker.loop.sunplan import SunAndPlan
from tracker.loop.supervise import (
    AXES,
    AcquisitionSupervisor,
    ClockSupervisor,
    ClockTrust,
    DriveSupervisor,
    DriveVerdict,
)
from tracker.loop.tasks import HOLD, Task, TaskKind
from tracker.loop.weather import WindSupervisor, WindVerdict
from tracker.mount.axis import Axis, AxisState, Condition
from tracker.mount.bores import BoreSet, aim_point, reference_offset_arcsec
from tracker.mount.envelope import Envelope
from tracker.mount.frames import Frames
from tracker.mount.pointing import PointingModel
from tracker.planning.planner import Plan, Window, slew_time_s
from tracker.planning.planner import plan as make_plan
from tracker.timefmt import iso_utc

log = logging.getLogger(__name__)

__all__ = ["Engine", "iso_utc", "Task", "TaskKind", "HOLD"]

#: Position error (deg) and speed (deg/s) under which a move counts as arrived.
ARRIVED_DEG = 0.01
ARRIVED_SPEED_DEG_S = 0.005
#: The anemometer is read and judged at this period (s): ultrasonic anemometers report at
#: 1-4 Hz; the gust is a 3 s mean.
WIND_PERIOD_S = 0.25
#: The independent Sun interlock checks the tracked target at this period (s): the Sun
#: moves at most 15 arcsec/s, the interlock's bound is 180 arcsec.
INTERLOCK_PERIOD_S = 1.0


#: States in which nothing moves: a wind stow is withheld (and reported once).
_HELD = (State.PARKED, *STOPPED)
# The members the tick tests, as module constants: Python 3.11 looks ``State.X`` up through
# ``EnumType.__getattr__``'s hook, ~80 ns, some 40 times a tick in all; a global costs
# ~9 ns (docs/performance.md).
_TRACKING, _ACQUIRING, _PARKED = State.TRACKING, State.ACQUIRING, State.PARKED
_SUN, _AXES, _SKY, _JOG = TaskKind.SUN, TaskKind.AXES, TaskKind.SKY, TaskKind.JOG
#: ``tuple.__new__``: the tick's ``Situation`` with every field, at half the cost of its
#: generated ``__new__`` (see law._new).
_new = tuple.__new__


class AxisBus:
    """Reads and commands both axes: concurrently when the drives are on a wire (each
    request waits for an answer), one after the other for in-process drives (cheaper).
    The drive factory says which: an axis with ``concurrent_io = True`` is on a wire."""

    def __init__(self, axes: Mapping[str, Axis]) -> None:
        self.axes = dict(axes)
        self.concurrent = any(getattr(a, "concurrent_io", False) for a in self.axes.values())

    async def read(self) -> dict[str, AxisState]:
        az, el = self.axes["azimuth"], self.axes["elevation"]
        if self.concurrent:
            a, e = await asyncio.gather(az.read(), el.read())
        else:
            a, e = await az.read(), await el.read()
        return {"azimuth": a, "elevation": e}

    async def command(self, velocities: Mapping[str, float]) -> None:
        az, el = self.axes["azimuth"], self.axes["elevation"]
        if self.concurrent:
            await asyncio.gather(az.command_velocity(velocities["azimuth"]),
                                 el.command_velocity(velocities["elevation"]))
        else:
            await az.command_velocity(velocities["azimuth"])
            await el.command_velocity(velocities["elevation"])

    async def each(self, method: str) -> None:
        for axis in self.axes.values():
            await getattr(axis, method)()


@dataclass(slots=True)
class Previous:
    """What tick N+1 may know of tick N: the velocities it commanded, while following the
    Sun the mount azimuth it used (so the cable-wrap turn never jumps), and the load
    feed-forward's predicted deflection of the magnet from its encoders (azimuth, elevation
    axis degrees, positive = the magnet at the larger axis angle; zero when not applied)."""

    velocities: dict[str, float]
    sun_mount_az_deg: float | None = None
    deflection_deg: tuple[float, float] = (0.0, 0.0)


class Engine:
    """The controller's tick and operator commands (see the module docstring)."""

    def __init__(self, settings: Settings, axes: Mapping[str, Axis], store: Any, clock: Clock, *,
                 pointing: PointingModel | None = None,
                 wind: WindSupervisor | None = None, sample_wind_each_tick: bool = True,
                 true_direction: Callable[[], tuple[float, float]] | None = None,
                 sample_sinks: list[Callable[[Any], None]] | None = None) -> None:
        self.settings = settings
        self.envelope = Envelope.from_settings(settings)
        if pointing is None:
            model_file = settings.pointing.model_file
            pointing = (PointingModel.load(settings.relative_path(model_file)) if model_file
                        else PointingModel.identity())
        self.pointing = pointing
        self.frames = Frames(self.envelope, pointing)
        self.bus = AxisBus(axes)
        self.axes = self.bus.axes
        self.store = store
        self.clock = clock
        self._monotonic = monotonic_fn(clock)
        #: The anemometer's supervisor (None: ``weather.source = "none"``).  With
        #: ``sample_wind_each_tick`` the engine reads it every tick (in-process sensors, dry
        #: runs); otherwise a task on the control loop polls it (a slow sensor never stalls
        #: a tick).
        self.wind = wind
        self._sample_wind = sample_wind_each_tick
        self.wind_verdict: WindVerdict | None = None
        self.interlock = SunInterlock.from_settings(settings)
        self.interlock_verdict: InterlockVerdict | None = None
        self._clock_trust = ClockTrust(clock, settings)
        self._wind_due_mono = -math.inf
        self._wind_last: tuple[str, bool] = ("", False)
        self._interlock_due_mono = -math.inf
        self._true_direction = true_direction
        self._load_offset = LoadOffset.from_settings(settings)   # None: no load feed-forward
        tr = settings.tracking
        self.period_s = 1.0 / tr.control_rate_hz
        # Per-run constants of the tick (the settings are frozen).
        self._on_sun_tolerance_arcsec = tr.on_sun_tolerance_arcsec
        self._gain_per_s = tr.position_gain_per_s
        env, ax = settings.envelope, settings.axes
        self._limits = {
            "azimuth": AxisLimits(env.azimuth_min_deg, env.azimuth_max_deg,
                                  ax.azimuth.max_speed_deg_s, ax.azimuth.max_accel_deg_s2),
            "elevation": AxisLimits(env.elevation_min_deg, env.elevation_max_deg,
                                    ax.elevation.max_speed_deg_s, ax.elevation.max_accel_deg_s2),
        }
        self.machine = StateMachine(guards={"can_reset": self._drives_ok}, on_change=self._changed)
        self.auto_tracking = tr.auto_track
        self.task: Task = HOLD
        self.boresight = env.boresights[0].name
        self.window: Window | None = None
        #: The Sun track and the plan the automation follows.
        self._sky = SunAndPlan(settings)
        self._states: dict[str, AxisState] = {}
        #: (task, boresight, its demand) of the last AXES task resolved.
        self._axes_cache: tuple[Task, str, Demand | None] | None = None
        self._prev = Previous({"azimuth": 0.0, "elevation": 0.0})
        self._clock_sup = ClockSupervisor()
        self._drive_sup = DriveSupervisor()
        self._acq = AcquisitionSupervisor(settings)
        #: The automation's memo of pre-position slew times (its inputs repeat while waiting).
        self._slew_times = automation.SlewTimes(settings)
        self._drives_enabled = False
        self.sun = (0.0, 0.0, 0.0, 0.0)
        self._fault_pending = False
        self._faults: list[dict[str, Any]] = []
        #: (UTC unix s, text) of every fault since start, for reports.
        self.fault_history: list[tuple[float, str]] = []
        self._wind_stowed = False
        sinks = list(sample_sinks or [])
        if store is not None:
            sinks.insert(0, store.add_sample)
        self.recorder = Recorder(1.0 / tr.log_rate_hz, 10 * self.period_s + 1.0, sinks,
                                 BoreSet.from_config(settings.bore_list, tr.reference_bore))
        #: Offset (x, y arcsec) of the bore aimed at the Sun; (0, 0): the mechanical axis.
        self._aim_offset = reference_offset_arcsec(settings.bore_list, tr.reference_bore)
        self.measurement = Measurement((math.nan, math.nan), (math.nan, math.nan), math.nan)
        self.on_sun = False
        #: At the current AXES/SKY task's target and still (as of the last tick).
        self.arrived = False

    # ------------------------------------------------------------------ views for callers
    @property
    def state(self) -> str:
        return self.machine.state.value

    @property
    def plan_now(self) -> Plan | None:
        """The plan the automation is following (covers about [t - 1 d, t + 2 d])."""
        return self._sky.plan

    @property
    def axis_states(self) -> Mapping[str, AxisState]:
        """The last reading of each axis."""
        return self._states

    @property
    def error_arcsec(self) -> float:
        return self.measurement.error_arcsec

    @property
    def true_error_arcsec(self) -> float:
        return self.measurement.true_error_arcsec

    @property
    def pointing_sky(self) -> tuple[float, float]:
        return self.measurement.pointing_sky

    @property
    def target_sky(self) -> tuple[float, float]:
        return self.measurement.target_sky

    @property
    def clock_sync(self) -> ClockSync | None:
        """The clock's synchronisation state as last read (None before the first tick)."""
        return self._clock_trust.sync

    @property
    def faults(self) -> tuple[Mapping[str, Any], ...]:
        """The faults not yet acknowledged by a reset (source, condition, text, time_utc)."""
        return tuple(self._faults)

    @property
    def fault_pending(self) -> bool:
        """A fault happened and no operator reset has acknowledged it yet."""
        return self._fault_pending

    @property
    def wind_m_s(self) -> float | None:
        """The anemometer's speed (m/s) in the last verdict, None without one."""
        v = self.wind_verdict
        return v.speed_m_s if v is not None and v.speed_m_s == v.speed_m_s else None

    @property
    def wind_stowed(self) -> bool:
        """Stowed for wind, until the wind has been calm for the calm time."""
        return self._wind_stowed

    @property
    def samples_wind_each_tick(self) -> bool:
        """The tick reads the anemometer itself (otherwise a task must poll it)."""
        return self._sample_wind

    @property
    def settled(self) -> bool:
        """Tracking, and on the Sun for at least the settle time (errors count from here)."""
        return (self.machine.state is _TRACKING
                and self._acq.settled(self._monotonic()))

    @property
    def stopped(self) -> bool:
        """Neither drive reports motion (its "moving" flag: a profile running or the motor
        visibly moving; a held axis jittering in the wind is not moving)."""
        return not any(s.moving for s in self._states.values())

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Connect and enable the drives; take over from the log what ``restore`` says: an
        unacknowledged fault, the automatic-tracking flag, a wind stow, a park."""
        t = self.clock.now_s()
        self._ensure_ephemeris(t)
        for axis in self.axes.values():
            await axis.connect()
        before = await self.bus.read()
        park = self.settings.positions.park
        park_task = Task(TaskKind.AXES, park.azimuth_deg, park.elevation_deg)
        d = self._axes_demand(park_task)
        r = restore(self.store.last_state() if self.store is not None else None,
                    (before["azimuth"].position_deg, before["elevation"].position_deg),
                    (d.azimuth.position_deg, d.elevation.position_deg) if d is not None
                    else (math.nan, math.nan))
        if not r.held:
            await self._clear_stale_watchdogs(t)
        if r.wind_stowed:
            self._set_wind_stowed(t, True, "before the restart")
        if r.auto_tracking is not None:
            self._set_auto_tracking(t, r.auto_tracking, "unacknowledged fault" if r.held
                                    else "as the log left it")
        await self.bus.each("enable")
        self._drives_enabled = True
        self._event(t, "info", "engine started; auto tracking "
                    f"{'on' if self.auto_tracking else 'off'}",
                    data={"auto_tracking": self.auto_tracking})
        self.machine.fire("enable", "start")
        self._states = await self.bus.read()
        if r.held:
            self._enter_fault(t, "fault", r.held, [r.fault])
        elif r.parked:
            # the first tick disables the drives; nothing moves
            self.task = park_task
            self.machine.fire("park", "parked before the restart")
            self.machine.fire("parked", "at the park position")
        elif r.warning:
            self._event(t, "warning", r.warning)

    async def _clear_stale_watchdogs(self, t: float) -> None:
        """Reset drives that latched WATCHDOG while no controller ran (a clean restart):
        the lost heartbeat was this controller's absence, not a drive fault."""
        for name, axis in self.axes.items():
            st = await axis.read()
            if st.condition is Condition.WATCHDOG:
                await axis.reset()
                self._event(t, "warning", f"{name}: drive watchdog latched while no controller "
                            "was running (restart); reset at start", source=name)

    async def shutdown(self) -> None:
        """Ramp both drives to zero, record it, flush and close the log."""
        t = self.clock.now_s()
        await self.bus.each("stop")
        self.recorder.flush(t)
        self._event(t, "info", "engine stopped (drives ramped to zero)")
        await self.bus.each("close")
        if self.wind is not None:
            await self.wind.close()
        if self.store is not None:
            self.store.flush()
            self.store.close()

    # ------------------------------------------------------------------ the tick
    async def tick(self) -> None:
        """One control cycle at the clock's current time (see the module docstring)."""
        t, mono = self.clock.now_s(), self._monotonic()
        jump = self._clock_sup.check(t, mono).jump_s
        if jump is not None:
            self._clock_jumped(t, jump)
        sky = self._sky
        lo, hi = sky.span
        if not lo <= t <= hi:
            self._ensure_ephemeris(t)
        assert sky.track is not None
        self.sun = sky.track.altaz_rates(t)
        if self._aim_offset != (0.0, 0.0):
            # the mechanical axis' target: the reference bore's optical axis on the Sun
            az, el = aim_point(self.sun[0], self.sun[1], *self._aim_offset)
            self.sun = (az, el, self.sun[2], self.sun[3])
        # 1. read
        states = self._states = await self.bus.read()
        here = (states["azimuth"].position_deg, states["elevation"].position_deg)
        # 2. measure
        state = self.machine.state
        # the magnet's axes as the encoders plus the load model's deflection, when applied
        d_az, d_el = self._prev.deflection_deg
        magnet = here if d_az == 0.0 and d_el == 0.0 else (here[0] + d_az, here[1] + d_el)
        m = self.measurement = measure(self.task, self.sun, self.frames, self.boresight, magnet,
                                       self._true_direction() if self._true_direction
                                       and state is _TRACKING else None)
        self.on_sun = (state is _TRACKING
                       and m.error_arcsec <= self._on_sun_tolerance_arcsec)
        # 3. supervise (the periodic ones only when their period has elapsed)
        drives = self._drive_sup.check(mono, states)
        if self.wind is not None and mono < self._wind_due_mono:
            wind_stow, wind_calm = self._wind_last
            if self._wind_stowed:
                wind_stow = ""
        else:
            wind_stow, wind_calm = await self._supervise_wind(t, mono)
        trust = self._clock_trust
        clock_ok = trust.ok if mono < trust.due_mono_s else self._check_clock(t, mono)
        acquired = False
        follow_fault = ""
        if state is _ACQUIRING:
            on_turn = self._on_demanded_turn(here)
            v = self._acq.check_acquiring(mono, m.error_arcsec, on_turn)
            acquired, follow_fault = v.acquired, v.fault
        elif state is _TRACKING:
            follow_fault = self._acq.check_tracking(mono, m.error_arcsec).fault
        if (self.interlock is not None and self.task.kind is _SUN
                and state in FOLLOWING
                and mono >= self._interlock_due_mono):
            self._interlock_due_mono = mono + INTERLOCK_PERIOD_S
            iv = self.interlock_verdict = self.interlock.check(t, *m.target_sky)
            if not iv.ok:
                follow_fault = f"Sun interlock: {iv.reason}"
        # 4. safety verdicts act at once
        if not drives.ok:
            self._drive_fault(t, drives)
        elif follow_fault and state in FOLLOWING:
            self._enter_fault(t, "fault", follow_fault, [{
                "source": "controller", "condition": Condition.FOLLOWING_ERROR.value,
                "text": f"pointing error {m.error_arcsec:.0f} arcsec", "time_utc": iso_utc(t)}])
        # 5. decide
        self.arrived = self._arrived(here, states)
        decision = automation.decide(_new(automation.Situation, (
            t, mono, self.machine.state, self.auto_tracking, self.task, self.window,
            sky.plan, here, self.arrived, acquired, wind_stow, wind_calm,
            self._wind_stowed, self._fault_pending, clock_ok)), self.settings, self._slew_times)
        # 6. fire
        self._apply(t, decision)
        # 7-9. demand, control law, drives
        await self._drive(t, here)
        # 10. record
        self.recorder.record(t, state, self.boresight, m, self.on_sun, here)

    async def _supervise_wind(self, t: float, mono: float) -> tuple[str, bool]:
        """The wind verdict as (stow cause or "", calm): ``WindSupervisor.judge`` every
        ``WIND_PERIOD_S`` (reading the sensor first when the tick samples it)."""
        wind = self.wind
        if wind is None:
            return "", False
        if mono < self._wind_due_mono:
            stow, calm = self._wind_last
            return (stow if not self._wind_stowed else ""), calm
        self._wind_due_mono = mono + WIND_PERIOD_S
        if self._sample_wind:
            await wind.sample()
        state = self.machine.state
        j = wind.judge(t, stowed=self._wind_stowed,
                       held=state.value if state in _HELD else "",
                       auto_stow=self.settings.weather.auto_stow)
        v = self.wind_verdict = j.verdict
        for kind, message in j.events:
            self._event(t, kind, message, source="weather", data={"wind": v.as_dict()})
        self._wind_last = (j.stow, j.calm)
        return self._wind_last

    def _check_clock(self, t: float, mono: float) -> bool:
        """``ClockTrust.check`` now, its first report of a reason a warning event."""
        warning = self._clock_trust.check(mono, (self.sun[2], self.sun[3]))
        if warning:
            sync = self._clock_trust.sync
            self._event(t, "warning", warning, source="clock",
                        data={"clock": sync.as_dict() if sync is not None else None})
        return self._clock_trust.ok

    def _clock_jumped(self, t: float, jump_s: float) -> None:
        self._event(t, "warning", f"clock jumped by {jump_s:+.1f} s; re-planning",
                    data={"jump_s": jump_s})
        self._sky.replan()
        self._prev.sun_mount_az_deg = None
        self.recorder.restart()
        if self.wind is not None:   # its windows are in UTC: start them again
            self.wind.restart(t)
        if self.machine.state is State.TRACKING:
            self.machine.fire("reacquire", "clock jump")
            self._start_acquisition(t)

    def _apply(self, t: float, d: automation.Decision) -> None:
        if d.wind_stowed is not None:
            self._set_wind_stowed(t, d.wind_stowed)
        if d.note:
            self._event(t, "info", d.note)
        if d.auto_tracking is not None:
            self._set_auto_tracking(t, d.auto_tracking, d.note or "automation")
        if d.window is not self.window:
            self.window = d.window
            if d.window is not None:
                self.boresight = d.window.boresight
        if d.task is not self.task and d.task != self.task:
            self.task = d.task
        for trigger, cause in d.steps:
            if trigger in ("close_window", "stow", "park"):
                self.recorder.flush(t)
            self.machine.fire(trigger, cause)
        if d.opened:
            self._prev.sun_mount_az_deg = None
            self._start_acquisition(t)

    def _start_acquisition(self, t: float) -> None:
        """The slew-time budget of an acquisition starts now."""
        deadline = None
        w = self.window
        track = self._sky.track
        if track is not None and w is not None and self._states:
            az, el = track.altaz_rates(t)[:2]
            try:
                to = self.frames.sky_to_mount(w.boresight, az, el,
                                              near_az_deg=acquisition_az(
                                                  self.envelope, self.frames, track, w,
                                                  t, az, self._states["azimuth"].position_deg))
            except TrackerError:
                to = (w.entry_axis_az_deg, w.entry_axis_el_deg)
            here = (self._states["azimuth"].position_deg, self._states["elevation"].position_deg)
            tr = self.settings.tracking
            deadline = (self._monotonic() + 1.5 * slew_time_s(self.settings, here, to)
                        + tr.settle_s + tr.following_error_grace_s)
        self._acq.start(deadline)
        self.on_sun = False

    def _on_demanded_turn(self, here: tuple[float, float]) -> bool:
        """On the cable-wrap turn the Sun demand uses: a slew the long way round passes the
        Sun's direction on the other turn, which is not the end of the acquisition."""
        ref = self._prev.sun_mount_az_deg
        return ref is not None and abs(here[0] - ref) < 1.0

    def _arrived(self, here: tuple[float, float], states: Mapping[str, AxisState]) -> bool:
        """At the current AXES/SKY task's target, both axes (nearly) still."""
        task = self.task
        kind = task.kind
        if kind is not _AXES and kind is not _SKY:
            return False
        try:
            d = (self._axes_demand(task) if kind is _AXES
                 else resolve(task, self.sun, self.frames, boresight=self.boresight,
                              sun_ref_az_deg=None, entry_az_deg=None, here_az_deg=here[0]))
        except TrackerError:
            return False
        if d is None:
            return False
        return (abs(here[0] - d.azimuth.position_deg) < ARRIVED_DEG
                and abs(here[1] - d.elevation.position_deg) < ARRIVED_DEG
                and abs(states["azimuth"].velocity_deg_s) < ARRIVED_SPEED_DEG_S
                and abs(states["elevation"].velocity_deg_s) < ARRIVED_SPEED_DEG_S)

    def _axes_demand(self, task: Task) -> Demand | None:
        """``resolve`` of an AXES task: a function of the task and the boresight alone, so
        it is computed once per task (not twice a tick while slewing, parked or stowed)."""
        cached = self._axes_cache
        if cached is not None and cached[0] is task and cached[1] == self.boresight:
            return cached[2]
        d = resolve(task, self.sun, self.frames, boresight=self.boresight,
                    sun_ref_az_deg=None, entry_az_deg=None, here_az_deg=math.nan)
        self._axes_cache = (task, self.boresight, d)
        return d

    async def _drive(self, t: float, here: tuple[float, float]) -> None:
        """Demands -> control law -> drives; stopped in fault, disabled when parked."""
        state = self.machine.state
        if state in STOPPED:
            await self.bus.each("stop")
            self._prev = Previous({"azimuth": 0.0, "elevation": 0.0})
            return
        if state is _PARKED:
            # Parked: drives disabled, brakes on (a parked magnet does not hold on its motors).
            if self._drives_enabled:
                await self.bus.each("disable")
                self._drives_enabled = False
                self._prev = Previous({"azimuth": 0.0, "elevation": 0.0})
                self._event(t, "info", "parked: drives disabled, brakes applied")
            return
        if not self._drives_enabled:
            await self.bus.each("enable")
            self._drives_enabled = True
        w, task = self.window, self.task
        deflection = (0.0, 0.0)
        if task.kind is _AXES:
            demand = self._axes_demand(task)
        else:
            entry_az = (acquisition_az(self.envelope, self.frames, self._sky.track, w, t,
                                       self.sun[0], here[0])
                        if w is not None and self._prev.sun_mount_az_deg is None else None)
            demand = resolve(task, self.sun, self.frames, boresight=self.boresight,
                             sun_ref_az_deg=self._prev.sun_mount_az_deg,
                             entry_az_deg=entry_az, here_az_deg=here[0])
            if (self._load_offset is not None and demand is not None
                    and task.kind is _SUN and state in FOLLOWING):
                demand = self._load_offset.apply(demand, here, self.wind_verdict, t)
                deflection = self._load_offset.last_deg
        last, dt, lim = self._prev.velocities, self.period_s, self._limits
        if demand is None:
            wanted = {"azimuth": 0.0, "elevation": 0.0}
            if self.task.kind is _JOG:
                wanted[self.task.jog_axis] = self.task.jog_rate_deg_s
            v = {n: law.velocity_step(lim[n], wanted[n], self._states[n].position_deg, last[n], dt)
                 for n in AXES}
            sun_ref = None
        else:
            gain = self._gain_per_s
            v = {"azimuth": law.axis_step(lim["azimuth"], demand.azimuth, here[0],
                                          last["azimuth"], gain, dt).velocity_deg_s,
                 "elevation": law.axis_step(lim["elevation"], demand.elevation, here[1],
                                            last["elevation"], gain, dt).velocity_deg_s}
            sun_ref = demand.mount_az_deg if self.task.kind is _SUN else None
        await self.bus.command(v)
        self._prev = Previous(v, sun_ref, deflection)

    # ------------------------------------------------------------------ ephemeris and plan
    def _ensure_ephemeris(self, t: float) -> None:
        """Sun track and plan covering ``t``; a stale IERS table is a warning event."""
        for message in self._sky.ensure(t):
            self._event(t, "warning", f"stale IERS table: {message}", data={"iers": "stale"})

    # ------------------------------------------------------------------ faults
    def _drives_ok(self) -> bool:
        return all(self._states[n].condition is Condition.OK for n in AXES)

    def _drive_fault(self, t: float, v: DriveVerdict) -> None:
        state = self.machine.state
        if v.estop and state is not State.ESTOP:
            trigger = "estop"
        elif state not in (State.FAULT, State.ESTOP):
            trigger = "fault"
        else:
            return
        self._enter_fault(t, trigger, v.text(), [
            {"source": n, "condition": st.condition.value, "text": st.fault_text,
             "time_utc": iso_utc(t)} for n, st in v.problems])

    def _enter_fault(self, t: float, trigger: str, text: str, faults: list[dict[str, Any]]) -> None:
        """Hold, remember the fault until an operator reset, log it; automatic tracking
        resumes only by an explicit command (or ``tracking.resume_after_reset``)."""
        self.recorder.flush(t)
        self._faults.extend(faults)
        self._fault_pending = True
        self.task = HOLD
        self.fault_history.append((t, text))
        self.machine.fire(trigger, text)
        self._event(t, "fault", text, data={"problems": [(f["source"], f["condition"])
                                                         for f in faults]})

    # ------------------------------------------------------------------ logging
    def _set_auto_tracking(self, t: float, on: bool, cause: str, *, source: str | None = None,
                           always: bool = False) -> None:
        """The one place the automatic-tracking flag changes.  A change (or, with
        ``always``, any call) is an ``info`` event with the flag in its data, before any
        transition it causes: a restart resumes the last flag recorded
        (``TrackingStore.last_state``)."""
        if on == self.auto_tracking and not always:
            return
        self.auto_tracking = on
        self._event(t, "info", f"automatic tracking {'on' if on else 'off'} ({cause})",
                    source=source, data={"auto_tracking": on})

    def _set_wind_stowed(self, t: float, on: bool, cause: str = "") -> None:
        """Latch or release the wind stow; a change is logged with the flag in its data
        (what a restart resumes: ``TrackingStore.last_state``)."""
        if on == self._wind_stowed:
            return
        self._wind_stowed = on
        calm_s = self.settings.weather.calm_s
        text = (f"stowed for wind until calm for {calm_s:g} s" if on
                else "wind stow released")
        self._event(t, "info", f"{text} ({cause})" if cause else text, source="weather",
                    data={"wind_stowed": on})

    def _changed(self, source: State, dest: State, trigger: str, cause: str) -> None:
        t = self.clock.now_s()
        log.info("state %s -> %s (%s): %s", source.value, dest.value, trigger, cause)
        self._event(t, "state", f"{source.value} -> {dest.value}: {cause or trigger}",
                    data={"from": source.value, "to": dest.value, "trigger": trigger,
                          "cause": cause, "auto_tracking": self.auto_tracking})

    def _event(self, t: float, kind: str, message: str, *, source: str | None = None,
               data: dict[str, Any] | None = None) -> None:
        if kind in ("warning", "fault"):
            log.warning("%s: %s", kind, message)
        if self.store is not None:
            self.store.log_event(t, kind, message, source=source, data=data)

    # ------------------------------------------------------------------ operator commands
    async def execute(self, cmd: Command, *, source: str) -> None:
        """Validate ``cmd`` against the motion rules and the envelope, apply it, audit it.

        Refusals raise ``StateError``/``EnvelopeError`` naming the rule and the limit and
        change nothing.
        """
        t = self.clock.now_s()
        try:
            cmd.validate()
            if isinstance(cmd, Reset):
                await self._reset(t, source)
            else:
                check_motion_rules(cmd, self.machine.state, wind_stowed=self._wind_stowed)
                here = ((self._states["azimuth"].position_deg,
                         self._states["elevation"].position_deg) if self._states
                        else (math.nan, math.nan))
                self._apply_effect(t, effect(cmd, Context(
                    self.machine.state, self.machine.may, self.boresight, here,
                    self._monotonic(), self.settings, self.envelope, self.frames), source),
                    source)
        except TrackerError as exc:
            if self.store is not None:
                self.store.audit(t, source, cmd.name, cmd.args(), False, str(exc))
            log.warning("refused %s %s from %s: %s", cmd.name, cmd.args(), source, exc)
            raise
        if self.store is not None:
            self.store.audit(t, source, cmd.name, cmd.args(), True, "accepted")

    def _apply_effect(self, t: float, e: Effect, source: str) -> None:
        """Apply an accepted command's ``commands.Effect`` in its documented order."""
        if e.auto_tracking is not None:
            self._set_auto_tracking(t, e.auto_tracking, e.cause, source=source,
                                    always=e.announce)
        if e.leave_window:
            self._leave_window()
        if e.boresight is not None:
            self.boresight = e.boresight
        if e.task is not None:
            self.task = e.task
        if e.trigger is not None:
            self.machine.fire(e.trigger, e.cause)

    def _leave_window(self) -> None:
        if self.window is not None:
            self.recorder.flush(self.clock.now_s())
            self.window = None

    async def _reset(self, t: float, source: str) -> None:
        """Acknowledge faults: reset the drives and, if they are healthy, hold in idle.
        Automatic tracking stays off unless ``tracking.resume_after_reset``."""
        state = self.machine.state
        if state not in (State.FAULT, State.ESTOP) and not self._fault_pending:
            return
        await self.bus.each("reset")
        await self.bus.each("enable")
        self._drives_enabled = True
        self._states = await self.bus.read()
        if state in (State.FAULT, State.ESTOP) and not self._drives_ok():
            bad = "; ".join(f"{n}: {self._states[n].condition.value}" for n in AXES
                            if self._states[n].condition is not Condition.OK)
            raise StateError(f"reset refused: the fault is still present ({bad})")
        # The flag first, so the reset's state event records what a restart resumes.
        self._set_auto_tracking(t, self.settings.tracking.resume_after_reset,
                                f"reset from {source}", source=source)
        if state in (State.FAULT, State.ESTOP):
            self.machine.fire("reset", f"reset from {source}")
        self._fault_pending = False
        self._faults.clear()
        self._drive_sup.clear()
        self.task = HOLD
        self._prev = Previous({"azimuth": 0.0, "elevation": 0.0})

    # ------------------------------------------------------------------ views
    def status(self) -> dict[str, Any]:
        """A JSON-able snapshot of the controller (see docs/daemon.md)."""
        from tracker.loop.status import snapshot
        return snapshot(self)

    def plan(self, start_s: float, end_s: float) -> dict[str, Any]:
        return make_plan(self.settings, start_s, end_s).to_json()

    def events(self, *, limit: int = 100, after_id: int = 0) -> list[dict[str, Any]]:
        if self.store is None:
            return []
        events: list[dict[str, Any]] = self.store.events(limit=limit, after_id=after_id)
        return events
