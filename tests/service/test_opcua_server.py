"""The OPC UA server (``tracker opcua-server``) against the real daemon on the simulator.

The server runs as its own process, the CLI command an operator starts; the tests use
a real asyncua client (its synchronous wrapper).  The daemon runs over Modbus TCP to a
``tracker simulate`` process (tests.facility_rig); "nothing moves" is checked on the
simulator's own axis record.  The order matters: tracking, commands, park, then a drive
fault (the module's last state).
"""

from __future__ import annotations

import subprocess
import threading
import time
import tomllib
from pathlib import Path

import httpx
import pytest

ua_mod = pytest.importorskip("asyncua")
from asyncua import ua  # noqa: E402
from asyncua.sync import Client  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.support.daemon import TRACKER, free_port  # noqa: E402
from tests.support.facility_rig import FacilityRig  # noqa: E402
from tests.support.toml_dump import dump_toml  # noqa: E402
from tracker.service import facility_model as fm  # noqa: E402
from tracker.service.opcua_server import NAMESPACE_URI, hash_password  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.network]

PASSWORD = "correct horse battery staple"
STILL_DEG = 1e-3
#: EUInformation.UnitId of UNECE codes, from the OPC Foundation's UNECE_to_OPCUA.csv
#: (OPC UA Part 8, 5.6.3): degree "DD", arcsecond "D62", metre per second "MTS", second "SEC".
UNIT_IDS = {"deg": 17476, "arcsec": 4470322, "m/s": 5067859, "s": 5457219}


