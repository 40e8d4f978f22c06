"""The modules compiled by mypyc (setup.py): which of them a source checkout has out of date.

An editable install (``pip install -e .``) compiles beside each source ``x.py`` an
extension ``x.<tag>.so``, which Python imports instead of the source.  Editing ``x.py``
(or checking out another commit) leaves the extension running the old code until
``pip install -e .`` runs again: ``stale()`` names such modules, so the tests and the CLI
refuse to run them.  An installed package (not a checkout) is never reported.
"""

from __future__ import annotations

import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

#: The project's checkout, if this is one (it holds pyproject.toml beside the packages).
_ROOT = Path(__file__).resolve().parent.parent

REBUILD = "run 'pip install -e .' again (or set HELIO_TRACKER_PURE=1 for no compiling)"


def stale(root: Path = _ROOT) -> list[str]:
    """The compiled modules older than their source (``tracker/loop/demand.py``...), in
    a checkout; empty when all are current, none are compiled, or this is no checkout."""
    if not (root / "pyproject.toml").is_file():
        return []
    out = []
    for package in ("tracker", "simulator"):
        for suffix in EXTENSION_SUFFIXES:
            for ext in (root / package).rglob(f"*{suffix}"):
                source = ext.with_name(ext.name[: -len(suffix)] + ".py")
                if source.is_file() and source.stat().st_mtime > ext.stat().st_mtime:
                    out.append(source.relative_to(root).as_posix())
    return sorted(set(out))


def loaded() -> list[str]:
    """The project's modules imported so far that run compiled (names, sorted)."""
    return sorted(name for name, module in list(sys.modules.items())
                  if name.partition(".")[0] in ("tracker", "simulator")
                  and str(getattr(module, "__file__", "")).endswith(tuple(EXTENSION_SUFFIXES)))
