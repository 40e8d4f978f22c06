"""The independent Sun interlock: never trips on the right target over a year at every preset's
site, always trips on a target 0.1 deg off, at the wrong site or 60 s wrong."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from tests.support import CONFIG_DIR
from tests.support.presets import preset_sites
from tracker import config
from tracker.astro.ephemeris import SunTrack, sun_altaz
from tracker.errors import ConfigError
from tracker.loop.interlock import InterlockVerdict, SunInterlock

UNIX_2026 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
#: Every 7 h for 366 days: every hour of the day and every day of the year's declinations.
YEAR_7H = UNIX_2026 + np.arange(0.0, 366 * 86400.0, 7 * 3600.0)
SITES = preset_sites()


def offset_target(az_deg: np.ndarray, el_deg: np.ndarray, offset_deg: float,
                  direction_rad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Directions exactly ``offset_deg`` (great circle) from (az, el), towards position angle
    ``direction_rad`` (0 = towards the zenith, pi/2 = towards increasing azimuth)."""
    az, el = np.radians(az_deg), np.radians(el_deg)
    p = np.stack([np.cos(el) * np.sin(az), np.cos(el) * np.cos(az), np.sin(el)], axis=-1)
    up = np.stack([-np.sin(el) * np.sin(az), -np.sin(el) * np.cos(az), np.cos(el)], axis=-1)
    east = np.stack([np.cos(az), -np.sin(az), np.zeros_like(az)], axis=-1)
    d = np.cos(direction_rad)[:, None] * up + np.sin(direction_rad)[:, None] * east
    r = math.radians(offset_deg)
    q = math.cos(r) * p + math.sin(r) * d
    return (np.degrees(np.arctan2(q[:, 0], q[:, 1])) % 360.0,
            np.degrees(np.arcsin(np.clip(q[:, 2], -1, 1))))


@pytest.fixture(scope="module", params=SITES, ids=lambda s: f"lat{s[0]:+.2f}")
def site_year(request):
    """(site, times, reference az, reference el) from the full reduction, a year every 7 h."""
    site = request.param
    az, el = sun_altaz(YEAR_7H, *site)
    return site, YEAR_7H, az, el


def test_never_trips_on_the_right_target_over_a_year(site_year):
    site, t, az, el = site_year
    lock = SunInterlock(*site)
    assert lock.ok_all(t, az, el).all()
    sep = lock.separation_deg(t, az, el)
    assert sep.max() < 0.01 < lock.bound_deg  # PSA's own error, 5x below the bound
    # The scalar per-tick path agrees, sample by sample, with the same margin.
    for i in range(0, t.size, 5):
        v = lock.check(float(t[i]), float(az[i]), float(el[i]))
        assert v.ok and v.reason == "" and v.separation_deg < 0.01


def test_never_trips_on_the_fast_path_target_dense_days():
    """SunTrack (what the engine tracks) at 10 s steps over two days, incl. the CAST rear end's
    sky azimuth given beyond 360 (a cable-wrapped axis): always ok."""
    for site in SITES:
        track = SunTrack(*site, "2026-06-20T00:00:00Z", "2026-06-22T00:00:00Z")
        t = np.arange(track.start_s, track.end_s, 10.0)
        az, el = track.altaz(t)
        lock = SunInterlock(*site)
        assert lock.ok_all(t, az, el).all()
        assert lock.ok_all(t, az + 360.0, el).all() and lock.ok_all(t, az - 720.0, el).all()


def test_trips_on_a_target_0_1_deg_off(site_year):
    site, t, az, el = site_year
    lock = SunInterlock(*site)
    rng = np.random.default_rng(10)
    for direction in (np.zeros(t.size), np.full(t.size, math.pi / 2),
                      rng.uniform(0, 2 * math.pi, t.size)):
        off_az, off_el = offset_target(az, el, 0.1, direction)
        assert not lock.ok_all(t, off_az, off_el).any()
        sep = lock.separation_deg(t, off_az, off_el)
        assert sep.min() > 0.09 and sep.max() < 0.11
    v = lock.check(float(t[3]), float(off_az[3]), float(off_el[3]))
    assert not v.ok and 0.09 < v.separation_deg < 0.11 and "bound 0.05 deg" in v.reason


