"""The ``tracker`` command line: one module per command, loaded when used."""

from tracker.cli.main import main

__all__ = ["main"]
