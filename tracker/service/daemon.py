"""The control daemon: the control loop on its own thread, the HTTP API on the main one.

``run_daemon`` wires the clock, the axis drives (for ``drives.kind = "sim"`` the
simulated mount runs on the control thread, stepped in real time), the tracking log,
the engine and the API server (uvicorn, on the main thread's event loop).  No request
runs on the control thread: a client can make the API slow, never the loop.  The control
loop ticks the engine at ``tracking.control_rate_hz`` on absolute deadlines
(``deadline_k = start + k * period``, so errors never accumulate) and measures
its own period; a tick that ends after the next deadline counts as an overrun
and the missed deadlines are skipped, not replayed.  After every tick it takes
the status snapshot the API serves, so API requests never touch the drives.

Commands from the API are validated into typed commands, then handed to the control loop
and run between two ticks (one lock), so a tick never sees a half-applied command; the
snapshot is replaced whole after every tick and read without locks.  SIGTERM/SIGINT: stop the API, stop the drives with a
controlled ramp (``engine.shutdown()``), flush and close the log, exit 0.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import gc
import ipaddress
import json
import logging
import math
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Mapping
from pathlib import Path
from typing import Any

from tracker.clock import SystemClock
from tracker.errors import ConfigError, StateError
from tracker.loop.commands import Goto, Jog, Park, Reset, Stop, Stow, Track, Unpark
from tracker.service.auth import ensure_token, token_path

#: API command names -> typed commands (``tracker.loop.commands``).
COMMANDS: dict[str, Callable[..., Any]] = {
    "goto": Goto, "jog": Jog, "stop": Stop, "park": Park, "unpark": Unpark, "stow": Stow,
    "reset": Reset, "set_auto_tracking": Track, "track": Track}

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
        self._stop_requested = threading.Event()
        self._refusal_logged: dict[str, float] = {}
        self._plan_lock = asyncio.Lock()
        self._plans: dict[tuple[float, float], tuple[float, dict]] = {}
        self.started_monotonic = time.monotonic()
        #: The event loop the engine ticks on (its own thread in ``serve``), or None when the
        #: caller drives the engine on its own loop.
        self._control_loop: asyncio.AbstractEventLoop | None = None

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

    async def _on_control(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``fn()`` on the control loop (between two ticks) and await its result here.

        When the control loop runs on its own thread (the daemon) this hops threads; when it
        is this loop (tests driving an engine directly) it runs here under the tick lock.
        """
        control = self._control_loop
        if control is None or control is asyncio.get_running_loop():
            async with self.lock:
                return await fn()

        async def guarded() -> Any:
            async with self.lock:
                return await fn()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(guarded(), control))

    async def command(self, name: str, *, source: str, **kwargs: Any) -> None:
        """Build the typed command ``name`` and execute it on the engine (see
        ``tracker.loop.commands``); refusals raise with the engine's reason."""
        maker = COMMANDS.get(name)
        if maker is None:
            raise StateError(f"unknown command {name!r}")
        cmd = maker(**kwargs)
        if self.stopping:
            raise StateError("the daemon is shutting down: command not accepted")

        async def run() -> None:
            if self.stopping:
                raise StateError("the daemon is shutting down: command not accepted")
            await self.engine.execute(cmd, source=source)
            self._refresh_snapshot()
        await self._on_control(run)

    def audit_refused(self, command: str, source: str, reason: str) -> None:
        """Record a command refused before the engine (bad token), at most once per source per 10 s."""
        now = time.monotonic()
        if now - self._refusal_logged.get(source, -math.inf) < AUTH_AUDIT_INTERVAL_S:
            return
        self._refusal_logged[source] = now
        store = getattr(self.engine, "store", None)
        if store is not None:
            t = self.clock.now_s()
            write = functools.partial(store.audit, t, source, command, {}, False, reason)
            control = self._control_loop
            if control is None or control.is_closed():
                write()
            else:   # the store belongs to the control thread
                control.call_soon_threadsafe(write)

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
        async def read() -> list[dict]:
            return self.engine.events(limit=limit, after_id=after_id)
        return await self._on_control(read)

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
        """Ask the control loop to end after its current tick (from any thread)."""
        self._stop_requested.set()
        control = self._control_loop
        if control is not None and not control.is_closed():
            try:
                if control is asyncio.get_running_loop():
                    self._stop.set()
                    return
            except RuntimeError:
                pass
            with contextlib.suppress(RuntimeError):
                control.call_soon_threadsafe(self._stop.set)
                return
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop_requested.is_set()


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
    """uvicorn serving ``app`` on ``sock``.

    For the daemon's app (``create_app`` leaves the settings in ``app.state.settings``)
    the whole app sits behind ``tracker.service.limits.RequestLimits`` (header size, Host,
    Origin, rate, body size and time), uvicorn runs with the header timeout and connection
    limits of ``limits.uvicorn_options``, and the Alpaca discovery responder
    (``tracker.service.discovery``, opt-in) runs while the server does.
    """
    import uvicorn

    from tracker.service.discovery import start_discovery
    from tracker.service.limits import RequestLimits, uvicorn_options

    state = getattr(app, "state", None)
    settings = getattr(state, "settings", None) if state is not None else None
    port = sock.getsockname()[1]
    options: dict[str, Any] = {}
    if settings is not None:
        app = RequestLimits.from_settings(app, settings, port)
        options = uvicorn_options(settings)

    class _EmbeddedServer(uvicorn.Server):
        """uvicorn without its own signal handling: the daemon owns SIGTERM/SIGINT."""

        discovery: Any = None

        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if settings is not None:
                self.discovery = await start_discovery(settings, port)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            if self.discovery is not None:
                self.discovery[0].close()
                self.discovery = None
            await super().shutdown(sockets=sockets)

    # proxy_headers off: the client address (audit source, loopback check) is the peer's.
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=2, server_header=False,
                            proxy_headers=False, **options)
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


