"""Build: the tick's hottest modules compiled to C with mypyc (docs/performance.md).

Every other setting is in pyproject.toml.  The modules stay plain, typed Python; mypyc
compiles them for the interpreter that installs the project (a C compiler and the Python
headers are needed: gcc and python3-dev on Debian).  ``HELIO_TRACKER_PURE=1 pip install
-e .`` installs without compiling (everything runs as Python, about 1.4x slower).

An editable install puts the compiled modules beside their sources: after editing one of
them, run ``pip install -e .`` again (the test suite and the CLI refuse stale ones).
"""

import os
from pathlib import Path

from setuptools import setup

#: The compiled modules: pure, typed, on the control tick or the simulator's step.
COMPILED = [
    "tracker/control/law.py",
    "tracker/mount/bores.py",
    "tracker/mount/frames.py",
    "tracker/loop/automation.py",
    "tracker/loop/demand.py",
    "tracker/loop/recorder.py",
    "tracker/loop/supervise.py",
    "tracker/loop/weather.py",
    "simulator/axis.py",
    "simulator/mount.py",
    "simulator/physics.py",
]

if os.environ.get("HELIO_TRACKER_PURE"):
    # An earlier editable install's compiled modules would still be imported: remove them.
    for path in [*COMPILED, "helio_tracker_native__mypyc.py"]:
        for ext in Path(path).parent.glob(Path(path).stem + ".*.so"):
            ext.unlink()
    setup()
else:
    from mypyc.build import mypycify

    # Only the compiled modules must type-check here: the modules they import are read for
    # their types, and their errors (which ``mypy`` in CI reports) do not stop the build.
    setup(ext_modules=mypycify(["--follow-imports=silent", *COMPILED], opt_level="3",
                               group_name="helio_tracker_native"))
