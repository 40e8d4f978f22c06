"""Facility interfaces: Tango attribute read latency, Tango change-event delay, OPC UA reads.

Starts ``tracker daemon`` over Modbus on ``tracker simulate`` (tests.facility_rig), the
``HelioTracker`` Tango device (PyTango ``DeviceTestContext``, its own process) and the
OPC UA server (``tracker opcua-server``), then measures from real clients:

- Tango ``read_attribute("PointingError")``, ``--reads`` times: p50/p99 (target p99 <= 20 ms);
- Tango change-event delay: ``--changes`` state changes made through the API (track off /
  on), from the API's answer (the engine has changed) to the ``TrackerState`` event
  (target <= 200 ms, every one);
- OPC UA ``read_value`` of ``PointingError``: p50/p99 (no target; for comparison).

Run: ``.venv/bin/python benchmarks/facility.py [--reads 1000] [--changes 20]``; prints
measured / target ratios side by side; exit 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.daemon import TRACKER, free_port  # noqa: E402
from tests.support.facility_rig import FacilityRig  # noqa: E402

READ_P99_TARGET_MS = 20.0
EVENT_TARGET_MS = 200.0


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=1000)
    ap.add_argument("--changes", type=int, default=20)
    args = ap.parse_args()

    import tango
    from asyncua.sync import Client
    from tango.test_context import DeviceTestContext

    from tracker.service.opcua_server import NAMESPACE_URI
    from tracker.service.tango_device import HelioTracker

    tmp = Path(tempfile.mkdtemp(prefix="facility-bench-"))
    rig = FacilityRig(tmp)
    port = free_port()
    opcua = subprocess.Popen([TRACKER, "opcua-server", "--config", str(rig.config_path),
                              "--port", str(port), "--api-url", rig.d.url],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows: list[tuple[str, float, float | None]] = []
    ok = True
    try:
        ctx = DeviceTestContext(HelioTracker, device_name="helio/tracker/1", process=True, debug=0,
                                timeout=60, properties={"ConfigFile": str(rig.config_path),
                                                        "ApiUrl": rig.d.url})
        with ctx as proxy:
            rig.d.wait_for(lambda s: s["state"] == "tracking", 120.0, "tracking")
            reads = []
            for _ in range(args.reads):
                t0 = time.perf_counter()
                proxy.read_attribute("PointingError")
                reads.append((time.perf_counter() - t0) * 1e3)
            rows.append(("Tango read p50 (ms)", pct(reads, 0.5), None))
            rows.append(("Tango read p99 (ms)", pct(reads, 0.99), READ_P99_TARGET_MS))

            delays: list[float] = []
            seen: list[tuple[float, str]] = []
            cond = threading.Condition()

            def on_event(ev) -> None:
                if not ev.err and ev.attr_value is not None:
                    with cond:
                        seen.append((time.monotonic(), ev.attr_value.value))
                        cond.notify_all()

            eid = proxy.subscribe_event("TrackerState", tango.EventType.CHANGE_EVENT, on_event)
            time.sleep(0.5)
            for i in range(args.changes):
                on = i % 2 == 1
                with cond:
                    seen.clear()
                rig.d.post("track", {"on": on})
                t_changed = time.monotonic()
                want = ("idle",) if not on else ("acquiring", "tracking", "slewing", "waiting")
                with cond:
                    cond.wait_for(lambda w=want: any(v in w for _, v in seen), 3.0)
                    hit = [t for t, v in seen if v in want]
                delays.append((hit[0] - t_changed) * 1e3 if hit else math.inf)
                time.sleep(0.3 + 0.05 * (i % 4))  # different phases against the poll period
            proxy.unsubscribe_event(eid)
            rows.append(("Tango event delay p50 (ms)", pct(delays, 0.5), None))
            rows.append(("Tango event delay max (ms)", max(delays), EVENT_TARGET_MS))

        client = Client(f"opc.tcp://127.0.0.1:{port}/helio-tracker/")
        client.connect()
        try:
            idx = client.get_namespace_index(NAMESPACE_URI)
            var = client.nodes.objects.get_child([f"{idx}:HelioTracker", f"{idx}:PointingError"])
            ua_reads = []
            for _ in range(args.reads):
                t0 = time.perf_counter()
                var.read_data_value(raise_on_bad_status=False)
                ua_reads.append((time.perf_counter() - t0) * 1e3)
        finally:
            client.disconnect()
        rows.append(("OPC UA read p50 (ms)", pct(ua_reads, 0.5), None))
        rows.append(("OPC UA read p99 (ms)", pct(ua_reads, 0.99), None))
    finally:
        opcua.terminate()
        opcua.wait(15)
        rig.close()

    print(f"{'figure':32s} {'measured':>10s} {'target':>10s} {'ratio':>7s}")
    for name, value, target in rows:
        ratio = f"{value / target:7.2f}" if target else ""
        print(f"{name:32s} {value:10.2f} {target if target else '':>10} {ratio}")
        if target is not None and not value <= target:
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
