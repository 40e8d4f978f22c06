"""Synthetic but realistic tracking-log rows and days, for the store and exposure tests."""

from __future__ import annotations

import math

import numpy as np

from tracker import config
from tracker.log.store import Sample, TrackingStore
from tracker.mount.bores import BoreSet

T0_S = 1_782_864_000.0  # 2026-07-01T00:00:00Z


def sample(t_s: float, *, dt_s: float = 1.0, state: str = "tracking", boresight: str = "main",
           error_arcsec: float = 2.0, d_az_arcsec: float = 0.0, d_el_arcsec: float = 0.0,
           tolerance_arcsec: float = 36.0, az_deg: float = 120.0, el_deg: float = 10.0) -> Sample:
    """A realistic row: target at (az, el), measured offset by (d_az on the sky, d_el)."""
    meas_az = az_deg + d_az_arcsec / 3600.0 / math.cos(math.radians(el_deg))
    meas_el = el_deg + d_el_arcsec / 3600.0
    on_sun = dt_s if (state == "tracking" and error_arcsec <= tolerance_arcsec) else 0.0
    return Sample(t_s, dt_s, state, boresight, az_deg, el_deg, meas_az, meas_el,
                  meas_az, meas_el, error_arcsec, error_arcsec * 1.2, on_sun)


def write_day(store: TrackingStore, t_start_s: float, *, windows=((6 * 3600, 3 * 3600, "main"),),
              dt_s: float = 1.0, error_arcsec: float = 2.0, seed: int = 1) -> None:
    """A synthetic but realistic day: parked, slew, waiting, tracking windows, park."""
    rng = np.random.default_rng(seed)
    store.log_event(t_start_s, "state", "off -> parked: start",
                    data={"from": "off", "to": "parked", "cause": "start", "auto_tracking": True})
    t = t_start_s
    for w_start, w_len, bs in windows:
        for state, until in (("parked", w_start - 900), ("slewing", w_start - 300),
                             ("waiting", w_start), ("tracking", w_start + w_len)):
            store.log_event(t, "state", f"-> {state}", data={"to": state, "cause": "plan"})
            while t < t_start_s + until:
                t += dt_s
                frac = (t - t_start_s - w_start) / max(w_len, 1)
                el = -5 + 20 * frac
                az = 90 + 40 * frac
                err = abs(rng.normal(0, error_arcsec)) if state == "tracking" else 500.0
                store.add_sample(sample(t, dt_s=dt_s, state=state, boresight=bs,
                                        error_arcsec=err, d_az_arcsec=0.7, d_el_arcsec=-0.4,
                                        az_deg=az, el_deg=el))
        store.log_event(t, "state", "-> parked", data={"to": "parked", "cause": "window end"})
    store.flush()


def sample_array(rows) -> np.ndarray:
    """Rows given as tuples of the first (older) sample columns as a ``SAMPLE_DTYPE`` array:
    the newer nullable columns (per-bore figures, ...) read as NULL, as in an older log."""
    from dataclasses import MISSING, fields

    from tracker.log.store import SAMPLE_DTYPE
    tail = [f.default if f.default is not MISSING else None for f in fields(Sample)]
    return np.array([tuple(r) + tuple(tail[len(r):]) for r in rows], dtype=SAMPLE_DTYPE)


def two_bores() -> BoreSet:
    """Bores "near" (10 arcsec east of the mechanical axis) and "far" (40 arcsec west), both
    36 arcsec on-Sun tolerance, efficiency 1.0 -> 0.9 at 60 arcsec -> 0 at 300 arcsec."""
    table = {"efficiency_off_axis_arcsec": [0.0, 60.0, 300.0], "efficiency": [1.0, 0.9, 0.0]}
    return BoreSet.from_config([
        config.Bore(name="near", offset_x_arcsec=10.0, on_sun_tolerance_arcsec=36.0, **table),
        config.Bore(name="far", offset_x_arcsec=-40.0, on_sun_tolerance_arcsec=36.0, **table)])
