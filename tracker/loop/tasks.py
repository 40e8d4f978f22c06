"""What the axes should do: the task the automation or an operator gave them."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class TaskKind(enum.StrEnum):
    HOLD = "hold"    # zero velocity (ramped)
    SUN = "sun"      # follow the Sun with a boresight
    AXES = "axes"    # go to mount angles (park, stow, pre-position)
    SKY = "sky"      # go to a fixed sky direction with a boresight
    JOG = "jog"      # one axis at a constant rate for a while


@dataclass(frozen=True, slots=True)
class Task:
    """A task.  ``az_deg, el_deg``: mount angles (AXES) or sky direction (SKY), degrees.

    ``model``: AXES angles are ideal mount angles derived from the sky, to which the pointing
    model applies.  JOG: ``jog_axis`` ("azimuth"/"elevation") at ``jog_rate_deg_s`` until
    ``until_monotonic_s`` on the clock's monotonic time (a wall-clock step cannot prolong it).
    """

    kind: TaskKind
    az_deg: float = 0.0
    el_deg: float = 0.0
    boresight: str = ""
    model: bool = False
    jog_axis: str = ""
    jog_rate_deg_s: float = 0.0
    until_monotonic_s: float = 0.0

    @property
    def moves(self) -> bool:
        """True for a task that moves the axes to somewhere (not HOLD)."""
        return self.kind is not TaskKind.HOLD


HOLD = Task(TaskKind.HOLD)
