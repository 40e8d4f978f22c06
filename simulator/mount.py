"""The simulated mount: two axis drives with physics, limits, faults and wind.

``SimAxis`` is one drive *as the hardware sees it*: the same things its
registers or serial lines expose (encoder position, velocity, flags, fault
code), plus the physics truth tests need (``true_position_deg`` and the record
``min_true_deg``/``max_true_deg`` of where the axis has ever really been).

Physics per axis (all in axis degrees, deg/s, deg/s^2, simulated seconds):

- the drive's own profile generator ramps a velocity reference towards the
  demand within its speed/acceleration limits (the config's ``axes.*`` limits
  times ``simulator.drive_headroom``);
- structure and drive (``simulator/physics.py``): motor side and load (the
  magnet) are two masses joined by the lowest structural mode
  (``simulator.<axis>.mode_hz``, ``mode_damping``); the drive's PI velocity loop
  (``velocity_loop_hz``) makes the motor follow the reference, with torque
  limited to ``torque_limit_deg_s2``; the load feels the wind (static ~ v^2 plus
  Kaimal turbulence, direction-dependent) and, in elevation, the gravity
  unbalance ~ cos(el); friction acts on the motor.  One exact state-transition
  step (precomputed ``exp(A h)``) per control period;
- backlash: the gear joins the structure ``simulator.backlash_arcsec / 2`` ahead
  of or behind the motor, on the flank the load torque (or the motion) presses;
- the encoder reads the MOTOR side plus any injected offset plus a slow thermal
  drift of its zero, quantised to ``simulator.encoder_resolution_arcsec``;
- truth (``true_position_deg``): the load's axis angle, plus the tilt of the
  mount on its azimuth track (wheel-on-track unevenness, set by ``SimMount``);
- soft limits (envelope +- ``soft_limit_margin_deg``, in the drive's measured
  frame): the drive refuses to move further out and decelerates to stop at them;
- hard limit switches (soft limits +- ``hard_limit_margin_deg``, on the true
  position): the switch cam starts ahead of ``hard_*_deg`` by the worst-case
  braking distance, so the brake stops the axis before the hard limit position;
  the drive trips ``LIMIT_SWITCH`` and brakes; after a reset it only moves
  back out of the switch;
- brakes: a drive told to stop, halted (velocity demand exactly 0), disabled or
  out of heartbeat ramps its reference to zero, then its holding brake holds the
  motor exactly (a tripped drive brakes at once, at high deceleration); the
  structure rings down against the held motor, nothing creeps; the next motion
  command releases the brake bumplessly;
- drive-side watchdog: no heartbeat/command for ``drives.watchdog_s`` of
  simulated time -> controlled ramp to zero and the latched condition ``WATCHDOG``.

Time is injected: ``SimMount.step(dt_s)`` advances simulated time only, so dry
runs go as fast as the CPU allows; ``run_realtime`` steps it from
``time.monotonic()`` for ``tracker simulate`` and the daemon.  The step is pure
Python floats (the matrices are cached as tuples): a few microseconds per axis.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time

import numpy as np

from simulator.physics import (
    AxisDynamics,
    HourlyWind,
    Rows,
    TrackUnevenness,
    Transitions,
    Turbulence,
    encoder_drift_deg,
)
from tracker.config import Settings, SimAxisPhysics
from tracker.mount.axis import CONDITION_CODES, Condition, Limit

log = logging.getLogger(__name__)

#: Longest internal step while driving, seconds (larger ``dt`` is sub-stepped: the
#: profile generator and limits act between steps).  The linear dynamics are exact
#: for held inputs, so one 10 Hz control period is one sub-step.  A braked, stopped
#: axis takes any step in one.
MAX_SUBSTEP_S = 0.1
#: Drive's own position-loop gain, 1/s.
POSITION_GAIN_PER_S = 4.0
#: Below this speed an axis counts as not moving, deg/s (0.36 arcsec/s).
MOVING_THRESHOLD_DEG_S = 1e-4
#: Overspeed trip of the drives, as a multiple of their speed limit.
OVERSPEED = 1.1
#: Motor speed a held axis may jitter at (wind through the velocity loop), deg/s (7"/s).
STANDSTILL_DEG_S = 2e-3
#: Distance from a soft limit at which the axis reports being at it, deg.
SOFT_LIMIT_REPORT_DEG = 1e-3
#: Fault code reported for a drive fault without its own code (-> ``DRIVE_FAULT``).
GENERIC_FAULT_CODE = 99
#: A gust (peak 3-s excursion over the mean) in standard deviations of the turbulence.
GUST_PEAK_FACTOR = 3.0
#: The anemometer's averaging time (WMO gust definition), seconds.
ANEMOMETER_AVERAGE_S = 3.0
#: Longest step of the wind model, seconds (the turbulence is exact for any step; the
#: torque is held over it).
WIND_UPDATE_S = 0.1

FAULT_TEXTS: dict[Condition, str] = {
    Condition.OK: "",
    Condition.OVERCURRENT: "drive overcurrent",
    Condition.OVERTEMPERATURE: "drive overtemperature",
    Condition.FOLLOWING_ERROR: "drive following error",
    Condition.ESTOP: "safe torque off: emergency stop chain open",
    Condition.LIMIT_SWITCH: "hard limit switch hit",
    Condition.ENCODER_JUMP: "encoder position jump",
    Condition.WATCHDOG: "controller heartbeat lost: ramped to zero",
    Condition.DRIVE_FAULT: "drive fault",
}

# Drive modes
_HOLD = 0       # position loop on _target (hold or move)
_VELOCITY = 1   # velocity demand _v_demand
_STOP = 2       # ramp the reference to zero, then apply the holding brake
# Members tested every step, as module constants (``Enum.X`` costs ~80 ns on Python 3.11:
# docs/performance.md).
_OK, _LIMIT_SWITCH, _NO_LIMIT = Condition.OK, Condition.LIMIT_SWITCH, Limit.NONE


class SimAxis:
    """One simulated axis drive (see the module docstring for the physics).

    Positions are axis degrees (azimuth from north through east, elevation up
    positive), velocities deg/s, times simulated seconds since creation.
    """

    __slots__ = (
        "name", "time_s", "soft_low_deg", "soft_high_deg", "hard_low_deg", "hard_high_deg",
        "switch_low_deg", "switch_high_deg", "max_speed_deg_s", "max_accel_deg_s2",
        "brake_decel_deg_s2", "watchdog_s", "resolution_deg", "backlash_half_deg",
        "friction_deg_s2", "disturbance_deg_s2", "min_true_deg", "max_true_deg",
        "enabled", "condition", "fault_text", "estop_active", "dynamics", "torque_limit_deg_s2",
        "tilt_deg", "drift_amplitude_arcsec", "drift_period_s", "drift_phase_rad",
        "_motor_deg", "_load_deg", "_v", "_load_v", "_int", "_v_ref", "_mode", "_v_demand",
        "_target_deg", "_speed_deg_s", "_offset_deg", "_drift_deg", "_last_heartbeat_s",
        "_braking", "_trans", "_gear_deg", "_ki", "_kp", "_k", "_cl_h", "_cl",
        "_drift_t", "overspeed_deg_s",
    )

    def __init__(self, name: str, *, position_deg: float, soft_low_deg: float,
                 soft_high_deg: float, hard_margin_deg: float, max_speed_deg_s: float,
                 max_accel_deg_s2: float, watchdog_s: float, resolution_arcsec: float = 0.5,
                 backlash_arcsec: float = 0.0, friction_deg_s2: float = 0.0,
                 physics: SimAxisPhysics | None = None, drift_phase_rad: float = 0.0) -> None:
        if not soft_low_deg < soft_high_deg:
            raise ValueError(f"{name}: soft limits {soft_low_deg}..{soft_high_deg} not ordered")
        self.name = name
        self.time_s = 0.0
        self.soft_low_deg = float(soft_low_deg)
        self.soft_high_deg = float(soft_high_deg)
        self.hard_low_deg = self.soft_low_deg - hard_margin_deg
        self.hard_high_deg = self.soft_high_deg + hard_margin_deg
        self.max_speed_deg_s = float(max_speed_deg_s)
        self.max_accel_deg_s2 = float(max_accel_deg_s2)
        # Brake strong enough that the worst-case stop takes at most a quarter of the margin.
        v_max = OVERSPEED * self.max_speed_deg_s
        #: The drive's overspeed trip, deg/s: a commissioning parameter (a later change of
        #: the profile's speed limit, e.g. a jammed axis in a test, does not move it).
        self.overspeed_deg_s = v_max
        self.brake_decel_deg_s2 = max(10.0 * self.max_accel_deg_s2,
                                      2.0 * v_max * v_max / hard_margin_deg)
        lead_deg = v_max * v_max / (2.0 * self.brake_decel_deg_s2) + v_max * MAX_SUBSTEP_S
        # The switch cam starts this far ahead of the hard limit position.
        self.switch_low_deg = self.hard_low_deg + lead_deg
        self.switch_high_deg = self.hard_high_deg - lead_deg
        self.watchdog_s = float(watchdog_s)
        self.resolution_deg = resolution_arcsec / 3600.0
        self.backlash_half_deg = backlash_arcsec / 7200.0
        self.friction_deg_s2 = float(friction_deg_s2)
        #: Load torque (wind, unbalance) as an axis acceleration, deg/s^2; set by ``SimMount``.
        self.disturbance_deg_s2 = 0.0
        phys = physics if physics is not None else SimAxisPhysics()
        self.dynamics = AxisDynamics(phys.mode_hz, phys.mode_damping,
                                     phys.motor_inertia_fraction, phys.velocity_loop_hz)
        # Never below twice the drive's own acceleration: the profile must stay reachable
        # (fast test mounts configure accelerations of a few deg/s^2).
        self.torque_limit_deg_s2 = max(float(phys.torque_limit_deg_s2),
                                       2.0 * self.max_accel_deg_s2)
        self._trans = Transitions(self.dynamics)
        self._kp, self._ki = self.dynamics.gains
        self._k = self.dynamics.stiffness_per_s2
        self._cl_h = 0.0     # step length of the cached closed-loop matrices ``_cl``
        self._cl: tuple[Rows, Rows] = ((), ())
        #: Tilt of the mount on its track seen on this axis, degrees; set by ``SimMount``.
        self.tilt_deg = 0.0
        self.drift_amplitude_arcsec = float(phys.encoder_drift_arcsec)
        self.drift_period_s = float(phys.encoder_drift_period_s)
        self.drift_phase_rad = float(drift_phase_rad)
        p = float(position_deg)
        self.min_true_deg = p
        self.max_true_deg = p
        self.enabled = False
        self.condition = Condition.OK
        self.fault_text = ""
        self.estop_active = False
        self._motor_deg = p
        self._load_deg = p       # the load starts unloaded on the motor's position
        self._v = 0.0            # motor velocity, deg/s
        self._load_v = 0.0       # load velocity, deg/s
        self._int = 0.0          # integral of the velocity error (the PI's state), deg
        self._gear_deg = 0.0     # backlash: where the gear flank sits relative to the motor
        self._v_ref = 0.0
        self._drift_t = 0.0
        self._drift_deg = encoder_drift_deg(0.0, self.drift_amplitude_arcsec,
                                            self.drift_period_s, self.drift_phase_rad)
        self._mode = _HOLD
        self._v_demand = 0.0
        self._target_deg = p
        self._speed_deg_s = self.max_speed_deg_s
        self._offset_deg = 0.0
        self._last_heartbeat_s = 0.0
        self._braking = True

    # ------------------------------------------------------------------ readings
    @property
    def true_position_deg(self) -> float:
        """Physics truth the controller cannot see: the magnet's (load's) true axis angle, degrees.

        The encoder frame without its errors: the load side of the structure
        (deflected by wind, unbalance and the structural mode), plus the mount's
        tilt on its azimuth track as seen on this axis.  Azimuth from north through
        east, elevation up positive.  ``simulator.truth.true_direction`` turns the
        two axes' values into the sky direction of the magnet's mechanical axis.
        """
        return self._load_deg + self.tilt_deg

    @property
    def motor_deg(self) -> float:
        """The motor side (what the encoder measures, without its errors), degrees."""
        return self._motor_deg

    @property
    def encoder_deg(self) -> float:
        """The encoder reading: motor side + injected offset + thermal zero drift, quantised."""
        q = self.resolution_deg
        return round((self._motor_deg + self._offset_deg + self._drift_deg) / q) * q

    @property
    def encoder_offset_deg(self) -> float:
        return self._offset_deg

    @property
    def velocity_deg_s(self) -> float:
        return self._v

    @property
    def moving(self) -> bool:
        """The drive's "moving" flag: its profile runs, or the motor visibly moves.

        A held axis jitters in the turbulent wind (a few 1e-4 deg/s through the
        velocity loop): that is not motion.
        """
        return abs(self._v_ref) > MOVING_THRESHOLD_DEG_S or abs(self._v) > STANDSTILL_DEG_S

    @property
    def fault_code(self) -> int:
        if self.condition is Condition.OK:
            return 0
        return CONDITION_CODES.get(self.condition, GENERIC_FAULT_CODE)

    @property
    def limit(self) -> Limit:
        x = self._motor_deg
        if x >= self.switch_high_deg:
            return Limit.HARD_HIGH
        if x <= self.switch_low_deg:
            return Limit.HARD_LOW
        p = x + self._offset_deg + self._drift_deg
        if p >= self.soft_high_deg - SOFT_LIMIT_REPORT_DEG:
            return Limit.SOFT_HIGH
        if p <= self.soft_low_deg + SOFT_LIMIT_REPORT_DEG:
            return Limit.SOFT_LOW
        return _NO_LIMIT

    @property
    def braked(self) -> bool:
        """True when the holding brake holds the motor (stopped, halted, disabled or tripped)."""
        return self._braking and self._v == 0.0

    # ------------------------------------------------------------------ commands
    def heartbeat(self) -> None:
        self._last_heartbeat_s = self.time_s

    def _can_move(self) -> bool:
        return self.enabled and self.condition is Condition.OK

    def command_velocity(self, v_deg_s: float) -> None:
        """Run at ``v_deg_s`` (clamped to the drive's speed); ignored unless enabled and OK.

        A demand of exactly 0 is a halt (the drive's zero-speed clamp): the reference
        ramps to zero, then the holding brake holds the motor until a non-zero demand.
        """
        self._last_heartbeat_s = self.time_s     # ``heartbeat()``, inline: every tick
        v = float(v_deg_s)
        if not (math.isfinite(v) and self.enabled and self.condition is _OK):
            return
        if v == 0.0:
            if self._mode != _STOP:
                self._mode = _STOP
                self._v_demand = 0.0
            return
        if self._braking:
            self._release()
        vmax = self.max_speed_deg_s
        self._v_demand = vmax if v > vmax else (-vmax if v < -vmax else v)
        self._mode = _VELOCITY

    def command_position(self, pos_deg: float, speed_deg_s: float) -> None:
        """Move to ``pos_deg`` (drive's measured frame, clamped to the soft limits) and hold."""
        self.heartbeat()
        p = float(pos_deg)
        s = abs(float(speed_deg_s))
        if not (math.isfinite(p) and math.isfinite(s)) or not self._can_move():
            return
        self._release()
        self._target_deg = min(max(p, self.soft_low_deg), self.soft_high_deg)
        self._speed_deg_s = min(s, self.max_speed_deg_s)
        self._mode = _HOLD

    def stop(self) -> None:
        """Ramp to zero with the drive's deceleration, then hold on the brake (no creep)."""
        self.heartbeat()
        if self._braking:
            return
        self._stop_profile()

    def _stop_profile(self) -> None:
        """Ramp the reference to zero; at zero the holding brake holds the motor."""
        v = self._v_ref
        a = self.max_accel_deg_s2
        p = self._motor_deg + self._offset_deg + self._drift_deg
        self._target_deg = p + v * abs(v) / (2.0 * a)
        self._speed_deg_s = max(abs(v), 1e-9)
        self._mode = _STOP

    def _release(self) -> None:
        """Motion commanded on an enabled, OK drive: release the brake, bumplessly.

        The velocity loop's integral starts with the torque the held structure
        presses on the motor (spring deflection less the backlash offset), so the
        motor neither jumps nor sags when the brake lets go.
        """
        if not self._braking:
            return
        self._braking = False
        self._v = 0.0
        self._v_ref = 0.0
        defl = self._load_deg - self._motor_deg - self._gear_deg
        self._int = -self._k * defl / self._ki

    def enable(self) -> None:
        """Release the brake and hold the current position (ignored while faulted)."""
        self.heartbeat()
        if self.condition is not Condition.OK or self.enabled:
            return
        self.enabled = True
        self._release()
        self._v_ref = self._v
        self._target_deg = self._motor_deg + self._offset_deg + self._drift_deg
        self._speed_deg_s = self.max_speed_deg_s
        self._mode = _HOLD

    def disable(self) -> None:
        """Ramp to zero, then apply the brake and de-energise."""
        self.heartbeat()
        if not self.enabled:
            return
        self.enabled = False
        self._stop_profile()

    def reset(self) -> None:
        """Clear a drive fault; the axis stays stopped and disabled.  E-stop must be released."""
        self.heartbeat()
        if self.condition is Condition.OK:
            return
        if self.estop_active:
            return
        self.condition = Condition.OK
        self.fault_text = ""

    # ------------------------------------------------------------------ fault injection
    def trip(self, condition: Condition, text: str | None = None) -> None:
        """The drive trips: fault latched, torque off, brake applied."""
        if condition is Condition.OK or condition.is_comms:
            raise ValueError(f"{condition} is not a drive condition")
        self.condition = condition
        self.fault_text = text if text is not None else FAULT_TEXTS.get(condition, "drive fault")
        self.enabled = False
        self._braking = True
        self._mode = _HOLD
        log.info("%s: drive tripped: %s", self.name, self.fault_text)

    def estop(self, active: bool = True) -> None:
        """Open (``True``) or close the e-stop chain; opening trips ``ESTOP``."""
        self.estop_active = bool(active)
        if active:
            self.trip(Condition.ESTOP)

    def encoder_jump(self, delta_deg: float) -> None:
        """The encoder reading jumps by ``delta_deg`` (persists); the drive trips ENCODER_JUMP."""
        self._offset_deg += float(delta_deg)
        self.trip(Condition.ENCODER_JUMP)

    def clear_encoder_offset(self) -> None:
        """Repair the encoder: readings are true again."""
        self._offset_deg = 0.0

    # ------------------------------------------------------------------ physics
    def step(self, dt_s: float) -> None:
        """Advance this axis by ``dt_s`` simulated seconds (sub-stepped at ``MAX_SUBSTEP_S``)."""
        if dt_s <= 0.0:
            if dt_s < 0.0:
                raise ValueError(f"{self.name}: cannot step back in time ({dt_s} s)")
            return
        if dt_s <= MAX_SUBSTEP_S or (self._braking and self._v == 0.0):
            # The common case (one control period), or a braked, stopped axis: one exact step.
            self._substep(dt_s)
            t = self.time_s = self.time_s + dt_s
            self._drift(t)
            if t - self._last_heartbeat_s > self.watchdog_s and self.enabled:
                self._watchdog(t)
            return
        n = int(math.ceil(dt_s / MAX_SUBSTEP_S - 1e-9))
        h = dt_s / n
        t0 = self.time_s
        for i in range(1, n + 1):
            self._substep(h)
            t = self.time_s = t0 + i * h
            self._drift(t)
            if t - self._last_heartbeat_s > self.watchdog_s and self.enabled:
                self._watchdog(t)

    def _drift(self, t: float) -> None:
        # Thermal drift is slow (hours): refreshed once a simulated second.
        if self.drift_amplitude_arcsec and t >= self._drift_t + 1.0:
            self._drift_t = t
            self._drift_deg = encoder_drift_deg(t, self.drift_amplitude_arcsec,
                                                self.drift_period_s, self.drift_phase_rad)

    def _watchdog(self, t: float) -> None:
        if self.condition is Condition.OK:
            self.condition = Condition.WATCHDOG
            self.fault_text = FAULT_TEXTS[Condition.WATCHDOG]
            self._stop_profile()
            log.info("%s: watchdog: no heartbeat for %.3f s", self.name, t - self._last_heartbeat_s)

    def _gear_offset(self) -> float:
        """Backlash: the gear flank's offset from the motor (deg), from the preload or motion."""
        b = self.backlash_half_deg
        if b == 0.0:
            return 0.0
        d = self.disturbance_deg_s2
        f = self.friction_deg_s2
        if d > f:
            g = b          # the load torque presses the load forward: it leads the motor
        elif d < -f:
            g = -b
        elif self._v > MOVING_THRESHOLD_DEG_S:
            g = -b         # the motor pushes the load forward: it trails
        elif self._v < -MOVING_THRESHOLD_DEG_S:
            g = b
        else:
            g = self._gear_deg
        self._gear_deg = g
        return g

    def _substep(self, h: float) -> None:
        v = self._v
        x0 = self._load_deg
        m0 = self._motor_deg
        if self._braking:
            # Holding brake on the motor: decelerate it hard, then hold; the load rings on
            # the structure against the held motor (locked-rotor mode).
            if v == 0.0:
                am = 0.0
                v1 = 0.0
                dx = 0.0
            else:
                dv = self.brake_decel_deg_s2 * h
                if abs(v) <= dv:
                    t_stop = abs(v) / self.brake_decel_deg_s2
                    dx = 0.5 * v * t_stop
                    v1 = 0.0
                else:
                    v1 = v - dv if v > 0.0 else v + dv
                    dx = 0.5 * (v + v1) * h
                am = (v1 - v) / h
            self._v = v1
            self._v_ref = 0.0
            m = self._motor_deg = m0 + dx
            g = self._gear_offset()
            phi, gam = self._trans.get("locked_rotor", h)
            d0 = x0 - m0 - g
            dd0 = self._load_v - v
            u0 = self.disturbance_deg_s2
            d1 = phi[0][0] * d0 + phi[0][1] * dd0 + gam[0][0] * u0 + gam[0][1] * am
            dd1 = phi[1][0] * d0 + phi[1][1] * dd0 + gam[1][0] * u0 + gam[1][1] * am
            x = self._load_deg = m + g + d1
            self._load_v = v1 + dd1
            self._record(m0, m, x)
            return
        a = self.max_accel_deg_s2
        p = m0 + self._offset_deg + self._drift_deg
        # Profile generator: the velocity the drive wants now.
        mode = self._mode
        if mode == _VELOCITY:
            vt = self._v_demand
        elif mode == _STOP:
            vt = 0.0
        else:
            err = self._target_deg - p
            e = abs(err)
            # In-position window of one encoder step: no hunting on the quantisation.
            vt = POSITION_GAIN_PER_S * e if e > self.resolution_deg else 0.0
            s = self._speed_deg_s
            if vt > s:
                vt = s
            vs = math.sqrt(2.0 * a * e)
            if vt > vs:
                vt = vs
            if err < 0.0:
                vt = -vt
        # Soft limits in the drive's measured frame: stop at them, refuse beyond
        # (past one, the drive's position loop pushes back to it; a stopping drive only stops).
        if mode == _STOP:
            pass
        elif vt >= 0.0:
            room = self.soft_high_deg - p
            vmax = math.sqrt(2.0 * a * room) if room > 0.0 else POSITION_GAIN_PER_S * room
            if vt > vmax:
                vt = vmax
        if mode != _STOP and vt <= 0.0:
            room = p - self.soft_low_deg
            vmax = math.sqrt(2.0 * a * room) if room > 0.0 else POSITION_GAIN_PER_S * room
            if vt < -vmax:
                vt = -vmax
        smax = self.max_speed_deg_s
        if vt > smax:
            vt = smax
        elif vt < -smax:
            vt = -smax
        # On a hard limit switch the drive only moves back out of it.
        if vt > 0.0 and m0 >= self.switch_high_deg:
            vt = 0.0
        elif vt < 0.0 and m0 <= self.switch_low_deg:
            vt = 0.0
        # Acceleration-limited reference (soft-limit clamps act at once).
        vr = vr0 = self._v_ref
        dv = a * h
        if vt > vr + dv:
            vr += dv
        elif vt < vr - dv:
            vr -= dv
        else:
            vr = vt
        if mode == _STOP:
            # A stop ramps down at the drive's deceleration, but never runs past a soft
            # limit (there it stops as hard as before); it never pushes back either.
            if vr > 0.0:
                room = self.soft_high_deg - p
                cap = math.sqrt(2.0 * a * room) if room > 0.0 else 0.0
                if vr > cap:
                    vr = cap
            elif vr < 0.0:
                room = p - self.soft_low_deg
                cap = math.sqrt(2.0 * a * room) if room > 0.0 else 0.0
                if -vr > cap:
                    vr = -cap
        elif vr > 0.0 and vt >= 0.0 and vr > vt:
            vr = vt
        elif vr < 0.0 and vt <= 0.0 and vr < vt:
            vr = vt
        self._v_ref = vr
        # Structure and velocity loop over the step, exactly, with held inputs: the
        # reference at its mean over the step, the profile's acceleration as torque
        # feed-forward, friction against the motion, and the backlash as a torque pair.
        v_in = 0.5 * (vr0 + vr)
        ff = (vr - vr0) / h
        fr = 0.0
        if v > MOVING_THRESHOLD_DEG_S:
            fr = -self.friction_deg_s2
        elif v < -MOVING_THRESHOLD_DEG_S:
            fr = self.friction_deg_s2
        g = self._gear_offset()
        kg = self._k * g
        tl = self.disturbance_deg_s2 + kg
        z = self._int
        torque = self._kp * (v_in - v) + self._ki * z + ff
        lim = self.torque_limit_deg_s2
        if -lim <= torque <= lim:
            if h != self._cl_h:
                self._cl = self._trans.get("closed_loop", h)
                self._cl_h = h
            phi, gam = self._cl
            u = (v_in, ff + fr - kg, tl)
        else:
            # Current limit: the drive gives its peak torque, its integral held.
            phi, gam = self._trans.get("saturated", h)
            u = (0.0, (lim if torque > 0.0 else -lim) + fr - kg, tl)
        lv0 = self._load_v
        u0, u1, u2 = u
        r0, r1, r2, r3, r4 = phi
        g0, g1, g2, g3, g4 = gam
        m = (r0[0] * m0 + r0[1] * v + r0[2] * x0 + r0[3] * lv0 + r0[4] * z
             + g0[0] * u0 + g0[1] * u1 + g0[2] * u2)
        v1 = (r1[0] * m0 + r1[1] * v + r1[2] * x0 + r1[3] * lv0 + r1[4] * z
              + g1[0] * u0 + g1[1] * u1 + g1[2] * u2)
        x = (r2[0] * m0 + r2[1] * v + r2[2] * x0 + r2[3] * lv0 + r2[4] * z
             + g2[0] * u0 + g2[1] * u1 + g2[2] * u2)
        lv = (r3[0] * m0 + r3[1] * v + r3[2] * x0 + r3[3] * lv0 + r3[4] * z
              + g3[0] * u0 + g3[1] * u1 + g3[2] * u2)
        z1 = (r4[0] * m0 + r4[1] * v + r4[2] * x0 + r4[3] * lv0 + r4[4] * z
              + g4[0] * u0 + g4[1] * u1 + g4[2] * u2)
        self._motor_deg = m
        self._v = v1
        self._load_deg = x
        self._load_v = lv
        self._int = z1
        if (v1 > self.overspeed_deg_s or v1 < -self.overspeed_deg_s) \
                and self.condition is Condition.OK:
            # A load torque beyond the drive's (wind) runs the axis away: overspeed trip.
            self.trip(Condition.DRIVE_FAULT, "drive overspeed: load torque beyond the drive's")
        if mode == _STOP and vr == 0.0:
            # Stopped, halted, disabled or watchdog: the profile has ramped down, the
            # holding brake takes the motor (its residual jitter is braked next step) and
            # holds it; the structure rings down against it (locked-rotor mode), no creep.
            self._braking = True
        self._record(m0, m, x)

    def _record(self, m0: float, m: float, x: float) -> None:
        """Record the load's extremes; trip the hard limit switch (a cam on the motor side)."""
        if x < self.min_true_deg:
            self.min_true_deg = x
        elif x > self.max_true_deg:
            self.max_true_deg = x
        if self.condition is not _LIMIT_SWITCH:
            # Trip on reaching a switch, or on being driven further into one (the drive's
            # reference, not the structure's ringing after a reset).
            if m >= self.switch_high_deg and m > m0:
                if m0 < self.switch_high_deg or self._v_ref > MOVING_THRESHOLD_DEG_S:
                    self.trip(Condition.LIMIT_SWITCH)
            elif m <= self.switch_low_deg and m < m0:
                if m0 > self.switch_low_deg or self._v_ref < -MOVING_THRESHOLD_DEG_S:
                    self.trip(Condition.LIMIT_SWITCH)


class SimMount:
    """Two simulated axes (``azimuth``, ``elevation``), the wind, the track and gravity.

    ``azimuth_deg``/``elevation_deg`` give the start position (default: park).
    ``time_s`` is simulated seconds since creation.  The wind at the magnet is the
    mean plus seeded Kaimal turbulence of standard deviation ``wind_gust_m_s /
    GUST_PEAK_FACTOR`` (a gust is the peak 3-s excursion over the mean, about three
    standard deviations), or an override from ``set_wind``; ``wind_now_m_s`` is the
    instantaneous speed that loads the structure, ``wind_m_s`` what the site's
    anemometer reports (its 3-s average, as a first-order lag), ``wind_direction_deg``
    where it comes from (a slow random walk).

    Load torques (axis accelerations, deg/s^2), with ``rel`` the wind direction
    relative to the magnet's azimuth:

    - azimuth: ``c_az v^2 sin(rel)``;
    - elevation: ``c_el v^2 cos(rel) cos(el) - unbalance cos(el)``.

    The truth the controller cannot see is ``true_axes_deg()`` (the load's axis
    angles incl. the track tilt); ``simulator.truth.true_direction`` maps it to the sky.
    """

    def __init__(self, settings: Settings, *, azimuth_deg: float | None = None,
                 elevation_deg: float | None = None) -> None:
        self.settings = settings
        sim = settings.simulator
        env = settings.envelope
        park = settings.positions.park
        start = {
            "azimuth": park.azimuth_deg if azimuth_deg is None else float(azimuth_deg),
            "elevation": park.elevation_deg if elevation_deg is None else float(elevation_deg),
        }
        ranges = {
            "azimuth": (env.azimuth_min_deg, env.azimuth_max_deg, settings.axes.azimuth),
            "elevation": (env.elevation_min_deg, env.elevation_max_deg, settings.axes.elevation),
        }
        # Independent seeded streams: wind, track, drift phases.
        self._rng = random.Random(sim.wind_seed)
        drift_rng = random.Random(sim.wind_seed * 104729 + 2)
        self.axes: dict[str, SimAxis] = {}
        for name, (lo, hi, lim) in ranges.items():
            self.axes[name] = SimAxis(
                name, position_deg=start[name],
                soft_low_deg=lo - sim.soft_limit_margin_deg,
                soft_high_deg=hi + sim.soft_limit_margin_deg,
                hard_margin_deg=sim.hard_limit_margin_deg,
                max_speed_deg_s=lim.max_speed_deg_s * sim.drive_headroom,
                max_accel_deg_s2=lim.max_accel_deg_s2 * sim.drive_headroom,
                watchdog_s=settings.drives.watchdog_s,
                resolution_arcsec=sim.encoder_resolution_arcsec,
                backlash_arcsec=sim.backlash_arcsec,
                friction_deg_s2=sim.friction_deg_s2,
                physics=getattr(sim, name),
                drift_phase_rad=drift_rng.uniform(0.0, 2.0 * math.pi),
            )
        self.azimuth = self.axes["azimuth"]
        self.elevation = self.axes["elevation"]
        self._c_wind_az = sim.azimuth.wind_deg_s2_per_m2_s2
        self._c_wind_el = sim.elevation.wind_deg_s2_per_m2_s2
        self._unbalance = sim.elevation.unbalance_deg_s2
        self.track = mount_track(settings)
        self.time_s = 0.0
        self._wind_mean_m_s = sim.wind_mean_m_s
        #: The wind climate (hour-by-hour mean), when configured; None: a steady mean.
        self.climate = wind_climate(settings)
        self.turbulence = Turbulence(sim.wind_gust_m_s / GUST_PEAK_FACTOR, sim.wind_mean_m_s,
                                     sim.wind_length_m, self._rng)
        self._wind_model_m_s = max(0.0, sim.wind_mean_m_s + self.turbulence.value_m_s)
        self._anemometer_m_s = self._wind_model_m_s
        self._anemometer_h = -1.0
        self._anemometer_k = 0.0
        self._wind_override_m_s: float | None = None
        self._wind_dir_deg = self._rng.uniform(0.0, 360.0)
        self._dir_rng = np.random.default_rng(self._rng.getrandbits(63))
        self._dir_normals: list[float] = []
        self._dir_pos = 0
        self._dir_h = -1.0
        self._dir_scale = 0.0
        self._dir_fixed = False
        self._apply_wind()
        self._apply_tilt()
        # Start in static equilibrium: the load sits deflected under its present torque.
        for ax in self.axes.values():
            ax._load_deg += ax.disturbance_deg_s2 * ax.dynamics.compliance_s2() + ax._gear_offset()
            ax.min_true_deg = ax.max_true_deg = ax._load_deg

    @property
    def wind_now_m_s(self) -> float:
        """The instantaneous wind speed at the magnet (what loads the structure), m/s."""
        if self._wind_override_m_s is not None:
            return self._wind_override_m_s
        return self._wind_model_m_s

    @property
    def wind_m_s(self) -> float:
        """The anemometer's reading: the wind's 3-s average (first-order lag), m/s."""
        return self._anemometer_m_s

    @property
    def wind_direction_deg(self) -> float:
        """Where the wind comes from, degrees from north through east."""
        return self._wind_dir_deg

    def true_axes_deg(self) -> tuple[float, float]:
        """The truth: (azimuth, elevation) axis angles of the magnet (load side), degrees.

        Encoder frame without the encoder's errors (offsets, drift, quantisation),
        with the structure's deflection and the track tilt; ``true_direction`` of
        ``simulator.truth`` maps it to where the magnet's mechanical axis points.
        """
        return self.azimuth.true_position_deg, self.elevation.true_position_deg

    def set_wind(self, m_s: float | None, from_deg: float | None = None) -> None:
        """Override the wind speed (m/s, >= 0; steady); ``None`` returns to the seeded model.

        ``from_deg`` (degrees from north through east) also fixes where it comes
        from (no random walk) while the speed is overridden.
        """
        if m_s is not None:
            m_s = float(m_s)
            if not (math.isfinite(m_s) and m_s >= 0.0):
                raise ValueError(f"wind speed must be a finite value >= 0 m/s, not {m_s}")
        if from_deg is not None:
            from_deg = float(from_deg)
            if not math.isfinite(from_deg):
                raise ValueError(f"wind direction must be a finite angle, not {from_deg}")
            if m_s is None:
                raise ValueError("a wind direction needs a wind speed to override")
            self._wind_dir_deg = from_deg % 360.0
        self._wind_override_m_s = m_s
        self._anemometer_m_s = self._wind_model_m_s if m_s is None else m_s
        self._dir_fixed = from_deg is not None
        self._apply_wind()

    def _update_wind(self, h: float) -> None:
        """Advance the seeded turbulence and the direction by ``h`` seconds."""
        u = self.turbulence.step(h)
        climate = self.climate
        if climate is None:
            w = self._wind_mean_m_s + u
        else:   # the hour's mean, the turbulence scaled with it (the same intensity)
            mean = climate.mean_at(self.time_s)
            w = mean + u * (mean / self._wind_mean_m_s)
        w = self._wind_model_m_s = w if w > 0.0 else 0.0
        if h != self._anemometer_h:
            self._anemometer_h = h
            self._anemometer_k = -math.expm1(-h / ANEMOMETER_AVERAGE_S)
        if self._wind_override_m_s is not None:
            w = self._wind_override_m_s
        self._anemometer_m_s += (w - self._anemometer_m_s) * self._anemometer_k
        if self._dir_fixed:
            self._apply_wind()
            return
        # Direction: a random walk of 0.5 deg per sqrt(0.1 s), whatever the step.
        i = self._dir_pos
        if i >= len(self._dir_normals):
            self._dir_normals = self._dir_rng.standard_normal(4096).tolist()
            i = 0
        self._dir_pos = i + 1
        if h != self._dir_h:
            self._dir_h = h
            self._dir_scale = 0.5 * math.sqrt(h / 0.1)
        self._wind_dir_deg = (self._wind_dir_deg
                              + self._dir_scale * self._dir_normals[i]) % 360.0
        self._apply_wind()

    def _apply_wind(self) -> None:
        w2 = self.wind_now_m_s ** 2
        rel = math.radians(self._wind_dir_deg - self.azimuth._load_deg)
        cos_el = math.cos(math.radians(self.elevation._load_deg))
        self.azimuth.disturbance_deg_s2 = self._c_wind_az * w2 * math.sin(rel)
        self.elevation.disturbance_deg_s2 = (
            self._c_wind_el * w2 * math.cos(rel) - self._unbalance) * cos_el

    def _apply_tilt(self) -> None:
        if self.track.peak_to_peak_arcsec == 0.0:
            return
        pitch, roll = self.track.tilt_deg(self.azimuth._motor_deg)
        self.elevation.tilt_deg = pitch
        self.azimuth.tilt_deg = roll * math.tan(math.radians(self.elevation._load_deg))

    def step(self, dt_s: float) -> None:
        """Advance the wind, both axes and their watchdogs by ``dt_s`` simulated seconds."""
        if 0.0 < dt_s <= WIND_UPDATE_S:  # the common case, kept lean
            self._update_wind(dt_s)
            self.azimuth.step(dt_s)
            self.elevation.step(dt_s)
            self.time_s += dt_s
            self._apply_tilt()
            return
        if dt_s < 0.0:
            raise ValueError(f"cannot step the mount back in time ({dt_s} s)")
        if dt_s == 0.0:
            return
        if all(ax.braked for ax in self.axes.values()):
            # Parked: the locked-rotor load is exact for any step (wind held over it).
            self._update_wind(dt_s)
            self.azimuth.step(dt_s)
            self.elevation.step(dt_s)
            self.time_s += dt_s
            self._apply_tilt()
            return
        n = int(math.ceil(dt_s / WIND_UPDATE_S - 1e-9))
        h = dt_s / n
        for _ in range(n):
            self._update_wind(h)
            self.azimuth.step(h)
            self.elevation.step(h)
            self.time_s += h
            self._apply_tilt()


def mount_track(settings: Settings) -> TrackUnevenness:
    """The simulated mount's azimuth track (its own seeded stream, from the wind seed)."""
    sim = settings.simulator
    return TrackUnevenness(sim.track_unevenness_arcsec, random.Random(sim.wind_seed * 7919 + 1))


def wind_climate(settings: Settings) -> HourlyWind | None:
    """The simulated site's hourly mean wind (its own seeded stream, from the wind seed);
    None without ``wind_weibull_k`` (a steady mean) or without wind."""
    sim = settings.simulator
    if sim.wind_weibull_k is None or sim.wind_mean_m_s <= 0.0:
        return None
    return HourlyWind(sim.wind_mean_m_s, sim.wind_weibull_k, sim.wind_hour_correlation,
                      random.Random(sim.wind_seed * 15485863 + 3))


async def run_realtime(mount: SimMount, period_s: float = 0.01,
                       max_step_s: float = 5.0) -> None:
    """Step ``mount`` in real time (``time.monotonic``) every ``period_s`` until cancelled.

    A stall longer than ``max_step_s`` (e.g. a suspended process) is not replayed.
    """
    last = time.monotonic()
    while True:
        await asyncio.sleep(period_s)
        now = time.monotonic()
        mount.step(min(now - last, max_step_s))
        last = now
