"""``tracker dry-run``: the controller against the simulator on a simulated clock."""

from __future__ import annotations

import asyncio
import json

import click

from tracker import config as config_mod
from tracker.cli.options import FiniteFloatRange


@click.command("dry-run")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              default=str(config_mod.DEFAULT_CONFIG), show_default=True)
@click.option("--start", required=True, help="Start time, ISO 8601 UTC (e.g. 2026-06-21T00:00:00Z).")
@click.option("--hours", type=FiniteFloatRange(min=0, min_open=True), help="Length in hours.")
@click.option("--days", type=FiniteFloatRange(min=0, min_open=True), help="Length in days.")
@click.option("--driver", type=click.Choice(["sim", "modbus", "opcua"]), default="sim",
              show_default=True,
              help="sim: in process; modbus / opcua: simulator behind a real Modbus TCP / "
                   "OPC UA server on loopback.")
@click.option("--db", type=click.Path(dir_okay=False), help="Write the tracking log here (SQLite).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Write the JSON report here.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write a PNG plot here.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def dry_run(config_path: str, start: str, hours: float | None, days: float | None, driver: str,
            db: str | None, report_path: str | None, plot_path: str | None, as_json: bool,
            no_progress: bool) -> None:
    """Run the real state machine, control law, store and drivers on the simulator, accelerated."""
    from tqdm import tqdm

    from tracker.astro.timeinput import to_unix_s
    from tracker.planning.planner import plan as make_plan
    from tracker.service import dryrun

    if (hours is None) == (days is None):
        raise click.UsageError("give exactly one of --hours or --days")
    settings = config_mod.load(config_path)
    start_s = float(to_unix_s(start))
    duration_s = hours * 3600.0 if hours is not None else days * 86400.0
    bar = tqdm(total=round(duration_s), unit="sim-s", disable=no_progress or as_json,
               desc="dry run", unit_scale=True, leave=False)

    def progress(done_s: float) -> None:
        bar.update(round(done_s) - bar.n)

    report = asyncio.run(dryrun.run(settings, start_s, duration_s, driver=driver, db_path=db,
                                    progress=progress, config_name=config_path))
    bar.close()
    if report_path:
        dryrun.write_report(report, report_path)
    if plot_path:
        from tracker.service.dryrun_plot import plot_dry_run
        plot_dry_run(settings, make_plan(settings, start_s, start_s + duration_s), report.series,
                     plot_path, settings.tracking.on_sun_tolerance_arcsec)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.summary())
