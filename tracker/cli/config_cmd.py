"""``tracker config check FILE``: validate a config file."""

from __future__ import annotations

import click

from tracker import config as config_mod


@click.group()
def config() -> None:
    """Configuration files."""


@config.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
def check(path: str) -> None:
    """Validate PATH; print a summary, or the errors and exit 2."""
    s = config_mod.load(path)
    env = s.envelope
    click.echo(f"{path}: ok")
    click.echo(f"  site       {s.site.name}: {s.site.latitude_deg:+.4f} lat, "
               f"{s.site.longitude_deg:+.4f} lon, {s.site.height_m:.0f} m")
    click.echo(f"  envelope   elevation {env.elevation_min_deg:+.1f}..{env.elevation_max_deg:+.1f} deg, "
               f"azimuth axis {env.azimuth_min_deg:+.1f}..{env.azimuth_max_deg:+.1f} deg"
               + (" (cable wrap)" if env.cable_wrap else ""))
    click.echo(f"  boresights {', '.join(b.name for b in env.boresights)}")
    click.echo(f"  drives     {s.drives.kind}")
