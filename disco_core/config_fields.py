"""What every configuration section shares: strict validation, and the two marks on fields that
say how the pipeline treats them:

- :func:`perf` fields change speed or memory, never an output: they enter no cache key;
- :func:`model_ref` fields name model weights: a cache key holds the fingerprint of the files
  behind them (a local folder's contents, a hub id's resolved revision), not just the name.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Names that become folder names (teachers, students, fusions): no separators, no "..".
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def perf(default: Any = None, **kwargs: Any) -> Any:
    """A performance-only field: it changes speed or memory, not outputs, so no cache key holds it."""
    return Field(default, json_schema_extra={"perf": True}, **kwargs)


def model_ref(default: Any = None, **kwargs: Any) -> Any:
    """A field naming model weights: cache keys hold the fingerprint of its files, not the name."""
    return Field(default, json_schema_extra={"model": True}, **kwargs)


def is_perf(section: type[BaseModel], name: str) -> bool:
    return bool((section.model_fields[name].json_schema_extra or {}).get("perf"))


def is_model(section: type[BaseModel], name: str) -> bool:
    return bool((section.model_fields[name].json_schema_extra or {}).get("model"))


def check_name(value: str | None, what: str) -> str | None:
    if value is not None and (not SAFE_NAME.match(value) or ".." in value):
        raise ValueError(f"{what} {value!r} must be letters, digits and . _ + - (it names a folder)")
    return value


class Section(BaseModel):
    """A configuration section: unknown keys and wrong types are errors, nothing is coerced."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)
