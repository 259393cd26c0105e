"""Reading a configuration: YAML files and ``a.b=value`` overrides into one validated :class:`Config`.

Every problem is a :class:`ConfigError` naming the file (and line) or the setting; the typed
sections themselves live in :mod:`disco_core.config`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .config import Config
from .errors import ConfigError


class _Loader(yaml.SafeLoader):
    """YAML 1.1 as PyYAML reads it, but ``1e-4`` is a float (YAML 1.2), not the string "1e-4"."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."))


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506  (a SafeLoader subclass)


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``a.b.c=value`` override; the value is parsed as YAML (``k=100``, ``x=[a,b]``)."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} is not of the form section.key=value")
    dotted, raw = assignment.split("=", 1)
    keys = dotted.strip().split(".")
    if not all(keys):
        raise ConfigError(f"override {assignment!r}: empty key")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {assignment!r}: {key!r} is not a section")
    try:
        node[keys[-1]] = load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0]
        raise ConfigError(f"override {assignment!r}: the value is not valid YAML ({problem})") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from a file, every problem a :class:`ConfigError` naming the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = load_yaml(path.read_text(encoding="utf-8-sig")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text (save it as UTF-8)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def validate(data: dict[str, Any], where: str = "") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {_message(e)}" for e in exc.errors())
        raise ConfigError(f"{where}invalid configuration: {problems}") from None


def _message(error: dict) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown setting"
    msg = error["msg"].removeprefix("Value error, ")
    if error["type"] in ("int_type", "float_type", "bool_type", "string_type", "list_type"):
        msg += f", got {error.get('input')!r}"
    return msg


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    data: dict[str, Any] = read_yaml(path) if path is not None else {}
    for assignment in overrides:
        apply_override(data, assignment)
    return validate(data, f"{path}: " if path else "")
