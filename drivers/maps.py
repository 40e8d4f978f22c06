"""Loading a driver's map file (register map, node map): TOML -> a validated pydantic model,
with a ``ConfigError`` that names the file, the key and the rule."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from tracker.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], data: dict, path: str, what: str) -> M:
    """Validate ``data`` as ``model``; ``what`` names the map in the error ("register map")."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errs = exc.errors(include_url=False)
        lines = [f"{path}: {'.'.join(str(p) for p in e.get('loc', ())) or '(top level)'}: "
                 f"{e.get('msg', 'invalid')}" for e in errs]
        first = errs[0]
        raise ConfigError(f"invalid {what}:\n  " + "\n  ".join(lines), path=path,
                          key=".".join(str(p) for p in first.get("loc", ())),
                          value=first.get("input"), allowed=first.get("msg")) from None


def read_toml(p: Path, what: str) -> dict:
    """The TOML file's contents; ``ConfigError`` if it cannot be read or parsed."""
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read {what}: {exc.strerror}", path=str(p)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: {what} is not valid TOML: {exc}", path=str(p)) from None
