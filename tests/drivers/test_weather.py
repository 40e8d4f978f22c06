"""Wind supervision: the pure monitor, the Modbus and NMEA 0183 anemometer drivers against
the simulator's real pymodbus server and a real pty, and the compose builder."""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import replace

import numpy as np
import pytest

from drivers.weather import (
    MWV_UNIT_TO_M_S,
    ModbusWindSensor,
    NmeaWindSensor,
    decode_value,
    encode_value,
    format_mwv,
    nmea_checksum,
    parse_mwv,
)
from simulator.mount import SimMount
from simulator.weather import (
    SimWindSensor,
    start_modbus_anemometer,
    start_modbus_rtu_anemometer,
    start_nmea_anemometer,
)
from tracker.config import ModbusWind, NmeaWind, WindRegister, parse
from tracker.errors import ConfigError
from tracker.loop.weather import (
    WindDecision,
    WindLimits,
    WindMonitor,
    WindReading,
    WindSensor,
    WindSupervisor,
    evaluate,
    make_wind_supervisor,
)
from tracker.service.compose import make_wind_sensor

LIMITS = WindLimits(wind_stow_m_s=15.0, gust_stow_m_s=20.0, wind_resume_m_s=10.0, calm_s=60.0,
                    mean_window_s=600.0, gust_window_s=3.0, max_age_s=10.0, frozen_s=120.0)


def series(speeds: list[float], t0: float = 1000.0, dt: float = 1.0,
           direction: float | None = None) -> list[WindReading]:
    """Readings every ``dt`` s; the direction wanders (so values are never frozen) unless given."""
    return [WindReading(t0 + i * dt, s, (i * 7.0) % 360.0 if direction is None else direction)
            for i, s in enumerate(speeds)]


def last_t(rs: list[WindReading]) -> float:
    return rs[-1].time_s


# ---------------------------------------------------------------------------- the monitor
def test_steady_wind_between_resume_and_stow_is_ok_with_exact_means():
    rs = series([12.0] * 700)
    v = evaluate(LIMITS, rs, last_t(rs))
    assert v.decision is WindDecision.OK and not v.stow
    assert v.mean_m_s == pytest.approx(12.0) and v.gust_m_s == pytest.approx(12.0)
    assert v.age_s == 0.0 and not v.frozen


def test_three_second_gust_over_the_limit_stows_though_the_mean_is_low():
    rs = series([12.0] * 597 + [25.0] * 3)
    v = evaluate(LIMITS, rs, last_t(rs))
    assert v.decision is WindDecision.STOW and v.stow
    assert v.gust_m_s == pytest.approx(25.0)
    assert v.mean_m_s == pytest.approx((597 * 12.0 + 3 * 25.0) / 600)  # 12.065 < 15
    assert "gust 25.0 m/s" in v.reason


def test_a_single_sample_spike_is_not_a_gust_wmo_3s_mean():
    # 1 Hz samples: a one-sample spike of 30 m/s is a 3 s mean of (12 + 12 + 30) / 3 = 18 < 20
    rs = series([12.0] * 300 + [30.0])
    v = evaluate(LIMITS, rs, last_t(rs))
    assert v.gust_m_s == pytest.approx(18.0)
    assert v.decision is WindDecision.OK


def test_mean_over_the_limit_stows_though_no_gust_is():
    rs = series([16.0, 18.0] * 300)   # 3 s means 16.67 / 17.33 < 20; mean 17 > 15
    v = evaluate(LIMITS, rs, last_t(rs))
    assert v.mean_m_s == pytest.approx(17.0)
    assert v.gust_m_s < 20.0
    assert v.decision is WindDecision.STOW and "mean wind 17.0 m/s" in v.reason


