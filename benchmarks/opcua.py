"""Benchmark: OPC UA control cycles/s through ``drivers.opcua`` vs bare asyncua, side by side.

A control cycle = what the engine does every tick over OPC UA: read both axes
(``asyncio.gather`` of the two ``read()``) and command both axes' velocity (gather
of the two ``command_velocity()``).  Through the driver that is one Read service
call of the 8 status nodes and one Write of 6 command items (velocity
setpoint, mode and heartbeat of each axis).  Bare asyncua does
exactly the same two service calls with prebuilt requests and no decoding.  The
server (``simulator.opcua_server`` hosting a ``SimMount``) runs in the same process
and event loop, or with ``--subprocess`` in its own process (``tracker simulate
--protocol opcua``, as a PLC is another machine).  Driver and bare asyncua are measured alternately, ``--rounds``
times; the best round of each is reported (the machine is shared).

Run: ``.venv/bin/python benchmarks/opcua.py [--seconds 2] [--rounds 3] [--subprocess]``
Target: >= 200 cycles/s through the driver.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asyncua import Client, ua  # noqa: E402

from drivers.opcua import _make_write, _read_params, make_opcua_axes  # noqa: E402
from drivers.opcua_map import AXES, STATUS_KEYS, map_for  # noqa: E402
from simulator.mount import SimMount  # noqa: E402
from simulator.opcua_server import start_opcua_server  # noqa: E402
from tracker import config  # noqa: E402

CONFIG = ROOT / "config" / "sim-opcua.toml"
TARGET_CYCLES_S = 200.0
#: Best cycles per CPU second of this process (client, and the server when in process):
#: the figure a shared, loaded machine disturbs least.
CPU_RATES: dict[str, float] = {}


async def bench_driver(settings, url: str, seconds: float) -> float:
    """Engine-shaped cycles/s through ``drivers.opcua``."""
    axes = make_opcua_axes(settings, time.time, url=url)
    az, el = axes["azimuth"], axes["elevation"]
    await az.connect()
    await asyncio.gather(az.enable(), el.enable())
    n = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    end = t0 + seconds
    while time.perf_counter() < end:
        sa, se = await asyncio.gather(az.read(), el.read())
        if not (sa.ok and se.ok):
            raise SystemExit(f"driver read failed: {sa.fault_text or se.fault_text}")
        await asyncio.gather(az.command_velocity(0.01), el.command_velocity(-0.01))
        n += 1
    rate = n / (time.perf_counter() - t0)
    CPU_RATES["driver"] = max(CPU_RATES.get("driver", 0.0), n / (time.process_time() - c0))
    await asyncio.gather(az.stop(), el.stop())
    await az.close()
    return rate


async def bench_bare(settings, url: str, seconds: float) -> float:
    """The same two service calls per cycle with bare asyncua (prebuilt requests)."""
    m = map_for(settings)
    status = [ua.NodeId.from_string(getattr(m.nodes(a), k)) for a in AXES for k in STATUS_KEYS]
    read = _read_params(status, ua.AttributeIds.Value)
    cmd = {a: (ua.NodeId.from_string(m.nodes(a).velocity_setpoint),
               ua.NodeId.from_string(m.nodes(a).mode),
               ua.NodeId.from_string(m.nodes(a).heartbeat)) for a in AXES}
    client = Client(url, timeout=1.0)
    await client.connect()
    hb = 0
    n = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    end = t0 + seconds
    while time.perf_counter() < end:
        await client.uaclient.read(read)
        hb = (hb + 1) % 65536
        write = ua.WriteParameters()
        for a, v in (("azimuth", 0.01), ("elevation", -0.01)):
            sp, mode, hbn = cmd[a]
            write.NodesToWrite += [
                _make_write(sp, v, ua.VariantType.Double),
                _make_write(mode, m.modes.velocity, ua.VariantType.UInt16),
                _make_write(hbn, hb, ua.VariantType.UInt16)]
        await client.uaclient.write(write)
        n += 1
    rate = n / (time.perf_counter() - t0)
    CPU_RATES["bare"] = max(CPU_RATES.get("bare", 0.0), n / (time.process_time() - c0))
    await client.disconnect()
    return rate


def start_server_process() -> tuple[subprocess.Popen, str]:
    """``tracker simulate --protocol opcua`` on a free loopback port; (process, endpoint url)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from tracker.cli.main import main; main()", "simulate",
         "--config", str(CONFIG), "--protocol", "opcua", "--opcua-port", "0",
         "--no-stdin-commands"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=str(ROOT))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("opcua "):
        proc.kill()
        raise SystemExit(f"simulator did not start: {line!r}")
    return proc, line.split()[1]


async def run_subprocess(seconds: float, rounds: int) -> tuple[float, float]:
    settings = config.load(CONFIG)
    proc, url = start_server_process()
    best_driver = best_bare = 0.0
    try:
        for _ in range(rounds):
            best_driver = max(best_driver, await bench_driver(settings, url, seconds))
            best_bare = max(best_bare, await bench_bare(settings, url, seconds))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return best_driver, best_bare


async def run(seconds: float, rounds: int) -> tuple[float, float]:
    settings = config.load(CONFIG)
    mount = SimMount(settings)
    handle, url = await start_opcua_server(mount)
    stepper_stop = asyncio.Event()

    async def step() -> None:  # the mount moves in real time meanwhile, as in a rehearsal
        last = time.monotonic()
        while not stepper_stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            mount.step(now - last)
            last = now

    stepper = asyncio.create_task(step())
    best_driver = best_bare = 0.0
    try:
        for _ in range(rounds):
            best_driver = max(best_driver, await bench_driver(settings, url, seconds))
            best_bare = max(best_bare, await bench_bare(settings, url, seconds))
    finally:
        stepper_stop.set()
        await stepper
        await handle.stop()
    return best_driver, best_bare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--subprocess", action="store_true",
                    help="run the simulated PLC in its own process (tracker simulate)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    where = "server in its own process" if args.subprocess else "server in process"
    bench = run_subprocess if args.subprocess else run
    driver, bare = asyncio.run(bench(args.seconds, args.rounds))
    print(f"OPC UA loopback ({where}), best of {args.rounds} x {args.seconds:g} s; "
          "a cycle = 1 Read of 8 nodes + 1 Write of 6 items:")
    cd, cb = CPU_RATES.get("driver", 0.0), CPU_RATES.get("bare", 0.0)
    print(f"  {'':40s}   wall clock   per CPU second of this process")
    print(f"  drivers.opcua (engine-shaped, gathered) : {driver:8.0f} /s   {cd:8.0f} /s")
    print(f"  bare asyncua (same two service calls)   : {bare:8.0f} /s   {cb:8.0f} /s")
    print(f"  driver / bare asyncua                   : {driver / bare:8.2f}     "
          f"{cd / cb if cb else float('nan'):8.2f}")
    print(f"  target                                  : {TARGET_CYCLES_S:8.0f} cycles/s "
          f"({'met' if driver >= TARGET_CYCLES_S else 'NOT met'})")


if __name__ == "__main__":
    main()
