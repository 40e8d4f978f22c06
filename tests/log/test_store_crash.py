"""SIGKILL a process writing the tracking log, at random points, several times.

After every kill: ``PRAGMA integrity_check`` is ok, the rows form an unbroken prefix of what
the writer produced (no hole, no torn row, every value as written), every commit the writer
reported before dying is there, and at most one commit interval of samples is missing.
The writer resumes on the same file after each crash, as the daemon would.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import ROOT

DT_S = 0.1               # 10 Hz samples
COMMIT_INTERVAL_S = 1.0  # => at most 10 samples pending

WRITER = r"""
import sys
from tracker.log.store import Sample, TrackingStore

path = sys.argv[1]
store = TrackingStore(path, commit_interval_s=1.0)
rng = store.time_range()
i = 0 if rng is None else round((rng[1] - 1.0e9) / 0.1)
print("start", i, flush=True)
commits = store.commits
while True:
    i += 1
    t = 1.0e9 + 0.1 * i
    store.add_sample(Sample(t, 0.1, "tracking", "main", i * 1e-4, 1.0 + i * 1e-5,
                            i * 1e-4, 1.0 + i * 1e-5, float(i), float(-i), i % 37 * 0.25,
                            i % 37 * 0.5, 0.1))
    if i % 50 == 0:
        store.log_event(t, "info", f"marker {i}", data={"i": i})
    if store.commits != commits:
        commits = store.commits
        print("committed", i, flush=True)
"""


def check_log(path: Path) -> tuple[int, int]:
    """Integrity and consistency of the file; returns (last sample index, last marker)."""
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT time_s, dt_s, state, boresight, target_az_deg, target_el_deg, "
                          "measured_az_deg, measured_el_deg, axis_az_deg, axis_el_deg, "
                          "error_arcsec, error_max_arcsec, on_sun_s FROM samples "
                          "ORDER BY id").fetchall()
        markers = db.execute("SELECT time_s, message, data FROM events ORDER BY id").fetchall()
    for n, row in enumerate(rows, start=1):
        i = round((row[0] - 1.0e9) / 0.1)
        assert i == n, f"row {n} has sample index {i}: hole or duplicate"
        assert row[1:] == (0.1, "tracking", "main", i * 1e-4, 1.0 + i * 1e-5, i * 1e-4,
                           1.0 + i * 1e-5, float(i), float(-i), i % 37 * 0.25, i % 37 * 0.5,
                           0.1), f"row {n} differs from what was written"
    last = len(rows)
    # markers: every 50th sample, in order, none twice, each with its samples committed (an
    # event commits the samples before it).  One may be missing where a crash fell between
    # the sample's commit and the marker's.
    marker_i = [round((m[0] - 1.0e9) / 0.1) for m in markers]
    assert [m[1] for m in markers] == [f"marker {i}" for i in marker_i]
    assert [json.loads(m[2])["i"] for m in markers] == marker_i
    assert all(i % 50 == 0 for i in marker_i)
    assert marker_i == sorted(set(marker_i))
    assert all(i <= last for i in marker_i)
    return last, len(markers)


@pytest.mark.slow
def test_sigkill_at_random_points_never_loses_committed_rows(tmp_path):
    path = tmp_path / "crash.sqlite"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = random.Random(20260701)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    total_kills = 0
    last = 0
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE,
                                text=True, env=env, cwd=tmp_path)
        try:
            first = proc.stdout.readline().split()
            assert first == ["start", str(last)], first     # resumes after the last row
            time.sleep(rng.uniform(0.05, 0.6))
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
            # complete report lines only (the kill may cut the last one short)
            out = proc.stdout.read()
            reported = [int(m.group(1)) for m in re.finditer(r"^committed (\d+)\n", out, re.M)]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        total_kills += 1
        new_last, n_markers = check_log(path)
        assert n_markers >= new_last // 50 - total_kills     # at most one lost per crash
        assert reported, "the writer committed nothing before the kill; slow machine?"
        # every reported commit is on disk; what is lost is at most one commit interval
        # plus what was added after the last report (the report is printed after commit)
        assert new_last >= reported[-1]
        assert new_last - reported[-1] <= round(COMMIT_INTERVAL_S / DT_S) + 1
        assert new_last > last
        last = new_last
    assert total_kills == 6
