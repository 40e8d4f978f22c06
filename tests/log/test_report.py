"""Reports on a synthetic but realistic two-day CAST log: planned windows from the planner,
the Sun from the ephemeris, the state sequence of a day (parked, slew, wait, track, park),
a drive fault in the middle of a window, settling, noise.  Checks the figures against what
the generator wrote, the CSV/JSON/PNG files, and the CLI commands."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from tests.support import CONFIG_DIR
from tracker import config
from tracker.cli.main import main
from tracker.log.store import Sample, TrackingStore

T0_S = 1_782_864_000.0   # 2026-07-01T00:00:00Z
DAYS = 2
DT_S = 2.0
SIGMA_ARCSEC = 1.5
OFFSET_AZ_ARCSEC, OFFSET_EL_ARCSEC = 0.8, -0.3


def _synthetic_log(path):
    """Write the log; return what was written (per-day on-Sun seconds, fault time...)."""
    from tracker.astro.ephemeris import SunTrack
    from tracker.planning.planner import plan

    s = config.load(CONFIG_DIR / "cast.toml")
    p = plan(s, T0_S, T0_S + DAYS * 86400)
    track = SunTrack(s.site.latitude_deg, s.site.longitude_deg, s.site.height_m,
                     T0_S - 60, T0_S + DAYS * 86400 + 60)
    t = np.arange(T0_S + DT_S, T0_S + DAYS * 86400 + DT_S / 2, DT_S)
    az, el = track.altaz(t)
    state = np.full(t.size, "parked", dtype="U16")
    boresight = np.full(t.size, "front", dtype="U16")
    rng = np.random.default_rng(7)
    err = np.abs(rng.normal(0, 300.0, t.size)) + 600.0      # far off the Sun when not tracking
    events = []                                             # (time, to, cause)
    fault_t = None
    for k, w in enumerate(p.windows):
        slew0, wait0 = w.start_s - 900, w.start_s - 300
        state[(t > slew0) & (t <= wait0)] = "slewing"
        state[(t > wait0) & (t <= w.start_s)] = "waiting"
        trk = (t > w.start_s) & (t <= w.end_s)
        state[trk] = "tracking"
        boresight[(t > slew0) & (t <= w.end_s + 600)] = w.boresight
        since = t[trk] - w.start_s
        err[trk] = np.where(since <= 30, 60.0 * np.exp(-since / 10.0) + 2.0,
                            SIGMA_ARCSEC * np.sqrt(rng.exponential(2.0, since.size)))
        park = (t > w.end_s) & (t <= w.end_s + 600)
        state[park] = "parking"
        events += [(slew0, "slewing", "pre-position"), (wait0, "waiting", "at entry"),
                   (w.start_s, "tracking", "window start"), (w.end_s, "parking", "window end"),
                   (w.end_s + 600, "parked", "at park")]
        if k == 0:                                          # a drive trip 30 min in, 10 min
            fault_t = w.start_s + 1800
            f = (t > fault_t) & (t <= fault_t + 600)
            state[f] = "fault"
            err[f] = 400.0
            back = (t > fault_t + 600) & (t <= fault_t + 630)
            err[back] = 20.0                               # settling again after the reset
            events += [(fault_t, "fault", "azimuth drive trip"),
                       (fault_t + 600, "tracking", "operator reset")]
    events.sort()
    on_sun = np.where((state == "tracking") & (err <= 36.0), DT_S, 0.0)
    cos_el = np.cos(np.radians(el))
    m_az = az + OFFSET_AZ_ARCSEC / 3600.0 / cos_el
    m_el = el + OFFSET_EL_ARCSEC / 3600.0
    with TrackingStore(path, commit_interval_s=3600.0) as store:
        store.set_meta(site=s.site.name, config=str(CONFIG_DIR / "cast.toml"), software="test")
        store.log_event(T0_S, "state", "off -> parked: start",
                        data={"from": "off", "to": "parked", "auto_tracking": True})
        ev = iter(events + [(math.inf, "", "")])
        nxt = next(ev)
        prev = "parked"
        for i in range(t.size):
            while nxt[0] <= t[i]:
                kind = "fault" if nxt[1] == "fault" else "state"
                if kind == "fault":
                    store.log_event(nxt[0], "fault", nxt[2], source="drive:azimuth",
                                    data={"code": 7})
                store.log_event(nxt[0], "state", f"{prev} -> {nxt[1]}: {nxt[2]}",
                                data={"from": prev, "to": nxt[1], "cause": nxt[2]})
                prev = nxt[1]
                nxt = next(ev)
            store.add_sample(Sample(float(t[i]), DT_S, str(state[i]), str(boresight[i]),
                                    float(az[i]), float(el[i]), float(m_az[i]), float(m_el[i]),
                                    float(az[i]), float(el[i]), float(err[i]),
                                    float(err[i]) * 1.3, float(on_sun[i])))
    day = (t - DT_S - T0_S) // 86400
    return {"plan": p, "fault_t": fault_t,
            "on_sun_day": [float(on_sun[day == d].sum()) for d in range(DAYS)],
            "tracking_day": [float((state[day == d] == "tracking").sum() * DT_S)
                             for d in range(DAYS)]}


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "cast.sqlite"
    truth = _synthetic_log(path)
    return path, truth


@pytest.mark.slow
def test_report_figures_files_and_plots(log, tmp_path):
    from tracker.log.report import build_report, write_report

    path, truth = log
    settings = config.load(CONFIG_DIR / "cast.toml")
    with TrackingStore(path, readonly=True) as store:
        rep = build_report(store, T0_S, T0_S + DAYS * 86400, settings=settings)
        files = write_report(rep, tmp_path / "out", store=store, settings=settings)
    days = rep["days"]
    assert [d["date"] for d in days] == ["2026-07-01", "2026-07-02"]
    for d in range(DAYS):
        assert days[d]["on_sun_s"] == pytest.approx(truth["on_sun_day"][d])
        assert days[d]["tracking_s"] == pytest.approx(truth["tracking_day"][d])
        planned = sum(w.duration_s for w in truth["plan"].windows
                      if T0_S + d * 86400 <= w.start_s < T0_S + (d + 1) * 86400)
        assert days[d]["available_s"] == pytest.approx(planned)
        assert 0.8 < days[d]["efficiency"] <= 1.0
    # day 1 lost the 10-minute fault plus the settling after it; day 2 only the settle
    assert days[0]["efficiency"] < days[1]["efficiency"]
    assert days[0]["faults"] == 1 and days[1]["faults"] == 0
    assert rep["faults"][0]["message"] == "azimuth drive trip"
    # error statistics over settled tracking: |N(0, sigma)|-like noise, far below tolerance
    tot = rep["total"]
    assert tot["rms_error_arcsec"] == pytest.approx(2 * SIGMA_ARCSEC / math.sqrt(2) * 1.0,
                                                    rel=0.05)
    assert tot["max_error_arcsec"] < 36.0 * 1.3
    assert set(tot["boresights"]) == {"front", "rear"}
    # time in each state: events and samples agree (to one row per transition)
    st = rep["states"]
    for name in ("tracking", "fault", "slewing", "waiting", "parking"):
        assert st["seconds"][name] == pytest.approx(st["from_samples_s"][name], abs=50 * DT_S)
    assert st["seconds"]["fault"] == pytest.approx(600.0)
    assert st["entries"]["tracking"] == 5                   # 4 windows + resume after reset
    # intervals: five (window 1 split by the fault), one boresight each, offsets as written
    ivs = rep["intervals"]
    assert [iv["boresight"] for iv in ivs] == ["front", "front", "rear", "front", "rear"]
    for iv in ivs:
        assert iv["mean_offset_az_cos_el_arcsec"] == pytest.approx(OFFSET_AZ_ARCSEC, abs=1e-3)
        assert iv["mean_offset_el_arcsec"] == pytest.approx(OFFSET_EL_ARCSEC, abs=1e-3)
        assert iv["start_utc"].endswith("Z") and iv["end_utc"].endswith("Z")
    assert sum(iv["duration_s"] for iv in ivs) == pytest.approx(tot["on_sun_s"])
    # files
    names = {p.name for p in files}
    assert names == {"report.json", "days.csv", "intervals.csv", "states.csv", "faults.csv",
                     "exposure_per_day.png", "pointing_error.png", "sky_2026-07-01.png",
                     "sky_2026-07-02.png"}
    out = tmp_path / "out"
    again = json.loads((out / "report.json").read_text())
    assert again["days"][1]["on_sun_s"] == pytest.approx(truth["on_sun_day"][1])
    with open(out / "days.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[0]["on_sun_s"]) == pytest.approx(truth["on_sun_day"][0], rel=1e-5)
    with open(out / "intervals.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and rows[0]["boresight"] == "front"
    for png in out.glob("*.png"):
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, png


@pytest.mark.slow
def test_cli_exposure_and_report(log, tmp_path):
    path, truth = log
    runner = CliRunner()
    r = runner.invoke(main, ["exposure", "--db", str(path), "--from", "2026-07-02",
                             "--to", "2026-07-03", "--json",
                             "--intervals", str(tmp_path / "iv.csv")])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["from_utc"] == "2026-07-02T00:00:00Z" and data["to_utc"] == "2026-07-03T00:00:00Z"
    assert data["on_sun_s"] == pytest.approx(truth["on_sun_day"][1])
    assert len(data["intervals"]) == 2
    assert (tmp_path / "iv.csv").read_text().count("\n") == 3
    r = runner.invoke(main, ["exposure", "--db", str(path)])          # whole log, text
    assert r.exit_code == 0, r.output
    assert f"on-Sun       {sum(truth['on_sun_day']):.1f} s" in r.output
    assert "front" in r.output and "rear" in r.output
    # refusals: clear message, exit 2, nothing written
    r = runner.invoke(main, ["exposure", "--db", str(path), "--from", "2026-07-02",
                             "--to", "2026-07-01"])
    assert r.exit_code == 2 and "must be after" in r.output
    r = runner.invoke(main, ["exposure", "--db", str(tmp_path / "none.sqlite")])
    assert r.exit_code == 2 and "no tracking log" in r.output
    assert not (tmp_path / "none.sqlite").exists()
    r = runner.invoke(main, ["exposure", "--db", str(path), "--from", "2026-07-01T00:00"])
    assert r.exit_code == 2 and "no time zone" in r.output
    # report without plots: the config comes from the log's metadata
    r = runner.invoke(main, ["report", "--db", str(path), "--from", "2026-07-01",
                             "--to", "2026-07-02", "--out", str(tmp_path / "rep"),
                             "--no-plots"])
    assert r.exit_code == 0, r.output
    assert "efficiency" in r.output and "1 faults" in r.output
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert rep["site"]["name"] == "CAST, CERN"
    assert rep["days"][0]["on_sun_s"] == pytest.approx(truth["on_sun_day"][0])


@pytest.mark.slow
async def test_report_from_a_real_dry_run_log(tmp_path):
    """The path a new user takes: dry run -> tracker exposure / tracker report."""
    from tracker.service import dryrun

    settings = config.load(CONFIG_DIR / "sim.toml")
    db = tmp_path / "dry.sqlite"
    start_s = 1_782_923_400.0          # 2026-07-01T16:30Z, 9 min before a window opens
    rep = await dryrun.run(settings, start_s, 1200.0, db_path=db,
                           config_name=str(CONFIG_DIR / "sim.toml"))
    runner = CliRunner()
    r = runner.invoke(main, ["exposure", "--db", str(db), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["tracking_s"] > 500.0
    assert data["on_sun_s"] == pytest.approx(rep.tracked_s, abs=3.0)
    assert data["rms_error_arcsec"] < 36.0 and len(data["intervals"]) >= 1
    r = runner.invoke(main, ["report", "--db", str(db), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    out = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert out["site"]["name"] == settings.site.name                  # config from the log
    assert out["states"]["entries"].get("tracking") == 1
    assert (tmp_path / "rep" / "sky_2026-07-01.png").stat().st_size > 20_000
