"""The API token: a random secret in a file only its owner can read.

The daemon creates the file on first start (mode 0600, its folder 0700) and
refuses to start when the file is readable or writable by group or others, or
owned by another user.  Clients (the CLI) read the same file.  Tokens are
compared in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from tracker.errors import ApiError, ConfigError

log = logging.getLogger(__name__)

#: Bytes of randomness in a new token (256 bits).
TOKEN_BYTES = 32


def token_path(settings) -> Path:
    """The token file of ``settings.api.token_file``: ``~`` expanded, relative to the config file."""
    return settings.relative_path(settings.api.token_file)


def _check_private(path: Path) -> None:
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"token file {path} is not a regular file", path=str(path),
                          key="api.token_file")
    if st.st_mode & 0o077:
        raise ConfigError(
            f"token file {path} is accessible by group or others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {path}` and start again",
            path=str(path), key="api.token_file", value=f"{stat.S_IMODE(st.st_mode):04o}",
            allowed="0600")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise ConfigError(
            f"token file {path} belongs to uid {st.st_uid}, not to this user (uid {os.getuid()})",
            path=str(path), key="api.token_file")


def ensure_token(path: Path) -> str:
    """Return the token in ``path``, creating the file (0600) with a new random token if missing.

    Raises ``ConfigError`` when the file is accessible by group/others or empty.
    """
    path = Path(path).expanduser()
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # created concurrently: read it below
        except OSError as exc:
            raise ConfigError(f"cannot create token file {path}: {exc.strerror}",
                              path=str(path), key="api.token_file") from None
        else:
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
            log.info("created API token file %s", path)
    _check_private(path)
    token = path.read_text().strip()
    if not token:
        raise ConfigError(f"token file {path} is empty; delete it and the daemon makes a new one",
                          path=str(path), key="api.token_file")
    return token


class TokenUnavailable(ApiError):
    """The client has no usable token (file missing, unreadable or empty)."""


def read_token(path: Path) -> str:
    """The token a client sends; ``ApiError`` with a hint when the file is missing or unreadable."""
    path = Path(path).expanduser()
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise TokenUnavailable(f"no API token file at {path}: start the daemon once (it creates the "
                       f"file) or give --config of the daemon's configuration") from None
    except OSError as exc:
        raise TokenUnavailable(f"cannot read API token file {path}: {exc.strerror}") from None
    if not token:
        raise TokenUnavailable(f"API token file {path} is empty")
    return token


def bearer_matches(authorization: str | None, token: str) -> bool:
    """True when an ``Authorization`` header value is ``Bearer <token>`` (constant-time compare)."""
    if not authorization or not token:
        return False
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


def client_host(request: Any) -> str:
    """The peer address of an HTTP request (never a forwarded header)."""
    return request.client.host if request.client else "unknown"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8 and ::1 (and IPv4-mapped loopback)."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return bool(addr.is_loopback or (mapped is not None and mapped.is_loopback))
