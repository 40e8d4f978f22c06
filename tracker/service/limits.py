"""Request limits at the HTTP edge: no request can cost the daemon much.

``RequestLimits`` is a pure ASGI middleware wrapping the whole application
(API, Alpaca, web page).  In order, for every HTTP request:

0. **Header size**: more than ``MAX_HEADER_BYTES`` of headers answers 431.
1. **Host** (DNS rebinding): the ``Host`` header must name the bind host,
   ``localhost``, ``127.0.0.1``, ``[::1]`` or one of ``api.allowed_hosts``;
   otherwise 421 Misdirected Request (400 when the header is missing).
2. **Origin** for state-changing methods (POST, PUT, PATCH, DELETE): absent, or
   ``http://<allowed host>:<this port>`` (same origin); otherwise 403.
3. **Rate** per client address: a token bucket (``api.rate_limit_per_s``,
   burst ``api.rate_limit_burst``); an empty bucket answers 429 with Retry-After;
   and at most ``api.max_inflight_per_source`` requests of one address in progress
   at once (a slow body counts), beyond: 429.
4. **Body size**: a declared ``Content-Length`` above ``api.max_body_bytes``
   answers 413 before any byte of the body is read; a body without one
   (chunked) is read only up to the limit, then 413.  The body is buffered
   here (it is small) and must arrive within ``api.body_timeout_s`` (408).

Refusals are plain text, close the connection, and never reach the
application, so they cost no parsing and touch no state.  Header-phase
limits (header timeout, header size, connection count) are uvicorn's: see
``uvicorn_options`` and ``GuardedH11Protocol``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Methods that change state: they need a same-origin (or absent) Origin header.
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Host names always accepted (loopback).
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
#: Client addresses tracked by the rate limiter at most (oldest dropped first).
MAX_TRACKED_CLIENTS = 4096
#: Largest header block accepted (bytes): 431 beyond; uvicorn's h11 parser also buffers
#: at most this much of an incomplete request head (400 and close beyond).
MAX_HEADER_BYTES = 16 * 1024


def _host_name(value: str) -> str:
    """The host part of a Host/Origin authority, lower case, without port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def _port_of(authority: str) -> int | None:
    authority = authority.strip()
    tail = authority.rsplit("]", 1)[-1] if authority.startswith("[") else authority
    if tail.count(":") != 1:
        return None
    try:
        return int(tail.rsplit(":", 1)[1])
    except ValueError:
        return -1


class TokenBucket:
    """Per-key token buckets: ``rate_per_s`` tokens a second, at most ``burst`` saved."""

    def __init__(self, rate_per_s: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not (math.isfinite(rate_per_s) and rate_per_s > 0 and burst >= 1):
            raise ValueError(f"rate {rate_per_s}/s and burst {burst} must be positive")
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """Take one token for ``key``: 0.0 if granted, else seconds until one is available."""
        now = self.clock()
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate_per_s)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate_per_s
        if len(self._buckets) > MAX_TRACKED_CLIENTS:  # dicts keep order: drop the stalest
            self._buckets.pop(next(iter(self._buckets)))
        return wait


