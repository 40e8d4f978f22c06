"""Dry runs: the real engine, store and drivers against the simulated mount on a simulated clock.

The same ``Engine.tick`` as the daemon, called once per control period of
simulated time, with the simulator stepped by the same period in between, as
fast as the CPU allows.  ``driver="modbus"`` puts the simulator behind a real
Modbus TCP server on a free loopback port and drives it through the real
Modbus driver; ``driver="opcua"`` behind a real asyncua OPC UA server (the
simulated drive PLC), driven through the real OPC UA driver.

While the mount is parked or waiting with nothing to do (the automation would
not change anything for minutes), the loop may take longer steps of up to
``idle_step_s`` (stowed: the drives hold, are commanded and heartbeated every
step, the watchdog is longer than the step) or, parked (drives disabled, brakes
on), of up to ``parked_step_s`` (below the recorder's gap limit, so the log has
no hole).  Every step that has a task in motion runs at the full control rate,
as do the last ``FULL_RATE_AHEAD_S`` before the automation would start the slew
to the next window's pre-position point.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tracker.clock import SimClock
from tracker.config import Settings
from tracker.control.machine import State
from tracker.errors import TrackerError
from tracker.log.exposure import SampleStats
from tracker.loop.automation import preposition_start_s
from tracker.loop.commands import Reset, Track
from tracker.loop.engine import Engine, iso_utc
from tracker.loop.harness import SimulatedTime
from tracker.loop.tasks import TaskKind
from tracker.mount.axis import Condition
from tracker.mount.pointing import PointingModel
from tracker.planning.planner import plan as make_plan

log = logging.getLogger(__name__)

#: Step of the series kept for the plot (s).
SERIES_STEP_S = 30.0
#: The longest step while parked (s): drives disabled, so no watchdog to heartbeat.
PARKED_STEP_S = 1.5
#: Idle steps end this long before the automation would start a pre-position slew (s).
FULL_RATE_AHEAD_S = 120.0
#: Below this axis speed (deg/s) a parked or stowed mount counts as still (wind jitter is less).
QUIET_SPEED_DEG_S = 1e-3


@dataclass
class DryRunReport:
    """Figures of a dry run.  Errors in arc-seconds over tracking after the settle time."""

    config: str
    driver: str
    start_utc: str
    end_utc: str
    available_s: float
    tracked_s: float
    efficiency: float
    rms_error_arcsec: float | None
    max_error_arcsec: float | None
    p95_error_arcsec: float | None
    true_rms_error_arcsec: float | None
    true_max_error_arcsec: float | None
    windows: int
    faults: int
    fault_events: list[str] = field(default_factory=list)
    state_seconds: dict[str, float] = field(default_factory=dict)
    ticks: int = 0
    wall_s: float = 0.0
    #: CPU seconds of this process over the same span (``time.process_time``): the speed
    #: on a shared machine, where the wall clock also counts the other processes' time.
    cpu_s: float = 0.0
    sim_s: float = 0.0
    speedup: float = 0.0
    db: str | None = None
    #: Per bore from the samples (as ``tracker exposure``): on_sun_s, effective_s, tracking_s,
    #: mean/max off-axis arcsec.
    bores: dict[str, dict] = field(default_factory=dict)
    #: Per bore from the simulator's truth (true pointing, tick by tick, the recorder's running
    #: totals before the samples' rounding): on_sun_s, effective_s.
    true_bores: dict[str, dict] = field(default_factory=dict)
    series: list = field(default_factory=list, repr=False)
    #: On-Sun seconds by the truth (tracking, true error within the on-Sun tolerance), to
    #: check the log's encoder-based exposure ``tracked_s`` against; None without truth.
    true_on_sun_s: float | None = None
    #: The log's samples' true error (each sample's end, settled tracking), arc-seconds.
    log_true_rms_error_arcsec: float | None = None
    log_true_max_error_arcsec: float | None = None
    #: Per bore from the samples' ``true_bores`` (the truth as logged, as ``tracker exposure``):
    #: to check the log's accounting against ``true_bores``.
    log_true_bores: dict[str, dict] = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("series")
        return d

    def summary(self) -> str:
        def f(x: float | None, fmt: str = ".2f") -> str:
            return "n/a" if x is None else format(x, fmt)
        return "\n".join([
            f"dry run {self.start_utc} .. {self.end_utc} ({self.config}, driver {self.driver})",
            f"  windows      {self.windows}, available {self.available_s:.0f} s",
            f"  tracked      {self.tracked_s:.0f} s on-Sun  (efficiency {self.efficiency:.4f})",
            f"  error        rms {f(self.rms_error_arcsec)} arcsec, p95 "
            f"{f(self.p95_error_arcsec)}, max {f(self.max_error_arcsec)} arcsec (after settling)",
            *([f"  true error   rms {f(self.true_rms_error_arcsec)} arcsec, max "
               f"{f(self.true_max_error_arcsec)} arcsec (simulator truth, incl. misalignment)"]
              if self.true_rms_error_arcsec is not None else []),
            *([f"  true on-Sun  {self.true_on_sun_s:.0f} s by the truth vs {self.tracked_s:.0f} s "
               f"in the log (encoders)"] if self.true_on_sun_s is not None else []),
            *[f"  bore {name:<7} on-Sun {b['on_sun_s']:.0f} s, effective {b['effective_s']:.0f} s"
              + (f" (truth {self.true_bores[name]['effective_s']:.0f} s)"
                 if name in self.true_bores else "")
              for name, b in self.bores.items()],
            f"  faults       {self.faults}",
            f"  speed        {self.sim_s:.0f} s simulated in {self.wall_s:.1f} s wall "
            f"({self.speedup:.0f}x real time, {self.ticks} ticks; "
            f"{self.sim_s / self.cpu_s if self.cpu_s > 0 else 0.0:.0f}x by CPU time)",
        ])


class _Series:
    """What the samples do not carry: the plot's decimated series, seconds per state at the
    control rate, and the simulator's true error (truth the controller cannot see)."""

    def __init__(self) -> None:
        self.true_errors: list[float] = []
        self.true_on_sun_s = 0.0
        self.has_truth = False
        self.state_s: dict[State, float] = {}
        #: Decimated series for the plot: (t, sun az, sun el, pointing az, pointing el, error, state)
        self.series: list[tuple[float, float, float, float, float, float, str]] = []
        self._next_sample_t = -math.inf
        self._state: State | None = None
        self._state_s = 0.0

    def state_seconds(self) -> dict[State, float]:
        """Simulated seconds per state so far."""
        if self._state is not None:
            self.state_s[self._state] = self._state_s
        return self.state_s

    def add(self, engine: Engine, dt: float, t: float, tolerance_arcsec: float) -> None:
        state = engine.machine.state
        if state is not self._state:
            # The running state's seconds are summed in place and kept in ``state_s`` on a
            # change (the same additions, without hashing the enum every tick).
            if self._state is not None:
                self.state_s[self._state] = self._state_s
            self._state = state
            self._state_s = self.state_s.setdefault(state, 0.0)
        self._state_s += dt
        if t >= self._next_sample_t:
            self._next_sample_t = t + SERIES_STEP_S
            sun = engine.sun
            self.series.append((t, sun[0], sun[1], *engine.pointing_sky, engine.error_arcsec,
                                state.value))
        true_err = engine.true_error_arcsec
        if true_err == true_err:
            self.has_truth = True
            if true_err <= tolerance_arcsec:
                self.true_on_sun_s += dt
            if engine.settled:
                self.true_errors.append(true_err)


