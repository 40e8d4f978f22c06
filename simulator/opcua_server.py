"""The simulated mount behind a real asyncua OPC UA server: a stand-in for the drive PLC.

Each axis' variables sit at the node ids of ``drivers.opcua_map`` (default
``config/opcua_map.toml``).  Status nodes have a value callback, so every Read
returns the ``SimAxis`` state at that moment (dry runs step the mount between
reads in simulated time).  Command nodes are writable; a write is executed on
the ``SimAxis`` in the order of the request's items: ``mode`` runs the command
with the current setpoints, ``enable``/``brake``/``reset`` act at once, a new
``heartbeat`` value feeds the drive's watchdog.

Loopback only.  Fault injection on the handle: ``drop_sessions()`` (close every
client connection), ``freeze()``/``thaw()`` (the PLC stops answering: nothing is
read from any connection, new ones included), ``set_raw()``/``restore()``
(write any variant, e.g. NaN or a string, into a status node).  Drive faults are
injected on the ``SimAxis`` itself (``simulator.faults``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole

from drivers.opcua_map import AXES, COMMAND_KEYS, STATUS_KEYS, NodeMap, map_for
from simulator.mount import SimAxis, SimMount
from tracker.mount.axis import Limit

log = logging.getLogger(__name__)

NAMESPACE_URI = "urn:helio-tracker:simulated-drive-plc"


@dataclass
class ServerSecurity:
    """Server-side security for tests and rehearsals.

    ``certificate``/``private_key``: the server's own (PEM or DER); with them only the
    Basic256Sha256 SignAndEncrypt endpoint is offered.  ``users``: name -> password;
    when set, anonymous sessions are refused.
    """

    certificate: str | Path | None = None
    private_key: str | Path | None = None
    users: dict[str, str] = field(default_factory=dict)


class _PasswordUsers:
    """asyncua user manager: only the configured name/password pairs (no anonymous)."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = dict(users)

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


class _Drive:
    """One ``SimAxis`` and its command-node state."""

    def __init__(self, axis: SimAxis) -> None:
        self.axis = axis
        self.cmd: dict[str, Any] = {"mode": 0, "velocity_setpoint": 0.0,
                                    "position_setpoint": axis.encoder_deg, "enable": False,
                                    "brake": True, "reset": False, "heartbeat": 0}
        self.heartbeats = 0
        self.commands = 0


