"""Bad input, property-tested with hypothesis.

* config files: random mutations of the presets (wrong types, out-of-range numbers,
  NaN/inf, unknown keys, missing sections, garbage bytes, non-UTF-8) give a
  ``ConfigError`` naming the file and the key, never another exception; mutations
  that stay inside the rules load;
* CLI arguments (click's CliRunner on the real commands): bad values end with exit
  status 2 and a message naming the option, never a traceback, and never reach the
  daemon;
* API payloads: random JSON to every command endpoint of the real app (engine,
  simulated drives, SQLite log in process): never a 5xx, a 4xx with a specific
  detail, nothing moves, the refusal is audited; plus the same over real HTTP;
* garbled Modbus (real TCP proxy in front of the simulator's server) and serial
  frames (the simulator's pty device): the driver reports GARBLED_FRAME/TIMEOUT,
  never raises, nothing moves.
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
import time
import tomllib
from pathlib import Path

import httpx
import hypothesis
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from tests.support import ROOT
from tests.support.daemon import DaemonProcess, free_port, make_config
from tests.support.toml_dump import dump_toml, toml_str, toml_value  # noqa: F401
from tracker import config
from tracker.cli.main import main as cli_main
from tracker.errors import ConfigError

PRESETS = ["sim", "cast", "babyiaxo", "iaxo", "sim-modbus"]
_PRESET_DATA = {p: tomllib.loads((ROOT / "config" / f"{p}.toml").read_text()) for p in PRESETS}
def _fast(n: int) -> hypothesis.settings:
    return hypothesis.settings(max_examples=n, deadline=None,
                               suppress_health_check=[HealthCheck.too_slow],
                               phases=[p for p in hypothesis.Phase if p.name != "explain"])


def _leaves(data: dict, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a config mapping (sections, list items and values)."""
    out = []
    for key, value in data.items():
        path = (*prefix, key)
        out.append(path)
        if isinstance(value, dict):
            out += _leaves(value, path)
        elif isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
            for i, item in enumerate(value):
                out += _leaves(item, (*path, i))
    return out


def _set(data: dict, path: tuple, value: object) -> None:
    node: object = data
    for part in path[:-1]:
        node = node[part]  # type: ignore[index]
    node[path[-1]] = value  # type: ignore[index]


def _get(data: dict, path: tuple) -> object:
    node: object = data
    for part in path:
        node = node[part]  # type: ignore[index]
    return node


def _fresh(preset: str) -> dict:
    data = json.loads(json.dumps(_PRESET_DATA[preset]))
    if "modbus" in data.get("drives", {}):
        data["drives"]["modbus"]["register_map"] = str(ROOT / "config" / "modbus_map.toml")
    return data


def _write(data: dict) -> tuple[tempfile.TemporaryDirectory, Path]:
    tmp = tempfile.TemporaryDirectory(prefix="h9-config-")
    path = Path(tmp.name) / "mutated.toml"
    path.write_text(dump_toml(data))
    return tmp, path


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_numbers = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300, 0.0, -0.0, -1.0, 1e9]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**63), 2**63 - 1),
)
_wrong_types = st.one_of(
    _text, st.booleans(), st.lists(st.integers(-5, 5), max_size=3),
    st.dictionaries(st.sampled_from(["a", "x_deg", "name"]), st.integers(), max_size=2),
)


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _check_config_error(exc: ConfigError, path: Path, mutated: tuple) -> None:
    text = str(exc)
    assert str(path) in text, text
    assert exc.path == str(path)
    assert exc.key is not None, text
    if exc.key:
        assert exc.key in text, text
    # The blamed key is the mutated one, a section holding it, or (cross-field rules such as
    # "park must lie inside the envelope") a key whose rule the mutation broke; the message
    # then names both.
    m = _dotted(mutated)
    related = m.startswith(exc.key) or exc.key.startswith(m)
    if not related:
        assert exc.key in ("", "drives.modbus.register_map") or exc.key.startswith("positions"), \
            (m, exc.key, text)