def test_trips_at_a_wrong_time_by_60_s(site_year):
    site, t, az, el = site_year
    lock = SunInterlock(*site)
    assert not lock.ok_all(t + 60.0, az, el).any()
    assert not lock.ok_all(t - 60.0, az, el).any()
    # 60 s of Earth rotation moves the Sun 0.25 deg x cos(declination) >= 0.229 deg
    assert lock.separation_deg(t + 60.0, az, el).min() > 0.2


def test_trips_at_a_wrong_site():
    cast, hamburg = (46.2389, 6.0455, 450.0), (53.5775, 9.8797, 10.0)
    az, el = sun_altaz(YEAR_7H, *hamburg)
    assert not SunInterlock(*cast).ok_all(YEAR_7H, az, el).any()
    # even a small slip: longitude 0.2 deg off (0.2 deg of hour angle, 48 s of time)
    assert not SunInterlock(hamburg[0], hamburg[1] + 0.2, 10.0).ok_all(YEAR_7H, az, el).any()
    # a sign error in the longitude (west for east)
    assert not SunInterlock(hamburg[0], -hamburg[1], 10.0).ok_all(YEAR_7H, az, el).any()


def test_bound_is_the_bound():
    """A target 0.04 deg off passes the default bound, 0.06 deg off does not; 0.08 passes 0.1."""
    site = SITES[0]
    t = YEAR_7H[::10]
    az, el = sun_altaz(t, *site)
    pa = np.random.default_rng(3).uniform(0, 2 * math.pi, t.size)
    lock = SunInterlock(*site)
    # PSA errs by up to 0.01 deg: 0.035 off is always inside 0.05, 0.065 off always outside.
    assert lock.ok_all(t, *offset_target(az, el, 0.035, pa)).all()
    assert not lock.ok_all(t, *offset_target(az, el, 0.065, pa)).any()
    wide = SunInterlock(*site, bound_deg=0.1)
    assert wide.ok_all(t, *offset_target(az, el, 0.08, pa)).all()


def test_fails_safe_on_inputs_it_cannot_check():
    lock = SunInterlock(53.5775, 9.8797, 10.0)
    t = UNIX_2026 + 43200.0
    az, el = sun_altaz(t, 53.5775, 9.8797, 10.0)
    assert lock.check(t, az, el).ok
    for bad in ((math.nan, az, el), (t, math.nan, el), (t, az, math.inf), (t, "x", el),
                (t, az, 91.0), (0.0, az, el), (4.0e9, az, el)):
        v = lock.check(*bad)
        assert isinstance(v, InterlockVerdict) and not v.ok and v.reason
    assert "2000-2060" in lock.check(4.0e9, az, el).reason


@pytest.mark.parametrize("kwargs, fragment", [
    ({"lat_deg": 91.0}, "latitude"), ({"lon_deg": math.nan}, "finite"),
    ({"bound_deg": 0.01}, "bound_deg"), ({"bound_deg": 5.0}, "bound_deg"),
    ({"bound_deg": True}, "bound_deg"),
])
def test_bad_construction_refused(kwargs, fragment):
    args = {"lat_deg": 53.5, "lon_deg": 9.9, "height_m": 10.0, "bound_deg": 0.05, **kwargs}
    with pytest.raises(ValueError, match=fragment):
        SunInterlock(**args)


def test_config_section_and_presets(tmp_path):
    for path in sorted(CONFIG_DIR.glob("*.toml")):
        if path.name.endswith("_map.toml"):      # a driver map, not a preset
            continue
        settings = config.load(path)
        assert settings.interlock.enabled and settings.interlock.bound_deg == 0.05
        lock = SunInterlock.from_settings(settings)
        assert lock is not None and lock.lat_deg == settings.site.latitude_deg
    text = (CONFIG_DIR / "sim.toml").read_text()
    off = tmp_path / "off.toml"
    off.write_text(text.replace("enabled = true\nbound_deg = 0.05", "enabled = false"))
    assert SunInterlock.from_settings(config.load(off)) is None
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("bound_deg = 0.05", "bound_deg = 0.001"))
    with pytest.raises(ConfigError, match="interlock.bound_deg"):
        config.load(bad)
