"""The control daemon: one asyncio loop running the control loop and the HTTP API.

``run_daemon`` wires the clock, the axis drives (for ``drives.kind = "sim"`` the
simulated mount runs in this process, stepped in real time), the tracking log,
the engine and the API server (uvicorn, serving in the same loop).  The control
loop ticks the engine at ``tracking.control_rate_hz`` on absolute deadlines
(``deadline_k = start + k * period``, so errors never accumulate) and measures
its own period; a tick that ends after the next deadline counts as an overrun
and the missed deadlines are skipped, not replayed.  After every tick it takes
the status snapshot the API serves, so API requests never touch the drives.

Commands from the API run between two ticks (one lock), so a tick never sees a
half-applied command.  SIGTERM/SIGINT: stop the API, stop the drives with a
controlled ramp (``engine.shutdown()``), flush and close the log, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import json
import logging
import math
import signal
import socket
import time
from collections import deque
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

from tracker.service.auth import ensure_token, token_path
from tracker.clock import SystemClock
from tracker.errors import ConfigError, StateError

log = logging.getLogger(__name__)

#: Periods kept for the jitter statistics (one minute at 10 Hz).
PERIOD_WINDOW = 600
#: Commands refused for a missing/wrong token are audited at most this often per source (s).
AUTH_AUDIT_INTERVAL_S = 10.0
#: Computed plans are reused for this long (seconds).
PLAN_CACHE_S = 600.0
#: How long shutdown waits for the engine's controlled stop (seconds).
SHUTDOWN_TIMEOUT_S = 30.0


def time_offset_refusal(settings: Any, time_offset_s: float) -> str | None:
    """Why ``--time-offset-s`` is refused for these settings, or None when it is allowed.

    A shifted clock is allowed only with simulated drives: the in-process simulator
    (``drives.kind = "sim"``) or a simulator process on this machine reached over
    Modbus TCP or OPC UA on a loopback address (``tracker simulate``, started with the
    same offset).
    Real drives must never be run on a clock that is not the real time.
    """
    if time_offset_s == 0.0:
        return None
    if not math.isfinite(time_offset_s):
        return f"--time-offset-s must be a finite number of seconds, not {time_offset_s}"
    drives = settings.drives
    if drives.kind == "sim":
        return None
    if drives.kind == "modbus" and drives.modbus.transport == "tcp":
        try:
            if ipaddress.ip_address(drives.modbus.host).is_loopback:
                return None
        except ValueError:
            if drives.modbus.host == "localhost":
                return None
    if drives.kind == "opcua":
        from urllib.parse import urlparse

        host = urlparse(drives.opcua.endpoint_url).hostname or ""
        try:
            if ipaddress.ip_address(host).is_loopback:
                return None
        except ValueError:
            if host == "localhost":
                return None
    return (f"--time-offset-s is refused with drives.kind = {drives.kind!r}: a shifted clock is "
            f"allowed only with simulated drives (drives.kind = \"sim\", or a `tracker simulate` "
            f"process on a loopback Modbus TCP or OPC UA address)")


class LoopStats:
    """Control-loop period statistics over the last ``PERIOD_WINDOW`` ticks (milliseconds)."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self.periods_ms: deque[float] = deque(maxlen=PERIOD_WINDOW)
        self.tick_ms: deque[float] = deque(maxlen=PERIOD_WINDOW)
        self.overruns = 0
        self.ticks = 0
        self.errors = 0
        self._last_start: float | None = None

    def started(self, t_monotonic: float) -> None:
        if self._last_start is not None:
            self.periods_ms.append((t_monotonic - self._last_start) * 1000.0)
        self._last_start = t_monotonic
        self.ticks += 1

    def finished(self, duration_s: float) -> None:
        self.tick_ms.append(duration_s * 1000.0)

    def restart(self) -> None:
        """Forget the last start (after a skipped deadline the next period is not a sample)."""
        self._last_start = None

    @staticmethod
    def _pct(values: list[float], q: float) -> float | None:
        if not values:
            return None
        idx = min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))
        return round(values[idx], 3)

    def to_json(self) -> dict:
        periods = sorted(self.periods_ms)
        ticks = sorted(self.tick_ms)
        jitter = sorted(abs(p - self.period_s * 1000.0) for p in self.periods_ms)
        return {
            "rate_hz": round(1.0 / self.period_s, 3),
            "period_p50_ms": self._pct(periods, 0.50),
            "period_p99_ms": self._pct(periods, 0.99),
            "period_max_ms": round(periods[-1], 3) if periods else None,
            "jitter_p99_ms": self._pct(jitter, 0.99),
            "tick_p50_ms": self._pct(ticks, 0.50),
            "tick_p99_ms": self._pct(ticks, 0.99),
            "overruns": self.overruns,
            "ticks": self.ticks,
            "errors": self.errors,
        }


