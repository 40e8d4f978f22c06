"""Task -> axis demands through the named frames (sky -> mount -> encoder).

``resolve`` is pure: the task, the Sun's sky position and rates, the frames and the
previous tick's mount azimuth (for cable-wrap continuity) in; encoder-frame demands and
the sky target out.
"""

from __future__ import annotations

from typing import NamedTuple

from tracker.control.law import AxisDemand
from tracker.loop.tasks import Task, TaskKind
from tracker.mount.frames import Frames


class Demand(NamedTuple):
    """Encoder-frame demands for both axes, the sky target (az, el deg) and, for the Sun,
    the mount azimuth used (the next tick's continuity reference).  Immutable, one per tick
    (a named tuple: cheaper to build than a frozen dataclass)."""

    azimuth: AxisDemand
    elevation: AxisDemand
    target_sky: tuple[float, float]
    mount_az_deg: float


def resolve(task: Task, sun: tuple[float, float, float, float], frames: Frames, *,
            boresight: str, sun_ref_az_deg: float | None, entry_az_deg: float | None,
            here_az_deg: float) -> Demand | None:
    """Demands for ``task`` (None for HOLD and JOG, which command velocities).

    ``sun`` = (az, el, az rate, el rate): geometric sky, degrees and deg/s.
    ``sun_ref_az_deg``: last tick's mount azimuth while tracking (None at the start of a
    window: then the envelope's turn nearest ``entry_az_deg`` is taken).
    """
    kind = task.kind
    if kind is TaskKind.SUN:
        az, el, az_rate, el_rate = sun
        b = task.boresight or boresight
        if sun_ref_az_deg is None:
            sun_ref_az_deg = frames.sky_to_mount(b, az, el, near_az_deg=entry_az_deg)[0]
        m_az, m_el = frames.sky_to_mount_continuous(b, az, el, sun_ref_az_deg)
        sign = frames.elevation_sign(b)
        e_az, e_el = frames.mount_to_encoder(m_az, m_el)
        return Demand(AxisDemand(e_az, az_rate), AxisDemand(e_el, sign * el_rate), (az, el), m_az)
    if kind is TaskKind.AXES:
        target = frames.mount_to_sky(task.boresight or boresight, task.az_deg, task.el_deg)
        if task.model:
            e_az, e_el = frames.mount_to_encoder(task.az_deg, task.el_deg)
        else:
            e_az, e_el = task.az_deg, task.el_deg
        return Demand(AxisDemand(e_az), AxisDemand(e_el), target, task.az_deg)
    if kind is TaskKind.SKY:
        m_az, m_el = frames.sky_to_mount(task.boresight, task.az_deg, task.el_deg,
                                         near_az_deg=here_az_deg)
        e_az, e_el = frames.mount_to_encoder(m_az, m_el)
        return Demand(AxisDemand(e_az), AxisDemand(e_el), (task.az_deg, task.el_deg), m_az)
    return None
