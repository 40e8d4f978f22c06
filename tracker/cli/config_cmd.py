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


@config.command("init")
@click.option("--preset", type=click.Choice(config_mod.PRESETS), default="sim", show_default=True,
              help="The preset to start from.")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@click.argument("path", type=click.Path(dir_okay=False))
def init(preset: str, force: bool, path: str) -> None:
    """Write an editable copy of a preset to PATH (with the Modbus register map beside it
    when the preset uses one)."""
    from pathlib import Path

    from tracker.errors import ConfigError

    dest = Path(path)
    if dest.exists() and not force:
        raise ConfigError(f"{dest} exists: choose another file or add --force")
    src = config_mod.CONFIG_DIR / f"{preset}.toml"
    text = src.read_text()
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    written = [str(dest)]
    if "register_map" in text or preset in ("babyiaxo", "sim-modbus"):
        map_dest = dest.parent / "modbus_map.toml"
        if not map_dest.exists():
            map_dest.write_text((config_mod.CONFIG_DIR / "modbus_map.toml").read_text())
            written.append(str(map_dest))
    config_mod.load(dest)
    click.echo("wrote " + ", ".join(written) + f" (from preset {preset}); check it with "
               f"'tracker config check {dest}'")
