"""Decoding a drive's status word and fault code, shared by the drivers whose drives
report them (Modbus, OPC UA)."""

from __future__ import annotations

from tracker.mount.axis import AxisState, Condition, Limit, condition_for_code


def limit_from_flags(flags: int, bits: tuple[int, int, int, int, int, int]) -> Limit:
    """The limit a status word reports; ``bits`` are the masks (enabled, moving, soft low,
    soft high, hard low, hard high).  A hard limit wins over a soft one."""
    _, _, sl, sh, hl, hh = bits
    if flags & hh:
        return Limit.HARD_HIGH
    if flags & hl:
        return Limit.HARD_LOW
    if flags & sh:
        return Limit.SOFT_HIGH
    if flags & sl:
        return Limit.SOFT_LOW
    return Limit.NONE


def fault_from_code(code: int) -> tuple[Condition, str]:
    """(condition, text) for a drive's fault code (0 = OK, text empty)."""
    cond = condition_for_code(code)
    if not code:
        return cond, ""
    if cond is Condition.DRIVE_FAULT:
        return cond, f"drive fault code {code}"
    return cond, cond.value.replace("_", " ")


def decode_state(name: str, position_deg: float, velocity_deg_s: float, flags: int, code: int,
                 bits: tuple[int, int, int, int, int, int], now_s: float,
                 lost_command: tuple[Condition, str] | None = None) -> AxisState:
    """The axis state a drive's reading says.  ``lost_command`` (condition, text): the last
    command failed; reported once, with this fresh reading, when the drive itself is OK."""
    limit = limit_from_flags(flags, bits)
    cond, text = fault_from_code(code)
    if lost_command is not None and cond is Condition.OK:
        cond, text = lost_command[0], f"last command failed: {lost_command[1]}"
    return AxisState(name=name, position_deg=position_deg, velocity_deg_s=velocity_deg_s,
                     enabled=bool(flags & bits[0]), moving=bool(flags & bits[1]), limit=limit,
                     condition=cond, fault_code=code, fault_text=text, timestamp_s=now_s)