@pytest.mark.parametrize("preset", PRESETS)
@_fast(60)
@given(data=st.data())
def test_config_mutations_give_config_error_naming_file_and_key(preset, data):
    cfg = _fresh(preset)
    paths = _leaves(cfg)
    mutated = data.draw(st.sampled_from(paths), label="key")
    old = _get(cfg, mutated)
    kind = data.draw(st.sampled_from(["number", "wrong_type", "delete", "unknown_key"]),
                     label="mutation")
    if kind == "number":
        new = data.draw(_numbers, label="value")
    elif kind == "wrong_type":
        new = data.draw(_wrong_types.filter(lambda v: _type_name(v) != _type_name(old)),
                        label="value")
    if kind == "delete":
        parent = _get(cfg, mutated[:-1]) if len(mutated) > 1 else cfg
        del parent[mutated[-1]]  # type: ignore[union-attr]
    elif kind == "unknown_key":
        section = mutated if isinstance(old, dict) else mutated[:-1]
        target = _get(cfg, section) if section else cfg
        assert isinstance(target, dict)
        name = data.draw(st.from_regex(r"\A[a-z][a-z_]{0,10}\Z").filter(
            lambda k: k not in target), label="unknown")
        target[name] = 1.0
        mutated = (*section, name)
    else:
        _set(cfg, mutated, new)
    tmp, path = _write(cfg)
    with tmp:
        try:
            settings = config.load(path)
        except ConfigError as exc:
            _check_config_error(exc, path, mutated)
            if kind == "unknown_key":
                assert "Extra inputs are not permitted" in str(exc), str(exc)
            if kind == "number" and isinstance(new, float) and not math.isfinite(new) \
                    and not isinstance(old, dict | list | str | bool):
                assert any(rule in str(exc) for rule in (
                    "finite", "less than", "greater than", "Input should be")), str(exc)
            return
        # Loaded: only a mutation the rules allow.
        assert kind in ("number", "wrong_type", "delete"), (kind, mutated)
        if kind == "number" and isinstance(new, float):
            assert math.isfinite(new) or isinstance(old, str), (mutated, new)
        assert isinstance(settings, config.Settings)


_REQUIRED = ["site", "envelope", "axes", "positions"]


@pytest.mark.parametrize("section", _REQUIRED)
def test_missing_required_section_names_it(tmp_path, section):
    cfg = _fresh("sim")
    del cfg[section]
    path = tmp_path / "missing.toml"
    path.write_text(dump_toml(cfg))
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert err.value.key == section
    assert f"{path}: {section}: Field required" in str(err.value)


_VALID_VALUES = {
    # >= 2 Hz: the presets' drives.watchdog_s of 1 s must span two control periods
    ("tracking", "control_rate_hz"): st.floats(2.0, 100.0),
    ("tracking", "on_sun_tolerance_arcsec"): st.floats(0.01, 3600.0),
    ("site", "latitude_deg"): st.floats(-90.0, 90.0),
    ("site", "height_m"): st.floats(-500.0, 9000.0),
    ("weather", "calm_s"): st.floats(0.0, 86400.0),
    ("api", "port"): st.integers(1, 65535),
    ("api", "host"): st.sampled_from(["127.0.0.1", "::1", "localhost", "127.0.0.53"]),
    ("simulator", "wind_seed"): st.integers(-(2**31), 2**31),
}


@_fast(60)
@given(preset=st.sampled_from(PRESETS), data=st.data())
def test_valid_mutations_load(preset, data):
    cfg = _fresh(preset)
    key = data.draw(st.sampled_from(sorted(_VALID_VALUES)), label="key")
    value = data.draw(_VALID_VALUES[key], label="value")
    cfg.setdefault(key[0], {})[key[1]] = value
    drop = data.draw(st.sets(st.sampled_from(["weather", "store", "pointing", "simulator"])),
                     label="dropped optional sections")
    for name in drop - {key[0]}:
        cfg.pop(name, None)
    tmp, path = _write(cfg)
    with tmp:
        settings = config.load(path)
    assert getattr(getattr(settings, key[0]), key[1]) == value
    if "weather" in drop - {key[0]}:
        assert settings.weather == config.Weather()


@_fast(80)
@given(st.binary(max_size=300))
def test_garbage_bytes_are_config_errors(blob):
    tmp = tempfile.TemporaryDirectory(prefix="h9-garbage-")
    with tmp:
        path = Path(tmp.name) / "garbage.toml"
        path.write_bytes(blob)
        with pytest.raises(ConfigError) as err:
            config.load(path)
        assert str(path) in str(err.value)
        assert err.value.path == str(path)


