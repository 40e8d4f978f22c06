"""Time integrity: the kernel's clock state (real adjtimex call and injected answers), the
clock error's pointing budget against the Sun's real motion, and the start policy."""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest

from tracker.astro.ephemeris import sun_altaz, sun_rates
from tracker.astro.timesync import (
    STA_UNSYNC,
    SUN_MAX_RATE_DEG_S,
    TIME_ERROR,
    ClockSync,
    KernelClockState,
    Timex,
    clock_pointing_budget_arcsec,
    clock_sync_of,
    kernel_clock_state,
    may_start_tracking,
    read_clock_sync,
)
from tracker.config import parse

#: The kernel caps maxerror at NTP_PHASE_LIMIT (16 s) when unsynchronised.
NTP_PHASE_LIMIT_US = 16_000_000


def test_struct_timex_has_the_kernel_size():
    # glibc x86_64 / aarch64 <sys/timex.h>: 208 bytes (the kernel's __kernel_timex too)
    assert ctypes.sizeof(Timex) == 208


def test_real_adjtimex_call_returns_a_sane_state():
    k = kernel_clock_state()
    assert k.state in range(6)
    assert 0 <= k.max_error_us <= NTP_PHASE_LIMIT_US
    assert 0 <= k.est_error_us <= NTP_PHASE_LIMIT_US
    sync = read_clock_sync()
    assert sync.source == "adjtimex"
    assert sync.max_error_s == pytest.approx(k.max_error_us * 1e-6)
    # the kernel returns TIME_ERROR whenever STA_UNSYNC is set (kernel/time/ntp.c)
    if k.status & STA_UNSYNC:
        assert k.state == TIME_ERROR and not sync.synchronised
    assert sync.synchronised == (not k.status & STA_UNSYNC and k.state != TIME_ERROR)


@pytest.mark.parametrize(("kernel", "synced", "detail"), [
    (KernelClockState(0, 0x2001, 12_345, 678), True, "TIME_OK"),       # STA_PLL | STA_NANO
    (KernelClockState(5, 0x0040, 16_000_000, 16_000_000), False, "TIME_ERROR, STA_UNSYNC"),
    (KernelClockState(5, 0x0001, 50_000, 1_000), False, "TIME_ERROR"),
    (KernelClockState(1, 0x0011, 2_000, 100), True, "TIME_INS"),      # leap second pending
])
def test_injected_kernel_answers(kernel, synced, detail):
    sync = read_clock_sync(lambda: kernel)
    assert sync.synchronised is synced
    assert sync.detail == detail
    assert sync.max_error_s == pytest.approx(kernel.max_error_us / 1e6)
    assert sync.est_error_s == pytest.approx(kernel.est_error_us / 1e6)


def test_unreadable_kernel_state_is_unavailable_not_an_exception():
    def broken() -> KernelClockState:
        raise OSError(38, "Function not implemented")
    sync = read_clock_sync(broken)
    assert sync.source == "unavailable" and not sync.synchronised
    assert math.isinf(sync.max_error_s)
    assert sync.as_dict()["max_error_s"] is None


def test_budget_is_clock_error_times_rate():
    # 1 s at the Sun's 15 arcsec/s; 2 s at (3, 4) arcsec/s -> 10 arcsec
    assert clock_pointing_budget_arcsec(1.0, SUN_MAX_RATE_DEG_S, 0.0) == pytest.approx(15.0)
    assert clock_pointing_budget_arcsec(-2.0, 3 / 3600, 4 / 3600) == pytest.approx(10.0)
    arr = clock_pointing_budget_arcsec(np.array([0.0, 0.1, 1.0]), SUN_MAX_RATE_DEG_S, 0.0)
    np.testing.assert_allclose(arr, [0.0, 1.5, 15.0])
    assert math.isinf(clock_pointing_budget_arcsec(math.inf, SUN_MAX_RATE_DEG_S, 0.0))


@pytest.mark.parametrize("iso", ["2026-06-21T05:30:00", "2026-12-21T10:00:00",
                                 "2026-03-20T16:00:00"])
