"""``tracker states``: the state diagram, generated from the machine's transition table."""

from __future__ import annotations

import shutil
import subprocess

import click


@click.command()
@click.option("--png", type=click.Path(dir_okay=False), help="Also render a PNG (needs graphviz 'dot').")
def states(png: str | None) -> None:
    """Print the state diagram as mermaid text (and a PNG with --png if graphviz is installed)."""
    from tracker.machine import dot, mermaid

    click.echo(mermaid(), nl=False)
    if png:
        exe = shutil.which("dot")
        if exe is None:
            raise click.ClickException("graphviz 'dot' is not installed: no PNG written "
                                       "(apt-get install graphviz)")
        subprocess.run([exe, "-Tpng", "-o", png], input=dot().encode(), check=True)
        click.echo(f"wrote {png}", err=True)