class OpcUaProcess:
    def __init__(self, rig: FacilityRig, tmp: Path, config_path: Path | None = None) -> None:
        self.port = free_port()
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}/helio-tracker/"
        self.log_path = tmp / f"opcua-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [TRACKER, "opcua-server", "--config", str(config_path or rig.config_path),
             "--port", str(self.port), "--api-url", rig.d.url],
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while "tracker opcua-server: opc.tcp://" not in self.log_path.read_text():
            assert self.proc.poll() is None, self.log_path.read_text()
            assert time.monotonic() < deadline, self.log_path.read_text()
            time.sleep(0.1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("opcua")
    users = tmp / "users.toml"
    users.write_text(f'[users]\noperator = "{hash_password(PASSWORD)}"\n')
    users.chmod(0o600)
    r = FacilityRig(tmp, facility={"opcua_users_file": str(users)})
    server = OpcUaProcess(r, tmp)
    r.opcua = server
    yield r
    server.close()
    r.close()


def connect(client: Client) -> Client:
    """``client.connect()``; when it fails, stop the client's own thread loop (a non-daemon
    thread asyncua stops only in ``disconnect``, which would keep the test run from exiting)."""
    try:
        client.connect()
    except BaseException:
        if client.tloop.is_alive():
            client.tloop.stop()
        raise
    return client


class Session:
    """A connected client with the HelioTracker object and its namespace index."""

    def __init__(self, endpoint: str, user: str | None = None, password: str | None = None):
        self.client = Client(endpoint)
        if user is not None:
            self.client.set_user(user)
            self.client.set_password(password or "")
        connect(self.client)
        self.idx = self.client.get_namespace_index(NAMESPACE_URI)
        self.obj = self.client.nodes.objects.get_child(f"{self.idx}:HelioTracker")

    def var(self, name: str):
        return self.obj.get_child(f"{self.idx}:{name}")

    def call(self, name: str, *args: float):
        return self.obj.call_method(f"{self.idx}:{name}",
                                    *[ua.Variant(a, ua.VariantType.Double) for a in args])

    def close(self) -> None:
        self.client.disconnect()


@pytest.fixture
def anon(rig):
    s = Session(rig.opcua.endpoint)
    yield s
    s.close()


@pytest.fixture
def operator(rig):
    s = Session(rig.opcua.endpoint, "operator", PASSWORD)
    yield s
    s.close()


def audit_rows(rig, command: str) -> list[dict]:
    events = httpx.get(f"{rig.d.url}/api/v1/events", params={"limit": 1000}).json()
    return [e for e in events if e["kind"] == "command" and e["data"].get("command") == command]


def assert_not_moved(before: dict, after: dict) -> None:
    for axis in ("azimuth", "elevation"):
        assert abs(after[axis] - before[axis]) < STILL_DEG, (axis, before, after)


def test_browse_and_read_values_matching_the_api(rig, anon):
    rig.d.wait_for(lambda s: s["state"] == "tracking" and s["on_sun"], 90.0, "tracking")
    time.sleep(0.5)
    names = {c.read_browse_name().Name for c in anon.obj.get_children()}
    model = fm.build_model(rig.settings)
    assert {q.name for q in model} | {"State", "LastCommandResult"} <= names
    assert set(fm.COMMANDS) <= names
    status = rig.d.status()
    assert anon.var("SunAzimuth").read_value() == pytest.approx(
        status["sun"]["azimuth_deg"], abs=0.01)
    assert anon.var("SunElevation").read_value() == pytest.approx(
        status["sun"]["elevation_deg"], abs=0.01)
    assert anon.var("MountElevation").read_value() == pytest.approx(
        status["pointing"]["el_deg"], abs=0.01)
    assert anon.var("TrackerState").read_value() == "tracking"
    assert anon.var("OnSun").read_value() is True
    assert anon.var("State").read_value() == "ON"
    assert anon.var("WindowEnd").read_value() == status["current_window"]["end_utc"]
    # The wind comes from the site's anemometer (Modbus TCP here), like every drive kind.
    dv = anon.var("WindSpeed").read_data_value(raise_on_bad_status=False)
    assert dv.StatusCode.value == ua.StatusCodes.Good and 0.0 <= dv.Value.Value < 30.0
    for q in model:
        if q.unit is None:
            continue
        eu = anon.var(q.name).get_child("0:EngineeringUnits").read_value()
        assert eu.UnitId == UNIT_IDS[q.unit.symbol], q.name
        assert eu.NamespaceUri == "http://www.opcfoundation.org/UA/units/un/cefact"
        assert eu.DisplayName.Text == q.unit.symbol


def test_anonymous_session_reads_only(rig, anon):
    before = rig.truth()
    with pytest.raises(ua.UaStatusCodeError) as exc:
        anon.call("TrackStop")
    assert exc.value.code == ua.StatusCodes.BadUserAccessDenied
    with pytest.raises(ua.UaStatusCodeError) as exc:
        anon.call("Goto", 180.0, 0.0)
    assert exc.value.code == ua.StatusCodes.BadUserAccessDenied
    with pytest.raises(ua.UaStatusCodeError):
        anon.var("AutoTracking").write_value(False)
    assert "authenticated user" in anon.var("LastCommandResult").read_value()
    st = rig.d.status()
    assert st["state"] == "tracking" and st["auto_tracking"] is True
    assert not [r for r in audit_rows(rig, "track") if r["source"].startswith("opcua:")]
    del before


def test_wrong_password_refused(rig):
    with pytest.raises(ua.UaStatusCodeError):
        Session(rig.opcua.endpoint, "operator", "not the password")
    with pytest.raises(ua.UaStatusCodeError):
        Session(rig.opcua.endpoint, "intruder", PASSWORD)


def test_state_changes_follow_the_daemons_stream_not_the_poll_period(rig, tmp_path):
    """With the status poll slowed to one read in 5 s, a subscribed client still sees the
    tracker's state change within a second or two: the server follows the daemon's event
    stream and polls at once on a discrete change."""
    data = tomllib.loads(rig.config_path.read_text())
    data["facility"]["poll_hz"] = 0.2
    slow_config = tmp_path / "slow-poll.toml"
    slow_config.write_text(dump_toml(data))
    slow = OpcUaProcess(rig, tmp_path, slow_config)
    got: list[str] = []
    seen = threading.Condition()

    class Handler:
        def datachange_notification(self, node, value, data) -> None:
            with seen:
                got.append(value)
                seen.notify_all()

    session = Session(slow.endpoint)
    try:
        sub = session.client.create_subscription(50, Handler())
        sub.subscribe_data_change(session.var("TrackerState"))
        with seen:
            assert seen.wait_for(lambda: got, 10.0), "no first notification"
        for on, states in ((False, {"idle"}), (True, {"acquiring", "tracking"})):
            with seen:
                got.clear()
            assert rig.d.post("track", {"on": on}).status_code == 200
            with seen:
                assert seen.wait_for(lambda s=states: s & set(got), 2.5), (on, got)
        sub.delete()
    finally:
        session.close()
        slow.close()
        rig.d.wait_for(lambda s: s["state"] == "tracking" and s["on_sun"], 90.0, "tracking")


def _self_signed(tmp: Path, name: str, uri: str, usage) -> tuple[Path, Path]:
    from asyncua.crypto import cert_gen
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key, name, {}, [x509.UniformResourceIdentifier(uri), x509.DNSName("localhost")],
        [usage])
    cert_path, key_path = tmp / f"{name}.pem", tmp / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    key_path.chmod(0o600)
    return cert_path, key_path


