"""Time integrity: how far the system clock can be trusted, and what that costs in pointing.

The kernel keeps the clock discipline's state (NTP, chrony, PTP daemons feed it) and
hands it out read-only through ``adjtimex(2)`` / ``ntp_adjtime(3)`` with ``modes = 0``
(no privileges needed):

- ``status & STA_UNSYNC`` (0x0040): the clock is not synchronised;
- ``maxerror`` / ``esterror``: maximum and estimated error, microseconds (the kernel
  grows ``maxerror`` by 500 ppm between updates and caps it at 16 s);
- the return value, the clock state; ``TIME_ERROR`` (5) means not synchronised (or
  a PPS problem).

``read_clock_sync(query)`` turns that into a ``ClockSync``; ``query`` defaults to the
real ``adjtimex`` call (``kernel_clock_state``) and is injectable, so tests choose the
kernel's answer.  Simulated clocks report ``ClockSync.simulated()``.

A clock error of ``dt`` seconds points the mount where the Sun was (or will be) ``dt``
earlier (later): ``clock_pointing_budget_arcsec`` is that angle, at most about 15
arcsec per second of clock error (the Sun's apparent motion, 360 deg a day).
``may_start_tracking`` is the policy: refuse automatic tracking while the clock's
worst-case pointing error exceeds a share of the on-Sun tolerance.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import overload

import numpy as np
import numpy.typing as npt

#: ``adjtimex`` status bit: clock not synchronised.
STA_UNSYNC = 0x0040
#: ``adjtimex`` clock states (return values).
TIME_STATES = {0: "TIME_OK", 1: "TIME_INS", 2: "TIME_DEL", 3: "TIME_OOP", 4: "TIME_WAIT",
               5: "TIME_ERROR"}
TIME_ERROR = 5
#: The Sun's apparent angular speed at most: 360 degrees per solar day, deg/s (15 arcsec/s).
SUN_MAX_RATE_DEG_S = 360.0 / 86400.0
ARCSEC_PER_DEG = 3600.0


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class Timex(ctypes.Structure):
    """Linux ``struct timex`` (``<sys/timex.h>``), 64-bit layout with its reserved tail."""

    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long), ("time", _Timeval), ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


@dataclass(frozen=True, slots=True)
class KernelClockState:
    """The raw answer of ``adjtimex`` (modes = 0): clock state, status bits, errors in us."""

    state: int
    status: int
    max_error_us: int
    est_error_us: int


@dataclass(frozen=True, slots=True)
class ClockSync:
    """How far the clock can be trusted.

    ``max_error_s`` is the worst-case error (inf when unknown), ``est_error_s`` the
    estimated one, both seconds; ``source`` says who answered (``adjtimex``,
    ``simulated``, ``unavailable``); ``detail`` the kernel state or why unknown.
    """

    synchronised: bool
    est_error_s: float
    max_error_s: float
    source: str
    detail: str = ""

    @classmethod
    def simulated(cls, *, max_error_s: float = 0.0, est_error_s: float = 0.0,
                  synchronised: bool = True, detail: str = "simulated clock") -> ClockSync:
        """A simulated clock's own state (exact unless told otherwise)."""
        return cls(synchronised=synchronised, est_error_s=est_error_s, max_error_s=max_error_s,
                   source="simulated", detail=detail)

    @classmethod
    def unavailable(cls, why: str) -> ClockSync:
        return cls(synchronised=False, est_error_s=math.inf, max_error_s=math.inf,
                   source="unavailable", detail=why)

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly (inf becomes None) for the status and the log."""
        def num(x: float) -> float | None:
            return x if math.isfinite(x) else None
        return {"synchronised": self.synchronised, "est_error_s": num(self.est_error_s),
                "max_error_s": num(self.max_error_s), "source": self.source,
                "detail": self.detail}


def kernel_clock_state() -> KernelClockState:
    """Ask the kernel (``adjtimex`` with ``modes = 0``: read only).  Raises ``OSError``."""
    name = ctypes.util.find_library("c") or "libc.so.6"
    libc = ctypes.CDLL(name, use_errno=True)
    fn = getattr(libc, "adjtimex", None) or libc.ntp_adjtime
    fn.argtypes = [ctypes.POINTER(Timex)]
    fn.restype = ctypes.c_int
    tx = Timex()
    tx.modes = 0
    state = fn(ctypes.byref(tx))
    if state < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"adjtimex failed: {os.strerror(err)}")
    return KernelClockState(state=state, status=tx.status, max_error_us=tx.maxerror,
                            est_error_us=tx.esterror)


def clock_sync_from_kernel(k: KernelClockState) -> ClockSync:
    """Interpret the kernel's answer (pure)."""
    unsync = bool(k.status & STA_UNSYNC)
    synced = not unsync and k.state != TIME_ERROR
    name = TIME_STATES.get(k.state, f"state {k.state}")
    detail = name + (", STA_UNSYNC" if unsync else "")
    return ClockSync(synchronised=synced, est_error_s=k.est_error_us * 1e-6,
                     max_error_s=k.max_error_us * 1e-6, source="adjtimex", detail=detail)


