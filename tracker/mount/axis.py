"""The one asynchronous interface the controller uses for any axis drive.

Implementations: ``simulator.axis.SimulatedAxis`` (in process), ``drivers.modbus``
(Modbus TCP/RTU drives) and ``drivers.serial`` (ASCII motion controller).  Which
one is used is chosen from the config when connecting; the controller code is the
same for all of them.

Rules every implementation keeps:
- Positions are axis degrees (azimuth axis from north through east, possibly
  outside [0, 360) on a cable wrap; elevation axis up positive), velocities deg/s.
- A device problem (timeout, lost link, garbled frame, drive fault) never raises
  into the control loop: it is reported in the returned ``AxisState``.
- Every command also refreshes the drive's watchdog (heartbeat).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class Condition(enum.Enum):
    """Named condition of an axis, as the driver sees it.  ``OK`` means none."""

    OK = "ok"
    # On the wire
    LINK_DOWN = "link_down"                  # connection lost / port closed; reconnecting
    TIMEOUT = "timeout"                      # no answer within the configured timeout
    GARBLED_FRAME = "garbled_frame"          # bad CRC / checksum / unparseable reply
    PROTOCOL_EXCEPTION = "protocol_exception"  # device answered with an exception code
    # In the drive
    OVERCURRENT = "overcurrent"
    OVERTEMPERATURE = "overtemperature"
    FOLLOWING_ERROR = "following_error"      # drive's own following-error trip
    ESTOP = "estop"                          # safe torque off / emergency stop chain open
    LIMIT_SWITCH = "limit_switch"            # hard limit switch hit
    ENCODER_JUMP = "encoder_jump"            # position jumped more than physically possible
    WATCHDOG = "watchdog"                    # controller heartbeat lost; drive ramped to zero
    DRIVE_FAULT = "drive_fault"              # any other drive fault code

    @property
    def is_comms(self) -> bool:
        """True for conditions of the link, not of the drive itself."""
        return self in (Condition.LINK_DOWN, Condition.TIMEOUT, Condition.GARBLED_FRAME,
                        Condition.PROTOCOL_EXCEPTION)


class Limit(enum.Enum):
    """Which limit, if any, the axis is at."""

    NONE = "none"
    SOFT_LOW = "soft_low"
    SOFT_HIGH = "soft_high"
    HARD_LOW = "hard_low"
    HARD_HIGH = "hard_high"


@dataclass(slots=True)
class AxisState:
    """One reading of an axis (treat as immutable: a new one is made for every reading).

    Not a frozen dataclass only because those cost three times as much to build,
    and the control loop builds two every tick.

    ``timestamp_s`` is the time of the reading on the caller's clock (UTC unix
    seconds, simulated in dry runs).  When ``condition`` is a comms condition the
    position and velocity are the last good values and ``fresh`` is False.
    """

    name: str
    position_deg: float
    velocity_deg_s: float
    enabled: bool
    moving: bool
    limit: Limit
    condition: Condition
    fault_code: int
    fault_text: str
    timestamp_s: float
    fresh: bool = True

    @property
    def ok(self) -> bool:
        return self.condition is Condition.OK


def stale_state(name: str, last: AxisState | None, condition: Condition, text: str,
                timestamp_s: float) -> AxisState:
    """A reading for a link problem: the last good values (NaN position before the first),
    ``condition`` and ``text``, and ``fresh=False``."""
    return AxisState(
        name=name,
        position_deg=last.position_deg if last else float("nan"),
        velocity_deg_s=last.velocity_deg_s if last else 0.0,
        enabled=last.enabled if last else False,
        moving=last.moving if last else False,
        limit=last.limit if last else Limit.NONE,
        condition=condition, fault_code=0, fault_text=text,
        timestamp_s=timestamp_s, fresh=False)


@runtime_checkable
class Axis(Protocol):
    """An axis drive.  All methods are coroutines and never raise for device problems."""

    name: str

    async def connect(self) -> None:
        """Open the link (idempotent).  Failure shows as ``LINK_DOWN`` in ``read()``."""

    async def close(self) -> None:
        """Close the link; the drive's watchdog will then stop the axis."""

    async def read(self) -> AxisState:
        """Current position, velocity, flags and condition."""

    async def command_velocity(self, velocity_deg_s: float) -> None:
        """Run at this velocity (deg/s, sign = direction) until the next command."""

    async def command_position(self, position_deg: float, speed_deg_s: float) -> None:
        """Move to this axis position at no more than ``speed_deg_s``, then hold."""

    async def stop(self) -> None:
        """Ramp to zero velocity with the drive's deceleration and hold."""

    async def enable(self) -> None:
        """Release the brake and energise the drive."""

    async def disable(self) -> None:
        """Ramp to zero, then apply the brake and de-energise."""

    async def reset(self) -> None:
        """Acknowledge and clear a drive fault (the axis stays stopped)."""


#: Drive fault codes on the wire (Modbus fault register, serial ``F`` field) -> condition.
#: 0 means no fault.  Unknown non-zero codes map to ``Condition.DRIVE_FAULT``.
FAULT_CODES: dict[int, Condition] = {
    1: Condition.OVERCURRENT,
    2: Condition.OVERTEMPERATURE,
    3: Condition.FOLLOWING_ERROR,
    4: Condition.ESTOP,
    5: Condition.LIMIT_SWITCH,
    6: Condition.ENCODER_JUMP,
    7: Condition.WATCHDOG,
}
CONDITION_CODES: dict[Condition, int] = {c: n for n, c in FAULT_CODES.items()}


def condition_for_code(code: int) -> Condition:
    """The condition a drive fault code stands for (0 -> OK)."""
    if code == 0:
        return Condition.OK
    return FAULT_CODES.get(code, Condition.DRIVE_FAULT)
