"""The IERS binary cache: same numbers as astropy's own parse, keyed to the installed files,
written atomically, survives a damaged file and an unwritable folder; a cold ``tracker sun``
with a warm cache does not import astropy at all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support import ROOT
from tracker.astro import iers_cache


@pytest.fixture
def cache_in(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("HELIO_TRACKER_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def astropy_parsed():
    """astropy's table parsed the slow way, straight from the ASCII files."""
    from tracker.astro.datasources import ensure_offline

    ensure_offline(astropy_now=True)
    from astropy.utils import iers

    return iers.IERS_Auto.read()


def _assert_same_table(a, b) -> None:
    from astropy.time import Time

    assert a.colnames == b.colnames and len(a) == len(b) and a.meta == b.meta
    for name in a.colnames:
        x, y = a[name], b[name]
        assert type(x) is type(y) and getattr(x, "unit", None) == getattr(y, "unit", None), name
        if type(x).__name__ == "MaskedColumn":
            assert np.array_equal(x.mask, y.mask) and np.array_equal(x.filled(""), y.filled(""))
        else:
            vx, vy = np.asarray(getattr(x, "value", x)), np.asarray(getattr(y, "value", y))
            assert np.array_equal(vx, vy, equal_nan=vx.dtype.kind == "f"), name
    t = Time(np.linspace(41700.0, 62000.0, 97), format="mjd", scale="utc")
    assert np.array_equal(a.ut1_utc(t).value, b.ut1_utc(t).value)
    assert np.array_equal(np.asarray(a.pm_xy(t)), np.asarray(b.pm_xy(t)))


@pytest.mark.slow
def test_round_trip_gives_astropys_table_bit_for_bit(cache_in, astropy_parsed):
    first, source = iers_cache.load_table()
    assert source == "parsed, cached"
    files = list(cache_in.glob("iers-auto-*.npz"))
    assert files == [iers_cache.cache_path()]
    assert not list(cache_in.glob(".tmp-*"))  # the temporary file was renamed, not left
    second, source = iers_cache.load_table()
    assert source == "cache"
    _assert_same_table(astropy_parsed, second)
    # The ephemeris' own arrays are the same columns.
    with np.load(files[0], allow_pickle=False) as data:
        eo = iers_cache._eo_from(data, "cache")
    assert np.array_equal(eo.mjd, astropy_parsed["MJD"].value)
    assert np.array_equal(eo.ut1_utc_s, astropy_parsed["UT1_UTC"].value)
    assert np.array_equal(eo.pm_y_arcsec, astropy_parsed["PM_y"].value)
    assert eo.predictive_mjd == astropy_parsed.meta["predictive_mjd"]
    assert eo.leap_year[0] == 1972 and eo.leap_tai_utc[-1] >= 37.0


@pytest.mark.slow
def test_damaged_cache_is_remade(cache_in, astropy_parsed):
    path = iers_cache.cache_path()
    cache_in.mkdir(parents=True)
    path.write_bytes(b"not an npz file")
    table, source = iers_cache.load_table()
    assert source == "parsed, cached"
    _assert_same_table(astropy_parsed, table)
    with np.load(path, allow_pickle=False) as data:  # replaced by a good one
        assert "eo_mjd" in data.files


@pytest.mark.slow
def test_unwritable_cache_folder_falls_back_to_parsing(tmp_path, monkeypatch, astropy_parsed):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("HELIO_TRACKER_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    table, source = iers_cache.load_table()
    assert source == "parsed (cache folder not writable)"
    _assert_same_table(astropy_parsed, table)


@pytest.mark.slow
def test_other_installations_tables_are_kept_until_unused_for_a_month(cache_in, astropy_parsed):
    """Two venvs (two installed versions) share the folder without deleting each other's
    table; one unused for ``STALE_CACHE_S`` goes when a table is written."""
    import time

    cache_in.mkdir(parents=True)
    recent, stale = cache_in / "iers-auto-other1.npz", cache_in / "iers-auto-other2.npz"
    recent.write_bytes(b"x")
    stale.write_bytes(b"x")
    old_s = time.time() - iers_cache.STALE_CACHE_S - 60.0
    os.utime(stale, (old_s, old_s))
    _, source = iers_cache.load_table()
    assert source == "parsed, cached"
    assert recent.exists() and not stale.exists() and iers_cache.cache_path().exists()
    path = iers_cache.cache_path()
    os.utime(path, (old_s, old_s))
    _, source = iers_cache.load_table()           # a cache hit marks the table as in use
    assert source == "cache" and path.stat().st_mtime > old_s + 3600.0


def test_key_follows_the_installed_files(tmp_path, monkeypatch):
    """A new astropy-iers-data (other files, other times) gives another cache file."""
    copies = {}
    for name, path in iers_cache.iers_files().items():
        copies[name] = str(shutil.copy(path, tmp_path / Path(path).name))
    monkeypatch.setattr(iers_cache, "iers_files", lambda: copies)
    key = iers_cache.cache_key()
    assert key == iers_cache.cache_key()
    st = os.stat(copies["iers_a"])
    os.utime(copies["iers_a"], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert iers_cache.cache_key() != key


def _cold_sun(cache_dir: Path, *args: str) -> dict:
    code = (
        "import sys, json, time\n"
        "t0 = time.perf_counter()\n"
        "from tracker.cli.main import main\n"
        f"sys.argv = ['tracker', 'sun', *{list(args)!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(json.dumps({'astropy': sorted(m for m in sys.modules if m.startswith('astropy')),"
        " 'wall_s': time.perf_counter() - t0}))\n"
    )
    env = {**os.environ, "HELIO_TRACKER_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=240, check=True)
    lines = out.stdout.strip().splitlines()
    return {"output": lines[:-1], **json.loads(lines[-1])}


@pytest.mark.slow
def test_cold_tracker_sun_with_a_warm_cache_imports_no_astropy(tmp_path):
    first = _cold_sun(tmp_path, "--time", "2024-06-21T12:00:00Z", "--json")  # fills the cache
    assert list(tmp_path.glob("iers-auto-*.npz"))
    second = _cold_sun(tmp_path, "--time", "2024-06-21T12:00:00Z", "--json")
    assert second["astropy"] == []  # astropy (0.7 s of imports, 2 s of parsing) never loaded
    assert json.loads(first["output"][0]) == json.loads(second["output"][0])
    row = json.loads(second["output"][0])
    assert row["elevation_deg"] == pytest.approx(59.03, abs=0.05)  # Hamburg, solstice noon
