"""The control-room page in a real browser (headless Chromium) against the real daemon.

The daemon runs as a subprocess on the in-process simulated mount (``tests.test_daemon``
harness: the clock inside a tracking window, the mount parked next to the Sun).  The
browser is Debian's ``chromium`` driven through its ``chromedriver`` by selenium; the
browser tests skip (with the reason) only when those are not installed.  Screenshots go to
``tests/artifacts/`` (git-ignored) for a person to look at.

Non-browser checks of the same endpoints (the SSE stream's framing, the CSP header, the
cross-origin refusal) use plain HTTP against the same daemon.
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import time
from datetime import UTC, datetime

import httpx
import pytest

from tests.support import ROOT
from tests.support.daemon import DaemonProcess, free_port, make_config

pytestmark = [pytest.mark.network, pytest.mark.slow]

ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
try:
    import selenium  # noqa: F401
    HAVE_SELENIUM = True
except ImportError:  # pragma: no cover
    HAVE_SELENIUM = False

needs_browser = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER and HAVE_SELENIUM),
    reason="headless browser tests need Debian's chromium and chromium-driver "
           "(apt-get install -y chromium chromium-driver) and selenium (pip install selenium)")


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web")
    port = free_port()
    path, offset = make_config(tmp, api={"port": port})
    return path, offset, port


@pytest.fixture(scope="module")
def daemon(env):
    path, offset, port = env
    holder = {"d": DaemonProcess(path, time_offset_s=offset, port=port).wait_ready()}
    yield holder
    holder["d"].kill()


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER and HAVE_SELENIUM):
        pytest.skip("no chromium/chromedriver/selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="helio-chromium-")
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--window-size=1600,1000",
                "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def text(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def wait_until(predicate, timeout_s: float, what: str, driver=None):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # stale element while the page re-renders
            last = exc
        time.sleep(0.1)
    if driver is not None:
        driver.save_screenshot(str(ARTIFACTS / f"timeout-{what.replace(' ', '-')[:40]}.png"))
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")


def hm(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, UTC).strftime("%H:%M")


def click(driver, css: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, css).click()


def confirm(driver, accept: bool) -> str:
    """Answer the page's move confirmation; returns its question."""
    wait_until(lambda: driver.find_element("id", "confirm").get_attribute("open") is not None,
               5.0, "the confirmation dialog", driver)
    question = text(driver, "confirm-text")
    click(driver, "#confirm-yes" if accept else "#confirm-no")
    return question


# --------------------------------------------------------------------------- plain HTTP
def test_page_headers_csp_and_assets(daemon):
    d = daemon["d"]
    r = httpx.get(f"{d.url}/", timeout=5)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    # every asset the page names is served locally; nothing from another host
    page = r.text.replace("http://www.w3.org/2000/svg", "")   # the SVG namespace name
    assert "http://" not in page and "https://" not in page
    for path, kind in (("/web/app.js", "text/javascript"), ("/web/style.css", "text/css")):
        a = httpx.get(f"{d.url}{path}", timeout=5)
        assert a.status_code == 200 and a.headers["content-type"].startswith(kind)
        assert "http://" not in a.text.replace("http://www.w3.org/2000/svg", "")
    assert httpx.get(f"{d.url}/web/../api.py", timeout=5).status_code == 404
    assert httpx.get(f"{d.url}/web/secret.txt", timeout=5).status_code == 404


def _read_sse(url: str, n_messages: int, timeout_s: float = 10.0) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    with httpx.stream("GET", url, timeout=timeout_s) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        event, data = "message", []
        for line in r.iter_lines():
            if line == "":
                if data:
                    out.append((event, json.loads("\n".join(data))))
                    if len(out) >= n_messages:
                        return out
                event, data = "message", []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
    return out


