"""``tracker states``: the state diagram, generated from the machine's transition table."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import click


@click.command()
@click.option("--png", type=click.Path(dir_okay=False), help="Also render a PNG (needs graphviz 'dot').")
def states(png: str | None) -> None:
    """Print the state diagram as mermaid text (and a PNG with --png if graphviz is installed)."""
    from tracker.control.machine import dot, mermaid

    click.echo(mermaid(), nl=False)
    if png:
        exe = shutil.which("dot")
        if exe is None:
            raise click.ClickException("graphviz 'dot' is not installed: no PNG written "
                                       "(apt-get install graphviz)")
        # A fixed argv, no shell; the output path made absolute so that it can never be
        # taken for an option of dot (a name starting with '-').
        out = str(Path(png).resolve())
        try:
            subprocess.run([exe, "-Tpng", "-o", out], input=dot().encode(), check=True,
                           timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            raise click.ClickException(f"graphviz 'dot' failed, no PNG written: {exc}") from None
        click.echo(f"wrote {out}", err=True)
