"""Linear physics of one simulated axis, discretised exactly; wind turbulence; track; drift.

Model of one axis (all angles in axis degrees, times in seconds; torques are
expressed as accelerations of the whole axis, ``T / (J_motor + J_load)`` in
deg/s^2, so no kilograms appear):

- two masses: the motor side (what the encoder sees, reflected through the
  gearbox; inertia fraction ``r``) and the load (the magnet, fraction ``1 - r``)
  joined by the lowest structural mode: a spring ``k = (1 - r) w^2`` and a damper
  ``c = 2 zeta (1 - r) w`` with ``w = 2 pi mode_hz`` the *locked-rotor* frequency
  (the frequency at which the load rings when the motor is held);
- the drive's velocity loop on the motor (PI, designed for the rigid axis as a
  second-order loop of natural frequency ``velocity_loop_hz`` and damping 0.7)
  plus the profile's acceleration as torque feed-forward;
- load torques (wind, unbalance) act on the load, friction on the motor.

The state ``(motor_deg, motor_deg_s, load_deg, load_deg_s, integral_deg)`` is
advanced over a step ``h`` with inputs held (zero-order hold) by the exact
state-transition matrices ``Phi = exp(A h)``, ``Gamma = int_0^h exp(A s) ds B``,
precomputed once per step length: no sub-stepping, whatever the stiffness.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

#: Damping ratio of the drives' velocity loops (rigid-axis design).
VELOCITY_LOOP_DAMPING = 0.7


def expm(m: np.ndarray) -> np.ndarray:
    """Matrix exponential by scaling and squaring of a Taylor series (small dense matrices).

    Accurate to ~1e-15 relative for the matrices here (norm scaled below 0.5, 24 terms).
    """
    m = np.asarray(m, dtype=float)
    norm = float(np.max(np.sum(np.abs(m), axis=1))) if m.size else 0.0
    s = max(0, int(math.ceil(math.log2(norm / 0.5))) if norm > 0.5 else 0)
    a = m / (2.0 ** s)
    result = np.eye(m.shape[0])
    term = np.eye(m.shape[0])
    for k in range(1, 25):
        term = term @ a / k
        result = result + term
    for _ in range(s):
        result = result @ result
    return result


def discretise(a: np.ndarray, b: np.ndarray, h_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact zero-order-hold discretisation: ``(Phi, Gamma)`` of ``x' = A x + B u`` over ``h_s``."""
    n, m = b.shape
    big = np.zeros((n + m, n + m))
    big[:n, :n] = a * h_s
    big[:n, n:] = b * h_s
    e = expm(big)
    return e[:n, :n], e[:n, n:]


