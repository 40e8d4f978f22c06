"""Request limits at the HTTP edge: real HTTP to the real daemon.

No request may cost the daemon much or act for another site: bodies over the limit are
refused (413) before they are read, foreign Host names (DNS rebinding) get 421, foreign
Origins on state-changing requests 403, a client over its rate 429, and connections whose
request head or body trickles in are closed (slowloris).
"""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.support.daemon import DaemonProcess, make_config
from tracker.service.limits import TokenBucket

LIMITS = {"rate_limit_per_s": 20.0, "rate_limit_burst": 20, "header_timeout_s": 1.0,
          "body_timeout_s": 2.0, "max_body_bytes": 4096, "max_inflight_per_source": 4}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    path, _ = make_config(tmp_path_factory.mktemp("limits"), window=False,
                          tracking={"auto_track": False}, api=LIMITS)
    d = DaemonProcess(path).wait_ready()
    yield d
    d.kill()


def _raw(port: int, request: bytes, *, timeout_s: float = 5.0) -> tuple[bytes, float]:
    """Send ``request`` on a fresh connection; (everything answered until close, seconds)."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        try:
            s.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    return data, time.perf_counter() - t0


def _status_line(data: bytes) -> int:
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


def _connected(d: DaemonProcess) -> bool:
    return httpx.get(f"{d.url}/api/v1/telescope/0/connected", timeout=5).json()["Value"]


def _pause_for_bucket() -> None:
    time.sleep(1.5)  # 20 tokens/s: the bucket is full again


# ----------------------------------------------------------------------------- unit
def test_token_bucket_numbers():
    now = [100.0]
    bucket = TokenBucket(rate_per_s=10.0, burst=5, clock=lambda: now[0])
    assert [bucket.take("a") for _ in range(5)] == [0.0] * 5
    assert bucket.take("a") == pytest.approx(0.1)  # one token in 1/10 s
    assert bucket.take("b") == 0.0                 # per source
    now[0] += 0.25                                 # 2.5 tokens back (capped at 5)
    assert bucket.take("a") == 0.0 and bucket.take("a") == 0.0
    assert bucket.take("a") == pytest.approx(0.05)
    now[0] += 100.0
    assert [bucket.take("a") for _ in range(5)] == [0.0] * 5 and bucket.take("a") > 0
    with pytest.raises(ValueError):
        TokenBucket(rate_per_s=0.0, burst=1)


# ----------------------------------------------------------------------------- bodies
@pytest.mark.network
@pytest.mark.slow
def test_ten_megabyte_bodies_refused_fast(daemon):
    _pause_for_bucket()
    port = daemon.port
    body = b"Connected=True&" + b"a=b&" * (10 * 1024 * 1024 // 4)
    head = (f"PUT /api/v1/telescope/0/connected HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    data, elapsed_s = _raw(port, head + body[:65536])
    assert _status_line(data) == 413 and b"over the limit of 4096 bytes" in data
    assert elapsed_s < 1.0, elapsed_s
    # The API's JSON commands too (with the token: the limit comes before anything else).
    head = (f"POST /api/v1/goto HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
            f"\r\nAuthorization: Bearer {daemon.token}\r\n"
            f"Content-Length: {10 * 1024 * 1024}\r\n\r\n").encode()
    data, elapsed_s = _raw(port, head + b"[" + b"0," * 30000)
    assert _status_line(data) == 413 and elapsed_s < 1.0
    # Without a Content-Length (chunked): read up to the limit only, then 413.
    head = (f"PUT /api/v1/telescope/0/connected HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b"%x\r\n%s\r\n" % (8192, b"Connected=True&" + b"x" * (8192 - 15))
    data, elapsed_s = _raw(port, head + chunk * 8)
    assert _status_line(data) == 413 and elapsed_s < 1.0
    assert _connected(daemon) is False  # none of them reached the telescope
    st = daemon.status()
    assert st["state"] == "idle" and not st["faults"]


@pytest.mark.network
@pytest.mark.slow
def test_slow_body_and_slow_headers_are_cut(daemon):
    _pause_for_bucket()
    port = daemon.port
    # A body that never completes: 408 after body_timeout_s (2 s).
    head = (b"PUT /api/v1/telescope/0/connected HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 100\r\n\r\nConnected=True")
    data, elapsed_s = _raw(port, head)
    assert _status_line(data) == 408 and 1.9 < elapsed_s < 4.0, (data[:80], elapsed_s)
    # Slowloris: a request head trickling in one byte at a time is closed after
    # header_timeout_s (1 s), on a fresh connection and on a kept-alive one.
    for first in (b"", b"GET /api/v1/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            if first:
                s.sendall(first)
                assert s.recv(65536).startswith(b"HTTP/1.1 200")
            t0 = time.perf_counter()
            closed_after = None
            for byte in b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ":
                try:
                    s.sendall(bytes([byte]))
                    s.settimeout(0.2)
                    if s.recv(1024) == b"":
                        closed_after = time.perf_counter() - t0
                        break
                except TimeoutError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    closed_after = time.perf_counter() - t0
                    break
            assert closed_after is not None and 0.9 < closed_after < 2.5, closed_after
    # A header block over 16 KiB is refused: sent at once (431), or trickled (h11: 400).
    data, _ = _raw(port, b"GET /api/v1/info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
                   + b"a" * 65536 + b"\r\n\r\n")
    assert _status_line(data) == 431, data[:100]


# ----------------------------------------------------------------------------- Host / Origin
@pytest.mark.network
@pytest.mark.slow
def test_host_header_checked(daemon):
    _pause_for_bucket()
    url = f"{daemon.url}/api/v1/telescope/0/connected"
    for host in ("attacker.example", f"attacker.example:{daemon.port}", "127.0.0.1.nip.io",
                 "localhost.attacker.example", "[::2]"):
        r = httpx.put(url, data={"Connected": "True"}, headers={"Host": host}, timeout=5)
        assert r.status_code == 421, (host, r.status_code)
        assert httpx.get(f"{daemon.url}/api/v1/status", headers={"Host": host},
                         timeout=5).status_code == 421
    assert _connected(daemon) is False
    for host in (f"127.0.0.1:{daemon.port}", "localhost", f"LOCALHOST:{daemon.port}",
                 f"[::1]:{daemon.port}"):
        assert httpx.get(f"{daemon.url}/api/v1/info", headers={"Host": host},
                         timeout=5).status_code == 200, host
    data, _ = _raw(daemon.port, b"GET /api/v1/info HTTP/1.0\r\n\r\n")
    assert _status_line(data) == 400 or data.startswith(b"HTTP/1.0 400") or b" 400 " in data[:20]


@pytest.mark.network
@pytest.mark.slow
def test_origin_checked_for_state_changing_requests(daemon):
    _pause_for_bucket()
    url = f"{daemon.url}/api/v1/telescope/0/connected"
    for origin in ("http://attacker.example", f"http://attacker.example:{daemon.port}",
                   "null", "http://127.0.0.1:1", f"https://127.0.0.1:{daemon.port}",
                   f"http://127.0.0.1:{daemon.port}/x"):
        r = httpx.put(url, data={"Connected": "True"}, headers={"Origin": origin}, timeout=5)
        assert r.status_code == 403, (origin, r.status_code)
        r = httpx.post(f"{daemon.url}/api/v1/stop", headers={"Origin": origin,
                       "Authorization": f"Bearer {daemon.token}"}, timeout=5)
        assert r.status_code == 403, origin
    assert _connected(daemon) is False
    events = httpx.get(f"{daemon.url}/api/v1/events", params={"limit": 200}, timeout=5).json()
    assert not [e for e in events if e["kind"] == "command" and "stop" in str(e)]
    # Same origin, or none, is fine; reads ignore Origin (the Host check covers them).
    r = httpx.put(url, data={"Connected": "True"},
                  headers={"Origin": f"http://localhost:{daemon.port}"}, timeout=5)
    assert r.status_code == 200 and r.json()["ErrorNumber"] == 0
    assert _connected(daemon) is True
    assert httpx.put(url, data={"Connected": "False"}, timeout=5).status_code == 200
    assert httpx.get(f"{daemon.url}/api/v1/info", headers={"Origin": "http://x.example"},
                     timeout=5).status_code == 200


# ----------------------------------------------------------------------------- rate
@pytest.mark.network
@pytest.mark.slow
def test_rate_limit_answers_429_then_recovers(daemon):
    _pause_for_bucket()
    codes = []
    retry_after = None
    t0 = time.perf_counter()
    with httpx.Client(base_url=daemon.url, timeout=5) as c:
        for _ in range(80):
            r = c.get("/api/v1/info")
            codes.append(r.status_code)
            if r.status_code == 429:
                retry_after = r.headers.get("retry-after")
    elapsed_s = time.perf_counter() - t0
    assert set(codes) <= {200, 429} and 429 in codes
    # At most the burst plus what the rate refilled meanwhile was served.
    assert codes.count(200) <= 20 + 20.0 * elapsed_s + 1, (codes.count(200), elapsed_s)
    assert retry_after == "1"
    _pause_for_bucket()
    assert httpx.get(f"{daemon.url}/api/v1/info", timeout=5).status_code == 200


@pytest.mark.network
@pytest.mark.slow
def test_requests_in_progress_per_source_are_capped(daemon):
    """4 stalled bodies hold the 4 slots of 127.0.0.1: a 5th request gets 429 at once;
    another source address (127.0.0.2) is served; the slots free when the bodies time out."""
    _pause_for_bucket()
    head = (b"PUT /api/v1/telescope/0/connected HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 100\r\n\r\nConnected=")
    held = []
    try:
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
            s.sendall(head)
            held.append(s)
        time.sleep(0.3)
        t0 = time.perf_counter()
        r = httpx.get(f"{daemon.url}/api/v1/info", timeout=5)
        assert r.status_code == 429 and "in progress" in r.text
        assert time.perf_counter() - t0 < 0.5
        other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"),
                             timeout=5)
        with other:
            assert other.get(f"{daemon.url}/api/v1/info").status_code == 200
        for s in held:
            s.settimeout(5)
            assert s.recv(64).startswith(b"HTTP/1.1 408")
    finally:
        for s in held:
            s.close()
    assert httpx.get(f"{daemon.url}/api/v1/info", timeout=5).status_code == 200
