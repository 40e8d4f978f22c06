"""Time formatting shared by every layer (one definition, one rounding)."""

from __future__ import annotations

import math
import time


def iso_utc(t_s: float) -> str:
    """UTC unix seconds -> ISO 8601 with 'Z', rounded to the millisecond; the fraction is
    written only when it is not zero (``2026-06-21T12:00:00Z``, ``...T12:00:00.250Z``)."""
    whole = math.floor(t_s)
    ms = round((t_s - whole) * 1000.0)
    if ms == 1000:
        whole, ms = whole + 1, 0
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{text}.{ms:03d}Z" if ms else f"{text}Z"