class OpcUaServerHandle:
    """A running OPC UA server hosting a ``SimMount``.  ``url`` is the endpoint to connect to."""

    def __init__(self, mount: SimMount, nodemap: NodeMap, server: Server) -> None:
        self.mount = mount
        self.map = nodemap
        self.server = server
        self.drives = {name: _Drive(mount.axes[name]) for name in AXES}
        self.url = ""
        self.port = 0
        self.requests_written = 0
        self.frozen = False
        self._freezer: asyncio.Task[None] | None = None
        self._status_cb: dict[str, Callable[..., ua.DataValue]] = {}

    def attach(self, mount: SimMount) -> None:
        """Serve another mount from now on (fresh command state; the nodes stay).

        Starting an asyncua server costs seconds (its standard address space), so tests
        share one server and give each case a new mount.
        """
        self.thaw()
        self.restore()
        self.mount = mount
        self.drives = {name: _Drive(mount.axes[name]) for name in AXES}

    # ------------------------------------------------------------------ status nodes
    def _status_value(self, axis_name: str, key: str) -> ua.Variant:
        m = self.map
        ax = self.drives[axis_name].axis
        if key == "position":
            return ua.Variant(ax.encoder_deg / m.position_unit_deg, ua.VariantType.Double)
        if key == "velocity":
            return ua.Variant(ax.velocity_deg_s / m.velocity_unit_deg_s, ua.VariantType.Double)
        if key == "fault_code":
            return ua.Variant(ax.fault_code, ua.VariantType.UInt16)
        b = m.status_bits
        lim = ax.limit
        word = ((ax.enabled << b.enabled) | (ax.moving << b.moving)
                | ((ax.fault_code != 0) << b.fault)
                | ((lim is Limit.SOFT_LOW) << b.soft_low) | ((lim is Limit.SOFT_HIGH) << b.soft_high)
                | ((lim is Limit.HARD_LOW) << b.hard_low) | ((lim is Limit.HARD_HIGH) << b.hard_high)
                | (ax.estop_active << b.estop) | (ax.braked << b.braked))
        return ua.Variant(word, ua.VariantType.UInt32 if word > 0xFFFF else ua.VariantType.UInt16)

    def _install_status(self, axis_name: str, key: str) -> None:
        nid = ua.NodeId.from_string(getattr(self.map.nodes(axis_name), key))

        def callback(nodeid: ua.NodeId, attr: ua.AttributeIds) -> ua.DataValue:
            return ua.DataValue(self._status_value(axis_name, key))

        self.server.iserver.aspace.set_attribute_value_callback(nid, ua.AttributeIds.Value, callback)

    async def set_raw(self, axis_name: str, key: str, value: Any,
                      variant_type: ua.VariantType) -> None:
        """Write ``value`` as ``variant_type`` into status node ``key`` of ``axis_name`` (it stays
        until ``restore``): e.g. ``float("nan")`` as Double, or a String where a number belongs."""
        if key not in STATUS_KEYS:
            raise ValueError(f"{key!r} is not a status node ({', '.join(STATUS_KEYS)})")
        nid = ua.NodeId.from_string(getattr(self.map.nodes(axis_name), key))
        await self.server.write_attribute_value(nid, ua.DataValue(ua.Variant(value, variant_type)))

    def restore(self, axis_name: str | None = None, key: str | None = None) -> None:
        """Status nodes show the simulated axis again (all of them by default)."""
        for a in AXES if axis_name is None else (axis_name,):
            for k in STATUS_KEYS if key is None else (key,):
                self._install_status(a, k)

    # ------------------------------------------------------------------ command nodes
    def _on_write(self, axis_name: str, key: str, value: Any) -> None:
        drive = self.drives[axis_name]
        ax = drive.axis
        cmd = drive.cmd
        cmd[key] = value
        m = self.map
        if key == "heartbeat":
            drive.heartbeats += 1
            ax.heartbeat()
        elif key == "mode":
            drive.commands += 1
            v = float(cmd["velocity_setpoint"]) * m.velocity_unit_deg_s
            if value == m.modes.velocity:
                ax.command_velocity(v)
            elif value == m.modes.position:
                ax.command_position(float(cmd["position_setpoint"]) * m.position_unit_deg, abs(v))
            elif value == m.modes.stop:
                ax.stop()
        elif key == "enable":
            drive.commands += 1
            if value and not cmd["brake"]:
                ax.enable()
            elif not value:
                ax.disable()
        elif key == "brake":
            if value:
                ax.disable()
            elif cmd["enable"]:
                ax.enable()
        elif key == "reset" and value:
            drive.commands += 1
            ax.reset()
            cmd["reset"] = False

    # ------------------------------------------------------------------ comms faults
    def drop_sessions(self) -> int:
        """Close every client connection now; returns how many were closed."""
        transports = list(self.server.iserver.asyncio_transports)
        for t in transports:
            t.abort()
        log.info("opcua server: dropped %d connection(s)", len(transports))
        return len(transports)

    def freeze(self) -> None:
        """The PLC stops answering: no request is read from any connection (new ones too)."""
        self.frozen = True
        self._pause_all()
        if self._freezer is None or self._freezer.done():
            self._freezer = asyncio.get_running_loop().create_task(self._keep_frozen())

    def thaw(self) -> None:
        """Answer again (requests queued meanwhile are then processed)."""
        self.frozen = False
        if self._freezer is not None:
            self._freezer.cancel()
            self._freezer = None
        for t in list(self.server.iserver.asyncio_transports):
            with contextlib.suppress(Exception):
                t.resume_reading()

    def _pause_all(self) -> None:
        for t in list(self.server.iserver.asyncio_transports):
            with contextlib.suppress(Exception):
                if t.is_reading():
                    t.pause_reading()

    async def _keep_frozen(self) -> None:
        while self.frozen:
            self._pause_all()
            await asyncio.sleep(0.002)

    async def stop(self) -> None:
        if self._freezer is not None:
            self._freezer.cancel()
            self._freezer = None
        self.frozen = False
        await self.server.stop()