@_fast(40)
@given(preset=st.sampled_from(PRESETS), where=st.floats(0.0, 1.0),
       bad=st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80\x80", b"\xfe\xff"]))
def test_non_utf8_is_a_config_error(preset, where, bad):
    raw = (ROOT / "config" / f"{preset}.toml").read_bytes()
    i = int(where * len(raw))
    tmp = tempfile.TemporaryDirectory(prefix="h9-utf8-")
    with tmp:
        path = Path(tmp.name) / "bad.toml"
        path.write_bytes(raw[:i] + bad + raw[i:])
        with pytest.raises(ConfigError) as err:
            config.load(path)
        assert str(path) in str(err.value) and "not valid TOML" in str(err.value)


def test_unreadable_and_directory_config(tmp_path):
    for target in (tmp_path / "absent.toml", tmp_path):
        with pytest.raises(ConfigError) as err:
            config.load(target)
        assert str(target) in str(err.value) and "cannot read config file" in str(err.value)


# ----------------------------------------------------------------------------- CLI arguments
@pytest.fixture(scope="module")
def cli_env(tmp_path_factory) -> tuple[Path, str]:
    """A config whose token file exists, and the URL of a port nobody listens on.

    A command whose arguments are valid gets as far as the HTTP request and ends with
    exit status 4 (daemon unreachable); one with a bad argument must end with 2 before.
    """
    tmp = tmp_path_factory.mktemp("cli")
    path, _ = make_config(tmp, window=False)
    token = tmp / "token"
    token.write_text("cli-fuzz-token\n")
    token.chmod(0o600)
    return path, f"http://127.0.0.1:{free_port()}"


def _run(args: list[str]):
    result = CliRunner().invoke(cli_main, args)
    out = result.output + (result.stderr if hasattr(result, "stderr") else "")
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        (args, repr(result.exception), out)
    assert "Traceback" not in out, (args, out)
    return result, out


def _finite_float(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


_arg_text = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
            max_size=15),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e999", "", " ", "--", "-1", "1,5", "0x10",
                     "12deg", "1e-400", "١٢"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@_fast(40)
@given(az=_arg_text, el=_arg_text)
def test_cli_goto_bad_numbers_exit_2(cli_env, az, el):
    path, url = cli_env
    result, out = _run(["goto", "--config", str(path), "--url", url, f"--az={az}", f"--el={el}"])
    if _finite_float(az) and _finite_float(el):
        assert result.exit_code == 4, out    # valid: went as far as the (absent) daemon
        assert "cannot reach the tracker daemon" in out
    else:
        assert result.exit_code == 2, out
        bad = [name for name, v in (("--az", az), ("--el", el)) if not _finite_float(v)]
        assert any(f"Invalid value for '{b}'" in out for b in bad), out


@_fast(40)
@given(axis=st.one_of(st.sampled_from(["az", "el"]), _arg_text), rate=_arg_text,
       seconds=_arg_text)
def test_cli_jog_bad_arguments_exit_2(cli_env, axis, rate, seconds):
    path, url = cli_env
    result, out = _run(["jog", "--config", str(path), "--url", url, f"--axis={axis}",
                        f"--rate={rate}", f"--seconds={seconds}"])
    valid = (axis in ("az", "el") and _finite_float(rate) and _finite_float(seconds)
             and float(seconds) > 0)
    if valid:
        assert result.exit_code == 4, out
    else:
        assert result.exit_code == 2, out
        assert "Invalid value for '--" in out, out


@_fast(30)
@given(start=_arg_text, days=st.one_of(_arg_text, st.just("1")))
def test_cli_plan_bad_start_or_days_exit_2(start, days):
    hypothesis.assume(not (_valid_iso(start) and _finite_float(days)
                           and 0 < float(days) <= 3660))
    result, out = _run(["plan", f"--start={start}", f"--days={days}"])
    assert result.exit_code == 2, out
    assert "--start" in out or "--days" in out, out


def _valid_iso(text: str) -> bool:
    from datetime import datetime

    try:
        datetime.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


@_fast(25)
@given(start=_arg_text, hours=_arg_text)
def test_cli_dry_run_bad_start_or_hours_exit_2(start, hours):
    hypothesis.assume(not (_valid_iso(start) and _finite_float(hours) and float(hours) > 0))
    result, out = _run(["dry-run", f"--start={start}", f"--hours={hours}", "--no-progress"])
    assert result.exit_code == 2, out
    assert out.strip(), "no message"


@_fast(25)
@given(start=_arg_text, end=_arg_text)
def test_cli_exposure_bad_range_exit_2(cli_env, start, end):
    path, _ = cli_env
    db = path.parent / "empty-log.sqlite"
    result, out = _run(["exposure", "--db", str(db), f"--from={start}", f"--to={end}"])
    assert result.exit_code == 2, out
    assert out.strip().startswith(("error:", "Usage:")), out


@_fast(25)
@given(times=st.lists(_arg_text.filter(lambda t: not _valid_iso(t)), min_size=1, max_size=3))
def test_cli_sun_bad_times_exit_2(times):
    args = ["sun", "--lat", "46.2", "--lon", "6.1"]
    for t in times:
        args.append(f"--time={t}")
    result, out = _run(args)
    assert result.exit_code == 2, out
    assert "error:" in out or "Invalid value" in out, out


@_fast(20)
@given(blob=st.binary(max_size=200))
def test_cli_config_check_garbage_exit_2(blob):
    tmp = tempfile.TemporaryDirectory(prefix="h9-check-")
    with tmp:
        path = Path(tmp.name) / "bad.toml"
        path.write_bytes(blob)
        result, out = _run(["config", "check", str(path)])
        assert result.exit_code == 2, out
        assert out.startswith("error: ") and str(path) in out, out


# ----------------------------------------------------------------------------- API payloads
COMMANDS = ["goto", "jog", "track", "stop", "park", "unpark", "stow", "reset"]
TOKEN = "fuzz-token-0123456789"

_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20),
                       st.floats(allow_nan=True, allow_infinity=True), _text)
_json = st.recursive(_json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)), max_leaves=10)
_field_value = st.one_of(
    _json_leaf, st.sampled_from([-1e6, 1e6, 721.0, -91.0, 91.0, 0.0, -0.0, 3601.0, "az", "el",
                                 "main", "", "NaN", True, False]),
    st.lists(st.integers(), max_size=2), st.dictionaries(_text, st.integers(), max_size=1))
