"""The engine on the in-process simulator with a simulated clock: the behaviour an operator sees."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.axis import SimulatedAxis
from simulator.mount import SimMount
from tests.support import CONFIG_DIR
from tests.support.rig import DAY, Rig, first_window  # noqa: E402
from tracker import config
from tracker.astro.timeinput import to_unix_s
from tracker.control.machine import State
from tracker.errors import EnvelopeError, StateError
from tracker.log.store import TrackingStore
from tracker.loop.commands import Goto, Jog, Reset, Track, Unpark
from tracker.loop.demand import reacquire_shift_deg
from tracker.mount.envelope import BoresightGeometry, Envelope
from tracker.planning.planner import plan
from tracker.service import dryrun


@pytest.fixture
def sim():
    return config.load(CONFIG_DIR / "sim.toml")


async def test_prepositions_then_tracks_from_the_first_second(sim, tmp_path) -> None:
    w = first_window(sim)
    rig = Rig(sim, w.start_s - 900.0, db=tmp_path / "log.sqlite")
    await rig.engine.start()
    await rig.run(890.0)
    assert rig.engine.machine.state is State.WAITING
    pos = (rig.mount.azimuth.encoder_deg, rig.mount.elevation.encoder_deg)
    assert pos == pytest.approx((w.entry_axis_az_deg, w.entry_axis_el_deg), abs=0.01)
    await rig.run(20.0)
    assert rig.engine.machine.state is State.TRACKING
    assert rig.engine.on_sun                       # on the Sun within 10 s of the window start
    await rig.run(600.0)
    assert rig.engine.error_arcsec < 5.0
    await rig.engine.shutdown()
    store = TrackingStore(tmp_path / "log.sqlite")
    exp = store.exposure(w.start_s, w.start_s + 600.0)
    assert exp["on_sun_s"] >= 0.99 * 600.0
    rig.assert_inside_hard_limits()


async def test_cast_uses_front_at_sunrise_and_rear_at_sunset() -> None:
    cast = config.load(CONFIG_DIR / "cast.toml")
    cast = cast.model_copy(update={"tracking": cast.tracking.model_copy(update={"auto_track": True})})
    for boresight in ("front", "rear"):
        w = first_window(cast, boresight)
        rig = Rig(cast, w.start_s - 1200.0)
        await rig.engine.start()
        await rig.run(1200.0 + 300.0)
        e = rig.engine
        assert e.machine.state is State.TRACKING and e.boresight == boresight and e.on_sun
        # The rear end looks opposite the axis: axis az = Sun az - 180, axis el = -Sun el.
        sun_az, sun_el = e.sun[0], e.sun[1]
        flip = 180.0 if boresight == "rear" else 0.0
        sign = -1.0 if boresight == "rear" else 1.0
        assert rig.mount.azimuth.encoder_deg == pytest.approx(sun_az - flip, abs=0.01)
        assert rig.mount.elevation.encoder_deg == pytest.approx(sign * sun_el, abs=0.01)
        rig.assert_inside_hard_limits()


async def test_drive_trip_during_tracking_stops_and_needs_a_reset(sim) -> None:
    w = first_window(sim)
    rig = Rig(sim, w.start_s + 60.0, at=(w.entry_axis_az_deg, w.entry_axis_el_deg))
    await rig.engine.start()
    await rig.run(400.0, until=lambda e: e.on_sun)
    assert rig.engine.machine.state is State.TRACKING
    from tracker.mount.axis import Condition
    rig.mount.elevation.trip(Condition.OVERCURRENT)
    await rig.run(1.0)
    e = rig.engine
    assert e.machine.state is State.FAULT
    assert "elevation: overcurrent" in e.fault_history[-1][1]
    await rig.run(20.0)
    held = rig.mount.azimuth.true_position_deg
    await rig.run(60.0)
    assert not rig.mount.azimuth.moving                     # stopped (wind jitter aside)
    assert rig.mount.azimuth.true_position_deg == pytest.approx(held, abs=0.001)
    with pytest.raises(StateError, match="reset"):
        await e.execute(Goto(100.0, 10.0), source="test")
    await e.execute(Reset(), source="test")
    assert e.machine.state is State.IDLE
    await rig.run(30.0)
    assert e.machine.state is State.IDLE and not e.auto_tracking    # a reset holds
    await e.execute(Track(True), source="test")
    await rig.run(300.0, until=lambda e: e.on_sun)
    assert e.machine.state is State.TRACKING and e.on_sun   # tracking again on command


async def test_wind_stows_and_resumes_when_calm(sim) -> None:
    w = first_window(sim)
    rig = Rig(sim, w.start_s + 30.0, at=(w.entry_axis_az_deg, w.entry_axis_el_deg))
    await rig.engine.start()
    await rig.run(600.0, until=lambda e: e.on_sun)
    here_az = rig.mount.azimuth.encoder_deg
    rig.mount.set_wind(20.0)
    await rig.run(3.0)                       # the 3 s mean gust passes 15 m/s after 2.1 s
    assert rig.engine.machine.state is State.STOWING
    await rig.run(900.0, until=lambda e: e.machine.state is State.STOWED)
    assert rig.engine.machine.state is State.STOWED
    # The stow direction (axis 270 deg) on the wrap's turn nearest the mount: -90 deg.
    stow = sim.positions.stow
    assert stow.azimuth_deg == 270.0 and abs(here_az + 90.0) < abs(here_az - 270.0)
    assert rig.mount.azimuth.encoder_deg == pytest.approx(-90.0, abs=0.01)
    assert rig.mount.elevation.encoder_deg == pytest.approx(stow.elevation_deg, abs=0.01)
    rig.mount.set_wind(2.0)
    await rig.run(sim.weather.calm_s + 900.0, until=lambda e: e.on_sun)
    assert rig.engine.machine.state is State.TRACKING and rig.engine.on_sun
    rig.assert_inside_hard_limits()


async def test_goto_outside_the_envelope_is_refused_and_moves_nothing(sim, tmp_path) -> None:
    rig = Rig(sim, to_unix_s(DAY), db=tmp_path / "log.sqlite")
    await rig.engine.start()
    await rig.run(1.0)
    if rig.engine.machine.state is State.PARKED:     # parked means nothing moves: unpark
        await rig.engine.execute(Unpark(), source="test")
    before = rig.engine.machine.state
    with pytest.raises(EnvelopeError, match=r"elevation (axis )?31.0 deg,? (is )?above the limit 25.0 deg"):
        await rig.engine.execute(Goto(100.0, 31.0), source="api:127.0.0.1")
    with pytest.raises(EnvelopeError):
        await rig.engine.execute(Jog("az", 0.1, 600.0 * 10), source="cli")
    with pytest.raises(EnvelopeError):
        await rig.engine.execute(Jog("el", 5.0, 1.0), source="cli")  # faster than the axis may go
    await rig.run(5.0)
    assert rig.engine.machine.state is before
    audit = [e for e in rig.store.events(limit=50) if e["kind"] == "command"]
    assert any("31.0" in (e.get("message") or "") or "31.0" in str(e.get("data")) for e in audit)


async def test_goto_and_jog_move_inside_the_envelope(sim) -> None:
    rig = Rig(sim, to_unix_s(DAY))
    await rig.engine.start()
    await rig.engine.execute(Goto(200.0, 10.0), source="test")
    assert rig.engine.machine.state is State.MANUAL and not rig.engine.auto_tracking
    await rig.run(400.0)
    assert rig.engine.pointing_sky == pytest.approx((200.0, 10.0), abs=0.01)
    el0 = rig.mount.elevation.encoder_deg
    await rig.engine.execute(Jog("el", 0.1, 20.0), source="test")
    await rig.run(60.0)
    assert rig.mount.elevation.encoder_deg - el0 == pytest.approx(2.0, abs=0.1)


async def test_dry_run_report_over_a_window(sim) -> None:
    w = first_window(sim)
    report = await dryrun.run(sim, w.start_s - 600.0, 3600.0)
    assert report.windows >= 1 and report.faults == 0
    assert report.available_s == pytest.approx(3000.0, abs=2.0)
    assert report.efficiency >= 0.99
    assert report.rms_error_arcsec is not None and report.rms_error_arcsec <= 2.0
    assert report.max_error_arcsec <= 10.0


@pytest.mark.parametrize("jump_s", [3600.0, -3600.0])
async def test_clock_jump_is_reported_and_tracking_recovers(sim, tmp_path, jump_s) -> None:
    w = first_window(sim)
    mid = w.start_s + 2 * 3600.0
    rig = Rig(sim, mid, db=tmp_path / "log.sqlite")
    az, el = rig.engine.envelope.sky_to_axes(w.boresight, *_sun_at(sim, mid),
                                             near_az_deg=w.entry_axis_az_deg)
    rig.mount = SimMount(sim, azimuth_deg=az, elevation_deg=el)
    rig.engine.bus.axes.update({n: SimulatedAxis(rig.mount.axes[n], rig.clock.now_s)
                                for n in ("azimuth", "elevation")})
    await rig.engine.start()
    await rig.run(120.0, until=lambda e: e.on_sun)
    assert rig.engine.on_sun
    rig.clock.set(rig.clock.now_s() + jump_s)
    await rig.run(1.0)
    warnings = [e for e in rig.store.events(limit=100) if e["kind"] == "warning"]
    assert any("clock jumped by" in e["message"] for e in warnings)
    await rig.run(900.0, until=lambda e: e.on_sun)
    assert rig.engine.machine.state is State.TRACKING and rig.engine.on_sun
    rig.assert_inside_hard_limits()


async def test_reacquires_mid_window_on_the_turn_the_mount_is_on(sim) -> None:
    """Restarted mid-window on the Sun on the wrap's other turn (the plan's path is the +
    turn): the rest of the window fits on the mount's turn, so no slew a turn round."""
    w = plan(sim, "2026-12-03T00:00:00Z", "2026-12-04T00:00:00Z").windows[0]
    assert 0.0 < w.entry_axis_az_deg < 180.0 < w.exit_axis_az_deg     # one window (the Sun
    t0 = w.start_s + 0.7 * (w.end_s - w.start_s)                      # stays below +25 deg)
    sun_az, sun_el = (float(v) for v in _sun_at(sim, t0))
    assert sun_az > 180.0
    rig = Rig(sim, t0, at=(sun_az - 360.0, sun_el))
    await rig.engine.start()
    await rig.run(60.0, until=lambda e: e.on_sun)
    assert rig.engine.machine.state is State.TRACKING and rig.engine.on_sun
    assert rig.mount.azimuth.max_true_deg < sun_az - 360.0 + 1.0     # never left the turn
    await rig.run(30.0)
    assert rig.mount.azimuth.encoder_deg == pytest.approx(rig.engine.sun[0] - 360.0, abs=0.01)