def _check_loopback(host: str) -> None:
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise ValueError(f"the simulated PLC serves loopback only, not {host!r}")


async def start_opcua_server(mount: SimMount, host: str = "127.0.0.1", port: int = 0,
                             nodemap: NodeMap | None = None,
                             security: ServerSecurity | None = None,
                             ) -> tuple[OpcUaServerHandle, str]:
    """Serve ``mount`` as an OPC UA drive PLC on ``host:port`` (0 = any free port, loopback only).

    Returns the handle (``await handle.stop()`` ends it) and the endpoint URL.
    """
    _check_loopback(host)
    nodemap = nodemap or map_for(mount.settings)
    sec = security or ServerSecurity()
    server = Server(user_manager=_PasswordUsers(sec.users) if sec.users else None)
    await server.init()
    server.set_server_name("helio-tracker simulated drive PLC")
    server.set_endpoint(f"opc.tcp://{host}:{port}/")
    if sec.certificate is not None:
        await server.load_certificate(str(sec.certificate))
        await server.load_private_key(str(sec.private_key))
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    if sec.users:
        server.set_security_IDs(["Username"])
    ns_needed = max(ua.NodeId.from_string(getattr(nodemap.nodes(a), k)).NamespaceIndex
                    for a in AXES for k in (*STATUS_KEYS, *COMMAND_KEYS))
    idx = await server.register_namespace(NAMESPACE_URI)
    while idx < ns_needed:
        idx = await server.register_namespace(f"{NAMESPACE_URI}:{idx + 1}")
    handle = OpcUaServerHandle(mount, nodemap, server)
    objects = server.nodes.objects
    for axis_name in AXES:
        folder = await objects.add_object(ua.NodeId(f"{axis_name}.drive", idx),
                                          ua.QualifiedName(axis_name.capitalize(), idx))
        nodes = nodemap.nodes(axis_name)
        drive = handle.drives[axis_name]
        for key in STATUS_KEYS:
            nid = ua.NodeId.from_string(getattr(nodes, key))
            vtype = ua.VariantType.Double if key in ("position", "velocity") \
                else ua.VariantType.UInt16
            await folder.add_variable(nid, ua.QualifiedName(key, nid.NamespaceIndex),
                                      ua.Variant(0.0 if vtype is ua.VariantType.Double else 0, vtype))
            handle._install_status(axis_name, key)
        for key in COMMAND_KEYS:
            nid = ua.NodeId.from_string(getattr(nodes, key))
            vtype = nodemap.variant_type(key)
            init = drive.cmd[key]
            if vtype is ua.VariantType.Boolean:
                init = bool(init)
            elif vtype in (ua.VariantType.Float, ua.VariantType.Double):
                init = float(init) if math.isfinite(float(init)) else 0.0
            else:
                init = int(init)
            var = await folder.add_variable(nid, ua.QualifiedName(key, nid.NamespaceIndex),
                                            ua.Variant(init, vtype))
            await var.set_writable()

            async def on_change(_handle: int, dv: ua.DataValue, axis_name: str = axis_name,
                                key: str = key) -> None:
                value = dv.Value.Value if dv.Value is not None else None
                if value is not None:
                    handle._on_write(axis_name, key, value)

            server.iserver.aspace.add_datachange_callback(nid, ua.AttributeIds.Value, on_change)
    # Without certificates asyncua warns that it cannot verify or encrypt: that is the
    # loopback lab set-up by design, not news for the operator.
    srv_log = logging.getLogger("asyncua.server.server")
    level = srv_log.level
    if sec.certificate is None:
        srv_log.setLevel(logging.ERROR)
    try:
        await server.start()
    finally:
        srv_log.setLevel(level)
    bs = server.bserver
    handle.port = bs.port if bs is not None else port
    handle.url = f"opc.tcp://{host}:{handle.port}/"
    log.info("opcua server for the simulated mount on %s", handle.url)
    return handle, handle.url
