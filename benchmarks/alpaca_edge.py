"""Alpaca read latency while tracking, quiet and under hostile traffic at the HTTP edge.

Starts ``tracker daemon`` on the simulator (tmp copy of ``config/sim.toml``, clock
shifted into a tracking window, Alpaca on) and, for ``--seconds`` per phase, reads
Alpaca members (Altitude, RightAscension, DeviceState, Slewing) at 20 Hz from
127.0.0.1.  Phase "quiet": nothing else.  Phase "hostile": at the same time, from
another loopback source address (127.0.0.2, so the per-source rate limit applies to
it, not to the reader): 10 MB request bodies (with and without Content-Length),
20 slowloris connections trickling request heads, and a flood of GETs far over the
rate limit.  Prints, side by side: Alpaca read p50/p99 (ms), the daemon's control-loop
jitter p99 and overruns (from its status), and how the hostile requests were answered.

Target (issue 13): Alpaca status reads p99 <= 50 ms while tracking.  Loop jitter under
the flood (issue 11: p99 <= 20 ms, 0 overruns) is printed for the lead's thread work.
Run: ``.venv/bin/python benchmarks/alpaca_edge.py [--seconds 20] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.daemon import DaemonProcess, make_config  # noqa: E402

ALPACA_P99_TARGET_MS = 50.0
MEMBERS = ("altitude", "rightascension", "devicestate", "slewing")
ATTACKER = "127.0.0.2"


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))] if v else float("nan")


async def reader(url: str, seconds: float, hz: float = 20.0) -> list[float]:
    ms: list[float] = []
    async with httpx.AsyncClient(base_url=f"{url}/api/v1/telescope/0", timeout=5.0) as c:
        await c.put("/connected", data={"Connected": "True"})
        t0 = time.perf_counter()
        k = 0
        while (now := time.perf_counter()) - t0 < seconds:
            await asyncio.sleep(max(0.0, t0 + k / hz - now))
            s = time.perf_counter()
            r = await c.get(f"/{MEMBERS[k % len(MEMBERS)]}")
            ms.append((time.perf_counter() - s) * 1e3)
            if r.status_code != 200 or r.json()["ErrorNumber"] != 0:
                raise RuntimeError(f"read failed: {r.status_code} {r.text[:200]}")
            k += 1
    return ms


def _raw_attack(port: int, payload: bytes) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5,
                                      source_address=(ATTACKER, 0)) as s:
            try:
                s.sendall(payload)
            except OSError:
                pass
            data = s.recv(64)
            return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"
    except OSError as exc:
        return type(exc).__name__


async def attacker(port: int, seconds: float, counts: Counter,
                   kinds: tuple[str, ...] = ("bodies", "slowloris", "flood")) -> None:
    big = b"Connected=True&" + b"a=b&" * (10 * 1024 * 1024 // 4)
    declared = (f"PUT /api/v1/telescope/0/connected HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Length: {len(big)}\r\n\r\n").encode() + big
    chunk = b"%x\r\n%s\r\n" % (65536, b"a" * 65536)
    chunked = (b"PUT /api/v1/telescope/0/connected HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n") + chunk * 160
    loris: list[socket.socket] = []
    transport = httpx.AsyncHTTPTransport(local_address=ATTACKER)
    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5.0,
                                 transport=transport) as c:
        k = 0
        while time.perf_counter() - t0 < seconds:
            if "bodies" in kinds and k % 5 == 0:  # two 10 MB bodies a second
                for payload in (declared, chunked):
                    counts["10MB " + await asyncio.to_thread(_raw_attack, port, payload)] += 1
            while "slowloris" in kinds and len(loris) < 20:
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=5,
                                                 source_address=(ATTACKER, 0))
                    s.setblocking(False)
                    loris.append(s)
                    counts["slowloris opened"] += 1
                except OSError:
                    counts["slowloris refused"] += 1
                    break
            for s in list(loris):
                try:
                    s.send(b"G")
                except OSError:
                    loris.remove(s)
                    s.close()
                    counts["slowloris closed by daemon"] += 1
            n = 100 if "flood" in kinds else 0
            rs = await asyncio.gather(*(c.get("/api/v1/info") for _ in range(n)),
                                      return_exceptions=True)
            for r in rs:
                counts[f"flood {getattr(r, 'status_code', type(r).__name__)}"] += 1
            await asyncio.sleep(0.1)
            k += 1
    for s in loris:
        s.close()


def _attacker_process(port: int, seconds: float, queue: multiprocessing.Queue,
                      kinds: tuple[str, ...]) -> None:
    counts: Counter = Counter()
    asyncio.run(attacker(port, seconds, counts, kinds))
    queue.put(dict(counts))


async def phase(d: DaemonProcess, seconds: float, hostile: bool,
                kinds: tuple[str, ...] = ("bodies", "slowloris", "flood")) -> dict:
    """Reads from this process; the attack (if any) from another one (its own CPU time)."""
    counts: dict = {}
    before = d.status()["loop"]
    queue: multiprocessing.Queue = multiprocessing.Queue()
    proc = None
    if hostile:
        proc = multiprocessing.Process(target=_attacker_process, args=(d.port, seconds, queue,
                                                                            kinds))
        proc.start()
    ms = await reader(d.url, seconds)
    if proc is not None:
        counts = queue.get(timeout=60)
        proc.join(10)
    loop = d.status()["loop"]
    return {"reads": len(ms), "alpaca_p50_ms": round(pct(ms, 0.5), 2),
            "alpaca_p99_ms": round(pct(ms, 0.99), 2), "alpaca_max_ms": round(max(ms), 2),
            "loop_jitter_p99_ms": loop["jitter_p99_ms"], "loop_period_max_ms":
            loop["period_max_ms"], "overruns": loop["overruns"] - before["overruns"],
            "hostile": dict(sorted(counts.items()))}  # noqa: C416


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--attack", default="bodies,slowloris,flood",
                    help="comma-separated hostile parts: bodies, slowloris, flood")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path, offset = make_config(Path(tmp))
        d = DaemonProcess(path, time_offset_s=offset).wait_ready()
        try:
            d.wait_for(lambda s: s["state"] == "tracking", 90.0, "tracking")
            quiet = asyncio.run(phase(d, args.seconds, False))
            kinds = tuple(k for k in args.attack.split(",") if k)
            hostile = asyncio.run(phase(d, args.seconds, True, kinds))
            state = d.status()["state"]
        finally:
            d.kill()
    if args.json:
        print(json.dumps({"quiet": quiet, "hostile": hostile, "state_after": state}, indent=1))
    else:
        print(f"{'':24s}{'quiet':>12s}{'hostile':>12s}")
        for key in ("reads", "alpaca_p50_ms", "alpaca_p99_ms", "alpaca_max_ms",
                    "loop_jitter_p99_ms", "loop_period_max_ms", "overruns"):
            print(f"{key:24s}{quiet[key]!s:>12s}{hostile[key]!s:>12s}")
        print(f"target alpaca p99 <= {ALPACA_P99_TARGET_MS} ms; state after: {state}")
        for k, v in hostile["hostile"].items():
            print(f"  hostile {k}: {v}")
    ok = max(quiet["alpaca_p99_ms"], hostile["alpaca_p99_ms"]) <= ALPACA_P99_TARGET_MS
    return 0 if ok and state == "tracking" else 1


if __name__ == "__main__":
    sys.exit(main())
