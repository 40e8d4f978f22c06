"""Decoding a drive's status word and fault code, shared by the drivers whose drives
report them (Modbus, OPC UA)."""

from __future__ import annotations

from tracker.mount.axis import Condition, Limit, condition_for_code


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