_FIELDS = ["az_deg", "el_deg", "boresight", "axes", "axis", "rate_deg_s", "seconds", "on"]
_structured = st.dictionaries(st.one_of(st.sampled_from(_FIELDS), _text), _field_value,
                              max_size=5)


def _encode(body: object) -> bytes:
    return json.dumps(body, allow_nan=True).encode()


_raw_body = st.one_of(
    _json.map(_encode), _structured.map(_encode),
    st.binary(max_size=60),
    st.sampled_from([b"", b"{", b"null", b"[]", b'{"az_deg": NaN, "el_deg": 10}',
                     b'{"az_deg": Infinity, "el_deg": 10}', b'{"on": "yes"}',
                     b'{"axis": "az", "rate_deg_s": 1e400, "seconds": 1}',
                     b"\xff\xfe{}", '{"boresight": "\u00e9\u0000"}'.encode()]),
)


_angle = st.one_of(st.floats(-30.0, 30.0), st.floats(-400.0, 400.0), st.floats(-1000.0, 1000.0),
                   st.sampled_from([-720.0, 720.0, 90.0, -90.0, 25.0, -25.0, 270.0]))
_TYPED = {
    "goto": st.fixed_dictionaries(
        {"az_deg": _angle, "el_deg": _angle},
        optional={"boresight": st.one_of(st.none(), st.sampled_from(["main", "rear", "x"])),
                  "axes": st.booleans()}),
    "jog": st.fixed_dictionaries(
        {"axis": st.sampled_from(["az", "el", "azimuth", "x"]),
         "rate_deg_s": st.one_of(st.floats(-5.0, 5.0), st.floats(-150.0, 150.0)),
         "seconds": st.one_of(st.floats(-1.0, 100.0), st.floats(-10.0, 5000.0))}),
    "track": st.fixed_dictionaries({"on": st.one_of(st.booleans(), _json_leaf)}),
}


@pytest.fixture
async def app_engine(tmp_path):
    """The real app, engine, simulated drives and SQLite log, in process (no control loop
    runs, so the engine's task and state are exactly what the commands left)."""
    from simulator.mount import SimMount
    from tracker.clock import SystemClock
    from tracker.log.store import TrackingStore
    from tracker.loop.engine import Engine
    from tracker.service.api import create_app
    from tracker.service.compose import make_axes
    from tracker.service.daemon import Daemon

    path, _ = make_config(tmp_path, window=False)
    settings = config.load(path)
    clock = SystemClock()
    mount = SimMount(settings)
    engine = Engine(settings, make_axes(settings, clock=clock, mount=mount),
                    TrackingStore(tmp_path / "log.sqlite", clock=clock), clock)
    await engine.start()
    daemon = Daemon(settings, engine, clock, token=TOKEN)
    daemon._refresh_snapshot()
    yield create_app(daemon), engine, mount
    await engine.shutdown()


def _motion(engine, mount) -> tuple:
    """Everything that would make the mount move: state, task, automatic tracking and the
    drives' own demands."""
    return (str(engine.state), engine.task, engine.auto_tracking,
            tuple((a.enabled, a._v_demand, a._mode, a._target_deg) for a in mount.axes.values()))


_counter = iter(range(1, 10**9))


@pytest.mark.slow
@hypothesis.settings(max_examples=150, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(COMMANDS + ["goto", "jog"] * 3), data=st.data(),
       content_type=st.sampled_from(["application/json", "application/json", "text/plain",
                                     None]))
async def test_api_random_payloads_never_500_and_refusals_move_nothing(
        app_engine, command, data, content_type):
    app, engine, mount = app_engine
    typed = _TYPED[command].map(_encode) if command in _TYPED else _raw_body
    body = data.draw(st.one_of(_raw_body, typed), label="body")
    n = next(_counter)
    # A fresh client address per example: refusals before the engine are audited at most
    # once per source per 10 s, and every example must leave its own audit record.
    host = f"127.1.{n // 250}.{n % 250 + 1}"
    transport = httpx.ASGITransport(app=app, client=(host, 40000))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if content_type:
        headers["Content-Type"] = content_type
    before = _motion(engine, mount)
    last_id = max([e["id"] for e in engine.events(limit=1)] or [0])
    async with httpx.AsyncClient(transport=transport, base_url="http://tracker") as c:
        r = await c.post(f"/api/v1/{command}", content=body, headers=headers)
    assert r.status_code < 500, (command, body, r.text)
    hypothesis.event(f"{command} -> {r.status_code}")
    audits = [e for e in engine.events(limit=50, after_id=last_id)
              if e["kind"] == "command" and e["source"] == f"api:{host}"]
    if r.status_code == 200:
        assert r.json()["command"] in (command, "set_auto_tracking")
        assert audits and audits[-1]["data"]["ok"] is True, audits
        return
    assert r.status_code in (409, 422), (r.status_code, r.text)
    detail = r.json()["detail"]
    assert detail, r.text
    if isinstance(detail, list):
        assert all(d["msg"] and d["loc"] for d in detail), detail
    assert _motion(engine, mount) == before, (command, body, r.text)
    assert len(audits) == 1, (command, body, r.text, audits)
    assert audits[0]["data"]["ok"] is False and "refused" in audits[0]["message"], audits