def test_basic256sha256_sign_and_encrypt(rig, tmp_path):
    """With opcua_security = "basic256sha256" only an encrypted channel is offered and works."""
    import tomllib

    from cryptography.x509.oid import ExtendedKeyUsageOID

    from tests.support.toml_dump import dump_toml

    srv_cert, srv_key = _self_signed(tmp_path, "server", "urn:helio-tracker:opcua-server",
                                     ExtendedKeyUsageOID.SERVER_AUTH)
    cli_cert, cli_key = _self_signed(tmp_path, "client", "urn:freeopcua:client",
                                     ExtendedKeyUsageOID.CLIENT_AUTH)
    data = tomllib.loads(rig.config_path.read_text())
    data["facility"].update(opcua_security="basic256sha256", opcua_certificate=str(srv_cert),
                            opcua_private_key=str(srv_key))
    path = tmp_path / "secure.toml"
    path.write_text(dump_toml(data))
    server = OpcUaProcess(rig, tmp_path, path)
    try:
        plain = Client(server.endpoint)
        with pytest.raises((ua.UaError, OSError, TimeoutError)):  # no unencrypted endpoint
            connect(plain).disconnect()
        secure = Client(server.endpoint)
        secure.set_security_string(
            f"Basic256Sha256,SignAndEncrypt,{cli_cert},{cli_key},{srv_cert}")
        secure.set_user("operator")
        secure.set_password(PASSWORD)
        connect(secure)
        try:
            idx = secure.get_namespace_index(NAMESPACE_URI)
            state = secure.nodes.objects.get_child([f"{idx}:HelioTracker", f"{idx}:TrackerState"])
            assert state.read_value() == rig.d.status()["state"]
            endpoints = secure.get_endpoints()
            assert {e.SecurityPolicyUri.rsplit("#", 1)[-1] for e in endpoints} == {"Basic256Sha256"}
            assert {e.SecurityMode for e in endpoints} == {ua.MessageSecurityMode.SignAndEncrypt}
        finally:
            secure.disconnect()
    finally:
        server.close()


def test_authenticated_command_accepted_and_audited(rig, operator):
    operator.call("TrackStop")  # no Bad status: accepted
    st = rig.d.wait_for(lambda s: s["state"] == "idle", 10.0, "idle")
    assert st["auto_tracking"] is False
    row = audit_rows(rig, "track")[-1]
    assert row["source"].startswith("opcua:operator@127.0.0.1:")
    assert row["source"].endswith(" via api:127.0.0.1")
    assert row["data"]["ok"] is True
    assert "accepted" in operator.var("LastCommandResult").read_value()
    operator.call("TrackStart")
    rig.d.wait_for(lambda s: s["auto_tracking"], 10.0, "automatic tracking on")
    operator.call("Stop")
    rig.d.wait_for(lambda s: s["state"] == "idle" and not s["slewing"], 20.0, "stopped")