class Daemon:
    """The running service: engine + control loop + status snapshot (the API's backend)."""

    def __init__(self, settings: Any, engine: Any, clock: Any, *, token: str) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.token = token
        self.stats = LoopStats(settings.control_period_s)
        self.lock = asyncio.Lock()
        self._snapshot: dict = {}
        self._snapshot_json: bytes | None = None
        self._stop = asyncio.Event()
        self._refusal_logged: dict[str, float] = {}
        self._plan_lock = asyncio.Lock()
        self._plans: dict[tuple[float, float], tuple[float, dict]] = {}
        self.started_monotonic = time.monotonic()

    # ------------------------------------------------------------------ backend for the API
    def status(self) -> dict:
        return self._snapshot

    def status_json(self) -> bytes:
        data = self._snapshot_json
        if data is None:
            data = json.dumps(self._snapshot, default=str).encode()
            self._snapshot_json = data
        return data

    def state(self) -> str:
        return str(self.engine.state)

    def now_s(self) -> float:
        return self.clock.now_s()

    async def command(self, name: str, *, source: str, **kwargs: Any) -> None:
        method = getattr(self.engine, name)
        if self.stopping:
            raise StateError("the daemon is shutting down: command not accepted")
        async with self.lock:
            if self.stopping:
                raise StateError("the daemon is shutting down: command not accepted")
            await method(**kwargs, source=source)
        self._refresh_snapshot()

    def audit_refused(self, command: str, source: str, reason: str) -> None:
        """Record a command refused before the engine (bad token), at most once per source per 10 s."""
        now = time.monotonic()
        if now - self._refusal_logged.get(source, -math.inf) < AUTH_AUDIT_INTERVAL_S:
            return
        self._refusal_logged[source] = now
        store = getattr(self.engine, "store", None)
        if store is not None:
            store.audit(self.clock.now_s(), source, command, {}, False, reason)

    async def plan(self, start_s: float, end_s: float) -> dict:
        """Plans are computed in a worker thread, one at a time, and cached for PLAN_CACHE_S."""
        key = (round(start_s, 3), round(end_s, 3))
        now = time.monotonic()
        async with self._plan_lock:
            hit = self._plans.get(key)
            if hit is not None and now - hit[0] < PLAN_CACHE_S:
                return hit[1]
            # Planning runs the ephemeris: off the loop, so the control period is kept.
            result = await asyncio.to_thread(self.engine.plan, start_s, end_s)
            if len(self._plans) >= 8:
                self._plans.pop(next(iter(self._plans)))
            self._plans[key] = (time.monotonic(), result)
            return result

    async def events(self, *, limit: int, after_id: int) -> list[dict]:
        return self.engine.events(limit=limit, after_id=after_id)

    # ------------------------------------------------------------------ control loop
    def _refresh_snapshot(self) -> None:
        try:
            snap = dict(self.engine.status())
        except Exception:  # keep serving the last good snapshot
            log.exception("engine.status() failed")
            return
        snap.setdefault("time_s", round(self.clock.now_s(), 3))
        snap["loop"] = self.stats.to_json()
        snap["uptime_s"] = round(time.monotonic() - self.started_monotonic, 3)
        self._snapshot = snap
        self._snapshot_json = None

    async def control_loop(self) -> None:
        """Tick the engine on absolute deadlines until ``stop()``."""
        loop = asyncio.get_running_loop()
        period_s = self.settings.control_period_s
        next_deadline = loop.time()
        last_error_log = last_overrun_log = -math.inf
        while not self._stop.is_set():
            now = loop.time()
            if now < next_deadline:
                try:
                    await asyncio.wait_for(self._stop.wait(), next_deadline - now)
                    break
                except TimeoutError:
                    pass
            start = loop.time()
            self.stats.started(start)
            try:
                async with self.lock:
                    await self.engine.tick()
            except Exception:
                self.stats.errors += 1
                if start - last_error_log > 10.0:  # at most one traceback per 10 s
                    log.exception("control tick failed (%d so far)", self.stats.errors)
                    last_error_log = start
            end = loop.time()
            self.stats.finished(end - start)
            self._refresh_snapshot()
            next_deadline += period_s
            if end > next_deadline:
                # Overrun: skip the missed deadlines, keep the grid.
                missed = math.floor((end - next_deadline) / period_s) + 1
                self.stats.overruns += 1
                next_deadline += missed * period_s
                self.stats.restart()
                if start - last_overrun_log > 10.0:  # at most one line per 10 s
                    log.warning("control loop overrun: tick took %.1f ms, started %.1f ms late "
                                "(%d overruns so far)", (end - start) * 1e3,
                                (start - (next_deadline - (missed + 1) * period_s)) * 1e3,
                                self.stats.overruns)
                    last_overrun_log = start

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP: asyncio then sets TCP_NODELAY on accepted connections (with proto 0
    # it does not, and Nagle + delayed ACKs add 40 ms to every keep-alive response).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror} (is another daemon "
                          f"running? choose another port with --api-port)",
                          key="api.port", value=port) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _make_server(app: Any, sock: socket.socket) -> Any:
    import uvicorn

    class _EmbeddedServer(uvicorn.Server):
        """uvicorn without its own signal handling: the daemon owns SIGTERM/SIGINT."""

        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

    # proxy_headers off: the client address (audit source, loopback check) is the peer's.
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=2, server_header=False,
                            proxy_headers=False)
    config.load()  # import the protocol modules now, not in the running control loop
    return _EmbeddedServer(config)