async def test_api_wrong_token_with_bad_body_is_401_and_moves_nothing(app_engine):
    app, engine, mount = app_engine
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    before = _motion(engine, mount)
    async with httpx.AsyncClient(transport=transport, base_url="http://tracker") as c:
        for command in COMMANDS:
            for headers in ({}, {"Authorization": "Bearer nope"},
                            {"Authorization": f"Basic {TOKEN}"},
                            {"Authorization": f"Bearer {TOKEN}x"}):
                r = await c.post(f"/api/v1/{command}", content=b'{"az_deg": NaN}',
                                 headers={**headers, "Content-Type": "application/json"})
                assert r.status_code == 401, (command, headers, r.text)
                assert "token" in r.json()["detail"]
    assert _motion(engine, mount) == before


_REAL_HTTP_BODIES = [
    ("goto", b'{"az_deg": NaN, "el_deg": 10}', "application/json"),
    ("goto", b'{"az_deg": 1e999, "el_deg": 10}', "application/json"),
    ("goto", b'{"az_deg": 10, "el_deg": 80}', "application/json"),          # outside envelope
    ("goto", b'{"az_deg": 10, "el_deg": 10, "boresight": "nope"}', "application/json"),
    ("goto", b'{"az_deg": 10, "el_deg": 10, "extra": 1}', "application/json"),
    ("jog", b'{"axis": "az", "rate_deg_s": 50, "seconds": 1}', "application/json"),  # too fast
    ("jog", b'{"axis": "roll", "rate_deg_s": 0.1, "seconds": 1}', "application/json"),
    ("jog", b'{"axis": "el", "rate_deg_s": 0.1, "seconds": 1e9}', "application/json"),
    ("track", b'{"on": "maybe"}', "application/json"),
    ("track", b"\xff\xfe\x00{", "application/json"),
    ("goto", b"[" * 50_000 + b"]" * 50_000, "application/json"),          # deep nesting
    ("goto", b'{"az_deg": 10, "el_deg": 10}', "text/plain"),
    ("jog", b'{"axis": "az", "rate_deg_s": ' + b"9" * 5000 + b', "seconds": 1}',
     "application/json"),
]


@pytest.mark.slow
@pytest.mark.network
def test_bad_payloads_over_real_http_are_4xx_audited_and_move_nothing(tmp_path):
    # No automatic tracking: the mount stays where it is unless a command moves it.
    path, _ = make_config(tmp_path, window=False, tracking={"auto_track": False})
    d = DaemonProcess(path).wait_ready()
    try:
        # Wait until the mount stands still (start-up: it may first go where it belongs).
        st0 = d.wait_for(lambda s: not any(a["moving"] for a in s["axes"].values()), 60.0,
                         "the mount at rest")
        time.sleep(1.0)
        before = d.status()
        assert before["state"] == st0["state"], (st0["state"], before["state"])
        url = f"{d.url}/api/v1"
        headers = {"Authorization": f"Bearer {d.token}"}
        last = max([e["id"] for e in httpx.get(f"{url}/events", params={"limit": 1}).json()]
                   or [0])
        with httpx.Client(timeout=10.0) as c:
            codes = []
            for command, body, ctype in _REAL_HTTP_BODIES:
                r = c.post(f"{url}/{command}", content=body,
                           headers={**headers, "Content-Type": ctype})
                codes.append(r.status_code)
                if len(body) > d.settings.api.max_body_bytes:
                    # Refused at the edge before the body is read (tracker.service.limits).
                    assert r.status_code == 413, (command, body[:60], r.status_code)
                    continue
                assert r.status_code == 422, (command, body[:60], r.status_code, r.text[:300])
                detail = r.json()["detail"]
                assert detail and "internal error" not in str(detail), r.text
        after = d.status()
        assert after["state"] == before["state"]
        assert after["auto_tracking"] == before["auto_tracking"]
        for axis in ("azimuth", "elevation"):
            assert after["axes"][axis]["position_deg"] == pytest.approx(
                before["axes"][axis]["position_deg"], abs=1e-3)
            assert not after["axes"][axis]["moving"]
        events = httpx.get(f"{url}/events", params={"limit": 1000, "after_id": last}).json()
        refused = [e for e in events if e["kind"] == "command" and not e["data"]["ok"]]
        # The engine's refusals (envelope, speed, boresight, duration) are all audited; the
        # malformed ones once per 10 s per source.
        assert len(refused) >= 4, [e["message"] for e in refused]
        assert all(e["source"] == "api:127.0.0.1" for e in refused)
        messages = " | ".join(e["message"] for e in refused)
        assert "invalid request" in messages and "elevation" in messages, messages
        assert d.stop() == 0, d.output()
        assert "Traceback" not in d.output(), d.output()[-3000:]
    finally:
        d.kill()


# ----------------------------------------------------------------------------- garbled frames
_ALLOWED_STALE = {"garbled_frame", "timeout", "link_down", "protocol_exception"}


