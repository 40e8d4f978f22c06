"""The per-tick core shared by the daemon and the dry run.

One ``tick()``: read both axes -> react to drive conditions, wind and clock ->
let the automation pick the task (Sun, pre-position, park, stow, manual) ->
turn the task into axis demands (boresight, cable wrap, pointing model) ->
control law -> command both axes -> log.  Time comes from the injected clock;
the drives are whatever ``tracker.mount.axis.Axis`` implementations were given.

Operator commands (``goto``, ``jog``, ``park``...) are validated against the
envelope and the state before anything moves, and audited, accepted or not.
"""

from __future__ import annotations

import asyncio
import logging
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tracker.mount.axis import Axis, AxisState, Condition
from tracker.control import law as control
from tracker.clock import Clock
from tracker.config import Boresight, Settings
from tracker.control.law import AxisDemand, AxisLimits
from tracker.mount.envelope import Envelope
from tracker.astro.ephemeris import StaleIERSWarning, SunTrack
from tracker.errors import EnvelopeError, StateError, TrackerError
from tracker.control.machine import State, StateMachine
from tracker.planning.planner import Plan, Window, slew_time_s
from tracker.planning.planner import plan as make_plan
from tracker.mount.pointing import PointingModel

log = logging.getLogger(__name__)

AXES = ("azimuth", "elevation")
#: Sun track and plan cover [t - BEHIND_S, t + AHEAD_S]; rebuilt when fewer than MARGIN_S remain.
TRACK_BEHIND_S = 86400.0
TRACK_AHEAD_S = 2 * 86400.0
TRACK_MARGIN_S = 3 * 3600.0
#: A comms condition must persist this long before it is a fault (single lost frames are not).
COMMS_GRACE_S = 0.5
#: A clock step larger than this beyond the expected period is reported as a jump.
CLOCK_JUMP_S = 5.0
#: Position error (deg) and speed (deg/s) under which a slew counts as arrived.
ARRIVED_DEG = 0.01
ARRIVED_SPEED_DEG_S = 0.005
#: Longest accepted jog (s).
MAX_JOG_S = 600.0
#: Park between windows only when the next pre-position slew starts later than this (s).
PARK_IF_IDLE_FOR_S = 1800.0


