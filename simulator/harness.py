"""A tracking harness on the simulator's truth: the control law and ``SimMount``, nothing else.

It closes the loop the way the engine does (same ``tracker.control.law.axis_step``
at the control rate, Sun demand and rates from ``SunTrack``), without the
engine's state machine, store or drivers, and measures the TRUE pointing error:
the great circle between the Sun and where the magnet's mechanical axis really
points (``SimMount.true_axes_deg`` through ``simulator.truth.true_direction`` and
the boresight), which the controller never sees.  The encoder-based error (what
the engine logs) is measured beside it.

The optional feed-forwards are what the engine can add around ``axis_step``:
the static deflection of the structure under the gravity unbalance and the
measured wind (``tracker.control.law.load_deflection_deg``), from a controller
model that is deliberately off the simulator's truth by ``model_error``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from simulator.mount import SimMount
from simulator.truth import true_direction
from tracker.astro.ephemeris import SunTrack
from tracker.config import Settings
from tracker.control.law import (
    AxisDemand,
    AxisLimits,
    LoadModel,
    axis_step,
    great_circle_arcsec,
    load_deflection_deg,
    nearest_turn_deg,
)
from tracker.mount.envelope import Envelope
from tracker.planning.planner import plan


@dataclass
class TrackResult:
    """True and encoder-based tracking errors after settling (arc-seconds)."""

    preset: str
    wind_mean_m_s: float
    wind_gust_m_s: float
    wind_feedforward: bool
    unbalance_feedforward: bool
    true_rms_arcsec: float
    true_max_arcsec: float
    encoder_rms_arcsec: float
    encoder_max_arcsec: float
    samples: int
    sim_s: float
    wall_s: float


def controller_load_models(settings: Settings, model_error: float = 0.1
                           ) -> tuple[LoadModel, LoadModel]:
    """The controller's (azimuth, elevation) deflection models: the simulator's, off by a factor.

    ``model_error`` 0.1 = the calibrated compliance, unbalance and wind coefficients
    are all 10 % low (a table measured on the real mount is not perfect either).
    """
    from simulator.physics import AxisDynamics

    out = []
    f = 1.0 - model_error
    for name in ("azimuth", "elevation"):
        p = getattr(settings.simulator, name)
        dyn = AxisDynamics(p.mode_hz, p.mode_damping, p.motor_inertia_fraction,
                           p.velocity_loop_hz)
        out.append(LoadModel(compliance_s2=f * dyn.compliance_s2(),
                             unbalance_deg_s2=f * p.unbalance_deg_s2,
                             wind_deg_s2_per_m2_s2=f * p.wind_deg_s2_per_m2_s2,
                             backlash_deg=f * settings.simulator.backlash_arcsec / 3600.0))
    return out[0], out[1]


def first_window(settings: Settings, start_s: float, min_length_s: float):
    """The first planned window from ``start_s`` at least ``min_length_s`` long."""
    for w in plan(settings, start_s, start_s + 3 * 86400.0).windows:
        if w.end_s - w.start_s >= min_length_s and not w.clipped_start:
            return w
    raise ValueError(f"no tracking window of {min_length_s} s within 3 days of {start_s}")


def track_sun(settings: Settings, start_s: float, duration_s: float = 1800.0, *,
              preset: str = "", wind_mean_m_s: float | None = None,
              wind_gust_m_s: float | None = None, wind_feedforward: bool = True,
              unbalance_feedforward: bool = True, settle_s: float = 120.0,
              gain_per_s: float | None = None, seed: int | None = None,
              model_error: float = 0.1, rate_feedforward: bool = True) -> TrackResult:
    """Track the Sun for ``duration_s`` from the first window after ``start_s``; errors on truth.

    The mount starts on the Sun at the window's start (no slew), the drives
    enabled; errors count after ``settle_s``.  ``wind_*``/``seed`` override the
    preset's simulator section; ``rate_feedforward=False`` drops the Sun's rates
    from the demand (position loop only).
    """
    sim_upd = {}
    if wind_mean_m_s is not None:
        sim_upd["wind_mean_m_s"] = wind_mean_m_s
    if wind_gust_m_s is not None:
        sim_upd["wind_gust_m_s"] = wind_gust_m_s
    if seed is not None:
        sim_upd["wind_seed"] = seed
    if sim_upd:
        settings = settings.model_copy(update={
            "simulator": settings.simulator.model_copy(update=sim_upd)})
    w = first_window(settings, start_s, duration_s + settle_s)
    t = w.start_s
    end_s = t + settle_s + duration_s
    track = SunTrack(settings.site.latitude_deg, settings.site.longitude_deg,
                     settings.site.height_m, t - 60.0, end_s + 60.0)
    env = settings.envelope
    geometry = Envelope.from_settings(settings)
    b = env.boresight(w.boresight)
    mount = SimMount(settings, azimuth_deg=w.entry_axis_az_deg,
                     elevation_deg=w.entry_axis_el_deg)
    for ax in mount.axes.values():
        ax.enable()
    dt = 1.0 / settings.tracking.control_rate_hz
    gain = settings.tracking.position_gain_per_s if gain_per_s is None else gain_per_s
    limits = {}
    for name, lo, hi in (("azimuth", env.azimuth_min_deg, env.azimuth_max_deg),
                         ("elevation", env.elevation_min_deg, env.elevation_max_deg)):
        lim = getattr(settings.axes, name)
        limits[name] = AxisLimits(lo, hi, lim.max_speed_deg_s, lim.max_accel_deg_s2)
    m_az, m_el = controller_load_models(settings, model_error)
    if not unbalance_feedforward:
        m_el = LoadModel(m_el.compliance_s2, 0.0, m_el.wind_deg_s2_per_m2_s2,
                         m_el.backlash_deg)
    last = {"azimuth": 0.0, "elevation": 0.0}
    az_ref = w.entry_axis_az_deg
    true_sq = enc_sq = 0.0
    true_max = enc_max = 0.0
    n = 0
    wall0 = time.perf_counter()
    a_az, a_el = mount.azimuth, mount.elevation
    while t < end_s - 1e-9:
        az, el, az_rate, el_rate = track.altaz_rates(t)
        if not rate_feedforward:
            az_rate = el_rate = 0.0
        d_az = nearest_turn_deg(az - b.azimuth_offset_deg, az_ref)
        az_ref = d_az
        d_el = b.elevation_sign * el
        anemometer = mount.wind_m_s  # the site's anemometer (3-s average)
        enc_az, enc_el = a_az.encoder_deg, a_el.encoder_deg
        defl_az, defl_el = load_deflection_deg(
            m_az, m_el, enc_el, enc_az, anemometer if wind_feedforward else 0.0,
            mount.wind_direction_deg, az_rate, b.elevation_sign * el_rate)
        if not (wind_feedforward or unbalance_feedforward):
            defl_az = defl_el = 0.0
        c_az = axis_step(limits["azimuth"], AxisDemand(d_az - defl_az, az_rate), enc_az,
                         last["azimuth"], gain, dt)
        c_el = axis_step(limits["elevation"],
                         AxisDemand(d_el - defl_el, b.elevation_sign * el_rate),
                         enc_el, last["elevation"], gain, dt)
        a_az.command_velocity(c_az.velocity_deg_s)
        a_el.command_velocity(c_el.velocity_deg_s)
        last["azimuth"], last["elevation"] = c_az.velocity_deg_s, c_el.velocity_deg_s
        mount.step(dt)
        t += dt
        if t - w.start_s < settle_s:
            continue
        sun_az, sun_el = track.altaz(t)
        t_az, t_el = true_direction(settings, *mount.true_axes_deg())
        s_az, s_el = geometry.axes_to_sky(b.name, t_az, t_el)
        e_true = great_circle_arcsec(sun_az, sun_el, s_az, s_el)
        p_az, p_el = geometry.axes_to_sky(b.name, a_az.encoder_deg, a_el.encoder_deg)
        e_enc = great_circle_arcsec(sun_az, sun_el, p_az, p_el)
        true_sq += e_true * e_true
        enc_sq += e_enc * e_enc
        true_max = max(true_max, e_true)
        enc_max = max(enc_max, e_enc)
        n += 1
    wall = time.perf_counter() - wall0
    sim = settings.simulator
    return TrackResult(preset=preset, wind_mean_m_s=sim.wind_mean_m_s,
                       wind_gust_m_s=sim.wind_gust_m_s, wind_feedforward=wind_feedforward,
                       unbalance_feedforward=unbalance_feedforward,
                       true_rms_arcsec=math.sqrt(true_sq / n) if n else float("nan"),
                       true_max_arcsec=true_max,
                       encoder_rms_arcsec=math.sqrt(enc_sq / n) if n else float("nan"),
                       encoder_max_arcsec=enc_max, samples=n,
                       sim_s=settle_s + duration_s, wall_s=wall)
