"""The status snapshot every interface reads (HTTP API, Alpaca, the page, Tango, OPC UA).

``snapshot(engine)`` is built once per tick by the daemon; readers never touch the engine.
Angles in degrees (sky frame for ``sun``, ``pointing``, ``target``; mount/encoder frame for
``axes``), errors in arc-seconds, times UTC.
"""

from __future__ import annotations

import math
import weakref
from typing import TYPE_CHECKING, Any

from tracker.control.machine import State
from tracker.loop.recorder import target_sky
from tracker.loop.supervise import AXES
from tracker.loop.tasks import TaskKind
from tracker.timefmt import iso_utc

if TYPE_CHECKING:
    from tracker.loop.engine import Engine

#: States in which the mount is moving to somewhere (Alpaca's Slewing).
SLEWING_STATES = (State.SLEWING, State.PARKING, State.STOWING, State.ACQUIRING)


def _num(x: float) -> float | None:
    return None if x != x or math.isinf(x) else x


#: Per engine: (UTC s, data ages) of its last ``data_ages`` (kept here, not on the engine).
_AGES: weakref.WeakKeyDictionary[Engine, tuple[float, dict[str, Any]]] = (
    weakref.WeakKeyDictionary())


def data_ages(engine: Engine, t: float) -> dict[str, Any]:
    """IERS table, leap seconds and ephemeris ages (recomputed at most once a minute)."""
    cached = _AGES.get(engine)
    if cached is None or t - cached[0] > 60.0 or t < cached[0]:
        from tracker.astro.datasources import data_sources
        d = data_sources(t)
        iers, leap = d.get("iers_table", {}), d.get("leap_seconds", {})
        ages = {"iers_last_date": iers.get("last_date"), "iers_age_days": iers.get("age_days"),
                "iers_days_left": iers.get("days_left"),
                "ut1_uncertainty_s": iers.get("ut1_uncertainty_now_s"),
                "leap_seconds_expire": leap.get("expires"),
                "leap_seconds_expired": leap.get("expired"),
                "astropy_iers_data": d.get("astropy_iers_data")}
        _AGES[engine] = cached = (t, ages)
    return cached[1]


def snapshot(engine: Engine) -> dict[str, Any]:
    """A JSON-able snapshot of the controller (see docs/daemon.md)."""
    t = engine.clock.now_s()
    sun = engine.sun
    plan = engine.plan_now
    nxt = plan.next_window(t) if plan else None
    axes = {}
    for name in AXES:
        st = engine.axis_states.get(name)
        if st is None:
            continue
        axes[name] = {"position_deg": st.position_deg, "velocity_deg_s": st.velocity_deg_s,
                      "enabled": st.enabled, "moving": st.moving, "limit": st.limit.value,
                      "condition": st.condition.value, "fault_text": st.fault_text,
                      "fresh": st.fresh, "age_s": t - st.timestamp_s}
    state = engine.machine.state
    task = engine.task
    moving_task = state is State.MANUAL and (
        task.kind is TaskKind.JOG or (task.kind in (TaskKind.SKY, TaskKind.AXES)
                                      and not engine.arrived))
    store = engine.store
    m = engine.measurement
    # The target of the task in effect now (a command changes it between ticks).
    target = target_sky(task, sun, engine.frames, engine.boresight)
    return {
        "time_utc": iso_utc(t),
        "state": state.value,
        "auto_tracking": engine.auto_tracking,
        "boresight": engine.boresight,
        "task": task.kind.value,
        "sun": {"azimuth_deg": sun[0], "elevation_deg": sun[1],
                "azimuth_rate_deg_s": sun[2], "elevation_rate_deg_s": sun[3]},
        "axes": axes,
        "pointing": {"az_deg": _num(m.pointing_sky[0]), "el_deg": _num(m.pointing_sky[1])},
        "target": {"az_deg": _num(target[0]), "el_deg": _num(target[1])},
        "pointing_error_arcsec": _num(m.error_arcsec),
        "true_error_arcsec": _num(m.true_error_arcsec),
        "on_sun": engine.on_sun,
        "current_window": engine.window.to_json() if engine.window else None,
        "next_window": nxt.to_json() if nxt else None,
        "faults": list(engine.faults),
        "fault_pending": engine.fault_pending,
        "wind_m_s": engine.wind_m_s,
        "wind_stowed": engine.wind_stowed,
        "wind": engine.wind_verdict.as_dict() if engine.wind_verdict else None,
        "clock": engine.clock_sync.as_dict() if engine.clock_sync else None,
        "interlock": ({"ok": engine.interlock_verdict.ok,
                       "separation_deg": _num(engine.interlock_verdict.separation_deg),
                       "bound_deg": engine.settings.interlock.bound_deg}
                      if engine.interlock_verdict else None),
        # Slewing until the axes have really stopped (a stop decelerates for a while).
        "slewing": state in SLEWING_STATES or moving_task
        or (state is not State.TRACKING and not engine.stopped),
        "at_park": state is State.PARKED,
        # The mount has no homing switch: it is never "at home" (Alpaca AtHome).
        "at_home": False,
        "data_ages": data_ages(engine, t),
        "log": {"healthy": getattr(store, "healthy", None),
                "last_error": getattr(store, "last_error", None),
                "path": str(getattr(store, "path", "")),
                "backlog": getattr(store, "backlog", None),
                "event_backlog": getattr(store, "event_backlog", None),
                "dropped_events": sum(getattr(store, "dropped_events", {}).values()),
                "suppressed_refusals": sum(getattr(store, "suppressed_refusals", {}).values()),
                "moved_aside": (str(store.moved_aside)
                                if getattr(store, "moved_aside", None) else None)},
    }
