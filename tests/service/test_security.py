"""Access control and the audit trail; docs/security.md cites these tests.

* the API listens on loopback by default (config defaults, presets, the real socket);
* every command needs the bearer token, compared with ``hmac.compare_digest``;
* the token file must be private: the daemon refuses to start otherwise;
* every command, accepted or refused, is audited with its source and result (API and
  Alpaca), in the SQLite log;
* no shell is ever run, and no subprocess takes user input except ``tracker states
  --png``'s output path, passed as one argv element to graphviz ``dot``.
"""

from __future__ import annotations

import ast
import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tests.support import ROOT
from tests.support.daemon import TRACKER, DaemonProcess, free_port, make_config
from tracker import config
from tracker.errors import ConfigError
from tracker.service import auth

COMMANDS = ["goto", "jog", "track", "stop", "park", "unpark", "stow", "reset"]
_BODIES = {"goto": {"az_deg": 180.0, "el_deg": 10.0}, "track": {"on": False},
           "jog": {"axis": "az", "rate_deg_s": 0.5, "seconds": 2.0}}


# ----------------------------------------------------------------------------- loopback
def test_api_defaults_to_loopback_and_presets_keep_it():
    assert config.Api().host == "127.0.0.1"
    assert config.Api().alpaca_allow_remote is False
    for preset in ("sim", "sim-modbus", "cast", "babyiaxo", "iaxo"):
        s = config.load(ROOT / "config" / f"{preset}.toml")
        assert s.api.host in ("127.0.0.1", "::1", "localhost"), (preset, s.api.host)
        assert s.api.alpaca_allow_remote is False, preset