class ManglingProxy:
    """A real TCP proxy between the Modbus driver and the simulator's Modbus TCP server that
    mangles the server's replies one by one, as ``plan`` says (then passes them through)."""

    def __init__(self, upstream_port: int, plan: list[tuple]) -> None:
        self.upstream_port = upstream_port
        self.plan = list(plan)
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self._tasks: set[asyncio.Task] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> ManglingProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def _mangle(self, data: bytes) -> bytes:
        if not self.plan:
            return data
        op, *args = self.plan.pop(0)
        if op == "random":
            return args[0]
        if op == "truncate":
            return data[: args[0] % max(1, len(data))]
        if op == "flip":            # a header byte: MBAP (0..6) or the function code (7)
            i = args[0] % min(8, len(data))
            return data[:i] + bytes([data[i] ^ (args[1] or 1)]) + data[i + 1:]
        if op == "append":
            return data + args[0]
        if op == "drop":
            return b""
        if op == "twice":
            return data + data
        return data

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers += [writer, up_w]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, mangle) -> None:
            try:
                while data := await src.read(4096):
                    out = mangle(data)
                    if out:
                        dst.write(out)
                        await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        tasks = [asyncio.create_task(pump(reader, up_w, lambda d: d)),
                 asyncio.create_task(pump(up_r, writer, self._mangle))]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self) -> None:
        for w in self._writers:
            w.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


_mutation = st.one_of(
    st.tuples(st.just("random"), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("truncate"), st.integers(0, 40)),
    st.tuples(st.just("flip"), st.integers(0, 7), st.integers(1, 255)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=20)),
    st.tuples(st.just("drop")),
    st.tuples(st.just("twice")),
    st.tuples(st.just("pass")),
)


async def _modbus_scenario(plan: list[tuple]) -> list[str]:
    from drivers.modbus import make_modbus_axes
    from simulator.modbus_server import start_modbus_tcp_server
    from simulator.mount import SimMount
    from tracker.clock import SimClock

    settings = config.load(ROOT / "config" / "sim-modbus.toml")
    md = settings.drives.modbus.model_copy(update={"timeout_s": 0.15})
    settings = settings.model_copy(update={"drives": settings.drives.model_copy(
        update={"modbus": md})})
    mount = SimMount(settings)
    handle, port = await start_modbus_tcp_server(mount)
    proxy = await ManglingProxy(port, []).start()
    clock = SimClock(1.8e9)
    az = make_modbus_axes(settings, clock.now_s, port=proxy.port)["azimuth"]
    truth = mount.azimuth.true_position_deg
    seen = []
    try:
        await az.connect()
        first = await az.read()
        assert first.ok, first
        proxy.plan = list(plan)
        for i in range(len(plan)):
            # Reads and heartbeats (a write) under the mangled replies: never an exception.
            st_ = await az.read() if i % 2 == 0 else None
            if st_ is not None:
                seen.append(st_.condition.value)
                assert st_.ok or st_.condition.value in _ALLOWED_STALE, st_
                if st_.ok:
                    # Whatever was received and accepted is what the drive has.
                    assert st_.position_deg == pytest.approx(first.position_deg, abs=1e-6)
                else:  # a stale reading, or a fresh one that reports the lost heartbeat
                    assert not st_.fresh or st_.fault_text.startswith("last command failed")
            else:
                await az.heartbeat()
        # Back to normal: the driver recovers by itself (reconnecting if it had to).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while True:
            st_ = await az.read()
            if st_.ok and st_.fresh:
                break
            assert st_.condition.value in _ALLOWED_STALE, st_
            assert loop.time() < deadline, f"no recovery: {st_}"
            await asyncio.sleep(0.05)
        assert st_.position_deg == pytest.approx(first.position_deg, abs=1e-6)
        # Nothing moved: the drive was never enabled or given a demand.
        assert mount.azimuth.true_position_deg == truth
        assert not mount.azimuth.enabled and mount.azimuth._v_demand == 0.0
    finally:
        await az.close()
        await proxy.stop()
        await handle.stop()
    return seen


@pytest.mark.slow
@pytest.mark.network
@_fast(12)
@given(plan=st.lists(_mutation, min_size=1, max_size=6))
def test_garbled_modbus_replies_are_reported_never_raised_and_move_nothing(plan):
    seen = asyncio.run(_modbus_scenario(plan))
    hypothesis.event(" ".join(sorted(set(seen))) or "no reads")


@pytest.mark.network
def test_modbus_mangled_reply_kinds_map_to_conditions():
    """Fixed cases: a reply with a bad MBAP protocol id is GARBLED_FRAME at once; a reply
    that never comes, or comes truncated, is TIMEOUT."""
    assert asyncio.run(_modbus_scenario([("flip", 2, 0xFF)]))[0] == "garbled_frame"
    assert asyncio.run(_modbus_scenario([("drop",)]))[0] == "timeout"
    assert asyncio.run(_modbus_scenario([("truncate", 5)]))[0] == "timeout"


