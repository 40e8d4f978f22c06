"""Measure and record: where the boresight points, the error against the current task's
target, and the log samples (one state per sample).

``measure`` is pure.  ``Recorder`` sums ticks into samples of ``1 / log_rate_hz`` seconds
and flushes a sample early when the state changes, so a sample never mixes two states
(on-Sun seconds are only ever counted in a ``tracking`` sample), and when the loop stalls
(ticks more than ``max_gap_s`` apart): the ticks before the stall are a sample, the stall
itself is no state's time.  With ``bores``, each
tracking sample also carries every bore's off-axis angle (mean and max over the ticks), its
on-Sun seconds (off-axis within the bore's tolerance) and its effective seconds (on-Sun
seconds times the optics' efficiency at the off-axis angle), integrated tick by tick, and,
when the measurement has the simulator's true pointing, the same figures by the truth
(``true_bores``).  Samples go to every sink
(the SQLite log, a dry run's statistics).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from tracker.control.law import great_circle_arcsec
from tracker.control.machine import State
from tracker.log.store import Sample
from tracker.loop.tasks import Task, TaskKind
from tracker.mount.bores import BoreSet, encode, tangent_offset_arcsec
from tracker.mount.frames import Frames

NAN = float("nan")
# Members tested every tick, as module constants (``Enum.X`` costs ~80 ns on Python 3.11:
# docs/performance.md).
_SUN, _TRACKING = TaskKind.SUN, State.TRACKING


class Measurement(NamedTuple):
    """At one tick: the boresight's sky direction from the encoders, the current task's sky
    target (NaN when it has none), their great-circle separation and the simulator's true
    error (NaN when unknown), arc-seconds, and the mechanical axis' true sky direction
    (simulator truth, degrees; NaN when unknown).  Immutable, one per tick."""

    pointing_sky: tuple[float, float]
    target_sky: tuple[float, float]
    error_arcsec: float
    true_error_arcsec: float = NAN
    #: The simulator's true sky direction of the boresight (NaN when unknown).
    true_sky: tuple[float, float] = (NAN, NAN)


def target_sky(task: Task, sun: tuple[float, float, float, float], frames: Frames,
               boresight: str) -> tuple[float, float]:
    """The sky direction ``task`` aims the boresight at (NaN for HOLD/JOG)."""
    if task.kind is _SUN:
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
    pointing = frames.encoder_to_sky(boresight, encoder_deg[0], encoder_deg[1])
    target = target_sky(task, sun, frames, boresight)
    t_az, t_el = target
    true_sky = (NAN, NAN) if true_mount_deg is None else frames.mount_to_sky(
        boresight, true_mount_deg[0], true_mount_deg[1])
    if t_az != t_az:    # NaN: no target
        return Measurement(pointing, target, NAN, NAN, true_sky)
    err = great_circle_arcsec(t_az, t_el, pointing[0], pointing[1])
    true_err = NAN
    if true_mount_deg is not None:
        true_err = great_circle_arcsec(t_az, t_el, true_sky[0], true_sky[1])
    return tuple.__new__(Measurement, (pointing, target, err, true_err, true_sky))


class Recorder:
    """Accumulates ticks into log samples (see module docstring)."""

    def __init__(self, log_period_s: float, max_gap_s: float,
                 sinks: list[Callable[[Sample], None]], bores: BoreSet | None = None) -> None:
        self.log_period_s = log_period_s
        self.max_gap_s = max_gap_s
        self.sinks = sinks
        self._last_t: float | None = None
        self._start_t = 0.0
        self._state: State | None = None
        self._dt = 0.0
        self._on_sun_s = 0.0
        self._err_max = -1.0
        self._last: tuple[str, Measurement, tuple[float, float]] | None = None
        self.bores = bores
        n = len(bores.names) if bores is not None else 0
        #: The running sample's tracking ticks as (dt s, tangent-plane offset of the
        #: mechanical axis from the target, arcsec): by the encoders, and by the truth.
        self._bore_ticks: list[tuple[float, float, float]] = []
        self._true_ticks: list[tuple[float, float, float]] = []
        #: Per bore since the start, by the encoders and by the truth: [on-Sun s, effective
        #: s] of tracking, the samples' figures summed before the record's rounding.
        self.bore_totals = [[0.0, 0.0] for _ in range(n)]
        self.true_bore_totals = [[0.0, 0.0] for _ in range(n)]

    def restart(self) -> None:
        """Forget the running interval (after a clock jump: its length is unknowable)."""
        self._last_t = None
        self._reset(0.0)

    def _reset(self, t: float) -> None:
        self._dt = 0.0
        self._on_sun_s = 0.0
        self._err_max = -1.0
        self._start_t = t
        self._bore_ticks.clear()
        self._true_ticks.clear()

    def _add_bores(self, dt: float, m: Measurement) -> None:
        """Account ``dt`` seconds of tracking to every bore (off-axis from ``m``: by the
        encoders, and by the truth when ``m`` has it)."""
        taz, tel = m.target_sky
        if taz != taz:      # NaN: no target
            return
        paz, pel = m.pointing_sky
        if paz == paz:
            self._bore_ticks.append((dt, *tangent_offset_arcsec(taz, tel, paz, pel)))
        paz, pel = m.true_sky
        if paz == paz:
            self._true_ticks.append((dt, *tangent_offset_arcsec(taz, tel, paz, pel)))

    def record(self, t: float, state: State, boresight: str, m: Measurement, on_sun: bool,
               axes_deg: tuple[float, float]) -> None:
        """Account the interval (last tick, t] to ``state`` with the measurement at ``t``."""
        last, self._last_t = self._last_t, t
        dt = t - last if last is not None else 0.0
        gap = not 0.0 < dt <= self.max_gap_s
        if last is not None and self._state is not None and (state is not self._state or gap):
            # a new state, or a stall of the loop: what the interval holds so far is a sample
            self.flush(last)
        self._state = state
        self._last = (boresight, m, axes_deg)
        if gap:
            self._reset(t)      # the stall itself is not accounted to any state
            return
        self._dt += dt
        if on_sun:
            self._on_sun_s += dt
        if self.bores is not None and state is _TRACKING:
            self._add_bores(dt, m)
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
        # per bore (tracking only): the figures by the encoders, and by the truth if known
        figs: list[tuple[float, float, float, float]] | None = None
        true_figs: list[tuple[float, float, float, float]] | None = None
        text = true_text = None
        if self.bores is not None and self._state is State.TRACKING:
            figs = self.bores.figures(self._bore_ticks, self._dt)
            text = encode(self.bores.names, figs)
            if self._true_ticks:
                true_figs = self.bores.figures(self._true_ticks, self._dt)
                true_text = encode(self.bores.names, true_figs)
        sample = Sample(
            time_s=t, dt_s=self._dt, state=self._state.value, boresight=boresight,
            target_az_deg=m.target_sky[0], target_el_deg=m.target_sky[1],
            measured_az_deg=m.pointing_sky[0], measured_el_deg=m.pointing_sky[1],
            axis_az_deg=axes[0], axis_el_deg=axes[1], error_arcsec=m.error_arcsec,
            error_max_arcsec=self._err_max if self._err_max >= 0 else NAN,
            on_sun_s=min(self._on_sun_s, self._dt), true_error_arcsec=m.true_error_arcsec,
            bores=text, true_bores=true_text)
        for totals, fs in ((self.bore_totals, figs), (self.true_bore_totals, true_figs)):
            for tot, f in zip(totals, fs or (), strict=False):
                tot[0] += f[2]
                tot[1] += f[3]
        for sink in self.sinks:
            sink(sample)
        self._reset(t)
