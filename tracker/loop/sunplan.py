"""The Sun's track and the plan around the engine's time: built at start, rebuilt when
fewer than ``TRACK_MARGIN_S`` of either remain or when the clock jumps (re-planning)."""

from __future__ import annotations

import math
import warnings

from tracker.astro.ephemeris import StaleIERSWarning, SunTrack
from tracker.config import Settings
from tracker.planning.planner import Plan
from tracker.planning.planner import plan as make_plan

#: Sun track and plan cover [t - BEHIND_S, t + AHEAD_S]; rebuilt when fewer than MARGIN_S remain.
TRACK_BEHIND_S = 86400.0
TRACK_AHEAD_S = 2 * 86400.0
TRACK_MARGIN_S = 3 * 3600.0


class SunAndPlan:
    """The Sun track (``track``) and the plan (``plan``) the engine follows; ``span`` is
    the UTC span (s) in which neither needs a rebuild (empty: check at the next tick)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.track: SunTrack | None = None
        self.plan: Plan | None = None
        self.span = (math.inf, -math.inf)
        self._iers_reported: set[str] = set()

    def replan(self) -> None:
        """Drop the plan: the next ``ensure`` plans again (after a clock jump)."""
        self.plan = None
        self.span = (math.inf, -math.inf)

    def ensure(self, t_s: float) -> list[str]:
        """Track and plan covering ``t_s`` (UTC s), rebuilt if needed; returns the stale-IERS
        warnings not reported before (other warnings pass on)."""
        tr, pl = self.track, self.plan
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", StaleIERSWarning)
            if tr is None or t_s < tr.start_s or t_s > tr.end_s - TRACK_MARGIN_S:
                site = self._settings.site
                self.track = tr = SunTrack(site.latitude_deg, site.longitude_deg,
                                           site.height_m, t_s - TRACK_BEHIND_S,
                                           t_s + TRACK_AHEAD_S)
                self.plan = pl = None
            if pl is None or t_s > pl.end_s - TRACK_MARGIN_S:
                self.plan = pl = make_plan(self._settings, tr.start_s, tr.end_s, track=tr)
        self.span = (tr.start_s, min(tr.end_s, pl.end_s) - TRACK_MARGIN_S)
        new = []
        for w in caught:
            if not issubclass(w.category, StaleIERSWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            elif str(w.message) not in self._iers_reported:
                self._iers_reported.add(str(w.message))
                new.append(str(w.message))
        return new