def read_clock_sync(query: Callable[[], KernelClockState] = kernel_clock_state) -> ClockSync:
    """The kernel's clock-synchronisation state; ``unavailable`` (never an exception) when
    it cannot be read (not Linux, no libc ``adjtimex``)."""
    try:
        k = query()
    except (OSError, AttributeError) as exc:
        return ClockSync.unavailable(f"cannot read the kernel clock state: {exc}")
    return clock_sync_from_kernel(k)


def clock_sync_of(clock: object,
                  query: Callable[[], KernelClockState] = kernel_clock_state) -> ClockSync:
    """The synchronisation state of the clock the engine runs on.

    Simulated clocks report their own state: a ``tracker.clock.SimClock`` (dry runs)
    and a shifted ``SystemClock`` (``--time-offset-s``, simulated drives only) are
    ``ClockSync.simulated``; an object with a ``clock_sync()`` method answers itself;
    anything else (the system clock, a plain callable) is the kernel's state.
    """
    from tracker.clock import SimClock, SystemClock

    if isinstance(clock, SimClock):
        return ClockSync.simulated(detail="simulated clock (dry run)")
    if isinstance(clock, SystemClock) and clock.offset_s != 0.0:
        return ClockSync.simulated(
            detail=f"system clock shifted by {clock.offset_s:+.3f} s (simulated drives)")
    own = getattr(clock, "clock_sync", None)
    if callable(own):
        sync: ClockSync = own()  # the clock's own answer (duck-typed: getattr gives Any)
        return sync
    return read_clock_sync(query)


@overload
def clock_pointing_budget_arcsec(max_error_s: float, az_rate_deg_s: float,
                                 el_rate_deg_s: float) -> float: ...
@overload
def clock_pointing_budget_arcsec(max_error_s: npt.ArrayLike, az_rate_deg_s: npt.ArrayLike,
                                 el_rate_deg_s: npt.ArrayLike
                                 ) -> float | npt.NDArray[np.float64]: ...
def clock_pointing_budget_arcsec(max_error_s: npt.ArrayLike, az_rate_deg_s: npt.ArrayLike,
                                 el_rate_deg_s: npt.ArrayLike
                                 ) -> float | npt.NDArray[np.float64]:
    """Pointing error (arcsec) a clock error of ``max_error_s`` seconds causes while the
    target moves at (``az_rate_deg_s``, ``el_rate_deg_s``) in axis coordinates.

    The error is ``|dt| * hypot(az_rate, el_rate)``, the displacement in axis space
    (it bounds the on-sky displacement, which carries cos(el) on the azimuth term).
    For the Sun it is at most ~15 arcsec per second of clock error at helioscope
    elevations.  Scalars or arrays; inf stays inf.
    """
    dt = np.abs(np.asarray(max_error_s, dtype=np.float64))
    rate = np.hypot(np.asarray(az_rate_deg_s, dtype=np.float64),
                    np.asarray(el_rate_deg_s, dtype=np.float64))
    out: npt.NDArray[np.float64] = dt * rate * ARCSEC_PER_DEG
    return float(out) if np.ndim(out) == 0 else out


def may_start_tracking(sync: ClockSync, budget_share: float, on_sun_tolerance_arcsec: float,
                       rates: tuple[float, float] | None = None, *,
                       override: bool = False) -> tuple[bool, str]:
    """May automatic tracking start with this clock?  ``(allowed, reason)`` (pure).

    Refused when the clock is not synchronised, or when its worst-case pointing error
    (``clock_pointing_budget_arcsec(sync.max_error_s, *rates)``) exceeds
    ``budget_share * on_sun_tolerance_arcsec``.  ``rates`` (az, el deg/s) default to the
    Sun's fastest apparent motion.  ``override`` (an operator's decision) allows it but
    the reason still says what is wrong.  The reason is empty when all is well.
    """
    if not (0 < budget_share <= 1):
        raise ValueError(f"budget_share must lie in (0, 1], not {budget_share}")
    if not (math.isfinite(on_sun_tolerance_arcsec) and on_sun_tolerance_arcsec > 0):
        raise ValueError(f"on_sun_tolerance_arcsec must be > 0, not {on_sun_tolerance_arcsec}")
    az_rate, el_rate = rates if rates is not None else (SUN_MAX_RATE_DEG_S, 0.0)
    allowed_arcsec = budget_share * on_sun_tolerance_arcsec
    problem = ""
    if not sync.synchronised:
        problem = f"system clock not synchronised ({sync.source}: {sync.detail})"
    else:
        budget = clock_pointing_budget_arcsec(sync.max_error_s, az_rate, el_rate)
        if not budget <= allowed_arcsec:
            problem = (f"clock maximum error {sync.max_error_s:.3g} s gives up to "
                       f"{budget:.1f} arcsec of pointing error, more than "
                       f"{budget_share:.0%} of the {on_sun_tolerance_arcsec:g} arcsec on-Sun "
                       f"tolerance ({allowed_arcsec:.1f} arcsec)")
    if not problem:
        return True, ""
    if override:
        return True, f"operator override: tracking although {problem}"
    return False, f"automatic tracking refused: {problem}"


__all__ = ["STA_UNSYNC", "SUN_MAX_RATE_DEG_S", "TIME_ERROR", "ClockSync", "KernelClockState",
           "Timex", "clock_pointing_budget_arcsec", "clock_sync_from_kernel", "clock_sync_of",
           "kernel_clock_state", "may_start_tracking", "read_clock_sync"]
