"""No client can stall the control loop: the engine ticks on its own thread.

Reproduces the reported failure: one tokenless 10 MB Alpaca form body (and a 10 MB JSON
array) used to block the loop for seconds, trip both drives' watchdogs and leave the mount
in fault.  The daemon runs as a real process on the simulator; traffic is loopback only.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support.daemon import DaemonProcess, make_config

pytestmark = [pytest.mark.slow, pytest.mark.network]


def test_ten_megabyte_bodies_do_not_disturb_tracking(tmp_path) -> None:
    path, offset = make_config(tmp_path)
    daemon = DaemonProcess(path, time_offset_s=offset).wait_ready()
    try:
        daemon.wait_for(lambda s: s["state"] == "tracking" and s["on_sun"], 90.0, "tracking")
        before = daemon.status()["loop"]
        form = b"Connected=True&" + b"a=b&" * (10 * 1024 * 1024 // 4)
        array = b"[" + b"1," * (5 * 1024 * 1024) + b"1]"
        with httpx.Client(timeout=60.0) as client:
            for _ in range(2):
                client.put(f"{daemon.url}/api/v1/telescope/0/connected", content=form,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
                client.post(f"{daemon.url}/api/v1/goto", content=array,
                            headers={"Content-Type": "application/json"})
        st = daemon.status()
        assert st["state"] == "tracking" and st["on_sun"] and not st["faults"]
        loop = st["loop"]
        assert loop["overruns"] == before["overruns"]
        assert loop["period_max_ms"] < 150.0
    finally:
        assert daemon.stop() == 0
