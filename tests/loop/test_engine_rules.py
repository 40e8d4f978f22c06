"""The engine obeys the motion rules: faults persist and hold, parked means still, durations
run on monotonic time, acquisition is not tracking (simulated mount, simulated clock)."""

from __future__ import annotations

import math

import pytest

from simulator.faults import FaultInjector
from tests.support import CONFIG_DIR
from tests.support.rig import Rig, first_window
from tracker import config
from tracker.control.machine import State
from tracker.errors import StateError
from tracker.log.store import TrackingStore
from tracker.loop.commands import Goto, Jog, Park, Reset, Stop, Stow, Track, Unpark


@pytest.fixture
def sim() -> config.Settings:
    return config.load(CONFIG_DIR / "sim.toml")


def _speed(rig: Rig) -> float:
    return max(abs(a.velocity_deg_s) for a in rig.mount.axes.values())


#: Below this the mount is still: the simulated wind jitters a held axis by less.
STILL_DEG_S = 1e-3


async def _fault_while_tracking(rig: Rig) -> None:
    await rig.engine.start()
    await rig.run(600.0, until=lambda e: e.machine.state is State.TRACKING)
    FaultInjector(rig.mount).trip("azimuth")
    await rig.run(2.0)
    assert rig.engine.machine.state is State.FAULT


async def test_an_unacknowledged_fault_survives_a_restart_and_nothing_moves(sim, tmp_path) -> None:
    db = tmp_path / "log.sqlite"
    w = first_window(sim)
    rig = Rig(sim, w.start_s + 60.0, db=db)
    rig.engine.auto_tracking = True
    await _fault_while_tracking(rig)
    await rig.run(5.0)
    await rig.engine.shutdown()
    # Restart on the same log, drives healthy again, inside a window, auto tracking on.
    again = Rig(sim, rig.clock.now_s() + 10.0)
    again.store = TrackingStore(db, clock=again.clock.now_s)
    again.engine.store = again.store
    again.engine.recorder.sinks = [again.store.add_sample]
    again.engine.auto_tracking = True
    start = {n: a.encoder_deg for n, a in again.mount.axes.items()}
    await again.engine.start()
    await again.run(60.0)
    assert again.engine.machine.state is State.FAULT
    assert not again.engine.auto_tracking
    moved = {n: abs(a.encoder_deg - start[n]) for n, a in again.mount.axes.items()}
    assert max(moved.values()) < 0.01, moved
    events = [e["message"] for e in again.store.events(limit=50)]
    assert any("unacknowledged fault from before the restart" in m for m in events)
    # Motion commands are refused until reset; reset holds; 'track on' resumes.
    for call in (again.engine.execute(Goto(200.0, 5.0), source="t"),
                 again.engine.execute(Stow(), source="t"),
                 again.engine.execute(Track(True), source="t")):
        with pytest.raises(StateError, match="reset"):
            await call
    await again.engine.execute(Reset(), source="t")
    await again.run(30.0)
    assert again.engine.machine.state is State.IDLE and _speed(again) < STILL_DEG_S
    await again.engine.execute(Track(True), source="t")
    await again.run(600.0, until=lambda e: e.machine.state is State.TRACKING)
    assert again.engine.machine.state is State.TRACKING


async def _fault_and_reset(rig: Rig) -> None:
    FaultInjector(rig.mount).trip("azimuth")
    await rig.run(2.0)
    await rig.engine.execute(Reset(), source="t")


#: Operator actions that turn automatic tracking off, and how long the mount then takes to
#: come to rest (s).
AUTO_OFF = {
    "goto": (lambda e: e.execute(Goto(200.0, 10.0), source="t"), 600.0),
    "jog": (lambda e: e.execute(Jog("el", 0.05, 5.0), source="t"), 30.0),
    "stop": (lambda e: e.execute(Stop(), source="t"), 30.0),
    "park": (lambda e: e.execute(Park(), source="t"), 900.0),
    "stow": (lambda e: e.execute(Stow(), source="t"), 900.0),
    "track off": (lambda e: e.execute(Track(False), source="t"), 30.0),
    "reset after a fault": (None, 30.0),
}