def iso_utc(t_s: float) -> str:
    """UTC unix seconds -> ISO 8601 with 'Z' (to the millisecond)."""
    return datetime.fromtimestamp(t_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Task:
    """What the axes should do.  ``kind``: hold | sun | axes | sky | jog."""

    kind: str
    az_deg: float = 0.0          # axes: axis position; sky: sky direction
    el_deg: float = 0.0
    boresight: str = ""
    #: axes: the position is an ideal (sky-derived) axis position; apply the pointing model.
    model: bool = False
    jog_axis: str = ""
    jog_rate_deg_s: float = 0.0
    until_s: float = 0.0


HOLD = Task("hold")


class Engine:
    """The controller's core loop step and operator commands (see module docstring)."""

    def __init__(self, settings: Settings, axes: Mapping[str, Axis], store: Any, clock: Clock, *,
                 pointing: PointingModel | None = None,
                 wind_m_s: Callable[[], float | None] | None = None,
                 true_direction: Callable[[], tuple[float, float]] | None = None) -> None:
        self.settings = settings
        self.envelope = Envelope.from_settings(settings)
        self.axes = dict(axes)
        self.store = store
        self.clock = clock
        if pointing is None:
            model_file = settings.pointing.model_file
            pointing = (PointingModel.load(settings.relative_path(model_file)) if model_file
                        else PointingModel.identity())
        self.pointing = pointing
        self._wind_source = wind_m_s
        self._true_direction = true_direction
        tr = settings.tracking
        self.period_s = 1.0 / tr.control_rate_hz
        self._log_period_s = 1.0 / tr.log_rate_hz
        self._tol_arcsec = tr.on_sun_tolerance_arcsec
        self._gain = tr.position_gain_per_s
        env, ax = settings.envelope, settings.axes
        self._limits = {
            "azimuth": AxisLimits(env.azimuth_min_deg, env.azimuth_max_deg,
                                  ax.azimuth.max_speed_deg_s, ax.azimuth.max_accel_deg_s2),
            "elevation": AxisLimits(env.elevation_min_deg, env.elevation_max_deg,
                                    ax.elevation.max_speed_deg_s, ax.elevation.max_accel_deg_s2),
        }
        self.machine = StateMachine(guards={"can_reset": self._can_reset}, on_change=self._changed)
        self.auto_tracking = tr.auto_track
        self.task: Task = HOLD
        self.boresight = env.boresights[0].name
        self._boresights: dict[str, Boresight] = {}
        self._ages: tuple[float, dict] | None = None
        self.window: Window | None = None
        self._track: SunTrack | None = None
        self._plan: Plan | None = None
        self._iers_warned: set[str] = set()
        self._last_cmd = {"azimuth": 0.0, "elevation": 0.0}
        self._states: dict[str, AxisState] = {}
        self._comms_since: dict[str, float] = {}
        self._last_t: float | None = None
        self._jumped = False
        self._drives_enabled = False
        #: Drives on a wire answer in parallel; in-process ones are cheaper one after the other.
        self._concurrent_io = settings.drives.kind != "sim"
        self._sun = (0.0, 0.0, 0.0, 0.0)
        self._sun_az_axis_ref: float | None = None
        self._acquired_s: float | None = None      # when the current tracking (re)started
        self._on_target_s: float | None = None     # when it first came within tolerance
        self._acquire_deadline_s: float | None = None
        self._ferr_since: float | None = None
        self._fault_pending = False
        self._faults: list[dict] = []
        #: (UTC unix s, text) of every fault since start, for reports.
        self.fault_history: list[tuple[float, str]] = []
        self._wind_m_s: float | None = None
        self._wind_stowed = False
        self._calm_since: float | None = None
        self._acc = _Accumulator()
        self.error_arcsec = float("nan")
        self.true_error_arcsec = float("nan")
        self.pointing_sky = (float("nan"), float("nan"))
        self.target_sky = (float("nan"), float("nan"))
        self.demand_axes = (float("nan"), float("nan"))
        self._demand_task: Task | None = None
        self.on_sun = False

    # ------------------------------------------------------------------ lifecycle
    @property
    def state(self) -> str:
        return self.machine.state.value

    async def start(self) -> None:
        """Connect and enable the drives; resume automatic tracking if the log says so."""
        t = self.clock.now_s()
        self._ensure_ephemeris(t)
        for axis in self.axes.values():
            await axis.connect()
        await self._clear_stale_watchdogs(t)
        resume = self.store.last_state() if self.store is not None else None
        if resume and resume.get("auto_tracking"):
            if not self.auto_tracking:
                self._event(t, "info", "resuming automatic tracking from the log")
            self.auto_tracking = True
        for axis in self.axes.values():
            await axis.enable()
        self._drives_enabled = True
        self._event(t, "info", f"engine started; auto tracking {'on' if self.auto_tracking else 'off'}",
                    data={"auto_tracking": self.auto_tracking})
        self.machine.fire("enable", "start")
        await self._read(t)

    async def _clear_stale_watchdogs(self, t: float) -> None:
        """Reset drives that latched WATCHDOG while no controller ran (a daemon restart after
        a crash): the lost heartbeat was this controller's absence, not a drive fault."""
        for name, axis in self.axes.items():
            st = await axis.read()
            if st.condition is Condition.WATCHDOG:
                await axis.reset()
                self._event(t, "warning", f"{name}: drive watchdog latched while no controller "
                            "was running (restart after a crash?); reset at start", source=name)

    async def shutdown(self) -> None:
        """Ramp both drives to zero, record it, flush and close the log."""
        t = self.clock.now_s()
        for axis in self.axes.values():
            await axis.stop()
        self._flush_sample(t)
        self._event(t, "info", "engine stopped (drives ramped to zero)")
        for axis in self.axes.values():
            await axis.close()
        if self.store is not None:
            self.store.flush()
            self.store.close()

    # ------------------------------------------------------------------ the tick
    async def tick(self) -> None:
        """One control cycle at the clock's current time."""
        t = self.clock.now_s()
        self._check_clock(t)
        self._ensure_ephemeris(t)
        if self._jumped:
            self._jumped = False
            self._sun_az_axis_ref = None
            if self.machine.state is State.TRACKING:
                self._reacquire(t)
        await self._read(t)
        self._check_drives(t)
        self._check_wind(t)
        self._sun = self._track.altaz_rates(t)
        self._automate(t)
        await self._command(t)

    async def _read(self, t: float) -> None:
        if self._concurrent_io:
            az, el = await asyncio.gather(self.axes["azimuth"].read(), self.axes["elevation"].read())
            self._states["azimuth"], self._states["elevation"] = az, el
            return
        for name in AXES:
            self._states[name] = await self.axes[name].read()

    def _check_clock(self, t: float) -> None:
        last = self._last_t
        self._last_t = t
        if last is None:
            return
        step = t - last
        if step < -CLOCK_JUMP_S or step > CLOCK_JUMP_S + 10 * self.period_s:
            self._event(t, "warning", f"clock jumped by {step:+.1f} s; re-planning",
                        data={"jump_s": step})
            self._plan = None
            self._jumped = True
            self._acc = _Accumulator()

    def _ensure_ephemeris(self, t: float) -> None:
        """Rebuild the Sun track/plan when needed; a stale IERS table is a warning event."""
        tr, pl = self._track, self._plan
        if (tr is not None and pl is not None and tr.start_s <= t <= tr.end_s - TRACK_MARGIN_S
                and t <= pl.end_s - TRACK_MARGIN_S):
            return  # the common case: nothing to rebuild
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", StaleIERSWarning)
            self._build_ephemeris(t)
        for w in caught:
            if not issubclass(w.category, StaleIERSWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            elif str(w.message) not in self._iers_warned:
                self._iers_warned.add(str(w.message))
                self._event(t, "warning", f"stale IERS table: {w.message}",
                            data={"iers": "stale"})

    def _build_ephemeris(self, t: float) -> None:
        tr = self._track
        if tr is None or t < tr.start_s or t > tr.end_s - TRACK_MARGIN_S:
            site = self.settings.site
            t0 = t - TRACK_BEHIND_S
            self._track = SunTrack(site.latitude_deg, site.longitude_deg, site.height_m,
                                   t0, t + TRACK_AHEAD_S)
            self._plan = None
        if self._plan is None or t > self._plan.end_s - TRACK_MARGIN_S:
            tr = self._track
            self._plan = make_plan(self.settings, tr.start_s, tr.end_s, track=tr)

    # ------------------------------------------------------------------ safety
    def _check_drives(self, t: float) -> None:
        ok = Condition.OK
        if (self._states["azimuth"].condition is ok and self._states["elevation"].condition is ok
                and not self._comms_since):
            return
        problems = []
        estop = False
        for name in AXES:
            st = self._states[name]
            if st.condition is Condition.OK:
                self._comms_since.pop(name, None)
                continue
            if st.condition.is_comms:
                since = self._comms_since.setdefault(name, t)
                if t - since < COMMS_GRACE_S:
                    continue
            if st.condition is Condition.ESTOP:
                estop = True
            problems.append((name, st))
        state = self.machine.state
        if estop and state is not State.ESTOP:
            self._fault(t, problems, "estop")
        elif problems and state not in (State.FAULT, State.ESTOP):
            self._fault(t, problems, "fault")

    def _fault(self, t: float, problems: list[tuple[str, AxisState]], trigger: str) -> None:
        text = "; ".join(f"{n}: {st.condition.value}"
                         + (f" ({st.fault_text})" if st.fault_text else "") for n, st in problems)
        for n, st in problems:
            self._faults.append({"source": n, "condition": st.condition.value,
                                 "text": st.fault_text, "time_utc": iso_utc(t)})
        self._fault_pending = True
        self.task = HOLD
        self.fault_history.append((t, text))
        self.machine.fire(trigger, text)
        self._event(t, "fault", text, data={"problems": [(n, s.condition.value) for n, s in problems]})

    def _following_fault(self, t: float) -> None:
        self._faults.append({"source": "controller", "condition": Condition.FOLLOWING_ERROR.value,
                             "text": f"pointing error {self.error_arcsec:.0f} arcsec",
                             "time_utc": iso_utc(t)})
        self._fault_pending = True
        self.task = HOLD
        msg = (f"following error: {self.error_arcsec:.0f} arcsec for more than "
               f"{self.settings.tracking.following_error_grace_s:g} s "
               f"(limit {self.settings.tracking.following_error_limit_arcsec:g})")
        self.fault_history.append((t, msg))
        self.machine.fire("fault", msg)
        self._event(t, "fault", msg)

    def _can_reset(self) -> bool:
        return all(self._states[n].condition is Condition.OK for n in AXES)

    def _check_wind(self, t: float) -> None:
        if self._wind_source is None:
            return
        wind = self._wind_source()
        self._wind_m_s = wind
        if wind is None:
            return
        w = self.settings.weather
        state = self.machine.state
        if wind > w.wind_stow_m_s and w.auto_stow and not self._wind_stowed:
            if state is State.ESTOP or (state is State.FAULT and not self._can_reset()):
                return
            self._wind_stowed = True
            self._calm_since = None
            self.task = Task("axes", self.settings.positions.stow.azimuth_deg,
                             self.settings.positions.stow.elevation_deg)
            if state is not State.STOWING:
                self.machine.fire("stow", f"wind {wind:.1f} m/s above {w.wind_stow_m_s:g} m/s")
            return
        if self._wind_stowed:
            if wind < w.wind_resume_m_s:
                if self._calm_since is None:
                    self._calm_since = t
                if t - self._calm_since >= w.calm_s and state is State.STOWED:
                    self._wind_stowed = False
                    self._event(t, "info", f"wind calm ({wind:.1f} m/s) for {w.calm_s:g} s"
                                + ("; resuming" if w.auto_resume else "; staying stowed"))
                    if not w.auto_resume:
                        self.auto_tracking = False
            else:
                self._calm_since = None

    # ------------------------------------------------------------------ automation
    def _automate(self, t: float) -> None:
        m = self.machine
        state = m.state
        if state in (State.FAULT, State.ESTOP, State.OFF):
            self.task = HOLD
            return
        if self.task.kind == "jog" and t >= self.task.until_s:
            self.task = HOLD
        if state in (State.SLEWING, State.PARKING, State.STOWING, State.MANUAL) and self._arrived():
            if state is State.SLEWING:
                m.fire("arrive", "at pre-position")
            elif state is State.PARKING:
                m.fire("parked", "at park position")
            elif state is State.STOWING:
                m.fire("stowed", "at stow position")
            state = m.state
        if state is State.TRACKING:
            w = self.window
            # t < start: the clock jumped back to before the window (the Sun is not in the
            # envelope there: tracking it raised every tick until the drives' watchdog tripped).
            if w is None or t >= w.end_s or t < w.start_s:
                m.fire("close_window", "no window" if w is None else "Sun left the envelope"
                       if t >= w.end_s else "clock before the window start")
                self._flush_sample(t)
                self.window = None
                self.task = HOLD
                state = m.state
            else:
                self._follow_errors(t)
                return
        if not self.auto_tracking or self._wind_stowed or self._fault_pending:
            return
        plan = self._plan
        w = plan.window_at(t) if plan else None
        if w is not None and m.may("open_window"):
            self._open(t, w)
            return
        nxt = plan.next_window(t) if plan else None
        here = (self._states["azimuth"].position_deg, self._states["elevation"].position_deg)
        if nxt is not None:
            entry = (nxt.preposition_az_deg, nxt.preposition_el_deg)
            lead = slew_time_s(self.settings, here, entry) * 1.2 + 60.0
            start_slew = nxt.preposition_by_s - lead
            if t >= start_slew:
                if state is State.WAITING or (state is State.SLEWING and self.task.kind == "axes"
                                              and (self.task.az_deg, self.task.el_deg) == entry):
                    return
                self.task = Task("axes", *entry, boresight=nxt.boresight, model=True)
                if m.may("slew"):
                    m.fire("slew", f"pre-position for the window at {iso_utc(nxt.start_s)}")
                elif m.may("hold"):
                    m.fire("hold", "re-planning")
                return
            if start_slew - t < PARK_IF_IDLE_FOR_S and state is not State.PARKING:
                return
        if state in (State.IDLE, State.WAITING, State.SLEWING, State.STOWED):
            park = self.settings.positions.park
            self.task = Task("axes", park.azimuth_deg, park.elevation_deg)
            m.fire("park", "no window soon")

    def _open(self, t: float, w: Window) -> None:
        self.window = w
        self.boresight = w.boresight
        self._sun_az_axis_ref = None
        self.task = Task("sun", boresight=w.boresight)
        self._reacquire(t)
        self.machine.fire("open_window", f"window {iso_utc(w.start_s)} - {iso_utc(w.end_s)} "
                          f"({w.boresight})")

    def _arrived(self) -> bool:
        da, de = self.demand_axes
        # The demand must be the current task's: right after a new task (a wind stow while
        # tracking) it is still the previous one, where the mount already is.
        if math.isnan(da) or self._demand_task is not self.task:
            return False
        sa, se = self._states["azimuth"], self._states["elevation"]
        return (abs(sa.position_deg - da) < ARRIVED_DEG and abs(se.position_deg - de) < ARRIVED_DEG
                and abs(sa.velocity_deg_s) < ARRIVED_SPEED_DEG_S
                and abs(se.velocity_deg_s) < ARRIVED_SPEED_DEG_S)

    def _follow_errors(self, t: float) -> None:
        """Following-error supervision while tracking.

        Until the mount first reaches the Sun (error within tolerance) it has the
        slew time plus the settle time to get there; after that, an error above the
        limit for longer than the grace time is a fault.
        """
        tr = self.settings.tracking
        err = self.error_arcsec
        if self._on_target_s is None:
            # On target only on the demanded cable-wrap turn: a slew the long way round passes
            # the Sun's direction on the other turn, which is not the end of the acquisition.
            da = self.demand_axes[0]
            near = not math.isnan(da) and abs(self._states["azimuth"].position_deg - da) < 1.0
            if err <= self._tol_arcsec and near:
                self._on_target_s = t
            elif self._acquire_deadline_s is not None and t > self._acquire_deadline_s:
                self._following_fault(t)
            return
        if t - self._on_target_s < tr.settle_s:
            return
        if err > tr.following_error_limit_arcsec:
            if self._ferr_since is None:
                self._ferr_since = t
            elif t - self._ferr_since > tr.following_error_grace_s:
                self._following_fault(t)
        else:
            self._ferr_since = None

    def _reacquire(self, t: float) -> None:
        """Start (or restart) acquiring the Sun: the slew-time budget begins now."""
        self._acquired_s = t
        self._on_target_s = None
        self._ferr_since = None
        self._acquire_deadline_s = None
        self.error_arcsec = math.inf     # the last error belonged to the old target
        self.on_sun = False
        if self._track is not None and self.window is not None and self._states:
            az, el = self._track.altaz_rates(t)[:2]
            try:
                to = self.envelope.sky_to_axes(self.window.boresight, az, el,
                                               near_az_deg=self.window.entry_axis_az_deg)
            except EnvelopeError:
                to = (self.window.entry_axis_az_deg, self.window.entry_axis_el_deg)
            here = (self._states["azimuth"].position_deg, self._states["elevation"].position_deg)
            self._acquire_deadline_s = (t + 1.5 * slew_time_s(self.settings, here, to)
                                        + self.settings.tracking.settle_s
                                        + self.settings.tracking.following_error_grace_s)

    @property
    def settled(self) -> bool:
        """True while tracking, on the Sun for at least the settle time (errors count from here)."""
        return (self.machine.state is State.TRACKING and self._on_target_s is not None
                and (self._last_t or 0.0) - self._on_target_s >= self.settings.tracking.settle_s)

    # ------------------------------------------------------------------ demands and commands
    def _demand(self, t: float) -> tuple[AxisDemand, AxisDemand] | None:
        task = self.task
        if task.kind == "sun":
            az, el, az_rate, el_rate = self._sun
            b = self._geometry(task.boresight)
            ideal_az = az - b.azimuth_offset_deg
            ref = self._sun_az_axis_ref
            if ref is None:
                ref_az, _ = self.envelope.sky_to_axes(task.boresight, az, el,
                                                      near_az_deg=self.window.entry_axis_az_deg
                                                      if self.window else None)
                ref = ref_az
            ideal_az = control.nearest_turn_deg(ideal_az, ref)
            self._sun_az_axis_ref = ideal_az
            ideal_el = b.elevation_sign * el
            self.target_sky = (az, el)
            enc_az, enc_el = self.pointing.sky_to_axes(ideal_az, ideal_el)
            return (AxisDemand(enc_az, az_rate), AxisDemand(enc_el, b.elevation_sign * el_rate))
        if task.kind == "axes":
            self.target_sky = self.envelope.axes_to_sky(task.boresight or self.boresight,
                                                        task.az_deg, task.el_deg)
            if task.model:
                enc_az, enc_el = self.pointing.sky_to_axes(task.az_deg, task.el_deg)
                return AxisDemand(enc_az), AxisDemand(enc_el)
            return AxisDemand(task.az_deg), AxisDemand(task.el_deg)
        if task.kind == "sky":
            self.target_sky = (task.az_deg, task.el_deg)
            ideal = self.envelope.sky_to_axes(task.boresight, task.az_deg, task.el_deg,
                                              near_az_deg=self._states["azimuth"].position_deg)
            enc_az, enc_el = self.pointing.sky_to_axes(*ideal)
            return AxisDemand(enc_az), AxisDemand(enc_el)
        return None

    async def _command(self, t: float) -> None:
        state = self.machine.state
        sa, se = self._states["azimuth"], self._states["elevation"]
        # Where the boresight points, from the encoders through the pointing model.
        mech_az, mech_el = self.pointing.axes_to_sky(sa.position_deg, se.position_deg)
        b = self._geometry(self.boresight)
        self.pointing_sky = ((mech_az + b.azimuth_offset_deg) % 360.0, b.elevation_sign * mech_el)
        if state in (State.FAULT, State.ESTOP, State.OFF):
            for name in AXES:
                await self.axes[name].stop()
                self._last_cmd[name] = 0.0
            self.demand_axes = (float("nan"), float("nan"))
            self._log(t, state)
            return
        if state is State.PARKED:
            # Parked: drives disabled, brakes on (a parked magnet does not hold on its motors).
            if self._drives_enabled:
                for name in AXES:
                    await self.axes[name].disable()
                    self._last_cmd[name] = 0.0
                self._drives_enabled = False
                self._event(t, "info", "parked: drives disabled, brakes applied")
            self.demand_axes = (float("nan"), float("nan"))
            self._log(t, state)
            return
        if not self._drives_enabled:
            for name in AXES:
                await self.axes[name].enable()
            self._drives_enabled = True
        demand = self._demand(t)
        dt = self.period_s
        if demand is None:
            self.demand_axes = (float("nan"), float("nan"))
            velocities = {"azimuth": 0.0, "elevation": 0.0}
            if self.task.kind == "jog":
                velocities[self.task.jog_axis] = self.task.jog_rate_deg_s
            for name in AXES:
                lim, st = self._limits[name], self._states[name]
                v = velocities[name]
                last = self._last_cmd[name]
                dv = lim.max_accel_deg_s2 * dt
                v = min(max(v, last - dv), last + dv)
                velocities[name] = control.range_guard(lim, st.position_deg, v, dt)
        else:
            d_az, d_el = demand
            self.demand_axes = (d_az.position_deg, d_el.position_deg)
            self._demand_task = self.task
            last, lim, gain = self._last_cmd, self._limits, self._gain
            velocities = {
                "azimuth": control.axis_step(lim["azimuth"], d_az, sa.position_deg,
                                             last["azimuth"], gain, dt).velocity_deg_s,
                "elevation": control.axis_step(lim["elevation"], d_el, se.position_deg,
                                               last["elevation"], gain, dt).velocity_deg_s}
        axes = self.axes
        if self._concurrent_io:
            await asyncio.gather(axes["azimuth"].command_velocity(velocities["azimuth"]),
                                 axes["elevation"].command_velocity(velocities["elevation"]))
        else:
            await axes["azimuth"].command_velocity(velocities["azimuth"])
            await axes["elevation"].command_velocity(velocities["elevation"])
        self._last_cmd = velocities
        self._log(t, state)

    def _geometry(self, boresight: str) -> Boresight:
        b = self._boresights.get(boresight)
        if b is None:
            b = self._boresights[boresight] = self.settings.envelope.boresight(boresight)
        return b

    # ------------------------------------------------------------------ logging
    def _log(self, t: float, state: State) -> None:
        ts = self.target_sky
        ps = self.pointing_sky
        if state is State.TRACKING:
            err = control.great_circle_arcsec(ts[0], ts[1], ps[0], ps[1])
        elif not math.isnan(ts[0]) and self.task.kind != "hold":
            err = control.great_circle_arcsec(ts[0], ts[1], ps[0], ps[1])
        else:
            err = float("nan")
        self.error_arcsec = err
        if self._true_direction is not None and state is State.TRACKING:
            true_mech = self._true_direction()
            true_sky = self.envelope.axes_to_sky(self.boresight, *true_mech)
            self.true_error_arcsec = control.great_circle_arcsec(ts[0], ts[1], *true_sky)
        else:
            self.true_error_arcsec = float("nan")
        self.on_sun = state is State.TRACKING and err <= self._tol_arcsec
        acc = self._acc
        last = acc.last_t
        acc.last_t = t
        if last is None:
            acc.start_t = t
            return
        dt = t - last
        if dt <= 0 or dt > 10 * self.period_s + 1.0:
            acc.start_t = t
            return
        acc.dt += dt
        if self.on_sun:
            acc.on_sun_s += dt
        if err == err and err > acc.err_max:
            acc.err_max = err
        if t - acc.start_t >= self._log_period_s - 1e-9:
            self._flush_sample(t)

    def _flush_sample(self, t: float) -> None:
        acc = self._acc
        if self.store is None or acc.dt <= 0:
            acc.reset(t)
            return
        from tracker.log.store import Sample
        sa, se = self._states["azimuth"], self._states["elevation"]
        ts, ps = self.target_sky, self.pointing_sky
        self.store.add_sample(Sample(
            time_s=t, dt_s=acc.dt, state=self.machine.state.value, boresight=self.boresight,
            target_az_deg=ts[0], target_el_deg=ts[1], measured_az_deg=ps[0], measured_el_deg=ps[1],
            axis_az_deg=sa.position_deg, axis_el_deg=se.position_deg,
            error_arcsec=self.error_arcsec,
            error_max_arcsec=acc.err_max if acc.err_max >= 0 else float("nan"),
            on_sun_s=acc.on_sun_s))
        acc.reset(t)

    def _changed(self, source: State, dest: State, trigger: str, cause: str) -> None:
        t = self.clock.now_s()
        log.info("state %s -> %s (%s): %s", source.value, dest.value, trigger, cause)
        self._event(t, "state", f"{source.value} -> {dest.value}: {cause or trigger}",
                    data={"from": source.value, "to": dest.value, "trigger": trigger,
                          "cause": cause, "auto_tracking": self.auto_tracking})

    def _event(self, t: float, kind: str, message: str, *, source: str | None = None,
               data: dict | None = None) -> None:
        if kind in ("warning", "fault"):
            log.warning("%s: %s", kind, message)
        if self.store is not None:
            self.store.log_event(t, kind, message, source=source, data=data)

    # ------------------------------------------------------------------ operator commands
    async def _audited(self, command: str, args: dict, source: str, action: Callable[[], Any]) -> None:
        t = self.clock.now_s()
        try:
            result = action()
            if hasattr(result, "__await__"):
                await result
        except TrackerError as exc:
            if self.store is not None:
                self.store.audit(t, source, command, args, False, str(exc))
            log.warning("refused %s %s from %s: %s", command, args, source, exc)
            raise
        if self.store is not None:
            self.store.audit(t, source, command, args, True, "accepted")

    def _require_motion_allowed(self) -> None:
        state = self.machine.state
        if state is State.FAULT:
            raise StateError("the mount is in fault: acknowledge it with 'reset' first")
        if state is State.ESTOP:
            raise StateError("the emergency stop is active: release it, then 'reset'")
        if state is State.OFF:
            raise StateError("the drives are not enabled")
        if self._wind_stowed:
            raise StateError("stowed for wind: motion is blocked until the wind calms")

    async def goto(self, az_deg: float, el_deg: float, *, boresight: str | None = None,
                   axes: bool = False, source: str) -> None:
        """Move to a sky direction for ``boresight`` (or, with ``axes``, to axis positions)."""
        args = {"az_deg": az_deg, "el_deg": el_deg, "boresight": boresight, "axes": axes}

        def do() -> None:
            b = boresight or self.boresight
            self.settings.envelope.boresight(b)
            if not (math.isfinite(az_deg) and math.isfinite(el_deg)):
                raise EnvelopeError(f"target ({az_deg}, {el_deg}) is not a finite number")
            if axes:
                self.envelope.check_axes(az_deg, el_deg)
                task = Task("axes", az_deg, el_deg, boresight=b)
            else:
                near = self._states["azimuth"].position_deg if self._states else None
                self.envelope.sky_to_axes(b, az_deg % 360.0, el_deg, near_az_deg=near)
                task = Task("sky", az_deg % 360.0, el_deg, boresight=b)
            self._require_motion_allowed()
            self.machine.fire("manual", f"goto from {source}")
            self.boresight = b
            self.auto_tracking = False
            self.task = task
        await self._audited("goto", args, source, do)

    async def jog(self, axis: str, rate_deg_s: float, seconds: float, *, source: str) -> None:
        """Run one axis (``az`` or ``el``) at ``rate_deg_s`` for ``seconds``."""
        args = {"axis": axis, "rate_deg_s": rate_deg_s, "seconds": seconds}

        def do() -> None:
            names = {"az": "azimuth", "el": "elevation", "azimuth": "azimuth",
                     "elevation": "elevation"}
            if axis not in names:
                raise EnvelopeError(f"unknown axis {axis!r}: use 'az' or 'el'")
            name = names[axis]
            if not (math.isfinite(rate_deg_s) and math.isfinite(seconds)):
                raise EnvelopeError("jog rate and duration must be finite numbers")
            if not 0 < seconds <= MAX_JOG_S:
                raise EnvelopeError(f"jog duration {seconds:g} s must be in (0, {MAX_JOG_S:g}] s")
            self.envelope.check_rate(name, rate_deg_s)
            here = self._states[name].position_deg
            end = here + rate_deg_s * seconds
            if name == "azimuth":
                self.envelope.check_axes(end, self._states["elevation"].position_deg)
            else:
                self.envelope.check_axes(self._states["azimuth"].position_deg, end)
            self._require_motion_allowed()
            self.machine.fire("manual", f"jog from {source}")
            self.auto_tracking = False
            self.task = Task("jog", jog_axis=name, jog_rate_deg_s=rate_deg_s,
                             until_s=self.clock.now_s() + seconds)
        await self._audited("jog", args, source, do)

    async def stop(self, *, source: str) -> None:
        """Stop all motion now (always accepted); automatic tracking goes off."""
        def do() -> None:
            self.auto_tracking = False
            self.task = HOLD
            if self.machine.may("hold"):
                self.machine.fire("hold", f"stop from {source}")
        await self._audited("stop", {}, source, do)

    async def park(self, *, source: str) -> None:
        def do() -> None:
            self._require_motion_allowed()
            if not self.machine.may("park") and self.machine.state is not State.PARKED:
                raise StateError(f"cannot park while {self.state}")
            self.auto_tracking = False
            if self.machine.state is State.PARKED:
                return
            p = self.settings.positions.park
            self.task = Task("axes", p.azimuth_deg, p.elevation_deg)
            self.machine.fire("park", f"park from {source}")
        await self._audited("park", {}, source, do)

    async def unpark(self, *, source: str) -> None:
        def do() -> None:
            if self.machine.state is State.PARKED:
                self.task = HOLD
                self.machine.fire("manual", f"unpark from {source}")
                self.machine.fire("hold", f"unpark from {source}")
        await self._audited("unpark", {}, source, do)

    async def stow(self, *, source: str) -> None:
        def do() -> None:
            state = self.machine.state
            if state is State.ESTOP:
                raise StateError("the emergency stop is active: release it, then 'reset'")
            if state is State.FAULT and not self._can_reset():
                raise StateError("a drive is faulted: it cannot move until the fault is cleared")
            if state is State.STOWED:
                return
            self.auto_tracking = False
            s = self.settings.positions.stow
            self.task = Task("axes", s.azimuth_deg, s.elevation_deg)
            self.machine.fire("stow", f"stow from {source}")
        await self._audited("stow", {}, source, do)

    async def set_auto_tracking(self, on: bool, *, source: str) -> None:
        def do() -> None:
            if on:
                self._require_motion_allowed()
                self.auto_tracking = True
                if self.machine.state is State.MANUAL:
                    self.task = HOLD
                    self.machine.fire("hold", f"automatic tracking on from {source}")
            else:
                self.auto_tracking = False
                if self.machine.state in (State.TRACKING, State.SLEWING, State.WAITING):
                    self.task = HOLD
                    self.machine.fire("hold", f"automatic tracking off from {source}")
            self._event(self.clock.now_s(), "info",
                        f"automatic tracking {'on' if on else 'off'} ({source})",
                        source=source, data={"auto_tracking": on})
        await self._audited("track", {"on": on}, source, do)

    async def reset(self, *, source: str) -> None:
        """Acknowledge faults: reset the drives and, if they are healthy, go to idle."""
        t = self.clock.now_s()
        state = self.machine.state
        if state not in (State.FAULT, State.ESTOP) and not self._fault_pending:
            await self._audited("reset", {}, source, lambda: None)
            return
        for axis in self.axes.values():
            await axis.reset()
        for axis in self.axes.values():
            await axis.enable()
        self._drives_enabled = True
        await self._read(t)

        def do() -> None:
            if state in (State.FAULT, State.ESTOP):
                if not self.machine.fire("reset", f"reset from {source}"):
                    bad = "; ".join(f"{n}: {self._states[n].condition.value}" for n in AXES
                                    if self._states[n].condition is not Condition.OK)
                    raise StateError(f"fault still present after reset ({bad})")
            self._fault_pending = False
            self._faults.clear()
            self._comms_since.clear()
            self._last_cmd = {"azimuth": 0.0, "elevation": 0.0}
        await self._audited("reset", {}, source, do)

    # ------------------------------------------------------------------ views
    def status(self) -> dict:
        """A JSON-able snapshot of the controller (see docs/daemon.md)."""
        t = self.clock.now_s()
        sun = self._sun
        nxt = self._plan.next_window(t) if self._plan else None
        axes = {}
        for name in AXES:
            st = self._states.get(name)
            if st is None:
                continue
            axes[name] = {"position_deg": st.position_deg, "velocity_deg_s": st.velocity_deg_s,
                          "enabled": st.enabled, "moving": st.moving, "limit": st.limit.value,
                          "condition": st.condition.value, "fault_text": st.fault_text,
                          "fresh": st.fresh, "age_s": t - st.timestamp_s}
        park = self.settings.positions.park
        state = self.machine.state
        return {
            "time_utc": iso_utc(t),
            "state": state.value,
            "auto_tracking": self.auto_tracking,
            "boresight": self.boresight,
            "task": self.task.kind,
            "sun": {"azimuth_deg": sun[0], "elevation_deg": sun[1],
                    "azimuth_rate_deg_s": sun[2], "elevation_rate_deg_s": sun[3]},
            "axes": axes,
            "pointing": {"az_deg": _num(self.pointing_sky[0]), "el_deg": _num(self.pointing_sky[1])},
            "target": {"az_deg": _num(self.target_sky[0]), "el_deg": _num(self.target_sky[1])},
            "pointing_error_arcsec": _num(self.error_arcsec),
            "on_sun": self.on_sun,
            "current_window": self.window.to_json() if self.window else None,
            "next_window": nxt.to_json() if nxt else None,
            "faults": list(self._faults),
            "fault_pending": self._fault_pending,
            "wind_m_s": self._wind_m_s,
            "wind_stowed": self._wind_stowed,
            "slewing": state in (State.SLEWING, State.PARKING, State.STOWING)
            or (state is State.MANUAL and self.task.kind in ("sky", "axes", "jog")
                and not self._arrived()),
            "at_park": state is State.PARKED,
            "at_home": bool(axes) and abs(axes["azimuth"]["position_deg"] - park.azimuth_deg) < ARRIVED_DEG
            and abs(axes["elevation"]["position_deg"] - park.elevation_deg) < ARRIVED_DEG,
            "data_ages": self._data_ages(t),
            "log": {"healthy": getattr(self.store, "healthy", None),
                    "last_error": getattr(self.store, "last_error", None),
                    "path": str(getattr(self.store, "path", ""))},
        }

    def _data_ages(self, t: float) -> dict:
        """IERS table, leap seconds and ephemeris ages (recomputed at most once a minute)."""
        cached = self._ages
        if cached is None or t - cached[0] > 60.0 or t < cached[0]:
            from tracker.astro.datasources import data_sources
            d = data_sources(t)
            iers, leap = d.get("iers_table", {}), d.get("leap_seconds", {})
            ages = {"iers_last_date": iers.get("last_date"), "iers_age_days": iers.get("age_days"),
                    "iers_days_left": iers.get("days_left"),
                    "ut1_uncertainty_s": iers.get("ut1_uncertainty_now_s"),
                    "leap_seconds_expire": leap.get("expires"),
                    "leap_seconds_expired": leap.get("expired"),
                    "astropy_iers_data": d.get("astropy_iers_data")}
            self._ages = cached = (t, ages)
        return cached[1]

    def plan(self, start_s: float, end_s: float) -> dict:
        return make_plan(self.settings, start_s, end_s).to_json()

    def events(self, *, limit: int = 100, after_id: int = 0) -> list[dict]:
        if self.store is None:
            return []
        return self.store.events(limit=limit, after_id=after_id)


def _num(x: float) -> float | None:
    return None if x != x else x


class _Accumulator:
    """Sums over one log interval."""

    __slots__ = ("dt", "on_sun_s", "err_max", "start_t", "last_t")

    def __init__(self) -> None:
        self.last_t: float | None = None
        self.reset(0.0)

    def reset(self, t: float) -> None:
        self.dt = 0.0
        self.on_sun_s = 0.0
        self.err_max = -1.0
        self.start_t = t


