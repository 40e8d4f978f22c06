"""The modules setup.py compiles with mypyc: compiled in this install, and an edited
checkout's stale ones refused (tracker.compiled)."""

from __future__ import annotations

import ast
import importlib
import os
from importlib.machinery import EXTENSION_SUFFIXES

import pytest

from tests.support import ROOT
from tracker import compiled


def _compiled_modules() -> list[str]:
    """setup.py's COMPILED list, read without running setup.py."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMPILED":
            return list(ast.literal_eval(node.value))
    raise AssertionError("setup.py has no COMPILED list")


@pytest.mark.skipif(bool(os.environ.get("HELIO_TRACKER_PURE")), reason="installed as Python")
@pytest.mark.parametrize("path", _compiled_modules())
def test_each_listed_module_runs_compiled(path: str) -> None:
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    assert module.__file__ is not None
    assert module.__file__.endswith(tuple(EXTENSION_SUFFIXES)), module.__file__


def test_a_source_newer_than_its_extension_is_stale(tmp_path) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    pkg = tmp_path / "tracker" / "loop"
    pkg.mkdir(parents=True)
    ext = pkg / f"demand{EXTENSION_SUFFIXES[0]}"
    source = pkg / "demand.py"
    source.write_text("")
    assert compiled.stale(tmp_path) == []           # not compiled
    ext.write_text("")
    os.utime(source, (1_000_000, 1_000_000))
    os.utime(ext, (1_000_010, 1_000_010))
    assert compiled.stale(tmp_path) == []
    os.utime(source, (1_000_020, 1_000_020))        # edited after the build
    assert compiled.stale(tmp_path) == ["tracker/loop/demand.py"]
    (tmp_path / "pyproject.toml").unlink()           # an installed package: never stale
    assert compiled.stale(tmp_path) == []
