"""ASCOM Alpaca discovery responder (Alpaca API, "Discovery protocol", IPv4).

A client broadcasts the UDP datagram ``alpacadiscovery1`` to port 32227; every
Alpaca server answers it with the JSON ``{"AlpacaPort": <HTTP port>}``.  Here the
responder is opt-in (``api.alpaca_discovery``, with ``api.alpaca_enabled``) and,
unless ``api.alpaca_allow_remote``, binds 127.0.0.1 and answers loopback peers
only.  Anything else received is ignored; a reply is never larger than the
request, so the responder cannot amplify traffic.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
from typing import Any, cast

log = logging.getLogger(__name__)

#: The discovery request: "alpacadiscovery" + the protocol version "1".
DISCOVERY_REQUEST = b"alpacadiscovery1"
DISCOVERY_PORT = 32227


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DiscoveryProtocol(asyncio.DatagramProtocol):
    """Answers ``alpacadiscovery1`` with ``{"AlpacaPort": alpaca_port}``."""

    def __init__(self, alpaca_port: int, *, allow_remote: bool) -> None:
        self.reply = json.dumps({"AlpacaPort": alpaca_port}).encode()
        self.allow_remote = allow_remote
        self.transport: asyncio.DatagramTransport | None = None
        self.answered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        # The protocol version is the character after "alpacadiscovery"; version 1 only.
        if not data.startswith(DISCOVERY_REQUEST) or self.transport is None:
            return
        if not self.allow_remote and not _is_loopback(str(addr[0])):
            return
        self.transport.sendto(self.reply, addr)
        self.answered += 1


async def start_discovery(settings: Any, alpaca_port: int
                          ) -> tuple[asyncio.DatagramTransport, DiscoveryProtocol] | None:
    """Start the responder if configured (``api.alpaca_enabled`` and ``alpaca_discovery``).

    Returns the transport (close it to stop) and protocol, or None when not configured.
    Binds 0.0.0.0 with broadcast only when ``api.alpaca_allow_remote``, else 127.0.0.1.
    """
    api = settings.api
    if not (api.alpaca_enabled and api.alpaca_discovery):
        return None
    host = "0.0.0.0" if api.alpaca_allow_remote else "127.0.0.1"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if api.alpaca_allow_remote:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    try:
        sock.bind((host, api.alpaca_discovery_port))
    except OSError as exc:
        sock.close()
        log.error("Alpaca discovery not started: cannot bind UDP %s:%d: %s", host,
                  api.alpaca_discovery_port, exc.strerror)
        return None
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: DiscoveryProtocol(alpaca_port, allow_remote=api.alpaca_allow_remote), sock=sock)
    log.info("Alpaca discovery answering on UDP %s:%d (AlpacaPort %d)", host,
             api.alpaca_discovery_port, alpaca_port)
    return transport, protocol