def test_stream_full_status_then_changes_and_events(daemon):
    d = daemon["d"]
    d.wait_for(lambda s: s["state"] == "tracking" and s["on_sun"], 90.0, "tracking")
    msgs = _read_sse(f"{d.url}/api/v1/stream", 30)
    kinds = [k for k, _ in msgs]
    assert kinds[0] == "status"
    first = msgs[0][1]
    st = d.status()
    assert first["state"] == st["state"] and first["boresight"] == st["boresight"]
    assert abs(first["time_s"] - st["time_s"]) < 5.0
    assert "event" in kinds and "patch" in kinds
    ids = [m["id"] for k, m in msgs if k == "event"]
    api_ids = [e["id"] for e in httpx.get(f"{d.url}/api/v1/events", timeout=5).json()]
    assert ids == sorted(ids) and set(ids) <= set(api_ids)
    patches = [m for k, m in msgs if k == "patch"]
    # only what changed: a patch never repeats the fixed keys
    assert all("boresight" not in p and "site" not in p for p in patches[1:])
    assert any("time_s" in p for p in patches)


def test_commands_keep_token_and_refuse_foreign_origin(daemon):
    d = daemon["d"]
    state = d.status()["state"]
    r = httpx.post(f"{d.url}/api/v1/stop", timeout=5)
    assert r.status_code == 401
    r = httpx.post(f"{d.url}/api/v1/stop", timeout=5,
                   headers={"Authorization": f"Bearer {d.token}",
                            "Origin": "http://evil.example"})
    assert r.status_code == 403 and "another origin" in r.text
    assert d.status()["state"] == state
    # the page's own origin is fine (and the token is still needed): refusal, not move
    r = httpx.post(f"{d.url}/api/v1/goto", timeout=5, json={"az_deg": 10.0, "el_deg": 80.0},
                   headers={"Authorization": f"Bearer {d.token}", "Origin": d.url})
    assert r.status_code == 422
    assert d.status()["state"] == state


def test_sky_layer_matches_the_ephemeris(daemon):
    """The chart's Sun path is the daemon's ephemeris, checked against the status."""
    d = daemon["d"]
    st = d.status()
    sky = httpx.get(f"{d.url}/api/v1/sky", timeout=60).json()
    assert sky["day_start_s"] == (st["time_s"] // 86400) * 86400
    p = sky["sun_path"]
    assert len(p["t_s"]) == 289 and p["t_s"][-1] - p["t_s"][0] == 86400.0
    # interpolate the path (5 min steps) at the status time: within 0.1 deg of the Sun shown
    import numpy as np

    t = st["time_s"]
    el = float(np.interp(t, p["t_s"], p["el_deg"]))
    assert el == pytest.approx(st["sun"]["elevation_deg"], abs=0.1)
    assert sky["envelope"]["elevation_max_deg"] == d.settings.envelope.elevation_max_deg
    assert httpx.get(f"{d.url}/api/v1/sky", params={"day_start_s": "nan"},
                     timeout=5).status_code == 422


# --------------------------------------------------------------------------- the browser
@needs_browser
def test_page_shows_what_the_api_says(daemon, browser):
    d = daemon["d"]
    d.wait_for(lambda s: s["state"] == "tracking" and s["on_sun"], 60.0, "tracking on the Sun")
    browser.get(f"{d.url}/")
    wait_until(lambda: text(browser, "conn") == "live", 15.0, "live link", browser)
    wait_until(lambda: text(browser, "onsun") == "ON SUN", 15.0, "ON SUN shown", browser)
    st = d.status()
    assert text(browser, "state") == st["state"].upper() == "TRACKING"
    assert text(browser, "mode") == ("AUTO" if st["auto_tracking"] else "MANUAL")
    assert text(browser, "error-label") == "error to Sun"
    shown = text(browser, "error")
    assert shown.endswith(" arcsec")
    assert float(shown.split()[0]) < d.settings.tracking.on_sun_tolerance_arcsec
    # positions: the page lags the API by at most a few ticks; the Sun moves < 0.005 deg/s
    for elem, value in (("sun-az", st["sun"]["azimuth_deg"]), ("sun-el", st["sun"]["elevation_deg"]),
                        ("pt-az", st["pointing"]["az_deg"]), ("pt-el", st["pointing"]["el_deg"])):
        assert float(text(browser, elem)) == pytest.approx(value, abs=0.02), elem
    w = st["current_window"]
    assert text(browser, "window") == f"{hm(w['start_s'])}–{hm(w['end_s'])} UTC"
    assert f"next {hm(st['next_window']['start_s'])} UTC" in text(browser, "next")
    assert text(browser, "b-drives") == "drives ok"
    assert text(browser, "b-wind") == f"wind {st['wind_m_s']:.1f} m/s" or \
        text(browser, "b-wind").startswith("wind ")
    assert text(browser, "b-log") == "log ok"
    assert text(browser, "b-faults") == "no faults"
    # the events log shows the API's events, newest first
    from selenium.webdriver.common.by import By

    api_events = httpx.get(f"{d.url}/api/v1/events", timeout=5).json()
    def shown() -> list[tuple[float, int]]:
        return [(float(r.get_attribute("data-t")), int(r.get_attribute("data-id")))
                for r in browser.find_elements(By.CSS_SELECTOR, "#events tr")]

    wait_until(lambda: {e["id"] for e in api_events} <= {i for _, i in shown()}, 5.0,
               "the API's events in the page", browser)
    rows = shown()
    assert rows == sorted(rows, reverse=True)                       # newest first, by time
    # the sky chart drew the Sun's path, the window part, the Sun and the pointing
    assert browser.find_elements(By.CSS_SELECTOR, "#sky polyline.sunpath")
    assert browser.find_elements(By.CSS_SELECTOR, "#sky polyline.sunwindow")
    assert browser.find_elements(By.CSS_SELECTOR, "#sky circle.sunnow")
    assert browser.find_elements(By.CSS_SELECTOR, "#sky circle.pointing")
    time.sleep(2.5)   # a few error/wind samples on the charts
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#err-chart polyline.errline"),
               10.0, "the error chart", browser)
    browser.save_screenshot(str(ARTIFACTS / "web-tracking.png"))
    # no console errors (CSP violations would show here)
    logs = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not logs, logs


