"""The engine on the in-process simulated mount and a simulated clock, stepped at the control rate."""

from __future__ import annotations

from simulator.axis import SimulatedAxis
from simulator.mount import SimMount
from simulator.weather import SimWindSensor
from tracker import config
from tracker.clock import SimClock
from tracker.log.store import TrackingStore
from tracker.loop.engine import Engine
from tracker.loop.harness import SimulatedTime
from tracker.loop.weather import make_wind_supervisor
from tracker.planning.planner import plan

DAY = "2026-03-20T00:00:00Z"


class Rig:
    """Engine + simulated mount + store on a simulated clock, stepped at the control rate."""

    def __init__(self, settings: config.Settings, start_s: float, db=None, *,
                 at: tuple[float, float] | None = None) -> None:
        self.settings = settings
        self.clock = SimClock(start_s)
        self.mount = SimMount(settings, **({"azimuth_deg": at[0], "elevation_deg": at[1]}
                                           if at else {}))
        axes = {n: SimulatedAxis(self.mount.axes[n], self.clock.now_s)
                for n in ("azimuth", "elevation")}
        self.store = TrackingStore(db, clock=self.clock.now_s) if db else None
        self.engine = Engine(settings, axes, self.store, self.clock,
                             wind=make_wind_supervisor(SimWindSensor(self.mount, self.clock.now_s),
                                                       settings.weather, self.clock.now_s))

    async def run(self, seconds: float, until=None) -> None:
        harness = SimulatedTime(self.engine, self.clock, self.mount.step)
        await harness.run(seconds, until=(lambda: until(self.engine)) if until else None)

    def assert_inside_hard_limits(self) -> None:
        for ax in self.mount.axes.values():
            assert ax.hard_low_deg <= ax.min_true_deg and ax.max_true_deg <= ax.hard_high_deg


def first_window(settings, boresight=None):
    windows = plan(settings, DAY, "2026-03-21T00:00:00Z").windows
    return next(w for w in windows if boresight in (None, w.boresight))
