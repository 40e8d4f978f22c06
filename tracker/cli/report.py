"""``tracker report``: exposure report (JSON, CSV, PNG plots) for a period of the tracking log."""

from __future__ import annotations

import time

import click

from tracker.log.store import iso_utc


@click.command("report")
@click.option("--from", "start", metavar="ISO|DATE",
              help="Start (UTC date or ISO 8601 with zone); default: the log's first sample.")
@click.option("--to", "end", metavar="ISO|DATE",
              help="End, exclusive (a date means its 00:00 UTC); default: the log's last sample.")
@click.option("--db", type=click.Path(dir_okay=False), help="Tracking log (SQLite file).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Config of the installation (site, envelope, plan); default: the one the "
                   "log names, else config/sim.toml.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="report",
              show_default=True, help="Folder for report.json, the CSV files and the plots.")
@click.option("--sky-days", type=click.IntRange(min=0), default=7, show_default=True,
              help="Daily sky charts for at most this many days.")
@click.option("--no-plots", is_flag=True, help="JSON and CSV only.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
def report(start, end, db, config_path, out_dir, sky_days, no_plots, quiet) -> None:
    """Per-day exposure, error statistics, time in each state, faults; JSON, CSV and PNG.

    Progress goes to stderr (one line per step with the time since the start), the summary
    and the files written to stdout.
    """
    from tracker.cli.exposure import open_log
    from tracker.log.report import build_report, resolve_range, write_report

    started = time.monotonic()

    def progress(text: str) -> None:
        if not quiet:
            click.echo(f"[{time.monotonic() - started:6.1f} s] {text}", err=True)

    progress("opening the tracking log")
    store, settings = open_log(db, config_path)
    try:
        t0, t1 = resolve_range(store, start, end)
        progress(f"computing exposure {iso_utc(t0)} .. {iso_utc(t1)} "
                 f"({(t1 - t0) / 86400.0:.1f} days)")
        rep = build_report(store, t0, t1, settings=settings)
        progress(f"writing JSON and CSV to {out_dir}")
        paths = write_report(rep, out_dir, store=store, settings=settings, plots=not no_plots,
                             sky_days=sky_days, progress=lambda what: progress(f"plotting {what}"))
    finally:
        store.close()
    progress("done")
    tot = rep["total"]
    click.echo(f"{rep['from_utc']} .. {rep['to_utc']}: on-Sun {tot['on_sun_s'] / 3600:.3f} h, "
               f"tracking {tot['tracking_s'] / 3600:.3f} h"
               + (f", efficiency {tot['efficiency']:.4f}" if tot.get("efficiency") else "")
               + f", {len(rep['faults'])} faults, {len(rep['intervals'])} intervals")
    click.echo(f"  error rms {_fmt(tot['rms_error_arcsec'])} max {_fmt(tot['max_error_arcsec'])}"
               " arcsec (encoders)"
               + (f"; true rms {_fmt(tot['true_rms_error_arcsec'])} max "
                  f"{_fmt(tot['true_max_error_arcsec'])} arcsec (simulator truth)"
                  if tot.get("true_rms_error_arcsec") is not None else ""))
    for name, b in tot["bores"].items():
        t = tot["true_bores"].get(name)
        click.echo(f"  bore {name:<8} on-Sun {b['on_sun_s']:.1f} s, effective "
                   f"{b['effective_s']:.1f} s (encoders)"
                   + (f"; on-Sun {t['on_sun_s']:.1f} s, effective {t['effective_s']:.1f} s "
                      "(simulator truth)" if t is not None else ""))
    if settings is None:
        click.echo("no config for this log: no sky charts or planned windows (give --config)")
    for p in paths:
        click.echo(f"  wrote {p}")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"