async def _serial_scenario(blobs: list[bytes]) -> list[str]:
    from drivers.serial import make_serial_axes
    from simulator.mount import SimMount
    from simulator.serial_device import start_pty_server
    from tracker.clock import SimClock

    settings = config.load(ROOT / "config" / "sim.toml")
    mount = SimMount(settings)
    server = start_pty_server(mount)
    serial_cfg = settings.drives.serial.model_copy(update={"port": server.path,
                                                           "timeout_s": 0.08})
    settings = settings.model_copy(update={"drives": settings.drives.model_copy(
        update={"serial": serial_cfg})})
    axes = make_serial_axes(settings, SimClock(1.79e9), backoff_min_s=0.02, backoff_max_s=0.1)
    az = axes["azimuth"]
    truth = mount.azimuth.true_position_deg
    seen = []
    try:
        for ax in axes.values():
            await ax.connect()
        first = await az.read()
        assert first.ok
        for blob in blobs:
            server.send_garbage(blob)
            await asyncio.sleep(0)
            st_ = await az.read()
            seen.append(st_.condition.value)
            assert st_.ok or st_.condition.value in _ALLOWED_STALE, st_
            if st_.ok:
                assert st_.position_deg == pytest.approx(first.position_deg, abs=1e-6)
        await asyncio.sleep(0.2)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3.0
        while not (st_ := await az.read()).ok:
            assert loop.time() < deadline, st_
        assert st_.position_deg == pytest.approx(first.position_deg, abs=1e-6)
        assert mount.azimuth.true_position_deg == truth
        assert not mount.azimuth.enabled and mount.azimuth._v_demand == 0.0
    finally:
        for ax in axes.values():
            await ax.close()
        server.stop()
    return seen


def _bad_crc(frame: bytes) -> bytes:
    i = frame.index(b"*") + 1
    cc = frame[i:i + 2]
    wrong = b"00" if cc != b"00" else b"FF"
    return frame[:i] + wrong + frame[i + 2:]


_serial_blob = st.one_of(
    st.binary(min_size=1, max_size=60),
    st.lists(st.sampled_from(["OK", "ER", "A", "E", "+1.0", "-", "N", "0", "CK", "RD"]),
             min_size=1, max_size=6).map(lambda w: sp_encode(1, w)),
    st.lists(st.sampled_from(["OK", "A", "+1.5", "0"]), min_size=1, max_size=4).map(
        lambda w: _bad_crc(sp_encode(1, w))),
    st.tuples(st.binary(max_size=10), st.integers(1, 20)).map(
        lambda t: sp_encode(2, ["OK", "A"])[: t[1]] + t[0]),       # truncated frames
)


def sp_encode(seq: int, words: list[str]) -> bytes:
    from drivers import serial_protocol as sp

    return sp.encode_frame(seq, words)


@pytest.mark.slow
@pytest.mark.network
@_fast(12)
@given(blobs=st.lists(_serial_blob, min_size=1, max_size=8))
def test_garbled_serial_frames_are_reported_never_raised_and_move_nothing(blobs):
    seen = asyncio.run(_serial_scenario(blobs))
    hypothesis.event(" ".join(sorted(set(seen))))


_site_number = st.one_of(_arg_text, st.floats(-400, 400).map(repr),
                        st.floats(-2000, 20000).map(repr))


@_fast(30)
@given(lat=_site_number, lon=_site_number, height=_site_number)
def test_cli_sun_bad_site_numbers_exit_2(lat, lon, height):
    valid = (_finite_float(lat) and -90 <= float(lat) <= 90 and _finite_float(lon)
             and -360 <= float(lon) <= 360 and _finite_float(height)
             and -1000 <= float(height) <= 10000)
    hypothesis.assume(not valid)
    result, out = _run(["sun", f"--lat={lat}", f"--lon={lon}", f"--height={height}",
                        "--time=2026-06-21T12:00:00Z"])
    assert result.exit_code == 2, out
    assert "error:" in out or "Invalid value" in out, out


_NUMBER_OPTIONS = [
    (["goto", "--el=1"], "--az"), (["goto", "--az=1"], "--el"),
    (["jog", "--axis=az", "--seconds=1"], "--rate"), (["jog", "--axis=az", "--rate=1"], "--seconds"),
    (["status"], "--timeout"), (["status", "--watch"], "--interval"),
    (["events", "--follow"], "--interval"),
    (["plan", "--start=2026-01-01"], "--days"),
    (["dry-run", "--start=2026-01-01T00:00:00Z"], "--hours"),
    (["dry-run", "--start=2026-01-01T00:00:00Z"], "--days"),
    (["exposure"], "--settle-s"),
    (["simulate"], "--time-offset-s"),
    (["daemon"], "--time-offset-s"),
    (["calibrate", "simulate", "--out=x.csv"], "--sun-step-s"),
    (["calibrate", "simulate", "--out=x.csv"], "--noise-arcsec"),
    (["calibrate", "fit", "m.csv", "--out=x.toml"], "--reject-sigma"),
]


