"""The magnet's bores: each bore's off-axis angle to a target and its optics' efficiency.

Frame: a bore's optical axis lies ``(offset_x_arcsec, offset_y_arcsec)`` from the mechanical
axis on the sky tangent plane of the boresight in use (x = azimuth * cos(elevation), positive
towards larger azimuth; y = elevation, positive up).  The off-axis angle of a bore is the
angle between the target (the Sun) and the bore's optical axis, arc-seconds, in the small-angle
(tangent-plane) approximation, exact to < 0.01 arcsec for offsets below 1 degree.

The record codes a sample's per-bore figures as compact JSON (``encode``/``decode``):
``{"bore1": [mean_off_axis_arcsec, max_off_axis_arcsec, on_sun_s, effective_s], ...}``.
"""

from __future__ import annotations

import functools
import json
import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain

from tracker.config import Bore


@dataclass(frozen=True)
class BoreSet:
    """The bores of one configuration, as plain tuples for a per-tick loop."""

    names: tuple[str, ...]
    offsets_arcsec: tuple[tuple[float, float], ...]
    tolerances_arcsec: tuple[float, ...]
    tables: tuple[tuple[tuple[float, ...], tuple[float, ...]], ...]
    #: Per bore, each table segment's slope (efficiency per arcsec), as ``np.interp`` takes it.
    _slopes: tuple[tuple[float, ...], ...] = field(init=False, repr=False, compare=False)

    #: Per bore for ``figures``: x and y offsets, tolerance, the table's first segment
    #: (x0, x1, y0, slope; x1 = -inf for a one-point table) and the bore's index.
    _fast: tuple[tuple[float, float, float, float, float, float, float, int], ...] = field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_slopes", tuple(
            tuple((eff[j + 1] - eff[j]) / (angles[j + 1] - angles[j])
                  for j in range(len(angles) - 1))
            for angles, eff in self.tables))
        object.__setattr__(self, "_fast", tuple(
            (ox, oy, tol, xs[0], xs[1] if len(xs) > 1 else -math.inf, ys[0],
             slopes[0] if slopes else 0.0, i)
            for i, ((ox, oy), tol, (xs, ys), slopes) in enumerate(zip(
                self.offsets_arcsec, self.tolerances_arcsec, self.tables, self._slopes,
                strict=True))))

    @classmethod
    def from_config(cls, bores: Sequence[Bore], reference: str = "") -> BoreSet:
        """The bores, their offsets taken relative to the ``reference`` bore's (the aim
        point of tracking; empty: the mechanical axis)."""
        rx, ry = reference_offset_arcsec(bores, reference)
        return cls(tuple(b.name for b in bores),
                   tuple((b.offset_x_arcsec - rx, b.offset_y_arcsec - ry) for b in bores),
                   tuple(b.on_sun_tolerance_arcsec for b in bores),
                   tuple((tuple(b.efficiency_off_axis_arcsec), tuple(b.efficiency))
                         for b in bores))

    def off_axis_arcsec(self, target_az_deg: float, target_el_deg: float,
                        pointing_az_deg: float, pointing_el_deg: float) -> list[float]:
        """Each bore's off-axis angle (arcsec) when the mechanical axis points at ``pointing``
        and the target is at ``target`` (sky, degrees); NaN when either is unknown."""
        dx, dy = tangent_offset_arcsec(target_az_deg, target_el_deg, pointing_az_deg,
                                       pointing_el_deg)
        return [math.hypot(dx + ox, dy + oy) for ox, oy in self.offsets_arcsec]

    def efficiency(self, index: int, off_axis_arcsec: float) -> float:
        """Bore ``index``'s optics efficiency at ``off_axis_arcsec`` (linear in the table;
        the end values beyond it); 0 for NaN."""
        angles, eff = self.tables[index]
        return _interp(off_axis_arcsec, angles, eff, self._slopes[index])

    def figures(self, ticks: Sequence[tuple[float, float, float]], cap_s: float
                ) -> list[tuple[float, float, float, float]]:
        """Each bore's figures over a sample's ``ticks`` = (dt s, dx, dy): the mechanical
        axis' offset from the target on the tangent plane (arcsec, ``tangent_offset_arcsec``).
        Per bore: (mean off-axis arcsec (dt-weighted), max off-axis arcsec, on-Sun s,
        effective s); NaN angles without ticks; the seconds capped at ``cap_s`` (the
        sample's length).  The efficiency is computed only where the bore is on the Sun.
        One loop per bore on plain floats (once a sample, twice, up to eight bores)."""
        hypot = math.hypot
        nan = math.nan
        out = []
        w = 0.0     # the ticks' total weight, the same for every bore
        for dt_s, _, _ in ticks:
            w += dt_s
        for ox, oy, tol, x0, x1, y0, slope0, i in self._fast:
            s = on = eff = 0.0
            mx = nan
            for dt_s, dx, dy in ticks:
                a = hypot(dx + ox, dy + oy)
                s += a * dt_s
                if not a <= mx:     # also the first (mx NaN)
                    mx = a
                if a <= tol:
                    on += dt_s
                    eff += dt_s * (slope0 * (a - x0) + y0 if x0 < a < x1
                                   else _interp(a, *self.tables[i], self._slopes[i]))
            out.append((s / w if w > 0.0 else nan, mx, on if on < cap_s else cap_s,
                        eff if eff < cap_s else cap_s))
        return out


