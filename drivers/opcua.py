"""OPC UA axis drives (asyncua client): both axes over one session to the drive PLC.

One ``OpcUaSession`` (one asyncua ``Client``) is shared by the two ``OpcUaAxis``
objects; the node map is ``drivers.opcua_map`` (default ``config/opcua_map.toml``).
Per control cycle, with the engine's two reads and two commands each issued
together (``asyncio.gather``), the session makes two service calls for both axes:

- one Read of the Value attribute of every status node (position, velocity,
  status word, fault code of both axes): reads started while one is in flight
  share its answer;
- one Write of every command node the cycle's commands set (setpoints first, then
  ``mode``, then ``heartbeat``): writes queued in the same event-loop turn go
  into one request.  Every command carries the heartbeat (the PLC's watchdog).

Device problems never raise into the control loop: ``read()`` reports them as
conditions with the last good values and ``fresh=False`` -- ``LINK_DOWN`` (no
session; reconnecting with bounded exponential backoff), ``TIMEOUT`` (no answer
within ``timeout_s``), ``GARBLED_FRAME`` (NaN, infinity or a value of the wrong
type in a node), ``PROTOCOL_EXCEPTION`` (a Bad status code for a node or a
service).  A failed command is reported by the next ``read()``.

A new session never replays an old command: right after every (re)connect the
session writes zero velocity and ``mode = stop`` to both axes (with a heartbeat),
so nothing moves until the engine commands again.

A node id of the map that the PLC does not have, or that cannot be read/written
as its role needs, is a ``ConfigError`` from ``connect()`` naming the map key and
the node (checked with one Read of every node's AccessLevel attribute).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from drivers.opcua_map import AXES, COMMAND_KEYS, STATUS_KEYS, NodeMap, map_for
from drivers.status_word import decode_state
from tracker.errors import ConfigError
from tracker.mount.axis import AxisState, Condition, stale_state

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0
#: Session lifetime requested from the PLC, ms (servers may revise it).
SESSION_TIMEOUT_MS = 30000
#: The client's application URI: a client certificate for Basic256Sha256 carries it as SAN URI.
APPLICATION_URI = "urn:helio-tracker:controller"
#: Service results that mean the session or channel is gone (reconnect), not a node problem.
_SESSION_GONE = frozenset((
    ua.StatusCodes.BadSessionIdInvalid, ua.StatusCodes.BadSessionClosed,
    ua.StatusCodes.BadSessionNotActivated, ua.StatusCodes.BadSecureChannelIdInvalid,
    ua.StatusCodes.BadSecureChannelClosed, ua.StatusCodes.BadConnectionClosed,
    ua.StatusCodes.BadServerNotConnected, ua.StatusCodes.BadCommunicationError,
    ua.StatusCodes.BadShutdown, ua.StatusCodes.BadServerHalted,
))
_INT_TYPES = (ua.VariantType.SByte, ua.VariantType.Byte, ua.VariantType.Int16,
              ua.VariantType.UInt16, ua.VariantType.Int32, ua.VariantType.UInt32,
              ua.VariantType.Int64, ua.VariantType.UInt64)
_NUMBER_TYPES = (*_INT_TYPES, ua.VariantType.Float, ua.VariantType.Double)


class CommsError(Exception):
    """Internal: a failed service call, with the condition it stands for."""

    def __init__(self, condition: Condition, text: str) -> None:
        super().__init__(text)
        self.condition = condition
        self.text = text


def _status_name(code: ua.StatusCode | int) -> str:
    """``BadNodeIdUnknown`` for a status code (or its number)."""
    sc = code if isinstance(code, ua.StatusCode) else ua.StatusCode(int(code))
    try:
        return sc.name
    except Exception:  # noqa: BLE001 - an unknown code
        return f"0x{sc.value:08X}"


def _make_write(nodeid: ua.NodeId, value: Any, vtype: ua.VariantType) -> ua.WriteValue:
    wv = ua.WriteValue()
    wv.NodeId = nodeid
    wv.AttributeId = ua.AttributeIds.Value
    wv.Value = ua.DataValue(ua.Variant(value, vtype))
    return wv


def _read_params(nodeids: list[ua.NodeId], attr: ua.AttributeIds) -> ua.ReadParameters:
    params = ua.ReadParameters()
    for nid in nodeids:
        rv = ua.ReadValueId()
        rv.NodeId = nid
        rv.AttributeId = attr
        params.NodesToRead.append(rv)
    return params


class OpcUaSession:
    """One OPC UA client session to the drive PLC, shared by both axes.

    ``security_policy`` is ``"None"`` or ``"Basic256Sha256"`` (SignAndEncrypt, with
    ``certificate``/``private_key`` paths and optionally the PLC's ``server_certificate``
    to pin); ``user``/``password`` authenticate the session (empty = anonymous).
    ``timeout_s`` bounds every request, the connect sequence included.
    """

    def __init__(self, url: str, nodemap: NodeMap, *, timeout_s: float = 0.25,
                 security_policy: str = "None", certificate: str | Path = "",
                 private_key: str | Path = "", server_certificate: str | Path = "",
                 user: str = "", password: str = "") -> None:
        if not url.startswith("opc.tcp://"):
            raise ConfigError(f"OPC UA endpoint {url!r} must start with opc.tcp://",
                              key="drives.opcua.endpoint_url", value=url)
        if security_policy not in ("None", "Basic256Sha256"):
            raise ConfigError(f"unknown OPC UA security policy {security_policy!r}",
                              key="drives.opcua.security_policy", value=security_policy,
                              allowed="None, Basic256Sha256")
        if security_policy != "None" and not (certificate and private_key):
            raise ConfigError("OPC UA security Basic256Sha256 needs a client certificate and key",
                              key="drives.opcua.certificate")
        self.url = url
        self.map = nodemap
        self.timeout_s = timeout_s
        self.security_policy = security_policy
        self._cert = str(certificate)
        self._key = str(private_key)
        self._server_cert = str(server_certificate)
        self._user = user
        self._password = password
        self._client: Client | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._last_error = f"{url}: no session yet"
        self._config_error: ConfigError | None = None
        self._backoff_s = BACKOFF_MIN_S
        self._next_attempt_s = 0.0
        self._closed = False
        self._validated = False
        self.connects = 0
        self.failed_connects = 0
        self.reads = 0
        self.writes = 0
        # Node ids, in the order of the one status Read: 4 per axis.
        self.status_ids: list[ua.NodeId] = []
        self.command_ids: dict[str, dict[str, ua.NodeId]] = {}
        for axis in AXES:
            nodes = nodemap.nodes(axis)
            self.status_ids += [ua.NodeId.from_string(getattr(nodes, k)) for k in STATUS_KEYS]
            self.command_ids[axis] = {k: ua.NodeId.from_string(getattr(nodes, k))
                                      for k in COMMAND_KEYS}
        self.vtypes = {k: nodemap.variant_type(k) for k in COMMAND_KEYS}
        self._read_params = _read_params(self.status_ids, ua.AttributeIds.Value)
        self._inflight_read: asyncio.Task[list[ua.DataValue]] | None = None
        self._batch: list[tuple[list[ua.WriteValue], asyncio.Future[list[ua.StatusCode]]]] = []
        self._flush_task: asyncio.Task[None] | None = None
        self._heartbeat: dict[str, int] = dict.fromkeys(AXES, 0)

    # ------------------------------------------------------------------ session
    @property
    def connected(self) -> bool:
        return self._client is not None

    async def _new_client(self) -> Client:
        client = Client(self.url, timeout=self.timeout_s,
                        watchdog_intervall=max(1.0, 4.0 * self.timeout_s))
        client.application_uri = APPLICATION_URI
        # The PLC may drop a session whose client vanished after this long (ms).
        client.session_timeout = SESSION_TIMEOUT_MS
        client.name = client.description = "helio-tracker"
        if self.security_policy == "Basic256Sha256":
            await client.set_security(
                SecurityPolicyBasic256Sha256, certificate=self._cert, private_key=self._key,
                server_certificate=self._server_cert or None,
                mode=ua.MessageSecurityMode.SignAndEncrypt)
        if self._user:
            client.set_user(self._user)
            client.set_password(self._password)
        return client

    @property
    def connect_timeout_s(self) -> float:
        """Bound on one whole connect sequence (hello, channel, session, node check, zeroing)."""
        return max(8.0 * self.timeout_s, 2.0)

    async def ensure(self, wait: bool = False) -> None:
        """Have a session, or raise ``CommsError(LINK_DOWN)``.

        Without ``wait`` a missing session is opened in the background (respecting the
        backoff) and this raises at once, so that a control cycle is never held up by a
        connect sequence.  With ``wait`` (``connect()``) it waits for the attempt and
        raises the ``ConfigError`` of a node map that does not match the PLC.
        """
        if self._client is not None:
            return
        if self._closed:
            raise CommsError(Condition.LINK_DOWN, "session closed")
        task = self._connect_task
        if task is None or task.done():
            now = time.monotonic()
            if not wait and now < self._next_attempt_s:
                raise CommsError(Condition.LINK_DOWN, f"{self._last_error}; retry in "
                                 f"{self._next_attempt_s - now:.2f} s")
            task = self._connect_task = asyncio.get_running_loop().create_task(self._attempt())
        if not wait:
            raise CommsError(Condition.LINK_DOWN, f"{self._last_error}; reconnecting")
        await asyncio.shield(task)
        if self._client is not None:
            return
        if self._config_error is not None:
            raise self._config_error
        raise CommsError(Condition.LINK_DOWN, self._last_error)

    async def _attempt(self) -> None:
        """One connect sequence; never raises (the outcome is left on ``self``)."""
        self._config_error = None
        client: Client | None = None
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                client = await self._new_client()
                await client.connect()
                await self._validate(client)
                await self._zero_commands(client)
        except asyncio.CancelledError:
            if client is not None:
                _abandon(client)
            raise
        except ConfigError as exc:
            if client is not None:
                _abandon(client)
            self._failed(f"{self.url}: the node map does not match the PLC: {exc}")
            if not self._validated:
                self._config_error = exc
            return
        except Exception as exc:  # noqa: BLE001 - a driver never raises into the loop
            if client is not None:
                _abandon(client)
            text = exc.text if isinstance(exc, CommsError) else (str(exc) or type(exc).__name__)
            self._failed(f"{self.url}: cannot open a session: {text}")
            return
        self._validated = True
        self._backoff_s = BACKOFF_MIN_S
        self.connects += 1
        if self._closed:       # closed while connecting
            _abandon(client)
            return
        if self.connects > 1:
            log.info("%s: session re-opened; both axes commanded to zero", self.url)
        self._client = client

    def _failed(self, text: str) -> None:
        self.failed_connects += 1
        self._last_error = text
        self._next_attempt_s = time.monotonic() + self._backoff_s
        self._backoff_s = min(2.0 * self._backoff_s, BACKOFF_MAX_S)
        log.debug("%s", text)

    async def _validate(self, client: Client) -> None:
        """Every node of the map exists and may be read (status) / written (commands)."""
        entries: list[tuple[str, str, ua.NodeId, int]] = []
        for axis in AXES:
            nodes = self.map.nodes(axis)
            for key in STATUS_KEYS:
                entries.append((f"{axis}.{key}", getattr(nodes, key),
                                ua.NodeId.from_string(getattr(nodes, key)),
                                ua.AccessLevel.CurrentRead.value))
            for key in COMMAND_KEYS:
                entries.append((f"{axis}.{key}", getattr(nodes, key),
                                ua.NodeId.from_string(getattr(nodes, key)),
                                ua.AccessLevel.CurrentWrite.value))
        params = _read_params([e[2] for e in entries], ua.AttributeIds.AccessLevel)
        try:
            results = await asyncio.wait_for(client.uaclient.read(params), self.timeout_s * 4)
        except Exception as exc:  # noqa: BLE001
            raise CommsError(Condition.LINK_DOWN,
                             f"{self.url}: cannot check the node map: {exc}") from None
        problems = []
        for (key, text, _nid, need), dv in zip(entries, results, strict=True):
            code = dv.StatusCode
            if code is not None and not code.is_good():
                problems.append(f"{key} = {text!r}: {_status_name(code)}")
                continue
            level = dv.Value.Value if dv.Value is not None else None
            if not isinstance(level, int) or not level & (1 << need):
                what = "readable" if need == ua.AccessLevel.CurrentRead.value else "writable"
                problems.append(f"{key} = {text!r}: not {what} (AccessLevel {level})")
        if problems:
            first = problems[0].split(" = ", 1)[0]
            raise ConfigError(f"OPC UA node map does not match the PLC at {self.url}:\n  "
                              + "\n  ".join(problems),
                              key=f"node map {first}", value=problems[0],
                              allowed="a node id the PLC has, with the access its role needs")

    async def _zero_commands(self, client: Client) -> None:
        """A new session starts from rest: zero velocity and stop on both axes."""
        params = ua.WriteParameters()
        for axis in AXES:
            params.NodesToWrite += self.command_items(axis, velocity_setpoint=0.0,
                                                      mode=self.map.modes.stop)
        try:
            results = await asyncio.wait_for(client.uaclient.write(params), self.timeout_s * 4)
        except Exception as exc:  # noqa: BLE001
            raise CommsError(Condition.LINK_DOWN,
                             f"{self.url}: cannot zero the commands: {exc}") from None
        for sc in results:
            if not sc.is_good():
                raise CommsError(Condition.PROTOCOL_EXCEPTION,
                                 f"{self.url}: zeroing the commands failed: {_status_name(sc)}")

    def drop(self, why: str) -> None:
        """Forget the session (the next request starts reconnecting at once)."""
        client, self._client = self._client, None
        if client is not None:
            log.warning("%s: session lost (%s); reconnecting", self.url, why)
            _abandon(client)
        self._last_error = f"{self.url}: session lost ({why})"
        self._next_attempt_s = 0.0

    async def close(self) -> None:
        """Close the session (orderly when the PLC answers); the PLC watchdog then stops the axes."""
        self._closed = True
        task, self._connect_task = self._connect_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        if client is not None:
            try:
                await asyncio.wait_for(client.disconnect(), 4 * self.timeout_s)
            except Exception:  # noqa: BLE001 - closing a dead session
                _abandon(client)

    def reopen(self) -> None:
        self._closed = False
        self._next_attempt_s = 0.0

    # ------------------------------------------------------------------ service calls
    async def _call(self, what: str, request: Callable[[Client], Any]) -> Any:
        await self.ensure()
        client = self._client
        assert client is not None
        try:
            # asyncua bounds every request by the client's timeout (= timeout_s) and
            # raises TimeoutError: no second wait_for (a task per call) is needed.
            return await request(client)
        except TimeoutError:
            raise CommsError(Condition.TIMEOUT,
                             f"{self.url}: no answer to {what} within {self.timeout_s} s") from None
        except ua.UaStatusCodeError as exc:
            code = getattr(exc, "code", 0)
            if code in _SESSION_GONE:
                self.drop(_status_name(code))
                raise CommsError(Condition.LINK_DOWN,
                                 f"{self.url}: session lost ({_status_name(code)})") from None
            raise CommsError(Condition.PROTOCOL_EXCEPTION,
                             f"{self.url}: {what} refused: {_status_name(code)}") from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - ConnectionError, OSError, UaError ...
            self.drop(str(exc) or type(exc).__name__)
            raise CommsError(Condition.LINK_DOWN,
                             f"{self.url}: session lost: {exc or type(exc).__name__}") from None

    async def read_status(self) -> list[ua.DataValue]:
        """The status nodes of both axes (4 per axis, ``STATUS_KEYS`` order), one Read.

        A read started while another is in flight shares its answer.
        """
        task = self._inflight_read
        if task is None or task.done():
            task = self._inflight_read = asyncio.get_running_loop().create_task(self._do_read())
        return await asyncio.shield(task)

    async def _do_read(self) -> list[ua.DataValue]:
        self.reads += 1
        params = self._read_params
        results = await self._call("Read", lambda c: c.uaclient.read(params))
        if len(results) != len(self.status_ids):
            raise CommsError(Condition.GARBLED_FRAME, f"{self.url}: Read answered "
                             f"{len(results)} values for {len(self.status_ids)} nodes")
        return results

    def command_items(self, axis: str, **values: Any) -> list[ua.WriteValue]:
        """The write items of one command of ``axis`` (setpoints, then mode, then heartbeat)."""
        ids = self.command_ids[axis]
        vt = self.vtypes
        items = []
        for key in ("velocity_setpoint", "position_setpoint", "enable", "brake", "reset", "mode"):
            if key in values:
                v = values[key]
                t = vt[key]
                if t is ua.VariantType.Boolean:
                    v = bool(v)
                elif t in (ua.VariantType.Float, ua.VariantType.Double):
                    v = float(v)
                else:
                    v = int(v)
                items.append(_make_write(ids[key], v, t))
        hb = self._heartbeat[axis] = (self._heartbeat[axis] + 1) % self.map.heartbeat_modulus
        t = vt["heartbeat"]
        items.append(_make_write(ids["heartbeat"],
                                 float(hb) if t in (ua.VariantType.Float, ua.VariantType.Double)
                                 else hb, t))
        return items

    async def write(self, items: list[ua.WriteValue]) -> list[ua.StatusCode]:
        """Queue ``items``; everything queued in this event-loop turn goes out in one Write."""
        fut: asyncio.Future[list[ua.StatusCode]] = asyncio.get_running_loop().create_future()
        self._batch.append((items, fut))
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.get_running_loop().create_task(self._flush())
        return await asyncio.shield(fut)

    async def _flush(self) -> None:
        batch, self._batch = self._batch, []
        params = ua.WriteParameters()
        for items, _ in batch:
            params.NodesToWrite += items
        self.writes += 1
        try:
            results = await self._call("Write", lambda c: c.uaclient.write(params))
            if len(results) != len(params.NodesToWrite):
                raise CommsError(Condition.GARBLED_FRAME, f"{self.url}: Write answered "
                                 f"{len(results)} results for {len(params.NodesToWrite)} nodes")
        except CommsError as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        except BaseException as exc:  # cancelled: the waiters must not hang
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(CommsError(Condition.LINK_DOWN, f"write aborted: {exc!r}"))
            raise
        i = 0
        for items, fut in batch:
            n = len(items)
            if not fut.done():
                fut.set_result(results[i:i + n])
            i += n


def _abandon(client: Client) -> None:
    """Drop a client without talking to the server (its socket and background tasks)."""
    with contextlib.suppress(Exception):
        client.uaclient.request_disconnect()
    # asyncua keeps its supervisor/keep-alive tasks on the client: stop them here so
    # an abandoned client neither probes the server nor logs about it.
    for name in ("_supervisor_task", "_stale_watchdog_task", "_renew_channel_task"):
        task = getattr(client, name, None)
        if task is not None and not task.done():
            task.cancel()
    with contextlib.suppress(Exception):
        client.disconnect_socket()


class OpcUaAxis:
    """One axis drive of an ``OpcUaSession`` (``tracker.mount.axis.Axis``).

    ``clock()`` gives reading timestamps (UTC unix seconds).  Positions are axis
    degrees as the PLC reports them, scaled by the node map's units.
    """

    #: On a wire: the engine reads and commands both axes concurrently.
    concurrent_io = True

    def __init__(self, name: str, session: OpcUaSession, clock: Callable[[], float]) -> None:
        if name not in AXES:
            raise ValueError(f"unknown axis {name!r} (azimuth or elevation)")
        self.name = name
        self.session = session
        self.map = session.map
        self._clock = clock
        self._i = AXES.index(name) * len(STATUS_KEYS)
        self._last: AxisState | None = None
        self._pending: CommsError | None = None
        b = self.map.status_bits
        self._bits = (1 << b.enabled, 1 << b.moving, 1 << b.soft_low, 1 << b.soft_high,
                      1 << b.hard_low, 1 << b.hard_high)
        self.errors = 0

    async def connect(self) -> None:
        """Open the shared session; ``ConfigError`` if the node map does not match the PLC."""
        self.session.reopen()
        try:
            await self.session.ensure(wait=True)
        except CommsError as exc:
            log.warning("%s: %s", self.name, exc.text)

    async def close(self) -> None:
        await self.session.close()

    def _stale(self, err: CommsError, now_s: float) -> AxisState:
        self.errors += 1
        return stale_state(self.name, self._last, err.condition, err.text, now_s)

    def _garbled(self, key: str, dv: ua.DataValue, want: str, now_s: float) -> AxisState:
        value = dv.Value.Value if dv.Value is not None else None
        vt = dv.Value.VariantType.name if dv.Value is not None else "Null"
        node = getattr(self.map.nodes(self.name), key)
        return self._stale(CommsError(
            Condition.GARBLED_FRAME,
            f"{self.name}.{key} ({node}) holds {value!r} ({vt}), not {want}"), now_s)

    async def read(self) -> AxisState:
        try:
            results = await self.session.read_status()
        except CommsError as exc:
            return self._stale(exc, self._clock())
        now_s = self._clock()
        i = self._i
        values: list[Any] = []
        for k, key in enumerate(STATUS_KEYS):
            dv = results[i + k]
            code = dv.StatusCode
            if code is not None and not code.is_good():
                node = getattr(self.map.nodes(self.name), key)
                return self._stale(CommsError(
                    Condition.PROTOCOL_EXCEPTION,
                    f"{self.name}.{key} ({node}): {_status_name(code)}"), now_s)
            var = dv.Value
            if var is None:
                return self._garbled(key, dv, "a value", now_s)
            if key in ("position", "velocity"):
                if var.VariantType not in _NUMBER_TYPES or isinstance(var.Value, bool) \
                        or not isinstance(var.Value, (int, float)) or not math.isfinite(var.Value):
                    return self._garbled(key, dv, "a finite number", now_s)
            elif (var.VariantType not in _INT_TYPES or not isinstance(var.Value, int)
                  or isinstance(var.Value, bool) or var.Value < 0):
                return self._garbled(key, dv, "an unsigned integer", now_s)
            values.append(var.Value)
        pos = values[0] * self.map.position_unit_deg
        vel = values[1] * self.map.velocity_unit_deg_s
        word, code = values[2], values[3]
        pending = self._pending if code == 0 else None
        if pending is not None:
            self._pending = None      # the lost command is reported once, with this reading
        state = decode_state(self.name, pos, vel, word, code, self._bits, now_s,
                             (pending.condition, pending.text) if pending else None)
        self._last = state
        return state

    async def _command(self, **values: Any) -> None:
        s = self.session
        try:
            await s.ensure()
            results = await s.write(s.command_items(self.name, **values))
        except CommsError as exc:
            self._pending = exc
            self.errors += 1
            return
        bad = [sc for sc in results if not sc.is_good()]
        if bad:
            self._pending = CommsError(Condition.PROTOCOL_EXCEPTION,
                                       f"{self.name}: write refused: {_status_name(bad[0])}")
            self.errors += 1
        else:
            # A later command got through: an earlier lost one is no longer "the last command".
            self._pending = None

    async def command_velocity(self, velocity_deg_s: float) -> None:
        v = float(velocity_deg_s)
        if not math.isfinite(v):
            await self.stop()        # never run on at an old demand; then say why, once
            self._pending = CommsError(Condition.PROTOCOL_EXCEPTION,
                                       f"{self.name}: refused a non-finite velocity {v}")
            return
        await self._command(velocity_setpoint=v / self.map.velocity_unit_deg_s,
                            mode=self.map.modes.velocity)

    async def command_position(self, position_deg: float, speed_deg_s: float) -> None:
        p, s = float(position_deg), abs(float(speed_deg_s))
        if not (math.isfinite(p) and math.isfinite(s)):
            await self.stop()
            self._pending = CommsError(Condition.PROTOCOL_EXCEPTION,
                                       f"{self.name}: refused a non-finite target {p} at {s} deg/s")
            return
        m = self.map
        await self._command(position_setpoint=p / m.position_unit_deg,
                            velocity_setpoint=s / m.velocity_unit_deg_s, mode=m.modes.position)

    async def stop(self) -> None:
        await self._command(velocity_setpoint=0.0, mode=self.map.modes.stop)

    async def enable(self) -> None:
        await self._command(velocity_setpoint=0.0, brake=False, enable=True)

    async def disable(self) -> None:
        await self._command(velocity_setpoint=0.0, enable=False, brake=True)

    async def reset(self) -> None:
        await self._command(reset=True)

    async def heartbeat(self) -> None:
        """Feed the PLC's watchdog without a command (one write of the heartbeat node)."""
        await self._command()