@pytest.mark.parametrize(("args", "option"), _NUMBER_OPTIONS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "1e999"])
def test_cli_non_finite_numbers_are_usage_errors(cli_env, args, option, value):
    path, url = cli_env
    extra = ["--config", str(path), "--url", url] if args[0] in (
        "goto", "jog", "status", "events") else []
    result, out = _run([*args, *extra, f"{option}={value}"])
    assert result.exit_code == 2, out
    assert f"Invalid value for '{option}'" in out and "not a finite number" in out, out


@pytest.mark.parametrize("command", ["daemon", "simulate"])
@pytest.mark.parametrize("value", ["1e12", "-1e12", "3155760001", "-3.2e9"])
def test_time_offset_beyond_100_years_is_a_usage_error(command, value):
    """Issue 11: ``--time-offset-s 1e12`` ended in an OverflowError traceback."""
    result, out = _run([command, f"--time-offset-s={value}"])
    assert result.exit_code == 2, out
    assert "Invalid value for '--time-offset-s'" in out and "is not in the range" in out, out
    assert "-3155760000" in out and "Traceback" not in out, out


async def _modbus_rtu_scenario(plan: list[tuple]) -> list[str]:
    """Modbus RTU over the simulator's pty pair; the server-to-client pump of its bridge
    is replaced by one that mangles each reply (collected for 10 ms) as ``plan`` says."""
    import os

    from drivers.modbus import make_modbus_axes
    from simulator.modbus_server import start_modbus_rtu_server
    from simulator.mount import SimMount
    from tracker.clock import SimClock

    settings = config.load(ROOT / "config" / "sim-modbus.toml")
    md = settings.drives.modbus.model_copy(update={"transport": "rtu", "timeout_s": 0.15})
    settings = settings.model_copy(update={"drives": settings.drives.model_copy(
        update={"modbus": md})})
    mount = SimMount(settings)
    handle, path = await start_modbus_rtu_server(mount)
    bridge = handle._bridge
    loop = asyncio.get_running_loop()
    todo = []
    pending = bytearray()

    def flush() -> None:
        data = bytes(pending)
        pending.clear()
        if todo:
            op, *args = todo.pop(0)
            if op == "random":
                data = args[0]
            elif op == "truncate":
                data = data[: args[0] % max(1, len(data))]
            elif op == "flip":                   # any byte: the CRC must catch it
                i = (args[0] * 7 + args[1]) % len(data)
                data = data[:i] + bytes([data[i] ^ (args[1] or 1)]) + data[i + 1:]
            elif op == "badcrc":
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            elif op == "append":
                data = data + args[0]
            elif op == "drop":
                data = b""
            elif op == "twice":
                data = data + data
        if data:
            os.write(bridge.m_client, data)

    def pump() -> None:
        try:
            chunk = os.read(bridge.m_server, 4096)
        except OSError:
            return
        if not pending:
            loop.call_later(0.01, flush)
        pending.extend(chunk)

    loop.remove_reader(bridge.m_server)
    loop.add_reader(bridge.m_server, pump)
    clock = SimClock(1.8e9)
    az = make_modbus_axes(settings, clock.now_s, serial_port=path)["azimuth"]
    truth = mount.azimuth.true_position_deg
    seen = []
    try:
        await az.connect()
        first = await az.read()
        assert first.ok, first
        todo[:] = plan
        for _ in plan:
            st_ = await az.read()
            seen.append(st_.condition.value)
            assert st_.ok or st_.condition.value in _ALLOWED_STALE, st_
            if st_.ok:
                assert st_.position_deg == pytest.approx(first.position_deg, abs=1e-6)
        todo.clear()
        deadline = loop.time() + 5.0
        while not ((st_ := await az.read()).ok and st_.fresh):
            assert st_.condition.value in _ALLOWED_STALE, st_
            assert loop.time() < deadline, f"no recovery: {st_}"
            await asyncio.sleep(0.05)
        assert st_.position_deg == pytest.approx(first.position_deg, abs=1e-6)
        assert mount.azimuth.true_position_deg == truth
        assert not mount.azimuth.enabled and mount.azimuth._v_demand == 0.0
    finally:
        await az.close()
        await handle.stop()
    return seen


_rtu_mutation = st.one_of(_mutation, st.tuples(st.just("badcrc")))


@pytest.mark.slow
@pytest.mark.network
@_fast(10)
@given(plan=st.lists(_rtu_mutation, min_size=1, max_size=5))
def test_garbled_modbus_rtu_replies_are_reported_never_raised_and_move_nothing(plan):
    seen = asyncio.run(_modbus_rtu_scenario(plan))
    hypothesis.event(" ".join(sorted(set(seen))))


@pytest.mark.network
def test_modbus_rtu_bad_crc_and_flipped_bytes_are_garbled_frames():
    assert asyncio.run(_modbus_rtu_scenario([("badcrc",)])) == ["garbled_frame"]
    assert asyncio.run(_modbus_rtu_scenario([("flip", 3, 0x10)])) == ["garbled_frame"]
    assert asyncio.run(_modbus_rtu_scenario([("drop",)])) == ["timeout"]