def test_peak_gust_is_the_highest_3s_running_mean_of_the_window():
    rng = random.Random(7)
    speeds = [max(0.0, 8.0 + rng.gauss(0, 3)) for _ in range(900)]
    rs = series(speeds, dt=0.25)  # 4 Hz, as WMO asks for gust measurement
    v = evaluate(LIMITS, rs, last_t(rs))
    # independent computation: 12 samples = 3 s at 4 Hz, inside the last 600 s
    x = np.array(speeds)
    run = np.convolve(x, np.ones(12) / 12, mode="valid")
    in_window = run[-(2400 - 11):]  # running means ending inside (t - 600, t]
    assert v.peak_gust_m_s == pytest.approx(in_window.max(), rel=1e-9)
    assert v.gust_m_s == pytest.approx(x[-12:].mean(), rel=1e-9)
    assert v.mean_m_s == pytest.approx(x[-2400:].mean(), rel=1e-9)


def test_gust_passes_the_stow_stays_a_decision_of_the_engine_and_peak_is_kept():
    rs = series([12.0] * 100 + [25.0] * 3 + [12.0] * 5)
    v = evaluate(LIMITS, rs, last_t(rs))
    assert v.decision is WindDecision.OK and not v.stow
    assert v.peak_gust_m_s == pytest.approx(25.0)


@pytest.mark.parametrize(("t_after_s", "decision", "stow"), [
    (10.0, WindDecision.OK, False),            # exactly max_age_s: still alive
    (10.5, WindDecision.SENSOR_LOST, True),
    (300.0, WindDecision.SENSOR_LOST, True),
])
def test_no_reading_for_max_age_is_sensor_lost_and_stows(t_after_s, decision, stow):
    rs = series([12.0] * 100)
    v = evaluate(LIMITS, rs, last_t(rs) + t_after_s)
    assert (v.decision, v.stow) == (decision, stow)
    assert v.age_s == pytest.approx(t_after_s)


def test_sensor_loss_may_be_configured_not_to_stow():
    lim = replace(LIMITS, stow_on_sensor_loss=False)
    rs = series([12.0] * 100)
    v = evaluate(lim, rs, last_t(rs) + 11.0)
    assert v.decision is WindDecision.SENSOR_LOST and not v.stow


def test_a_stream_of_invalid_readings_is_a_lost_sensor_with_the_reason():
    rs = series([12.0] * 100)
    bad = [WindReading.invalid(last_t(rs) + k, "bad checksum: computed 1A, sentence says 40")
           for k in range(1, 21)]
    mon = WindMonitor(LIMITS, rs[0].time_s)
    mon.extend(rs + bad)
    assert mon.verdict(last_t(rs) + 9.0).decision is WindDecision.OK
    v = mon.verdict(last_t(rs) + 11.0)
    assert v.decision is WindDecision.SENSOR_LOST and v.stow
    assert "bad checksum" in v.reason and v.invalid_readings == 20


def test_no_reading_at_all_is_lost_max_age_after_start():
    mon = WindMonitor(LIMITS, start_s=500.0)
    assert mon.verdict(509.0).decision is WindDecision.OK
    v = mon.verdict(511.0)
    assert v.decision is WindDecision.SENSOR_LOST and "no reading yet" in v.reason


@pytest.mark.parametrize(("frozen_s", "decision"), [
    (120.0, WindDecision.SENSOR_LOST),
    (0.0, WindDecision.CALM),           # 0 = frozen-value detection off
    (200.0, WindDecision.CALM),
])
def test_identical_values_for_frozen_s_are_a_lost_sensor(frozen_s, decision):
    lim = replace(LIMITS, frozen_s=frozen_s)
    rs = series([5.0] * 130, direction=270.0)   # 129 s of the very same value
    v = evaluate(lim, rs, last_t(rs))
    assert v.decision is decision
    assert v.frozen is (decision is WindDecision.SENSOR_LOST)


def test_calm_needs_calm_s_below_resume():
    rs = series([12.0] * 100 + [5.0] * 100)
    t_last_high = rs[99].time_s
    mon = WindMonitor(LIMITS, rs[0].time_s)
    mon.extend(rs)
    assert mon.verdict(t_last_high + 59.0).decision is WindDecision.OK
    assert mon.verdict(t_last_high + 60.0).decision is WindDecision.CALM