def test_budget_with_the_suns_real_rates_matches_its_motion_on_the_sky(iso):
    """At BabyIAXO the Sun moves 15 arcsec/s x cos(declination) on the sky (its hour angle
    advances 360 deg per solar day); the axis-space budget of 1 s of clock error is that,
    divided by at most cos(el) for the azimuth part."""
    from astropy.coordinates import get_sun
    from astropy.time import Time

    lat, lon, h = 53.5775, 9.8797, 10.0
    t = Time(iso, scale="utc")
    az_rate, el_rate = sun_rates(t, lat, lon, h)
    _, el = sun_altaz(t, lat, lon, h)
    dec = get_sun(t).dec.deg
    on_sky = math.hypot(az_rate * math.cos(math.radians(el)), el_rate) * 3600.0
    assert on_sky == pytest.approx(15.0 * math.cos(math.radians(dec)), abs=0.05)
    budget = clock_pointing_budget_arcsec(1.0, az_rate, el_rate)
    assert on_sky - 1e-9 <= budget <= on_sky / math.cos(math.radians(el)) + 1e-9
    assert abs(el) <= 25.0  # inside a helioscope's elevation range ...
    assert budget < 15.05 / math.cos(math.radians(25.0))  # ... so at most 16.6"/s


SYNCED = ClockSync(synchronised=True, est_error_s=0.002, max_error_s=0.050, source="adjtimex",
                   detail="TIME_OK")


@pytest.mark.parametrize(("sync", "allowed", "reason"), [
    (SYNCED, True, ""),
    # 1.2 s x 15"/s = 18" = exactly half of 36": allowed
    (ClockSync(True, 0.1, 1.2, "adjtimex", "TIME_OK"), True, ""),
    (ClockSync(True, 0.1, 1.5, "adjtimex", "TIME_OK"),
     False, "clock maximum error 1.5 s gives up to 22.5 arcsec"),
    (read_clock_sync(lambda: KernelClockState(5, STA_UNSYNC, 16_000_000, 16_000_000)),
     False, "system clock not synchronised (adjtimex: TIME_ERROR, STA_UNSYNC)"),
    (ClockSync.simulated(), True, ""),
    (ClockSync.unavailable("no adjtimex"), False, "not synchronised (unavailable: no adjtimex)"),
])
def test_may_start_tracking(sync, allowed, reason):
    ok, why = may_start_tracking(sync, 0.5, 36.0)
    assert ok is allowed
    assert (reason in why) if reason else why == ""
    if not allowed:
        assert why.startswith("automatic tracking refused: ")


def test_operator_override_allows_but_still_says_why():
    unsynced = read_clock_sync(lambda: KernelClockState(5, STA_UNSYNC, 16_000_000, 16_000_000))
    ok, why = may_start_tracking(unsynced, 0.5, 36.0, override=True)
    assert ok and why.startswith("operator override: tracking although system clock not")


def test_policy_uses_the_given_rates():
    sync = ClockSync(True, 0.1, 1.5, "adjtimex", "TIME_OK")
    # a slow Sun (high declination, small rates): 1.5 s x 10"/s = 15" <= 18"
    assert may_start_tracking(sync, 0.5, 36.0, (10 / 3600, 0.0))[0]
    assert not may_start_tracking(sync, 0.5, 36.0, (13 / 3600, 0.0))[0]


@pytest.mark.parametrize(("args", "message"), [
    ((0.0, 36.0), "budget_share"), ((1.5, 36.0), "budget_share"),
    ((0.5, -1.0), "on_sun_tolerance_arcsec"), ((0.5, math.nan), "on_sun_tolerance_arcsec"),
])
def test_policy_rejects_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        may_start_tracking(SYNCED, *args)


def test_clock_config_section(sim_settings):
    assert sim_settings.clock.max_share_of_tolerance == 0.5
    assert sim_settings.clock.override is False
    data = sim_settings.model_dump(exclude={"source_path"})
    data["clock"] = {"max_share_of_tolerance": 1.5}
    from tracker.errors import ConfigError
    with pytest.raises(ConfigError, match="clock.max_share_of_tolerance"):
        parse(data)


def test_simulated_clocks_report_their_own_state():
    from tracker.clock import SimClock, SystemClock

    unsynced = lambda: KernelClockState(5, STA_UNSYNC, 16_000_000, 16_000_000)  # noqa: E731
    assert clock_sync_of(SimClock(0.0), unsynced).source == "simulated"
    shifted = clock_sync_of(SystemClock(offset_s=-3600.0), unsynced)
    assert shifted.source == "simulated" and "-3600.000 s" in shifted.detail
    assert may_start_tracking(shifted, 0.5, 36.0) == (True, "")
    # the unshifted system clock is the kernel's business
    real = clock_sync_of(SystemClock(), unsynced)
    assert real.source == "adjtimex" and not real.synchronised
    assert clock_sync_of(SystemClock(), lambda: KernelClockState(0, 0, 20_000, 500)).synchronised
