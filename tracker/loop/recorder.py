"""Measure and record: where the boresight points, the error against the current task's
target, and the log samples (one state per sample).

``measure`` is pure.  ``Recorder`` sums ticks into samples of ``1 / log_rate_hz`` seconds
and flushes a sample early when the state changes, so a sample never mixes two states
(on-Sun seconds are only ever counted in a ``tracking`` sample).  Samples go to every sink
(the SQLite log, a dry run's statistics).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from tracker.control.law import great_circle_arcsec
from tracker.control.machine import State
from tracker.log.store import Sample
from tracker.loop.tasks import Task, TaskKind
from tracker.mount.frames import Frames

NAN = float("nan")


@dataclass(frozen=True, slots=True)
class Measurement:
    """At one tick: the boresight's sky direction from the encoders, the current task's sky
    target (NaN when it has none), their great-circle separation and the simulator's true
    error (NaN when unknown), arc-seconds."""

    pointing_sky: tuple[float, float]
    target_sky: tuple[float, float]
    error_arcsec: float
    true_error_arcsec: float = NAN


def target_sky(task: Task, sun: tuple[float, float, float, float], frames: Frames,
               boresight: str) -> tuple[float, float]:
    """The sky direction ``task`` aims the boresight at (NaN for HOLD/JOG)."""
    if task.kind is TaskKind.SUN:
        return sun[0], sun[1]
    if task.kind is TaskKind.AXES:
        return frames.mount_to_sky(task.boresight or boresight, task.az_deg, task.el_deg)
    if task.kind is TaskKind.SKY:
        return task.az_deg, task.el_deg
    return NAN, NAN


def measure(task: Task, sun: tuple[float, float, float, float], frames: Frames,
            boresight: str, encoder_deg: tuple[float, float],
            true_mount_deg: tuple[float, float] | None = None) -> Measurement:
    """Pointing, target and error for the task in effect (pure)."""
    pointing = frames.encoder_to_sky(boresight, *encoder_deg)
    target = target_sky(task, sun, frames, boresight)
    err = (great_circle_arcsec(target[0], target[1], pointing[0], pointing[1])
           if not math.isnan(target[0]) else NAN)
    true_err = NAN
    if true_mount_deg is not None and not math.isnan(target[0]):
        true_sky = frames.mount_to_sky(boresight, *true_mount_deg)
        true_err = great_circle_arcsec(target[0], target[1], true_sky[0], true_sky[1])
    return Measurement(pointing, target, err, true_err)


class Recorder:
    """Accumulates ticks into log samples (see module docstring)."""

    def __init__(self, log_period_s: float, max_gap_s: float,
                 sinks: list[Callable[[Sample], None]]) -> None:
        self.log_period_s = log_period_s
        self.max_gap_s = max_gap_s
        self.sinks = sinks
        self._last_t: float | None = None
        self._start_t = 0.0
        self._state: str | None = None
        self._dt = 0.0
        self._on_sun_s = 0.0
        self._err_max = -1.0
        self._last: tuple[str, Measurement, tuple[float, float]] | None = None

    def restart(self) -> None:
        """Forget the running interval (after a clock jump: its length is unknowable)."""
        self._last_t = None
        self._reset(0.0)

    def _reset(self, t: float) -> None:
        self._dt = 0.0
        self._on_sun_s = 0.0
        self._err_max = -1.0
        self._start_t = t

    def record(self, t: float, state: State, boresight: str, m: Measurement, on_sun: bool,
               axes_deg: tuple[float, float]) -> None:
        """Account the interval (last tick, t] to ``state`` with the measurement at ``t``."""
        last, self._last_t = self._last_t, t
        if self._state is not None and state.value != self._state and last is not None:
            self.flush(last)
        self._state = state.value
        self._last = (boresight, m, axes_deg)
        if last is None:
            self._reset(t)
            return
        dt = t - last
        if dt <= 0 or dt > self.max_gap_s:
            self._reset(t)
            return
        self._dt += dt
        if on_sun:
            self._on_sun_s += dt
        err = m.error_arcsec
        if err == err and err > self._err_max:
            self._err_max = err
        if t - self._start_t >= self.log_period_s - 1e-9:
            self.flush(t)

    def flush(self, t: float) -> None:
        """Write the running interval as one sample ending at ``t`` (if it has any length)."""
        if self._dt <= 0 or self._last is None or self._state is None:
            self._reset(t)
            return
        boresight, m, axes = self._last
        sample = Sample(
            time_s=t, dt_s=self._dt, state=self._state, boresight=boresight,
            target_az_deg=m.target_sky[0], target_el_deg=m.target_sky[1],
            measured_az_deg=m.pointing_sky[0], measured_el_deg=m.pointing_sky[1],
            axis_az_deg=axes[0], axis_el_deg=axes[1], error_arcsec=m.error_arcsec,
            error_max_arcsec=self._err_max if self._err_max >= 0 else NAN,
            on_sun_s=min(self._on_sun_s, self._dt), true_error_arcsec=m.true_error_arcsec)
        for sink in self.sinks:
            sink(sample)
        self._reset(t)
