"""The control-room page: static assets at ``/``, a live stream and the day's sky for the chart.

``GET /`` serves ``web/index.html`` (with a Content-Security-Policy that allows only this
origin's own script, style and connections), ``GET /web/{app.js,style.css}`` the assets.  All
assets ship in the package: the page works on an offline control PC.

``GET /api/v1/stream`` is a server-sent-events stream (same read access as ``/status``):

* ``event: status`` - the whole status snapshot (JSON), first thing after connecting;
* ``event: patch`` - the top-level status keys that changed since the previous message
  (discrete keys such as ``state`` or ``faults`` are pushed as soon as the snapshot shows
  them, the moving figures at most ``NUMBERS_HZ`` times a second);
* ``event: event`` - one log event (state change, fault, command), ``id:`` = its id;
* ``: hb`` comments every ``HEARTBEAT_S`` seconds so proxies and the page see a live link.

One hub task per daemon reads the snapshot and the event log and fans out to every open
page, so twenty pages cost one reader, not twenty.  A page that cannot keep up is dropped
(it reconnects and starts again from a full snapshot).

``GET /api/v1/sky`` gives the chart's fixed layer: the Sun's path over one UTC day
(sky azimuth from north through east and geometric elevation, degrees, every
``SKY_STEP_S`` seconds), the envelope, boresights, wind thresholds and on-Sun tolerance.

Commands stay on the existing ``POST /api/v1/...`` endpoints with the bearer token in the
``Authorization`` header (never a cookie, so a foreign site cannot ride on a session);
the HTTP edge (``tracker.service.limits``) refuses any command whose ``Origin`` is another
origin (403).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tracker.service.facility_model import DISCRETE_KEYS

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
#: How often the hub looks at the snapshot (identity check only; cheap).
POLL_HZ = 20.0
#: The moving figures (positions, error, wind, loop timing) are pushed at most this often.
NUMBERS_HZ = 5.0
#: The event log is read this often.
EVENTS_HZ = 5.0
HEARTBEAT_S = 10.0
#: Messages queued for one page before it is considered stuck and dropped.
QUEUE_MAX = 256
#: Events sent to a page when it connects.
INITIAL_EVENTS = 100
SKY_STEP_S = 300.0
#: 1 Hz chart samples kept for pages that connect later (one hour).
HISTORY_N = 3600
#: Status keys pushed as soon as they change (the rest at NUMBERS_HZ).
URGENT_KEYS = DISCRETE_KEYS

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                 "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
                 "Cache-Control": "no-cache"}
_ASSETS = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}


def _asset(name: str) -> bytes:
    return resources.files("tracker.service").joinpath("web", name).read_bytes()


def _sse(event: str | None, data: str, event_id: int | None = None) -> bytes:
    lines = []
    if event:
        lines.append(f"event: {event}")
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines += [f"data: {part}" for part in data.split("\n")]
    return ("\n".join(lines) + "\n\n").encode()


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


class Hub:
    """Reads the backend's snapshot and events once and fans them out to every subscriber."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self._subs: set[asyncio.Queue[bytes | None]] = set()
        self._task: asyncio.Task | None = None
        self._snap: dict = {}          # what every subscriber has, merged
        self._seen: Any = None         # the backend snapshot object last looked at
        self._last_numbers = 0.0
        self._last_events = 0.0
        self._last_event_id = 0
        self.dropped = 0
        #: 1 Hz samples (t_s, error to the Sun arcsec or None, wind m/s or None), last hour
        self.history: deque[tuple[float, float | None, float | None]] = deque(maxlen=HISTORY_N)
        self._last_sample_t = -math.inf

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    async def subscribe(self) -> asyncio.Queue[bytes | None]:
        """A queue primed with the full snapshot and the recent events."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_MAX)
        if not self._subs:
            self._snap = dict(self.backend.status())
            self._seen = None
        queue.put_nowait(b"retry: 1000\n\n")
        queue.put_nowait(_sse("status", _dumps(self._snap)))
        if self.history:
            t_s, err, wind = zip(*self.history, strict=True)
            queue.put_nowait(_sse("history", _dumps(
                {"t_s": t_s, "error_arcsec": err, "wind_m_s": wind})))
        try:
            recent = await self.backend.events(limit=INITIAL_EVENTS, after_id=0)
        except Exception:  # the log may be unreadable; the status still flows
            log.exception("reading events for a new page failed")
            recent = []
        for ev in recent[-(QUEUE_MAX - 8):]:   # pages drop ids they already have
            queue.put_nowait(_sse("event", _dumps(ev), int(ev["id"])))
        if not self._subs and recent:
            self._last_event_id = max(self._last_event_id, max(int(e["id"]) for e in recent))
        self._subs.add(queue)
        self.ensure_running()
        return queue

    def ensure_running(self) -> None:
        """Start the hub task (in the running loop) if it is not running."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="web-hub")

    def unsubscribe(self, queue: asyncio.Queue[bytes | None]) -> None:
        self._subs.discard(queue)

    def _broadcast(self, message: bytes | None) -> None:
        for queue in list(self._subs):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                self._subs.discard(queue)
                self.dropped += 1
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(None)   # ends that stream; the page reconnects

    def _diff(self, snap: dict, keys: Any) -> dict:
        changed = {}
        for key in keys:
            new = snap.get(key)
            if self._snap.get(key, _MISSING) != new:
                changed[key] = new
        return changed

    def _sample(self, snap: dict) -> None:
        t_s = snap.get("time_s")
        if not isinstance(t_s, int | float) or t_s - self._last_sample_t < 1.0:
            return
        self._last_sample_t = t_s
        err = snap.get("pointing_error_arcsec") if snap.get("task") == "sun" else None
        self.history.append((round(t_s, 3), _finite(err), _finite(snap.get("wind_m_s"))))

    def _step_status(self, now: float) -> None:
        snap = self.backend.status()
        self._sample(snap)
        if snap is self._seen:
            return
        numbers_due = now - self._last_numbers >= 1.0 / NUMBERS_HZ
        keys = set(snap) | set(self._snap) if numbers_due else URGENT_KEYS
        changed = self._diff(snap, keys)
        if numbers_due:
            self._last_numbers = now
            self._seen = snap
        elif changed:
            # urgent keys changed: send the figures of the same snapshot along with them
            changed = self._diff(snap, set(snap) | set(self._snap))
            self._last_numbers = now
            self._seen = snap
        if changed:
            self._snap.update(changed)
            self._broadcast(_sse("patch", _dumps(changed)))

    async def _step_events(self) -> None:
        batch = await self.backend.events(limit=200, after_id=self._last_event_id)
        for ev in batch:
            self._last_event_id = max(self._last_event_id, int(ev["id"]))
            self._broadcast(_sse("event", _dumps(ev), int(ev["id"])))

    async def _run(self) -> None:
        """Until the daemon stops: fan out while pages are open, else keep the 1 Hz history."""
        last_beat = time.monotonic()
        while True:
            now = time.monotonic()
            if getattr(self.backend, "stopping", False):
                self._broadcast(None)
                self._subs.clear()
                break
            if not self._subs:
                with contextlib.suppress(Exception):
                    self._sample(self.backend.status())
                await asyncio.sleep(1.0)
                continue
            try:
                self._step_status(now)
                if now - self._last_events >= 1.0 / EVENTS_HZ:
                    self._last_events = now
                    await self._step_events()
            except Exception:
                log.exception("web stream update failed")
            if now - last_beat >= HEARTBEAT_S:
                last_beat = now
                self._broadcast(b": hb\n\n")
            await asyncio.sleep(1.0 / POLL_HZ)


