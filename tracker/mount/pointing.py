"""Pointing model: mechanical-axis direction <-> encoder axis positions.

TPOINT-style alt-az terms (P. T. Wallace), all coefficients in arc-seconds.
Angles are degrees; azimuth from north through east, elevation up positive.
The model maps *encoder readings* (A, E) to the direction the magnet's
mechanical axis really points::

    az_sky = A + dA(A, E),   el_sky = E + dE(A, E)

with, for the standard terms (sign conventions as TPOINT's, in the sense
"raw encoder position -> true position")::

    IA    dA = -IA                      azimuth index (encoder zero) error
    IE    dE = +IE                      elevation index error
    CA    dA = -CA / cos E              collimation (axis not perpendicular to el. axis)
    NPAE  dA = -NPAE tan E              az/el axes not perpendicular
    AN    dA = -AN sin A tan E, dE = -AN cos A   az axis tilted north (pole north of zenith)
    AW    dA = -AW cos A tan E, dE = +AW sin A   az axis tilted west (pole west of zenith)
    TF    dE = -TF cos E                elevation flexure (sag, positive TF = droops)

and the extra (harmonic) terms ACEC, ACES (dA = +c cos A, +c sin A) and
ECEC, ECES (dE = +c cos E, +c sin E).  ``ECEC`` equals ``-TF``: never fit both.

A wheel-on-track mount (CAST's rails, the MST mount) also tilts with azimuth in a way no
few terms describe: an optional ``TrackMap`` tabulates that tilt against the azimuth
encoder, ``pitch(A)`` along the magnet and ``roll(A)`` across it (arc-seconds, linear
between evenly spaced nodes)::

    dE += pitch(A),   dA += roll(A) tan E

The boresight (e.g. CAST's rear end looking the other way) is *not* part of
this model: the envelope maps sky <-> mechanical-axis direction, and this model
maps mechanical-axis direction <-> encoder axes.  Azimuths are never reduced
mod 360: the output stays in the same turn as the input (cable wrap).

Pure core: no drivers, no simulator.
"""

from __future__ import annotations

import logging
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, overload

import numpy as np
import numpy.typing as npt

from tracker import config as config_mod
from tracker.errors import ConfigError, TrackerError

log = logging.getLogger(__name__)

ARCSEC_DEG = 1.0 / 3600.0
_D2R = math.pi / 180.0

#: Convergence tolerance of ``sky_to_axes`` (degrees; 1e-9 deg = 3.6 micro-arcsec).
INVERSE_TOL_DEG = 1e-9
_MAX_ITER = 50

_Array = npt.NDArray[np.float64]

#: A basis function: (sin A, cos A, sin E, cos E) -> (dA, dE) per arc-second of coefficient.
Basis = Callable[[_Array, _Array, _Array, _Array], tuple[float | _Array, float | _Array]]


#: Term name -> (description, basis).  The basis gives the change of azimuth
#: coordinate and of elevation per unit coefficient, from (sin A, cos A, sin E, cos E).
#: The order fixes the coefficient order of the fast path in ``PointingModel``.
TERMS: Mapping[str, tuple[str, Basis]] = MappingProxyType({
    "IA": ("azimuth index error", lambda sa, ca, se, ce: (-1.0, 0.0)),
    "IE": ("elevation index error", lambda sa, ca, se, ce: (0.0, 1.0)),
    "CA": ("collimation error", lambda sa, ca, se, ce: (-1.0 / ce, 0.0)),
    "NPAE": ("az/el non-perpendicularity", lambda sa, ca, se, ce: (-se / ce, 0.0)),
    "AN": ("azimuth axis tilt north", lambda sa, ca, se, ce: (-sa * se / ce, -ca)),
    "AW": ("azimuth axis tilt west", lambda sa, ca, se, ce: (-ca * se / ce, sa)),
    "TF": ("elevation flexure (cos E)", lambda sa, ca, se, ce: (0.0, -ce)),
    "ACEC": ("azimuth centring, cos A", lambda sa, ca, se, ce: (ca, 0.0)),
    "ACES": ("azimuth centring, sin A", lambda sa, ca, se, ce: (sa, 0.0)),
    "ECEC": ("elevation centring, cos E", lambda sa, ca, se, ce: (0.0, ce)),
    "ECES": ("elevation centring, sin E", lambda sa, ca, se, ce: (0.0, se)),
})
#: The seven standard geometric/flexure terms.
STANDARD_TERMS: tuple[str, ...] = ("IA", "IE", "CA", "NPAE", "AN", "AW", "TF")