def _listening_addresses(port: int) -> list[str]:
    """Local addresses of the listening TCP sockets on ``port``, from /proc/net/tcp{,6}."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            addr_hex, port_hex = local.split(":")
            if int(port_hex, 16) == port and state == "0A":  # LISTEN
                found.append(addr_hex)
    return found


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    path, _ = make_config(tmp_path_factory.mktemp("security"), window=False,
                          tracking={"auto_track": False})
    d = DaemonProcess(path).wait_ready()
    yield d
    d.kill()


@pytest.mark.network
@pytest.mark.slow
def test_daemon_listens_on_loopback_only(daemon):
    addresses = _listening_addresses(daemon.port)
    assert addresses == ["0100007F"], addresses       # 127.0.0.1, little-endian hex


# ----------------------------------------------------------------------------- the token
@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_needs_the_token_and_moves_nothing(daemon, command):
    before = daemon.status()
    for headers in ({}, {"Authorization": "Bearer wrong"},
                    {"Authorization": f"Basic {daemon.token}"},
                    {"Authorization": f"Bearer {daemon.token[:-1]}"},
                    {"Authorization": f"Bearer {daemon.token}x"},
                    {"Authorization": daemon.token}):
        r = httpx.post(f"{daemon.url}/api/v1/{command}", json=_BODIES.get(command),
                       headers=headers, timeout=5)
        assert r.status_code == 401, (command, headers, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
    after = daemon.status()
    assert after["state"] == before["state"]
    for axis in ("azimuth", "elevation"):
        assert after["axes"][axis]["position_deg"] == pytest.approx(
            before["axes"][axis]["position_deg"], abs=1e-3)
        assert not after["axes"][axis]["moving"]


@pytest.mark.network
@pytest.mark.slow
def test_forwarded_headers_are_ignored_the_peer_address_counts(daemon):
    """``X-Forwarded-For`` cannot make a client look local or hide it in the audit."""
    spoof = {"X-Forwarded-For": "192.0.2.99", "X-Real-IP": "192.0.2.99",
             "Forwarded": "for=192.0.2.99"}
    last = max([e["id"] for e in httpx.get(f"{daemon.url}/api/v1/events",
                                           params={"limit": 1}, timeout=5).json()] or [0])
    # Peer 127.0.0.2 (another loopback address: its own audit rate limit).
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"),
                      timeout=5) as c:
        r = c.post(f"{daemon.url}/api/v1/stop", headers={**spoof, "Authorization": "Bearer x"})
        assert r.status_code == 401
        assert c.get(f"{daemon.url}/api/v1/status", headers=spoof).status_code == 200
    events = httpx.get(f"{daemon.url}/api/v1/events", params={"after_id": last, "limit": 100},
                       timeout=5).json()
    sources = {e["source"] for e in events if e["kind"] == "command"}
    assert sources == {"api:127.0.0.2"}, sources


def test_token_compared_with_hmac_compare_digest(monkeypatch):
    calls = []
    real = auth.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert auth.bearer_matches("Bearer s3cret", "s3cret") is True
    assert auth.bearer_matches("Bearer s3creT", "s3cret") is False
    assert calls == [(b"s3cret", b"s3cret"), (b"s3creT", b"s3cret")]


def test_no_other_token_comparison_in_the_source():
    """The token is only ever compared by ``auth.bearer_matches`` (no ``==`` on it)."""
    offenders = []
    for path in sorted((ROOT / "tracker").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(
                    isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                names = [ast.unparse(x) for x in (node.left, *node.comparators)]
                if any("token" in n.lower() for n in names):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: "
                                     f"{ast.unparse(node)}")
    assert offenders == []
    api_src = (ROOT / "tracker" / "service" / "api.py").read_text()
    assert "bearer_matches(" in api_src


# ----------------------------------------------------------------------------- token file
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o610, 0o601, 0o660, 0o644,
                                  0o666, 0o700 | 0o004])
def test_token_file_accessible_by_others_is_refused(tmp_path, mode):
    path = tmp_path / "token"
    auth.ensure_token(path)
    path.chmod(mode)
    with pytest.raises(ConfigError) as err:
        auth.ensure_token(path)
    assert f"{stat.S_IMODE(mode):04o}" in str(err.value) and "chmod 600" in str(err.value)


def test_token_file_created_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        token = auth.ensure_token(tmp_path / "dir" / "token")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "dir" / "token").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "dir").stat().st_mode) == 0o700
    assert len(token) >= 40                       # 32 random bytes, url-safe base64


def test_token_file_not_a_regular_file_or_empty_is_refused(tmp_path):
    (tmp_path / "dir").mkdir(mode=0o700)
    with pytest.raises(ConfigError, match="not a regular file"):
        auth.ensure_token(tmp_path / "dir")
    empty = tmp_path / "empty"
    empty.touch(mode=0o600)
    with pytest.raises(ConfigError, match="empty"):
        auth.ensure_token(empty)


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0,
                    reason="changing a file's owner needs root")
def test_token_file_of_another_user_is_refused(tmp_path):
    path = tmp_path / "token"
    auth.ensure_token(path)
    os.chown(path, 4242, 4242)
    with pytest.raises(ConfigError, match="belongs to uid 4242"):
        auth.ensure_token(path)


@pytest.mark.network
@pytest.mark.parametrize("mode", [0o640, 0o604])
def test_daemon_refuses_to_start_with_a_group_or_world_readable_token(tmp_path, mode):
    path, _ = make_config(tmp_path, window=False)
    token = tmp_path / "token"
    token.write_text("secret-secret-secret\n")
    token.chmod(mode)
    r = subprocess.run([TRACKER, "daemon", "--config", str(path), "--api-port",
                        str(free_port())], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert f"{mode:04o}" in r.stderr and "chmod 600" in r.stderr
    assert not (tmp_path / "tracker.sqlite").exists()     # refused before anything started


# ----------------------------------------------------------------------------- audit
@pytest.fixture
async def in_process(tmp_path):
    """The real app (Alpaca on), engine, simulated drives and SQLite log, in process."""
    from simulator.mount import SimMount
    from tracker.clock import SystemClock
    from tracker.log.store import TrackingStore
    from tracker.loop.engine import Engine
    from tracker.service.api import create_app
    from tracker.service.compose import make_axes
    from tracker.service.daemon import Daemon

    path, _ = make_config(tmp_path, window=False, tracking={"auto_track": False},
                          api={"alpaca_enabled": True, "alpaca_writes": True})
    settings = config.load(path)
    clock = SystemClock()
    mount = SimMount(settings)
    db = tmp_path / "audit.sqlite"
    engine = Engine(settings, make_axes(settings, clock=clock, mount=mount),
                    TrackingStore(db, clock=clock), clock)
    await engine.start()
    daemon = Daemon(settings, engine, clock, token="audit-token")
    daemon._refresh_snapshot()
    yield create_app(daemon), engine, db
    await engine.shutdown()


async def test_every_command_is_audited_with_source_and_result(in_process):
    app, engine, db = in_process
    auth_ok = {"Authorization": "Bearer audit-token"}

    def client(host: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(host, 5000)),
                                 base_url="http://tracker")

    async with client("127.0.0.1") as c:
        assert (await c.post("/api/v1/stop", headers=auth_ok)).status_code == 200
        r = await c.post("/api/v1/goto", json={"az_deg": 180.0, "el_deg": 80.0}, headers=auth_ok)
        assert r.status_code == 422                                   # outside the envelope
    async with client("127.0.0.2") as c:
        assert (await c.post("/api/v1/park", headers={"Authorization": "Bearer no"})
                ).status_code == 401
    async with client("127.0.0.3") as c:
        r = await c.post("/api/v1/jog", json={"axis": "az", "rate_deg_s": "fast",
                                              "seconds": 1}, headers=auth_ok)
        assert r.status_code == 422                                   # malformed
    async with client("127.0.0.4") as c:
        put = "/api/v1/telescope/0/"
        assert (await c.put(put + "connected", data={"Connected": "True"})).status_code == 200
        r = await c.put(put + "abortslew", data={"ClientTransactionID": "7"})
        assert r.status_code == 200 and r.json()["ErrorNumber"] == 0
        r = await c.put(put + "slewtoaltazasync", data={"Azimuth": "180", "Altitude": "80"})
        assert r.status_code == 200 and r.json()["ErrorNumber"] == 0x401   # invalid value
    async with client("127.0.0.5") as c:
        # Refused by the Alpaca layer itself, before the engine: audited too.
        r = await c.put("/api/v1/telescope/0/slewtoaltazasync",
                        data={"Azimuth": "400", "Altitude": "10"})
        assert r.status_code == 200 and r.json()["ErrorNumber"] == 0x401

    engine.store.flush()
    records = engine.store.audit_records(limit=100)
    got = [(r["source"], r["command"], r["ok"]) for r in records]
    assert ("api:127.0.0.1", "stop", True) in got
    assert ("api:127.0.0.1", "goto", False) in got
    assert ("api:127.0.0.2", "park", False) in got
    assert ("api:127.0.0.3", "jog", False) in got
    assert ("alpaca:127.0.0.4", "stop", True) in got
    assert ("alpaca:127.0.0.4", "goto", False) in got
    assert ("alpaca:127.0.0.5", "slewtoaltazasync", False) in got
    by_key = {(r["source"], r["command"], r["ok"]): r for r in records}
    assert "Azimuth 400" in by_key[("alpaca:127.0.0.5", "slewtoaltazasync", False)]["result"]
    assert "elevation" in by_key[("api:127.0.0.1", "goto", False)]["result"]
    assert by_key[("api:127.0.0.1", "goto", False)]["args"]["el_deg"] == 80.0
    assert "token" in by_key[("api:127.0.0.2", "park", False)]["result"]
    assert "rate_deg_s" in by_key[("api:127.0.0.3", "jog", False)]["result"]
    assert by_key[("api:127.0.0.1", "stop", True)]["result"] == "accepted"
    # The same records are in the SQLite file, readable by any SQLite client.
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT source, command, ok FROM audit").fetchall()
    assert ("alpaca:127.0.0.4", "goto", 0) in rows and ("api:127.0.0.1", "stop", 1) in rows


# ----------------------------------------------------------------------------- no shell
_SPAWN = {("subprocess", n) for n in ("run", "Popen", "call", "check_call", "check_output",
                                      "getoutput", "getstatusoutput")}
_SPAWN |= {("os", n) for n in ("system", "popen", "execv", "execve", "execvp", "execvpe",
                               "execl", "execle", "execlp", "execlpe", "spawnv", "spawnve",
                               "spawnvp", "spawnl", "posix_spawn", "posix_spawnp", "startfile")}
_SPAWN |= {("asyncio", "create_subprocess_shell"), ("asyncio", "create_subprocess_exec"),
           ("pty", "spawn")}

#: Every place the shipped code starts a process, and why it takes no user input.
ALLOWED = {
    ("tracker/cli/states.py", "subprocess.run"):
        "graphviz dot: argv [which('dot'), '-Tpng', '-o', <absolute output path>], no shell",
    ("benchmarks/drivers.py", "subprocess.Popen"):
        "benchmark starts `tracker simulate` with a fixed argv (sys.executable, constants)",
    ("benchmarks/store_durability.py", "subprocess.run"):
        "benchmark reads the previous store with `git show <fixed commit>:<fixed path>`",
    ("benchmarks/facility.py", "subprocess.Popen"):
        "benchmark starts `tracker opcua-server` with a fixed argv (its own config, port, URL)",
    ("benchmarks/startup.py", "subprocess.run"):
        "benchmark times a cold `tracker sun` import: [sys.executable, '-c', <constant code>]",
    ("benchmarks/simulator.py", "subprocess.run"):
        "benchmark reads the rigid simulator with `git show <fixed commit>:<fixed path>`",
    ("benchmarks/opcua.py", "subprocess.Popen"):
        "benchmark starts `tracker simulate --protocol opcua` with a fixed argv",
    ("benchmarks/dryrun.py", "subprocess.run"):
        "benchmark reruns itself under the interpreter its operator names (--python), with "
        "its own preset and day arguments; no shell",
}


def _spawn_calls() -> list[tuple[str, str, ast.Call]]:
    found = []
    for folder in ("tracker", "drivers", "simulator", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                        and isinstance(node.func.value, ast.Name) \
                        and (node.func.value.id, node.func.attr) in _SPAWN:
                    found.append((str(path.relative_to(ROOT)),
                                  f"{node.func.value.id}.{node.func.attr}", node))
            src = path.read_text()
            for banned in ("shell=True", "os.system(", "os.popen(", "from os import system",
                           "from subprocess import"):
                assert banned not in src, f"{path.relative_to(ROOT)} uses {banned}"
    return found


def test_no_shell_and_every_subprocess_is_known_with_a_fixed_argv():
    calls = _spawn_calls()
    assert {(f, name) for f, name, _ in calls} <= set(ALLOWED), calls
    for f, name, node in calls:
        argv = node.args[0] if node.args else None
        # argv is a list (never a command string for a shell) ...
        assert isinstance(argv, ast.List), f"{f}: {name} argv is not a list literal"
        kw = {k.arg: k.value for k in node.keywords}
        # ... and no shell is asked for.
        assert "shell" not in kw or (isinstance(kw["shell"], ast.Constant)
                                     and kw["shell"].value is False), f
    states = [n for f, _, n in calls if f == "tracker/cli/states.py"]
    assert len(states) == 1
    # the layout engine and dpi come from click.Choice / IntRange options, never free text
    assert [ast.unparse(x) for x in states[0].args[0].elts] == [
        "exe", "f'-K{engine}'", "f'-Gdpi={dpi}'", "'-Tpng'", "'-o'", "out"]


def test_states_png_runs_dot_with_a_fixed_argv(tmp_path, monkeypatch):
    """graphviz is not installed here: a stand-in ``dot`` on PATH records its argv and
    stdin (the real process is started, as it would be with graphviz)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.json"
    fake = bin_dir / "dot"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"data = sys.stdin.read()\n"
                    f"json.dump({{'argv': sys.argv, 'stdin': data}}, open({str(record)!r}, 'w'))\n"
                    f"open(sys.argv[sys.argv.index('-o') + 1], 'wb').write(b'PNG')\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    from tracker.cli.main import main

    evil = "-Tsvg; touch pwned $(touch pwned2).png"
    result = CliRunner().invoke(main, ["states", "--png", evil])
    assert result.exit_code == 0, result.output
    seen = json.loads(record.read_text())
    assert seen["argv"] == [str(fake), "-Kdot", "-Gdpi=110", "-Tpng", "-o", str(tmp_path / evil)]
    assert "digraph" in seen["stdin"]
    assert (tmp_path / evil).read_bytes() == b"PNG"
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()
    # dot failing is a clear error, not a traceback.
    fake.write_text("#!/bin/sh\nexit 3\n")
    result = CliRunner().invoke(main, ["states", "--png", "x.png"])
    assert result.exit_code == 1 and "graphviz 'dot' failed" in result.output
    assert "Traceback" not in result.output


