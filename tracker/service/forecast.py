"""Year forecasts: many seeded dry runs of every day of a year, days in parallel.

A *day task* is one UTC day of one run: a dry run (the real engine on the simulated mount,
``tracker.service.dryrun``) at the forecast's control rate (``forecast.control_rate_hz``,
coarser than the daemon's), with that day's mean wind drawn from the site climatology and
drive faults at the configured rate (``[forecast]`` in the config).  Every random draw of a
day comes from ``numpy.random.SeedSequence((seed, run, day of year))``, so a forecast's
figures depend on the seed only, never on the number of workers or the order days finish.

Days run on a local process pool (default) or on a dask.distributed cluster (``scheduler``:
its address).  The result gives, per bore, the effective exposure (on-Sun seconds times the
optics' efficiency, from the same samples ``tracker exposure`` reads) as the median and the
5-95 % band over the runs, per month and for the year, beside the geometric plan's fraction
(planned window time / calendar time) and the achieved fraction.
"""

from __future__ import annotations

import asyncio
import calendar
import datetime as _dt
import functools
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tracker import config as config_mod
from tracker.errors import TrackerError

DAY_S = 86400.0


class ForecastError(TrackerError):
    """A forecast that cannot run (bad year, days, runs, workers or scheduler)."""


@dataclass(frozen=True)
class DayTask:
    """One day of one run: everything a worker needs (picklable)."""

    config_path: str
    year: int
    day_index: int          # 0 = 1 January
    run: int
    seed: int


@dataclass(frozen=True)
class DayResult:
    """One simulated day: per bore on-Sun and effective seconds (UTC day), planned window
    seconds, the day's drawn mean wind (m/s), drive faults injected, the wall time and the
    worker's CPU time for the day (s)."""

    year: int
    day_index: int
    run: int
    month: int
    available_s: float
    on_sun_s: dict[str, float]
    effective_s: dict[str, float]
    wind_mean_m_s: float
    drive_faults: int
    wall_s: float
    cpu_s: float = 0.0


def day_start_s(year: int, day_index: int) -> float:
    """UTC unix seconds of 00:00 of the ``day_index``-th day (0-based) of ``year``."""
    return (_dt.datetime(year, 1, 1, tzinfo=_dt.UTC).timestamp() + day_index * DAY_S)


def draw_day(settings: config_mod.Settings, task: DayTask) -> tuple[float, int,
                                                                    list[tuple[float, float]]]:
    """(the day's mean wind m/s, the simulator's wind seed, drive faults as (s after 00:00,
    downtime s)) for ``task``: a function of (seed, run, day) only."""
    fc = settings.forecast
    rng = np.random.default_rng(np.random.SeedSequence((task.seed, task.run, task.day_index)))
    month = _dt.datetime.fromtimestamp(day_start_s(task.year, task.day_index), _dt.UTC).month
    mean = fc.wind_monthly_mean_m_s[month - 1]
    k = fc.wind_weibull_k
    wind = float(mean / math.gamma(1.0 + 1.0 / k) * rng.weibull(k)) if mean > 0 else 0.0
    wind_seed = int(rng.integers(1, 2**31 - 1))
    n = int(rng.poisson(fc.drive_faults_per_day))
    faults = sorted((float(rng.uniform(0.0, DAY_S)), float(rng.exponential(
        fc.fault_downtime_mean_s)) if fc.fault_downtime_mean_s > 0 else 0.0) for _ in range(n))
    return wind, wind_seed, faults


@functools.lru_cache(maxsize=8)
def _load(config_path: str) -> config_mod.Settings:
    return config_mod.load(config_path)


def forecast_settings(settings: config_mod.Settings, wind_m_s: float,
                      wind_seed: int) -> config_mod.Settings:
    """The settings of a forecast day: the forecast's control rate (the log rate at most
    that), a drive watchdog spanning the idle step, the day's wind."""
    fc = settings.forecast
    tracking = settings.tracking.model_copy(update={
        "control_rate_hz": fc.control_rate_hz,
        "log_rate_hz": min(settings.tracking.log_rate_hz, fc.control_rate_hz)})
    watchdog = min(10.0, max(settings.drives.watchdog_s, 2.0 / fc.control_rate_hz,
                             fc.idle_step_s + 1.0))
    drives = settings.drives.model_copy(update={"watchdog_s": watchdog})
    sim = settings.simulator.model_copy(update={
        "wind_mean_m_s": min(wind_m_s, 100.0), "wind_seed": wind_seed,
        "wind_gust_m_s": min(fc.gust_ratio * wind_m_s, 100.0)})
    return settings.model_copy(update={"tracking": tracking, "drives": drives,
                                       "simulator": sim})


