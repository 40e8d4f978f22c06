"""OPC UA server: the daemon seen from an OPC UA client (SCADA, WinCC OA, a PLC).

A client of the daemon's HTTP API (docs/facility.md), in its own process.  Under
``Objects/HelioTracker`` (namespace ``urn:helio-tracker:facility``) it publishes one
variable per ``tracker.service.facility_model`` quantity, with its description and,
for physical values, an ``EngineeringUnits`` property (UNECE code, OPC UA Part 8);
values are refreshed from ``GET /api/v1/status`` at ``facility.poll_hz``, and at once when
the daemon's event stream shows a discrete change (state, faults, ...; with a
``watch_client``), so a subscribed client sees a state change within a tick of the engine's
(a missing value is ``BadNoData``, an unreachable daemon ``BadCommunicationError``).

Read-only by default: no variable is writable and the command methods (``TrackStart``,
``TrackStop``, ``Park``, ``Unpark``, ``Stow``, ``Stop``, ``Reset``, ``Goto``) answer
``BadUserAccessDenied`` to an anonymous session.  A session authenticated with a user
name and password from ``facility.opcua_users_file`` may call them; they go to the API
with the token and the source ``opcua:<user>@<peer> via api:<address>``, so the
engine checks and audits them like any command.  A refusal answers a Bad status
(``BadInvalidState`` for the state machine, ``BadOutOfRange`` for the envelope,
``BadInvalidArgument`` for a malformed argument) and its reason is in the
``LastCommandResult`` variable.  Security policy ``none`` (a lab) or
``basic256sha256`` (Sign & Encrypt, with the server's certificate and key).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import hmac
import logging
import re
import secrets
import stat
import threading
import tomllib
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.crypto.permission_rules import USER_TYPES, PermissionRuleset, User, UserRole

from tracker.errors import ConfigError
from tracker.service import facility_model as fm

log = logging.getLogger(__name__)

NAMESPACE_URI = "urn:helio-tracker:facility"
#: PBKDF2-HMAC-SHA256 iterations for stored passwords.
PBKDF2_ITERATIONS = 200_000

_VARIANT = {float: ua.VariantType.Double, bool: ua.VariantType.Boolean,
            str: ua.VariantType.String}
_PLACEHOLDER: dict[type, Any] = {float: float("nan"), bool: False, str: ""}

_ANONYMOUS = User(role=UserRole.Anonymous)
#: The session whose request is being served (set around every Call).
_CALLER: contextvars.ContextVar[Any] = contextvars.ContextVar("opcua_caller", default=None)


# ----------------------------------------------------------------------------- users
def hash_password(password: str, *, iterations: int = PBKDF2_ITERATIONS) -> str:
    """``pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>`` for a users file."""
    if not password:
        raise ValueError("an empty password is not allowed")
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches a ``hash_password`` string (constant-time compare)."""
    try:
        scheme, iterations, salt_hex, digest_hex = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt_hex),
                                     int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, bytes.fromhex(digest_hex))


def load_users(path: Path) -> dict[str, str]:
    """``{user: password hash}`` from a TOML users file (``[users] name = "pbkdf2_sha256$..."``).

    The file must be readable by its owner only (it holds password hashes).
    """
    try:
        st = path.stat()
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the OPC UA users file: {exc.strerror}",
                          path=str(path), key="facility.opcua_users_file") from None
    if st.st_mode & 0o077:
        raise ConfigError(f"OPC UA users file {path} is accessible by group or others (mode "
                          f"{stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {path}`",
                          path=str(path), key="facility.opcua_users_file")
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", path=str(path)) from None
    users = data.get("users")
    if not isinstance(users, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.startswith("pbkdf2_sha256$")
            for k, v in users.items()):
        raise ConfigError(f"{path}: expected a [users] table of name = \"pbkdf2_sha256$...\" "
                          f"(make one with `tracker opcua-server --hash-password`)",
                          path=str(path), key="users")
    return dict(users)


class PasswordUserManager:
    """Anonymous sessions read; user name + password from the users file may command.

    A wrong password (or unknown user) is refused at session activation.
    """

    def __init__(self, users: dict[str, str]) -> None:
        self._users = users

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username is None:
            return User(role=UserRole.Anonymous)
        stored = self._users.get(username)
        if stored is None or password is None or not verify_password(password, stored):
            log.warning("OPC UA: refused login of user %r", username)
            return None
        return User(role=UserRole.User, name=username)


class ReadOnlyForAnonymous(PermissionRuleset):
    """Service-level permissions: anonymous sessions may browse, read, subscribe and call
    (the methods themselves refuse them, with a reason); only users may write; nobody may
    change the address space."""

    def __init__(self) -> None:
        user = {ua.NodeId(t) for t in USER_TYPES}
        self._allowed = {
            UserRole.Anonymous: user - {ua.NodeId(ua.ObjectIds.WriteRequest_Encoding_DefaultBinary)},
            UserRole.User: user,
            UserRole.Admin: user,
        }

    def check_validity(self, user: Any, action_type_id: Any, body: Any) -> bool:
        return action_type_id in self._allowed.get(user.role, set())


