"""One base error for the project, with domain leaves that carry their context.

Messages say what went wrong and what to do about it.
"""

from __future__ import annotations


class TrackerError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(TrackerError):
    """A configuration file or value is invalid.

    ``path`` is the file, ``key`` the dotted key, ``value`` what was found and
    ``allowed`` a short statement of what is accepted.
    """

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None,
                 value: object = None, allowed: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.key = key
        self.value = value
        self.allowed = allowed


class EnvelopeError(TrackerError):
    """A target or command lies outside the mount's envelope; nothing was moved.

    ``axis`` is ``"azimuth"`` or ``"elevation"`` (or None for keep-out zones),
    ``value_deg`` the offending value and ``limit_deg`` the limit it crosses.
    """

    def __init__(self, message: str, *, axis: str | None = None,
                 value_deg: float | None = None, limit_deg: float | None = None) -> None:
        super().__init__(message)
        self.axis = axis
        self.value_deg = value_deg
        self.limit_deg = limit_deg


class EphemerisRangeError(TrackerError):
    """A time lies outside the span an ephemeris object covers."""


class TimeInputError(TrackerError, ValueError):
    """A time value cannot be interpreted unambiguously as UTC (e.g. a naive datetime)."""


class DriveFault(TrackerError):
    """A drive reported a fault; ``axis`` names it and ``condition`` is the named condition.

    Drivers never raise this into the control loop: they report faults in the
    axis state.  It is raised by callers that want to stop on a fault.
    """

    def __init__(self, message: str, *, axis: str | None = None, condition: str | None = None) -> None:
        super().__init__(message)
        self.axis = axis
        self.condition = condition


class StateError(TrackerError):
    """A command is not allowed in the machine's current state (e.g. goto while in fault)."""


class ApiError(TrackerError):
    """The daemon could not be reached, or refused a request; ``status`` is the HTTP status."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
