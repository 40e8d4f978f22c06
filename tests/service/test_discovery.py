"""Alpaca discovery responder (tracker.service.discovery) on real UDP sockets.

Alpaca API, discovery protocol: a client sends ``alpacadiscovery1`` to UDP 32227; the
server answers ``{"AlpacaPort": <port>}``.  Here it is opt-in and follows
``api.alpaca_allow_remote`` (the daemon-level test is in test_alpaca_conformance.py).
"""

from __future__ import annotations

import asyncio
import json
import socket

from tracker import config
from tracker.service.discovery import start_discovery


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(**api: object) -> config.Settings:
    """config/sim.toml with ``api`` keys replaced (validated again)."""
    base = config.load()
    data = {**base.api.model_dump(), "alpaca_enabled": True,
            "alpaca_discovery_port": _free_udp_port(), **api}
    return base.model_copy(update={"api": config.Api.model_validate(data)})


def test_discovery_is_off_by_default_and_needs_alpaca():
    assert config.Api().alpaca_discovery is False
    assert config.Api().alpaca_discovery_port == 32227

    async def run() -> None:
        assert await start_discovery(config.load(), 8470) is None  # sim.toml: not opted in
        assert await start_discovery(_settings(alpaca_discovery=False), 8470) is None
        assert await start_discovery(_settings(alpaca_discovery=True, alpaca_enabled=False),
                                     8470) is None
    asyncio.run(run())


def test_discovery_binds_loopback_unless_remote_is_allowed():
    async def run(allow_remote: bool) -> tuple[str, dict]:
        settings = _settings(alpaca_discovery=True, alpaca_allow_remote=allow_remote)
        started = await start_discovery(settings, 18470)
        assert started is not None
        transport, protocol = started
        try:
            host, port = transport.get_extra_info("sockname")[:2]
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.setblocking(False)
                s.sendto(b"alpacadiscovery1", ("127.0.0.1", port))
                reply = await asyncio.wait_for(loop.sock_recv(s, 1024), 3.0)
            assert protocol.answered == 1
            return host, json.loads(reply)
        finally:
            transport.close()

    assert asyncio.run(run(False)) == ("127.0.0.1", {"AlpacaPort": 18470})
    assert asyncio.run(run(True)) == ("0.0.0.0", {"AlpacaPort": 18470})
