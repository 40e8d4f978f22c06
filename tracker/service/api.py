"""The daemon's HTTP API (FastAPI): status, plan, events and operator commands.

Reads (``GET``) are open to clients on the loopback interface and need the
bearer token from anywhere else; commands (``POST``) always need
``Authorization: Bearer <token>``.  Every command goes to the engine, which
checks it against the envelope and the state machine before anything moves and
records it in the audit log with its source (``api:<client address>``; a relay
holding the token, such as the Tango or OPC UA server, names its own client in the
``X-Tracker-Source`` header: ``tango:<client> via api:<address>``).

Refusals answer ``{"detail": "<why>"}``: 422 for targets outside the envelope
or invalid values, 409 for commands not allowed in the current state, 401 for a
missing or wrong token.  Angles are degrees (azimuth from north through east,
elevation up positive), rates deg/s, times UTC unix seconds.

The handlers are cheap: status is a snapshot the control loop refreshes every
tick, so a busy API never stretches the control period.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, Protocol

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from tracker import __version__ as _version
from tracker.errors import (
    ConfigError,
    EnvelopeError,
    EphemerisRangeError,
    TimeInputError,
    TrackerError,
)
from tracker.loop.commands import MAX_JOG_S
from tracker.service.auth import bearer_matches, client_host, is_loopback

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
#: Plans may be asked for between 1972-01-02 and 2200-01-01 (UTC unix seconds).
PLAN_MIN_S = 63158400.0
PLAN_MAX_S = 7258118400.0

Finite = Annotated[float, Field(allow_inf_nan=False)]

#: Header a relay holding the token (Tango, OPC UA server) sets to name its own client.
SOURCE_HEADER = "X-Tracker-Source"
#: What that header may hold: ``<interface>:<client>``, printable, no spaces, <= 120 characters.
_SOURCE_RE = re.compile(r"[a-z][a-z0-9-]{0,15}:[A-Za-z0-9_.:/@\[\]#-]{1,100}")

#: Declares the bearer scheme in the OpenAPI document; the check is ``require_token``.
_bearer = HTTPBearer(auto_error=False, description="token from the daemon's api.token_file")


class Backend(Protocol):
    """What the API needs from the daemon (``tracker.service.daemon.Daemon`` implements it)."""

    settings: Any
    token: str

    def status(self) -> dict:
        """The latest status snapshot (do not modify it)."""

    def status_json(self) -> bytes:
        """The latest status snapshot, JSON-encoded."""

    def state(self) -> str:
        """The state machine's current state name."""

    def now_s(self) -> float:
        """The daemon clock, UTC unix seconds."""

    async def command(self, name: str, *, source: str, **kwargs: Any) -> None:
        """Run ``engine.<name>(**kwargs, source=source)`` between two control ticks."""

    async def plan(self, start_s: float, end_s: float) -> dict:
        """Tracking windows between two times (UTC unix seconds)."""

    async def events(self, *, limit: int, after_id: int) -> list[dict]:
        """Recent events (state changes, faults, commands), oldest first."""


# ----------------------------------------------------------------------------- request bodies
class _Body(BaseModel):
    # strict: no coercion ("10" is not a number, 0 is not false) in a command that moves a mount.
    model_config = ConfigDict(extra="forbid", strict=True)


class GotoRequest(_Body):
    """Point the boresight at a sky direction (or, with ``axes``, the axes at axis positions)."""

    # Limits are the envelope's, checked by the engine, whose refusal names them.
    az_deg: Annotated[float, Field(allow_inf_nan=False)] = Field(
        description="sky azimuth, degrees from north through east, 0..360 (with axes=true: "
                    "the azimuth axis angle on the cable wrap)")
    el_deg: Annotated[float, Field(allow_inf_nan=False)] = Field(
        description="elevation, degrees, up positive (the envelope's limits apply)")
    boresight: str | None = Field(default=None, description="boresight name (default: the first)")
    axes: bool = Field(default=False, description="az/el are axis positions, not a sky direction")


class JogRequest(_Body):
    """Run one axis at a rate for a duration, then stop."""

    axis: Literal["az", "el"]
    rate_deg_s: Annotated[float, Field(allow_inf_nan=False)] = Field(
        description="axis rate, deg/s, sign = direction (the axis speed limit applies)")
    seconds: Annotated[float, Field(gt=0, le=MAX_JOG_S, allow_inf_nan=False)] = Field(
        description=f"duration, seconds (0 < s <= {MAX_JOG_S:g}, monotonic time)")


class TrackRequest(_Body):
    on: bool = Field(description="true: start automatic Sun tracking; false: stop it")


class CommandResult(BaseModel):
    ok: bool = True
    command: str
    state: str = Field(description="state machine state right after the command")


class Refusal(BaseModel):
    detail: str


