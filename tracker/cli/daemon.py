"""``tracker daemon``: run the controller service (control loop + HTTP API)."""

from __future__ import annotations

import logging
import sys

import click

from tracker import config as config_mod
from tracker.cli.options import TIME_OFFSET_S


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Config file (default: config/sim.toml, the in-process simulator).")
@click.option("--api-port", type=click.IntRange(0, 65535), default=None,
              help="API port (default: api.port from the config; 0 = any free port).")
@click.option("--db", "db_path", type=click.Path(dir_okay=False), default=None,
              help="Tracking log SQLite file (default: store.path from the config).")
@click.option("--time-offset-s", type=TIME_OFFSET_S, default=0.0, show_default=True,
              help="Run the clock shifted by this many seconds, within +-100 years "
              "(simulated drives only).")
def daemon(config_path: str | None, api_port: int | None, db_path: str | None,
           time_offset_s: float) -> None:
    """Run the tracker daemon until SIGTERM/SIGINT (then stop the drives and exit 0)."""
    from tracker.service.daemon import run_daemon

    settings = config_mod.load(config_path)
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        logging.getLogger("tracker").setLevel(logging.INFO)

    def ready(url: str) -> None:
        click.echo(f"tracker daemon: API on {url} (state and logs: `tracker status`, "
                   f"`tracker events`)", err=True)

    sys.exit(run_daemon(settings, api_port=api_port, db_path=db_path,
                        time_offset_s=time_offset_s, ready=ready))
