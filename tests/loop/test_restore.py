"""What a restarted engine takes over from its log, as a table (``restore`` is pure)."""

from __future__ import annotations

import math

import pytest

from tracker.loop.restore import PARK_RESUME_DEG, restore

PARK = (0.0, 90.0)
AWAY = (120.0, 10.0)


def last(state: str, *, auto=None, wind=None, cause: str = "") -> dict:
    return {"state": state, "auto_tracking": auto, "wind_stowed": wind, "cause": cause,
            "time_utc": "2026-03-20T12:00:00Z"}


@pytest.mark.parametrize("log, here, expect", [
    # a new log: nothing to take over (the config's auto_track stands)
    (None, AWAY, dict(held="", auto_tracking=None, wind_stowed=False, parked=False)),
    # the flag as last logged, on or off
    (last("tracking", auto=True), AWAY, dict(auto_tracking=True, parked=False)),
    (last("manual", auto=False), AWAY, dict(auto_tracking=False)),
    (last("idle", auto="yes"), AWAY, dict(auto_tracking=None)),       # not a flag: ignored
    # a fault or e-stop not reset holds, with automatic tracking off whatever was logged
    (last("fault", auto=True, cause="azimuth: overcurrent"), AWAY,
     dict(auto_tracking=False, parked=False)),
    (last("estop", auto=True), PARK, dict(auto_tracking=False, parked=False)),
    # a wind stow stays latched, also under a held fault
    (last("stowed", auto=True, wind=True), AWAY, dict(wind_stowed=True, auto_tracking=True)),
    (last("fault", wind=True), AWAY, dict(wind_stowed=True)),
    (last("stowed", wind="true"), AWAY, dict(wind_stowed=False)),
    # a park is kept where it stands, at the park position only
    (last("parked", auto=False), PARK, dict(parked=True, warning="")),
    (last("parked", auto=True), (PARK[0] + 0.9 * PARK_RESUME_DEG, PARK[1]),
     dict(parked=True, auto_tracking=True)),
    (last("parked"), (PARK[0], PARK[1] - 1.1 * PARK_RESUME_DEG), dict(parked=False)),
    (last("parked"), (math.nan, math.nan), dict(parked=False)),
])
def test_restore_table(log, here, expect) -> None:
    r = restore(log, here, PARK)
    for name, value in expect.items():
        assert getattr(r, name) == value, name


def test_a_held_fault_names_its_cause_and_an_unparked_park_says_where_the_axes_are() -> None:
    r = restore(last("fault", cause="azimuth: overcurrent"), AWAY, PARK)
    assert r.held == ("unacknowledged fault from before the restart (azimuth: overcurrent): "
                      "holding until 'reset'")
    assert r.fault == {"source": "controller", "condition": "fault",
                       "text": "azimuth: overcurrent", "time_utc": "2026-03-20T12:00:00Z"}
    assert "see the log" in restore(last("estop"), AWAY, PARK).held
    r = restore(last("parked"), AWAY, PARK)
    assert r.warning.startswith("parked before the restart, but the axes read "
                                "(120.000, 10.000) deg, not the park position")
    assert "(unknown, unknown)" in restore(last("parked"), (math.nan, math.nan), PARK).warning
