"""Soak: weeks of simulated operation with seeded random faults and an automatic operator.

    python benchmarks/soak.py [--days 30] [--seed 1] [--mean-interval-h 2] [--config config/sim.toml]

The dry-run engine path (``tracker.loop.engine.Engine`` on a ``SimClock``, the simulated mount
through in-process ``SimulatedAxis`` drives, the SQLite tracking log), stepped at the control
rate (longer idle steps only while parked or stowed with nothing due, as in
``tracker.service.dryrun``).  Faults arrive as a Poisson process (mean ``--mean-interval-h``,
counted from the recovery of the previous fault, so faults do not overlap): drive trips,
comms loss (``SimulatedAxis.set_link(False)`` for 2-60 s), encoder jumps, e-stops (released
after 1-5 min), wind gusts above the stow limit (5-30 min), clock jumps of +-1 h.  An
automatic operator does what docs/faults.md says, a few minutes after the fault: re-reference
the encoder (after a jump), wait for the e-stop release or the link, then ``reset`` (retried
each minute while refused).  Wind and clock jumps need no operator.

A fault counts as *logged* when the events table holds its event (``fault`` for drive/comms/
e-stop faults, a ``state`` change to stowing for wind, a ``warning`` for a clock jump), and
as *recovered* when the controller is back to normal: no fault, not stowed for wind, and
on the Sun if a tracking window is open.  Prints: days, faults injected by kind, logged,
recovered, time to recover (p50/max), tracking efficiency, unhandled exceptions, wall time;
exits 1 if any fault was not logged or not recovered, a fault happened that was not injected,
an exception escaped a tick or an axis left its hard limits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import random
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator.axis import SimulatedAxis  # noqa: E402
from simulator.mount import SimMount  # noqa: E402
from simulator.weather import SimWindSensor  # noqa: E402
from tracker import config  # noqa: E402
from tracker.astro.timeinput import to_unix_s  # noqa: E402
from tracker.clock import SimClock  # noqa: E402
from tracker.control.machine import State  # noqa: E402
from tracker.errors import TrackerError  # noqa: E402
from tracker.log.store import TrackingStore  # noqa: E402
from tracker.loop.commands import Reset, Track  # noqa: E402
from tracker.loop.engine import Engine  # noqa: E402
from tracker.loop.harness import SimulatedTime  # noqa: E402
from tracker.loop.weather import make_wind_supervisor  # noqa: E402
from tracker.mount.axis import Condition  # noqa: E402
from tracker.planning.planner import plan as make_plan  # noqa: E402
from tracker.service.compose import make_truth  # noqa: E402
from tracker.service.dryrun import _quiet  # noqa: E402

log = logging.getLogger("soak")

KINDS = ("trip", "link", "encoder_jump", "estop", "wind", "clock_jump")
TRIP_CONDITIONS = (Condition.OVERCURRENT, Condition.OVERTEMPERATURE, Condition.FOLLOWING_ERROR,
                   Condition.DRIVE_FAULT)
#: How the events table shows each kind: (event kind, text in the message), any of them.
LOG_SIGNATURE = {"trip": [("fault", "")], "link": [("fault", "link_down")],
                 "encoder_jump": [("fault", "encoder_jump")], "estop": [("fault", "estop")],
                 # a stow, or (parked or in fault: nothing moves) a warning that it holds
                 "wind": [("state", "-> stowing: wind"), ("warning", "not stowing")],
                 "clock_jump": [("warning", "clock jumped")], "unexpected": [("fault", "")]}
#: After the nominal duration the run goes on (at most this long) until the last fault recovers.
OVERTIME_S = 3 * 3600.0


@dataclass
class Fault:
    kind: str
    t_s: float                    # controller clock at injection (UTC unix s, simulated)
    elapsed_s: float              # simulated seconds since the start at injection
    detail: str
    recovered_elapsed_s: float | None = None
    logged: bool = False

    @property
    def recover_s(self) -> float | None:
        if self.recovered_elapsed_s is None:
            return None
        return self.recovered_elapsed_s - self.elapsed_s


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


@dataclass
class SoakReport:
    days: float
    seed: int
    faults: list[Fault] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    available_s: float = 0.0
    tracked_s: float = 0.0
    ticks: int = 0
    wall_s: float = 0.0
    resets: int = 0
    refused_resets: int = 0
    inside_limits: bool = True
    #: Pointing error over settled tracking from the log, arc-seconds: encoder-based and TRUE
    #: (the magnet's mechanical axis vs the Sun, simulator truth).
    rms_error_arcsec: float | None = None
    max_error_arcsec: float | None = None
    true_rms_error_arcsec: float | None = None
    true_max_error_arcsec: float | None = None

    @property
    def efficiency(self) -> float:
        return self.tracked_s / self.available_s if self.available_s > 0 else 0.0

    def by_kind(self) -> dict[str, int]:
        return {k: sum(f.kind == k for f in self.faults) for k in KINDS}

    @property
    def injected(self) -> list[Fault]:
        return [f for f in self.faults if f.kind != "unexpected"]

    @property
    def unexpected(self) -> list[Fault]:
        return [f for f in self.faults if f.kind == "unexpected"]

    @property
    def recover_times_s(self) -> list[float]:
        return sorted(f.recover_s for f in self.faults if f.recover_s is not None)

    @property
    def ok(self) -> bool:
        return (not self.exceptions and self.inside_limits and not self.unexpected
                and all(f.logged and f.recover_s is not None for f in self.faults))

    def summary(self) -> str:
        rt = self.recover_times_s
        p50 = rt[len(rt) // 2] if rt else float("nan")
        mx = rt[-1] if rt else float("nan")
        lines = [
            f"soak: {self.days:.2f} simulated days, seed {self.seed}",
            f"  faults injected  {len(self.injected)}  "
            + ", ".join(f"{k} {n}" for k, n in self.by_kind().items()),
            f"  faults logged    {sum(f.logged for f in self.injected)}",
            f"  unexpected faults (not injected; reset by the operator) {len(self.unexpected)}"
            + "".join(f"\n    +{f.elapsed_s:.0f} s: {f.detail}" for f in self.unexpected[:10]),
            f"  recovered        {len(rt)}  (operator resets {self.resets}, "
            f"refused and retried {self.refused_resets})",
            f"  time to recover  p50 {p50:.0f} s, max {mx:.0f} s",
            f"  tracking         {self.tracked_s / 3600:.1f} h on the Sun of "
            f"{self.available_s / 3600:.1f} h available: efficiency {self.efficiency:.4f}",
            f"  pointing error   rms {_f(self.rms_error_arcsec)} max {_f(self.max_error_arcsec)}"
            f" arcsec (encoders); true rms {_f(self.true_rms_error_arcsec)} max "
            f"{_f(self.true_max_error_arcsec)} arcsec (simulator truth)",
            f"  unhandled exceptions {len(self.exceptions)}; axes inside hard limits: "
            f"{self.inside_limits}",
            f"  wall time        {self.wall_s:.1f} s ({self.ticks} ticks, "
            f"{self.days * 86400 / max(self.wall_s, 1e-9):.0f}x real time)",
        ]
        bad = [f for f in self.faults if not f.logged or f.recover_s is None]
        for f in bad[:10]:
            lines.append(f"  NOT {'logged' if not f.logged else 'recovered'}: {f.kind} "
                         f"at +{f.elapsed_s:.0f} s ({f.detail})")
        for e in self.exceptions[:3]:
            lines.append("  exception: " + e.strip().splitlines()[-1])
        return "\n".join(lines)


class Soak:
    """The run: engine + mount + store on a simulated clock, faults and an operator."""

    def __init__(self, settings: config.Settings, start_s: float, days: float, *, seed: int,
                 mean_interval_s: float, db_path: Path) -> None:
        if not settings.tracking.auto_track:
            settings = settings.model_copy(update={
                "tracking": settings.tracking.model_copy(update={"auto_track": True})})
        self.settings = settings
        self.rng = random.Random(seed)
        self.clock = SimClock(start_s)
        self.mount = SimMount(settings)
        self.axes = {n: SimulatedAxis(self.mount.axes[n], self.clock.now_s)
                     for n in ("azimuth", "elevation")}
        self.store = TrackingStore(db_path, clock=self.clock.now_s, commit_interval_s=60.0,
                                   synchronous="NORMAL")
        self.engine = Engine(settings, self.axes, self.store, self.clock,
                             wind=make_wind_supervisor(SimWindSensor(self.mount, self.clock.now_s),
                                                       settings.weather, self.clock.now_s),
                             true_direction=make_truth(settings, self.mount))
        self.duration_s = days * 86400.0
        self.mean_interval_s = mean_interval_s
        self.report = SoakReport(days=days, seed=seed)
        self.elapsed_s = 0.0
        self.segments: list[list[float]] = [[start_s, start_s]]   # continuous clock spans
        self.active: Fault | None = None
        self._actions: list[tuple[float, str]] = []     # (elapsed_s, action) for the active fault
        self.next_fault_elapsed_s = self._draw()

    def _draw(self) -> float:
        return self.elapsed_s + self.rng.expovariate(1.0 / self.mean_interval_s)

    # ------------------------------------------------------------------ faults
    def _inject(self) -> None:
        rng, m, now = self.rng, self.mount, self.elapsed_s
        kind = rng.choice(KINDS)
        axis = rng.choice(("azimuth", "elevation"))
        actions: list[tuple[float, str]] = []
        op_delay = rng.uniform(120.0, 600.0)          # the operator reacts in 2-10 min
        if kind == "trip":
            cond = rng.choice(TRIP_CONDITIONS)
            m.axes[axis].trip(cond)
            detail = f"{axis} {cond.value}"
            actions = [(now + op_delay, "reset")]
        elif kind == "link":
            down_s = rng.uniform(2.0, 60.0)
            for a in self.axes.values():
                a.set_link(False)
            detail = f"both links down {down_s:.0f} s"
            actions = [(now + down_s, "link_up"), (now + max(op_delay, down_s + 5.0), "reset")]
        elif kind == "encoder_jump":
            delta = rng.choice((-1, 1)) * rng.uniform(0.05, 2.0)
            m.axes[axis].encoder_jump(delta)
            detail = f"{axis} {delta:+.3f} deg"
            actions = [(now + op_delay, "rereference"), (now + op_delay, "reset")]
        elif kind == "estop":
            hold_s = rng.uniform(60.0, 300.0)
            for ax in m.axes.values():
                ax.estop(True)
            detail = f"released after {hold_s:.0f} s"
            actions = [(now + hold_s, "estop_off"), (now + hold_s + op_delay, "reset")]
        elif kind == "wind":
            gust_s = rng.uniform(300.0, 1800.0)
            speed = rng.uniform(1.2, 2.0) * self.settings.weather.wind_stow_m_s
            m.set_wind(speed)
            detail = f"{speed:.1f} m/s for {gust_s:.0f} s"
            actions = [(now + gust_s, "wind_off")]
        else:
            jump = rng.choice((-3600.0, 3600.0))
            self.segments[-1][1] = self.clock.now_s()
            self.clock.set(self.clock.now_s() + jump)
            self.segments.append([self.clock.now_s(), self.clock.now_s()])
            detail = f"{jump:+.0f} s"
        self.active = Fault(kind, self.clock.now_s(), now, detail)
        self.report.faults.append(self.active)
        self._actions = sorted(actions)
        log.info("+%.0f s: inject %s (%s)", now, kind, detail)

    def _unexpected(self) -> None:
        """A fault nobody injected (a finding): logged by the engine, reset by the operator."""
        text = self.engine.fault_history[-1][1] if self.engine.fault_history else "?"
        self.active = Fault("unexpected", self.clock.now_s(), self.elapsed_s, text)
        self.report.faults.append(self.active)
        self._actions = [(self.elapsed_s + self.rng.uniform(120.0, 600.0), "reset")]
        log.warning("+%.0f s: unexpected fault: %s", self.elapsed_s, text)

    async def _operate(self) -> None:
        """Run the due operator/world actions of the active fault."""
        while self._actions and self._actions[0][0] <= self.elapsed_s:
            _, action = self._actions.pop(0)
            if action == "link_up":
                for a in self.axes.values():
                    a.set_link(True)
            elif action == "rereference":
                for ax in self.mount.axes.values():
                    ax.clear_encoder_offset()
            elif action == "estop_off":
                for ax in self.mount.axes.values():
                    ax.estop(False)
            elif action == "wind_off":
                self.mount.set_wind(None)
            elif action == "reset":
                try:
                    await self.engine.execute(Reset(), source="soak-operator")
                    await self.engine.execute(Track(True), source="soak-operator")
                    self.report.resets += 1
                except TrackerError:
                    self.report.refused_resets += 1
                    self._actions.append((self.elapsed_s + 60.0, "reset"))
                    self._actions.sort()

    def _normal(self, t: float) -> bool:
        e = self.engine
        if e.machine.state in (State.FAULT, State.ESTOP) or e.status()['fault_pending'] or e.status()['wind_stowed']:
            return False
        if self._actions:
            return False
        w = e.plan_now.window_at(t) if e.plan_now else None
        if w is not None and t > w.start_s + 60.0:
            return e.machine.state is State.TRACKING and e.on_sun
        return e.machine.state is not State.STOWING

    # ------------------------------------------------------------------ the loop
    async def run(self) -> SoakReport:
        e, clock, mount = self.engine, self.clock, self.mount
        period = e.period_s
        rep = self.report
        wall0 = time.perf_counter()
        await e.start()
        harness = SimulatedTime(e, clock, mount.step)

        async def before() -> None:
            if self.active is None and e.machine.state in (State.FAULT, State.ESTOP):
                self._unexpected()
            elif (self.active is None and self.elapsed_s >= self.next_fault_elapsed_s
                    and self.elapsed_s < self.duration_s):
                self._inject()
            if self.active is not None:
                await self._operate()

        def step_s(t: float) -> float:
            if self.active is None and _quiet(e):
                nxt = e.plan_now.next_window(t) if e.plan_now else None
                horizon = (nxt.preposition_by_s - 3600.0) if nxt else math.inf
                until_fault = (self.next_fault_elapsed_s - self.elapsed_s)
                if t + 0.5 < horizon and until_fault > 0.5:
                    return 0.5
            return period

        def observe(dt: float, t_end: float) -> None:
            rep.ticks += 1
            if e.machine.state is State.TRACKING and e.on_sun:
                rep.tracked_s += dt
            self.elapsed_s += dt
            self.segments[-1][1] = t_end
            if self.active is not None and self._normal(t_end):
                self.active.recovered_elapsed_s = self.elapsed_s
                log.info("+%.0f s: recovered from %s in %.0f s", self.elapsed_s,
                         self.active.kind, self.active.recover_s)
                self.active = None
                self.next_fault_elapsed_s = self._draw()

        def done() -> bool:
            return not (self.elapsed_s < self.duration_s or (
                self.active is not None and self.elapsed_s < self.duration_s + OVERTIME_S))

        def on_error(_exc: BaseException) -> None:
            rep.exceptions.append(traceback.format_exc())

        try:
            # Clock jumps injected by the soak move the UTC time, so run by elapsed time.
            while not done():
                await harness.run(60.0, until=done, step_s=step_s, observe=observe,
                                  before=before, on_error=on_error)
        finally:
            await e.shutdown()
        rep.wall_s = time.perf_counter() - wall0
        self._account()
        return rep

    def _account(self) -> None:
        rep = self.report
        lo = min(s[0] for s in self.segments)
        hi = max(s[1] for s in self.segments)
        windows = make_plan(self.settings, lo - 86400.0, hi + 86400.0).windows
        rep.available_s = sum(max(0.0, min(w.end_s, b) - max(w.start_s, a))
                              for a, b in self.segments for w in windows)
        store = TrackingStore(self.store.path)
        events = store.events(limit=100000)
        ex = store.exposure(lo, hi, settle_s=self.settings.tracking.settle_s)
        store.close()
        rep.rms_error_arcsec, rep.max_error_arcsec = ex["rms_error_arcsec"], ex["max_error_arcsec"]
        rep.true_rms_error_arcsec = ex["true_rms_error_arcsec"]
        rep.true_max_error_arcsec = ex["true_max_error_arcsec"]
        for f in rep.faults:
            f.logged = any(ev["kind"] == kind and text in (ev.get("message") or "")
                           and f.t_s - 1.0 <= ev["time_s"] <= f.t_s + 600.0
                           for kind, text in LOG_SIGNATURE[f.kind] for ev in events)
        rep.days = self.elapsed_s / 86400.0
        rep.inside_limits = all(ax.hard_low_deg <= ax.min_true_deg and
                                ax.max_true_deg <= ax.hard_high_deg
                                for ax in self.mount.axes.values())


async def soak(settings: config.Settings, start_s: float, days: float, *, seed: int = 1,
               mean_interval_s: float = 7200.0, db_path: Path | None = None) -> SoakReport:
    """Run a soak (see the module docstring) and return its report."""
    with tempfile.TemporaryDirectory() as tmp:
        path = db_path or Path(tmp) / "soak.sqlite"
        return await Soak(settings, start_s, days, seed=seed, mean_interval_s=mean_interval_s,
                          db_path=path).run()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mean-interval-h", type=float, default=2.0)
    ap.add_argument("--start", default="2026-03-01T00:00:00Z")
    ap.add_argument("--config", default=str(Path(__file__).resolve().parent.parent
                                             / "config" / "sim.toml"))
    ap.add_argument("--db", default=None, help="keep the tracking log here")
    ap.add_argument("--json", action="store_true", help="also print the faults as JSON")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(message)s")
    settings = config.load(args.config)
    rep = asyncio.run(soak(settings, to_unix_s(args.start), args.days, seed=args.seed,
                           mean_interval_s=args.mean_interval_h * 3600.0,
                           db_path=Path(args.db) if args.db else None))
    print(rep.summary())
    if args.json:
        print(json.dumps([f.__dict__ | {"recover_s": f.recover_s} for f in rep.faults], indent=1))
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