def test_calm_must_be_re_earned_after_a_sensor_gap():
    rs = series([5.0] * 100)
    later = series([5.0] * 30, t0=last_t(rs) + 50.0)   # a 50 s gap, then 29 s of data
    mon = WindMonitor(LIMITS, rs[0].time_s)
    mon.extend(rs + later)
    assert mon.verdict(last_t(later)).decision is WindDecision.OK
    assert mon.verdict(later[0].time_s + 60.0).decision is WindDecision.SENSOR_LOST  # no data
    mon.extend(series([5.0] * 40, t0=last_t(later) + 1.0))
    assert mon.verdict(later[0].time_s + 60.0).decision is WindDecision.CALM


def test_repeated_or_older_readings_are_ignored():
    mon = WindMonitor(LIMITS, 0.0)
    assert mon.add(WindReading(10.0, 5.0, 0.0))
    assert not mon.add(WindReading(10.0, 50.0, 0.0))
    assert not mon.add(WindReading(9.0, 50.0, 0.0))
    v = mon.verdict(10.0)
    assert v.speed_m_s == 5.0 and v.readings == 1


def test_limits_reject_bad_values():
    with pytest.raises(ValueError, match="wind_resume_m_s"):
        WindLimits(wind_stow_m_s=10.0, gust_stow_m_s=10.0, wind_resume_m_s=12.0)
    with pytest.raises(ValueError, match="max_age_s"):
        WindLimits(max_age_s=math.nan)


async def test_supervisor_stows_on_a_gust_and_resumes_after_calm(mount):
    t = [1000.0]
    sensor = SimWindSensor(mount, lambda: t[0])
    sup = make_wind_supervisor(sensor, LIMITS, lambda: t[0])
    assert isinstance(sup, WindSupervisor)
    assert make_wind_supervisor(None, LIMITS, lambda: t[0]) is None
    events = []
    stowed = False          # the automation's latch: stow on a reason, resume when calm
    for k in range(400):
        t[0] = 1000.0 + k
        mount.set_wind(25.0 if 100 <= k < 104 else (12.0 if k < 150 else 5.0))
        await sup.sample()
        j = sup.judge(t[0], stowed=stowed)
        if j.stow:
            stowed = True
            events.append((k, "stow"))
        elif stowed and j.calm:
            stowed = False
            events.append((k, "resume"))
    # stowed at the second 25 m/s sample (3 s mean (12+25+25)/3 = 20.7 > 20); resumed
    # 60 s after the last reading at or above 10 m/s (k = 149); the unstepped mount's wind
    # then stays exactly 5.0 m/s from the same direction: frozen_s = 120 s after k = 150
    # it is a frozen sensor, and that stows again
    assert events == [(101, "stow"), (209, "resume"), (270, "stow")]
    assert sup.judge(t[0], stowed=True).verdict.frozen
    assert sup.judge(t[0], stowed=True).stow == ""          # stowed already


async def test_supervisor_reports_sensor_loss_once_and_survives_a_raising_driver(mount):
    class Flaky:
        def __init__(self) -> None:
            self.t = 0.0
            self.broken = False

        async def read(self) -> WindReading:
            if self.broken:
                raise RuntimeError("driver bug")
            return WindReading(self.t, 5.0, self.t % 360.0)

        async def close(self) -> None:
            return None

    s = Flaky()
    sup = WindSupervisor(s, LIMITS, 0.0)
    out = []
    stowed = False
    for k in range(40):
        s.t = float(k)
        s.broken = 10 <= k < 30
        await sup.sample()
        j = sup.judge(float(k), stowed=stowed)
        stowed = stowed or bool(j.stow)
        out.extend((k, kind, message.split(":")[0], bool(j.stow)) for kind, message in j.events)
    # last good reading at k = 9: lost once more than max_age_s = 10 s later, at k = 20;
    # the stow for the lost sensor starts then and ends only after calm_s of calm
    assert out == [(20, "warning", "anemometer lost", True),
                   (30, "info", "anemometer readings valid again", False)]
    assert sup.read_errors == 20 and stowed