def tangent_offset_arcsec(target_az_deg: float, target_el_deg: float, pointing_az_deg: float,
                          pointing_el_deg: float) -> tuple[float, float]:
    """(x, y) of ``pointing`` from ``target`` on the target's tangent plane, arcsec (x =
    azimuth * cos(elevation), towards larger azimuth; y = elevation, up): the sky, degrees
    in; the small-angle frame of the bore offsets."""
    daz = (pointing_az_deg - target_az_deg + 180.0) % 360.0 - 180.0
    return (daz * math.cos(target_el_deg * _DEG_TO_RAD) * 3600.0,
            (pointing_el_deg - target_el_deg) * 3600.0)


_DEG_TO_RAD = math.pi / 180.0


def _interp(x: float, angles: tuple[float, ...], eff: tuple[float, ...],
            slopes: tuple[float, ...]) -> float:
    """``np.interp(x, angles, eff)`` with its arithmetic, on plain floats (numpy on a scalar
    costs ~5 us a call); 0 for NaN."""
    if x != x:
        return 0.0
    if len(angles) <= 1 or x <= angles[0]:
        return float(eff[0])
    if x >= angles[-1]:
        return float(eff[-1])
    j = bisect_right(angles, x) - 1
    if angles[j] == x:
        return float(eff[j])
    return slopes[j] * (x - angles[j]) + eff[j]


def reference_offset_arcsec(bores: Sequence[Bore], reference: str) -> tuple[float, float]:
    """(x, y) offset of the ``reference`` bore (arcsec); (0, 0) for the mechanical axis."""
    for b in bores:
        if b.name == reference:
            return b.offset_x_arcsec, b.offset_y_arcsec
    return 0.0, 0.0


def aim_point(az_deg: float, el_deg: float, offset_x_arcsec: float,
              offset_y_arcsec: float) -> tuple[float, float]:
    """Where the mechanical axis must point (sky, degrees) so that an optical axis offset by
    ``(offset_x, offset_y)`` arcsec points at ``(az, el)``: the offset subtracted on the
    tangent plane (azimuth wrapped to [0, 360))."""
    el = el_deg - offset_y_arcsec / 3600.0
    az = az_deg - offset_x_arcsec / 3600.0 / math.cos(math.radians(el))
    return az % 360.0, el


def encode(names: Sequence[str],
           figures: Sequence[tuple[float, float, float, float]]) -> str:
    """One sample's per-bore figures (per bore: mean off-axis arcsec, max off-axis arcsec,
    on-Sun s, effective s) as the record's JSON text, each rounded to 1e-6 (a non-finite
    value as null).  Finite figures go through one ``%``-format of a template cached per
    bore set (once a second, up to eight bores, twice: ``json.dumps`` cost 30 us here)."""
    flat = tuple(chain.from_iterable(figures))
    if len(flat) != 4 * len(names):
        raise ValueError(f"{len(names)} bores need {4 * len(names)} figures, not {len(flat)}")
    if math.isfinite(sum(flat)):        # NaN or inf anywhere makes the sum non-finite
        return _template(tuple(names)) % flat

    def r(x: float) -> str:
        return f"{x:.6f}" if math.isfinite(x) else "null"
    return "{" + ",".join(f"{_json_key(n)}:[{r(a)},{r(b)},{r(c)},{r(d)}]"
                          for n, (a, b, c, d) in zip(names, figures, strict=True)) + "}"


@functools.cache
def _template(names: tuple[str, ...]) -> str:
    """The record's JSON for ``names`` with ``%.6f`` for each figure."""
    return "{" + ",".join(f"{_json_key(n).replace('%', '%%')}:[%.6f,%.6f,%.6f,%.6f]"
                          for n in names) + "}"


@functools.cache
def _json_key(name: str) -> str:
    return json.dumps(str(name))


def decode(text: str | None) -> dict[str, tuple[float, float, float, float]]:
    """The record's JSON text back to ``{bore: (mean off-axis, max off-axis, on_sun_s,
    effective_s)}`` (null as NaN); empty for NULL (a log written before bores were recorded)
    or for text that is not such JSON."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except (TypeError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    out = {}
    for name, v in raw.items():
        if isinstance(v, list) and len(v) == 4:
            if None in v:
                v = [math.nan if x is None else x for x in v]
            try:
                a, b, c, d = map(float, v)
            except (TypeError, ValueError):
                continue        # not figures: this bore reads as absent
            out[str(name)] = (a, b, c, d)
    return out
