"""The engine's Sun track and plan: built around the time, rebuilt only near their ends."""

from __future__ import annotations

from tests.support import CONFIG_DIR
from tracker import config
from tracker.astro.timeinput import to_unix_s
from tracker.loop.sunplan import TRACK_AHEAD_S, TRACK_BEHIND_S, TRACK_MARGIN_S, SunAndPlan

SIM = config.load(CONFIG_DIR / "sim.toml")


def test_track_and_plan_cover_the_time_and_are_rebuilt_only_near_their_end() -> None:
    t0 = float(to_unix_s("2026-03-20T00:00:00Z"))
    sky = SunAndPlan(SIM)
    lo, hi = sky.span
    assert not lo <= t0 <= hi                       # nothing yet: the first tick builds
    assert sky.ensure(t0) == []
    track, plan = sky.track, sky.plan
    assert track is not None and plan is not None
    assert (track.start_s, track.end_s) == (t0 - TRACK_BEHIND_S, t0 + TRACK_AHEAD_S)
    assert sky.span == (track.start_s, min(track.end_s, plan.end_s) - TRACK_MARGIN_S)
    assert plan.window_at(plan.windows[0].start_s + 1.0) is plan.windows[0]
    inside = sky.span[1] - 1.0
    sky.ensure(inside)
    assert sky.track is track and sky.plan is plan  # still covered: no rebuild
    sky.ensure(sky.span[1] + 1.0)
    assert sky.track is not track and sky.track.start_s > track.start_s
    kept = sky.track
    sky.replan()                                    # a clock jump: plan again, keep the track
    assert sky.plan is None and not sky.span[0] <= inside <= sky.span[1]
    sky.ensure(kept.start_s + TRACK_BEHIND_S)
    assert sky.track is kept and sky.plan is not None