@dataclass(frozen=True, slots=True)
class AxisDynamics:
    """Parameters of one axis's linear model (see the module docstring)."""

    mode_hz: float
    mode_damping: float
    motor_inertia_fraction: float
    velocity_loop_hz: float

    @property
    def omega_rad_s(self) -> float:
        return 2.0 * math.pi * self.mode_hz

    @property
    def stiffness_per_s2(self) -> float:
        """Spring constant ``k`` (deg/s^2 of axis torque per degree of deflection)."""
        return (1.0 - self.motor_inertia_fraction) * self.omega_rad_s ** 2

    @property
    def damping_per_s(self) -> float:
        return 2.0 * self.mode_damping * (1.0 - self.motor_inertia_fraction) * self.omega_rad_s

    @property
    def gains(self) -> tuple[float, float]:
        """(Kp 1/s, Ki 1/s^2) of the drive's PI velocity loop, for the whole-axis inertia."""
        wv = 2.0 * math.pi * self.velocity_loop_hz
        return 2.0 * VELOCITY_LOOP_DAMPING * wv, wv * wv

    def compliance_s2(self) -> float:
        """Static load deflection per unit load torque: degrees per deg/s^2 (= 1/k)."""
        return 1.0 / self.stiffness_per_s2

    def closed_loop(self) -> tuple[np.ndarray, np.ndarray]:
        """``(A, B)`` with the velocity loop closed.

        State ``[motor_deg, motor_deg_s, load_deg, load_deg_s, integral_deg]``; inputs
        ``[v_ref_deg_s, motor_torque_deg_s2 (feed-forward + friction), load_torque_deg_s2]``.
        """
        r = self.motor_inertia_fraction
        k, c = self.stiffness_per_s2, self.damping_per_s
        kp, ki = self.gains
        a = np.array([
            [0.0, 1.0, 0.0, 0.0, 0.0],
            [-k / r, -(kp + c) / r, k / r, c / r, ki / r],
            [0.0, 0.0, 0.0, 1.0, 0.0],
            [k / (1 - r), c / (1 - r), -k / (1 - r), -c / (1 - r), 0.0],
            [0.0, -1.0, 0.0, 0.0, 0.0],
        ])
        b = np.array([
            [0.0, 0.0, 0.0],
            [kp / r, 1.0 / r, 0.0],
            [0.0, 0.0, 0.0],
            [0.0, 0.0, 1.0 / (1 - r)],
            [1.0, 0.0, 0.0],
        ])
        return a, b

    def saturated(self) -> tuple[np.ndarray, np.ndarray]:
        """``(A, B)`` with the motor torque given (the drive at its torque limit; integral held)."""
        a, b = self.closed_loop()
        r = self.motor_inertia_fraction
        a = a.copy()
        a[1, 1] += self.gains[0] / r   # no proportional action
        a[1, 4] = 0.0                  # nor integral action
        a[4, 1] = 0.0                  # integral held (anti-windup)
        b = b.copy()
        b[1, 0] = 0.0
        b[4, 0] = 0.0
        return a, b

    def locked_rotor(self) -> tuple[np.ndarray, np.ndarray]:
        """``(A, B)`` of the load relative to a held motor (brake on).

        State ``[deflection_deg, deflection_deg_s]`` (load minus motor); inputs
        ``[load_torque_deg_s2, motor_accel_deg_s2]``.
        """
        r = self.motor_inertia_fraction
        k, c = self.stiffness_per_s2, self.damping_per_s
        a = np.array([[0.0, 1.0], [-k / (1 - r), -c / (1 - r)]])
        b = np.array([[0.0, 0.0], [1.0 / (1 - r), -1.0]])
        return a, b


#: A matrix as a tuple of row tuples of floats.
Rows = tuple[tuple[float, ...], ...]


class Transitions:
    """Cache of the exact discrete matrices of one axis, per mode and step length.

    Returned as tuples of row tuples (pure-Python floats: faster than numpy for 5x5).
    """

    def __init__(self, dyn: AxisDynamics) -> None:
        self.dyn = dyn
        self._cache: dict[tuple[str, float], tuple[Rows, Rows]] = {}

    def get(self, mode: str, h_s: float) -> tuple[Rows, Rows]:
        key = (mode, h_s)
        hit = self._cache.get(key)
        if hit is None:
            a, b = getattr(self.dyn, mode)()
            phi, gam = discretise(a, b, h_s)
            hit = (tuple(tuple(float(x) for x in row) for row in phi),
                   tuple(tuple(float(x) for x in row) for row in gam))
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = hit
        return hit


# ---------------------------------------------------------------------------- wind turbulence
def kaimal_psd(f_hz: np.ndarray, sigma_m_s: float, mean_m_s: float,
               length_m: float) -> np.ndarray:
    """One-sided Kaimal spectrum of the longitudinal wind, (m/s)^2/Hz.

    ``S(f) = sigma^2 4 L/U / (1 + 6 f L/U)^(5/3)`` (IEC 61400-1 form, ``L`` the
    integral length parameter); its integral over f is ``sigma^2`` and its
    inertial range falls as ``f^(-5/3)``.
    """
    tl = length_m / max(mean_m_s, 1.0)
    return sigma_m_s ** 2 * 4.0 * tl / (1.0 + 6.0 * f_hz * tl) ** (5.0 / 3.0)