def run_day(task: DayTask) -> DayResult:
    """Simulate one day (see the module docstring); runs in a worker."""
    from tracker.service import dryrun

    base = _load(task.config_path)
    wind, wind_seed, faults = draw_day(base, task)
    settings = forecast_settings(base, wind, wind_seed)
    t0 = day_start_s(task.year, task.day_index)
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    rep = asyncio.run(dryrun.run(settings, t0, DAY_S, idle_step_s=settings.forecast.idle_step_s,
                                 config_name=task.config_path, drive_faults=faults))
    month = _dt.datetime.fromtimestamp(t0, _dt.UTC).month
    names = [b.name for b in settings.bore_list]
    return DayResult(task.year, task.day_index, task.run, month, rep.available_s,
                     {n: float(rep.bores.get(n, {}).get("on_sun_s", 0.0)) for n in names},
                     {n: float(rep.bores.get(n, {}).get("effective_s", 0.0)) for n in names},
                     wind, len(faults), time.perf_counter() - wall0, time.thread_time() - cpu0)


def _pool_initializer() -> None:
    """A local worker: one core (no nested BLAS threads); the days' warnings (wind stows,
    faults: expected in a forecast) stay out of the terminal, errors do not."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.getLogger("tracker").setLevel(logging.ERROR)


def run_tasks(tasks: Sequence[DayTask], *, workers: int = 1, scheduler: str | None = None,
              progress: Callable[[int, int], None] | None = None) -> list[DayResult]:
    """Run the day tasks on ``workers`` local processes, or on the dask.distributed cluster
    at ``scheduler``; results in the tasks' order."""
    if workers < 1:
        raise ForecastError(f"--workers must be at least 1, got {workers}")
    results: list[DayResult | None] = [None] * len(tasks)
    done = 0
    if scheduler:
        from distributed import Client
        try:
            client = Client(scheduler, timeout="10s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ForecastError(f"cannot reach the dask scheduler at {scheduler}: {exc}"
                                ) from None
        try:
            futures = client.map(run_day, list(tasks), pure=False)
            for i, fut in enumerate(futures):        # all run at once; collected in order
                results[i] = fut.result()
                if progress is not None:
                    progress(i + 1, len(tasks))
        finally:
            client.close()
    elif workers == 1:
        for i, task in enumerate(tasks):
            results[i] = run_day(task)
            if progress is not None:
                progress(i + 1, len(tasks))
    else:
        import multiprocessing
        import threading
        # fork (cheap: the parent's imports are shared) from a single-threaded process, as
        # the CLI is; with other threads alive, a fork server that imported the dry run once
        if threading.active_count() == 1:
            ctx = multiprocessing.get_context("fork")
        else:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["tracker.service.forecast", "tracker.service.dryrun"])
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                 initializer=_pool_initializer) as pool:
            futs = {pool.submit(run_day, t): i for i, t in enumerate(tasks)}
            from concurrent.futures import as_completed as cf_completed
            for fut in cf_completed(futs):
                results[futs[fut]] = fut.result()
                done += 1
                if progress is not None:
                    progress(done, len(tasks))
    return [r for r in results if r is not None]


def make_tasks(config_path: str, year: int, runs: int, *, seed: int = 1,
               days: Sequence[int] | None = None) -> list[DayTask]:
    """The day tasks of a forecast: ``runs`` runs of each day index in ``days`` (default:
    every day of ``year``)."""
    n_days = 366 if calendar.isleap(year) else 365
    if not 1970 <= year <= 2100:
        raise ForecastError(f"--year {year} is outside 1970..2100")
    if runs < 1:
        raise ForecastError(f"--runs must be at least 1, got {runs}")
    idx = list(range(n_days)) if days is None else list(days)
    bad = [d for d in idx if not 0 <= d < n_days]
    if bad or not idx:
        raise ForecastError(f"day indices must lie in 0..{n_days - 1} for {year}, got "
                            f"{bad or 'none'}")
    return [DayTask(str(config_path), year, d, r, seed) for r in range(runs) for d in idx]