# ----------------------------------------------------------------------------- server
class FacilityOpcUa:
    """The OPC UA server; ``async with`` or ``start()``/``stop()``; ``endpoint`` once started."""

    def __init__(self, settings: Any, client: Any, *, port: int | None = None,
                 watch_client: Any = None) -> None:
        fac = settings.facility
        self.settings = settings
        self.client = client
        #: A second API client for the event stream (its own thread); None: poll only.
        self.watch_client = watch_client
        self._stop_watch = threading.Event()
        self._wake: asyncio.Event | None = None
        self.model = fm.build_model(settings)
        self.port = fac.opcua_port if port is None else port
        self.endpoint = f"opc.tcp://{_url_host(fac.opcua_host)}:{self.port}/helio-tracker/"
        self.period_s = 1.0 / fac.poll_hz
        users_file = fac.opcua_users_file
        self.users = load_users(settings.relative_path(users_file)) if users_file else {}
        self.server = Server(user_manager=PasswordUserManager(self.users))
        self._vars: dict[str, Any] = {}
        self._poll_task: asyncio.Task | None = None
        self._last: dict[str, Any] = {}
        self.status: dict | None = None

    async def start(self) -> None:
        fac = self.settings.facility
        server = self.server
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("helio-tracker")
        await server.set_application_uri("urn:helio-tracker:opcua-server")
        if fac.opcua_security == "basic256sha256":
            await server.load_certificate(str(self.settings.relative_path(fac.opcua_certificate)))
            await server.load_private_key(str(self.settings.relative_path(fac.opcua_private_key)))
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt],
                                       permission_ruleset=ReadOnlyForAnonymous())
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity],
                                       permission_ruleset=ReadOnlyForAnonymous())
        server.set_identity_tokens([ua.AnonymousIdentityToken, ua.UserNameIdentityToken])
        self._track_callers()
        idx = await server.register_namespace(NAMESPACE_URI)
        obj = await server.nodes.objects.add_object(idx, "HelioTracker")
        for q in self.model:
            var = await obj.add_variable(idx, q.name, _PLACEHOLDER[q.kind], _VARIANT[q.kind])
            await var.write_attribute(ua.AttributeIds.Description, ua.DataValue(
                ua.Variant(ua.LocalizedText(q.description), ua.VariantType.LocalizedText)))
            if q.unit is not None:
                eu = ua.EUInformation(NamespaceUri=fm.UNECE_NAMESPACE,
                                      UnitId=fm.unece_unit_id(q.unit.unece),
                                      DisplayName=ua.LocalizedText(q.unit.symbol),
                                      Description=ua.LocalizedText(q.unit.description))
                await var.add_property(ua.NodeId(f"HelioTracker.{q.name}.EngineeringUnits", idx),
                                       ua.QualifiedName("EngineeringUnits", 0), eu,
                                       ua.VariantType.ExtensionObject,
                                       ua.NodeId(ua.ObjectIds.EUInformation))
            self._vars[q.name] = var
        self._vars["State"] = await obj.add_variable(idx, "State", "UNKNOWN",
                                                     ua.VariantType.String)
        self._vars["LastCommandResult"] = await obj.add_variable(idx, "LastCommandResult", "",
                                                                 ua.VariantType.String)
        for cmd in fm.COMMANDS.values():
            inputs: list[Any] = []
            if cmd.takes_az_el:
                inputs = [_argument("AzimuthDeg", "sky azimuth, degrees from north through east"),
                          _argument("ElevationDeg", "sky elevation, degrees, up positive")]
            method = await obj.add_method(idx, cmd.name, self._method(cmd.name), inputs, [])
            await method.write_attribute(ua.AttributeIds.Description, ua.DataValue(
                ua.Variant(ua.LocalizedText(cmd.description), ua.VariantType.LocalizedText)))
        await self._poll_once()
        await server.start()
        self._wake = wake = asyncio.Event()
        if self.watch_client is not None:
            loop = asyncio.get_running_loop()

            def on_change() -> None:
                with contextlib.suppress(RuntimeError):     # the loop has closed
                    loop.call_soon_threadsafe(wake.set)

            threading.Thread(target=fm.follow_discrete_changes, name="opcua-watch", daemon=True,
                             args=(self.watch_client, self._stop_watch, on_change)).start()
        self._poll_task = asyncio.create_task(self._poll_loop(), name="opcua-poll")

    async def stop(self) -> None:
        self._stop_watch.set()
        if self._poll_task is not None:
            self._poll_task.cancel()
            await asyncio.gather(self._poll_task, return_exceptions=True)
        await self.server.stop()

    async def __aenter__(self) -> FacilityOpcUa:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ values
    async def _poll_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        wake = self._wake
        assert wake is not None
        while True:
            next_t += self.period_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), max(0.0, next_t - loop.time()))
            wake.clear()
            if loop.time() > next_t + self.period_s:
                next_t = loop.time()
            try:
                await self._poll_once()
            except Exception:
                log.exception("OPC UA value update failed")

    async def _poll_once(self) -> None:
        try:
            status = await asyncio.to_thread(self.client.status)
        except Exception as exc:
            status = None
            log.debug("status read failed: %s", exc)
        self.status = status
        await self._publish(status)

    async def _publish(self, status: dict | None) -> None:
        for q in self.model:
            value = q.value(status) if status else None
            if q.name in self._last and self._last[q.name] == value:
                continue
            self._last[q.name] = value
            if value is None:
                code = ua.StatusCodes.BadNoData if status else ua.StatusCodes.BadCommunicationError
                dv = ua.DataValue(ua.Variant(_PLACEHOLDER[q.kind], _VARIANT[q.kind]),
                                  StatusCode=ua.StatusCode(code))
            else:
                dv = ua.DataValue(ua.Variant(value, _VARIANT[q.kind]))
            await self.server.write_attribute_value(self._vars[q.name].nodeid, dv)
        state = fm.device_state(status)
        if self._last.get("State") != state:
            self._last["State"] = state
            await self._vars["State"].write_value(state)

    # ------------------------------------------------------------------ methods
    def _track_callers(self) -> None:
        """Make the calling session visible to method callbacks (``_CALLER``)."""
        iserver = self.server.iserver
        create = iserver.create_session

        def create_session(name: str, user: User = _ANONYMOUS, external: bool = False) -> Any:
            session = create(name, user=user, external=external)
            call = session.call

            async def call_as(params: list[ua.CallMethodRequest]) -> Any:
                token = _CALLER.set(session)
                try:
                    return await call(params)
                finally:
                    _CALLER.reset(token)

            session.call = call_as
            return session

        iserver.create_session = create_session

    def _method(self, name: str) -> Any:
        async def handler(parent: ua.NodeId, *args: Any) -> Any:
            return await self._call(name, args)
        handler.__name__ = name
        return handler

    async def _call(self, name: str, args: tuple[Any, ...]) -> Any:
        session = _CALLER.get()
        user = getattr(session, "user", None)
        # asyncua names a session after its peer address tuple: "('127.0.0.1', 50123)"
        peer = ":".join(re.findall(r"[A-Za-z0-9_.]+", str(getattr(session, "name", "")))) or "unknown"
        if user is None or user.role not in (UserRole.User, UserRole.Admin) or not user.name:
            log.warning("OPC UA: %s refused for an anonymous session from %s", name, peer)
            await self._result(f"{name} refused: commands need an authenticated user "
                               f"(user name and password)")
            return ua.StatusCode(ua.StatusCodes.BadUserAccessDenied)
        values = [a.Value if isinstance(a, ua.Variant) else a for a in args]
        argument: Any = values if fm.COMMANDS[name].takes_az_el else (values or None)
        source = fm.source_name("opcua", f"{user.name}@{peer}")
        try:
            result = await asyncio.to_thread(fm.execute, self.client, name, argument,
                                             source=source)
        except fm.CommandRefused as exc:
            await self._result(f"{name} refused: {exc}")
            code = {409: ua.StatusCodes.BadInvalidState, 422: ua.StatusCodes.BadOutOfRange,
                    401: ua.StatusCodes.BadUserAccessDenied,
                    None: ua.StatusCodes.BadInvalidArgument}.get(
                exc.status, ua.StatusCodes.BadInvalidState)
            if exc.status is None and "reach" in str(exc):
                code = ua.StatusCodes.BadCommunicationError
            return ua.StatusCode(code)
        await self._result(f"{name} accepted (state now {result.get('state')})")
        await self._poll_once()
        return []

    async def _result(self, text: str) -> None:
        await self._vars["LastCommandResult"].write_value(text)


def _argument(name: str, description: str) -> ua.Argument:
    arg = ua.Argument()
    arg.Name = name
    arg.DataType = ua.NodeId(ua.ObjectIds.Double)
    arg.ValueRank = -1
    arg.Description = ua.LocalizedText(description)
    return arg


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def serve(settings: Any, client: Any, *, port: int | None = None,
                ready: Any = None, watch_client: Any = None) -> None:
    """Run the OPC UA server until cancelled or SIGTERM/SIGINT (``tracker opcua-server``)."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with FacilityOpcUa(settings, client, port=port, watch_client=watch_client) as srv:
        if ready is not None:
            ready(srv.endpoint)
        await stop.wait()