class Turbulence:
    """Seeded longitudinal turbulence u'(t) with a Kaimal spectrum, for any step length.

    A sum of independent Ornstein-Uhlenbeck processes with log-spaced time
    constants (0.03 s .. 10 L/U), their variances fitted (non-negative least
    squares in relative error) to the Kaimal spectrum from 1e-4 Hz to 10 Hz.
    Each process is advanced exactly over any step (``x <- a x + b e`` with
    ``a = exp(-h / tau)``, ``b = sqrt(var (1 - a^2))``), so the spectrum does not
    depend on how the simulation is stepped.  Blocks of ``BLOCK`` steps of one
    length are generated at once with numpy (a parallel prefix scan of the
    recursion, exact); the step itself is a list lookup.
    """

    N_PROCESSES = 9
    BLOCK = 2048

    def __init__(self, sigma_m_s: float, mean_m_s: float, length_m: float,
                 rng: random.Random) -> None:
        self.sigma_m_s = float(sigma_m_s)
        self._normals = np.random.default_rng(rng.getrandbits(63))
        self.taus_s: list[float] = []
        self.variances: list[float] = []
        self._state = np.zeros(0)
        self._block = np.zeros((0, 0))
        self._sums: list[float] = []
        self._pos = 0
        self._h = -1.0
        self._value = 0.0
        if sigma_m_s <= 0.0:
            return
        tl = length_m / max(mean_m_s, 1.0)
        taus = np.geomspace(0.03, 10.0 * tl, self.N_PROCESSES)
        f = np.geomspace(1e-4, 10.0, 400)
        target = kaimal_psd(f, sigma_m_s, mean_m_s, length_m)
        # OU of variance 1 and time constant tau: S(f) = 4 tau / (1 + (2 pi f tau)^2).
        basis = 4.0 * taus[None, :] / (1.0 + (2.0 * math.pi * f[:, None] * taus[None, :]) ** 2)
        w = _nnls(basis / target[:, None], np.ones_like(f))
        self.taus_s = [float(t) for t in taus]
        self.variances = [float(v) for v in w]
        self._state = np.sqrt(w) * self._normals.standard_normal(len(w))
        self._value = float(self._state.sum())

    def _refill(self, h_s: float) -> None:
        if self._pos > 0 and self._block.size:
            self._state = self._block[:, self._pos - 1].copy()
        taus = np.asarray(self.taus_s)
        a = np.exp(-h_s / taus)
        b = np.sqrt(np.asarray(self.variances) * -np.expm1(-2.0 * h_s / taus))
        y = b[:, None] * self._normals.standard_normal((len(taus), self.BLOCK))
        y[:, 0] += a * self._state
        # Hillis-Steele scan of y_k += a y_(k-1): after the pass with shift s, y_k holds
        # the sum over the last 2 s inputs; a^s underflowing to 0 is harmless.
        s = 1
        while s < self.BLOCK:
            y[:, s:] = y[:, s:] + (a ** s)[:, None] * y[:, :-s]
            s *= 2
        self._block = y
        self._sums = y.sum(axis=0).tolist()
        self._pos = 0
        self._h = h_s

    def step(self, h_s: float) -> float:
        """Advance by ``h_s`` seconds; return u' (m/s)."""
        if not self.taus_s:
            return 0.0
        if h_s != self._h or self._pos >= self.BLOCK:
            self._refill(h_s)
        v = self._value = self._sums[self._pos]
        self._pos += 1
        return v

    @property
    def value_m_s(self) -> float:
        return self._value


def _nnls(a: np.ndarray, b: np.ndarray, iterations: int = 3000) -> np.ndarray:
    """Non-negative least squares ``min |a x - b|, x >= 0`` (projected Lawson-Hanson, small)."""
    n = a.shape[1]
    passive = np.zeros(n, dtype=bool)
    x = np.zeros(n)
    for _ in range(iterations):
        w = a.T @ (b - a @ x)
        if passive.all() or np.max(np.where(passive, -np.inf, w)) <= 1e-12:
            break
        passive[int(np.argmax(np.where(passive, -np.inf, w)))] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if np.all(z[passive] > 0):
                x = z
                break
            mask = passive & (z <= 0)
            alpha = np.min(x[mask] / (x[mask] - z[mask]))
            x = x + alpha * (z - x)
            passive &= x > 1e-15
    return x


