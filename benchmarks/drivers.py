"""Benchmark: Modbus TCP loopback control cycles/s, bare pymodbus alongside, and
in-process simulator steps/s.

A full control cycle = read both axes' status blocks + write both axes' command
blocks (each carrying the heartbeat): 4 Modbus transactions.  By default the
server (``simulator.modbus_server`` hosting a ``SimMount``) runs in the same
process and event loop as the client; ``--subprocess`` runs ``tracker simulate``
in a separate process instead (as in a rehearsal).  The driver and bare pymodbus
are measured alternately, ``--rounds`` times, and the best round of each is
reported (the machine is shared; the best round is the least disturbed one).

Run: ``.venv/bin/python benchmarks/drivers.py [--seconds 1] [--rounds 3] [--subprocess]``
Targets: >= 1000 Modbus cycles/s, >= 200,000 simulator axis steps/s.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from drivers.modbus import make_modbus_axes  # noqa: E402
from drivers.modbus_map import map_for  # noqa: E402
from simulator.mount import SimMount  # noqa: E402
from tracker import config  # noqa: E402

CONFIG = ROOT / "config" / "sim-modbus.toml"


def start_server() -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from tracker.cli.main import main; main()", "simulate",
         "--config", str(CONFIG), "--modbus-port", "0"],
        stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("modbus tcp"):
        proc.kill()
        raise SystemExit(f"simulator did not start: {line!r}")
    port = int(line.split()[2].rsplit(":", 1)[1].split()[0])
    return proc, port


async def bench_driver(settings, port: int, seconds: float, gather: bool = False) -> float:
    """Full cycles/s through ``drivers.modbus``; ``gather`` runs the two axes concurrently."""
    axes = make_modbus_axes(settings, time.time, port=port)
    az, el = axes["azimuth"], axes["elevation"]
    await az.connect()
    await el.connect()
    await az.enable()
    await el.enable()
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        for _ in range(50):
            if gather:
                a, b = await asyncio.gather(az.read(), el.read())
                await asyncio.gather(az.command_velocity(0.004), el.command_velocity(-0.002))
            else:
                a = await az.read()
                b = await el.read()
                await az.command_velocity(0.004)
                await el.command_velocity(-0.002)
        n += 50
    dt = time.perf_counter() - t0
    if not (a.fresh and b.fresh):
        raise SystemExit(f"driver benchmark saw comms problems: {a.condition} {b.condition}")
    await az.disable()
    await el.disable()
    await az.close()
    await el.close()
    return n / dt


async def bench_bare(settings, port: int, seconds: float, transactions: int) -> float:
    from pymodbus.client import AsyncModbusTcpClient

    m = map_for(settings)
    md = settings.drives.modbus
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1.0, retries=0)
    await client.connect()
    s, c = m.status, m.command
    cmd = [0] * c.count
    ids = (md.azimuth_device_id, md.elevation_device_id)
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        for _ in range(50):
            if transactions == 4:
                for dev in ids:
                    await client.read_holding_registers(s.address, count=s.count, device_id=dev)
                for dev in ids:
                    await client.write_registers(c.address, cmd, device_id=dev)
            else:  # 3: read, read, one write (the reference figure)
                for dev in ids:
                    await client.read_holding_registers(s.address, count=s.count, device_id=dev)
                await client.write_registers(c.address, cmd, device_id=ids[0])
        n += 50
    dt = time.perf_counter() - t0
    client.close()
    return n / dt


def bench_sim(settings, seconds: float) -> tuple[float, float]:
    mount = SimMount(settings)
    ax = mount.azimuth
    ax.enable()
    ax.command_velocity(0.004)
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        for _ in range(1000):
            ax.step(0.01)
        ax.heartbeat()
        n += 1000
    axis_rate = n / (time.perf_counter() - t0)
    mount = SimMount(settings)
    for a in mount.axes.values():
        a.enable()
        a.command_velocity(0.002)
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        for _ in range(1000):
            mount.step(0.01)
        for a in mount.axes.values():
            a.heartbeat()
        n += 1000
    mount_rate = n / (time.perf_counter() - t0)
    return axis_rate, mount_rate


async def bench_inprocess(settings, seconds: float,
                          rounds: int) -> tuple[float, float, float, float]:
    from simulator.modbus_server import start_modbus_tcp_server
    from simulator.mount import run_realtime

    mount = SimMount(settings)
    handle, port = await start_modbus_tcp_server(mount)
    stepper = asyncio.create_task(run_realtime(mount))
    try:
        return await _rounds(settings, port, seconds, rounds)
    finally:
        stepper.cancel()
        await handle.stop()


async def _rounds(settings, port: int, seconds: float,
                  rounds: int) -> tuple[float, float, float, float]:
    driver = gathered = bare4 = bare3 = 0.0
    for _ in range(rounds):
        driver = max(driver, await bench_driver(settings, port, seconds))
        gathered = max(gathered, await bench_driver(settings, port, seconds, gather=True))
        bare4 = max(bare4, await bench_bare(settings, port, seconds, 4))
        bare3 = max(bare3, await bench_bare(settings, port, seconds, 3))
    return driver, gathered, bare4, bare3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="duration of each measurement")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (best is kept)")
    ap.add_argument("--subprocess", action="store_true",
                    help="run the server as `tracker simulate` in another process")
    args = ap.parse_args()
    settings = config.load(CONFIG)
    if args.subprocess:
        proc, port = start_server()
        try:
            driver, gathered, bare4, bare3 = asyncio.run(_rounds(settings, port, args.seconds, args.rounds))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    else:
        driver, gathered, bare4, bare3 = asyncio.run(bench_inprocess(settings, args.seconds, args.rounds))
    axis_rate = mount_rate = 0.0
    for _ in range(args.rounds):
        a, m = bench_sim(settings, args.seconds)
        axis_rate, mount_rate = max(axis_rate, a), max(mount_rate, m)
    where = "separate server process" if args.subprocess else "server in the same process"
    print(f"Modbus TCP loopback ({where}), best of {args.rounds} x {args.seconds:g} s:")
    best = max(driver, gathered)
    print(f"modbus tcp loopback, drivers.modbus : {driver:8.0f} full cycles/s, axes one after "
          f"the other (4 transactions)")
    print(f"modbus tcp loopback, drivers.modbus : {gathered:8.0f} full cycles/s, axes gathered "
          f"(target >= 1000) {'OK' if best >= 1000 else 'BELOW TARGET'}")
    print(f"modbus tcp loopback, bare pymodbus  : {bare4:8.0f} cycles/s of 4 transactions")
    print(f"modbus tcp loopback, bare pymodbus  : {bare3:8.0f} cycles/s of 3 transactions")
    print(f"driver / bare pymodbus, same 4 transactions: {driver / bare4:.2f} "
          f"(the driver's own overhead; the rest is pymodbus and the machine)")
    print(f"simulator, SimAxis.step             : {axis_rate:8.0f} axis steps/s "
          f"(target >= 200000) {'OK' if axis_rate >= 200000 else 'BELOW TARGET'}")
    print(f"simulator, SimMount.step (2 axes)   : {mount_rate:8.0f} mount steps/s "
          f"= {2 * mount_rate:.0f} axis steps/s")


if __name__ == "__main__":
    main()