def test_goto_outside_envelope_refused_and_nothing_moves(rig, operator):
    time.sleep(1.0)
    before = rig.truth()
    with pytest.raises(ua.UaStatusCodeError) as exc:
        operator.call("Goto", 180.0, 60.0)
    assert exc.value.code == ua.StatusCodes.BadOutOfRange
    assert "25.0" in operator.var("LastCommandResult").read_value()
    for args in ((1.0,), (1.0, 2.0, 3.0), (float("nan"), 0.0), (0.0, float("inf"))):
        with pytest.raises(ua.UaStatusCodeError) as exc:
            operator.call("Goto", *args)
        assert exc.value.code in (ua.StatusCodes.BadInvalidArgument,
                                  ua.StatusCodes.BadArgumentsMissing,
                                  ua.StatusCodes.BadTooManyArguments), args
    row = audit_rows(rig, "goto")[-1]
    assert row["data"]["ok"] is False and row["source"].startswith("opcua:operator@")
    time.sleep(0.5)
    assert_not_moved(before, rig.truth())


def test_parked_mount_does_not_move_through_opcua(rig, operator):
    operator.call("Park")
    rig.d.wait_for(lambda s: s["state"] == "parked", 60.0, "parked")
    time.sleep(0.5)
    assert operator.var("AtPark").read_value() is True
    before = rig.truth()
    sun_az = rig.d.status()["sun"]["azimuth_deg"]
    for name, args in (("TrackStart", ()), ("Goto", (sun_az, 0.0)), ("Stow", ())):
        with pytest.raises(ua.UaStatusCodeError) as exc:
            operator.call(name, *args)
        assert exc.value.code == ua.StatusCodes.BadInvalidState, name
        assert "parked" in operator.var("LastCommandResult").read_value()
    time.sleep(1.0)
    assert rig.d.status()["state"] == "parked"
    assert_not_moved(before, rig.truth())
    operator.call("Unpark")
    rig.d.wait_for(lambda s: s["state"] == "idle", 10.0, "unparked, holding")


def test_faulted_mount_does_not_move_through_opcua(rig, operator):
    rig.sim_command("trip azimuth overcurrent")
    rig.d.wait_for(lambda s: s["state"] == "fault", 20.0, "fault")
    deadline = time.monotonic() + 2.0
    while operator.var("State").read_value() != "FAULT":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "overcurrent" in operator.var("Faults").read_value()
    before = rig.truth()
    for name, args in (("TrackStart", ()), ("Goto", (180.0, 0.0)), ("Stow", ()), ("Park", ())):
        with pytest.raises(ua.UaStatusCodeError) as exc:
            operator.call(name, *args)
        assert exc.value.code == ua.StatusCodes.BadInvalidState, name
    time.sleep(1.0)
    assert_not_moved(before, rig.truth())


_any_variant = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(lambda x: ua.Variant(x, ua.VariantType.Double)),
    st.integers(-2**31, 2**31 - 1).map(lambda x: ua.Variant(x, ua.VariantType.Int32)),
    st.text(max_size=20).map(lambda x: ua.Variant(x, ua.VariantType.String)),
    st.booleans().map(lambda x: ua.Variant(x, ua.VariantType.Boolean)),
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=st.sampled_from(["TrackStart", "TrackStop", "Park", "Unpark", "Stow", "Stop",
                             "Goto"]),
       args=st.lists(_any_variant, max_size=4))
def test_fuzz_methods_nothing_crashes_nothing_moves(rig, operator, name, args):
    """Faulted mount (the previous test): any method with any arguments moves nothing."""
    fuzz = test_fuzz_methods_nothing_crashes_nothing_moves
    if not hasattr(fuzz, "before"):
        assert rig.d.status()["state"] == "fault"
        fuzz.before = rig.truth()
    try:
        operator.obj.call_method(f"{operator.idx}:{name}", *args)
    except ua.UaStatusCodeError as exc:
        assert exc.code != ua.StatusCodes.BadUnexpectedError, (name, args)
    assert operator.var("State").read_value() == "FAULT"


def test_after_fuzz_the_mount_has_not_moved(rig):
    before = getattr(test_fuzz_methods_nothing_crashes_nothing_moves, "before", None)
    assert before is not None
    assert_not_moved(before, rig.truth())
    assert rig.d.status()["state"] == "fault"
    assert rig.opcua.proc.poll() is None
