"""Calibration: plan a grid of axis positions, read/write measurements, fit a pointing model.

Measurement CSV (header row required, ``#`` lines are comments; column order free)::

    kind          grid | sun
    time_utc      ISO 8601 with zone (e.g. 2026-06-21T04:00:00Z) or unix seconds;
                  required for sun rows, optional for grid rows
    axis_az_deg   encoder azimuth of the axis (mount frame, may lie outside 0..360)
    axis_el_deg   encoder elevation
    true_az_deg   grid: surveyed azimuth of the magnet's mechanical axis (geometric);
    true_el_deg   sun: leave empty - computed at fit time as the APPARENT (refracted)
                  Sun at time_utc, seen through ``boresight``; if given, used as is
    pressure_hpa  sun rows: air pressure for refraction (empty: standard atmosphere
                  at the site height); ignored for grid rows
    temperature_c sun rows: air temperature (empty: 10 C)
    boresight     sun rows: which magnet end the camera looks along (empty: the
                  config's first boresight)

Angles are degrees, azimuth from north through east, elevation up positive.
Residuals are on the sky: (true - model) azimuth times cos(elevation), and
elevation, in arc-seconds; the RMS is the radial one, sqrt(mean(dx^2 + dy^2)).
"""

from __future__ import annotations

import csv
import datetime as _dt
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from tracker import config as config_mod
from tracker.errors import TrackerError
from tracker.mount.pointing import TERMS, PointingModel, TrackMap, basis

log = logging.getLogger(__name__)

KINDS = ("grid", "sun")
COLUMNS = ("kind", "time_utc", "axis_az_deg", "axis_el_deg", "true_az_deg", "true_el_deg",
           "pressure_hpa", "temperature_c", "boresight")
REQUIRED_COLUMNS = ("kind", "axis_az_deg", "axis_el_deg")
#: Terms fitted when none are named.  On a mount whose elevation stays within
#: +-25 deg, CA is nearly degenerate with IA (1/cos E ~ 1) and TF with IE
#: (cos E ~ 1): the fit then flags the correlation; name fewer terms to separate them.
DEFAULT_TERMS: tuple[str, ...] = ("IA", "IE", "CA", "NPAE", "AN", "AW", "TF")
#: Correlation above which a pair of terms is reported as poorly separated.
CORRELATION_WARN = 0.95
DEFAULT_TEMPERATURE_C = 10.0


