"""``tracker forecast``: exposure per bore over a year from seeded dry runs, days in parallel."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click


def _days_spec(spec: str | None) -> list[int] | None:
    """``--days``: ``N`` (the first N days) or ``A-B`` (day indices A..B, 0 = 1 January)."""
    if spec is None:
        return None
    try:
        if "-" in spec:
            a, b = (int(x) for x in spec.split("-", 1))
            return list(range(a, b + 1))
        n = int(spec)
    except ValueError:
        raise click.BadParameter(f"{spec!r}: give N (the first N days) or A-B (day indices, "
                                 "0 = 1 January)", param_hint="--days") from None
    if n < 1:
        raise click.BadParameter(f"{spec!r}: at least 1 day", param_hint="--days")
    return list(range(n))


@click.command("forecast")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True),
              default=None, help="Config file (default: config/sim.toml); its [forecast] "
                                 "section gives the wind climatology and the fault rates.")
@click.option("--year", type=click.IntRange(1970, 2100), required=True, help="UTC year.")
@click.option("--runs", type=click.IntRange(min=1, max=10000), default=10, show_default=True,
              help="Runs (seeded realisations) of every day.")
@click.option("--workers", type=click.IntRange(min=1, max=4096), default=None,
              help="Local worker processes (default: the number of CPUs).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run the days on this dask.distributed scheduler (e.g. tcp://host:8786) "
                   "instead of local processes.")
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True,
              help="Base seed: the same seed gives the same figures on any number of workers.")
@click.option("--days", "days_spec", default=None, metavar="N|A-B",
              help="Only the first N days, or day indices A..B (0 = 1 January); default: all.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False),
              help="Write the forecast (summary and every day) as JSON here.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Write a PNG: effective hours per month and bore, with the plan.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def forecast(config_path, year, runs, workers, scheduler, seed, days_spec, out_path, plot_path,
             as_json) -> None:
    """Exposure per bore for a year: median and 5-95 % band, per month and for the year."""
    from tracker import config as config_mod
    from tracker.service import forecast as fc

    path = config_path or str(config_mod.DEFAULT_CONFIG)
    days = _days_spec(days_spec)
    workers = workers or os.cpu_count() or 1

    def progress(done: int, total: int) -> None:
        if not as_json:
            print(f"\r{done}/{total} days", end="", file=sys.stderr, flush=True)

    r = fc.forecast(path, year, runs, workers=workers, scheduler=scheduler, seed=seed,
                    days=days, progress=progress)
    if not as_json:
        print(file=sys.stderr)
    if out_path:
        Path(out_path).write_text(json.dumps(r, indent=2) + "\n")
    if plot_path:
        fc.plot(r, plot_path)
    summary = {k: v for k, v in r.items() if k != "results"}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    y = r["total"]
    click.echo(f"forecast {year} ({Path(path).name}): {r['runs']} runs x {y['days']} days, "
               f"seed {seed}, {r['wall_s']:.0f} s wall on "
               f"{scheduler or f'{workers} local worker(s)'}")
    click.echo(f"plan fraction {y['plan_fraction']:.3f} ({y['planned_s'] / 3600:.1f} h planned)")
    click.echo(f"{'period':<6} {'bore':<8} {'effective h: median':>20} {'5 %':>8} {'95 %':>8} "
               f"{'fraction':>9} {'plan':>6}")
    for name, block in [*r["months"].items(), ("total", y)]:
        for b, v in block["bores"].items():
            e = v["effective"]
            click.echo(f"{name:<6} {b:<8} {e['median_s'] / 3600:>20.2f} "
                       f"{e['p5_s'] / 3600:>8.2f} {e['p95_s'] / 3600:>8.2f} "
                       f"{v['effective_fraction']:>9.3f} {block['plan_fraction']:>6.3f}")
