"""The three frames a direction passes through, one function per transform.

- **sky**: geometric topocentric (azimuth from north through east, elevation up; degrees;
  no refraction) of one boresight's line of sight;
- **mount**: the mechanical axis angles that point that boresight there (the boresight's
  fixed azimuth offset and elevation sign applied; on a cable wrap the azimuth keeps its
  turn, so it is not reduced mod 360);
- **encoder**: what the axis encoders read when the mechanical axis is at a mount angle
  (the pointing model's terms).

``sky -> mount`` is ``Envelope`` geometry, ``mount -> encoder`` is the ``PointingModel``.
"""

from __future__ import annotations

from tracker.control.law import nearest_turn_deg
from tracker.mount.envelope import Envelope
from tracker.mount.pointing import PointingModel


class Frames:
    """Transforms between the sky, mount and encoder frames for one envelope and model."""

    def __init__(self, envelope: Envelope, pointing: PointingModel) -> None:
        self.envelope = envelope
        self.pointing = pointing
        #: boresight -> (azimuth offset deg, elevation sign), for the scalar fast path.
        self._geometry: dict[str, tuple[float, float]] = {}

    def _bs(self, boresight: str) -> tuple[float, float]:
        g = self._geometry.get(boresight)
        if g is None:
            b = self.envelope.boresight(boresight)
            g = self._geometry[boresight] = (b.azimuth_offset_deg, float(b.elevation_sign))
        return g

    def sky_to_mount(self, boresight: str, az_deg: float, el_deg: float, *,
                     near_az_deg: float | None = None) -> tuple[float, float]:
        """Mount angles pointing ``boresight`` at the sky direction, inside the envelope.

        On a cable wrap the turn nearest ``near_az_deg``; ``EnvelopeError`` if none fits.
        """
        return self.envelope.sky_to_axes(boresight, az_deg, el_deg, near_az_deg=near_az_deg)

    def sky_to_mount_continuous(self, boresight: str, az_deg: float, el_deg: float,
                                ref_az_deg: float) -> tuple[float, float]:
        """Mount angles for a moving target: the azimuth turn nearest ``ref_az_deg`` (the
        previous tick's), with no envelope check, so a tracked azimuth never jumps 360 deg."""
        offset, sign = self._bs(boresight)
        return nearest_turn_deg(az_deg - offset, ref_az_deg), sign * el_deg

    def mount_to_sky(self, boresight: str, az_deg: float, el_deg: float) -> tuple[float, float]:
        """Sky direction (azimuth in [0, 360)) of ``boresight`` at these mount angles."""
        offset, sign = self._bs(boresight)
        return (az_deg + offset) % 360.0, sign * el_deg

    def elevation_sign(self, boresight: str) -> float:
        """+1 or -1: the sign from the boresight's sky elevation to the mount elevation."""
        return self._bs(boresight)[1]

    def mount_to_encoder(self, az_deg: float, el_deg: float) -> tuple[float, float]:
        """Encoder readings at which the mechanical axis is at these mount angles."""
        az, el = self.pointing.sky_to_axes(az_deg, el_deg)
        return float(az), float(el)

    def encoder_to_mount(self, az_deg: float, el_deg: float) -> tuple[float, float]:
        """Mount angles of the mechanical axis for these encoder readings."""
        az, el = self.pointing.axes_to_sky(az_deg, el_deg)
        return float(az), float(el)

    def encoder_to_sky(self, boresight: str, az_deg: float, el_deg: float) -> tuple[float, float]:
        """Sky direction of ``boresight`` for these encoder readings
        (``mount_to_sky`` of ``encoder_to_mount``, in one call)."""
        m_az, m_el = self.pointing.axes_to_sky(az_deg, el_deg)
        offset, sign = self._bs(boresight)
        return (float(m_az) + offset) % 360.0, sign * float(m_el)
