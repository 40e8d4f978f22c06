"""What a restarted engine takes over from its log (``TrackingStore.last_state``): an
unacknowledged fault, the automatic-tracking flag, a wind stow and a park.  Pure.

The rule: nothing an operator stopped, held or parked moves because the process restarted.
A fault or e-stop not reset holds (automatic tracking off); the flag is the last one
logged, on or off; a wind stow stays latched (the restarted wind monitor has no history);
a park is kept if both axes are still at the park position, without moving.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: A mount parked before a restart is parked again if both axes are this close to the
#: park position (deg, encoder), without moving; farther away it holds in idle.
PARK_RESUME_DEG = 0.1


@dataclass(frozen=True, slots=True)
class Restore:
    """What to restore: ``held``, the fault text to hold on ("" none) and ``fault``, its
    record; ``auto_tracking`` (None: the config's start-up value, a new log);
    ``wind_stowed``; ``parked``, park again where it stands; ``warning``, to log."""

    held: str = ""
    fault: dict[str, Any] = field(default_factory=dict)
    auto_tracking: bool | None = None
    wind_stowed: bool = False
    parked: bool = False
    warning: str = ""


def restore(last: Mapping[str, Any] | None, here_deg: tuple[float, float],
            park_deg: tuple[float, float]) -> Restore:
    """``last``: ``TrackingStore.last_state()`` (None: a new log); ``here_deg``: the axes'
    readings now and ``park_deg`` the park position, both encoder degrees (az, el)."""
    if last is None:
        return Restore()
    state = last.get("state")
    wind = last.get("wind_stowed") is True
    if state in ("fault", "estop"):
        cause = last.get("cause") or ""
        return Restore(
            held=(f"unacknowledged {state} from before the restart "
                  f"({cause or 'see the log'}): holding until 'reset'"),
            fault={"source": "controller", "condition": state, "text": cause,
                   "time_utc": last.get("time_utc")},
            auto_tracking=False, wind_stowed=wind)
    flag = last.get("auto_tracking")
    auto = flag if isinstance(flag, bool) else None
    if state != "parked":
        return Restore(auto_tracking=auto, wind_stowed=wind)
    if all(abs(h - p) <= PARK_RESUME_DEG for h, p in zip(here_deg, park_deg, strict=True)):
        return Restore(auto_tracking=auto, wind_stowed=wind, parked=True)
    az, el = (f"{x:.3f}" if math.isfinite(x) else "unknown" for x in here_deg)
    return Restore(auto_tracking=auto, wind_stowed=wind, warning=(
        f"parked before the restart, but the axes read ({az}, {el}) deg, not the park "
        "position: holding in idle ('park' to park again)"))
