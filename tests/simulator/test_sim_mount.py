"""The simulated mount's physics, limits, faults and watchdog (in process, no wire)."""

from __future__ import annotations

import asyncio
import math

import pytest

from simulator.axis import SimulatedAxis
from simulator.faults import FaultInjector
from simulator.mount import SimMount, run_realtime
from tests.support import arcsecond
from tracker.clock import SimClock
from tracker.errors import ConfigError
from tracker.mount.axis import Axis, Condition, Limit
from tracker.service.compose import make_axes


def with_sim(settings, **changes):
    """A copy of ``settings`` with ``simulator`` fields changed."""
    return settings.model_copy(update={"simulator": settings.simulator.model_copy(update=changes)})


def run(mount: SimMount, seconds: float, dt_s: float = 0.01, heartbeat: bool = True) -> None:
    """Step ``mount`` for ``seconds``, heartbeating both drives every 0.1 s."""
    n = round(seconds / dt_s)
    for i in range(n):
        mount.step(dt_s)
        if heartbeat and i % 10 == 0:
            for ax in mount.axes.values():
                ax.heartbeat()


def test_starts_at_park_or_given_position(sim_settings):
    m = SimMount(sim_settings)
    assert m.azimuth.motor_deg == 180.0
    # the load sits deflected under its static wind/unbalance torque and the track tilt
    assert m.azimuth.true_position_deg == pytest.approx(180.0, abs=3 * arcsecond)
    assert m.elevation.encoder_deg == 0.0
    m2 = SimMount(sim_settings, azimuth_deg=-100.0, elevation_deg=12.5)
    assert m2.axes["azimuth"].motor_deg == -100.0
    assert m2.elevation.motor_deg == 12.5
    assert m2.elevation.true_position_deg == pytest.approx(12.5, abs=5 * arcsecond)
    assert m2.azimuth.min_true_deg == m2.azimuth.max_true_deg == m2.azimuth._load_deg
    assert not m.azimuth.enabled and m.azimuth.braked
    assert m.azimuth.limit is Limit.NONE and m.azimuth.condition is Condition.OK


def test_limits_derive_from_config(sim_settings):
    el = SimMount(sim_settings).elevation
    sim = sim_settings.simulator
    assert el.soft_high_deg == pytest.approx(25.0 + sim.soft_limit_margin_deg)
    assert el.hard_high_deg == pytest.approx(25.0 + sim.soft_limit_margin_deg + sim.hard_limit_margin_deg)
    assert el.soft_low_deg == pytest.approx(-25.5)
    assert el.max_speed_deg_s == pytest.approx(0.25 * sim.drive_headroom)
    assert el.max_accel_deg_s2 == pytest.approx(0.025 * sim.drive_headroom)
    # the switch cam starts ahead of the hard limit, past the soft limit
    assert el.soft_high_deg < el.switch_high_deg < el.hard_high_deg


def test_disabled_axis_is_braked_and_ignores_commands(sim_settings):
    m = SimMount(sim_settings)
    m.azimuth.command_velocity(0.3)
    m.azimuth.command_position(200.0, 0.3)
    m.set_wind(20.0)
    run(m, 5.0)
    assert m.azimuth.motor_deg == 180.0
    assert m.azimuth.velocity_deg_s == 0.0
    # the load only deflects on the structure under the wind: a few arc-seconds
    assert m.azimuth.true_position_deg == pytest.approx(180.0, abs=10 * arcsecond)


def test_velocity_ramps_at_the_drive_acceleration(sim_settings):
    m = SimMount(sim_settings)
    az = m.azimuth
    az.enable()
    az.command_velocity(0.3)
    run(m, 2.0)
    a = az.max_accel_deg_s2  # 0.06 deg/s^2
    # after 2 s of ramping the velocity is a*t less the inertia lag (a*tau)
    assert az.velocity_deg_s == pytest.approx(a * (2.0 - 0.05), abs=0.004)
    run(m, 10.0)
    assert az.velocity_deg_s == pytest.approx(0.3, abs=0.002)
    assert az.moving


def test_speed_is_clamped_to_the_drive_limit(sim_settings):
    m = SimMount(sim_settings)
    m.elevation.enable()
    m.elevation.command_velocity(-50.0)
    run(m, 30.0)
    assert m.elevation.velocity_deg_s == pytest.approx(-m.elevation.max_speed_deg_s, abs=0.002)


