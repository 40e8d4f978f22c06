"""``tracker tango`` and ``tracker opcua-server``: the facility interfaces (docs/facility.md).

Both run in their own process as clients of a running daemon's API (its address and
token file from the same config), so they cannot stall the control loop.
"""

from __future__ import annotations

import sys

import click

from tracker import config as config_mod


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="The daemon's config file (API address, token file, [facility]).")
@click.option("--api-url", default=None,
              help="The daemon's API URL (default: facility.api_url, else the [api] address).")
@click.option("--instance", default=None,
              help="Tango server instance name (default: facility.tango_instance).")
@click.option("--nodb", is_flag=True,
              help="No Tango database: serve facility.tango_device on facility.tango_host:"
                   "tango_port (clients use tango://HOST:PORT/DEVICE#dbase=no).")
def tango(config_path: str | None, api_url: str | None, instance: str | None,
          nodb: bool) -> None:
    """Run the Tango device server HelioTracker/INSTANCE (a client of the daemon's API)."""
    settings = config_mod.load(config_path)
    name = instance or settings.facility.tango_instance
    if not name or not all(c.isalnum() or c in "_.-" for c in name) or len(name) > 64:
        raise click.BadParameter("letters, digits and _.- only (at most 64)", param_hint="--instance")
    from tracker.service.tango_device import run

    run(name, config_path=config_path, nodb=nodb, settings=settings, api_url=api_url)


@click.command("opcua-server")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="The daemon's config file (API address, token file, [facility]).")
@click.option("--api-url", default=None,
              help="The daemon's API URL (default: facility.api_url, else the [api] address).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="OPC UA TCP port (default: facility.opcua_port).")
@click.option("--hash-password", is_flag=True,
              help="Read a password from stdin, print its users-file hash, and exit.")
def opcua_server(config_path: str | None, api_url: str | None, port: int | None,
                 hash_password: bool) -> None:
    """Run the OPC UA server (Objects/HelioTracker; a client of the daemon's API)."""
    if hash_password:
        from tracker.service.opcua_server import hash_password as make_hash

        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise click.UsageError("no password on stdin")
        click.echo(make_hash(password))
        return
    import asyncio

    from tracker.service.client import Client
    from tracker.service.opcua_server import serve

    settings = config_mod.load(config_path)
    url = api_url or settings.facility.api_url or None
    client = Client.from_settings(settings, url=url)
    watch = Client.from_settings(settings, url=url)    # the event stream, in its own thread

    def ready(endpoint: str) -> None:
        click.echo(f"tracker opcua-server: {endpoint} (daemon {client.url})", err=True)

    try:
        asyncio.run(serve(settings, client, port=port, ready=ready, watch_client=watch))
    finally:
        client.close()
        watch.close()
