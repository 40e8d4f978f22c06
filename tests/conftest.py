"""Shared fixtures.  Tests never touch the network: astropy's IERS auto-download is off."""

from __future__ import annotations

import pytest

from tests.support import CONFIG_DIR, PRESETS, ROOT, arcsecond  # noqa: F401
from tracker import config


@pytest.fixture
def sim_settings() -> config.Settings:
    return config.load(CONFIG_DIR / "sim.toml")


@pytest.fixture(params=PRESETS)
def preset(request) -> config.Settings:
    return config.load(CONFIG_DIR / f"{request.param}.toml")


def pytest_unconfigure(config) -> None:
    """Name every non-daemon thread and child process a test left behind.

    The interpreter waits for non-daemon threads at exit, so one leaked by a test keeps the
    whole run from ending after its summary; this prints where each one is stuck.
    """
    import sys
    import threading
    import traceback

    import psutil

    frames = sys._current_frames()
    leaked = [t for t in threading.enumerate()
              if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    for thread in leaked:
        stack = "".join(traceback.format_stack(frames.get(thread.ident))) if thread.ident in frames else ""
        sys.stderr.write(f"\nleaked non-daemon thread {thread.name!r}:\n{stack}")
    for child in psutil.Process().children(recursive=True):
        sys.stderr.write(f"\nleaked child process {child.pid}: {' '.join(child.cmdline())}\n")
