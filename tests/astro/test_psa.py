"""The independent PSA Sun position against the full reduction (astropy, tested elsewhere
against skyfield/DE421): within its stated bound at every preset's site and the poles."""

from __future__ import annotations

import ast
import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest

from tests.support import ROOT
from tracker.astro.ephemeris import sun_altaz
from tracker.astro.psa import (
    MAX_ERROR_DEG,
    VALID_FROM_UNIX_S,
    VALID_TO_UNIX_S,
    psa_altaz,
    psa_enu,
    psa_enu_scalar,
)


def separation_deg(az1, el1, az2, el2) -> np.ndarray:
    a1, e1, a2, e2 = (np.radians(np.asarray(x, dtype=float)) for x in (az1, el1, az2, el2))
    v1 = np.stack([np.cos(e1) * np.sin(a1), np.cos(e1) * np.cos(a1), np.sin(e1)], axis=-1)
    v2 = np.stack([np.cos(e2) * np.sin(a2), np.cos(e2) * np.cos(a2), np.sin(e2)], axis=-1)
    cross = np.linalg.norm(np.cross(v1, v2), axis=-1)
    return np.degrees(np.arctan2(cross, np.sum(v1 * v2, axis=-1)))


from tests.support.presets import preset_sites  # noqa: E402

UNIX_2026 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
IERS_SAFE_END = dt.datetime(2027, 6, 1, tzinfo=dt.UTC).timestamp()  # inside the installed table


def test_shares_no_code_with_the_main_reduction():
    """The module imports only math, numpy and typing: no astropy, ERFA, skyfield, no tracker."""
    tree = ast.parse(Path(ROOT / "tracker" / "astro" / "psa.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "math", "numpy", "typing"}, imported


@pytest.mark.parametrize("site", preset_sites() + [(90.0, 0.0, 0.0), (-90.0, 0.0, 0.0),
                                                   (0.0, -120.0, 0.0), (-24.6, -70.4, 2600.0)],
                         ids=lambda s: f"lat{s[0]:+.1f}_lon{s[1]:+.1f}")
def test_within_stated_bound_of_the_full_reduction(site):
    rng = np.random.default_rng(2001)
    # Random times over 2020 .. mid-2027 (where the IERS table pins UT1) plus 2000-2019.
    t = np.concatenate([rng.uniform(VALID_FROM_UNIX_S, UNIX_2026 - 6 * 365 * 86400.0, 150),
                        rng.uniform(UNIX_2026 - 6 * 365 * 86400.0, IERS_SAFE_END, 350)])
    az, el = psa_altaz(t, *site)
    ref_az, ref_el = sun_altaz(t, *site)
    err = separation_deg(az, el, ref_az, ref_el)
    assert err.max() <= MAX_ERROR_DEG, err.max()
    # and it is a real algorithm, not a constant bound: typical error tens of arc-seconds,
    # far below the 0.05 deg interlock bound, far above the main reduction's 0.01".
    assert 0.001 < float(np.median(err)) < 0.006
    assert np.all((az >= 0.0) & (az < 360.0)) and np.all(np.abs(el) <= 90.0)


def test_scalar_path_equals_vector_path():
    rng = np.random.default_rng(5)
    for lat, lon in ((53.5775, 9.8797), (46.2389, 6.0455), (-89.9, 170.0), (90.0, -30.0)):
        t = rng.uniform(VALID_FROM_UNIX_S, VALID_TO_UNIX_S, 50)
        vec = psa_enu(t, lat, lon)
        sin_lat, cos_lat = math.sin(math.radians(lat)), math.cos(math.radians(lat))
        for i, ti in enumerate(t):
            np.testing.assert_allclose(psa_enu_scalar(float(ti), sin_lat, cos_lat, lon), vec[i],
                                       atol=1e-12)
        a, e = psa_altaz(float(t[0]), lat, lon)
        assert type(a) is float and type(e) is float


def test_known_geometry():
    """Equinox and solstice facts an almanac states, independent of any library."""
    # 2024 June solstice 20:51 UTC: declination +23.44 deg -> at the North Pole el = +23.44.
    t = dt.datetime(2024, 6, 20, 20, 51, tzinfo=dt.UTC).timestamp()
    _, el = psa_altaz(t, 90.0, 0.0)
    assert el == pytest.approx(23.44, abs=0.01)
    # 2024 March equinox 03:06 UTC: declination 0 -> on the horizon at both poles (+ parallax).
    t = dt.datetime(2024, 3, 20, 3, 6, tzinfo=dt.UTC).timestamp()
    assert psa_altaz(t, 90.0, 0.0)[1] == pytest.approx(0.0, abs=0.01)
    assert psa_altaz(t, -90.0, 0.0)[1] == pytest.approx(0.0, abs=0.01)


def test_bad_site_refused():
    for lat in (91.0, -90.5, math.nan):
        with pytest.raises(ValueError, match="latitude"):
            psa_altaz(1.7e9, lat, 0.0)
    with pytest.raises(ValueError, match="longitude"):
        psa_altaz(1.7e9, 0.0, math.inf)
