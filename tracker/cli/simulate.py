"""``tracker simulate``: the simulated mount in real time behind real protocol servers.

Runs a ``SimMount`` stepped from ``time.monotonic()`` behind a Modbus TCP server
(with ``--protocol opcua``, an OPC UA server: the simulated drive PLC, loopback only;
with ``--serial-pty``, also the serial device on a pseudo-terminal; with ``--anemometer``
(default when ``weather.source = "modbus"``), its wind as the anemometer
``weather.source`` names: a Modbus TCP anemometer on ``weather.modbus.port`` or NMEA 0183
MWV sentences on a pty), prints
where it listens and runs until SIGINT/SIGTERM.  An operator rehearses with
the real daemon pointed at it (``config/sim-modbus.toml``, ``config/sim-opcua.toml``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any
from urllib.parse import urlparse

import click

from tracker import config as config_mod
from tracker.cli.options import TIME_OFFSET_S
from tracker.errors import ConfigError

log = logging.getLogger(__name__)


async def _read_commands(faults, stop_event: asyncio.Event) -> None:
    """Read fault-injection commands from stdin (one a line) until EOF or stop."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except (OSError, ValueError) as exc:
        log.warning("stdin commands unavailable: %s", exc)
        return
    try:
        while not stop_event.is_set():
            line = await reader.readline()
            if not line:
                return
            reply = faults.command(line.decode("utf-8", "replace"))
            if reply:
                click.echo(reply)
    finally:
        transport.close()


async def _start_anemometer(settings, mount, port: int | None):
    """Serve the mount's wind as ``weather.source`` describes; returns a stop coroutine fn."""
    w = settings.weather
    if w.source == "modbus":
        from simulator.weather import start_modbus_anemometer

        handle = await start_modbus_anemometer(mount, w.modbus, host=w.modbus.host,
                                               port=w.modbus.port if port is None else port)
        click.echo(f"anemometer modbus tcp {w.modbus.host}:{handle.port} "
                   f"(device {w.modbus.device_id})")
        return handle.stop
    if w.source == "nmea":
        from simulator.weather import start_nmea_anemometer

        anemo = start_nmea_anemometer(mount, period_s=0.25)
        click.echo(f"anemometer nmea pty {anemo.path} (set weather.nmea.port to it)")

        async def stop() -> None:
            anemo.stop()
        return stop
    raise ConfigError(f"--anemometer: weather.source = {w.source!r} has no wire to serve "
                      "(use 'modbus' or 'nmea')", key="weather.source", value=w.source,
                      allowed="modbus, nmea")


async def _run(settings, modbus_port: int, serial_pty: bool, time_offset_s: float,
               stdin_commands: bool = False, ready=None, anemometer: bool = False,
               anemometer_port: int | None = None, protocol: str = "modbus",
               opcua_port: int | None = None) -> None:
    from simulator.mount import SimMount, run_realtime

    mount = SimMount(settings)
    handle: Any
    if protocol == "opcua":
        from simulator.opcua_server import start_opcua_server

        endpoint = urlparse(settings.drives.opcua.endpoint_url)
        host = endpoint.hostname or "127.0.0.1"
        port = (endpoint.port or 4840) if opcua_port is None else opcua_port
        handle, url = await start_opcua_server(mount, host=host, port=port)
        click.echo(f"opcua {url} (node map {settings.drives.opcua.node_map})")
    else:
        from simulator.modbus_server import start_modbus_tcp_server

        host = settings.drives.modbus.host
        handle, port = await start_modbus_tcp_server(mount, host=host, port=modbus_port)
        click.echo(f"modbus tcp {host}:{port} (azimuth device {handle.device_ids['azimuth']}, "
                   f"elevation device {handle.device_ids['elevation']})")
    stops = [handle.stop]
    if anemometer:
        try:
            stops.append(await _start_anemometer(settings, mount, anemometer_port))
        except BaseException:
            await handle.stop()
            raise
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
    reader = None
    if stdin_commands:
        from simulator.faults import FaultInjector

        click.echo("fault commands on stdin ('help' lists them)")
        # The injector's comms faults speak Modbus; over OPC UA it injects drive faults only.
        injector = FaultInjector(mount, server=handle if protocol == "modbus" else None)
        reader = asyncio.create_task(_read_commands(injector, stop_event))
    try:
        await stop_event.wait()
    finally:
        for task in (stepper, reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
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
@click.option("--protocol", type=click.Choice(["modbus", "opcua"]), default="modbus",
              show_default=True, help="Serve the drives over Modbus TCP or OPC UA.")
@click.option("--opcua-port", type=click.IntRange(0, 65535), default=None,
              help="OPC UA port (default: the port of drives.opcua.endpoint_url; 0 = any free).")
@click.option("--serial-pty", is_flag=True, help="Also serve the serial device on a pty.")
@click.option("--anemometer/--no-anemometer", default=None,
              help="Serve the wind as weather.source says (modbus: TCP; nmea: a pty). "
                   "Default: on when weather.source = 'modbus' (the daemon then reads the "
                   "simulated wind as it would a real anemometer).")
@click.option("--anemometer-port", type=click.IntRange(0, 65535), default=None,
              help="Modbus anemometer TCP port (default: weather.modbus.port; 0 = any free).")
@click.option("--time-offset-s", type=TIME_OFFSET_S, default=0.0,
              help="Clock offset the rehearsal runs at, within +-100 years (shown; pass the "
              "same to the daemon).")
@click.option("--stdin-commands/--no-stdin-commands", default=None,
              help="Read fault-injection commands from stdin (default: when stdin is a terminal).")
def simulate(config_path: str | None, modbus_port: int | None, protocol: str,
             opcua_port: int | None, serial_pty: bool, anemometer: bool | None,
             anemometer_port: int | None, time_offset_s: float,
             stdin_commands: bool | None) -> None:
    """Run the simulated mount in real time behind a Modbus TCP or OPC UA server (and a serial
    pty, and an anemometer).

    With stdin commands an operator injects faults while rehearsing: e.g.
    ``trip azimuth overcurrent``, ``estop on``, ``wind 18``, ``drop``; ``help`` lists them.
    """
    settings = config_mod.load(config_path)
    port = settings.drives.modbus.port if modbus_port is None else modbus_port
    if stdin_commands is None:
        stdin_commands = sys.stdin is not None and sys.stdin.isatty()
    if anemometer is None:
        anemometer = settings.weather.source == "modbus"
    try:
        asyncio.run(_run(settings, port, serial_pty, time_offset_s, stdin_commands,
                         anemometer=anemometer, anemometer_port=anemometer_port,
                         protocol=protocol, opcua_port=opcua_port))
    except OSError as exc:
        if protocol == "opcua":
            raise ConfigError(f"cannot serve OPC UA on {settings.drives.opcua.endpoint_url} "
                              f"(port {opcua_port}): {exc.strerror or exc}",
                              key="--opcua-port", value=opcua_port) from None
        raise ConfigError(f"cannot serve on port {port}: {exc.strerror or exc}",
                          key="--modbus-port", value=port) from None
    except ValueError as exc:  # a non-loopback host for the simulated PLC
        raise ConfigError(str(exc), key="drives.opcua.endpoint_url",
                          value=settings.drives.opcua.endpoint_url) from None
