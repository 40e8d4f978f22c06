"""Nothing downloads, ever: every network connection fails, positions still come."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

from tracker.astro.datasources import StaleIERSWarning, data_sources, iers_mjd_range, skyfield_de421
from tracker.astro.ephemeris import SunTrack, sun_altaz, sun_rates

HAMBURG = (53.5775, 9.8797, 10.0)
TWO_YEARS_S = 2 * 365.25 * 86400.0


class NetworkUsed(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Make every way out fail loudly (real sockets: nothing here is mocked but the failure)."""
    attempts: list[object] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise NetworkUsed(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def _table_covers(unix_s: float) -> bool:
    return unix_s / 86400.0 + 40587.0 <= iers_mjd_range()[1]


def test_today_and_two_years_ahead_without_network(no_network):
    now = time.time()
    if _table_covers(now):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            az, el = sun_altaz(now, *HAMBURG)
    else:  # an old install: still a result, with the warning
        with pytest.warns(StaleIERSWarning):
            az, el = sun_altaz(now, *HAMBURG)
    assert 0.0 <= az < 360.0 and -90.0 <= el <= 90.0

    later = now + TWO_YEARS_S
    assert not _table_covers(later)
    with pytest.warns(StaleIERSWarning) as record:
        az2, el2 = sun_altaz(later, *HAMBURG)
        rates = sun_rates(later, *HAMBURG)
    assert np.isfinite([az2, el2, *rates]).all()
    message = str(record[0].message)
    last_date = record[0].message.table_last_date
    assert last_date in message and "arcsec" in message
    sigma_arcsec = record[0].message.rotation_uncertainty_arcsec
    assert 0.01 < sigma_arcsec < 60.0  # two years of unpredicted Earth rotation
    assert f"{sigma_arcsec:.2f} arcsec" in message

    with pytest.warns(StaleIERSWarning):
        track = SunTrack(*HAMBURG, later, later + 86400.0)
    a, e = track.altaz(later + 3600.0)
    with pytest.warns(StaleIERSWarning):
        ref_a, ref_e = sun_altaz(later + 3600.0, *HAMBURG)
    assert (a, e) == pytest.approx((ref_a, ref_e), abs=1e-5)
    assert no_network == []


def test_data_sources_and_skyfield_offline(no_network):
    info = data_sources()
    assert info["offline"] == {"iers_auto_download": False, "astropy_allow_internet": False}
    assert info["iers_table"]["last_date"] > info["iers_table"]["first_date"]
    assert isinstance(info["iers_table"]["age_days"], float)
    assert info["ephemerides"]["de421_present"] is True
    ts, eph = skyfield_de421()
    try:
        t = ts.utc(2024, 6, 21, 12)
        distance_au = eph["earth"].at(t).observe(eph["sun"]).distance().au
    finally:
        eph.close()
    assert distance_au == pytest.approx(1.016, abs=0.002)
    assert no_network == []


@pytest.mark.slow
def test_fresh_process_never_opens_a_socket():
    """Import and compute in a new interpreter whose sockets all fail (import-time proof)."""
    code = textwrap.dedent("""
        import socket, time, warnings
        def refuse(*a, **k):
            raise SystemExit("network access attempted: %r" % (a,))
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from tracker.astro.ephemeris import SunTrack, sun_altaz
        from tracker.astro.datasources import StaleIERSWarning
        now = time.time()
        print(sun_altaz(now, 53.5775, 9.8797, 10.0))
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            print(sun_altaz(now + 2 * 365.25 * 86400, 53.5775, 9.8797, 10.0))
        assert any(isinstance(x.message, StaleIERSWarning) for x in w), w
        SunTrack(53.5775, 9.8797, 10.0, now, now + 3600).altaz(now + 60)
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-W", "error::UserWarning:astropy", "-c", code],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")
