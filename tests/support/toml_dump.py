"""A small TOML writer for tests that build config files (tomllib reads, it does not write)."""

from __future__ import annotations


def toml_str(text: str) -> str:
    """A TOML basic string (every Unicode scalar value may appear, controls escaped)."""
    out = []
    for ch in text:
        if ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return toml_str(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(v)


def dump_toml(data: dict, prefix: str = "") -> str:
    """Tables, arrays of tables and inline values (enough for the config files)."""
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict) or (isinstance(value, list) and value
                                       and all(isinstance(x, dict) for x in value)):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {toml_value(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, value in tables:
        name = f"{prefix}{key}"
        for item in (value if isinstance(value, list) else [value]):
            header = f"[[{name}]]" if isinstance(value, list) else f"[{name}]"
            out += f"\n{header}\n" + dump_toml(item, f"{name}.")
    return out
