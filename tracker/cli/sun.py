"""``tracker sun``: where the Sun is for a site, now or at given times.

Geometric (airless) topocentric position by default, the direction the magnet
tracks; ``--apparent`` adds optical refraction.  ``--json`` prints one JSON
object per time (one per line); ``--info`` prints the data sources and ages.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from typing import Any

import click

from tracker import config as config_mod


def _site(config_path: str | None, lat: float | None, lon: float | None,
          height: float | None) -> tuple[str, float, float, float]:
    if lat is not None or lon is not None or height is not None:
        if config_path is not None:
            raise click.UsageError("give either --config or --lat/--lon/--height, not both")
        if lat is None or lon is None:
            raise click.UsageError("--lat and --lon go together (--height is optional, default 0)")
        return "command line", lat, lon, 0.0 if height is None else height
    settings = config_mod.load(config_path)  # None -> DEFAULT_CONFIG
    s = settings.site
    return s.name, s.latitude_deg, s.longitude_deg, s.height_m


def _print_info(as_json: bool) -> None:
    from tracker.astro.datasources import data_sources

    info = data_sources()
    if as_json:
        click.echo(json.dumps(info, sort_keys=True))
        return
    iers, leap, eph = info["iers_table"], info["leap_seconds"], info["ephemerides"]
    click.echo(f"astropy {info['astropy']}, astropy-iers-data {info['astropy_iers_data']}, "
               f"pyerfa {info['erfa']}, skyfield {info['skyfield']}, "
               f"skyfield-data {info['skyfield_data']}")
    click.echo(f"IERS-A table   {iers['path']}")
    click.echo(f"  covers       {iers['first_date']} .. {iers['last_date']} "
               f"(observed to {iers['last_observed_date']}, predictions after)")
    click.echo(f"  age          {iers['age_days']:.1f} days since last observed value; "
               f"{iers['days_left']:.1f} days of table left; "
               f"UT1 uncertainty now {iers['ut1_uncertainty_now_s'] * 1000:.1f} ms "
               f"(up to {iers['ut1_uncertainty_now_s'] * 15.04107:.3f} arcsec on the sky from Earth rotation)")
    click.echo(f"leap seconds   table valid until {leap['expires']}"
               + (" (EXPIRED)" if leap["expired"] else f" ({leap['days_left']} days left)"))
    click.echo(f"kernel         {eph['kernel']}: {eph['de421_path']}")
    click.echo(f"ephemeris      {eph['reference']}")
    click.echo(f"cross-check    {eph['cross_check']}"
               + ("" if eph["de421_present"] else " (DE421 MISSING)"))
    click.echo(f"IERS cache     {iers['cache']}")
    off = info["offline"]
    click.echo(f"offline        IERS auto-download {'on' if off['iers_auto_download'] else 'off'}, "
               f"astropy internet {'allowed' if off['astropy_allow_internet'] else 'off'}")


@click.command("sun")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Config file giving the site (default: the built-in sim.toml).")
@click.option("--lat", type=float, help="Site latitude, deg (north positive).")
@click.option("--lon", type=float, help="Site longitude, deg (east positive).")
@click.option("--height", type=float, help="Site height above the ellipsoid, m (default 0).")
@click.option("--time", "times", multiple=True, metavar="ISO",
              help="UTC time with zone, e.g. 2024-06-21T12:00:00Z (repeatable; default now).")
@click.option("--apparent", is_flag=True, help="Apply optical refraction (camera checks).")
@click.option("--pressure-hpa", type=float, help="Pressure for --apparent (default 1013.25).")
@click.option("--temperature-c", type=float, help="Temperature for --apparent (default 10).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per time, one per line.")
@click.option("--info", is_flag=True, help="Show the data sources (astropy, IERS, ephemeris).")
def sun(config_path: str | None, lat: float | None, lon: float | None, height: float | None,
        times: tuple[str, ...], apparent: bool, pressure_hpa: float | None,
        temperature_c: float | None, as_json: bool, info: bool) -> None:
    """Topocentric Sun position and rates (geometric unless --apparent).

    Azimuth from north through east, elevation above the horizon; rates in
    deg/s.  Times are UTC: ISO-8601 with 'Z' or an offset.
    """
    if info:
        _print_info(as_json)
        return
    if not apparent and (pressure_hpa is not None or temperature_c is not None):
        raise click.UsageError("--pressure-hpa/--temperature-c only apply with --apparent")
    name, lat_deg, lon_deg, height_m = _site(config_path, lat, lon, height)
    from tracker.astro.ephemeris import sun_altaz, sun_rates
    from tracker.astro.timeinput import to_utc_jd, utc_jd_to_iso

    when: Any = list(times) if times else [time.time()]
    atmosphere = {}
    if apparent:
        atmosphere = {"pressure_hpa": 1013.25 if pressure_hpa is None else pressure_hpa,
                      "temperature_c": 10.0 if temperature_c is None else temperature_c}
    jd1, jd2, _ = to_utc_jd(when)  # validates; ERFA only, no astropy import (cold start)
    quiet = logging.getLogger("tracker.astro.datasources")  # its warnings are echoed below instead
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            az, el = sun_altaz(when, lat_deg, lon_deg, height_m, **atmosphere)
            az_rate, el_rate = sun_rates(when, lat_deg, lon_deg, height_m, **atmosphere)
    finally:
        quiet.setLevel(level)
    for msg in {str(w.message) for w in caught}:
        click.echo(f"warning: {msg}", err=True)
    labels = [f"{iso}Z" for iso in utc_jd_to_iso(jd1, jd2)]
    if as_json:
        for i, label in enumerate(labels):
            click.echo(json.dumps({
                "time_utc": label, "azimuth_deg": float(az[i]), "elevation_deg": float(el[i]),
                "azimuth_rate_deg_s": float(az_rate[i]), "elevation_rate_deg_s": float(el_rate[i]),
                "apparent": apparent,
            }))
        return
    kind = (f"apparent, {atmosphere['pressure_hpa']:.1f} hPa, {atmosphere['temperature_c']:.1f} C"
            if apparent else "geometric (airless)")
    click.echo(f"Sun for {name}: {lat_deg:+.4f} lat, {lon_deg:+.4f} lon, {height_m:.0f} m; {kind}")
    click.echo(f"{'time (UTC)':<25} {'azimuth':>10} {'elevation':>10} {'az rate':>13} {'el rate':>13}")
    for i, label in enumerate(labels):
        click.echo(f"{label:<25} {az[i]:9.4f}° {el[i]:+9.4f}° {az_rate[i]:+9.6f} °/s "
                   f"{el_rate[i]:+9.6f} °/s")
