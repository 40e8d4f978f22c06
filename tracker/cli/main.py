"""The ``tracker`` command line.

Each command lives in its own module under ``tracker.cli`` and is imported
only when it runs, so ``tracker status`` does not pay for astropy's import.
A ``TrackerError`` ends the command with its message and exit status 2.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import sys

import click

from tracker.errors import TrackerError

#: command name -> "module:attribute" under tracker.cli
COMMANDS: dict[str, str] = {
    "config": "config_cmd:config",
    "sun": "sun:sun",
    "simulate": "simulate:simulate",
    "calibrate": "calibrate:calibrate",
    "plan": "plan:plan",
    "daemon": "daemon:daemon",
    "status": "operator:status",
    "goto": "operator:goto",
    "jog": "operator:jog",
    "stop": "operator:stop",
    "park": "operator:park",
    "unpark": "operator:unpark",
    "stow": "operator:stow",
    "track": "operator:track",
    "reset": "operator:reset",
    "events": "operator:events",
    "dry-run": "dryrun:dry_run",
    "states": "states:states",
    "exposure": "exposure:exposure",
    "export": "export:export",
    "forecast": "forecast:forecast",
    "report": "report:report",
    "tango": "facility:tango",
    "opcua-server": "facility:opcua_server",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        module = importlib.import_module(f"tracker.cli.{module_name}")
        return getattr(module, attr)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        """Like click's, but a mistyped command gets the closest names as a suggestion."""
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in COMMANDS:
            close = difflib.get_close_matches(name, sorted(COMMANDS), n=3, cutoff=0.6)
            if not close:   # a prefix: 'stat' -> status, states
                close = [c for c in sorted(COMMANDS) if c.startswith(name)][:3]
            hint = (f" Did you mean {' or '.join(repr(c) for c in close)}?" if close
                    else " See 'tracker --help' for the commands.")
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TrackerError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(package_name="helio-tracker")
def main(verbose: int) -> None:
    """Solar-tracking controller for axion helioscopes.

    Shell completion (bash, zsh, fish): see docs/daemon.md, e.g. for bash
    eval "$(_TRACKER_COMPLETE=bash_source tracker)" in ~/.bashrc.
    """
    from tracker import compiled
    if stale := compiled.stale():
        # An edited checkout would run the old code of these modules (the safety checks
        # among them): refuse rather than run it.
        raise click.ClickException(f"compiled modules older than their source: "
                                   f"{', '.join(stale)}: {compiled.REBUILD}")
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