@needs_browser
def test_commands_without_and_with_token(daemon, browser):
    from selenium.webdriver.common.by import By

    d = daemon["d"]
    browser.get(f"{d.url}/")
    wait_until(lambda: text(browser, "conn") == "live", 15.0, "live link", browser)
    assert text(browser, "token-state") == "no token: commands will be refused"
    # without the token: refused with the daemon's reason; nothing moves
    before = d.status()["state"]
    click(browser, "button[data-cmd='park']")
    assert confirm(browser, accept=True) == "Move the mount to the park position?"
    wait_until(lambda: "refused (401)" in text(browser, "msg"), 10.0, "the refusal", browser)
    assert "missing or wrong API token" in text(browser, "msg")
    assert d.status()["state"] == before
    # (wrong-token refusals are audited once per source per 10 s: this one or an earlier one)
    wait_until(lambda: any("refused: missing or wrong API token" in r.text
                           for r in browser.find_elements(By.CSS_SELECTOR, "#events tr")),
               10.0, "the refusal in the events log", browser)
    browser.save_screenshot(str(ARTIFACTS / "web-refused.png"))
    # with the token: a cancelled confirmation sends nothing ...
    browser.find_element(By.ID, "token").send_keys(d.token)
    click(browser, "#token-save")
    assert text(browser, "token-state") == "token kept for this session"
    assert browser.execute_script("return sessionStorage.getItem('helio-tracker.token')") == d.token
    click(browser, "button[data-cmd='stow']")
    confirm(browser, accept=False)
    assert text(browser, "msg") == "stow: cancelled"
    assert d.status()["state"] == before
    # ... an envelope refusal shows the engine's reason ...
    browser.find_element(By.ID, "goto-az").send_keys("180")
    browser.find_element(By.ID, "goto-el").send_keys("80")
    click(browser, "#goto-send")
    assert "az 180 deg, el 80 deg" in confirm(browser, accept=True)
    wait_until(lambda: "refused (422)" in text(browser, "msg"), 10.0, "envelope refusal", browser)
    assert "above the limit 25.0 deg" in text(browser, "msg")
    assert d.status()["state"] == before
    # ... and park is accepted: the page follows the state the API reports
    click(browser, "button[data-cmd='park']")
    confirm(browser, accept=True)
    wait_until(lambda: "park: accepted" in text(browser, "msg"), 10.0, "park accepted", browser)
    st = d.wait_for(lambda s: s["state"] in ("parking", "parked"), 10.0, "parking")
    wait_until(lambda: text(browser, "state") in ("PARKING", "PARKED"), 5.0, "PARKING shown",
               browser)
    assert text(browser, "mode") == "MANUAL" and not st["auto_tracking"]
    d.wait_for(lambda s: s["state"] == "parked", 60.0, "parked")
    wait_until(lambda: text(browser, "state") == "PARKED", 5.0, "PARKED shown", browser)
    assert text(browser, "error-label") == "error to park"
    browser.save_screenshot(str(ARTIFACTS / "web-parked.png"))
    # parked means nothing moves: track start is refused with the engine's reason
    click(browser, "button[data-cmd='track-start']")
    confirm(browser, accept=True)
    wait_until(lambda: "unpark" in text(browser, "msg"), 10.0, "parked refusal", browser)
    assert d.status()["state"] == "parked"
    # back to tracking for the next test: unpark, then track start
    click(browser, "button[data-cmd='unpark']")
    wait_until(lambda: "unpark: accepted" in text(browser, "msg"), 10.0, "unpark", browser)
    click(browser, "button[data-cmd='track-start']")
    confirm(browser, accept=True)
    wait_until(lambda: "track start: accepted" in text(browser, "msg"), 10.0, "track start",
               browser)
    d.wait_for(lambda s: s["auto_tracking"], 10.0, "auto tracking")


