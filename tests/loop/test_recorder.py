"""The recorder: ticks into 1 s samples, per bore, across state changes and loop stalls."""

from __future__ import annotations

import math

import pytest

from tests.support.records import T0_S, two_bores
from tracker.control.machine import State
from tracker.log.store import Sample
from tracker.loop.recorder import Measurement, Recorder
from tracker.mount.bores import decode

EL = 20.0


def _m(dx_arcsec: float) -> Measurement:
    """The encoders and the truth see the mechanical axis ``dx_arcsec`` east of the Sun."""
    az = 150.0 + dx_arcsec / 3600.0 / math.cos(math.radians(EL))
    return Measurement((az, EL), (150.0, EL), abs(dx_arcsec), abs(dx_arcsec), (az, EL))


def test_a_stall_of_the_loop_ends_the_sample_with_the_ticks_before_it() -> None:
    """0.1 s ticks to 0.5 s, a 5 s stall (longer than the 2 s gap limit), ticks again: the
    half second before the stall is logged, on-Sun and per bore; the stall is no state's."""
    samples: list[Sample] = []
    rec = Recorder(1.0, 2.0, [samples.append], two_bores())
    times = [T0_S + 0.1 * k for k in range(6)] + [T0_S + 5.5 + 0.1 * k for k in range(11)]
    for t in times:
        rec.record(t, State.TRACKING, "main", _m(0.0), True, (0.0, 0.0))
    before, after = samples
    assert before.time_s == pytest.approx(T0_S + 0.5)
    assert before.dt_s == pytest.approx(0.5) and before.on_sun_s == pytest.approx(0.5)
    assert decode(before.bores)["near"][2] == pytest.approx(0.5)      # near bore on the Sun
    assert decode(before.true_bores)["near"][2] == pytest.approx(0.5)
    assert decode(before.bores)["far"][2] == 0.0                       # 40 arcsec: off it
    assert after.time_s == pytest.approx(T0_S + 6.5) and after.dt_s == pytest.approx(1.0)
    assert sum(s.dt_s for s in samples) == pytest.approx(1.5)          # not the 5 s stall


def test_the_run_totals_per_bore_are_the_samples_sums() -> None:
    """``bore_totals``/``true_bore_totals`` (the dry run's per-bore truth) add up what the
    samples carry, before their rounding: encoders on the Sun, the truth 30 arcsec east
    for half of the time (the near bore then off the Sun)."""
    samples: list[Sample] = []
    rec = Recorder(1.0, 2.0, [samples.append], two_bores())
    for k in range(101):
        m = _m(0.0)
        if (k // 10) % 2:
            m = m._replace(true_sky=_m(30.0).pointing_sky, true_error_arcsec=30.0)
        rec.record(T0_S + 0.1 * k, State.TRACKING, "main", m, True, (0.0, 0.0))
    assert len(samples) == 10
    for i, name in enumerate(("near", "far")):
        for totals, column in ((rec.bore_totals, "bores"), (rec.true_bore_totals, "true_bores")):
            logged = [decode(getattr(s, column))[name] for s in samples]
            assert totals[i][0] == pytest.approx(sum(f[2] for f in logged), abs=1e-5)
            assert totals[i][1] == pytest.approx(sum(f[3] for f in logged), abs=1e-5)
    # the near bore (10 arcsec from the axis, 36 arcsec tolerance) is off the Sun by the
    # truth while the axis is 30 arcsec east: half of the 10 s
    assert rec.bore_totals[0][0] == pytest.approx(10.0)
    assert rec.true_bore_totals[0][0] == pytest.approx(5.0)