async def test_a_stow_withheld_while_parked_is_reported_once_until_the_wind_drops():
    class Steady:
        speed = 5.0

        async def read(self) -> WindReading:
            return WindReading(self.t, self.speed, 10.0 * self.t % 360.0)

        async def close(self) -> None:
            return None

    s = Steady()
    sup = WindSupervisor(s, LIMITS, 0.0)
    reports = []
    for k in range(30):
        s.t = float(k)
        s.speed = 40.0 if 5 <= k < 7 or 20 <= k < 22 else 5.0     # two gusts
        await sup.sample()
        j = sup.judge(float(k), stowed=False, held="parked")
        reports.extend((k, kind) for kind, message in j.events if "not stowing" in message)
        # the stow reason stands (the automation keeps a parked mount parked) while the
        # 3 s gust is over 20 m/s: (5 + 40 + 40) / 3 at k = 6, (40 + 40 + 5) / 3 at k = 7
        assert bool(j.stow) is (k in (6, 7, 21, 22))
    assert reports == [(6, "warning"), (21, "warning")]
    assert sup.judge(30.0, stowed=False, auto_stow=False).stow == ""


# ---------------------------------------------------------------------------- Modbus values
@pytest.mark.parametrize(("regs", "reg", "value"), [
    ([1725], WindRegister(address=0, scale=0.01), 17.25),
    ([0xFFFF], WindRegister(address=0, data_type="int16"), -1.0),
    ([0xFF38], WindRegister(address=0, data_type="int16", scale=0.1, offset=20.0), 0.0),
    ([0x0001, 0x0002], WindRegister(address=0, data_type="uint32"), 65538.0),
    ([0x0002, 0x0001], WindRegister(address=0, data_type="uint32", word_order="little"), 65538.0),
    ([0xFFFF, 0xFFFE], WindRegister(address=0, data_type="int32"), -2.0),
    ([0x4148, 0x0000], WindRegister(address=0, data_type="float32"), 12.5),  # IEEE 754
    ([0x0000, 0x4148], WindRegister(address=0, data_type="float32", word_order="little"), 12.5),
    ([0x3F80, 0x0000], WindRegister(address=0, data_type="float32", scale=0.5144444), 0.5144444),
])
def test_register_decoding(regs, reg, value):
    assert decode_value(regs, reg) == pytest.approx(value, abs=1e-9)
    assert decode_value(encode_value(value, reg), reg) == pytest.approx(value, abs=1e-6)


def test_register_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match="float32 needs 2 registers"):
        decode_value([1], WindRegister(address=0, data_type="float32"))


# ---------------------------------------------------------------------------- NMEA sentences
@pytest.mark.parametrize(("line", "speed_m_s", "angle_deg"), [
    # Examples printed in Vaisala's WMT700/WXT manuals and the gpsd NMEA reference
    ("$WIMWV,39,R,1.3,M,A*06", 1.3, 39.0),
    ("$WIMWV,61,R,1.0,M,A*08", 1.0, 61.0),
    ("$WIMWV,59,R,1.2,M,A*01", 1.2, 59.0),
    ("$WIMWV,041.1,R,01.0,N,A*16", 1852.0 / 3600.0, 41.1),
])
def test_published_mwv_sentences_parse_with_their_checksums(line, speed_m_s, angle_deg):
    r = parse_mwv(line + "\r\n", 5.0)
    assert r is not None and r.valid, r
    assert r.speed_m_s == pytest.approx(speed_m_s, abs=1e-9)
    assert r.direction_deg == pytest.approx(angle_deg)
    assert r.time_s == 5.0


@pytest.mark.parametrize(("unit", "factor"), [("K", 1 / 3.6), ("M", 1.0),
                                              ("N", 0.514444), ("S", 0.44704)])
def test_speed_units_convert_to_m_s(unit, factor):
    line = format_mwv(90.0, 10.0, unit=unit)
    r = parse_mwv(line, 0.0)
    assert r is not None and r.speed_m_s == pytest.approx(10.0 * factor, rel=1e-5)
    assert MWV_UNIT_TO_M_S[unit] == pytest.approx(factor, rel=1e-5)


def test_checksum_is_the_xor_between_dollar_and_star():
    assert nmea_checksum(b"WIMWV,39,R,1.3,M,A") == 0x06