class InvalidField(BaseModel):
    loc: list[str | int] = Field(description="where: 'body'/'query' and the field name")
    msg: str
    type: str


class InvalidRequest(BaseModel):
    """A request the schema refuses (wrong type, out of range, missing, not JSON...)."""

    detail: list[InvalidField]


# ----------------------------------------------------------------------------- helpers
def command_source(request: Request) -> str:
    """The audit source of a command: ``api:<address>``, or ``<relay source> via api:<address>``.

    Only called after the token matched.  A malformed ``X-Tracker-Source`` is refused (422),
    so nothing runs under a source that cannot be read back.
    """
    source = f"api:{client_host(request)}"
    relay = request.headers.get(SOURCE_HEADER)
    if relay is None:
        return source
    if not _SOURCE_RE.fullmatch(relay):
        raise HTTPException(422, f"{SOURCE_HEADER} must look like 'interface:client' (lower-case "
                                 f"interface, then letters, digits and _.:/@[]#-, at most 100)")
    return f"{relay} via {source}"


def _unauthorized(backend: Backend) -> HTTPException:
    return HTTPException(
        status_code=401,
        detail="missing or wrong API token: send 'Authorization: Bearer <token>' with the token "
               "from the daemon's token file (api.token_file in its config)",
        headers={"WWW-Authenticate": "Bearer"})


def _refusal_status(exc: TrackerError) -> int:
    """422 for values (envelope, unknown boresight, range); 409 for state and the rest."""
    if isinstance(exc, EnvelopeError | ConfigError | ValueError | EphemerisRangeError):
        return 422
    return 409