@pytest.mark.parametrize("action", list(AUTO_OFF))
async def test_automatic_tracking_an_operator_turned_off_stays_off_after_a_restart(
        sim, tmp_path, action) -> None:
    """The restart resumes the flag the operator left, not the one before the command: the
    mount stays where the operator left it."""
    db = tmp_path / "log.sqlite"
    w = first_window(sim)
    rig = Rig(sim, w.start_s + 60.0, db=db)
    await rig.engine.start()
    await rig.run(600.0, until=lambda e: e.machine.state is State.TRACKING)
    assert rig.engine.auto_tracking and rig.engine.machine.state is State.TRACKING
    command, rest_s = AUTO_OFF[action]
    if command is None:
        await _fault_and_reset(rig)
    else:
        await command(rig.engine)
    assert not rig.engine.auto_tracking
    await rig.run(rest_s)
    assert _speed(rig) < STILL_DEG_S
    await rig.engine.shutdown()
    again = Rig(sim, rig.clock.now_s() + 10.0, db=db)
    start = {n: a.encoder_deg for n, a in again.mount.axes.items()}
    await again.engine.start()
    await again.run(120.0)
    assert not again.engine.auto_tracking
    assert again.engine.machine.state not in (State.SLEWING, State.ACQUIRING, State.TRACKING)
    moved = {n: abs(a.encoder_deg - start[n]) for n, a in again.mount.axes.items()}
    assert max(moved.values()) < 0.01, moved


async def test_reset_acknowledges_and_holds(sim) -> None:
    w = first_window(sim)
    rig = Rig(sim, w.start_s + 60.0)
    rig.engine.auto_tracking = True
    await _fault_while_tracking(rig)
    await rig.engine.execute(Reset(), source="t")
    await rig.run(120.0)
    assert rig.engine.machine.state is State.IDLE
    assert _speed(rig) < STILL_DEG_S and not rig.engine.auto_tracking


async def test_parked_means_nothing_moves_until_unpark(sim) -> None:
    w = first_window(sim)
    rig = Rig(sim, w.start_s + 60.0)
    await rig.engine.start()
    await rig.engine.execute(Park(), source="t")
    await rig.run(900.0, until=lambda e: e.machine.state is State.PARKED)
    assert rig.engine.machine.state is State.PARKED
    for call in (rig.engine.execute(Track(True), source="alpaca"),
                 rig.engine.execute(Goto(200.0, 5.0), source="t"),
                 rig.engine.execute(Jog("az", 0.1, 5), source="t"),
                 rig.engine.execute(Stow(), source="t")):
        with pytest.raises(StateError, match="parked: 'unpark' first"):
            await call
    before = {n: a.encoder_deg for n, a in rig.mount.axes.items()}
    await rig.run(60.0)
    assert all(abs(a.encoder_deg - before[n]) < 1e-6 for n, a in rig.mount.axes.items())
    assert rig.engine.machine.state is State.PARKED
    await rig.engine.execute(Unpark(), source="t")
    assert rig.engine.machine.state is State.IDLE


async def test_unpark_when_not_parked_is_refused(sim) -> None:
    rig = Rig(sim, first_window(sim).start_s - 7200.0)
    await rig.engine.start()
    await rig.engine.execute(Stow(), source="t")
    with pytest.raises(StateError, match="not parked \\(state stowing\\)"):
        await rig.engine.execute(Unpark(), source="t")


@pytest.mark.parametrize("jump_s", [-3600.0, 3600.0])
async def test_a_jog_lasts_its_seconds_whatever_the_wall_clock_does(sim, jump_s) -> None:
    rig = Rig(sim, first_window(sim).start_s - 7200.0)
    await rig.engine.start()
    el0 = rig.mount.elevation.encoder_deg
    await rig.engine.execute(Jog("el", 0.1, 15.0), source="t")
    await rig.run(5.0)
    rig.clock.set(rig.clock.now_s() + jump_s)
    await rig.run(40.0)
    assert _speed(rig) < STILL_DEG_S
    assert rig.mount.elevation.encoder_deg - el0 == pytest.approx(1.5, abs=0.05)