class CalibrationError(TrackerError):
    """Bad measurements or an impossible fit; ``path``/``line``/``column`` locate bad input."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 column: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.column = column


@dataclass(frozen=True)
class Measurement:
    """One calibration point.

    ``axis_*`` are encoder readings; ``true_*`` the mechanical axis' real
    direction (degrees; None for sun rows until ``resolve_sun`` fills them).
    ``time_utc_s`` is UTC unix seconds; ``label`` names the row in messages.
    """

    kind: str
    axis_az_deg: float
    axis_el_deg: float
    true_az_deg: float | None = None
    true_el_deg: float | None = None
    time_utc_s: float | None = None
    pressure_hpa: float | None = None
    temperature_c: float | None = None
    boresight: str = ""
    label: str = ""


@dataclass(frozen=True)
class FitResult:
    """Outcome of ``fit``.  Arc-seconds throughout; RMS values are radial on the sky."""

    model: PointingModel
    terms: tuple[str, ...]
    rms_before_arcsec: float          # kept points, identity model
    rms_after_arcsec: float           # kept points, fitted model
    rms_az_arcsec: float              # kept points, azimuth * cos(el) component
    rms_el_arcsec: float
    sigma_per_axis_arcsec: float      # residual std per coordinate (dof-corrected)
    n_points: int                     # kept
    rejected: tuple[tuple[str, float], ...]   # (label, radial residual arcsec)
    correlations: np.ndarray          # K x K
    warnings: tuple[str, ...] = ()
    residuals_arcsec: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # all rows

    def report(self) -> str:
        """Human-readable summary: each term +- sigma, RMS before/after, rejected points."""
        lines = ["term        value      sigma   (arcsec)"]
        for name in self.terms:
            lines.append(f"{name:<6} {self.model.terms_arcsec[name]:+11.2f} "
                         f"+- {self.model.uncertainties_arcsec[name]:7.2f}   {TERMS[name][0]}")
        if self.model.track_map is not None:
            lines.append(self.model.track_map.summary())
        lines.append(f"points used {self.n_points}, rejected {len(self.rejected)}")
        lines.append(f"sky RMS before {self.rms_before_arcsec:.2f} arcsec, after "
                     f"{self.rms_after_arcsec:.2f} arcsec (az*cos el {self.rms_az_arcsec:.2f}, "
                     f"el {self.rms_el_arcsec:.2f})")
        for label, r in self.rejected:
            lines.append(f"rejected outlier: {label}: residual {r:.1f} arcsec")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


# --------------------------------------------------------------------- grid

def _in_keep_out(settings: config_mod.Settings, az_deg: float, el_deg: float,
                 margin_deg: float) -> bool:
    for z in settings.envelope.keep_out:
        if (z.azimuth_min_deg - margin_deg < az_deg < z.azimuth_max_deg + margin_deg
                and z.elevation_min_deg - margin_deg < el_deg < z.elevation_max_deg + margin_deg):
            return True
    return False


def plan_grid(settings: config_mod.Settings, n: int = 30,
              seed: int | None = None) -> list[tuple[float, float]]:
    """``n`` axis positions (az_axis_deg, el_axis_deg) spread evenly over the envelope.

    Elevation rows from near the lower to near the upper limit (at least three,
    the extremes give the tan E terms their leverage), azimuths evenly spaced
    and staggered between rows, over one turn centred in a cable-wrapped range
    or the whole azimuth range otherwise.  The axis envelope is the same for
    every boresight, so the grid serves them all.  Points inside a keep-out
    box (with a small margin) move to the nearest free position on their row.
    ``seed`` jitters points randomly within their cells (None: regular grid).
    """
    if n < 3:
        raise CalibrationError(f"a calibration grid needs at least 3 points, not {n}")
    env = settings.envelope
    el_span = env.elevation_max_deg - env.elevation_min_deg
    el_margin = min(0.5, 0.05 * el_span)
    if env.cable_wrap:
        mid = 0.5 * (env.azimuth_min_deg + env.azimuth_max_deg)
        az_lo, az_span, periodic = mid - 180.0, 360.0, True
    else:
        az_margin = min(0.5, 0.05 * (env.azimuth_max_deg - env.azimuth_min_deg))
        az_lo = env.azimuth_min_deg + az_margin
        az_span = env.azimuth_max_deg - env.azimuth_min_deg - 2 * az_margin
        periodic = False
    n_rows = max(3, min(n // 3, round(math.sqrt(n * el_span / az_span))))
    els = np.linspace(env.elevation_min_deg + el_margin, env.elevation_max_deg - el_margin, n_rows)
    counts = [n // n_rows + (1 if i < n % n_rows else 0) for i in range(n_rows)]
    rng = np.random.default_rng(seed) if seed is not None else None
    el_step = els[1] - els[0]
    points: list[tuple[float, float]] = []
    for i, (el, k) in enumerate(zip(els, counts, strict=True)):
        step = az_span / k
        for j in range(k):
            # staggered between rows so that the columns do not line up
            az = az_lo + (j + (i + 0.5) / n_rows) * step
            e = float(el)
            if rng is not None:
                az += rng.uniform(-0.25, 0.25) * step
                e += rng.uniform(-0.25, 0.25) * el_step
                e = min(max(e, env.elevation_min_deg + el_margin), env.elevation_max_deg - el_margin)
            az = _free_position(settings, az, e, step, az_lo, az_span, periodic)
            points.append((round(az, 6), round(e, 6)))
    return points


def _free_position(settings, az, el, step, az_lo, az_span, periodic) -> float:
    if not _in_keep_out(settings, az, el, 0.5):
        return az
    fine = step / 20.0
    for k in range(1, int(20 * az_span / step) + 1):
        for cand in (az + k * fine, az - k * fine):
            if periodic:
                cand = az_lo + (cand - az_lo) % az_span
            elif not az_lo <= cand <= az_lo + az_span:
                continue
            if not _in_keep_out(settings, cand, el, 0.5):
                return cand
    raise CalibrationError(f"no free grid position at elevation {el:.2f} deg: the keep-out "
                           "zones cover the whole row")


def write_grid_csv(path: str | Path, points: Iterable[tuple[float, float]]) -> None:
    """A grid as CSV: columns axis_az_deg, axis_el_deg (degrees)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["axis_az_deg", "axis_el_deg"])
        for az, el in points:
            w.writerow([f"{az:.6f}", f"{el:.6f}"])


