"""Daemon under API load: control-loop period jitter and API latency.

Starts ``tracker daemon`` on the simulator (a tmp copy of ``config/sim.toml``,
clock shifted into a tracking window) and, for ``--seconds`` (default 60), sends
20 status requests per second and one command per second (alternately a goto next
to the Sun and "automatic tracking on"), on fixed schedules from one asyncio
client.  Reports the client-side latency of status requests and commands
(p50/p99, ms) and the daemon's own control-loop statistics over the last minute
(period p50/p99, |period - 100 ms| p99, overruns).

Targets (issue 5): period jitter p99 <= 20 ms; status latency p99 <= 50 ms.
Run: ``.venv/bin/python benchmarks/daemon.py [--seconds 60] [--json]``; exit 1
if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.daemon import DaemonProcess, make_config  # noqa: E402

JITTER_P99_TARGET_MS = 20.0
STATUS_P99_TARGET_MS = 50.0


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]


async def load(url: str, token: str, seconds: float, status_hz: float,
               command_hz: float) -> dict:
    status_ms: list[float] = []
    command_ms: list[float] = []
    failures: list[str] = []
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
    async with httpx.AsyncClient(base_url=url, timeout=5.0, limits=limits) as client:
        await client.get("/api/v1/status")  # open a connection
        t0 = time.perf_counter()

        async def one_status() -> None:
            s = time.perf_counter()
            r = await client.get("/api/v1/status")
            status_ms.append((time.perf_counter() - s) * 1e3)
            if r.status_code != 200:
                failures.append(f"status {r.status_code}")

        async def one_command(k: int) -> None:
            headers = {"Authorization": f"Bearer {token}"}
            if k % 2 == 0:
                st = (await client.get("/api/v1/status")).json()
                body = {"az_deg": (st["sun"]["azimuth_deg"] + 0.2) % 360.0,
                        "el_deg": max(-20.0, min(20.0, st["sun"]["elevation_deg"]))}
                s = time.perf_counter()
                r = await client.post("/api/v1/goto", json=body, headers=headers)
            else:
                s = time.perf_counter()
                r = await client.post("/api/v1/track", json={"on": True}, headers=headers)
            command_ms.append((time.perf_counter() - s) * 1e3)
            if r.status_code != 200:
                failures.append(f"command {r.status_code}: {r.text[:200]}")

        async def schedule(rate_hz: float, make) -> None:
            tasks = []
            k = 0
            while True:
                due = t0 + k / rate_hz
                if due > t0 + seconds:
                    break
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                tasks.append(asyncio.create_task(make(k)))
                k += 1
            await asyncio.gather(*tasks)

        await asyncio.gather(schedule(status_hz, lambda k: one_status()),
                             schedule(command_hz, one_command))
        loop = (await client.get("/api/v1/status")).json()["loop"]
    return {"status_ms": status_ms, "command_ms": command_ms, "failures": failures,
            "loop": loop}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="load duration (default 60)")
    ap.add_argument("--status-hz", type=float, default=20.0)
    ap.add_argument("--command-hz", type=float, default=1.0)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        path, offset = make_config(Path(tmp))
        daemon = DaemonProcess(path, time_offset_s=offset).wait_ready()
        try:
            daemon.wait_for(lambda s: s["state"] == "tracking", 60.0, "tracking")
            time.sleep(2.0)
            res = asyncio.run(load(daemon.url, daemon.token, args.seconds, args.status_hz,
                                   args.command_hz))
        finally:
            code = daemon.stop()
    loop = res["loop"]
    figures = {
        "seconds": args.seconds,
        "status_requests": len(res["status_ms"]),
        "commands": len(res["command_ms"]),
        "failures": res["failures"][:10],
        "status_latency_p50_ms": round(pct(res["status_ms"], 0.5), 2),
        "status_latency_p99_ms": round(pct(res["status_ms"], 0.99), 2),
        "command_latency_p50_ms": round(pct(res["command_ms"], 0.5), 2),
        "command_latency_p99_ms": round(pct(res["command_ms"], 0.99), 2),
        "loop_period_p50_ms": loop["period_p50_ms"],
        "loop_period_p99_ms": loop["period_p99_ms"],
        "loop_jitter_p99_ms": loop["jitter_p99_ms"],
        "loop_period_max_ms": loop["period_max_ms"],
        "loop_overruns": loop["overruns"],
        "loop_tick_p99_ms": loop["tick_p99_ms"],
        "daemon_exit_status": code,
    }
    ok = (figures["loop_jitter_p99_ms"] <= JITTER_P99_TARGET_MS
          and figures["status_latency_p99_ms"] <= STATUS_P99_TARGET_MS
          and not res["failures"] and code == 0)
    figures["targets_met"] = ok
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"daemon under load: {args.status_hz:g} status/s + {args.command_hz:g} command/s "
              f"for {args.seconds:g} s")
        print(f"  status latency   p50 {figures['status_latency_p50_ms']:7.2f} ms   p99 "
              f"{figures['status_latency_p99_ms']:7.2f} ms   (target p99 <= {STATUS_P99_TARGET_MS:g})")
        print(f"  command latency  p50 {figures['command_latency_p50_ms']:7.2f} ms   p99 "
              f"{figures['command_latency_p99_ms']:7.2f} ms")
        print(f"  loop period      p50 {loop['period_p50_ms']:7.2f} ms   p99 "
              f"{loop['period_p99_ms']:7.2f} ms   max {loop['period_max_ms']:.1f} ms")
        print(f"  loop jitter      p99 {loop['jitter_p99_ms']:7.2f} ms   (target <= "
              f"{JITTER_P99_TARGET_MS:g})   overruns {loop['overruns']}   tick p99 "
              f"{loop['tick_p99_ms']:.2f} ms")
        if res["failures"]:
            print(f"  FAILED requests: {res['failures'][:5]}")
        print("  targets met" if ok else "  TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