async def test_acquisition_is_not_tracking_and_on_sun_never_exceeds_tracking(sim, tmp_path) -> None:
    """Starting inside a window at park: the slew to the Sun is 'acquiring', not tracking."""
    w = first_window(sim)
    db = tmp_path / "log.sqlite"
    rig = Rig(sim, w.start_s + 1800.0, db=db)
    rig.engine.auto_tracking = True
    await rig.engine.start()
    await rig.run(900.0)
    await rig.engine.shutdown()
    store = TrackingStore(db, readonly=True)
    states = [e["message"] for e in store.events(limit=50) if e["kind"] == "state"]
    assert any(m.startswith("idle -> acquiring") or "-> acquiring" in m for m in states)
    assert any("acquiring -> tracking" in m for m in states)
    t0, t1 = store.time_range()
    ex = store.exposure(t0, t1, settle_s=sim.tracking.settle_s)
    assert ex["state_s"].get("acquiring", 0.0) > 30.0
    assert ex["on_sun_s"] <= ex["tracking_s"] + 1e-6
    # Tracking starts on the Sun: its errors are those of tracking, not of the slew.
    assert ex["max_error_arcsec"] is not None and ex["max_error_arcsec"] < 10.0
    assert math.isfinite(ex["rms_error_arcsec"]) and ex["rms_error_arcsec"] < 2.0


async def test_a_wind_stow_outlives_a_restart_until_the_wind_is_calm(sim, tmp_path) -> None:
    """The restarted daemon has no wind history: it stows again and waits for the calm
    time, instead of tracking in a wind between the resume and the stow limits."""
    db = tmp_path / "log.sqlite"
    w = first_window(sim)
    rig = Rig(sim, w.start_s + 600.0, db=db)
    await rig.engine.start()
    await rig.run(120.0)
    rig.mount.set_wind(20.0)
    await rig.run(600.0, until=lambda e: e.machine.state is State.STOWED)
    assert rig.engine.machine.state is State.STOWED and rig.engine.wind_stowed
    rig.mount.set_wind(12.0)      # under the stow limit (15), over the resume limit (10)
    await rig.run(60.0)
    await rig.engine.shutdown()
    at = (rig.mount.azimuth.encoder_deg, rig.mount.elevation.encoder_deg)
    again = Rig(sim, rig.clock.now_s() + 10.0, db=db, at=at)
    again.mount.set_wind(12.0)
    await again.engine.start()
    await again.run(300.0)
    assert again.engine.machine.state is State.STOWED and again.engine.wind_stowed
    moved = {n: abs(a.encoder_deg - at[k]) for k, (n, a) in
             enumerate(again.mount.axes.items())}
    assert max(moved.values()) < 0.01, moved
    with pytest.raises(StateError, match="stowed for wind"):
        await again.engine.execute(Goto(200.0, 5.0), source="t")
    again.mount.set_wind(3.0)
    calm_s = sim.weather.calm_s
    await again.run(calm_s - 30.0)
    assert again.engine.machine.state is State.STOWED      # not calm for long enough yet
    await again.run(900.0, until=lambda e: e.machine.state is State.TRACKING)
    assert again.engine.machine.state is State.TRACKING and not again.engine.wind_stowed


@pytest.mark.parametrize("moved_deg", [0.0, 5.0])
async def test_a_parked_mount_is_parked_after_a_restart(sim, tmp_path, moved_deg) -> None:
    """Parked means nothing moves until 'unpark', across a restart too: parked again at the
    park position (drives disabled); moved away while the daemon was down, it holds in
    idle and says so, and nothing moves either way."""
    db = tmp_path / "log.sqlite"
    w = first_window(sim)
    rig = Rig(sim, w.start_s + 600.0, db=db)
    await rig.engine.start()
    await rig.run(60.0)
    await rig.engine.execute(Park(), source="t")
    await rig.run(900.0, until=lambda e: e.machine.state is State.PARKED)
    assert rig.engine.machine.state is State.PARKED
    await rig.engine.shutdown()
    at = (rig.mount.azimuth.encoder_deg + moved_deg, rig.mount.elevation.encoder_deg)
    again = Rig(sim, rig.clock.now_s() + 10.0, db=db, at=at)
    await again.engine.start()
    await again.run(120.0)
    moved = [abs(a.encoder_deg - at[k]) for k, a in enumerate(again.mount.axes.values())]
    assert max(moved) < 0.01, moved
    events = [e["message"] for e in again.store.events(limit=20)]
    if moved_deg == 0.0:
        assert again.engine.machine.state is State.PARKED
        assert not any(a.enabled for a in again.mount.axes.values())
        with pytest.raises(StateError, match="unpark"):
            await again.engine.execute(Goto(200.0, 5.0), source="t")
    else:
        assert again.engine.machine.state is State.IDLE
        assert any("not the park position: holding in idle" in m for m in events)
