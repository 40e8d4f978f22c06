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


_exit_status: list[int] = [0]


def pytest_configure(config) -> None:
    """Refuse to test compiled modules older than their source (tracker.compiled)."""
    from tracker import compiled
    if stale := compiled.stale():
        pytest.exit(f"compiled modules older than their source: {', '.join(stale)}: "
                    f"{compiled.REBUILD}", returncode=4)


def pytest_sessionfinish(session, exitstatus) -> None:
    _exit_status[0] = int(exitstatus)


def pytest_unconfigure(config) -> None:
    """Name every non-daemon thread and child process a test left behind, and fail the run.

    The interpreter waits for non-daemon threads at exit, so one leaked by a test would keep
    the run from ever ending after its summary; this prints where each one is stuck and ends
    the process with a failure instead.
    """
    import os
    import sys
    import threading
    import traceback

    import psutil

    frames = sys._current_frames()
    leaked = [t for t in threading.enumerate()
              if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    for thread in leaked:
        stack = "".join(traceback.format_stack(frames[thread.ident])) if thread.ident in frames else ""
        sys.stderr.write(f"\nleaked non-daemon thread {thread.name!r}:\n{stack}")
    children = psutil.Process().children(recursive=True)
    for child in children:
        sys.stderr.write(f"\nleaked child process {child.pid}: {' '.join(child.cmdline())}\n")
    if leaked:
        sys.stderr.write(f"\n{len(leaked)} non-daemon threads left running: failing the run\n")
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(_exit_status[0] or 1)