@needs_browser
def test_page_reconnects_after_a_daemon_restart(daemon, env, browser):
    path, offset, port = env
    d = daemon["d"]
    browser.get(f"{d.url}/")
    wait_until(lambda: text(browser, "conn") == "live", 15.0, "live link", browser)
    assert d.stop(signal.SIGTERM) == 0
    wait_until(lambda: text(browser, "conn") == "reconnecting…", 10.0, "link lost shown", browser)
    browser.save_screenshot(str(ARTIFACTS / "web-reconnecting.png"))
    d2 = DaemonProcess(path, time_offset_s=offset, port=port).wait_ready()
    daemon["d"] = d2
    wait_until(lambda: text(browser, "conn") == "live", 20.0, "live again", browser)
    st = d2.wait_for(lambda s: s["state"] == "tracking", 60.0, "tracking after restart")
    wait_until(lambda: text(browser, "state") == st["state"].upper(), 10.0, "state after restart",
               browser)
    assert float(text(browser, "sun-az")) == pytest.approx(d2.status()["sun"]["azimuth_deg"],
                                                           abs=0.02)
    # the restart's own events arrive in the log
    engine_started = [e["id"] for e in httpx.get(f"{d2.url}/api/v1/events", timeout=5).json()
                      if "engine started" in e["message"]]
    from selenium.webdriver.common.by import By

    wait_until(lambda: str(engine_started[-1]) in
               [r.get_attribute("data-id") for r in browser.find_elements(By.CSS_SELECTOR, "#events tr")],
               10.0, "the new engine-started event", browser)


@needs_browser
def test_phone_layout(daemon, browser):
    d = daemon["d"]
    browser.set_window_size(412, 915)
    try:
        browser.get(f"{d.url}/")
        wait_until(lambda: text(browser, "conn") == "live", 15.0, "live link", browser)
        time.sleep(1.5)
        # nothing wider than the screen: no sideways scrolling on a phone
        width = browser.execute_script("return document.documentElement.scrollWidth")
        inner = browser.execute_script("return window.innerWidth")
        assert width <= inner
        browser.save_screenshot(str(ARTIFACTS / "web-phone.png"))
    finally:
        browser.set_window_size(1600, 1000)