def _password(settings, name: str) -> str:
    if not name:
        return ""
    p = settings.relative_path(name)
    try:
        text = p.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"drives.opcua.password_file {p}: cannot read: {exc.strerror}",
                          key="drives.opcua.password_file", value=name) from None
    if not text:
        raise ConfigError(f"drives.opcua.password_file {p} is empty",
                          key="drives.opcua.password_file", value=name)
    return text


def make_opcua_axes(settings, now: Callable[[], float], *, url: str | None = None,
                    nodemap: NodeMap | None = None) -> dict[str, OpcUaAxis]:
    """Both axes as configured in ``settings.drives.opcua``, sharing one session.

    ``url`` overrides the configured endpoint; ``nodemap`` the configured map file.
    """
    ou = settings.drives.opcua
    rel = settings.relative_path

    session = OpcUaSession(
        url or ou.endpoint_url, nodemap or map_for(settings), timeout_s=ou.timeout_s,
        security_policy=ou.security_policy,
        certificate=rel(ou.certificate) if ou.certificate else "",
        private_key=rel(ou.private_key) if ou.private_key else "",
        server_certificate=rel(ou.server_certificate) if ou.server_certificate else "",
        user=ou.user, password=_password(settings, ou.password_file))
    return {name: OpcUaAxis(name, session, now) for name in AXES}
