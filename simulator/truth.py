"""The simulated mount's real misalignment, and simulated calibration measurements.

``settings.simulator.misalignment`` (TPOINT-style terms, arc-seconds) is the
truth: for true encoder-frame axis positions (``SimAxis.true_position_deg``)
the magnet's mechanical axis really points at ``true_direction(...)``.
Degrees throughout; azimuth from north through east, elevation up positive.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence

import numpy as np

from simulator.mount import mount_track
from tracker import config as config_mod
from tracker.mount.calibration import (
    DEFAULT_TEMPERATURE_C,
    Measurement,
    apparent_sun_axis_direction,
    standard_pressure_hpa,
)
from tracker.mount.pointing import PointingModel

log = logging.getLogger(__name__)


def truth_model(settings: config_mod.Settings) -> PointingModel:
    """The simulated mount's real misalignment as a pointing model."""
    return PointingModel.from_misalignment(settings.simulator.misalignment)


def true_direction(settings: config_mod.Settings, az_axis_deg, el_axis_deg):
    """Where the magnet's mechanical axis really points (az, el degrees) at these axis positions.

    Azimuth stays in the input's turn.  Scalars or arrays.
    """
    return truth_model(settings).axes_to_sky(az_axis_deg, el_axis_deg)


def _sky_noise(rng: np.random.Generator, noise_arcsec: float, el_deg: float) -> tuple[float, float]:
    """(d_az, d_el) degrees for an isotropic sky error of ``noise_arcsec`` per coordinate."""
    dx, dy = rng.normal(0.0, noise_arcsec, 2) / 3600.0
    return dx / math.cos(math.radians(el_deg)), dy


def simulate_grid(settings: config_mod.Settings, points: Iterable[tuple[float, float]],
                  noise_arcsec: float = 2.0, seed: int | None = 1) -> list[Measurement]:
    """A surveyor's grid measurement on the simulated mount.

    The mount settles at each commanded point (encoder reading = the point; the
    load lies within half an encoder step of it, tilted by the track at that azimuth as
    ``SimMount`` tilts it); the surveyor measures the true mechanical-axis direction
    (geometric) with Gaussian noise of ``noise_arcsec`` per sky coordinate.
    """
    if noise_arcsec < 0:
        raise ValueError(f"noise_arcsec must be >= 0, not {noise_arcsec}")
    model = truth_model(settings)
    track = mount_track(settings)
    rng = np.random.default_rng(seed)
    q_deg = settings.simulator.encoder_resolution_arcsec / 3600.0
    rows = []
    for i, (az, el) in enumerate(points):
        load_az = az + rng.uniform(-0.5, 0.5) * q_deg
        load_el = el + rng.uniform(-0.5, 0.5) * q_deg
        pitch, roll = track.tilt_deg(float(az))
        t_az, t_el = model.axes_to_sky(float(load_az) + roll * math.tan(math.radians(load_el)),
                                       float(load_el) + pitch)
        d_az, d_el = _sky_noise(rng, noise_arcsec, t_el)
        rows.append(Measurement(kind="grid", axis_az_deg=float(az), axis_el_deg=float(el),
                                true_az_deg=t_az + d_az, true_el_deg=t_el + d_el,
                                label=f"grid point {i + 1}"))
    return rows


def _turn_inside(settings: config_mod.Settings, az_deg: float) -> float | None:
    """``az_deg`` shifted by whole turns into the azimuth range, nearest its middle (or None)."""
    env = settings.envelope
    mid = 0.5 * (env.azimuth_min_deg + env.azimuth_max_deg)
    candidates = [az_deg + 360.0 * k for k in range(-3, 4)
                  if env.azimuth_min_deg <= az_deg + 360.0 * k <= env.azimuth_max_deg]
    return min(candidates, key=lambda a: abs(a - mid)) if candidates else None


def simulate_sun_camera(settings: config_mod.Settings, times_utc_s: Sequence[float],
                        noise_arcsec: float = 2.0, seed: int | None = 1, *,
                        pressure_hpa: float | None = None, temperature_c: float | None = None,
                        boresight: str = "") -> list[Measurement]:
    """Sun-camera measurements: the operator centres the APPARENT Sun on the camera.

    For each time (UTC unix seconds) the encoder readings are those that put
    the true mechanical axis (through ``boresight``; default the first; tilted by the
    track as ``SimMount`` tilts it) on the refracted Sun, plus a centring error of
    ``noise_arcsec`` per sky coordinate.
    Times when the Sun is below the horizon or outside the envelope are skipped
    (logged).  ``pressure_hpa`` defaults to the standard pressure at the site.
    """
    if noise_arcsec < 0:
        raise ValueError(f"noise_arcsec must be >= 0, not {noise_arcsec}")
    times = np.asarray(list(times_utc_s), dtype=float)
    if times.size == 0:
        return []
    p = standard_pressure_hpa(settings.site.height_m) if pressure_hpa is None else pressure_hpa
    t_c = DEFAULT_TEMPERATURE_C if temperature_c is None else temperature_c
    b = settings.envelope.boresight(boresight) if boresight else settings.envelope.boresights[0]
    az_axis, el_axis = apparent_sun_axis_direction(settings, times, pressure_hpa=p,
                                                   temperature_c=t_c, boresight=b.name)
    model = truth_model(settings)
    track = mount_track(settings)
    env = settings.envelope
    rng = np.random.default_rng(seed)
    rows = []
    for t, az, el in zip(times, np.atleast_1d(az_axis), np.atleast_1d(el_axis), strict=True):
        if b.elevation_sign * el < 0.0:
            log.info("t=%.0f: Sun below the horizon, no camera measurement", t)
            continue
        # The true axis (encoders + the track's tilt there) on the Sun: a fixed point, the
        # tilt varying a few arc-seconds per degree.
        true_az, true_el = model.sky_to_axes(float(az), float(el))
        enc_az, enc_el = true_az, true_el
        for _ in range(3):
            pitch, roll = track.tilt_deg(enc_az)
            enc_az = true_az - roll * math.tan(math.radians(enc_el))
            enc_el = true_el - pitch
        d_az, d_el = _sky_noise(rng, noise_arcsec, float(el))
        enc_az, enc_el = enc_az - d_az, enc_el - d_el
        enc_az_in = _turn_inside(settings, enc_az)
        if enc_az_in is None or not env.elevation_min_deg <= enc_el <= env.elevation_max_deg:
            log.info("t=%.0f: Sun outside the envelope (axis az %.2f, el %.2f)", t, enc_az, enc_el)
            continue
        rows.append(Measurement(kind="sun", axis_az_deg=enc_az_in, axis_el_deg=enc_el,
                                time_utc_s=float(t), pressure_hpa=p, temperature_c=t_c,
                                boresight=b.name, label=f"sun t={t:.0f}"))
    return rows
