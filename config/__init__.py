"""The presets (TOML) and the Modbus register map, installed as ``tracker.presets``.

This folder is package data, not code: ``pip install .`` puts its files into the package
``tracker.presets`` (see ``[tool.setuptools]`` in pyproject.toml), so an installed
``tracker`` finds its default config from any folder.
"""