_MISALIGNMENT_FIELDS = {"IA": "ia_arcsec", "IE": "ie_arcsec", "CA": "ca_arcsec",
                        "NPAE": "npae_arcsec", "AN": "an_arcsec", "AW": "aw_arcsec",
                        "TF": "tf_arcsec"}


def _check_terms(terms: Mapping[str, float], what: str, path: str | None = None) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in terms.items():
        key = str(name).upper()
        if key not in TERMS:
            raise ConfigError(
                f"{path + ': ' if path else ''}{what}.{name}: unknown pointing term; "
                f"known: {', '.join(TERMS)}",
                path=path, key=f"{what}.{name}", value=name, allowed=", ".join(TERMS))
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(
                f"{path + ': ' if path else ''}{what}.{name} = {value!r}: must be a finite number "
                "(arc-seconds)", path=path, key=f"{what}.{name}", value=value,
                allowed="a finite number of arc-seconds")
        if key in out:
            raise ConfigError(f"{path + ': ' if path else ''}{what}.{name}: given twice",
                              path=path, key=f"{what}.{name}", value=value)
        out[key] = float(value)
    return out


@dataclass(frozen=True)
class TrackMap:
    """Tilt of the mount on its azimuth track against the azimuth encoder, arc-seconds.

    Nodes at ``start_deg + i * step_deg`` (azimuth mod 360); ``pitch_arcsec[i]`` adds to
    the elevation, ``roll_arcsec[i]`` adds ``roll tan E`` to the azimuth coordinate.
    Linear between nodes.  A map of ``360 / step_deg`` nodes is a whole turn (periodic);
    a shorter one (CAST's 80 deg of rails) holds its end values beyond its ends.
    """

    start_deg: float
    step_deg: float
    pitch_arcsec: tuple[float, ...]
    roll_arcsec: tuple[float, ...]

    def __post_init__(self) -> None:
        n = len(self.pitch_arcsec)
        bad = ""
        if not (math.isfinite(self.start_deg) and math.isfinite(self.step_deg)
                and 0.0 < self.step_deg <= 360.0):
            bad = f"start_deg {self.start_deg}, step_deg {self.step_deg}: need 0 < step <= 360"
        elif n < 2 or len(self.roll_arcsec) != n:
            bad = (f"pitch_arcsec ({n}) and roll_arcsec ({len(self.roll_arcsec)}) need the "
                   "same length, at least 2")
        elif n * self.step_deg > 360.0 + 1e-9:
            bad = f"{n} nodes x {self.step_deg} deg spans more than a turn"
        elif not all(math.isfinite(v) for v in self.pitch_arcsec + self.roll_arcsec):
            bad = "values must be finite numbers"
        if bad:
            raise ConfigError(f"track_map: {bad}", key="track_map")
        object.__setattr__(self, "pitch_arcsec", tuple(float(v) for v in self.pitch_arcsec))
        object.__setattr__(self, "roll_arcsec", tuple(float(v) for v in self.roll_arcsec))

    @property
    def periodic(self) -> bool:
        """The nodes cover a whole turn: the last node joins the first."""
        return abs(len(self.pitch_arcsec) * self.step_deg - 360.0) < 1e-9

    def weights(self, az_deg: float) -> tuple[int, int, float]:
        """(i, j, w): the value at ``az_deg`` is ``(1 - w) v[i] + w v[j]``."""
        n = len(self.pitch_arcsec)
        x = ((az_deg - self.start_deg) % 360.0) / self.step_deg
        if self.periodic:
            i = int(x) % n
            return i, (i + 1) % n, x - int(x)
        if x > n - 1:
            # beyond the last node: nearer the last (hold) or, past the gap, the first
            gap = (360.0 - (n - 1) * self.step_deg) / self.step_deg
            return (n - 1, n - 1, 0.0) if x - (n - 1) <= 0.5 * gap else (0, 0, 0.0)
        i = min(int(x), n - 2)
        return i, i + 1, x - i

    def tilt_deg(self, az_deg: float) -> tuple[float, float]:
        """(pitch, roll) at azimuth encoder ``az_deg``, degrees."""
        i, j, w = self.weights(az_deg)
        p, r = self.pitch_arcsec, self.roll_arcsec
        return (((1.0 - w) * p[i] + w * p[j]) * ARCSEC_DEG,
                ((1.0 - w) * r[i] + w * r[j]) * ARCSEC_DEG)

    def design(self, az_deg: npt.ArrayLike) -> _Array:
        """Interpolation weights, one row per azimuth and one column per node."""
        a = np.atleast_1d(np.asarray(az_deg, dtype=float))
        out = np.zeros((a.size, len(self.pitch_arcsec)))
        for k, az in enumerate(a):
            i, j, w = self.weights(float(az))
            out[k, i] += 1.0 - w
            out[k, j] += w
        return out

    def summary(self) -> str:
        """One line: the nodes and the range of pitch and roll."""
        p, r = self.pitch_arcsec, self.roll_arcsec
        return (f"track map: {len(p)} nodes from {self.start_deg:g} deg every "
                f"{self.step_deg:g} deg, pitch {min(p):+.2f}..{max(p):+.2f}, roll "
                f"{min(r):+.2f}..{max(r):+.2f} arcsec")

    def to_toml(self) -> list[str]:
        return ["", "[track_map]", f"start_deg = {self.start_deg!r}",
                f"step_deg = {self.step_deg!r}",
                "pitch_arcsec = [" + ", ".join(f"{v:.4f}" for v in self.pitch_arcsec) + "]",
                "roll_arcsec = [" + ", ".join(f"{v:.4f}" for v in self.roll_arcsec) + "]"]

    @classmethod
    def from_toml(cls, data: object, path: str) -> TrackMap:
        """From a model file's ``[track_map]`` table; ``ConfigError`` names the key."""
        keys = {"start_deg", "step_deg", "pitch_arcsec", "roll_arcsec"}
        if not isinstance(data, dict) or set(data) != keys:
            raise ConfigError(f"{path}: track_map: needs exactly {', '.join(sorted(keys))}",
                              path=path, key="track_map", allowed=", ".join(sorted(keys)))
        for key in keys:
            v = data[key]
            vals = v if isinstance(v, list) else [v]
            if (key.endswith("arcsec") != isinstance(v, list)
                    or any(isinstance(x, bool) or not isinstance(x, int | float) for x in vals)):
                raise ConfigError(f"{path}: track_map.{key} = {v!r}: must be "
                                  + ("a list of numbers" if key.endswith("arcsec") else "a number"),
                                  path=path, key=f"track_map.{key}", value=v)
        try:
            return cls(float(data["start_deg"]), float(data["step_deg"]),
                       tuple(data["pitch_arcsec"]), tuple(data["roll_arcsec"]))
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}", path=path, key="track_map") from None


