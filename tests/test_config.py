"""Config loading: presets validate, bad files are refused with file, key, value and rule."""

from __future__ import annotations

import logging
import re
import tomllib

import pytest
from click.testing import CliRunner

from tests.support import CONFIG_DIR, PRESETS
from tests.support.toml_dump import dump_toml
from tracker import config
from tracker.cli.main import main
from tracker.errors import ConfigError


def test_presets_validate(preset: config.Settings) -> None:
    env = preset.envelope
    assert env.elevation_min_deg < env.elevation_max_deg
    assert preset.axes.azimuth.max_speed_deg_s > 0.005  # faster than the Sun ever moves


def test_preset_envelopes_match_the_design_documents() -> None:
    cast = config.load(CONFIG_DIR / "cast.toml")
    assert (cast.envelope.elevation_min_deg, cast.envelope.elevation_max_deg) == (-8.0, 8.0)
    assert (cast.envelope.azimuth_min_deg, cast.envelope.azimuth_max_deg) == (50.0, 130.0)
    rear = cast.envelope.boresight("rear")
    assert (rear.azimuth_offset_deg, rear.elevation_sign) == (180.0, -1)
    assert cast.site.latitude_deg == pytest.approx(46.2389)
    iaxo = config.load(CONFIG_DIR / "iaxo.toml")
    baby = config.load(CONFIG_DIR / "babyiaxo.toml")
    for s in (iaxo, baby):
        assert (s.envelope.azimuth_min_deg, s.envelope.azimuth_max_deg) == (-270.0, 270.0)
        assert s.envelope.cable_wrap
        assert s.site.latitude_deg == pytest.approx(53.5775)
    assert baby.axes.azimuth.max_speed_deg_s < iaxo.axes.azimuth.max_speed_deg_s
    sim = config.load(CONFIG_DIR / "sim.toml")
    assert sim.drives.kind == "sim" and sim.tracking.auto_track
    assert sim.envelope == baby.envelope


def _write(tmp_path, text: str):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    return p


def _sim_with(replace: str, by: str) -> str:
    text = (CONFIG_DIR / "sim.toml").read_text()
    assert replace in text
    return text.replace(replace, by, 1)


@pytest.mark.parametrize("replace, by, key, fragment", [
    ("elevation_max_deg = 25.0", "elevation_max_deg = 125.0", "envelope.elevation_max_deg",
     "less than or equal to 90"),
    ("elevation_max_deg = 25.0", 'elevation_max_deg = "high"', "envelope.elevation_max_deg",
     "valid number"),
    ("max_speed_deg_s = 0.5", "max_speed_deg_s = -0.5", "axes.azimuth.max_speed_deg_s",
     "greater than 0"),
    ("control_rate_hz = 10.0", "control_rate_hz = 10.0\nspeed = 3", "tracking.speed",
     "Extra inputs"),
    ('kind = "sim"', 'kind = "plc"', "drives.kind", "'sim', 'modbus', 'serial' or 'opcua'"),
    ("latitude_deg = 53.5775", "latitude_deg = nan", "site.latitude_deg", "finite"),
])
def test_bad_value_names_file_key_value_and_rule(tmp_path, replace, by, key, fragment) -> None:
    path = _write(tmp_path, _sim_with(replace, by))
    with pytest.raises(ConfigError) as exc:
        config.load(path)
    msg = str(exc.value)
    assert str(path) in msg and key in msg and fragment in msg
    assert exc.value.key == key


def test_inverted_range_and_park_outside_are_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="elevation_min_deg must be below"):
        config.load(_write(tmp_path, _sim_with("elevation_min_deg = -25.0",
                                               "elevation_min_deg = 30.0")))
    with pytest.raises(ConfigError, match="positions.park .* outside the envelope"):
        config.load(_write(tmp_path, _sim_with("park = { azimuth_deg = 180.0, elevation_deg = 0.0 }",
                                               "park = { azimuth_deg = 300.0, elevation_deg = 0.0 }")))