def _build_axes(settings: Any, clock: Any) -> tuple[Mapping[str, Any], Any]:
    """The axes and, for ``drives.kind = "sim"``, the in-process simulated mount."""
    mount = None
    if settings.drives.kind == "sim":
        from simulator.mount import SimMount

        mount = SimMount(settings)
    from tracker.service.compose import make_axes

    return make_axes(settings, clock=clock, mount=mount), mount


async def serve(settings: Any, *, api_port: int | None = None, db_path: str | None = None,
                time_offset_s: float = 0.0, ready: Any = None) -> int:
    """Run the daemon until SIGTERM/SIGINT; return the exit status (0 after a clean stop).

    ``ready``: optional callable receiving the API base URL once the API listens.
    """
    from tracker.service.api import create_app
    from tracker.loop.engine import Engine
    from tracker.log.store import TrackingStore

    refusal = time_offset_refusal(settings, time_offset_s)
    if refusal:
        raise ConfigError(refusal, key="--time-offset-s", value=time_offset_s)
    token = ensure_token(token_path(settings))
    host = settings.api.host
    port = settings.api.port if api_port is None else api_port
    sock = _bind(host, port)
    clock = SystemClock(time_offset_s)
    if time_offset_s:
        log.warning("daemon clock shifted by %+.1f s from the system clock (simulated drives)",
                    time_offset_s)
    store_path = Path(db_path if db_path is not None else settings.store.path).expanduser()
    store = TrackingStore(store_path, clock=clock)
    axes, mount = _build_axes(settings, clock)
    extra = {"wind_m_s": lambda: mount.wind_m_s} if mount is not None else {}
    engine = Engine(settings, axes, store, clock, **extra)
    daemon = Daemon(settings, engine, clock, token=token)
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task] = []
    if mount is not None:
        from simulator.mount import run_realtime

        tasks.append(asyncio.create_task(run_realtime(mount), name="sim-mount"))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.stop)
    server = _make_server(create_app(daemon), sock)
    running: list[asyncio.Task] = []
    drives_stopped = False
    failed = False

    async def stop_drives() -> bool:
        """The engine's controlled stop, between ticks and commands; True if it went well."""
        try:
            async with daemon.lock:
                await asyncio.wait_for(engine.shutdown(), SHUTDOWN_TIMEOUT_S)
        except Exception:
            log.exception("engine shutdown failed")
            return False
        return True

    try:
        await engine.start()
        daemon._refresh_snapshot()
        # Move the start-up objects (astropy, numpy, tables) out of the collector's way:
        # later full collections then scan only what the running daemon allocates.
        gc.collect()
        gc.freeze()
        api = asyncio.create_task(server.serve(sockets=[sock]), name="api")
        control = asyncio.create_task(daemon.control_loop(), name="control-loop")
        running += [api, control]
        url = f"http://{host if ':' not in host else f'[{host}]'}:{sock.getsockname()[1]}"
        log.info("daemon running: API on %s, state %s, drives %s, log %s", url, engine.state,
                 settings.drives.kind, store_path)
        if ready is not None:
            ready(url)
        stop_wait = asyncio.create_task(daemon._stop.wait())
        done, _ = await asyncio.wait({control, api, stop_wait},
                                     return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        for task in (control, api):
            if task in done and task.exception() is not None:
                log.error("%s ended: %r", task.get_name(), task.exception())
                failed = True
        # Commands are refused from here on; the loop ends after its current tick.
        daemon.stop()
        server.should_exit = True
        await asyncio.gather(control, return_exceptions=True)
        log.info("stopping: controlled stop of the drives, flushing the log")
        failed |= not await stop_drives()
        drives_stopped = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(api, return_exceptions=True), 5.0)
    finally:
        daemon.stop()
        if not drives_stopped:
            failed |= not await stop_drives()
        for task in running + tasks:
            task.cancel()
        await asyncio.gather(*running, *tasks, return_exceptions=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        sock.close()
    log.info("daemon stopped")
    return 1 if failed else 0


def run_daemon(settings: Any, *, api_port: int | None = None, db_path: str | None = None,
               time_offset_s: float = 0.0, ready: Any = None) -> int:
    """Blocking entry point of ``tracker daemon``; returns the process exit status."""
    return asyncio.run(serve(settings, api_port=api_port, db_path=db_path,
                             time_offset_s=time_offset_s, ready=ready))