def test_position_command_reaches_target_and_holds(sim_settings):
    m = SimMount(sim_settings)
    az = m.azimuth
    az.enable()
    az.command_position(185.0, 0.2)
    peak = 0.0
    for _ in range(60):
        run(m, 1.0)
        peak = max(peak, abs(az.velocity_deg_s))
    # the velocity loop (PI, damping 0.7) on the flexible axis overshoots its reference a little
    assert peak <= 0.2 * 1.05
    assert abs(az.encoder_deg - 185.0) <= 1.0 * arcsecond
    assert not az.moving
    run(m, 20.0)
    assert abs(az.encoder_deg - 185.0) <= 1.0 * arcsecond


def test_encoder_is_quantised(sim_settings):
    s = with_sim(sim_settings, encoder_resolution_arcsec=0.5)
    s = with_sim(s, azimuth=s.simulator.azimuth.model_copy(update={"encoder_drift_arcsec": 0.0}))
    m = SimMount(s)
    m.azimuth.enable()
    m.azimuth.command_velocity(0.0123)
    q = 0.5 * arcsecond
    for _ in range(50):
        run(m, 0.37)
        enc = m.azimuth.encoder_deg
        assert abs(enc / q - round(enc / q)) < 1e-6
        # the encoder sits on the motor side (no drift configured here)
        assert abs(enc - m.azimuth.motor_deg) <= q / 2 + 1e-12


def test_backlash_shows_on_reversal(sim_settings):
    """With no wind the load trails the motor by half the backlash, then leads it after reversing."""
    out = {}
    for b in (0.0, 2.0):
        m = SimMount(with_sim(sim_settings, backlash_arcsec=b, friction_deg_s2=0.0))
        m.set_wind(0.0)
        az = m.azimuth
        az.enable()
        az.command_velocity(0.01)
        run(m, 3.0)
        fwd = az.true_position_deg
        az.command_velocity(-0.01)
        run(m, 6.0)
        out[b] = (fwd, az.true_position_deg)
    assert (out[2.0][0] - out[0.0][0]) / arcsecond == pytest.approx(-1.0, abs=0.05)
    assert (out[2.0][1] - out[0.0][1]) / arcsecond == pytest.approx(+1.0, abs=0.05)


def test_soft_limit_stops_the_axis_at_it_and_refuses_further(sim_settings):
    m = SimMount(sim_settings)
    el = m.elevation
    el.enable()
    el.command_velocity(0.3)
    run(m, 300.0)
    assert el.condition is Condition.OK
    assert el.limit is Limit.SOFT_HIGH
    assert el.true_position_deg == pytest.approx(el.soft_high_deg, abs=2 * arcsecond)
    assert el.max_true_deg < el.soft_high_deg + 0.01
    # further out is refused, back in is fine
    el.command_position(40.0, 0.3)
    run(m, 10.0)
    assert el.true_position_deg < el.soft_high_deg + 0.01
    el.command_velocity(-0.1)
    run(m, 10.0)
    assert el.velocity_deg_s < -0.09
    assert el.limit is Limit.NONE


def test_low_soft_limit_on_the_azimuth_wrap(sim_settings):
    m = SimMount(sim_settings, azimuth_deg=-260.0)
    az = m.azimuth
    az.enable()
    az.command_velocity(-1.0)
    run(m, 100.0)
    assert az.limit is Limit.SOFT_LOW
    assert az.true_position_deg == pytest.approx(-270.5, abs=2 * arcsecond)
    assert az.min_true_deg > az.soft_low_deg - 0.01


