"""``tracker states``: the state diagram, generated from the machine's transition table.

The plain table (``tracker.control.machine.dot``) draws one arrow per (source, trigger) pair:
about seventy arrows that cross each other.  ``readable_dot`` draws the same table so that a
person can read it: arrows between the same two states share one line with all their
triggers; a trigger allowed from many states (``fault``, ``estop``, ``stow``, ...) is drawn
once, from a note that lists its source states; states are coloured by role.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import click

#: Fill colours by role (graphviz X11 names).
_ROLE_COLOURS = {"tracking": "palegreen", "waiting": "honeydew", "slewing": "lightyellow",
                 "parking": "lightyellow", "stowing": "lightyellow", "manual": "lightyellow",
                 "fault": "mistyrose", "estop": "mistyrose", "off": "gray90",
                 "parked": "lightcyan", "stowed": "lightcyan", "idle": "lightcyan"}


def readable_dot(*, rankdir: str = "TB", group_min: int = 7) -> str:
    """The state diagram as graphviz dot, laid out to be read.

    ``group_min``: a trigger allowed from at least this many states is drawn once, from a
    note listing them (0 draws every arrow).  ``rankdir``: TB (top to bottom) or LR.
    """
    from tracker.control.machine import GUARDS, TRANSITIONS, State

    lines = ["digraph states {",
             f"  rankdir={rankdir}; newrank=true; nodesep=0.45; ranksep=0.65; splines=true;",
             '  graph [fontname="Helvetica", fontsize=12, labelloc=t, '
             'label="helio-tracker states (generated from tracker.control.machine)"];',
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=13, '
             'fillcolor=white, margin="0.15,0.07"];',
             '  edge [fontname="Helvetica", fontsize=10, color="gray35", arrowsize=0.7];']
    for state in State:
        lines.append(f'  "{state.value}" [fillcolor="{_ROLE_COLOURS.get(state.value, "white")}"];')
    lines.append('  "start" [shape=circle, label="", width=0.15, style=filled, fillcolor=black];')
    lines.append('  "start" -> "off";')
    pairs: dict[tuple[str, str], list[str]] = defaultdict(list)
    groups = 0
    for trigger, sources, dest in TRANSITIONS:
        srcs = [s for s in (sources if isinstance(sources, list) else [sources]) if s is not dest]
        label = trigger + (f" [{GUARDS[trigger]}]" if trigger in GUARDS else "")
        if group_min and len(srcs) >= group_min:
            groups += 1
            note = f"from_{trigger}"
            names = [s.value for s in srcs]
            rows = "\\n".join(" ".join(names[i:i + 4]) for i in range(0, len(names), 4))
            lines.append(f'  "{note}" [shape=note, style=filled, fillcolor=gray97, fontsize=10, '
                         f'label="from any of:\\n{rows}"];')
            lines.append(f'  "{note}" -> "{dest.value}" [label="{label}", style=dashed, '
                         f'color="{"firebrick" if dest.value in ("fault", "estop") else "gray35"}"];')
            continue
        for src in srcs:
            pairs[(src.value, dest.value)].append(label)
    for (src, dest), labels in pairs.items():
        joined = "\\n".join(labels)
        lines.append(f'  "{src}" -> "{dest}" [label="{joined}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--png", type=click.Path(dir_okay=False),
              help="Also render a PNG (needs graphviz 'dot').")
@click.option("--dot", "print_dot", is_flag=True,
              help="Print the graphviz text of the readable diagram instead of mermaid.")
@click.option("--rankdir", type=click.Choice(["TB", "LR"]), default="TB", show_default=True,
              help="Layout direction of the PNG: top to bottom or left to right.")
@click.option("--group-min", type=click.IntRange(min=0), default=7, show_default=True,
              help="Draw a trigger allowed from at least this many states once, from a note "
                   "listing them (0: one arrow per source state).")
@click.option("--engine", "engine", type=click.Choice(["dot", "neato", "fdp", "circo"]),
              default="dot", show_default=True, help="Graphviz layout engine for the PNG.")
@click.option("--dpi", type=click.IntRange(50, 600), default=110, show_default=True,
              help="Resolution of the PNG.")
def states(png: str | None, print_dot: bool, rankdir: str, group_min: int, engine: str,
           dpi: int) -> None:
    """Print the state diagram as mermaid text (and a PNG with --png if graphviz is installed)."""
    from tracker.control.machine import mermaid

    text = readable_dot(rankdir=rankdir, group_min=group_min)
    click.echo(text if print_dot else mermaid(), nl=False)
    if png:
        exe = shutil.which("dot")
        if exe is None:
            raise click.ClickException("graphviz 'dot' is not installed: no PNG written "
                                       "(apt-get install graphviz)")
        # A fixed argv, no shell; the output path made absolute so that it can never be
        # taken for an option of dot (a name starting with '-').
        out = str(Path(png).resolve())
        try:
            subprocess.run([exe, f"-K{engine}", f"-Gdpi={dpi}", "-Tpng", "-o", out],
                           input=text.encode(), check=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            raise click.ClickException(f"graphviz 'dot' failed, no PNG written: {exc}") from None
        click.echo(f"wrote {out}", err=True)