@pytest.mark.parametrize(("line", "detail"), [
    ("$WIMWV,39,R,1.3,M,A*07", "bad checksum"),
    ("$WIMWV,39,R,1.3,M,A*ZZ", "bad checksum field"),
    ("$WIMWV,39,R,1.3,M", "truncated MWV sentence"),
    ("$WIMWV,39,R,1.3,M,A*0", "truncated"),
    ("garbage", "not an NMEA sentence"),
])
def test_bad_sentences_are_invalid_readings_not_exceptions(line, detail):
    r = parse_mwv(line, 1.0)
    assert r is not None and not r.valid and r.detail.startswith(detail)
    assert math.isnan(r.speed_m_s)


def test_status_v_is_invalid_and_other_sentences_are_ignored():
    v = format_mwv(0.0, 0.0, status="V")
    assert v.startswith(b"$WIMWV,,R,,M,V*")       # Vaisala leaves the values empty
    r = parse_mwv(v, 1.0)
    assert r is not None and not r.valid and "status V" in r.detail
    body = b"WIMWD,270.0,T,268.0,M,10.0,N,5.1,M"
    assert parse_mwv(b"$" + body + f"*{nmea_checksum(body):02X}".encode(), 1.0) is None
    # a T sentence is ignored when only R is wanted
    assert parse_mwv(format_mwv(10.0, 3.0, reference="T"), 1.0, reference="R") is None


def test_parser_never_raises_on_random_bytes():
    rng = random.Random(3)
    for _ in range(3000):
        n = rng.randrange(0, 90)
        line = bytes(rng.randrange(256) for _ in range(n))
        if rng.random() < 0.5:
            line = b"$WIMWV," + line
        r = parse_mwv(line, 0.0)
        assert r is None or isinstance(r, WindReading)


# ---------------------------------------------------------------------------- over the wire
@pytest.fixture
def mount(sim_settings) -> SimMount:
    m = SimMount(sim_settings)
    m.set_wind(17.25)
    return m


@pytest.mark.network
@pytest.mark.parametrize(("kind", "speed", "direction"), [
    ("holding", WindRegister(address=0, scale=0.01), WindRegister(address=1, scale=0.1)),
    ("input", WindRegister(address=10, data_type="float32", word_order="little"),
     WindRegister(address=12, data_type="int16", scale=0.1, offset=180.0)),
])
async def test_modbus_anemometer_reads_scaled_values(mount, kind, speed, direction):
    cfg = ModbusWind(port=1, register_kind=kind, speed=speed, direction=direction,
                     timeout_s=0.5)
    server = await start_modbus_anemometer(mount, cfg)
    sensor = ModbusWindSensor(cfg, time.time, port=server.port)
    assert isinstance(sensor, WindSensor)
    try:
        r = await sensor.read()
        assert r.valid, r.detail
        assert r.speed_m_s == pytest.approx(17.25, abs=0.005)
        assert r.direction_deg == pytest.approx(mount.wind_direction_deg, abs=0.05)
        mount.set_wind(3.0)
        assert (await sensor.read()).speed_m_s == pytest.approx(3.0, abs=0.005)
    finally:
        await sensor.close()
        await server.stop()


@pytest.mark.network
async def test_modbus_rtu_anemometer_over_a_pty(mount):
    cfg = ModbusWind(transport="rtu", baudrate=19200, device_id=7, timeout_s=0.5,
                     speed=WindRegister(address=100, data_type="int32", scale=0.001),
                     direction=None)
    server = await start_modbus_rtu_anemometer(mount, cfg)
    sensor = ModbusWindSensor(cfg, time.time, serial_port=server.client_port)
    try:
        r = await sensor.read()
        assert r.valid, r.detail
        assert r.speed_m_s == pytest.approx(17.25, abs=0.0005)
        assert math.isnan(r.direction_deg)
    finally:
        await sensor.close()
        await server.stop()