def test_encoder_jump_trips_and_runs_into_the_hard_limit_switch_safely(sim_settings):
    """A wrong encoder fools the soft limits; the hard switch and brake still stop the axis."""
    m = SimMount(sim_settings, elevation_deg=20.0)
    el = m.elevation
    el.enable()
    el.encoder_jump(-5.0)
    assert el.condition is Condition.ENCODER_JUMP and el.fault_code == 6
    assert el.encoder_deg == pytest.approx(15.0, abs=arcsecond)
    assert not el.enabled
    el.reset()
    assert el.condition is Condition.OK
    el.enable()
    el.command_velocity(0.3)  # the drive believes it has 10 deg of room
    run(m, 200.0)
    assert el.condition is Condition.LIMIT_SWITCH and el.fault_code == 5
    assert el.limit is Limit.HARD_HIGH
    assert el.max_true_deg <= el.hard_high_deg
    assert el.max_true_deg > el.soft_high_deg  # it really went past the soft limit
    assert el.velocity_deg_s == 0.0 and el.braked
    # after a reset the drive only moves back out of the switch
    el.reset()
    el.enable()
    el.command_velocity(0.2)
    run(m, 5.0)
    assert el.max_true_deg <= el.hard_high_deg
    el.clear_encoder_offset()
    el.command_position(10.0, 0.25)
    run(m, 120.0)
    assert el.encoder_deg == pytest.approx(10.0, abs=arcsecond)
    assert el.limit is Limit.NONE


def test_watchdog_ramps_to_zero_and_latches(sim_settings):
    m = SimMount(sim_settings)
    az = m.azimuth
    az.enable()
    az.command_velocity(0.4)
    run(m, 10.0)  # heartbeats keep it going
    assert az.condition is Condition.OK and az.velocity_deg_s == pytest.approx(0.4, abs=0.002)
    az.heartbeat()
    m.step(sim_settings.drives.watchdog_s - 0.05)
    assert az.condition is Condition.OK
    m.step(0.1)
    assert az.condition is Condition.WATCHDOG and az.fault_code == 7
    v0 = az.velocity_deg_s
    run(m, 1.0, heartbeat=False)
    # a controlled ramp at the drive's deceleration, not a brake slam
    assert az.velocity_deg_s == pytest.approx(v0 - az.max_accel_deg_s2, abs=0.01)
    run(m, 20.0, heartbeat=False)
    assert not az.moving
    az.command_velocity(0.2)  # ignored while latched
    run(m, 2.0)
    assert not az.moving and az.condition is Condition.WATCHDOG
    az.reset()
    assert az.condition is Condition.OK
    az.command_velocity(0.2)
    run(m, 10.0)
    assert az.velocity_deg_s == pytest.approx(0.2, abs=0.002)


def test_trip_brakes_and_needs_reset_and_enable(sim_settings):
    m = SimMount(sim_settings)
    az = m.azimuth
    az.enable()
    az.command_velocity(0.5)
    run(m, 15.0)
    x0 = az.true_position_deg
    v0 = az.velocity_deg_s
    az.trip(Condition.OVERCURRENT)
    assert az.condition is Condition.OVERCURRENT and az.fault_code == 1
    assert az.fault_text == "drive overcurrent"
    run(m, 1.0)
    assert az.velocity_deg_s == 0.0 and az.braked
    # braked at the brake's deceleration (much harder than the drive's own ramp)
    assert az.brake_decel_deg_s2 >= 10 * az.max_accel_deg_s2
    assert az.true_position_deg - x0 == pytest.approx(v0 * v0 / (2 * az.brake_decel_deg_s2),
                                                      rel=0.02)
    az.command_velocity(0.5)
    run(m, 1.0)
    assert az.velocity_deg_s == 0.0
    az.reset()
    assert az.condition is Condition.OK and not az.enabled
    az.enable()
    az.command_velocity(0.1)
    run(m, 5.0)
    assert az.velocity_deg_s == pytest.approx(0.1, abs=0.002)
    with pytest.raises(ValueError):
        az.trip(Condition.TIMEOUT)


def test_estop_blocks_reset_until_released(sim_settings):
    m = SimMount(sim_settings)
    faults = FaultInjector(m)
    for ax in m.axes.values():
        ax.enable()
    faults.estop(True)
    for ax in m.axes.values():
        assert ax.condition is Condition.ESTOP and ax.fault_code == 4
        ax.reset()
        assert ax.condition is Condition.ESTOP
    faults.estop(False)
    for ax in m.axes.values():
        ax.reset()
        assert ax.condition is Condition.OK


