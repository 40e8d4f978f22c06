"""Shared fixtures.  Tests never touch the network: astropy's IERS auto-download is off."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracker import config

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
PRESETS = ["sim", "cast", "babyiaxo", "iaxo"]

#: One arc-second in degrees, for tolerances.
arcsecond = 1.0 / 3600.0


@pytest.fixture
def sim_settings() -> config.Settings:
    return config.load(CONFIG_DIR / "sim.toml")


@pytest.fixture(params=PRESETS)
def preset(request) -> config.Settings:
    return config.load(CONFIG_DIR / f"{request.param}.toml")