_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"model": Refusal, "description": "missing or wrong bearer token"},
    409: {"model": Refusal, "description": "not allowed in the current state"},
    422: {"model": Refusal | InvalidRequest,
          "description": "outside the envelope, or an invalid value"},
}
#: Reads with parameters: 422 for values the schema or the daemon refuses.
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": Refusal | InvalidRequest, "description": "an invalid parameter value"},
}


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` from the installed ``swagger-ui-bundle`` (no CDN: the control
    PC is offline)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="helio-tracker API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")


def create_app(backend: Backend) -> FastAPI:
    """The FastAPI application serving ``backend`` (OpenAPI at ``/openapi.json``)."""
    app = FastAPI(
        title="helio-tracker daemon",
        version=_version,
        description=__doc__,
        docs_url=None,
        redoc_url=None,
        # No 307 to the slash-less path: a client gets the route it asked for or an error.
        redirect_slashes=False,
    )
    _offline_docs(app)
    # For the server (tracker.service.daemon._make_server): request limits, discovery.
    app.state.settings = backend.settings

    # Dependencies are coroutines: FastAPI would run plain functions in a worker thread.
    async def require_token(request: Request,
                      _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
        if not bearer_matches(request.headers.get("authorization"), backend.token):
            host = client_host(request)
            log.warning("refused command %s from %s: missing or wrong token",
                        request.url.path, host)
            audit = getattr(backend, "audit_refused", None)
            if audit is not None:
                audit(request.url.path.rsplit("/", 1)[-1], f"api:{host}",
                      "refused: missing or wrong API token")
            raise _unauthorized(backend)
        return command_source(request)

    async def read_access(request: Request) -> None:
        host = client_host(request)
        if is_loopback(host):
            return
        if not bearer_matches(request.headers.get("authorization"), backend.token):
            raise _unauthorized(backend)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Without the offending input: it may be NaN/inf, which JSON cannot carry.
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "invalid")),
                   "type": str(e.get("type", ""))} for e in exc.errors()]
        # A malformed command from a client holding the token is a refused command: audit it
        # (at most once per source per 10 s, like wrong tokens, so a flood cannot fill the log).
        audit = getattr(backend, "audit_refused", None)
        if (audit is not None and request.method == "POST"
                and request.url.path.startswith(f"{API_PREFIX}/")
                and bearer_matches(request.headers.get("authorization"), backend.token)):
            why = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: "
                            f"{e['msg']}" for e in errors)
            audit(request.url.path.rsplit("/", 1)[-1], f"api:{client_host(request)}",
                  f"invalid request: {why}"[:500])
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers a body it cannot decode (not UTF-8, ...) with a bare 400 "There was
        # an error parsing the body": make it a 422 that says what is wrong, like bad JSON.
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            return await _invalid(request, RequestValidationError([{
                "loc": ("body",), "type": "json_invalid",
                "msg": "the request body is not JSON text in UTF-8"}]))
        return await http_exception_handler(request, exc)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error in the daemon: {type(exc).__name__}: "
                                       f"{exc} (see the daemon's log)"}, status_code=500)

    @app.exception_handler(TrackerError)
    async def _tracker_error(request: Request, exc: TrackerError) -> JSONResponse:
        status = _refusal_status(exc)
        log.info("refused %s from %s: %s", request.url.path, client_host(request), exc)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    # ------------------------------------------------------------------ reads
    @app.get(f"{API_PREFIX}/status", dependencies=[Depends(read_access)],
             responses={200: {"description": "status snapshot, refreshed every control tick",
                              "content": {"application/json": {}}}})
    async def status() -> Response:
        """State, Sun position and rates, axes, pointing error, windows, faults, data ages, loop timing."""
        return Response(content=backend.status_json(), media_type="application/json")

    @app.get(f"{API_PREFIX}/plan", dependencies=[Depends(read_access)], responses=_INVALID)
    async def plan(
        start_s: Annotated[float | None, Query(ge=PLAN_MIN_S, le=PLAN_MAX_S, description="UTC unix seconds (default: start of today, UTC)")] = None,
        end_s: Annotated[float | None, Query(ge=PLAN_MIN_S, le=PLAN_MAX_S, description="UTC unix seconds (default: start + 1 day)")] = None,
    ) -> dict:
        """Tracking windows (today's, by default)."""
        now_s = backend.now_s()
        if start_s is None:
            start_s = math.floor(now_s / 86400.0) * 86400.0
        if end_s is None:
            end_s = start_s + 86400.0
        if not (math.isfinite(start_s) and math.isfinite(end_s)) or end_s <= start_s:
            raise HTTPException(422, "end_s must be after start_s (UTC unix seconds)")
        if end_s - start_s > 31 * 86400.0:
            raise HTTPException(422, "a plan spans at most 31 days")
        try:
            return await backend.plan(start_s, end_s)
        except (EphemerisRangeError, TimeInputError, ValueError) as exc:
            raise HTTPException(422, f"cannot plan {start_s}..{end_s}: {exc}") from None

    @app.get(f"{API_PREFIX}/events", dependencies=[Depends(read_access)], responses=_INVALID)
    async def events(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after_id: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    ) -> list[dict]:
        """Recent events (state changes, faults, commands with source and result), oldest first."""
        return await backend.events(limit=limit, after_id=after_id)

    @app.get(f"{API_PREFIX}/info", dependencies=[Depends(read_access)])
    async def info() -> dict:
        """The installation: site, envelope, boresights, speed limits, positions."""
        s = backend.settings
        return {
            "version": _version,
            "site": s.site.model_dump(),
            "envelope": s.envelope.model_dump(),
            "axes": s.axes.model_dump(),
            "positions": s.positions.model_dump(),
            "drives": s.drives.kind,
            "control_rate_hz": s.tracking.control_rate_hz,
            "alpaca_enabled": s.api.alpaca_enabled,
        }

    # ------------------------------------------------------------------ commands
    async def _run(name: str, source: str, **kwargs: Any) -> CommandResult:
        await backend.command(name, source=source, **kwargs)
        return CommandResult(command=name, state=backend.state())

    def _post(path: str, summary: str) -> Callable[[Callable[..., Awaitable[CommandResult]]], Any]:
        return app.post(f"{API_PREFIX}/{path}", response_model=CommandResult,
                        responses=_REFUSALS, summary=summary)

    @_post("goto", "Slew to a sky direction (or axis positions)")
    async def goto(body: GotoRequest, source: str = Depends(require_token)) -> CommandResult:
        return await _run("goto", source, az_deg=body.az_deg, el_deg=body.el_deg,
                          boresight=body.boresight, axes=body.axes)

    @_post("jog", "Run one axis at a rate for a duration")
    async def jog(body: JogRequest, source: str = Depends(require_token)) -> CommandResult:
        return await _run("jog", source, axis=body.axis, rate_deg_s=body.rate_deg_s,
                          seconds=body.seconds)

    @_post("track", "Start or stop automatic Sun tracking")
    async def track(body: TrackRequest, source: str = Depends(require_token)) -> CommandResult:
        return await _run("set_auto_tracking", source, on=body.on)

    def _simple(name: str, summary: str) -> None:
        async def handler(source: str = Depends(require_token)) -> CommandResult:
            return await _run(name, source)
        handler.__name__ = name
        handler.__doc__ = summary
        _post(name, summary)(handler)

    _simple("stop", "Stop both axes (controlled ramp) and hold")
    _simple("park", "Move to the park position")
    _simple("unpark", "Leave the park position (hold, ready for commands)")
    _simple("stow", "Move to the stow (survival) position")
    _simple("reset", "Acknowledge faults and reset the drives (axes stay stopped)")

    # The control-room page (``/``), its live stream and sky layer: tracker/service/web.py.
    from tracker.service import web

    web.install(app, backend, read_access)

    if backend.settings.api.alpaca_enabled:
        from tracker.service.alpaca import create_router

        app.include_router(create_router(backend))
    return app
