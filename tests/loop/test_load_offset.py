"""The engine's load feed-forward on the Sun demand (``tracker.loop.demand.LoadOffset``):
which wind it takes, what it does with a lost or stale anemometer, and when it acts."""

from __future__ import annotations

import logging
import math

import pytest

from tests.support import CONFIG_DIR
from tests.support.rig import Rig, first_window
from tracker import config
from tracker.control.law import AxisDemand
from tracker.loop.demand import Demand, LoadOffset
from tracker.loop.weather import WindDecision, WindVerdict

AS = 1.0 / 3600.0


@pytest.fixture(scope="module")
def sim() -> config.Settings:
    return config.load(CONFIG_DIR / "sim.toml")


def verdict(speed: float, direction: float, *, age: float = 0.2, t: float = 1000.0,
            decision: WindDecision = WindDecision.OK) -> WindVerdict:
    return WindVerdict(t, decision, False, "", speed, direction, speed, speed, speed, age,
                       decision is WindDecision.SENSOR_LOST, 100, 0)


DEMAND = Demand(AxisDemand(90.0, 0.004), AxisDemand(10.0, 0.003), (90.0, 10.0), 90.0)
HERE = (90.0, 10.0)


def test_the_presets_switch_it_on_and_a_default_config_does_not(sim) -> None:
    assert LoadOffset.from_settings(sim) is not None
    off = sim.model_copy(update={"tracking": sim.tracking.model_copy(update={
        "load_feedforward": config.LoadFeedForwardSettings()})})
    assert LoadOffset.from_settings(off) is None


def test_the_demand_moves_by_minus_the_deflection_rates_kept(sim) -> None:
    lo = LoadOffset.from_settings(sim)
    d = lo.apply(DEMAND, HERE, verdict(10.0, 180.0), 1000.0)
    d_az, d_el = lo.last_deg
    assert d_az > 0.0                      # wind from the south pushes az 90 to larger az
    assert d.azimuth.position_deg == pytest.approx(90.0 - d_az)
    assert d.elevation.position_deg == pytest.approx(10.0 - d_el)
    assert (d.azimuth.rate_deg_s, d.elevation.rate_deg_s) == (0.004, 0.003)
    assert d.target_sky == DEMAND.target_sky and d.mount_az_deg == DEMAND.mount_az_deg
    assert 0.5 < abs(d_az) / AS < 5.0      # a few arc-seconds, as the model says


@pytest.mark.parametrize("wind", [
    verdict(10.0, 180.0, decision=WindDecision.SENSOR_LOST),   # lost or frozen
    verdict(10.0, 180.0, age=5.0),                             # stale
    verdict(10.0, 180.0, t=990.0),                             # verdict 10 s old
    verdict(math.nan, 180.0),
    verdict(10.0, math.nan),
    verdict(400.0, 180.0),                                     # not believable
])
def test_a_lost_stale_or_bad_wind_gives_the_unbalance_only(sim, wind, caplog) -> None:
    calm = LoadOffset.from_settings(sim)
    calm.apply(DEMAND, HERE, None, 1000.0)     # no anemometer: the unbalance alone
    lo = LoadOffset.from_settings(sim)
    with caplog.at_level(logging.WARNING, logger="tracker.loop.demand"):
        for k in range(50):                    # 5 s of ticks: one warning, not fifty
            lo.apply(DEMAND, HERE, wind, 1000.0 + 0.1 * k)
    assert lo.last_deg == pytest.approx(calm.last_deg, abs=1e-12)
    # The sag, no wind lean: in azimuth only the backlash's half band behind the motion.
    assert lo.last_deg[0] == pytest.approx(-0.225 * AS) and lo.last_deg[1] < 0.0
    assert len(caplog.records) == 1 and "load feed-forward" in caplog.records[0].message


async def test_it_acts_only_while_acquiring_or_tracking(sim) -> None:
    w = first_window(sim)
    rig = Rig(sim, w.start_s - 900.0)
    seen: set[str] = set()
    offset = rig.engine._load_offset

    class Spy:
        """The engine's load offset, noting the state of each call (a compiled class's
        method cannot be replaced on its instance)."""

        last_deg = property(lambda self: offset.last_deg)

        def apply(self, *a):
            seen.add(rig.engine.state)
            return offset.apply(*a)

    rig.engine._load_offset = Spy()
    states: set[str] = set()
    await rig.engine.start()
    harness_until = lambda e: states.add(e.state) or False   # noqa: E731
    await rig.run(1500.0, until=harness_until)
    await rig.engine.shutdown()
    assert "tracking" in states and ({"slewing", "waiting"} & states)
    assert seen <= {"acquiring", "tracking"} and "tracking" in seen
