"""``tracker export``: the physics record (bore intervals and samples) to Parquet, ROOT or
CSV."""

from __future__ import annotations

import json

import click

from tracker.cli.options import FiniteFloatRange


@click.command("export")
@click.option("--db", type=click.Path(dir_okay=False), help="Tracking log (SQLite file).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Config whose store.path is the log, and whose bores name the per-bore "
                   "columns (default: the config the log names, else config/sim.toml).")
@click.option("--format", "fmt", type=click.Choice(["parquet", "root", "csv"]), required=True,
              help="parquet: intervals.parquet + samples.parquet; root: record.root with "
                   "TTrees 'intervals' and 'samples'; csv: intervals.csv + samples.csv.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Folder to write into (created).")
@click.option("--from", "start", metavar="ISO|DATE",
              help="Start (UTC date or ISO 8601 with zone); default: the log's first sample.")
@click.option("--to", "end", metavar="ISO|DATE",
              help="End, exclusive; default: the log's last sample.")
@click.option("--settle-s", type=FiniteFloatRange(min=0), default=None,
              help="As for 'tracker exposure' (default: tracking.settle_s of the config).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def export(db, config_path, fmt, out_dir, start, end, settle_s, as_json) -> None:
    """Export the on-Sun intervals per bore and the per-sample record (schema:
    docs/tracking-log.md)."""
    from tracker.cli.exposure import open_log
    from tracker.log.export import export_record
    from tracker.log.report import resolve_range

    store, settings = open_log(db, config_path)
    try:
        t0, t1 = resolve_range(store, start, end)
        if settle_s is None:
            settle_s = settings.tracking.settle_s if settings is not None else 30.0
        bores = [b.name for b in settings.bore_list] if settings is not None else None
        r = export_record(store, fmt, out_dir, t0, t1, settle_s=settle_s, bores=bores)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    click.echo(f"{r['intervals']} bore intervals, {r['samples']} samples "
               f"(bores: {', '.join(r['bores']) or 'none recorded'})")
    for f in r["files"]:
        click.echo(f"  {f}")