def _run_control_thread(daemon: Daemon, mount: Any, started: concurrent.futures.Future,
                        finished: concurrent.futures.Future) -> None:
    """The control thread: its own event loop with the engine, the drives, the log and (for
    ``drives.kind = "sim"``) the simulated mount.  Nothing a client sends runs here except
    the validated commands handed over by ``Daemon.command``."""
    engine = daemon.engine

    async def main() -> bool:
        daemon._stop = asyncio.Event()
        daemon._control_loop = asyncio.get_running_loop()
        if daemon._stop_requested.is_set():
            daemon._stop.set()
        sim: asyncio.Task | None = None
        if mount is not None:
            from simulator.mount import run_realtime
            sim = asyncio.create_task(run_realtime(mount), name="sim-mount")
        wind_poll: asyncio.Task | None = None
        if engine.wind is not None and not engine.samples_wind_each_tick:
            wind_poll = asyncio.create_task(engine.wind.poll_forever(period_s=0.2),
                                            name="wind-poll")
        ok = True
        # Move the start-up objects (astropy, numpy, tables) out of the collector's way
        # before the drives are enabled (a full collection holds the interpreter lock for a
        # while): later collections then scan only what the running daemon allocates.
        gc.collect()
        gc.freeze()
        try:
            try:
                await engine.start()
                daemon._refresh_snapshot()
            except BaseException as exc:
                started.set_exception(exc)
                raise
            started.set_result(None)
            await daemon.control_loop()
        finally:
            if started.done() and started.exception() is None:
                try:
                    async with daemon.lock:
                        await asyncio.wait_for(engine.shutdown(), SHUTDOWN_TIMEOUT_S)
                except Exception:
                    log.exception("engine shutdown failed")
                    ok = False
            for task in (sim, wind_poll):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
        return ok

    try:
        finished.set_result(asyncio.run(main()))
    except BaseException as exc:  # noqa: BLE001 - reported to the main thread
        if not started.done():
            started.set_exception(exc)
        finished.set_exception(exc)