@pytest.mark.network
async def test_nmea_port_vanishing_gives_invalid_readings(mount):
    anemo = start_nmea_anemometer(mount, period_s=0.05)
    sensor = NmeaWindSensor(NmeaWind(port=anemo.path), time.time)
    mon = WindMonitor(WindLimits(max_age_s=0.5, calm_s=0.0), time.time())
    try:
        await sensor.read()
        await asyncio.sleep(0.2)
        assert mon.add(await sensor.read()) and mon.verdict(time.time()).age_s < 0.2
        anemo.stop()                      # the USB adapter is pulled
        await asyncio.sleep(0.7)
        for _ in range(3):
            mon.add(await sensor.read())
            await asyncio.sleep(0.05)
        v = mon.verdict(time.time())
        assert v.decision is WindDecision.SENSOR_LOST and v.stow
    finally:
        await sensor.close()
        anemo.stop()


@pytest.mark.network
async def test_modbus_exception_and_silence_give_invalid_readings_then_recover(mount):
    cfg = ModbusWind(port=1, timeout_s=0.2)
    server = await start_modbus_anemometer(mount, cfg)
    sensor = ModbusWindSensor(cfg, time.time, port=server.port)
    try:
        assert (await sensor.read()).valid
        server.faults.garble(1)
        r = await sensor.read()
        assert not r.valid and "exception 4" in r.detail
        assert (await sensor.read()).valid
        server.faults.silent = True
        server.silent_delay_s = 1.0
        t0 = time.monotonic()
        r = await sensor.read()
        assert not r.valid and time.monotonic() - t0 < 0.6
        server.faults.clear()
        await asyncio.sleep(1.0)   # let the withheld reply go by
        for _ in range(5):
            r = await sensor.read()
            if r.valid:
                break
        assert r.valid and r.speed_m_s == pytest.approx(17.25, abs=0.005)
        assert sensor.errors >= 2
    finally:
        await sensor.close()
        await server.stop()


async def _poll_until(sensor, mon: WindMonitor, pred, limit_s: float, period_s: float = 0.05):
    """Poll the sensor into the monitor until ``pred(verdict)``; seconds taken (or inf)."""
    t0 = time.time()
    while time.time() - t0 < limit_s:
        mon.add(await sensor.read())
        if pred(mon.verdict(time.time())):
            return time.time() - t0
        await asyncio.sleep(period_s)
    return math.inf


@pytest.mark.network
@pytest.mark.slow
async def test_lost_modbus_anemometer_stows_within_max_age(mount):
    cfg = ModbusWind(port=1, timeout_s=0.2)
    lim = WindLimits(max_age_s=1.5, calm_s=0.0)
    server = await start_modbus_anemometer(mount, cfg)
    sensor = ModbusWindSensor(cfg, time.time, port=server.port)
    mon = WindMonitor(lim, time.time())
    try:
        mount.set_wind(5.0)
        took = await _poll_until(sensor, mon, lambda v: v.decision is WindDecision.CALM, 2.0)
        assert took < 1.0
        server.faults.silent = True
        took = await _poll_until(sensor, mon, lambda v: v.stow, 6.0)
        v = mon.verdict(time.time())
        assert v.decision is WindDecision.SENSOR_LOST
        assert lim.max_age_s <= took <= lim.max_age_s + 2.0
    finally:
        await sensor.close()
        await server.stop()


@pytest.mark.network
async def test_nmea_pty_readings_in_knots_become_m_s(mount):
    anemo = start_nmea_anemometer(mount, period_s=0.05, unit="N", talker="II")
    sensor = NmeaWindSensor(NmeaWind(port=anemo.path), time.time)
    assert isinstance(sensor, WindSensor)
    try:
        r = await sensor.read()   # opens the port; nothing received yet
        assert not r.valid
        await asyncio.sleep(0.3)
        r = await sensor.read()
        assert r.valid, r.detail
        # 17.25 m/s = 33.53 kn, sent with 2 decimals: back to within 0.005 kn
        assert r.speed_m_s == pytest.approx(17.25, abs=0.005 * 0.5145)
        assert r.direction_deg == pytest.approx(mount.wind_direction_deg, abs=0.05)
        assert sensor.counts["valid"] >= 3 and sensor.counts["bad_checksum"] == 0
    finally:
        await sensor.close()
        anemo.stop()