async def test_reacquires_on_the_plan_turn_when_the_mount_turn_runs_out(sim) -> None:
    """sim.toml's afternoon window runs on the - turn (Sun azimuth 230..309 deg is -130..-51
    deg on the axis): a mount on the Sun at +246 deg would reach the +270 deg limit before
    the window ends, so acquisition slews to the plan's turn (0.5 deg/s: 12 min)."""
    w = [x for x in plan(sim, DAY, "2026-03-21T00:00:00Z").windows if x.wrap_turn == -1][0]
    t0 = w.start_s + 0.2 * (w.end_s - w.start_s)
    sun_az, sun_el = (float(v) for v in _sun_at(sim, t0))
    assert 180.0 < sun_az < 270.0
    rig = Rig(sim, t0, at=(sun_az, sun_el))
    await rig.engine.start()
    await rig.run(900.0, until=lambda e: e.on_sun)
    assert rig.engine.machine.state is State.TRACKING and rig.engine.on_sun
    assert rig.mount.azimuth.encoder_deg == pytest.approx(rig.engine.sun[0] - 360.0, abs=0.01)
    rig.assert_inside_hard_limits()


def test_reacquisition_keeps_the_plan_turn_when_the_nearer_one_hits_a_limit() -> None:
    env = Envelope(az_min_deg=-90.0, az_max_deg=560.0, el_min_deg=-25.0, el_max_deg=25.0,
                   boresights=[BoresightGeometry("main", 0.0, 1)])
    path_az = np.linspace(186.5, 266.0, 20)                 # the rest of a window, + turn
    path_el = np.linspace(14.0, -25.0, 20)
    # On the turn above, the path would end at 626 deg, past the 560 deg limit: stay.
    assert reacquire_shift_deg(path_az, path_el, 546.5, env.contains_axes) == 0.0
    # The turn below (-173.5 .. -94 deg) lies past the -90 deg limit: stay.
    assert reacquire_shift_deg(path_az, path_el, -173.5, env.contains_axes) == 0.0
    wide = Envelope(az_min_deg=-270.0, az_max_deg=270.0, el_min_deg=-25.0, el_max_deg=25.0,
                    boresights=[BoresightGeometry("main", 0.0, 1)])
    assert reacquire_shift_deg(path_az, path_el, -173.5, wide.contains_axes) == -360.0
    assert reacquire_shift_deg(path_az, path_el, 100.0, wide.contains_axes) == 0.0


def _sun_at(settings, t_s):
    from tracker.astro.ephemeris import sun_altaz
    s = settings.site
    return sun_altaz(t_s, s.latitude_deg, s.longitude_deg, s.height_m)


@pytest.mark.slow
@pytest.mark.network
async def test_dry_run_over_modbus_tcp_tracks_as_well_as_in_process(sim) -> None:
    w = first_window(sim)
    report = await dryrun.run(sim, w.start_s - 600.0, 900.0, driver="modbus")
    assert report.driver == "modbus" and report.faults == 0
    assert report.efficiency >= 0.99
    assert report.rms_error_arcsec <= 2.0 and report.max_error_arcsec <= 10.0
