"""Errors that point at the offending input: file and line, so a user can fix the data."""

from __future__ import annotations

from pathlib import Path


class DiscoError(Exception):
    """Base class for every error the library raises on purpose."""


class DataError(DiscoError, ValueError):
    """Bad input data. The message always starts with ``file:line:`` when a line is known."""

    def __init__(self, path: str | Path | None, message: str, line: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        self.reason = message
        where = self.path or "<input>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")


class ConfigError(DiscoError, ValueError):
    """A configuration value that cannot be used (unknown key, wrong type, unknown name)."""