@pytest.mark.network
async def test_nmea_bad_checksums_and_truncated_lines_are_counted_never_raised(mount):
    anemo = start_nmea_anemometer(mount, period_s=0.03)
    sensor = NmeaWindSensor(NmeaWind(port=anemo.path), time.time)
    try:
        await sensor.read()
        await asyncio.sleep(0.2)
        anemo.faults.garble(3)
        await asyncio.sleep(0.25)
        anemo.faults.truncate(2)
        await asyncio.sleep(0.25)
        anemo.write(b"\x00\xffnoise\r\n")
        await asyncio.sleep(0.15)
        c = sensor.counts
        assert c["bad_checksum"] == 3
        assert c["truncated"] == 2
        assert c["noise_bytes"] > 0
        r = await sensor.read()
        assert r.valid and r.speed_m_s == pytest.approx(17.25, abs=0.005)
        anemo.faults.garble(-1)
        await asyncio.sleep(0.2)
        r = await sensor.read()
        assert not r.valid and r.detail.startswith("bad checksum")
    finally:
        await sensor.close()
        anemo.stop()


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize("fault", ["silent", "garble", "frozen"])
async def test_nmea_sensor_loss_stows_within_max_age(mount, fault):
    lim = WindLimits(max_age_s=1.0, frozen_s=1.0, calm_s=0.0)
    anemo = start_nmea_anemometer(mount, period_s=0.05)
    sensor = NmeaWindSensor(NmeaWind(port=anemo.path), time.time)
    mon = WindMonitor(lim, time.time())
    try:
        mount.set_wind(4.0)
        took = await _poll_until(sensor, mon, lambda v: v.decision is WindDecision.CALM, 2.0)
        assert took < 1.0
        if fault == "silent":
            anemo.faults.silent = True
        elif fault == "garble":
            anemo.faults.garble(-1)
        else:
            anemo.freeze()
        t0 = time.time()

        async def wiggle() -> None:  # the real wind keeps changing; a frozen sensor does not
            for k in range(60):
                mount.set_wind(4.0 + 0.01 * k)
                await asyncio.sleep(0.05)
        wig = asyncio.create_task(wiggle())
        took = await _poll_until(sensor, mon, lambda v: v.stow, 5.0)
        wig.cancel()
        v = mon.verdict(time.time())
        assert v.decision is WindDecision.SENSOR_LOST, v
        assert took <= lim.max_age_s + 2.0, took
        assert time.time() - t0 >= lim.max_age_s - 0.1
        if fault == "frozen":
            assert v.frozen and "frozen at 4.00 m/s" in v.reason
    finally:
        await sensor.close()
        anemo.stop()


@pytest.mark.network
async def test_nmea_gust_stows_within_two_seconds(mount):
    lim = WindLimits(wind_stow_m_s=15.0, gust_stow_m_s=15.0, calm_s=0.0)
    anemo = start_nmea_anemometer(mount, period_s=0.05)   # 20 Hz, like a WindSonic set fast
    sensor = NmeaWindSensor(NmeaWind(port=anemo.path), time.time)
    mon = WindMonitor(lim, time.time())
    try:
        mount.set_wind(3.0)
        # poll as the engine does, continuously, so the 3 s window holds ~60 samples
        await _poll_until(sensor, mon, lambda v: False, 3.5)
        assert mon.verdict(time.time()).gust_m_s == pytest.approx(3.0, abs=0.01)
        mount.set_wind(25.0)
        took = await _poll_until(sensor, mon, lambda v: v.stow, 4.0)
        v = mon.verdict(time.time())
        assert v.decision is WindDecision.STOW and "gust" in v.reason
        # the 3 s mean of a 3 -> 25 m/s step passes 15 m/s after 3 * 12/22 = 1.64 s
        assert 1.0 <= took <= 2.0, took
    finally:
        await sensor.close()
        anemo.stop()


async def test_nmea_port_that_does_not_exist_is_invalid_readings(tmp_path):
    sensor = NmeaWindSensor(NmeaWind(port=str(tmp_path / "nope")), time.time)
    r = await sensor.read()
    assert not r.valid and "cannot open" in r.detail
    await sensor.close()