class HourlyWind:
    """The site's mean wind hour by hour, for runs of days (a wind climate): Weibull
    distributed with shape ``k`` and mean ``mean_m_s``, correlated from one hour to the next
    (a Gaussian AR(1) of lag-1 correlation ``rho`` mapped through the normal CDF onto the
    Weibull quantiles: a Gaussian copula), linear within the hour; seeded.  ``k = 2`` is
    the Rayleigh distribution typical of inland sites; ``rho`` ~0.9 gives weather that
    lasts hours to a day."""

    HOUR_S = 3600.0

    def __init__(self, mean_m_s: float, k: float, rho: float, rng: random.Random) -> None:
        if not (mean_m_s >= 0.0 and k > 0.0 and 0.0 <= rho < 1.0):
            raise ValueError(f"HourlyWind: mean {mean_m_s}, k {k}, rho {rho}")
        self.mean_m_s, self.k, self.rho = float(mean_m_s), float(k), float(rho)
        self.scale_m_s = self.mean_m_s / math.gamma(1.0 + 1.0 / self.k)
        self._rng = rng
        self._z = rng.gauss(0.0, 1.0)
        self._hours: list[float] = [self._weibull(self._z)]

    def _weibull(self, z: float) -> float:
        """The Weibull quantile at the standard normal's CDF of ``z``."""
        tail = 0.5 * math.erfc(z / math.sqrt(2.0))          # 1 - Phi(z), exact in the tail
        return float(self.scale_m_s * (-math.log(max(tail, 1e-300))) ** (1.0 / self.k))

    def hour_m_s(self, n: int) -> float:
        """The mean wind at the start of hour ``n`` (n >= 0), m/s."""
        hours = self._hours
        while len(hours) <= n:
            self._z = self.rho * self._z + math.sqrt(1.0 - self.rho ** 2) * self._rng.gauss(0.0, 1.0)
            hours.append(self._weibull(self._z))
        return hours[n]

    def mean_at(self, t_s: float) -> float:
        """The mean wind ``t_s`` seconds after the start (>= 0), m/s."""
        x = max(t_s, 0.0) / self.HOUR_S
        n = int(x)
        a = self.hour_m_s(n)
        return a + (x - n) * (self.hour_m_s(n + 1) - a)


# ---------------------------------------------------------------------------- track and drift
class TrackUnevenness:
    """Seeded tilt of a wheel-on-track mount as a function of azimuth (arc-seconds).

    Harmonics 2..12 of azimuth with random phases and amplitudes falling as 1/n,
    scaled so that each tilt component spans ``peak_to_peak_arcsec`` over a turn:
    ``pitch`` tilts the elevation axis along the magnet (adds to the true elevation),
    ``roll`` across it (adds ``roll tan(el)`` to the true azimuth).
    """

    HARMONICS = tuple(range(2, 13))
    TABLE_N = 36000

    def __init__(self, peak_to_peak_arcsec: float, rng: random.Random) -> None:
        self.peak_to_peak_arcsec = float(peak_to_peak_arcsec)
        self._terms: list[list[tuple[int, float, float]]] = []
        grid = np.radians(np.arange(0.0, 360.0, 0.05))
        for _ in range(2):
            terms = [(n, rng.uniform(0.0, 2.0 * math.pi), rng.uniform(0.5, 1.0) / n)
                     for n in self.HARMONICS]
            vals = sum(a * np.cos(n * grid + p) for n, p, a in terms)
            pp = float(np.max(vals) - np.min(vals))
            scale = self.peak_to_peak_arcsec / pp if pp > 0 else 0.0
            self._terms.append([(n, p, a * scale / 3600.0) for n, p, a in terms])
        # Lookup tables (0.01 deg grid, linear interpolation: exact to ~1e-6 arcsec).
        self._tables: list[list[float]] = []
        if self.peak_to_peak_arcsec:
            fine = np.radians(np.arange(0, self.TABLE_N + 1) * (360.0 / self.TABLE_N))
            for terms in self._terms:
                self._tables.append(
                    sum(a * np.cos(n * fine + p) for n, p, a in terms).tolist())

    def tilt_deg(self, az_deg: float) -> tuple[float, float]:
        """(pitch, roll) of the mount at this azimuth, degrees."""
        if self.peak_to_peak_arcsec == 0.0:
            return 0.0, 0.0
        f = (az_deg % 360.0) * (self.TABLE_N / 360.0)
        i = int(f)
        if i >= self.TABLE_N:
            i = self.TABLE_N - 1
        w = f - i
        p, r = self._tables
        return p[i] + w * (p[i + 1] - p[i]), r[i] + w * (r[i + 1] - r[i])

    def tilt_exact_deg(self, az_deg: float) -> tuple[float, float]:
        """(pitch, roll) summed from the harmonics (the table's reference), degrees."""
        x = math.radians(az_deg)
        return (sum(a * math.cos(n * x + p) for n, p, a in self._terms[0]),
                sum(a * math.cos(n * x + p) for n, p, a in self._terms[1]))


def encoder_drift_deg(t_s: float, amplitude_arcsec: float, period_s: float,
                      phase_rad: float) -> float:
    """Slow thermal drift of an encoder zero: ``A sin(2 pi t / P + phase)``, degrees."""
    if amplitude_arcsec == 0.0:
        return 0.0
    return amplitude_arcsec / 3600.0 * math.sin(2.0 * math.pi * t_s / period_s + phase_rad)