_MISSING = object()


def _finite(x: Any) -> float | None:
    return round(float(x), 3) if isinstance(x, int | float) and math.isfinite(x) else None


async def _stream(hub: Hub, request: Request) -> AsyncIterator[bytes]:
    queue = await hub.subscribe()
    try:
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), HEARTBEAT_S * 2)
            except TimeoutError:
                message = b": hb\n\n"
            if message is None:
                return
            yield message
    finally:
        hub.unsubscribe(queue)


def sun_path(settings: Any, day_start_s: float, step_s: float = SKY_STEP_S) -> dict:
    """The Sun's sky direction over one day from ``day_start_s`` (UTC unix s), geometric."""
    import numpy as np

    from tracker.astro.ephemeris import sun_altaz

    site = settings.site
    t_s = day_start_s + np.arange(0.0, 86400.0 + step_s / 2, step_s)
    az_deg, el_deg = sun_altaz(t_s, site.latitude_deg, site.longitude_deg, site.height_m)
    return {"t_s": [float(t) for t in t_s],
            "az_deg": [round(float(a), 4) for a in az_deg],
            "el_deg": [round(float(e), 4) for e in el_deg]}


def create_router(backend: Any, read_access: Callable[..., Awaitable[None]]) -> APIRouter:
    """The page, its assets, ``/api/v1/stream`` and ``/api/v1/sky``."""
    router = APIRouter()
    hub = Hub(backend)
    page = _asset("index.html")
    assets = {name: _asset(name) for name in _ASSETS}
    sky_cache: dict[float, dict] = {}

    @router.get("/", include_in_schema=False)
    async def index() -> Response:
        hub.ensure_running()   # the chart history starts with the first page load
        return Response(page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    @router.get("/web/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in assets:
            return JSONResponse({"detail": f"no asset {name!r}"}, status_code=404)
        return Response(assets[name], media_type=_ASSETS[name], headers=_PAGE_HEADERS)

    # Not in the OpenAPI document: an endless stream is no operation a schema fuzzer can call
    # (docs/daemon.md describes it).
    @router.get(f"{API_PREFIX}/stream", dependencies=[Depends(read_access)],
                include_in_schema=False)
    async def stream(request: Request) -> StreamingResponse:
        """Live status (full, then changed keys) and new log events, as server-sent events."""
        return StreamingResponse(_stream(hub, request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @router.get(f"{API_PREFIX}/sky", dependencies=[Depends(read_access)])
    async def sky(day_start_s: Annotated[float | None, Query(
            ge=63158400.0, le=7258118400.0,
            description="UTC unix seconds of the day's start (default: today 00:00 UTC)")] = None,
    ) -> dict:
        """The chart's fixed layer: the Sun's path for one day, envelope, boresights, limits."""
        if day_start_s is None:
            day_start_s = math.floor(backend.now_s() / 86400.0) * 86400.0
        s = backend.settings
        path = sky_cache.get(day_start_s)
        if path is None:
            path = await asyncio.to_thread(sun_path, s, day_start_s)
            if len(sky_cache) > 4:
                sky_cache.clear()
            sky_cache[day_start_s] = path
        return {"day_start_s": day_start_s, "step_s": SKY_STEP_S, "sun_path": path,
                "site": s.site.model_dump(), "envelope": s.envelope.model_dump(),
                "positions": s.positions.model_dump(),
                "wind_stow_m_s": s.weather.wind_stow_m_s,
                "wind_resume_m_s": s.weather.wind_resume_m_s,
                "on_sun_tolerance_arcsec": s.tracking.on_sun_tolerance_arcsec,
                "control_rate_hz": s.tracking.control_rate_hz}

    router.hub = hub  # type: ignore[attr-defined]
    return router


def install(app: FastAPI, backend: Any, read_access: Callable[..., Awaitable[None]]) -> None:
    """Serve the page on ``app``.  Cross-origin commands are refused for every route at the
    HTTP edge (``tracker.service.limits``: a state-changing request with a foreign Origin)."""
    app.include_router(create_router(backend, read_access))
