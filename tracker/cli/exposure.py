"""``tracker exposure``: on-Sun seconds and pointing error statistics from the tracking log."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tracker.cli.options import FiniteFloatRange


def open_log(db: str | None, config_path: str | None):
    """(read-only store, settings or None) from ``--db``/``--config`` as both commands take.

    Without ``--db`` the log is the config's ``store.path`` (``--config`` or the default
    config).  Without ``--config`` the settings are the config the log's metadata names, if
    that file exists, else the default config when the log is the default config's own.
    """
    from tracker import config as config_mod
    from tracker.log.store import TrackingStore

    settings = config_mod.load(config_path) if config_path else None
    if db is None:
        if settings is None:
            settings = config_mod.load(config_mod.DEFAULT_CONFIG)
        db = str(Path(settings.store.path).expanduser())
    store = TrackingStore(db, readonly=True)
    if settings is None:
        named = store.meta().get("config")
        if isinstance(named, str) and named and Path(named).is_file():
            settings = config_mod.load(named)
    return store, settings


def _fmt(v, unit: str = "", digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}{unit}"


@click.command("exposure")
@click.option("--from", "start", metavar="ISO|DATE",
              help="Start (UTC date or ISO 8601 with zone); default: the log's first sample.")
@click.option("--to", "end", metavar="ISO|DATE",
              help="End, exclusive (a date means its 00:00 UTC); default: the log's last sample.")
@click.option("--db", type=click.Path(dir_okay=False), help="Tracking log (SQLite file).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Config whose store.path is the log (default: config/sim.toml).")
@click.option("--settle-s", type=FiniteFloatRange(min=0), default=None,
              help="Seconds after the start of each tracking stretch left out of the error "
                   "statistics (default: tracking.settle_s of the config, else 30).")
@click.option("--intervals", "intervals_csv", type=click.Path(dir_okay=False),
              help="Also write the exposure intervals (continuous on-Sun tracking) as CSV.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with the intervals).")
def exposure(start, end, db, config_path, settle_s, intervals_csv, as_json) -> None:
    """On-Sun seconds, tracking seconds and pointing error statistics for a period."""
    from tracker.log.report import clean_json, resolve_range, write_intervals_csv

    store, settings = open_log(db, config_path)
    try:
        t0, t1 = resolve_range(store, start, end)
        if settle_s is None:
            settle_s = settings.tracking.settle_s if settings is not None else 30.0
        site = ((settings.site.latitude_deg, settings.site.longitude_deg, settings.site.height_m)
                if settings is not None else None)
        r = store.exposure(t0, t1, settle_s=settle_s, intervals=True, site=site)
    finally:
        store.close()
    r["db"] = str(store.path)
    if intervals_csv:
        write_intervals_csv(intervals_csv, r["intervals"])
    if as_json:
        click.echo(json.dumps(clean_json(r), indent=2))
        return
    click.echo(f"tracking log {store.path}")
    click.echo(f"period       {r['from_utc']} .. {r['to_utc']} ({r['span_s'] / 3600:.2f} h)")
    click.echo(f"on-Sun       {r['on_sun_s']:.1f} s ({r['on_sun_s'] / 3600:.3f} h)")
    click.echo(f"tracking     {r['tracking_s']:.1f} s"
               + (f" (on-Sun fraction {r['on_sun_fraction_of_tracking']:.4f})"
                  if r["on_sun_fraction_of_tracking"] is not None else ""))
    click.echo(f"error        rms {_fmt(r['rms_error_arcsec'])}  mean "
               f"{_fmt(r['mean_error_arcsec'])}  p95 {_fmt(r['p95_error_arcsec'])}  max "
               f"{_fmt(r['max_error_arcsec'])} arcsec  (tracking after {settle_s:g} s settle, "
               f"{r['stats_s']:.0f} s)")
    if r.get("true_rms_error_arcsec") is not None:
        click.echo(f"true error   rms {_fmt(r['true_rms_error_arcsec'])}  max "
                   f"{_fmt(r['true_max_error_arcsec'])} arcsec  (simulator truth, at each sample)")
    for name, b in r["boresights"].items():
        click.echo(f"  {name:<10} on-Sun {b['on_sun_s']:.1f} s, tracking {b['tracking_s']:.1f} s,"
                   f" rms {_fmt(b['rms_error_arcsec'])} max {_fmt(b['max_error_arcsec'])} arcsec")
    for name, b in r["bores"].items():
        click.echo(f"  bore {name:<8} on-Sun {b['on_sun_s']:.1f} s, effective "
                   f"{b['effective_s']:.1f} s, off-axis mean {_fmt(b['mean_off_axis_arcsec'])} "
                   f"max {_fmt(b['max_off_axis_arcsec'])} arcsec (encoders)")
        t = r["true_bores"].get(name)
        if t is not None:
            click.echo(f"  {'':<13} on-Sun {t['on_sun_s']:.1f} s, effective "
                       f"{t['effective_s']:.1f} s, off-axis mean "
                       f"{_fmt(t['mean_off_axis_arcsec'])} max {_fmt(t['max_off_axis_arcsec'])}"
                       f" arcsec (simulator truth)")
    click.echo(f"samples      {r['n_samples']} covering {r['logged_s']:.0f} s; "
               f"{r['n_gaps']} gaps, {r['gap_s']:.0f} s")
    for g in r["gaps"][:10]:
        click.echo(f"  gap {g['start_utc']} .. {g['end_utc']} ({g['duration_s']:.0f} s)")
    click.echo(f"intervals    {len(r['intervals'])} of continuous on-Sun tracking, "
               f"{r['intervals_s']:.1f} s" + (f" -> {intervals_csv}" if intervals_csv else ""))