async def test_sim_sensor_faults(mount):
    t = [100.0]
    sensor = SimWindSensor(mount, lambda: t[0])
    r = await sensor.read()
    assert (r.time_s, r.speed_m_s) == (100.0, 17.25)
    sensor.faults.silent = True
    t[0] = 101.0
    assert (await sensor.read()).time_s == 100.0    # nothing new: the same reading
    sensor.faults.clear()
    sensor.freeze()
    mount.set_wind(30.0)
    t[0] = 102.0
    r = await sensor.read()
    assert (r.time_s, r.speed_m_s) == (102.0, 17.25)


# ---------------------------------------------------------------------------- config, compose
def _settings(sim_settings, **weather):
    data = sim_settings.model_dump(exclude={"source_path"})
    data["weather"].update(weather)
    return parse(data)


def test_make_wind_sensor_for_every_source(sim_settings, mount):
    s = _settings(sim_settings, source="sim")
    assert isinstance(make_wind_sensor(s, clock=time.time, mount=mount), SimWindSensor)
    with pytest.raises(ConfigError, match="weather.source = 'sim' needs the simulated mount"):
        make_wind_sensor(s, clock=time.time)
    s = _settings(sim_settings, source="modbus")
    assert isinstance(make_wind_sensor(s, clock=time.time), ModbusWindSensor)
    s = _settings(sim_settings, source="nmea")
    assert isinstance(make_wind_sensor(s, clock=time.time), NmeaWindSensor)
    assert make_wind_sensor(_settings(sim_settings, source="none"), clock=time.time) is None


@pytest.mark.parametrize(("weather", "message"), [
    ({"source": "anemometer"}, "weather.source"),
    ({"modbus": {"speed": {"address": 0, "scale": 0.0}}}, "scale must not be 0"),
    ({"modbus": {"speed": {"address": 0, "data_type": "float64"}}}, "weather.modbus.speed"),
    ({"gust_stow_m_s": 8.0}, "wind_resume_m_s must not exceed"),
    ({"gust_window_s": 900.0}, "gust_window_s must not exceed mean_window_s"),
    ({"max_age_s": 0.0}, "weather.max_age_s"),
    ({"nmea": {"port": "/dev/ttyS0", "parity": "E"}}, "weather.nmea.parity"),
])
def test_bad_weather_config_is_a_clear_error(sim_settings, weather, message):
    with pytest.raises(ConfigError, match=message):
        _settings(sim_settings, **weather)


def test_limits_from_settings(sim_settings):
    lim = WindLimits.from_settings(sim_settings.weather)
    w = sim_settings.weather
    assert (lim.wind_stow_m_s, lim.gust_stow_m_s, lim.max_age_s, lim.gust_window_s) == (
        w.wind_stow_m_s, w.wind_stow_m_s, w.max_age_s, 3.0)
    assert lim.stow_on_sensor_loss is True


# ---------------------------------------------------------------------------- tracker simulate
@pytest.mark.network
@pytest.mark.slow
async def test_simulate_serves_a_modbus_anemometer(tmp_path):
    import signal
    import subprocess
    import sys

    from tests.support import CONFIG_DIR, ROOT
    from tracker import config

    cmd = [sys.executable, "-c", "from tracker.cli.main import main; main()", "simulate",
           "--config", str(CONFIG_DIR / "sim-modbus.toml"), "--modbus-port", "0",
           "--anemometer", "--anemometer-port", "0", "--no-stdin-commands"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    assert proc.stdout is not None
    try:
        proc.stdout.readline()
        line = proc.stdout.readline()
        assert line.startswith("anemometer modbus tcp 127.0.0.1:"), line
        port = int(line.split()[3].rsplit(":", 1)[1])
        settings = config.load(CONFIG_DIR / "sim-modbus.toml")
        sensor = ModbusWindSensor(settings.weather.modbus, time.time, port=port)
        r = await sensor.read()
        await sensor.close()
        # sim-modbus.toml: seeded wind around wind_mean_m_s = 3 m/s
        assert r.valid and 0.0 <= r.speed_m_s < 15.0 and 0.0 <= r.direction_deg < 360.0
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "stopped" in out
