"""``tracker calibrate grid|simulate|fit``: pointing calibration."""

from __future__ import annotations

import datetime as _dt

import click
import numpy as np

from tracker import config as config_mod
from tracker.cli.options import FiniteFloatRange
from tracker.errors import TrackerError
from tracker.mount import calibration as cal

_CONFIG = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                       default=None, help="Config file (default: config/sim.toml).")


@click.group()
def calibrate() -> None:
    """Pointing calibration: plan a grid, simulate measurements, fit a model."""


@calibrate.command("grid")
@_CONFIG
@click.option("--n", "n", type=int, default=30, show_default=True, help="Number of points.")
@click.option("--seed", type=int, default=None, help="Jitter the points randomly (reproducibly).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the grid CSV here (default: print it).")
def grid(config_path: str | None, n: int, seed: int | None, out: str | None) -> None:
    """Plan N axis positions spread over the envelope, avoiding keep-out zones."""
    settings = config_mod.load(config_path)
    points = cal.plan_grid(settings, n, seed)
    if out:
        cal.write_grid_csv(out, points)
        click.echo(f"{len(points)} grid points written to {out}")
    else:
        click.echo("axis_az_deg,axis_el_deg")
        for az, el in points:
            click.echo(f"{az:.6f},{el:.6f}")


@calibrate.command("simulate")
@_CONFIG
@click.option("--grid", "grid_path", type=click.Path(dir_okay=False), default=None,
              help="Grid CSV (from 'calibrate grid'): simulate a surveyor's measurement.")
@click.option("--sun-start", default=None, help="Sun-camera run start, ISO 8601 UTC (e.g. 2025-03-20T00:00:00Z).")
@click.option("--sun-end", default=None, help="Sun-camera run end, ISO 8601 UTC.")
@click.option("--sun-step-s", type=FiniteFloatRange(min=0, min_open=True), default=900.0, show_default=True,
              help="Seconds between Sun-camera shots (only those with the Sun in the envelope are kept).")
@click.option("--noise-arcsec", type=FiniteFloatRange(min=0), default=2.0, show_default=True,
              help="Measurement noise per sky coordinate (1 sigma).")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Measurement CSV to write.")
def simulate(config_path: str | None, grid_path: str | None, sun_start: str | None,
             sun_end: str | None, sun_step_s: float, noise_arcsec: float, seed: int,
             out: str) -> None:
    """Measure the simulated mount (its truth is the config's simulator.misalignment)."""
    from simulator.truth import simulate_grid, simulate_sun_camera

    settings = config_mod.load(config_path)
    if grid_path is None and sun_start is None:
        raise click.UsageError("give --grid FILE and/or --sun-start/--sun-end")
    if noise_arcsec < 0:
        raise click.BadParameter("must be >= 0", param_hint="--noise-arcsec")
    mis = settings.simulator.misalignment
    if not any(getattr(mis, f) for f in type(mis).model_fields):
        track = settings.simulator.track_unevenness_arcsec
        click.echo("note: simulator.misalignment is all zero: "
                   + (f"the grid sees only the track's unevenness ({track:g} arcsec p-p)"
                      if track else "the simulated mount is perfect"), err=True)
    rows = []
    if grid_path is not None:
        rows += simulate_grid(settings, cal.read_grid_csv(grid_path), noise_arcsec, seed)
    if sun_start is not None:
        if sun_end is None:
            raise click.UsageError("--sun-start needs --sun-end")
        if sun_step_s <= 0:
            raise click.BadParameter("must be > 0", param_hint="--sun-step-s")
        try:
            t0, t1 = cal.parse_time_utc(sun_start), cal.parse_time_utc(sun_end)
        except ValueError as exc:
            raise TrackerError(str(exc)) from None
        if t1 <= t0:
            raise click.BadParameter("must be after --sun-start", param_hint="--sun-end")
        if (t1 - t0) / sun_step_s > 100_000:
            raise click.BadParameter("too many shots (> 100000)", param_hint="--sun-step-s")
        sun_rows = simulate_sun_camera(settings, np.arange(t0, t1, sun_step_s), noise_arcsec,
                                       seed + 1)
        if not sun_rows:
            click.echo("note: the Sun never entered the envelope above the horizon", err=True)
        rows += sun_rows
    cal.write_measurements(out, rows)
    click.echo(f"{len(rows)} measurements written to {out}")


