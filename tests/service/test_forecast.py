"""Year forecasts: seeded days, identical figures on any number of workers (a real
dask.distributed LocalCluster), the summary's bands, and the CLI."""

from __future__ import annotations

import json
import tomllib

import pytest
from click.testing import CliRunner

from tests.support import CONFIG_DIR
from tests.support.toml_dump import dump_toml
from tracker import config
from tracker.cli.main import main
from tracker.service import forecast as fc

YEAR = 2027
DAYS = [170, 171]            # 20-21 June 2027: CAST's short sunrise/sunset windows


@pytest.fixture
def faulty_cast(tmp_path):
    """CAST with drive faults frequent enough that the two days see some."""
    data = tomllib.loads((CONFIG_DIR / "cast.toml").read_text())
    data["forecast"] = {"drive_faults_per_day": 3.0, "fault_downtime_mean_s": 900.0}
    data["drives"]["modbus"]["register_map"] = str(CONFIG_DIR / "modbus_map.toml")
    path = tmp_path / "cast-faults.toml"
    path.write_text(dump_toml(data))
    return str(path)


def test_a_days_draws_depend_on_seed_run_and_day_only() -> None:
    settings = config.load(CONFIG_DIR / "cast.toml")
    a = fc.draw_day(settings, fc.DayTask("x", YEAR, 10, 2, 7))
    assert a == fc.draw_day(settings, fc.DayTask("y", YEAR, 10, 2, 7))
    assert a != fc.draw_day(settings, fc.DayTask("x", YEAR, 10, 3, 7))
    assert a != fc.draw_day(settings, fc.DayTask("x", YEAR, 11, 2, 7))
    # the Weibull draws have the month's mean: January at the site's 5.2 m/s
    winds = [fc.draw_day(settings, fc.DayTask("x", YEAR, d, r, 1))[0]
             for d in range(31) for r in range(20)]
    assert sum(winds) / len(winds) == pytest.approx(5.2, rel=0.06)


@pytest.mark.slow
def test_same_seed_same_figures_on_one_local_worker_and_a_dask_cluster(faulty_cast) -> None:
    from distributed import LocalCluster

    local = fc.forecast(faulty_cast, YEAR, 1, workers=1, seed=3, days=DAYS)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        remote = fc.forecast(faulty_cast, YEAR, 1, scheduler=cluster.scheduler_address,
                             seed=3, days=DAYS)

    def strip(r: dict) -> list[dict]:
        return [{k: v for k, v in d.items() if k not in ("wall_s", "cpu_s")}
                for d in r["results"]]
    assert strip(local) == strip(remote)
    assert local["total"]["bores"] == remote["total"]["bores"]
    assert local["drive_faults"] >= 1                       # faults were injected
    total = local["total"]
    assert total["days"] == 2 and 0.05 < total["plan_fraction"] < 0.2
    eff = total["bores"]["axis"]["effective"]
    assert 0.0 < eff["median_s"] <= total["planned_s"] + 1.0
    assert eff["p5_s"] <= eff["median_s"] <= eff["p95_s"]


def test_summary_bands_over_runs() -> None:
    """Three runs of one day: the median and the 5-95 % band over the runs' sums."""
    results = [fc.DayResult(YEAR, 0, run, 1, 1000.0, {"b": on}, {"b": on * 0.9}, 3.0, 0, 1.0)
               for run, on in enumerate((100.0, 300.0, 200.0))]
    s = fc.summarise(results, ["b"])
    e = s["months"]["Jan"]["bores"]["b"]["effective"]
    assert e["median_s"] == pytest.approx(180.0)
    assert e["p5_s"] == pytest.approx(0.9 * 110.0) and e["p95_s"] == pytest.approx(0.9 * 290.0)
    assert s["total"]["plan_fraction"] == pytest.approx(1000.0 / 86400.0)


def test_forecast_refuses_bad_input() -> None:
    with pytest.raises(fc.ForecastError, match="--runs must be at least 1, got 0"):
        fc.make_tasks("c.toml", YEAR, 0)
    with pytest.raises(fc.ForecastError, match=r"day indices must lie in 0..364 for 2027"):
        fc.make_tasks("c.toml", YEAR, 1, days=[365])
    r = CliRunner().invoke(main, ["forecast", "--year", "2027", "--days", "x1"])
    assert r.exit_code == 2 and "give N (the first N days) or A-B" in r.output
    r = CliRunner().invoke(main, ["forecast", "--year", "2027", "--workers", "0"])
    assert r.exit_code == 2 and "--workers" in r.output


@pytest.mark.slow
def test_forecast_cli_two_local_workers(tmp_path) -> None:
    """The real ``tracker`` command in its own process (its pool's workers end with it)."""
    import subprocess

    from tests.support import TRACKER
    out, png = tmp_path / "f.json", tmp_path / "f.png"
    r = subprocess.run([TRACKER, "forecast", "--config", str(CONFIG_DIR / "cast.toml"),
                        "--year", "2027", "--runs", "2", "--days", "170-170", "--workers", "2",
                        "--out", str(out), "--plot", str(png)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "plan fraction" in r.stdout and "total  axis" in r.stdout
    saved = json.loads(out.read_text())
    assert len(saved["results"]) == 2 and saved["workers"] == 2
    assert png.stat().st_size > 10_000
