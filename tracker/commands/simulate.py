"""``tracker simulate``: the simulated mount in real time behind real protocol servers.

Runs a ``SimMount`` stepped from ``time.monotonic()`` behind a Modbus TCP server
(and, with ``--serial-pty``, the serial device on a pseudo-terminal), prints
where it listens and runs until SIGINT/SIGTERM.  An operator rehearses with
the real daemon pointed at it (``config/sim-modbus.toml``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import click

from tracker import config as config_mod
from tracker.errors import ConfigError

log = logging.getLogger(__name__)


async def _run(settings, modbus_port: int, serial_pty: bool, time_offset_s: float,
               ready=None) -> None:
    from simulator.modbus_server import start_modbus_tcp_server
    from simulator.mount import SimMount, run_realtime

    mount = SimMount(settings)
    host = settings.drives.modbus.host
    handle, port = await start_modbus_tcp_server(mount, host=host, port=modbus_port)
    stops = [handle.stop]
    click.echo(f"modbus tcp {host}:{port} (azimuth device {handle.device_ids['azimuth']}, "
               f"elevation device {handle.device_ids['elevation']})")
    serial_stop = None
    if serial_pty:
        try:
            from simulator.serial_device import start_pty_server
        except ImportError as exc:
            await handle.stop()
            raise ConfigError(f"--serial-pty: the serial device simulator is not available ({exc})"
                              ) from None
        result = start_pty_server(mount)
        if asyncio.iscoroutine(result):
            result = await result
        pty_path, serial_stop = result
        click.echo(f"serial pty {pty_path}")
    if time_offset_s:
        click.echo(f"time offset {time_offset_s:+.3f} s (give the daemon the same --time-offset-s)")
    click.echo("running; Ctrl-C to stop", err=False)
    stepper = asyncio.create_task(run_realtime(mount), name="sim-mount-realtime")
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop_event.set)
    if ready is not None:
        ready(mount, handle)
    try:
        await stop_event.wait()
    finally:
        stepper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stepper
        if serial_stop is not None:
            r = serial_stop()
            if asyncio.iscoroutine(r):
                await r
        for stop in stops:
            await stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    click.echo("stopped")


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Config file (default config/sim.toml).")
@click.option("--modbus-port", type=click.IntRange(0, 65535), default=None,
              help="Modbus TCP port (default: drives.modbus.port; 0 = any free port).")
@click.option("--serial-pty", is_flag=True, help="Also serve the serial device on a pty.")
@click.option("--time-offset-s", type=float, default=0.0,
              help="Clock offset the rehearsal runs at (shown; pass the same to the daemon).")
def simulate(config_path: str | None, modbus_port: int | None, serial_pty: bool,
             time_offset_s: float) -> None:
    """Run the simulated mount in real time behind a Modbus TCP server (and a serial pty)."""
    settings = config_mod.load(config_path)
    port = settings.drives.modbus.port if modbus_port is None else modbus_port
    try:
        asyncio.run(_run(settings, port, serial_pty, time_offset_s))
    except OSError as exc:
        raise ConfigError(f"cannot serve on port {port}: {exc.strerror or exc}",
                          key="--modbus-port", value=port) from None
