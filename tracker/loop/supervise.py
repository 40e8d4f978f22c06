"""Supervisors: each looks at one concern and returns a verdict; none changes the task.

- ``ClockSupervisor``: steps of the UTC clock, seen against the monotonic clock;
- ``ClockTrust``: whether the clock is synchronised well enough to start tracking;
- ``DriveSupervisor``: drive conditions (a link problem must last ``COMMS_GRACE_S``);
- wind: ``tracker.loop.weather`` (the anemometer's gust/mean rule and loss fail-safe);
- ``AcquisitionSupervisor``: acquiring the Sun within its time budget, then following
  errors while tracking.

The engine calls them in that order each tick and acts on their verdicts.  Durations are
measured on the monotonic clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tracker.astro.timesync import ClockSync, clock_sync_of, may_start_tracking
from tracker.config import Settings
from tracker.mount.axis import AxisState, Condition

AXES = ("azimuth", "elevation")
#: A comms condition must persist this long before it is a fault (single lost frames are not).
COMMS_GRACE_S = 0.5
#: A UTC step this much larger than the monotonic step is a clock jump (s).
CLOCK_JUMP_S = 5.0
# Members tested every tick, as module constants (``Enum.X`` costs ~80 ns on Python 3.11:
# docs/performance.md).
_OK = Condition.OK


@dataclass(frozen=True, slots=True)
class ClockVerdict:
    """``jump_s``: the UTC step beyond the elapsed monotonic time, or None (no jump)."""

    jump_s: float | None = None


_NO_JUMP = ClockVerdict()


class ClockSupervisor:
    """Detects steps of the UTC clock: the UTC time moved differently from monotonic time."""

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None

    def check(self, t_s: float, mono_s: float) -> ClockVerdict:
        last = self._last
        self._last = (t_s, mono_s)
        if last is None:
            return _NO_JUMP
        step = (t_s - last[0]) - (mono_s - last[1])
        return ClockVerdict(step) if abs(step) > CLOCK_JUMP_S else _NO_JUMP


#: The kernel's clock state is read, and judged for automatic tracking, this often (s).
CLOCK_CHECK_PERIOD_S = 60.0


class ClockTrust:
    """May automatic tracking start with this clock?  The clock's synchronisation state
    (``timesync.clock_sync_of``) is read and judged (``may_start_tracking``) at most once
    every ``CLOCK_CHECK_PERIOD_S``; between, ``ok`` holds the last answer."""

    def __init__(self, clock: object, settings: Settings) -> None:
        self._clock = clock
        self._share = settings.clock.max_share_of_tolerance
        self._override = settings.clock.override
        self._tolerance_arcsec = settings.tracking.on_sun_tolerance_arcsec
        #: The last state read (None before the first check).
        self.sync: ClockSync | None = None
        self.ok = True
        #: Monotonic time (s) of the next check.
        self.due_mono_s = -math.inf
        self._reported = ""

    def check(self, mono_s: float, rates_deg_s: tuple[float, float]) -> str:
        """Read and judge the clock now (the Sun's az/el rates in deg/s set the budget);
        returns the warning to log: a reason not reported before (once per reason), or ""."""
        self.due_mono_s = mono_s + CLOCK_CHECK_PERIOD_S
        self.sync = sync = clock_sync_of(self._clock)
        self.ok, why = may_start_tracking(sync, self._share, self._tolerance_arcsec,
                                          rates_deg_s, override=self._override)
        report, self._reported = (why if why != self._reported else ""), why
        if not report:
            return ""
        return ("clock not trusted, automatic tracking will not start: " if not self.ok
                else "clock not trusted (overridden): ") + report


@dataclass(frozen=True, slots=True)
class DriveVerdict:
    """Drives that are not OK now (link problems only after the grace time)."""

    problems: tuple[tuple[str, AxisState], ...] = ()
    estop: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        return "; ".join(f"{n}: {st.condition.value}"
                         + (f" ({st.fault_text})" if st.fault_text
                            and st.fault_text != st.condition.value else "")
                         for n, st in self.problems)


_DRIVES_OK = DriveVerdict()


class DriveSupervisor:
    """Turns both axes' readings into a verdict, with a grace time for link problems."""

    def __init__(self) -> None:
        self._comms_since: dict[str, float] = {}

    def check(self, mono_s: float, states: dict[str, AxisState]) -> DriveVerdict:
        if (not self._comms_since and states["azimuth"].condition is _OK
                and states["elevation"].condition is _OK):
            return _DRIVES_OK
        problems = []
        estop = False
        for name in AXES:
            st = states[name]
            if st.condition is Condition.OK:
                self._comms_since.pop(name, None)
                continue
            if st.condition.is_comms:
                since = self._comms_since.setdefault(name, mono_s)
                if mono_s - since < COMMS_GRACE_S:
                    continue
            estop |= st.condition is Condition.ESTOP
            problems.append((name, st))
        return DriveVerdict(tuple(problems), estop)

    def clear(self) -> None:
        self._comms_since.clear()


@dataclass(frozen=True, slots=True)
class AcquisitionVerdict:
    """``acquired``: first within tolerance on the demanded turn; ``fault``: the reason an
    acquisition ran out of time or a following error lasted too long ("" if none)."""

    acquired: bool = False
    fault: str = ""


_NOTHING = AcquisitionVerdict()
_ACQUIRED = AcquisitionVerdict(acquired=True)


@dataclass(slots=True)
class AcquisitionSupervisor:
    """Acquisition budget and following-error supervision for one window.

    Until the mount first reaches the Sun (error within tolerance, on the demanded cable
    wrap turn) it has ``deadline_mono_s`` to get there; from then on an error above the
    following-error limit for longer than the grace time, after the settle time, is a fault.
    """

    settings: Settings
    deadline_mono_s: float | None = None
    on_target_mono_s: float | None = None
    _ferr_since: float | None = field(default=None)

    def start(self, deadline_mono_s: float | None) -> None:
        self.deadline_mono_s = deadline_mono_s
        self.on_target_mono_s = None
        self._ferr_since = None

    def settled(self, mono_s: float) -> bool:
        """True once on the Sun for at least the settle time."""
        return (self.on_target_mono_s is not None
                and mono_s - self.on_target_mono_s >= self.settings.tracking.settle_s)

    def check_acquiring(self, mono_s: float, error_arcsec: float, on_demanded_turn: bool
                        ) -> AcquisitionVerdict:
        tr = self.settings.tracking
        if error_arcsec <= tr.on_sun_tolerance_arcsec and on_demanded_turn:
            self.on_target_mono_s = mono_s
            return _ACQUIRED
        if self.deadline_mono_s is not None and mono_s > self.deadline_mono_s:
            return AcquisitionVerdict(fault=f"acquisition timed out: pointing error "
                                      f"{error_arcsec:.0f} arcsec at the end of the slew "
                                      f"budget")
        return _NOTHING

    def check_tracking(self, mono_s: float, error_arcsec: float) -> AcquisitionVerdict:
        tr = self.settings.tracking
        if not self.settled(mono_s):
            return _NOTHING
        if error_arcsec > tr.following_error_limit_arcsec:
            if self._ferr_since is None:
                self._ferr_since = mono_s
            elif mono_s - self._ferr_since > tr.following_error_grace_s:
                return AcquisitionVerdict(fault=(
                    f"following error: {error_arcsec:.0f} arcsec for more than "
                    f"{tr.following_error_grace_s:g} s (limit "
                    f"{tr.following_error_limit_arcsec:g})"))
        else:
            self._ferr_since = None
        return _NOTHING
