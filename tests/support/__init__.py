"""Test support: paths, units, and the rigs several test modules share."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
CONFIG_DIR = ROOT / "config"
PRESETS = ["sim", "cast", "babyiaxo", "iaxo"]
#: The ``tracker`` console script of the running interpreter's environment.
TRACKER = str(Path(sys.executable).parent / "tracker")

#: One arc-second in degrees, for tolerances.
arcsecond = 1.0 / 3600.0
