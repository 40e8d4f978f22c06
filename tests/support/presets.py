"""Presets as the tests load them."""

from __future__ import annotations

import tomllib

from tests.support import CONFIG_DIR
from tracker import config


def load_preset(name: str, **envelope_overrides) -> config.Settings:
    """A preset with in-process drives (the planner does not need the Modbus map file)."""
    path = CONFIG_DIR / f"{name}.toml"
    data = tomllib.loads(path.read_text())
    data["drives"] = {"kind": "sim"}
    data["envelope"].update(envelope_overrides)
    return config.parse(data, str(path))


def preset_sites() -> list[tuple[float, float, float]]:
    sites = set()
    for path in sorted(CONFIG_DIR.glob("*.toml")):
        if path.name.endswith("_map.toml"):      # a driver map, not a preset
            continue
        s = config.load(path).site
        sites.add((s.latitude_deg, s.longitude_deg, s.height_m))
    return sorted(sites)