def _band(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    p5, p50, p95 = np.percentile(a, [5.0, 50.0, 95.0])
    return {"median_s": float(p50), "p5_s": float(p5), "p95_s": float(p95)}


def summarise(results: Sequence[DayResult], bores: Sequence[str]) -> dict:
    """Per bore, per month and in total (``total``: every day simulated): effective and on-Sun seconds summed over each
    run's days, then median and 5-95 % band over the runs; the plan's fraction (planned
    window seconds / calendar seconds of the days simulated) and the achieved fraction
    (median effective / calendar seconds)."""
    runs = sorted({r.run for r in results})
    months = sorted({r.month for r in results})

    def block(sel: list[DayResult]) -> dict:
        days = {r.day_index for r in sel}
        calendar_s = len(days) * DAY_S
        # the plan is the same in every run: take one run's days
        first = min(r.run for r in sel)
        plan_s = sum(r.available_s for r in sel if r.run == first)
        out = {"days": len(days), "calendar_s": calendar_s, "planned_s": plan_s,
               "plan_fraction": plan_s / calendar_s, "bores": {}}
        for b in bores:
            eff = [sum(r.effective_s[b] for r in sel if r.run == k) for k in runs]
            on = [sum(r.on_sun_s[b] for r in sel if r.run == k) for k in runs]
            e = _band(eff)
            out["bores"][b] = {"effective": e, "on_sun": _band(on),
                               "effective_fraction": e["median_s"] / calendar_s}
        return out

    return {"runs": len(runs), "months": {calendar.month_abbr[m]: block(
        [r for r in results if r.month == m]) for m in months},
            "total": block(list(results)),
            "drive_faults": sum(r.drive_faults for r in results),
            "day_wall_s": {"mean": float(np.mean([r.wall_s for r in results])),
                           "max": float(np.max([r.wall_s for r in results]))}}


def forecast(config_path: str | Path, year: int, runs: int, *, workers: int = 1,
             scheduler: str | None = None, seed: int = 1, days: Sequence[int] | None = None,
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Run a forecast (see the module docstring); returns the summary with ``results`` (every
    day task's figures) and ``wall_s``."""
    config_path = str(config_path)
    settings = config_mod.load(config_path)
    tasks = make_tasks(config_path, year, runs, seed=seed, days=days)
    wall0 = time.perf_counter()
    results = run_tasks(tasks, workers=workers, scheduler=scheduler, progress=progress)
    wall = time.perf_counter() - wall0
    bores = [b.name for b in settings.bore_list]
    out = summarise(results, bores)
    out.update({"config": config_path, "year": year, "seed": seed, "bores": bores,
                "workers": workers, "scheduler": scheduler, "wall_s": wall,
                "control_rate_hz": settings.forecast.control_rate_hz,
                "results": [asdict(r) for r in results]})
    return out


def plot(summary: dict, path: str | Path) -> None:
    """Bars per month and bore: median effective hours with the 5-95 % band; the plan's
    window hours as a step line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    months = list(summary["months"])
    bores = summary["bores"]
    x = np.arange(len(months))
    width = 0.8 / max(len(bores), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(months) + 3), 4.5))
    for k, b in enumerate(bores):
        med = np.array([summary["months"][m]["bores"][b]["effective"]["median_s"]
                        for m in months]) / 3600.0
        lo = np.array([summary["months"][m]["bores"][b]["effective"]["p5_s"]
                       for m in months]) / 3600.0
        hi = np.array([summary["months"][m]["bores"][b]["effective"]["p95_s"]
                       for m in months]) / 3600.0
        ax.bar(x + (k - (len(bores) - 1) / 2) * width, med, width,
               yerr=[med - lo, hi - med], capsize=2, label=f"{b} effective (median, 5-95 %)")
    plan_h = np.array([summary["months"][m]["planned_s"] for m in months]) / 3600.0
    ax.step(x, plan_h, where="mid", color="k", label="planned windows")
    ax.set_xticks(x, months)
    ax.set_ylabel("hours")
    ax.set_title(f"forecast {summary['year']}: {Path(summary['config']).name}, "
                 f"{summary['runs']} runs")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
