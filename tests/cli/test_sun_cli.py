"""``tracker sun``: text, JSON, --info, errors; via CliRunner and a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support import ROOT
from tracker.astro.ephemeris import sun_altaz, sun_rates
from tracker.cli.main import main

CAST = ROOT / "config" / "cast.toml"
SIM_SITE = (53.5775, 9.8797, 10.0)  # config/sim.toml, the default


def run(*args: str):
    return CliRunner().invoke(main, ["sun", *args])


def test_json_one_object_per_time_matches_library():
    times = ["2024-06-21T12:00:00Z", "2016-12-31T23:59:60Z", "2024-12-21T09:00:00+01:00"]
    result = run("--json", *[a for t in times for a in ("--time", t)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["time_utc"] for r in rows] == [
        "2024-06-21T12:00:00.000Z", "2016-12-31T23:59:60.000Z", "2024-12-21T08:00:00.000Z"]
    az, el = sun_altaz(times, *SIM_SITE)
    az_rate, el_rate = sun_rates(times, *SIM_SITE)
    for i, row in enumerate(rows):
        assert set(row) == {"time_utc", "azimuth_deg", "elevation_deg", "azimuth_rate_deg_s",
                            "elevation_rate_deg_s", "apparent"}
        assert row["apparent"] is False
        assert row["azimuth_deg"] == pytest.approx(az[i], abs=1e-9)
        assert row["elevation_deg"] == pytest.approx(el[i], abs=1e-9)
        assert row["azimuth_rate_deg_s"] == pytest.approx(az_rate[i], abs=1e-12)
        assert row["elevation_rate_deg_s"] == pytest.approx(el_rate[i], abs=1e-12)
    assert rows[0]["elevation_deg"] == pytest.approx(59.03, abs=0.05)


def test_site_from_config_or_command_line_and_apparent():
    cast = run("--config", str(CAST), "--time", "2024-06-21T04:00:00Z", "--json")
    assert cast.exit_code == 0, cast.output
    az, el = sun_altaz("2024-06-21T04:00:00Z", 46.2389, 6.0455, 450.0)
    assert json.loads(cast.output)["elevation_deg"] == pytest.approx(el, abs=1e-9)

    geo = json.loads(run("--lat", "46.2389", "--lon", "6.0455", "--height", "450",
                         "--time", "2024-06-21T04:00:00Z", "--json").output)
    assert geo["azimuth_deg"] == pytest.approx(az, abs=1e-9)
    app = json.loads(run("--lat", "46.2389", "--lon", "6.0455", "--height", "450",
                         "--time", "2024-06-21T04:00:00Z", "--json", "--apparent",
                         "--pressure-hpa", "960", "--temperature-c", "15").output)
    assert app["apparent"] is True
    assert 0.05 < app["elevation_deg"] - geo["elevation_deg"] < 0.4  # refraction at ~8 deg


def test_text_output_is_readable():
    result = run("--time", "2024-06-21T12:00:00Z")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "BabyIAXO" in lines[0] and "geometric" in lines[0]
    assert "azimuth" in lines[1] and "elevation" in lines[1]
    assert lines[2].startswith("2024-06-21T12:00:00.000Z") and "+59.03" in lines[2]


def test_default_time_is_now():
    result = run("--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)
    import time
    now = time.time()
    from tracker.astro.timeinput import to_unix_s
    assert abs(to_unix_s(row["time_utc"]) - now) < 60.0


def test_info_lists_sources_and_ages():
    text = run("--info")
    assert text.exit_code == 0, text.output
    assert "IERS-A table" in text.output and "days" in text.output and "DE421" in text.output
    info = json.loads(run("--info", "--json").output)
    assert info["iers_table"]["last_date"] >= "2025-01-01"
    assert info["offline"]["iers_auto_download"] is False
    # The kernel of the Earth-Sun vector is named, with the file it is read from.
    kernel_line = next(line for line in text.output.splitlines() if line.startswith("kernel"))
    assert "JPL DE421" in kernel_line and kernel_line.rstrip().endswith("de421.bsp")
    assert info["ephemerides"]["kernel"].startswith("JPL DE421")
    assert info["iers_table"]["cache"].startswith(("cache", "parsed"))


@pytest.mark.parametrize("args, message", [
    (["--time", "2024-06-21T12:00:00"], "no time zone"),
    (["--time", "yesterday"], "cannot read time"),
    (["--lat", "10"], "--lat and --lon go together"),
    (["--lat", "10", "--lon", "5", "--config", str(CAST)], "not both"),
    (["--pressure-hpa", "900"], "only apply with --apparent"),
    (["--lat", "95", "--lon", "0"], "latitude"),
    (["--config", "/nonexistent.toml"], "cannot read config"),
])
def test_bad_input_exits_with_clear_error(args, message):
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.output


def test_beyond_iers_table_warns_but_answers():
    result = CliRunner().invoke(main, ["sun", "--time", "2031-01-01T00:00:00Z", "--json"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert any(line.startswith("warning:") and "IERS" in line and "arcsec" in line
               for line in lines)
    row = json.loads(next(line for line in lines if line.startswith("{")))
    assert -90.0 <= row["elevation_deg"] <= 90.0


@pytest.mark.slow
def test_real_subprocess():
    script = Path(sys.executable).parent / "tracker"
    cmd = [str(script)] if script.exists() else [
        sys.executable, "-c", "from tracker.cli.main import main; main()"]
    proc = subprocess.run(cmd + ["sun", "--time", "2024-06-21T12:00:00Z", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    assert row["elevation_deg"] == pytest.approx(59.03, abs=0.05)
    bad = subprocess.run(cmd + ["sun", "--time", "2024-06-21T12:00:00"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no time zone" in bad.stderr