def _rms(xs: list[float]) -> float | None:
    return math.sqrt(sum(x * x for x in xs) / len(xs)) if xs else None


async def run(settings: Settings, start_s: float, duration_s: float, *, driver: str = "sim",
              db_path: str | Path | None = None, idle_step_s: float = 0.5,
              parked_step_s: float = PARKED_STEP_S,
              progress: Callable[[float], None] | None = None,
              config_name: str = "", pointing: PointingModel | None = None,
              drive_faults: Sequence[tuple[float, float]] = ()) -> DryRunReport:
    """Run the controller for ``duration_s`` simulated seconds from ``start_s`` (UTC unix s).

    ``progress`` is called with the simulated seconds done so far (about 200 times).
    ``idle_step_s``/``parked_step_s``: the longest step while stowed or parked (see the
    module docstring; a step beyond the recorder's gap limit leaves that time out of the
    log, as the forecast's 5 s steps do).
    ``drive_faults``: ``(seconds after start, downtime s)``: the azimuth drive trips
    (overcurrent) then, after the downtime, an operator resets and turns tracking on again.
    """
    from simulator.axis import SimulatedAxis
    from simulator.mount import SimMount
    from simulator.weather import SimWindSensor
    from tracker.log.store import TrackingStore
    from tracker.loop.weather import make_wind_supervisor
    from tracker.service.compose import make_truth

    if not settings.tracking.auto_track:
        # A dry run rehearses automatic operation, whatever the preset's start-up default.
        settings = settings.model_copy(update={
            "tracking": settings.tracking.model_copy(update={"auto_track": True})})
    clock = SimClock(start_s)
    mount = SimMount(settings)
    # A dry run's log is reproducible, so it commits once a simulated minute without
    # a full sync and checkpoints the WAL every ten (the daemon keeps the defaults: commit
    # every second, synchronous=FULL, checkpoint every minute).
    store = (TrackingStore(db_path, clock=clock.now_s, commit_interval_s=60.0,
                           checkpoint_interval_s=600.0,
                           synchronous="NORMAL", on_corrupt=settings.store.on_corrupt,
                           spill_dir=settings.store.spill_dir or None) if db_path else None)
    if store is not None:
        store.set_meta(site=settings.site.name, config=config_name, mode=f"dry-run/{driver}")
    server = None
    if driver == "sim":
        axes = {name: SimulatedAxis(mount.axes[name], clock.now_s) for name in ("azimuth", "elevation")}
    elif driver == "modbus":
        from simulator.modbus_server import start_modbus_tcp_server
        from tracker.service.compose import make_axes
        server, port = await start_modbus_tcp_server(mount, host="127.0.0.1", port=0)
        modbus = settings.drives.modbus.model_copy(update={"host": "127.0.0.1", "port": port,
                                                           "transport": "tcp"})
        drives = settings.drives.model_copy(update={"kind": "modbus", "modbus": modbus})
        settings = settings.model_copy(update={"drives": drives})
        axes = make_axes(settings, clock=clock.now_s)
    elif driver == "opcua":
        from simulator.opcua_server import start_opcua_server
        from tracker.service.compose import make_axes
        server, url = await start_opcua_server(mount, host="127.0.0.1", port=0)
        # A dry run talks to its own server: the lab policy, whatever the preset's security.
        # Its time is simulated: a wall-clock stall of the shared process (a busy machine)
        # is no comms fault, so requests get at least 2 s (comms faults are tested apart).
        opcua = settings.drives.opcua.model_copy(update={
            "endpoint_url": url, "security_policy": "None", "user": "", "password_file": "",
            "timeout_s": max(settings.drives.opcua.timeout_s, 2.0)})
        drives = settings.drives.model_copy(update={"kind": "opcua", "opcua": opcua})
        settings = settings.model_copy(update={"drives": drives})
        axes = make_axes(settings, clock=clock.now_s)
    else:
        raise ValueError(f"unknown dry-run driver {driver!r}: use 'sim', 'modbus' or 'opcua'")
    truth = make_truth(settings, mount)
    end_s = start_s + duration_s
    site = settings.site
    figures = SampleStats(start_s, end_s, settle_s=settings.tracking.settle_s,
                          site=(site.latitude_deg, site.longitude_deg, site.height_m))
    # A dry run simulates the site: its anemometer is the simulated mount's wind (on any
    # preset), read every tick, with the preset's stow rules.
    wind = make_wind_supervisor(SimWindSensor(mount, clock.now_s)
                                if settings.weather.source != "none" else None,
                                settings.weather, clock.now_s)
    engine = Engine(settings, axes, store, clock, wind=wind, true_direction=truth,
                    pointing=pointing, sample_sinks=[figures])
    # Plan beyond both ends so windows cut by the span are whole (not dropped as too short),
    # then count only their part inside the span.
    the_plan = make_plan(settings, start_s - 86400.0, end_s + 86400.0)
    in_span = [w for w in the_plan.windows if w.end_s > start_s and w.start_s < end_s]
    stats = _Series()
    tolerance = settings.tracking.on_sun_tolerance_arcsec
    period = engine.period_s
    report_every = max(duration_s / 200.0, period)
    next_report = start_s
    wall0 = time.perf_counter()
    cpu0 = time.process_time()
    ticks = 0
    try:
        await engine.start()
        # Park the start-up objects (astropy, numpy, tables) out of the cyclic collector's
        # way, so its frequent young-generation passes stay cheap (as the daemon does).
        gc.collect()
        gc.freeze()
        harness = SimulatedTime(engine, clock, mount.step)
        mono0 = clock.monotonic_s()

        faults = sorted(drive_faults)
        resets: list[float] = []

        async def before() -> None:
            elapsed = clock.monotonic_s() - mono0
            while faults and faults[0][0] <= elapsed:
                _, down_s = faults.pop(0)
                mount.axes["azimuth"].trip(Condition.OVERCURRENT)
                resets.append(elapsed + down_s)
                resets.sort()
            while resets and resets[0] <= elapsed:
                resets.pop(0)
                try:
                    await engine.execute(Reset(), source="dry-run operator")
                    await engine.execute(Track(on=True), source="dry-run operator")
                except TrackerError:
                    resets.append(elapsed + 60.0)     # not yet resettable: try again
                    resets.sort()

        horizon: list = [None, None, end_s]     # (window, state) it is for, horizon UTC s

        parked_step = max(idle_step_s, min(parked_step_s, 0.75 * engine.recorder.max_gap_s))

        parked, stowed = State.PARKED, State.STOWED     # once, not every tick (docs/performance.md)

        def step_s(t: float) -> float:
            state = engine.machine.state
            if state is not parked and state is not stowed:
                return period       # moving or due (``_quiet``'s first test, every tick)
            quiet_step = parked_step if state is parked else idle_step_s
            soon = clock.monotonic_s() - mono0 + quiet_step
            if (quiet_step > period and _quiet(engine) and not resets
                    and (not faults or faults[0][0] > soon)):
                plan = engine.plan_now
                nxt = plan.next_window(t) if plan else None
                if nxt is not horizon[0] or state is not horizon[1]:
                    # full rate from shortly before the automation starts the pre-position
                    # slew from where the mount is held
                    axes_now = engine.axis_states
                    here = (axes_now["azimuth"].position_deg, axes_now["elevation"].position_deg)
                    horizon[:] = nxt, state, (
                        preposition_start_s(settings, nxt, here) - FULL_RATE_AHEAD_S
                        if nxt else end_s)
                if t + quiet_step < horizon[2]:
                    return quiet_step
            return period

        def observe(dt: float, t_end: float) -> None:
            nonlocal next_report
            stats.add(engine, dt, t_end, tolerance)
            if progress is not None and t_end - dt >= next_report:
                progress(t_end - dt - start_s)
                next_report = t_end - dt + report_every

        await harness.run(duration_s, step_s=step_s, observe=observe,
                          before=before if faults else None)
        ticks = harness.ticks
        if progress is not None:
            progress(duration_s)
    finally:
        gc.unfreeze()
        await engine.shutdown()
        if server is not None:
            await server.stop() if asyncio.iscoroutinefunction(getattr(server, "stop", None)) \
                else server.stop()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    fig = figures.result()
    available = sum(min(w.end_s, end_s) - max(w.start_s, start_s) for w in in_span)
    fault_events = [f"{iso_utc(f_time)} {text}" for f_time, text in engine.fault_history]
    return DryRunReport(
        config=config_name, driver=driver, start_utc=iso_utc(start_s), end_utc=iso_utc(end_s),
        available_s=available, tracked_s=fig["on_sun_s"],
        efficiency=fig["on_sun_s"] / available if available > 0 else 0.0,
        rms_error_arcsec=fig["rms_error_arcsec"],
        max_error_arcsec=fig["max_error_arcsec"],
        p95_error_arcsec=fig["p95_error_arcsec"],
        true_rms_error_arcsec=_rms(stats.true_errors),
        true_max_error_arcsec=max(stats.true_errors) if stats.true_errors else None,
        true_on_sun_s=stats.true_on_sun_s if stats.has_truth else None,
        log_true_rms_error_arcsec=fig["true_rms_error_arcsec"],
        log_true_max_error_arcsec=fig["true_max_error_arcsec"],
        windows=len(in_span), faults=len(fault_events), fault_events=fault_events,
        state_seconds={k.value: round(v, 1) for k, v in stats.state_seconds().items()},
        ticks=ticks, wall_s=wall, cpu_s=cpu, sim_s=duration_s,
        speedup=duration_s / wall if wall > 0 else 0.0,
        db=str(db_path) if db_path else None, series=stats.series,
        bores=fig.get("bores", {}), true_bores=_bore_totals(engine),
        log_true_bores=fig.get("true_bores", {}))


def _bore_totals(engine: Engine) -> dict[str, dict]:
    """Each bore's on-Sun and effective seconds by the simulator's truth, as the recorder
    integrated them tick by tick (before the samples' rounding); empty without bores."""
    rec = engine.recorder
    if rec.bores is None:
        return {}
    return {name: {"on_sun_s": on, "effective_s": eff}
            for name, (on, eff) in zip(rec.bores.names, rec.true_bore_totals, strict=True)}


def _quiet(engine: Engine) -> bool:
    """True when nothing is moving and nothing is due: parked, stowed, or idle in a fault."""
    return (engine.machine.state in (State.PARKED, State.STOWED)
            and engine.task.kind in (TaskKind.HOLD, TaskKind.AXES)
            and all(abs(s.velocity_deg_s) < QUIET_SPEED_DEG_S for s in engine.axis_states.values()))


def write_report(report: DryRunReport, path: str | Path) -> None:
    Path(path).write_text(json.dumps(report.to_json(), indent=2) + "\n")
