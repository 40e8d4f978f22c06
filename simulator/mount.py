"""The simulated mount: two axis drives with physics, limits, faults and wind.

``SimAxis`` is one drive *as the hardware sees it*: the same things its
registers or serial lines expose (encoder position, velocity, flags, fault
code), plus the physics truth tests need (``true_position_deg`` and the record
``min_true_deg``/``max_true_deg`` of where the axis has ever really been).

Physics per axis (all in axis degrees, deg/s, deg/s^2, simulated seconds):

- the drive's own profile generator ramps a velocity reference towards the
  demand within its speed/acceleration limits (the config's ``axes.*`` limits
  times ``simulator.drive_headroom``);
- inertia: the motor velocity follows the reference with a first-order lag
  (``VELOCITY_TAU_S``), disturbed by friction and a wind torque ~ wind^2;
- backlash: the load (the axis the encoder sees) follows the motor within a
  dead band of ``simulator.backlash_arcsec``; the wind preloads it to one side;
- the encoder reads the load position plus any injected offset, quantised to
  ``simulator.encoder_resolution_arcsec``;
- soft limits (envelope +- ``soft_limit_margin_deg``, in the drive's measured
  frame): the drive refuses to move further out and decelerates to stop at them;
- hard limit switches (soft limits +- ``hard_limit_margin_deg``, on the true
  position): the switch cam starts ahead of ``hard_*_deg`` by the worst-case
  braking distance, so the brake stops the axis before the hard limit position;
  the drive trips ``LIMIT_SWITCH`` and brakes; after a reset it only moves
  back out of the switch;
- brakes: a disabled or tripped axis is braked (high deceleration) and holds;
- drive-side watchdog: no heartbeat/command for ``drives.watchdog_s`` of
  simulated time -> controlled ramp to zero and the latched condition ``WATCHDOG``.

Time is injected: ``SimMount.step(dt_s)`` advances simulated time only, so dry
runs go as fast as the CPU allows; ``run_realtime`` steps it from
``time.monotonic()`` for ``tracker simulate`` and the daemon.  The step is pure
Python floats (no numpy): a few microseconds per axis.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time

from tracker.config import Settings
from tracker.mount.axis import CONDITION_CODES, Condition, Limit

log = logging.getLogger(__name__)

#: Velocity-loop time constant of the drives (inertia), seconds.
VELOCITY_TAU_S = 0.05
#: Longest internal integration step, seconds (larger ``dt`` is sub-stepped).  The
#: velocity response is integrated exactly for a held reference (and to second order
#: for a ramping one), so one 10 Hz control period is one sub-step.
MAX_SUBSTEP_S = 0.1
#: Drive's own position-loop gain, 1/s.
POSITION_GAIN_PER_S = 4.0
#: Below this speed an axis counts as not moving, deg/s (0.36 arcsec/s).
MOVING_THRESHOLD_DEG_S = 1e-4
#: Distance from a soft limit at which the axis reports being at it, deg.
SOFT_LIMIT_REPORT_DEG = 1e-3
#: Wind torque as an axis acceleration per (m/s)^2, deg/s^2 (azimuth, elevation).
WIND_ACCEL_AZ_DEG_S2_PER_M2_S2 = 6e-5
WIND_ACCEL_EL_DEG_S2_PER_M2_S2 = 4e-5
#: Fault code reported for a drive fault without its own code (-> ``DRIVE_FAULT``).
GENERIC_FAULT_CODE = 99
#: Wind model update period and gust correlation time, seconds.
WIND_UPDATE_S = 0.5
WIND_CORRELATION_S = 20.0

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
        "enabled", "condition", "fault_text", "estop_active",
        "_motor_deg", "_load_deg", "_v", "_v_ref", "_mode", "_v_demand", "_target_deg",
        "_speed_deg_s", "_offset_deg", "_last_heartbeat_s", "_braking", "_alpha_h", "_alpha",
    )

    def __init__(self, name: str, *, position_deg: float, soft_low_deg: float,
                 soft_high_deg: float, hard_margin_deg: float, max_speed_deg_s: float,
                 max_accel_deg_s2: float, watchdog_s: float, resolution_arcsec: float = 0.5,
                 backlash_arcsec: float = 0.0, friction_deg_s2: float = 0.0) -> None:
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
        v_max = 1.1 * self.max_speed_deg_s
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
        self.disturbance_deg_s2 = 0.0
        self._alpha_h = 0.0        # sub-step for which _alpha was computed
        self._alpha = 0.0          # 1 - exp(-h / tau): exact first-order response over h
        p = float(position_deg)
        self.min_true_deg = p
        self.max_true_deg = p
        self.enabled = False
        self.condition = Condition.OK
        self.fault_text = ""
        self.estop_active = False
        self._motor_deg = p
        self._load_deg = p
        self._v = 0.0
        self._v_ref = 0.0
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
        """Physics truth: where the axis (load side) really is, degrees."""
        return self._load_deg

    @property
    def encoder_deg(self) -> float:
        """The encoder reading: load position + injected offset, quantised."""
        q = self.resolution_deg
        return round((self._load_deg + self._offset_deg) / q) * q

    @property
    def encoder_offset_deg(self) -> float:
        return self._offset_deg

    @property
    def velocity_deg_s(self) -> float:
        return self._v

    @property
    def moving(self) -> bool:
        return abs(self._v) > MOVING_THRESHOLD_DEG_S

    @property
    def fault_code(self) -> int:
        if self.condition is Condition.OK:
            return 0
        return CONDITION_CODES.get(self.condition, GENERIC_FAULT_CODE)

    @property
    def limit(self) -> Limit:
        x = self._load_deg
        if x >= self.switch_high_deg:
            return Limit.HARD_HIGH
        if x <= self.switch_low_deg:
            return Limit.HARD_LOW
        p = x + self._offset_deg
        if p >= self.soft_high_deg - SOFT_LIMIT_REPORT_DEG:
            return Limit.SOFT_HIGH
        if p <= self.soft_low_deg + SOFT_LIMIT_REPORT_DEG:
            return Limit.SOFT_LOW
        return Limit.NONE

    @property
    def braked(self) -> bool:
        """True when the holding brake is applied (disabled or tripped, and stopped)."""
        return self._braking and self._v == 0.0

    # ------------------------------------------------------------------ commands
    def heartbeat(self) -> None:
        self._last_heartbeat_s = self.time_s

    def _can_move(self) -> bool:
        return self.enabled and self.condition is Condition.OK

    def command_velocity(self, v_deg_s: float) -> None:
        """Run at ``v_deg_s`` (clamped to the drive's speed); ignored unless enabled and OK."""
        self.heartbeat()
        v = float(v_deg_s)
        if not math.isfinite(v) or not self._can_move():
            return
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
        self._target_deg = min(max(p, self.soft_low_deg), self.soft_high_deg)
        self._speed_deg_s = min(s, self.max_speed_deg_s)
        self._mode = _HOLD

    def stop(self) -> None:
        """Ramp to zero with the drive's deceleration, then hold there."""
        self.heartbeat()
        if self._braking:
            return
        self._stop_profile()

    def _stop_profile(self) -> None:
        v = self._v_ref
        a = self.max_accel_deg_s2
        p = self._load_deg + self._offset_deg
        self._target_deg = p + v * abs(v) / (2.0 * a)
        self._speed_deg_s = max(abs(v), 1e-9)
        self._mode = _HOLD

    def enable(self) -> None:
        """Release the brake and hold the current position (ignored while faulted)."""
        self.heartbeat()
        if self.condition is not Condition.OK or self.enabled:
            return
        self.enabled = True
        self._braking = False
        self._v_ref = self._v
        self._target_deg = self._load_deg + self._offset_deg
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
        if dt_s <= MAX_SUBSTEP_S:  # the common case, kept lean
            if dt_s <= 0.0:
                if dt_s < 0.0:
                    raise ValueError(f"{self.name}: cannot step back in time ({dt_s} s)")
                return
            self._substep(dt_s)
            t = self.time_s = self.time_s + dt_s
            if t - self._last_heartbeat_s > self.watchdog_s and self.enabled:
                self._watchdog(t)
            return
        n = int(math.ceil(dt_s / MAX_SUBSTEP_S - 1e-9))
        h = dt_s / n
        t0 = self.time_s
        for i in range(1, n + 1):
            self._substep(h)
            t = self.time_s = t0 + i * h
            if t - self._last_heartbeat_s > self.watchdog_s and self.enabled:
                self._watchdog(t)

    def _watchdog(self, t: float) -> None:
        if self.condition is Condition.OK:
            self.condition = Condition.WATCHDOG
            self.fault_text = FAULT_TEXTS[Condition.WATCHDOG]
            self._stop_profile()
            log.info("%s: watchdog: no heartbeat for %.3f s", self.name, t - self._last_heartbeat_s)

    def _substep(self, h: float) -> None:
        v = self._v
        x0 = self._load_deg
        if self._braking:
            # Holding brake: decelerate hard on the load, then hold.
            if v == 0.0:
                return
            dv = self.brake_decel_deg_s2 * h
            if abs(v) <= dv:
                t_stop = abs(v) / self.brake_decel_deg_s2
                dx = 0.5 * v * t_stop
                v = 0.0
            else:
                v1 = v - dv if v > 0.0 else v + dv
                dx = 0.5 * (v + v1) * h
                v = v1
            self._v = v
            self._v_ref = 0.0
            self._motor_deg += dx
            x = x0 + dx
            self._load_deg = x
            self._record(x0, x)
            return
        a = self.max_accel_deg_s2
        p = x0 + self._offset_deg
        # Profile generator: the velocity the drive wants now.
        if self._mode == _VELOCITY:
            vt = self._v_demand
        else:
            err = self._target_deg - p
            e = abs(err)
            vt = POSITION_GAIN_PER_S * e
            s = self._speed_deg_s
            if vt > s:
                vt = s
            vs = math.sqrt(2.0 * a * e)
            if vt > vs:
                vt = vs
            if err < 0.0:
                vt = -vt
        # Soft limits in the drive's measured frame: stop at them, refuse beyond
        # (past one, the drive's position loop pushes back to it).
        if vt >= 0.0:
            room = self.soft_high_deg - p
            vmax = math.sqrt(2.0 * a * room) if room > 0.0 else POSITION_GAIN_PER_S * room
            if vt > vmax:
                vt = vmax
        if vt <= 0.0:
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
        if vt > 0.0 and x0 >= self.switch_high_deg:
            vt = 0.0
        elif vt < 0.0 and x0 <= self.switch_low_deg:
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
        if vr > 0.0 and vt >= 0.0 and vr > vt:
            vr = vt
        elif vr < 0.0 and vt <= 0.0 and vr < vt:
            vr = vt
        self._v_ref = vr
        # Inertia: first-order velocity response, plus wind and friction.
        d = self.disturbance_deg_s2
        if v > MOVING_THRESHOLD_DEG_S:
            d -= self.friction_deg_s2
        elif v < -MOVING_THRESHOLD_DEG_S:
            d += self.friction_deg_s2
        if h != self._alpha_h:
            self._alpha_h = h
            self._alpha = -math.expm1(-h / VELOCITY_TAU_S)
        alpha = self._alpha
        # The reference ramps across the sub-step: respond to its mean (second order in h).
        v1 = v + (0.5 * (vr0 + vr) - v) * alpha + d * h
        vlim = 1.1 * self.max_speed_deg_s
        if v1 > vlim:
            v1 = vlim
        elif v1 < -vlim:
            v1 = -vlim
        self._v = v1
        m = self._motor_deg + 0.5 * (v + v1) * h
        self._motor_deg = m
        # Backlash: the load follows the motor within the dead band, preloaded by the wind.
        # A wind torque above friction keeps the load against one tooth flank.
        b = self.backlash_half_deg
        dw = self.disturbance_deg_s2
        if dw > self.friction_deg_s2:
            x = m + b
        elif dw < -self.friction_deg_s2:
            x = m - b
        else:
            x = x0
            if x > m + b:
                x = m + b
            elif x < m - b:
                x = m - b
        if (not self.enabled and abs(vr) < MOVING_THRESHOLD_DEG_S
                and abs(v1) < MOVING_THRESHOLD_DEG_S):
            self._braking = True  # disabled and ramped down: the brake holds
            self._v = 0.0
            self._v_ref = 0.0
        self._load_deg = x
        self._record(x0, x)

    def _record(self, x0: float, x: float) -> None:
        if x < self.min_true_deg:
            self.min_true_deg = x
        elif x > self.max_true_deg:
            self.max_true_deg = x
        if self.condition is not Condition.LIMIT_SWITCH:
            # Trip on reaching a switch, or on being driven further into one.
            if x >= self.switch_high_deg and x > x0:
                if x0 < self.switch_high_deg or self._v > MOVING_THRESHOLD_DEG_S:
                    self.trip(Condition.LIMIT_SWITCH)
            elif x <= self.switch_low_deg and x < x0:
                if x0 > self.switch_low_deg or self._v < -MOVING_THRESHOLD_DEG_S:
                    self.trip(Condition.LIMIT_SWITCH)


class SimMount:
    """Two simulated axes (``azimuth``, ``elevation``) and the wind that disturbs them.

    ``azimuth_deg``/``elevation_deg`` give the start position (default: park).
    ``time_s`` is simulated seconds since creation; ``wind_m_s`` the current wind
    speed (mean + seeded gusts, or an override from ``set_wind``).
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
            )
        self.azimuth = self.axes["azimuth"]
        self.elevation = self.axes["elevation"]
        self.time_s = 0.0
        self._rng = random.Random(sim.wind_seed)
        self._wind_mean_m_s = sim.wind_mean_m_s
        self._wind_gust_m_s = sim.wind_gust_m_s
        self._wind_model_m_s = sim.wind_mean_m_s
        self._wind_override_m_s: float | None = None
        self._wind_dir_deg = self._rng.uniform(0.0, 360.0)
        self._next_wind_s = 0.0
        self._update_wind()

    @property
    def wind_m_s(self) -> float:
        if self._wind_override_m_s is not None:
            return self._wind_override_m_s
        return self._wind_model_m_s

    @property
    def wind_direction_deg(self) -> float:
        """Where the wind comes from, degrees from north through east."""
        return self._wind_dir_deg

    def set_wind(self, m_s: float | None) -> None:
        """Override the wind speed (m/s, >= 0); ``None`` returns to the seeded model."""
        if m_s is not None:
            m_s = float(m_s)
            if not (math.isfinite(m_s) and m_s >= 0.0):
                raise ValueError(f"wind speed must be a finite value >= 0 m/s, not {m_s}")
        self._wind_override_m_s = m_s
        self._apply_wind()

    def _update_wind(self) -> None:
        """Advance the seeded gust model (Ornstein-Uhlenbeck) by one update period."""
        rng = self._rng
        k = WIND_UPDATE_S / WIND_CORRELATION_S
        w = self._wind_model_m_s
        w += (self._wind_mean_m_s - w) * k + self._wind_gust_m_s * math.sqrt(2.0 * k) * rng.gauss()
        self._wind_model_m_s = max(0.0, w)
        # Direction: a random walk of 0.5 deg per sqrt(0.1 s), whatever the update period.
        self._wind_dir_deg = (self._wind_dir_deg
                              + 0.5 * math.sqrt(WIND_UPDATE_S / 0.1) * rng.gauss()) % 360.0
        self._apply_wind()

    def _apply_wind(self) -> None:
        w2 = self.wind_m_s ** 2
        rel = math.radians(self._wind_dir_deg - self.azimuth._load_deg)
        self.azimuth.disturbance_deg_s2 = WIND_ACCEL_AZ_DEG_S2_PER_M2_S2 * w2 * math.sin(rel)
        self.elevation.disturbance_deg_s2 = (
            WIND_ACCEL_EL_DEG_S2_PER_M2_S2 * w2 * math.cos(rel)
            * math.cos(math.radians(self.elevation._load_deg)))

    def step(self, dt_s: float) -> None:
        """Advance both axes, their watchdogs and the wind by ``dt_s`` simulated seconds."""
        if 0.0 < dt_s <= WIND_UPDATE_S:  # the common case, kept lean
            # The wind is updated after the step that reaches its next update time
            # (it changes slowly; splitting a control period for it would double the cost).
            self.azimuth.step(dt_s)
            self.elevation.step(dt_s)
            t = self.time_s = self.time_s + dt_s
            if t >= self._next_wind_s - 1e-9:
                self._next_wind_s = max(self._next_wind_s + WIND_UPDATE_S, t)
                self._update_wind()
            return
        if dt_s < 0.0:
            raise ValueError(f"cannot step the mount back in time ({dt_s} s)")
        # Wind changes slowly: update it between chunks of at most WIND_UPDATE_S.
        while dt_s > 0.0:
            chunk = min(dt_s, max(self._next_wind_s - self.time_s, 1e-9))
            self.azimuth.step(chunk)
            self.elevation.step(chunk)
            self.time_s += chunk
            dt_s -= chunk
            if self.time_s >= self._next_wind_s - 1e-12:
                self._next_wind_s += WIND_UPDATE_S
                self._update_wind()


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