async def serve(settings: Any, *, api_port: int | None = None, db_path: str | None = None,
                time_offset_s: float = 0.0, ready: Any = None, clock: Any = None,
                build_axes: Callable[[Any, Any], tuple[Mapping[str, Any], Any]] = _build_axes,
                on_daemon: Callable[[Daemon], None] | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT; return the exit status (0 after a clean stop).

    The engine ticks on its own thread and event loop (``_run_control_thread``); this loop
    serves the HTTP API.  ``ready``: optional callable receiving the API base URL once the
    API listens.  The parts a test or an embedding program replaces are parameters:
    ``clock`` (default: the system clock shifted by ``time_offset_s``), ``build_axes``
    (settings, clock -> (axes, in-process mount or None)), ``on_daemon`` (receives the
    ``Daemon`` before the control loop starts).
    """
    from tracker.log.store import TrackingStore
    from tracker.loop.engine import Engine
    from tracker.service.api import create_app
    from tracker.service.compose import make_truth, make_wind

    refusal = time_offset_refusal(settings, time_offset_s)
    if refusal:
        raise ConfigError(refusal, key="--time-offset-s", value=time_offset_s)
    token = ensure_token(token_path(settings))
    host = settings.api.host
    port = settings.api.port if api_port is None else api_port
    sock = _bind(host, port)
    clock = clock if clock is not None else SystemClock(time_offset_s)
    if time_offset_s:
        log.warning("daemon clock shifted by %+.1f s from the system clock (simulated drives)",
                    time_offset_s)
    store_path = Path(db_path if db_path is not None else settings.store.path).expanduser()
    try:
        store = TrackingStore(store_path, clock=clock, on_corrupt=settings.store.on_corrupt,
                              spill_dir=settings.store.spill_dir or None)
        axes, mount = build_axes(settings, clock)
    except BaseException:
        sock.close()
        raise
    try:
        wind = make_wind(settings, clock=clock, mount=mount)
    except BaseException:
        sock.close()
        raise
    # An in-process anemometer is read every tick; one on a wire is polled by its own task
    # on the control loop (a dead sensor's timeouts never stall a tick).
    inline = settings.weather.source == "sim"
    engine = Engine(settings, axes, store, clock, wind=wind, sample_wind_each_tick=inline,
                    true_direction=make_truth(settings, mount))
    daemon = Daemon(settings, engine, clock, token=token)
    if on_daemon is not None:
        on_daemon(daemon)
    loop = asyncio.get_running_loop()
    started: concurrent.futures.Future = concurrent.futures.Future()
    finished: concurrent.futures.Future = concurrent.futures.Future()
    thread = threading.Thread(target=_run_control_thread, args=(daemon, mount, started, finished),
                              name="control-loop", daemon=True)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.stop)
    failed = False
    api: asyncio.Task | None = None
    # The app and uvicorn's protocol modules are imported before the loop ticks.
    server = _make_server(create_app(daemon), sock)
    thread.start()
    try:
        await asyncio.wrap_future(started)
        api = asyncio.create_task(server.serve(sockets=[sock]), name="api")
        url = f"http://{host if ':' not in host else f'[{host}]'}:{sock.getsockname()[1]}"
        log.info("daemon running: API on %s, state %s, drives %s, log %s", url, engine.state,
                 settings.drives.kind, store_path)
        if ready is not None:
            ready(url)
        control_done = asyncio.wrap_future(finished)
        done, _ = await asyncio.wait({control_done, api}, return_when=asyncio.FIRST_COMPLETED)
        if api in done and api.exception() is not None:
            log.error("api ended: %r", api.exception())
            failed = True
        # Commands are refused from here on; the control loop ends after its current tick and
        # stops the drives with a controlled ramp, then flushes and closes the log.
        daemon.stop()
        log.info("stopping: controlled stop of the drives, flushing the log")
        try:
            failed |= not await control_done
        except Exception as exc:
            log.error("control loop ended: %r", exc)
            failed = True
        unwritten = getattr(store, "unwritten", (0, 0))
        if any(unwritten):
            where = getattr(store, "spill_path", None)
            log.error("the log could not be written: %d samples and %d events %s", *unwritten,
                      f"are kept in the spill file {where}" if where
                      else "are LOST (no space for a spill file)")
            failed = True
        server.should_exit = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(api, return_exceptions=True), 5.0)
    finally:
        daemon.stop()
        await asyncio.to_thread(thread.join, SHUTDOWN_TIMEOUT_S + 5.0)
        if api is not None and not api.done():
            api.cancel()
            await asyncio.gather(api, return_exceptions=True)
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
