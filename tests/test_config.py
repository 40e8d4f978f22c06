"""Config loading: presets validate, bad files are refused with file, key, value and rule."""

from __future__ import annotations

import tomllib

import pytest
from click.testing import CliRunner

from tests.conftest import CONFIG_DIR, PRESETS
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
    return text.replace(replace, by)


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