def read_grid_csv(path: str | Path) -> list[tuple[float, float]]:
    """Read a grid CSV (axis_az_deg, axis_el_deg); ``CalibrationError`` on bad rows."""
    fields, rows = _csv_lines(_read_text(path))
    for col in ("axis_az_deg", "axis_el_deg"):
        if col not in fields:
            raise CalibrationError(f"{path}: missing column {col!r} (found: {', '.join(fields)})",
                                   path=str(path), column=col)
    out = []
    for line, row in rows:
        out.append((_number(row, "axis_az_deg", path, line),
                    _number(row, "axis_el_deg", path, line)))
    if not out:
        raise CalibrationError(f"{path}: no grid points", path=str(path))
    return out


# ---------------------------------------------------------- measurement CSV

def _read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot read: {exc.strerror}", path=str(path)) from None
    except UnicodeDecodeError:
        raise CalibrationError(f"{path}: not a UTF-8 text file", path=str(path)) from None


def _csv_lines(text: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """(header fields, [(line number, row dict)]); ``#`` comment and blank lines skipped.

    A row with more fields than the header gets the key ``None`` (caller reports it).
    """
    header: list[str] | None = None
    rows: list[tuple[int, dict[str, str]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in next(csv.reader([line]))]
        if header is None:
            header = fields
            continue
        row: dict = dict(zip(header, fields, strict=False))
        for col in header[len(fields):]:
            row[col] = ""
        if len(fields) > len(header):
            row[None] = fields[len(header):]
        rows.append((number, row))
    return header or [], rows


def _number(row: dict, col: str, path, line: int, *, optional: bool = False) -> float | None:
    s = row.get(col, "")
    if s == "":
        if optional:
            return None
        raise CalibrationError(f"{path}:{line}: {col} is empty; a number is required",
                               path=str(path), line=line, column=col)
    try:
        v = float(s)
    except ValueError:
        raise CalibrationError(f"{path}:{line}: {col} = {s!r} is not a number",
                               path=str(path), line=line, column=col) from None
    if not math.isfinite(v):
        raise CalibrationError(f"{path}:{line}: {col} = {s!r} must be finite",
                               path=str(path), line=line, column=col)
    return v


def parse_time_utc(s: str) -> float:
    """ISO 8601 with a zone ('Z' or +hh:mm) or unix seconds -> UTC unix seconds."""
    try:
        return float(s)
    except ValueError:
        pass
    try:
        t = _dt.datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"time_utc = {s!r} is neither ISO 8601 nor unix seconds") from None
    if t.tzinfo is None:
        raise ValueError(f"time_utc = {s!r} has no time zone; write e.g. {s}Z for UTC")
    return t.timestamp()


def format_time_utc(t_s: float) -> str:
    """UTC unix seconds -> ISO 8601 with 'Z' (milliseconds kept when not whole)."""
    t = _dt.datetime.fromtimestamp(t_s, _dt.UTC)
    text = t.isoformat(timespec="milliseconds" if t.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def read_measurements(path: str | Path) -> list[Measurement]:
    """Read a measurement CSV (see module docstring); ``CalibrationError`` names file, line, column."""
    fields, raw_rows = _csv_lines(_read_text(path))
    if not fields:
        raise CalibrationError(f"{path}: empty file; expected a header row with columns "
                               f"{', '.join(COLUMNS)}", path=str(path))
    unknown = [f for f in fields if f not in COLUMNS]
    if unknown:
        raise CalibrationError(f"{path}: unknown column(s) {', '.join(unknown)}; allowed: "
                               f"{', '.join(COLUMNS)}", path=str(path), column=unknown[0])
    for col in REQUIRED_COLUMNS:
        if col not in fields:
            raise CalibrationError(f"{path}: missing column {col!r}", path=str(path), column=col)
    rows: list[Measurement] = []
    for line, row in raw_rows:
        if None in row:
            raise CalibrationError(f"{path}:{line}: more fields than header columns",
                                   path=str(path), line=line)
        rows.append(_parse_row(row, path, line))
    if not rows:
        raise CalibrationError(f"{path}: no measurements", path=str(path))
    return rows


def _parse_row(row: dict, path, line: int) -> Measurement:
    kind = row.get("kind", "")
    if kind not in KINDS:
        raise CalibrationError(f"{path}:{line}: kind = {kind!r}; must be one of {', '.join(KINDS)}",
                               path=str(path), line=line, column="kind")
    az = _number(row, "axis_az_deg", path, line)
    el = _number(row, "axis_el_deg", path, line)
    if not -90.0 < el < 90.0:
        raise CalibrationError(f"{path}:{line}: axis_el_deg = {el} outside -90..90",
                               path=str(path), line=line, column="axis_el_deg")
    true_az = _number(row, "true_az_deg", path, line, optional=True)
    true_el = _number(row, "true_el_deg", path, line, optional=True)
    if (true_az is None) != (true_el is None):
        col = "true_el_deg" if true_el is None else "true_az_deg"
        raise CalibrationError(f"{path}:{line}: give both true_az_deg and true_el_deg or neither",
                               path=str(path), line=line, column=col)
    if true_el is not None and not -90.0 < true_el < 90.0:
        raise CalibrationError(f"{path}:{line}: true_el_deg = {true_el} outside -90..90",
                               path=str(path), line=line, column="true_el_deg")
    t = None
    if row.get("time_utc", ""):
        try:
            t = parse_time_utc(row["time_utc"])
        except ValueError as exc:
            raise CalibrationError(f"{path}:{line}: {exc}", path=str(path), line=line,
                                   column="time_utc") from None
    if kind == "grid" and true_az is None:
        raise CalibrationError(f"{path}:{line}: grid rows need true_az_deg and true_el_deg "
                               "(the surveyed direction of the magnet axis)",
                               path=str(path), line=line, column="true_az_deg")
    if kind == "sun" and t is None:
        raise CalibrationError(f"{path}:{line}: sun rows need time_utc (the Sun's position is "
                               "computed from it)", path=str(path), line=line, column="time_utc")
    p = _number(row, "pressure_hpa", path, line, optional=True)
    if p is not None and not 0.0 <= p <= 1200.0:
        raise CalibrationError(f"{path}:{line}: pressure_hpa = {p} outside 0..1200",
                               path=str(path), line=line, column="pressure_hpa")
    temp = _number(row, "temperature_c", path, line, optional=True)
    if temp is not None and not -80.0 <= temp <= 60.0:
        raise CalibrationError(f"{path}:{line}: temperature_c = {temp} outside -80..60",
                               path=str(path), line=line, column="temperature_c")
    return Measurement(kind=kind, axis_az_deg=az, axis_el_deg=el, true_az_deg=true_az,
                       true_el_deg=true_el, time_utc_s=t, pressure_hpa=p, temperature_c=temp,
                       boresight=row.get("boresight", ""), label=f"{Path(path).name}:{line}")


def write_measurements(path: str | Path, rows: Iterable[Measurement]) -> None:
    """Write measurements as CSV with all ``COLUMNS`` (empty cells for None)."""
    def fmt(v, digits=7):
        return "" if v is None else f"{v:.{digits}f}"

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for m in rows:
            w.writerow([m.kind, "" if m.time_utc_s is None else format_time_utc(m.time_utc_s),
                        fmt(m.axis_az_deg), fmt(m.axis_el_deg), fmt(m.true_az_deg),
                        fmt(m.true_el_deg), fmt(m.pressure_hpa, 2), fmt(m.temperature_c, 2),
                        m.boresight])


# ------------------------------------------------------------- sun rows

def standard_pressure_hpa(height_m: float) -> float:
    """ISA-like pressure at a height (hPa): 1013.25 exp(-h / 8434.5 m)."""
    return 1013.25 * math.exp(-height_m / 8434.5)


def apparent_sun_axis_direction(settings: config_mod.Settings, times_utc_s, *,
                                pressure_hpa: float | None = None,
                                temperature_c: float | None = None, boresight: str = ""):
    """Mechanical-axis direction (az, el degrees) that puts ``boresight`` on the apparent Sun.

    Azimuth in [0, 360).  Times are UTC unix seconds (float or array).
    """
    from tracker.astro.ephemeris import sun_altaz  # lazy: astropy is slow to import

    site = settings.site
    p = standard_pressure_hpa(site.height_m) if pressure_hpa is None else pressure_hpa
    t = DEFAULT_TEMPERATURE_C if temperature_c is None else temperature_c
    az, el = sun_altaz(times_utc_s, site.latitude_deg, site.longitude_deg, site.height_m,
                       pressure_hpa=p, temperature_c=t)
    b = (settings.envelope.boresight(boresight) if boresight
         else settings.envelope.boresights[0])
    # sky = (axis az + offset, sign * axis el)  =>  axis = (sky az - offset, sign * sky el)
    az_axis = np.mod(np.asarray(az, dtype=float) - b.azimuth_offset_deg, 360.0)
    el_axis = b.elevation_sign * np.asarray(el, dtype=float)
    if np.ndim(az_axis) == 0:
        return float(az_axis), float(el_axis)
    return az_axis, el_axis


def resolve_sun(rows: Sequence[Measurement], settings: config_mod.Settings) -> list[Measurement]:
    """Fill ``true_*`` of sun rows that lack them with the apparent Sun's axis direction."""
    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(rows):
        if m.kind == "sun" and m.true_az_deg is None:
            if m.boresight:
                settings.envelope.boresight(m.boresight)   # ConfigError names the allowed ones
            groups.setdefault((m.pressure_hpa, m.temperature_c, m.boresight), []).append(i)
    out = list(rows)
    for (p, t, b), idx in groups.items():
        times = np.array([rows[i].time_utc_s for i in idx], dtype=float)
        az, el = apparent_sun_axis_direction(settings, times, pressure_hpa=p, temperature_c=t,
                                             boresight=b)
        for k, i in enumerate(idx):
            out[i] = replace(rows[i], true_az_deg=float(az[k]), true_el_deg=float(el[k]))
    return out


# ------------------------------------------------------------------- fit

def _residuals(model: PointingModel, a, e, ta, te):
    pa, pe = model.axes_to_sky(a, e)
    cos_el = np.cos(np.radians(te))
    daz = (ta - pa + 180.0) % 360.0 - 180.0
    return daz * cos_el * 3600.0, (te - pe) * 3600.0


def fit(rows: Sequence[Measurement], terms: Sequence[str] = DEFAULT_TERMS, *,
        reject_sigma: float = 3.5, fit_date_utc: str = "", max_iter: int = 10,
        track_map_step_deg: float | None = None) -> FitResult:
    """Least-squares fit of pointing terms to measurements (all with ``true_*`` set).

    Iterated Gauss-Newton on the sky residuals (azimuth * cos el, elevation),
    each term's 1-sigma uncertainty from the covariance scaled by the residual
    variance.  Outliers are rejected one at a time, worst first, while a
    point's residual in either coordinate exceeds ``reject_sigma`` times the
    per-coordinate residual std.  Raises ``CalibrationError`` for unknown or
    repeated terms, fewer points than terms, or terms the points cannot separate.
    ``track_map_step_deg``: also fit a ``TrackMap`` with nodes this far apart to what the
    terms leave (``fit_track_map``); the RMS after is then the terms' and the map's.
    """
    terms = tuple(str(t).upper() for t in terms)
    bad = [t for t in terms if t not in TERMS]
    if bad:
        raise CalibrationError(f"unknown pointing term(s) {', '.join(bad)}; known: "
                               f"{', '.join(TERMS)}")
    if not terms or len(set(terms)) != len(terms):
        raise CalibrationError(f"terms must be non-empty and distinct, got {', '.join(terms)}")
    missing = [m.label or f"row {i + 1}" for i, m in enumerate(rows) if m.true_az_deg is None]
    if missing:
        raise CalibrationError(f"{len(missing)} measurement(s) lack a true direction "
                               f"(first: {missing[0]}); sun rows need resolve_sun(rows, settings)")
    k = len(terms)
    n = len(rows)
    if n < k:
        raise CalibrationError(f"{n} points cannot determine {k} terms ({', '.join(terms)}): "
                               "measure at least as many points as terms")
    a = np.array([m.axis_az_deg for m in rows], dtype=float)
    e = np.array([m.axis_el_deg for m in rows], dtype=float)
    ta = np.array([m.true_az_deg for m in rows], dtype=float)
    te = np.array([m.true_el_deg for m in rows], dtype=float)
    labels = [m.label or f"row {i + 1}" for i, m in enumerate(rows)]

    # Design matrix: sky residual change per arc-second of each term (linear in the terms).
    cos_el = np.cos(np.radians(te))
    jac = np.empty((2 * n, k))
    for j, name in enumerate(terms):
        fa, fe = basis(name, a, e)
        jac[:n, j] = fa * 3600.0 * cos_el
        jac[n:, j] = fe * 3600.0
    _check_separable(jac, terms)

    keep = np.ones(n, dtype=bool)
    rejected_idx: list[int] = []
    x = np.zeros(k)
    while True:
        if keep.sum() < k or 2 * keep.sum() <= k:
            raise CalibrationError(f"too few points left after rejecting outliers "
                                   f"({keep.sum()} for {k} terms)")
        rows_kept = np.concatenate([keep, keep])
        jk = jac[rows_kept]
        _check_separable(jk, terms)
        for _ in range(max_iter):
            model = PointingModel(dict(zip(terms, x, strict=True)))
            rx, ry = _residuals(model, a, e, ta, te)
            r = np.concatenate([rx, ry])[rows_kept]
            dx, *_ = np.linalg.lstsq(jk, r, rcond=None)
            x = x + dx
            if np.max(np.abs(dx)) < 1e-7:
                break
        model = PointingModel(dict(zip(terms, x, strict=True)))
        rx, ry = _residuals(model, a, e, ta, te)
        dof = 2 * int(keep.sum()) - k
        s = math.sqrt(float(np.sum(rx[keep] ** 2 + ry[keep] ** 2)) / dof)
        worst = np.where(keep, np.maximum(np.abs(rx), np.abs(ry)), -1.0)
        i = int(np.argmax(worst))
        if s > 0 and worst[i] > reject_sigma * s and dof > 1:
            keep[i] = False
            rejected_idx.append(i)
            log.info("rejected outlier %s: residual %.1f arcsec (%.1f sigma)", labels[i],
                     math.hypot(rx[i], ry[i]), worst[i] / s)
            continue
        break

    # residuals of rejected points against the final model
    rejected = [(labels[i], float(math.hypot(rx[i], ry[i]))) for i in rejected_idx]
    jk = jac[np.concatenate([keep, keep])]
    cov = np.linalg.inv(jk.T @ jk) * s * s
    sig = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sig, sig)
    warnings = []
    for p in range(k):
        for q in range(p + 1, k):
            if abs(corr[p, q]) > CORRELATION_WARN:
                warnings.append(f"{terms[p]} and {terms[q]} are {corr[p, q]:+.3f} correlated: "
                                "these points barely separate them (their sum is well determined)")
    rx0, ry0 = _residuals(PointingModel.identity(), a, e, ta, te)
    track = None
    if track_map_step_deg is not None:
        track = fit_track_map(a[keep], e[keep], rx[keep], ry[keep], track_map_step_deg)
        rx, ry = _residuals(PointingModel(dict(zip(terms, x, strict=True)), track_map=track),
                            a, e, ta, te)
    fitted = PointingModel(dict(zip(terms, (float(v) for v in x), strict=True)),
                           dict(zip(terms, (float(v) for v in sig), strict=True)),
                           fit_date_utc=fit_date_utc,
                           residual_rms_arcsec=_rms(rx[keep], ry[keep]), n_points=int(keep.sum()),
                           track_map=track)
    return FitResult(
        model=fitted, terms=terms,
        rms_before_arcsec=_rms(rx0[keep], ry0[keep]), rms_after_arcsec=_rms(rx[keep], ry[keep]),
        rms_az_arcsec=float(np.sqrt(np.mean(rx[keep] ** 2))),
        rms_el_arcsec=float(np.sqrt(np.mean(ry[keep] ** 2))),
        sigma_per_axis_arcsec=s, n_points=int(keep.sum()), rejected=tuple(rejected),
        correlations=corr, warnings=tuple(warnings), residuals_arcsec=np.column_stack([rx, ry]))


#: Weight of the track map's second differences against the residuals (arc-seconds per
#: arc-second of curvature): smooths nodes few points see; and of the nodes themselves (a
#: weak pull to zero where no point constrains one, e.g. the roll at elevation ~0).
TRACK_SMOOTHING = 0.3
TRACK_RIDGE = 0.01


def fit_track_map(az_deg: np.ndarray, el_deg: np.ndarray, res_az_arcsec: np.ndarray,
                  res_el_arcsec: np.ndarray, step_deg: float) -> TrackMap:
    """The track map that best explains sky residuals (arc-seconds: azimuth x cos el, and
    elevation) at encoder positions (degrees): pitch from the elevation residuals, roll from
    the azimuth ones (a roll moves the sky azimuth by ``roll sin E``, so points near the
    horizon hardly see it).  Nodes every ~``step_deg``: a whole turn when the points leave
    no gap wider than two steps, else the span they cover.  Linear least squares with
    ``TRACK_SMOOTHING`` and ``TRACK_RIDGE``."""
    if not 0.0 < step_deg <= 90.0:
        raise CalibrationError(f"track map step {step_deg} deg: must be in (0, 90]")
    if az_deg.size < 3:
        raise CalibrationError(f"{az_deg.size} points cannot determine a track map")
    az = np.sort(np.mod(az_deg, 360.0))
    gaps = np.diff(np.concatenate([az, [az[0] + 360.0]]))
    g = int(np.argmax(gaps))
    if gaps[g] <= 2.0 * step_deg:
        n = max(2, round(360.0 / step_deg))
        layout = TrackMap(0.0, 360.0 / n, (0.0,) * n, (0.0,) * n)
    else:
        start = float(az[(g + 1) % az.size])
        span = 360.0 - float(gaps[g])
        n = max(2, math.ceil(span / step_deg - 1e-9) + 1)
        if n * step_deg > 360.0:
            n = int(360.0 // step_deg)
        layout = TrackMap(start, step_deg, (0.0,) * n, (0.0,) * n)
    w = layout.design(az_deg)
    sin_e = np.sin(np.radians(el_deg))[:, None]
    d2 = np.diff(np.eye(n), 2, axis=0)
    if layout.periodic:     # the curvature across the join of the turn
        wrap = np.zeros((2, n))
        wrap[0, [-2, -1, 0]] = (1.0, -2.0, 1.0)
        wrap[1, [-1, 0, 1]] = (1.0, -2.0, 1.0)
        d2 = np.vstack([d2, wrap])
    out = []
    for design, rhs in ((w, res_el_arcsec), (w * sin_e, res_az_arcsec)):
        lhs = np.vstack([design, TRACK_SMOOTHING * d2, TRACK_RIDGE * np.eye(n)])
        b = np.concatenate([rhs, np.zeros(d2.shape[0] + n)])
        out.append(tuple(float(v) for v in np.linalg.lstsq(lhs, b, rcond=None)[0]))
    return TrackMap(layout.start_deg, layout.step_deg, out[0], out[1])


def _rms(rx: np.ndarray, ry: np.ndarray) -> float:
    return float(np.sqrt(np.mean(rx ** 2 + ry ** 2))) if rx.size else float("nan")


def _check_separable(jac: np.ndarray, terms: tuple[str, ...]) -> None:
    """Refuse a (near-)singular normal matrix, naming the terms that cannot be separated."""
    norms = np.linalg.norm(jac, axis=0)
    zero = [terms[j] for j in range(len(terms)) if norms[j] < 1e-9 * max(norms.max(), 1e-300)]
    if zero:
        raise CalibrationError(f"the points carry no information on {', '.join(zero)}; "
                               "drop the term(s) or measure elsewhere")
    u, sv, vt = np.linalg.svd(jac / norms, full_matrices=False)
    if sv[-1] < 1e-8 * sv[0]:
        null = vt[-1]
        involved = [terms[j] for j in np.argsort(-np.abs(null)) if abs(null[j]) > 0.1]
        raise CalibrationError(f"singular fit: terms {', '.join(involved)} cannot be separated by "
                               "these points (drop one of them, or measure a wider range)")


# ------------------------------------------------------------------- bore offsets

@dataclass(frozen=True)
class BoreOffsetFit:
    """A bore's alignment offset from Sun measurements (``tracker.config.Bore`` frame: x =
    azimuth * cos(elevation), y = elevation, on the sky of the boresight used; arc-seconds)
    with the standard errors of the mean, the RMS scatter about it and the count."""

    bore: str
    offset_x_arcsec: float
    offset_y_arcsec: float
    sigma_x_arcsec: float
    sigma_y_arcsec: float
    rms_arcsec: float
    n: int

    def report(self) -> str:
        return (f"bore {self.bore}: offset_x_arcsec = {self.offset_x_arcsec:.2f} +- "
                f"{self.sigma_x_arcsec:.2f}, offset_y_arcsec = {self.offset_y_arcsec:.2f} +- "
                f"{self.sigma_y_arcsec:.2f} (rms scatter {self.rms_arcsec:.2f} arcsec, "
                f"{self.n} measurements)")


def fit_bore_offset(settings: config_mod.Settings, rows: Sequence[Measurement], bore: str, *,
                    model: PointingModel | None = None) -> BoreOffsetFit:
    """Fit ``bore``'s offset from sun rows taken with the Sun centred in that bore.

    Each row's encoder reading goes through the pointing ``model`` (default: identity) to
    the mechanical axis' real direction; the bore's optical axis is where the Sun was, so the
    offset is Sun - mechanical axis on the sky, averaged.  The Sun is the geometric one (X-rays
    are not refracted) unless the row gives ``true_*``.  Needs at least 2 sun rows.
    """
    names = [b.name for b in settings.bore_list]
    if bore not in names:
        raise CalibrationError(f"unknown bore {bore!r}; this config has: {', '.join(names)}")
    sun_rows = [m for m in rows if m.kind == "sun"]
    if len(sun_rows) < 2:
        raise CalibrationError(f"a bore offset needs at least 2 sun measurements, got "
                               f"{len(sun_rows)}")
    model = model or PointingModel.identity()
    dx, dy = [], []
    for m in sun_rows:
        b = (settings.envelope.boresight(m.boresight) if m.boresight
             else settings.envelope.boresights[0])
        if m.true_az_deg is None or m.true_el_deg is None:
            if m.time_utc_s is None:
                raise CalibrationError(f"{m.label or 'a sun row'}: needs time_utc")
            taz, tel = apparent_sun_axis_direction(settings, m.time_utc_s, pressure_hpa=0.0,
                                                   boresight=m.boresight)
        else:
            taz, tel = m.true_az_deg, m.true_el_deg
        paz, pel = model.axes_to_sky(m.axis_az_deg, m.axis_el_deg)
        daz = (taz - paz + 180.0) % 360.0 - 180.0
        dx.append(daz * math.cos(math.radians(tel)) * 3600.0)
        dy.append(b.elevation_sign * (tel - pel) * 3600.0)
    x, y = np.array(dx), np.array(dy)
    n = x.size
    mx, my = float(x.mean()), float(y.mean())
    rms = float(np.sqrt(np.mean((x - mx) ** 2 + (y - my) ** 2)))
    return BoreOffsetFit(bore, mx, my, float(x.std(ddof=1) / math.sqrt(n)),
                         float(y.std(ddof=1) / math.sqrt(n)), rms, n)