class RequestLimits:
    """Host/Origin checks, per-client rate limit and body size limit around ``app``."""

    def __init__(self, app: ASGIApp, *, bind_host: str, port: int,
                 allowed_hosts: list[str] | tuple[str, ...] = (), max_body_bytes: int = 4096,
                 rate_per_s: float = 200.0, burst: int = 400, body_timeout_s: float = 10.0,
                 max_inflight_per_source: int = 16,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.port = port
        names = {_host_name(h) for h in (*allowed_hosts, bind_host)} | LOOPBACK_NAMES
        self.allowed_hosts = frozenset(n for n in names if n)
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.bucket = TokenBucket(rate_per_s, burst, clock)
        self.max_inflight_per_source = max_inflight_per_source
        self.inflight: dict[str, int] = {}
        self.refused: dict[int, int] = {}

    @classmethod
    def from_settings(cls, app: ASGIApp, settings: Any, port: int) -> RequestLimits:
        api = settings.api
        return cls(app, bind_host=api.host, port=port, allowed_hosts=list(api.allowed_hosts),
                   max_body_bytes=api.max_body_bytes, rate_per_s=api.rate_limit_per_s,
                   burst=api.rate_limit_burst, body_timeout_s=api.body_timeout_s,
                   max_inflight_per_source=api.max_inflight_per_source)

    async def _refuse(self, send: Send, status: int, text: str,
                      headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        self.refused[status] = self.refused.get(status, 0) + 1
        body = text.encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close"), *headers]})
        await send({"type": "http.response.body", "body": body})

    def _origin_ok(self, origin: str) -> bool:
        scheme, sep, authority = origin.strip().partition("://")
        if not sep or scheme.lower() != "http" or "/" in authority:
            return False
        port = _port_of(authority)
        return _host_name(authority) in self.allowed_hosts and (port or 80) == self.port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        header_bytes = 0
        for key, value in scope.get("headers") or ():
            headers.setdefault(key.lower(), value)
            header_bytes += len(key) + len(value) + 4
        if header_bytes > MAX_HEADER_BYTES:
            await self._refuse(send, 431, f"request headers over {MAX_HEADER_BYTES} bytes")
            return
        host = headers.get(b"host")
        if host is None:
            await self._refuse(send, 400, "missing Host header")
            return
        host_text = host.decode("latin-1")
        if _host_name(host_text) not in self.allowed_hosts:
            await self._refuse(send, 421, f"Host {host_text[:100]!r} is not a name of this "
                                          f"daemon (DNS rebinding protection; add it to "
                                          f"api.allowed_hosts if it is)")
            return
        method = scope.get("method", "GET")
        origin = headers.get(b"origin")
        if method in STATE_CHANGING and origin is not None \
                and not self._origin_ok(origin.decode("latin-1")):
            await self._refuse(send, 403, f"refused: Origin {origin.decode('latin-1')[:100]!r} "
                                          f"is another origin than this daemon: cross-origin "
                                          f"commands are refused")
            return
        client = scope.get("client")
        source = client[0] if client else "unknown"
        wait_s = self.bucket.take(source)
        if wait_s > 0.0:
            await self._refuse(send, 429, "too many requests from this address: slow down",
                               ((b"retry-after", str(max(1, math.ceil(wait_s))).encode()),))
            return
        if self.inflight.get(source, 0) >= self.max_inflight_per_source:
            await self._refuse(send, 429, f"more than {self.max_inflight_per_source} requests "
                                          f"from this address in progress: wait for answers",
                               ((b"retry-after", b"1"),))
            return
        self.inflight[source] = self.inflight.get(source, 0) + 1
        try:
            await self._limited(scope, receive, send, headers, method)
        finally:
            left = self.inflight.get(source, 1) - 1
            if left > 0:
                self.inflight[source] = left
            else:
                self.inflight.pop(source, None)

    async def _limited(self, scope: Scope, receive: Receive, send: Send,
                       headers: dict[bytes, bytes], method: str) -> None:
        """The body limits, then the application."""
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await self._refuse(send, 400, "Content-Length is not a number")
                return
            if declared > self.max_body_bytes:
                await self._refuse(send, 413, f"request body of {declared} bytes is over the "
                                              f"limit of {self.max_body_bytes} bytes")
                return
        elif method not in STATE_CHANGING and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body
            return
        chunks: list[bytes] = []
        size = 0
        deadline = asyncio.get_running_loop().time() + self.body_timeout_s
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), max(remaining, 0.0))
            except TimeoutError:
                await self._refuse(send, 408, f"request body not received within "
                                              f"{self.body_timeout_s:g} s")
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._refuse(send, 413, f"request body over the limit of "
                                              f"{self.max_body_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def guarded_h11_protocol(header_timeout_s: float) -> type:
    """uvicorn's h11 protocol, closing a connection whose request headers take too long.

    uvicorn times out idle keep-alive connections but not a request whose headers
    trickle in (slowloris): this arms a timer when a connection opens and after
    every response, and closes the connection if no complete request head has
    arrived when it fires.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _armed_cycle: object = None

        def _arm(self) -> None:
            self._disarm()
            self._armed_cycle = self.cycle
            self._header_timer = self.loop.call_later(header_timeout_s, self._header_expired)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_expired(self) -> None:
            self._header_timer = None
            if self.cycle is self._armed_cycle and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._header_timer is not None and self.cycle is not self._armed_cycle:
                self._disarm()  # a request head arrived: the app's own limits apply now

        def on_response_complete(self) -> None:
            self._arm()
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedH11Protocol


def uvicorn_options(settings: Any) -> dict[str, Any]:
    """uvicorn.Config keyword arguments bounding connections and header reads."""
    api = settings.api
    return {"http": guarded_h11_protocol(api.header_timeout_s),
            "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
            "timeout_keep_alive": 5,
            "limit_concurrency": api.max_connections,
            "backlog": 128}