@dataclass(frozen=True)
class PointingModel:
    """A set of TPOINT-style term coefficients (arc-seconds) and their fit metadata.

    ``terms_arcsec`` and ``uncertainties_arcsec`` are keyed by upper-case term
    name (see ``TERMS``); missing terms are zero.  ``fit_date_utc`` is an ISO
    8601 UTC string, ``residual_rms_arcsec`` the radial RMS on the sky of the
    fit's kept points, ``n_points`` how many points the fit kept.
    """

    terms_arcsec: Mapping[str, float]
    uncertainties_arcsec: Mapping[str, float] = field(default_factory=dict)
    fit_date_utc: str = ""
    residual_rms_arcsec: float | None = None
    n_points: int = 0
    #: The track's tilt against azimuth (None: a mount on a perfect bearing).
    track_map: TrackMap | None = None

    if TYPE_CHECKING:
        # Set by __post_init__ (object.__setattr__); declared for the type checker only,
        # so at run time they are not dataclass fields (no repr, eq or replace change).
        _c: tuple[float, ...] = field(init=False, repr=False, compare=False)
        _is_identity: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        terms = _check_terms(self.terms_arcsec, "terms_arcsec")
        sigmas = _check_terms(self.uncertainties_arcsec, "uncertainties_arcsec")
        object.__setattr__(self, "terms_arcsec", MappingProxyType(terms))
        object.__setattr__(self, "uncertainties_arcsec", MappingProxyType(sigmas))
        c = [terms.get(name, 0.0) * ARCSEC_DEG for name in TERMS]
        # Coefficients in degrees, in TERMS order, for the fast path.
        object.__setattr__(self, "_c", tuple(c))
        object.__setattr__(self, "_is_identity", not any(c) and self.track_map is None)

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.terms_arcsec.items())),
                     tuple(sorted(self.uncertainties_arcsec.items())),
                     self.fit_date_utc, self.residual_rms_arcsec, self.n_points, self.track_map))

    # ----------------------------------------------------------- constructors
    @classmethod
    def identity(cls) -> PointingModel:
        """The perfect mount: encoder readings are the mechanical-axis direction."""
        return cls(terms_arcsec={})

    @classmethod
    def from_misalignment(cls, m: config_mod.Misalignment) -> PointingModel:
        """The model whose terms are a config ``Misalignment`` (the simulator's truth)."""
        return cls(terms_arcsec={name: float(getattr(m, attr))
                                 for name, attr in _MISALIGNMENT_FIELDS.items()})

    @classmethod
    def from_settings(cls, settings: config_mod.Settings) -> PointingModel:
        """The model named by ``settings.pointing.model_file`` (relative to the config's
        folder); the identity when the setting is empty."""
        name = settings.pointing.model_file
        if not name:
            return cls.identity()
        model = cls.load(settings.relative_path(name))
        log.info("pointing model %s: %s", name, ", ".join(
            f"{k} {v:+.1f}" for k, v in model.terms_arcsec.items()) or "identity")
        return model

    @classmethod
    def load(cls, path: str | Path) -> PointingModel:
        """Read a model TOML file (as written by ``save``); ``ConfigError`` names file and key."""
        p = Path(path)
        try:
            data = tomllib.loads(p.read_bytes().decode("utf-8"))
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read pointing model: {exc.strerror}",
                              path=str(p)) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{p}: pointing model is not valid TOML: {exc}", path=str(p)) from None
        allowed = {"fit_date_utc", "residual_rms_arcsec", "n_points", "terms_arcsec",
                   "uncertainties_arcsec", "fit", "track_map"}
        for key in data:
            if key not in allowed:
                raise ConfigError(f"{p}: {key}: unknown key in pointing model; allowed: "
                                  f"{', '.join(sorted(allowed))}", path=str(p), key=key,
                                  allowed=", ".join(sorted(allowed)))
        if "terms_arcsec" not in data or not isinstance(data["terms_arcsec"], dict):
            raise ConfigError(f"{p}: terms_arcsec: missing table of term coefficients",
                              path=str(p), key="terms_arcsec", allowed="a table NAME = arcsec")
        sig = data.get("uncertainties_arcsec", {})
        if not isinstance(sig, dict):
            raise ConfigError(f"{p}: uncertainties_arcsec: must be a table", path=str(p),
                              key="uncertainties_arcsec")
        date = data.get("fit_date_utc", "")
        if not isinstance(date, str):
            raise ConfigError(f"{p}: fit_date_utc = {date!r}: must be a string", path=str(p),
                              key="fit_date_utc", value=date)
        rms = data.get("residual_rms_arcsec")
        if rms is not None and (isinstance(rms, bool) or not isinstance(rms, int | float)
                                or not math.isfinite(rms) or rms < 0):
            raise ConfigError(f"{p}: residual_rms_arcsec = {rms!r}: must be a number >= 0",
                              path=str(p), key="residual_rms_arcsec", value=rms)
        n = data.get("n_points", 0)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"{p}: n_points = {n!r}: must be an integer >= 0", path=str(p),
                              key="n_points", value=n)
        _check_terms(data["terms_arcsec"], "terms_arcsec", str(p))
        _check_terms(sig, "uncertainties_arcsec", str(p))
        track = TrackMap.from_toml(data["track_map"], str(p)) if "track_map" in data else None
        return cls(terms_arcsec=data["terms_arcsec"], uncertainties_arcsec=sig,
                   fit_date_utc=date, residual_rms_arcsec=None if rms is None else float(rms),
                   n_points=n, track_map=track)

    def save(self, path: str | Path, *, fit_info: Mapping[str, object] | None = None) -> None:
        """Write the model as TOML (terms, uncertainties, fit date, residual RMS).

        ``fit_info`` (optional, flat mapping of str -> number/str/list of str)
        is written to a ``[fit]`` table for humans; ``load`` ignores it.
        """
        lines = ["# Pointing model (TPOINT-style alt-az terms, arc-seconds).",
                 "# az_sky = A + dA(A, E), el_sky = E + dE(A, E); see docs/pointing.md.",
                 f"fit_date_utc = {_toml_str(self.fit_date_utc)}"]
        if self.residual_rms_arcsec is not None:
            lines.append(f"residual_rms_arcsec = {self.residual_rms_arcsec!r}")
        lines.append(f"n_points = {int(self.n_points)}")
        lines += ["", "[terms_arcsec]"]
        lines += [f"{k} = {float(v)!r}" for k, v in self.terms_arcsec.items()]
        if self.uncertainties_arcsec:
            lines += ["", "[uncertainties_arcsec]"]
            lines += [f"{k} = {float(v)!r}" for k, v in self.uncertainties_arcsec.items()]
        if self.track_map is not None:
            lines += self.track_map.to_toml()
        if fit_info:
            lines += ["", "[fit]"]
            for k, v in fit_info.items():
                lines.append(f"{k} = {_toml_value(v)}")
        Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")

    # -------------------------------------------------------------- transforms
    def _delta_scalar(self, a_deg: float, e_deg: float) -> tuple[float, float]:
        """(dA, dE) in degrees at encoder position (a_deg, e_deg); plain floats."""
        ia, ie, ca_, npae, an, aw, tf, acec, aces, ecec, eces = self._c
        a = a_deg * _D2R
        e = e_deg * _D2R
        sa = math.sin(a)
        ca = math.cos(a)
        se = math.sin(e)
        ce = math.cos(e)
        te = se / ce
        da = -ia - ca_ / ce - (npae + an * sa + aw * ca) * te + acec * ca + aces * sa
        de = ie - an * ca + aw * sa + (ecec - tf) * ce + eces * se
        if self.track_map is not None:
            pitch, roll = self.track_map.tilt_deg(a_deg)
            da += roll * te
            de += pitch
        return da, de

    def _delta_array(self, a_deg: _Array, e_deg: _Array) -> tuple[_Array, _Array]:
        ia, ie, ca_, npae, an, aw, tf, acec, aces, ecec, eces = self._c
        a = np.radians(a_deg)
        e = np.radians(e_deg)
        sa, ca, se, ce = np.sin(a), np.cos(a), np.sin(e), np.cos(e)
        te = se / ce
        da = -ia - ca_ / ce - (npae + an * sa + aw * ca) * te + acec * ca + aces * sa
        de = ie - an * ca + aw * sa + (ecec - tf) * ce + eces * se
        tm = self.track_map
        if tm is not None:
            w = tm.design(a_deg.ravel())
            pitch = (w @ np.asarray(tm.pitch_arcsec)).reshape(a_deg.shape) * ARCSEC_DEG
            roll = (w @ np.asarray(tm.roll_arcsec)).reshape(a_deg.shape) * ARCSEC_DEG
            da = da + roll * te
            de = de + pitch
        return da, de

    @overload
    def axes_to_sky(self, az_axis_deg: float, el_axis_deg: float) -> tuple[float, float]: ...
    @overload
    def axes_to_sky(self, az_axis_deg: npt.ArrayLike, el_axis_deg: npt.ArrayLike
                    ) -> tuple[_Array, _Array]: ...
    def axes_to_sky(self, az_axis_deg: npt.ArrayLike, el_axis_deg: npt.ArrayLike
                    ) -> tuple[float, float] | tuple[_Array, _Array]:
        """Where the mechanical axis really points for these encoder readings.

        Degrees in, degrees out; azimuth stays in the input's turn (no mod 360).
        Scalars give a tuple of floats, arrays a tuple of arrays.
        """
        if ((type(az_axis_deg) is float and type(el_axis_deg) is float)
                or (isinstance(az_axis_deg, int | float) and isinstance(el_axis_deg, int | float))):
            if self._is_identity:
                return float(az_axis_deg), float(el_axis_deg)
            da, de = self._delta_scalar(az_axis_deg, el_axis_deg)
            return az_axis_deg + da, el_axis_deg + de
        a = np.asarray(az_axis_deg, dtype=float)
        e = np.asarray(el_axis_deg, dtype=float)
        da, de = self._delta_array(a, e)
        return a + da, e + de

    @overload
    def sky_to_axes(self, az_deg: float, el_deg: float) -> tuple[float, float]: ...
    @overload
    def sky_to_axes(self, az_deg: npt.ArrayLike, el_deg: npt.ArrayLike
                    ) -> tuple[_Array, _Array]: ...
    def sky_to_axes(self, az_deg: npt.ArrayLike, el_deg: npt.ArrayLike
                    ) -> tuple[float, float] | tuple[_Array, _Array]:
        """Encoder readings that point the mechanical axis at (az_deg, el_deg).

        The exact inverse of ``axes_to_sky`` (fixed-point iteration to
        ``INVERSE_TOL_DEG``).  Degrees; azimuth stays in the input's turn.
        Scalars take a plain-float fast path; arrays work element-wise.
        """
        if ((type(az_deg) is float and type(el_deg) is float)
                or (isinstance(az_deg, int | float) and isinstance(el_deg, int | float))):
            if self._is_identity:
                return float(az_deg), float(el_deg)
            delta = self._delta_scalar
            a, e = az_deg, el_deg
            for _ in range(_MAX_ITER):
                da, de = delta(a, e)
                a_new = az_deg - da
                e_new = el_deg - de
                if abs(a_new - a) < INVERSE_TOL_DEG and abs(e_new - e) < INVERSE_TOL_DEG:
                    return a_new, e_new
                a, e = a_new, e_new
            raise TrackerError(f"pointing model inversion did not converge at az {az_deg} deg, "
                               f"el {el_deg} deg (terms too large or elevation near 90 deg)")
        az = np.asarray(az_deg, dtype=float)
        el = np.asarray(el_deg, dtype=float)
        a_b, e_b = np.broadcast_arrays(az, el)
        a_arr: _Array = a_b.astype(float)
        e_arr: _Array = e_b.astype(float)
        for _ in range(_MAX_ITER):
            da_arr, de_arr = self._delta_array(a_arr, e_arr)
            a_new_arr = az - da_arr
            e_new_arr = el - de_arr
            done = (np.max(np.abs(a_new_arr - a_arr), initial=0.0) < INVERSE_TOL_DEG
                    and np.max(np.abs(e_new_arr - e_arr), initial=0.0) < INVERSE_TOL_DEG)
            a_arr, e_arr = a_new_arr, e_new_arr
            if done:
                return a_arr, e_arr
        raise TrackerError("pointing model inversion did not converge for an array input "
                           "(terms too large or elevation near 90 deg)")

    def offsets_arcsec(self, az_axis_deg: float | _Array, el_axis_deg: float | _Array
                       ) -> tuple[float | _Array, float | _Array]:
        """Sky minus axis, in arc-seconds: (dA cos E on the sky, dE), at encoder position."""
        az_sky, el_sky = self.axes_to_sky(az_axis_deg, el_axis_deg)
        cos_el = np.cos(np.radians(el_axis_deg))
        return ((np.asarray(az_sky) - az_axis_deg) * cos_el * 3600.0,
                (np.asarray(el_sky) - el_axis_deg) * 3600.0)

    def describe(self) -> str:
        """One line per non-zero term: 'NAME  value +- sigma arcsec'."""
        rows = []
        for name, value in self.terms_arcsec.items():
            sig = self.uncertainties_arcsec.get(name)
            rows.append(f"{name:<5} {value:+10.2f}" + (f" +- {sig:.2f}" if sig is not None else "")
                        + " arcsec")
        if self.track_map is not None:
            rows.append(self.track_map.summary())
        return "\n".join(rows) if rows else "(identity)"


def basis(name: str, az_axis_deg: npt.ArrayLike, el_axis_deg: npt.ArrayLike
          ) -> tuple[_Array, _Array]:
    """(dA, dE) in degrees of azimuth coordinate / elevation per arc-second of term ``name``."""
    if name not in TERMS:
        raise ConfigError(f"unknown pointing term {name!r}; known: {', '.join(TERMS)}",
                          key="terms", value=name, allowed=", ".join(TERMS))
    a = np.radians(np.asarray(az_axis_deg, dtype=float))
    e = np.radians(np.asarray(el_axis_deg, dtype=float))
    fa, fe = TERMS[name][1](np.sin(a), np.cos(a), np.sin(e), np.cos(e))
    fa, fe, _ = np.broadcast_arrays(np.asarray(fa, dtype=float), np.asarray(fe, dtype=float), a + e)
    return fa * ARCSEC_DEG, fe * ARCSEC_DEG


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(float(v)) if isinstance(v, float) else str(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return _toml_str(str(v))