def test_missing_file_bad_toml_and_missing_section(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        config.load(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(_write(tmp_path, "[site\nname = 1"))
    with pytest.raises(ConfigError, match="positions: Field required"):
        config.load(_write(tmp_path, _sim_with("[positions]", "[unused]").replace(
            "[unused]", "").replace("park = {", "#").replace("stow = {", "#")))


def test_modbus_register_map_must_exist(tmp_path) -> None:
    text = (CONFIG_DIR / "sim.toml").read_text().replace('kind = "sim"', 'kind = "modbus"')
    with pytest.raises(ConfigError, match="register_map"):
        config.load(_write(tmp_path, text))


def test_config_check_cli() -> None:
    runner = CliRunner()
    for name in PRESETS:
        result = runner.invoke(main, ["config", "check", str(CONFIG_DIR / f"{name}.toml")])
        assert result.exit_code == 0, result.output
        assert "ok" in result.output


def test_config_check_cli_refuses_bad_file(tmp_path) -> None:
    path = _write(tmp_path, _sim_with("elevation_max_deg = 25.0", "elevation_max_deg = 125.0"))
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 2
    assert "envelope.elevation_max_deg = 125.0" in result.output


def test_every_preset_is_valid_toml_with_comments_on_sources() -> None:
    for name in PRESETS:
        text = (CONFIG_DIR / f"{name}.toml").read_text()
        tomllib.loads(text)
        assert text.startswith("#")


# ---------------------------------------------------------------------------- strict types
def _sim_data() -> dict:
    return tomllib.loads((CONFIG_DIR / "sim.toml").read_text())


def _load_with(tmp_path, changes: dict[str, object]) -> config.Settings:
    """Load config/sim.toml with dotted keys set (written as real TOML, read by ``load``)."""
    data = _sim_data()
    for dotted, value in changes.items():
        *sections, key = dotted.split(".")
        target = data
        for name in sections:
            target = target.setdefault(name, {})
        target[key] = value
    path = tmp_path / "changed.toml"
    path.write_text(dump_toml(data))
    return config.load(path)


@pytest.mark.parametrize("key, value, fragment", [
    ("tracking.control_rate_hz", "10", "valid number"),
    ("tracking.control_rate_hz", True, "boolean (true) is not allowed"),
    ("tracking.log_rate_hz", False, "boolean (false) is not allowed"),
    ("api.port", "18470", "valid integer"),
    ("tracking.load_feedforward.enabled", "yes", "valid boolean"),
    ("tracking.load_feedforward.max_offset_arcsec", float("nan"), "finite number"),
    ("api.port", 8470.0, "valid integer"),
    ("drives.modbus.port", "5020", "valid integer"),
    ("drives.watchdog_s", "1.0", "valid number"),
    ("axes.azimuth.max_speed_deg_s", "0.5", "valid number"),
    ("tracking.auto_track", 1, "valid boolean"),
    ("tracking.auto_track", "true", "valid boolean"),
    ("site.name", 5, "valid string"),
    ("api.host", 127, "valid string"),
    ("envelope.boresights", [{"name": "main", "elevation_sign": True}], "boolean (true)"),
    ("envelope.boresights", [{"name": "main", "azimuth_offset_deg": False}], "boolean (false)"),
])
def test_strict_types_nothing_coerced(tmp_path, key, value, fragment) -> None:
    with pytest.raises(ConfigError) as exc:
        _load_with(tmp_path, {key: value})
    msg = str(exc.value)
    assert exc.value.key.startswith(key), (exc.value.key, msg)
    assert fragment in msg, msg


def test_an_integer_is_a_real_number(tmp_path) -> None:
    s = _load_with(tmp_path, {"tracking.control_rate_hz": 20, "axes.azimuth.max_speed_deg_s": 1})
    assert s.tracking.control_rate_hz == 20.0 and isinstance(s.tracking.control_rate_hz, float)


# (key, value just inside, value just outside, rule in the message); inside loads, outside not
_BOUNDS = [
    ("tracking.control_rate_hz", 100.0, 100.5, "less than or equal to 100"),
    ("tracking.control_rate_hz", 2.0, 0.99, "greater than or equal to 1"),
    ("tracking.control_rate_hz", 2.0, 0.2, "greater than or equal to 1"),
    ("tracking.control_rate_hz", 2.0, 1e-300, "greater than or equal to 1"),
    ("tracking.log_rate_hz", 1.0, 0.5, "greater than or equal to 1"),
    ("tracking.log_rate_hz", 10.0, 100.5, "less than or equal to 100"),
    ("axes.azimuth.max_speed_deg_s", 10.0, 10.01, "less than or equal to 10"),
    ("axes.azimuth.max_speed_deg_s", 0.001, 0.0, "greater than 0"),
    ("axes.elevation.max_speed_deg_s", 10.0, 1e300, "less than or equal to 10"),
    ("axes.azimuth.max_accel_deg_s2", 10.0, 10.5, "less than or equal to 10"),
    ("axes.elevation.max_accel_deg_s2", 1e-4, 0.0, "greater than 0"),
    ("drives.watchdog_s", 10.0, 10.5, "less than or equal to 10"),
    ("drives.watchdog_s", 0.2, 0.09, "greater than or equal to 0.1"),
    ("drives.watchdog_s", 10.0, 1e9, "less than or equal to 10"),
    ("drives.modbus.timeout_s", 0.01, 0.005, "greater than or equal to 0.01"),
    ("drives.modbus.timeout_s", 10.0, 10.5, "less than or equal to 10"),
    ("drives.serial.timeout_s", 0.01, 0.0, "greater than or equal to 0.01"),
    ("drives.serial.baudrate", 300, 299, "greater than or equal to 300"),
    ("drives.modbus.baudrate", 4_000_000, 4_000_001, "less than or equal to 4000000"),
    ("drives.modbus.port", 1, 0, "greater than or equal to 1"),
    ("drives.modbus.port", 65535, 65536, "less than or equal to 65535"),
    ("api.port", 1, 0, "greater than or equal to 1"),
    ("api.port", 65535, 65536, "less than or equal to 65535"),
    ("tracking.on_sun_tolerance_arcsec", 3600.0, 3601.0, "less than or equal to 3600"),
    ("tracking.on_sun_tolerance_arcsec", 0.01, 0.0, "greater than 0"),
    ("tracking.following_error_limit_arcsec", 36000.0, 36001.0, "less than or equal to 36000"),
    ("tracking.following_error_grace_s", 0.0, -0.1, "greater than or equal to 0"),
    ("tracking.following_error_grace_s", 600.0, 601.0, "less than or equal to 600"),
    ("tracking.position_gain_per_s", 20.0, 21.0, "less than or equal to 20"),
    ("tracking.min_window_s", 86400.0, 86401.0, "less than or equal to 86400"),
    ("tracking.preposition_margin_s", 3600.0, 3601.0, "less than or equal to 3600"),
    ("tracking.settle_s", 0.0, -1.0, "greater than or equal to 0"),
    ("weather.wind_stow_m_s", 100.0, 101.0, "less than or equal to 100"),
    ("weather.calm_s", 86400.0, 86401.0, "less than or equal to 86400"),
    ("simulator.encoder_resolution_arcsec", 3600.0, 3601.0, "less than or equal to 3600"),
    ("simulator.friction_deg_s2", 10.0, 11.0, "less than or equal to 10"),
    ("simulator.hard_limit_margin_deg", 10.0, 0.0, "greater than 0"),
    ("simulator.misalignment.ia_arcsec", -36000.0, -36001.0, "greater than or equal to -36000"),
    ("tracking.load_feedforward.max_offset_arcsec", 600.0, 601.0, "less than or equal to 600"),
    ("tracking.load_feedforward.max_offset_arcsec", 0.1, 0.0, "greater than 0"),
    ("tracking.load_feedforward.max_wind_age_s", 10.0, 10.5, "less than or equal to 10"),
    ("tracking.load_feedforward.max_wind_m_s", 100.0, 101.0, "less than or equal to 100"),
    ("tracking.load_feedforward.azimuth.compliance_s2", 0.1, 0.11, "less than or equal to 0.1"),
    ("tracking.load_feedforward.elevation.unbalance_deg_s2", -1.0, -1.1,
     "greater than or equal to -1"),
    ("tracking.load_feedforward.elevation.wind_deg_s2_per_m2_s2", 0.0, -1e-4,
     "greater than or equal to 0"),
    ("tracking.load_feedforward.azimuth.backlash_arcsec", 60.0, 61.0, "less than or equal to 60"),
    ("positions.park", {"azimuth_deg": 180.0, "elevation_deg": 0.0},
     {"azimuth_deg": 180.0, "elevation_deg": 91.0}, "less than or equal to 90"),
]


@pytest.mark.parametrize("key, inside, outside, rule", _BOUNDS)
def test_every_number_has_sane_bounds_both_sides(tmp_path, key, inside, outside, rule) -> None:
    # a 1 Hz control rate needs a watchdog of two periods
    extra: dict[str, object] = {"drives.watchdog_s": 2.0} if key.endswith("rate_hz") else {}
    if key == "drives.watchdog_s" and inside == 10.0:
        extra = {}
    s = _load_with(tmp_path, {**extra, key: inside})
    section = s
    for name in key.split("."):
        section = getattr(section, name)
    assert section == (config.AxisPosition(**inside) if isinstance(inside, dict) else inside)
    with pytest.raises(ConfigError) as exc:
        _load_with(tmp_path, {**extra, key: outside})
    msg = str(exc.value)
    assert exc.value.key.startswith(key) and key in msg and rule in msg, msg


@pytest.mark.parametrize("changes, rule", [
    ({"tracking.control_rate_hz": 1.0}, "must be at least two control periods "
     "(2 / tracking.control_rate_hz = 2 s)"),
    ({"drives.watchdog_s": 0.15}, "must be at least two control periods"),
    ({"tracking.log_rate_hz": 20.0}, "log_rate_hz (20.0) must not exceed control_rate_hz"),
    ({"drives.kind": "modbus", "drives.modbus.timeout_s": 1.0,
      "drives.modbus.register_map": str(CONFIG_DIR / "modbus_map.toml")},
     "drives.modbus.timeout_s (1.0) must be below watchdog_s (1.0)"),
    ({"drives.kind": "serial", "drives.serial.timeout_s": 2.0},
     "drives.serial.timeout_s (2.0) must be below watchdog_s"),
])
def test_cross_field_rules(tmp_path, changes, rule) -> None:
    with pytest.raises(ConfigError, match=re.escape(rule)):
        _load_with(tmp_path, changes)


@pytest.mark.parametrize("host", ["", "0", "0.0.0.0", "::", "192.168.1.5", "10.0.0.1",
                                  "tracker.example.org"])
def test_non_loopback_api_host_needs_allow_remote_and_is_logged(tmp_path, host, caplog) -> None:
    with pytest.raises(ConfigError) as exc:
        _load_with(tmp_path, {"api.host": host})
    assert exc.value.key == "api" and "set api.allow_remote = true" in str(exc.value)
    assert f"api.host = {host!r} is not a loopback address" in str(exc.value)
    with caplog.at_level(logging.WARNING, logger="tracker.config"):
        s = _load_with(tmp_path, {"api.host": host, "api.allow_remote": True})
    assert s.api.host == host and s.api.allow_remote
    (rec,) = [r for r in caplog.records if r.name == "tracker.config"]
    assert rec.levelno == logging.WARNING and "listens beyond this machine" in rec.getMessage()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost", "[::1]"])
def test_loopback_hosts_need_nothing_and_log_nothing(tmp_path, host, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="tracker.config"):
        s = _load_with(tmp_path, {"api.host": host, "api.allow_remote": True})
        _load_with(tmp_path, {"api.host": host})
    assert s.api.host == host
    assert not [r for r in caplog.records if r.name == "tracker.config"]


def test_store_section_corrupt_policy_and_spill_dir(tmp_path) -> None:
    s = _load_with(tmp_path, {"store.on_corrupt": "refuse", "store.spill_dir": "/var/spill"})
    assert (s.store.on_corrupt, s.store.spill_dir) == ("refuse", "/var/spill")
    assert config.load(CONFIG_DIR / "sim.toml").store.on_corrupt == "move_aside"
    with pytest.raises(ConfigError, match="store.on_corrupt"):
        _load_with(tmp_path, {"store.on_corrupt": "ignore"})


def test_config_check_cli_refuses_remote_host_and_a_string_rate(tmp_path) -> None:
    for line, fragment in (('host = "0.0.0.0"', "set api.allow_remote = true"),
                           ('host = "127.0.0.1"\nallow_remote = "yes"', "valid boolean")):
        path = _write(tmp_path, _sim_with('host = "127.0.0.1"', line))
        result = CliRunner().invoke(main, ["config", "check", str(path)])
        assert result.exit_code == 2 and fragment in result.output, result.output
    path = _write(tmp_path, _sim_with("control_rate_hz = 10.0", 'control_rate_hz = "10"'))
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 2
    assert "tracking.control_rate_hz = '10': Input should be a valid number" in result.output


# ---------------------------------------------------------------------------- bores
def _bore(**kw: object) -> dict[str, object]:
    return {"name": "b1", "efficiency_off_axis_arcsec": [0.0, 60.0, 300.0],
            "efficiency": [1.0, 0.9, 0.0], **kw}


def test_bores_of_the_presets() -> None:
    """BabyIAXO (and sim) have two bores, IAXO eight, CAST one on the mechanical axis."""
    counts = {p: len(config.load(CONFIG_DIR / f"{p}.toml").bore_list)
              for p in ("sim", "babyiaxo", "iaxo", "cast")}
    assert counts == {"sim": 2, "babyiaxo": 2, "iaxo": 8, "cast": 1}
    cast = config.load(CONFIG_DIR / "cast.toml")
    (axis,) = cast.bore_list
    assert (axis.name, axis.offset_x_arcsec, axis.efficiency) == ("axis", 0.0, [1.0])
    assert axis.on_sun_tolerance_arcsec == cast.tracking.on_sun_tolerance_arcsec


@pytest.mark.parametrize("bores, fragment", [
    ([_bore(efficiency_off_axis_arcsec=[0.0, 60.0, 60.0])],
     "efficiency_off_axis_arcsec must increase strictly: entry 2 (60.0) is not above entry 1"),
    ([_bore(efficiency_off_axis_arcsec=[0.0, 90.0, 60.0])], "must increase strictly"),
    ([_bore(efficiency=[1.0, 1.2, 0.0])], "less than or equal to 1"),
    ([_bore(efficiency=[1.0, -0.1, 0.0])], "greater than or equal to 0"),
    ([_bore(efficiency=[1.0, 0.5])], "has 3 entries but efficiency has 2"),
    ([_bore(efficiency_off_axis_arcsec=[-1.0, 60.0, 300.0])], "greater than or equal to 0"),
    ([_bore(efficiency_off_axis_arcsec=[], efficiency=[])], "at least 1 item"),
    ([_bore(), _bore()], "duplicate name(s) b1"),
    ([_bore(name="bad name")], "should match pattern"),
    ([_bore(offset_x_arcsec=3601.0)], "less than or equal to 3600"),
    ([_bore(offset_y_arcsec=-3601.0)], "greater than or equal to -3600"),
    ([_bore(on_sun_tolerance_arcsec=0.0)], "greater than 0"),
    ([_bore(efficiency=[1.0, True, 0.0])], "bores.0.efficiency.1 = True: Input should be a valid number"),
    ([_bore(efficiency=[1.0, "0.9", 0.0])], "valid number"),
])
def test_bad_bore_tables_are_refused_with_a_specific_error(tmp_path, bores, fragment) -> None:
    with pytest.raises(ConfigError) as exc:
        _load_with(tmp_path, {"bores": bores})
    assert fragment in str(exc.value), str(exc.value)
    assert exc.value.key.startswith("bores"), exc.value.key


def test_a_good_bore_table_loads_as_written(tmp_path) -> None:
    s = _load_with(tmp_path, {"bores": [_bore(offset_x_arcsec=-12.5, offset_y_arcsec=3)]})
    (b,) = s.bore_list
    assert (b.offset_x_arcsec, b.offset_y_arcsec) == (-12.5, 3.0)
    assert b.efficiency_off_axis_arcsec == [0.0, 60.0, 300.0] and b.efficiency == [1.0, 0.9, 0.0]


def test_reference_bore_must_exist_and_stay_inside_the_interlock(tmp_path) -> None:
    with pytest.raises(ConfigError, match=re.escape(
            "tracking.reference_bore = 'bore9' is not a bore; the bores are: bore1, bore2")):
        _load_with(tmp_path, {"tracking.reference_bore": "bore9"})
    far = [_bore(name="far", offset_x_arcsec=100.0)]
    with pytest.raises(ConfigError, match=re.escape(
            "its offset (100 arcsec) exceeds half the Sun interlock's bound (90 arcsec)")):
        _load_with(tmp_path, {"bores": far, "tracking.reference_bore": "far"})
    s = _load_with(tmp_path, {"bores": far, "tracking.reference_bore": "far",
                              "interlock.bound_deg": 0.06})
    assert s.tracking.reference_bore == "far"