@calibrate.command("fit")
@click.argument("measurements", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Model TOML to write.")
@click.option("--terms", default=",".join(cal.DEFAULT_TERMS), show_default=True,
              help="Comma-separated pointing terms to fit.")
@click.option("--reject-sigma", type=FiniteFloatRange(min=0, min_open=True), default=3.5, show_default=True,
              help="Reject points whose residual exceeds this many sigma.")
@click.option("--track-map-step", "track_map_step_deg",
              type=FiniteFloatRange(min=0, max=90, min_open=True), default=None,
              help="Also fit a track map (the mount's tilt on its azimuth track: pitch and "
                   "roll, arcsec) with nodes this many degrees of azimuth apart, e.g. 5.")
@_CONFIG
def fit_cmd(measurements: str, out: str, terms: str, reject_sigma: float,
            track_map_step_deg: float | None, config_path: str | None) -> None:
    """Fit pointing terms to MEASUREMENTS (CSV); print terms +- sigma, RMS, outliers."""
    if reject_sigma <= 0:
        raise click.BadParameter("must be > 0", param_hint="--reject-sigma")
    rows = cal.read_measurements(measurements)
    if any(m.kind == "sun" and m.true_az_deg is None for m in rows):
        rows = cal.resolve_sun(rows, config_mod.load(config_path))   # site, boresights
    names = [t.strip() for t in terms.split(",") if t.strip()]
    date = _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    result = cal.fit(rows, names, reject_sigma=reject_sigma, fit_date_utc=date,
                     track_map_step_deg=track_map_step_deg)
    click.echo(f"{measurements}: {len(rows)} measurements "
               f"({sum(m.kind == 'grid' for m in rows)} grid, {sum(m.kind == 'sun' for m in rows)} sun)")
    click.echo(result.report())
    result.model.save(out, fit_info={
        "source": measurements,
        "rms_before_arcsec": round(result.rms_before_arcsec, 3),
        "rms_az_arcsec": round(result.rms_az_arcsec, 3),
        "rms_el_arcsec": round(result.rms_el_arcsec, 3),
        "rejected": [f"{label} ({r:.1f} arcsec)" for label, r in result.rejected],
        "warnings": list(result.warnings),
    })
    click.echo(f"model written to {out}")


@calibrate.command("bore")
@click.argument("measurements", type=click.Path(dir_okay=False))
@click.option("--bore", required=True, help="The bore the Sun was centred in (config name).")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="Pointing model TOML the encoder readings go through (default: the "
                   "config's pointing.model_file, else identity).")
@_CONFIG
def bore_cmd(measurements: str, bore: str, model_path: str | None,
             config_path: str | None) -> None:
    """Fit a bore's alignment offset from sun rows of MEASUREMENTS (CSV) taken with the Sun
    centred in that bore; print it with its errors and the [[bores]] lines to paste."""
    from tracker.mount.pointing import PointingModel

    settings = config_mod.load(config_path)
    if model_path is None and settings.pointing.model_file:
        model_path = str(settings.relative_path(settings.pointing.model_file))
    model = PointingModel.load(model_path) if model_path else None
    result = cal.fit_bore_offset(settings, cal.read_measurements(measurements), bore,
                                 model=model)
    click.echo(result.report())
    click.echo(f"offset_x_arcsec = {result.offset_x_arcsec:.2f}\n"
               f"offset_y_arcsec = {result.offset_y_arcsec:.2f}")