def test_disable_ramps_down_then_brakes(sim_settings):
    m = SimMount(sim_settings)
    az = m.azimuth
    az.enable()
    az.command_velocity(0.5)
    run(m, 15.0)
    az.disable()
    assert not az.enabled
    run(m, 1.0)
    assert az.velocity_deg_s == pytest.approx(0.5 - az.max_accel_deg_s2, abs=0.01)
    run(m, 20.0)
    assert az.braked and az.velocity_deg_s == 0.0
    x = az.motor_deg
    m.set_wind(25.0)
    run(m, 10.0)
    assert az.motor_deg == x  # the brake holds the motor; the load deflects on the structure
    assert az.true_position_deg == pytest.approx(x, abs=10 * arcsecond)


def test_wind_is_seeded_and_can_be_overridden(sim_settings):
    a, b = SimMount(sim_settings), SimMount(sim_settings)
    c = SimMount(with_sim(sim_settings, wind_seed=7))
    series = []
    for m in (a, b, c):
        s = []
        for _ in range(200):
            m.step(0.5)
            s.append(m.wind_m_s)
        series.append(s)
    assert series[0] == series[1]
    assert series[0] != series[2]
    mean = sum(series[0]) / len(series[0])
    assert 3.0 < mean < 7.0  # sim.toml: 5 m/s mean
    assert max(series[0]) - min(series[0]) > 0.5
    a.set_wind(18.0)
    a.step(1.0)
    assert a.wind_m_s == 18.0
    a.set_wind(None)
    assert a.wind_m_s != 18.0
    with pytest.raises(ValueError):
        a.set_wind(-1.0)


def test_stronger_wind_disturbs_a_held_axis_more():
    from tests.support import CONFIG_DIR
    from tracker import config

    s = config.load(CONFIG_DIR / "sim.toml")
    errs = {}
    for w in (3.0, 25.0):
        m = SimMount(s)
        m.set_wind(w)
        az = m.azimuth
        az.enable()
        # plain velocity hold (no position loop): the wind shows as drift
        az.command_velocity(0.0)
        run(m, 20.0)
        errs[w] = abs(az.true_position_deg - 180.0)
    assert errs[25.0] > 10 * errs[3.0]


def track_rms_arcsec(settings, wind_m_s: float | None) -> float:
    """Follow a Sun-like path with velocity feed-forward + position correction at 10 Hz."""
    m = SimMount(settings, azimuth_deg=100.0, elevation_deg=5.0)
    for ax in m.axes.values():
        ax.enable()
    if wind_m_s is not None:
        m.set_wind(wind_m_s)

    def target(name: str, t: float) -> tuple[float, float]:
        # az ~ 15 deg/h and curving; el rising ~10 deg/h
        if name == "azimuth":
            return 100.0 + 0.0042 * t + 2e-8 * t * t, 0.0042 + 4e-8 * t
        return 5.0 + 0.0028 * t - 1e-8 * t * t, 0.0028 - 2e-8 * t

    errs = []
    t = 0.0
    for k in range(6000):  # 600 s
        for name, ax in m.axes.items():
            p, v = target(name, t)
            ax.command_velocity(v + 1.0 * (p - ax.encoder_deg))
        for _ in range(10):
            m.step(0.01)
        t += 0.1
        if k > 600:  # after settling
            for name, ax in m.axes.items():
                errs.append(ax.true_position_deg - target(name, t)[0])
    return math.sqrt(sum(e * e for e in errs) / len(errs)) / arcsecond


def test_tracking_a_sun_like_path_to_about_an_arcsecond(sim_settings):
    rms = track_rms_arcsec(sim_settings, None)  # the default wind model, 3 m/s mean
    assert rms < 1.5
    assert track_rms_arcsec(sim_settings, 20.0) > rms


def test_big_steps_match_small_steps(sim_settings):
    a, b = SimMount(sim_settings), SimMount(sim_settings)
    for m in (a, b):
        m.azimuth.enable()
        m.azimuth.command_velocity(0.2)
    for _ in range(8):
        a.step(0.5)
        a.azimuth.heartbeat()
        for _ in range(50):
            b.step(0.01)
        b.azimuth.heartbeat()
    assert a.time_s == pytest.approx(4.0) and b.time_s == pytest.approx(4.0)
    # Through the acceleration ramp 0.1 s sub-steps lag 10 ms steps by under 20 arcsec...
    assert a.azimuth.true_position_deg == pytest.approx(b.azimuth.true_position_deg, abs=5e-3)
    # ...and at steady speed they move alike to a few arc-seconds in 2 s (0.05 %).
    a0, b0 = a.azimuth.true_position_deg, b.azimuth.true_position_deg
    for _ in range(4):
        a.step(0.5)
        a.azimuth.heartbeat()
        for _ in range(50):
            b.step(0.01)
        b.azimuth.heartbeat()
    moved_a = a.azimuth.true_position_deg - a0
    moved_b = b.azimuth.true_position_deg - b0
    assert moved_a == pytest.approx(0.4, abs=0.01)
    assert moved_a == pytest.approx(moved_b, abs=1e-3)
    with pytest.raises(ValueError):
        a.step(-0.1)


