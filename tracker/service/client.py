"""HTTP client of the daemon's API (used by the operator CLI).

Every failure is an ``ApiError`` whose message says what to do; ``status`` is the
HTTP status of a refusal (401 token, 409 state, 422 envelope/value) or None when
the daemon could not be reached.  Angles in degrees, rates deg/s, times UTC
unix seconds.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tracker.errors import ApiError
from tracker.service.auth import read_token, token_path

API_PREFIX = "/api/v1"
#: A relay's own client, recorded in the audit log (see tracker.service.api.SOURCE_HEADER).
SOURCE_HEADER = "X-Tracker-Source"


class DaemonUnreachable(ApiError):
    """No answer from the daemon (not running, wrong address, timeout)."""


def default_url(settings: Any) -> str:
    """The API URL of the daemon configured by ``settings`` (``api.host``/``api.port``)."""
    host = settings.api.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.api.port}"


class Client:
    """A synchronous client; ``token`` is needed for commands only."""

    def __init__(self, url: str, *, token: str | None = None, token_file: Path | None = None,
                 timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._token_file = token_file
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s, trust_env=False)

    @classmethod
    def from_settings(cls, settings: Any, *, url: str | None = None,
                      timeout_s: float = 5.0) -> Client:
        return cls(url or default_url(settings), token_file=token_path(settings),
                   timeout_s=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport
    def _token_value(self) -> str:
        if self._token is None:
            if self._token_file is None:
                raise ApiError("no API token: give the daemon's config (--config) so the token "
                               "file can be read")
            self._token = read_token(self._token_file)
        return self._token

    def _request(self, method: str, path: str, *, command: bool = False,
                 json: Any = None, params: dict | None = None, source: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self._token_value()}"} if command else {}
        if source is not None:
            headers[SOURCE_HEADER] = source
        try:
            resp = self._http.request(method, f"{API_PREFIX}/{path}", json=json, params=params,
                                      headers=headers)
        except httpx.ConnectError:
            raise DaemonUnreachable(f"cannot reach the tracker daemon at {self.url}: connection refused. "
                           f"Is `tracker daemon` running, with this config or --url?") from None
        except httpx.TimeoutException:
            raise DaemonUnreachable(f"the tracker daemon at {self.url} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise DaemonUnreachable(f"cannot talk to the tracker daemon at {self.url}: {exc}") from None
        if resp.status_code >= 400:
            raise ApiError(_refusal_message(resp), status=resp.status_code)
        try:
            return resp.json()
        except ValueError:
            raise ApiError(f"the daemon at {self.url} sent a response that is not JSON "
                           f"(is that URL really the tracker daemon?)") from None

    # ------------------------------------------------------------------ reads
    def status(self) -> dict:
        return self._request("GET", "status")

    def info(self) -> dict:
        return self._request("GET", "info")

    def plan(self, start_s: float | None = None, end_s: float | None = None) -> dict:
        params = {k: v for k, v in (("start_s", start_s), ("end_s", end_s)) if v is not None}
        return self._request("GET", "plan", params=params)

    def events(self, *, limit: int = 100, after_id: int = 0) -> list[dict]:
        return self._request("GET", "events", params={"limit": limit, "after_id": after_id})

    def watch(self, on_patch: Callable[[dict], None], stop: threading.Event) -> None:
        """Follow the server-sent-events stream ``GET /api/v1/stream`` and call ``on_patch``
        with every status patch (the top-level status keys that changed, discrete ones such
        as ``state`` within a tick of the engine's change); returns when ``stop`` is set
        (checked at least at every heartbeat) and raises ``DaemonUnreachable`` when the
        link drops.  Runs in the caller's thread: give it a thread of its own."""
        try:
            with self._http.stream("GET", f"{API_PREFIX}/stream",
                                   timeout=httpx.Timeout(5.0, read=30.0)) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise ApiError(_refusal_message(resp), status=resp.status_code)
                event = ""
                for line in resp.iter_lines():
                    if stop.is_set():
                        return
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event == "patch":
                        on_patch(json.loads(line[5:]))
                    elif not line:
                        event = ""
        except httpx.HTTPError as exc:
            raise DaemonUnreachable(f"the daemon's stream at {self.url} ended: {exc}") from None

    # ------------------------------------------------------------------ commands
    def goto(self, az_deg: float, el_deg: float, *, boresight: str | None = None,
             axes: bool = False, source: str | None = None) -> dict:
        """``source``: a relay's client (``tango:<client>``) for the audit log."""
        return self._request("POST", "goto", command=True, source=source, json={
            "az_deg": az_deg, "el_deg": el_deg, "boresight": boresight, "axes": axes})

    def jog(self, axis: str, rate_deg_s: float, seconds: float) -> dict:
        return self._request("POST", "jog", command=True, json={
            "axis": axis, "rate_deg_s": rate_deg_s, "seconds": seconds})

    def track(self, on: bool, *, source: str | None = None) -> dict:
        return self._request("POST", "track", command=True, json={"on": on}, source=source)

    def command(self, name: str, *, source: str | None = None) -> dict:
        """A command without arguments: stop, park, unpark, stow, reset."""
        if name not in ("stop", "park", "unpark", "stow", "reset"):
            raise ValueError(f"unknown command {name!r}")
        return self._request("POST", name, command=True, source=source)


def _refusal_message(resp: httpx.Response) -> str:
    try:
        detail = resp.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):  # FastAPI validation errors
        parts = []
        for err in detail:
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else err.get("msg", "invalid"))
        detail = "; ".join(parts)
    if not detail:
        detail = resp.text.strip() or resp.reason_phrase
    if resp.status_code == 401:
        return f"refused: {detail}"
    if resp.status_code in (409, 422):
        return f"refused: {detail}"
    return f"daemon error {resp.status_code}: {detail}"