async def test_remote_client_without_token_gets_only_the_openapi_document(in_process):
    """A client on another machine cannot exist in this sandbox: the ASGI transport
    presents the real app's requests as coming from 192.0.2.10 (TEST-NET-1)."""
    app, engine, _ = in_process
    before = (str(engine.state), engine.task, engine.auto_tracking)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://tracker") as c:
        assert (await c.get("/openapi.json")).status_code == 200
        for path in ("status", "plan", "events", "info", "stream", "sky"):
            assert (await c.get(f"/api/v1/{path}")).status_code == 401, path
        for command in COMMANDS:
            r = await c.post(f"/api/v1/{command}", json=_BODIES.get(command))
            assert r.status_code == 401, command
        assert (await c.get("/api/v1/telescope/0/connected")).status_code == 403
        assert (await c.put("/api/v1/telescope/0/abortslew")).status_code == 403
        assert (await c.get("/management/v1/configureddevices")).status_code == 403
    assert (str(engine.state), engine.task, engine.auto_tracking) == before


def test_every_test_docs_security_cites_exists():
    """docs/security.md backs each statement with a test: each cited test must exist."""
    import re

    text = (ROOT / "docs" / "security.md").read_text()
    cited = re.findall(r"`(?:(tests/test_\w+\.py)::)?(test_\w+)`", text)
    assert len(cited) >= 15
    for file, name in cited:
        files = [file] if file else ["tests/service/test_security.py", "tests/service/test_bad_input.py",
                                     "tests/service/test_limits.py"]
        assert any(re.search(rf"^(async )?def {name}\(", (ROOT / f).read_text(), re.M)
                   for f in files), (file, name)