async def test_run_realtime_follows_the_monotonic_clock(sim_settings):
    m = SimMount(sim_settings)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    task = asyncio.create_task(run_realtime(m, period_s=0.01))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    elapsed = loop.time() - t0
    assert m.time_s > 0.15
    assert elapsed - 0.25 < m.time_s <= elapsed + 1e-6


async def test_simulated_axis_reads_commands_and_link_down(sim_settings):
    m = SimMount(sim_settings)
    clock = SimClock(1.7e9)
    axes = make_axes(sim_settings, clock=clock, mount=m)
    az = axes["azimuth"]
    assert isinstance(az, SimulatedAxis) and isinstance(az, Axis)
    st = await az.read()
    assert st.condition is Condition.LINK_DOWN and not st.fresh  # not connected yet
    await az.connect()
    await az.enable()
    await az.command_velocity(0.1)
    run(m, 5.0)
    clock.advance(5.0)
    st = await az.read()
    assert st.ok and st.fresh and st.enabled and st.moving
    assert st.timestamp_s == 1.7e9 + 5.0
    assert st.position_deg == m.azimuth.encoder_deg
    assert st.velocity_deg_s == pytest.approx(m.azimuth.velocity_deg_s)
    faults = FaultInjector(m, axes=axes)
    faults.link(False, "azimuth")
    await az.command_velocity(-0.4)  # dropped
    run(m, 0.5)
    down = await az.read()
    assert down.condition is Condition.LINK_DOWN and not down.fresh
    assert down.position_deg == st.position_deg
    assert m.azimuth.velocity_deg_s > 0.09
    run(m, 2.0, heartbeat=False)  # no commands reach the drive: its watchdog stops it
    faults.clear()
    st = await az.read()
    assert st.condition is Condition.WATCHDOG and st.fault_code == 7


def test_factory_choices(sim_settings):
    with pytest.raises(ConfigError):
        make_axes(sim_settings, clock=lambda: 0.0)
    from drivers.modbus import ModbusAxis
    from tests.support import CONFIG_DIR
    from tracker import config

    s = config.load(CONFIG_DIR / "sim-modbus.toml")
    axes = make_axes(s, clock=SimClock(0.0))
    assert set(axes) == {"azimuth", "elevation"}
    assert all(isinstance(a, ModbusAxis) and isinstance(a, Axis) for a in axes.values())
    assert axes["azimuth"].device_id == 1 and axes["elevation"].device_id == 2


def test_fault_text_commands(sim_settings):
    m = SimMount(sim_settings)
    f = FaultInjector(m)
    assert "trip AXIS CONDITION" in f.command("help")
    assert f.command("trip elevation overtemperature") == "tripped elevation: overtemperature"
    assert m.elevation.condition is Condition.OVERTEMPERATURE
    assert f.command("jump azimuth 0.25").startswith("encoder jump")
    assert m.azimuth.encoder_deg == pytest.approx(180.25)
    assert m.azimuth.condition is Condition.ENCODER_JUMP
    f.command("wind 17.5")
    assert m.wind_m_s == 17.5
    f.command("wind model")
    assert m.wind_m_s != 17.5
    assert f.command("estop on") == "e-stop on" and m.azimuth.estop_active
    assert "elevation" in f.command("status") and "estop" in f.command("status")
    # bad input: a clear error, nothing changed
    before = (m.azimuth.condition, m.elevation.condition, m.wind_m_s)
    for bad in ("bogus", "trip", "trip nope overcurrent", "trip azimuth sideways",
                "trip azimuth timeout", "wind fast", "estop maybe", "drop"):
        assert f.command(bad).startswith("error:"), bad
    assert (m.azimuth.condition, m.elevation.condition, m.wind_m_s) == before
    assert f.command("") == ""
