"""File helpers shared by every module: line-numbered readers and atomic writers.

Readers raise :class:`~disco_core.errors.DataError` naming the file and the line of the first bad
record. Writers write to a temporary file in the destination folder and ``os.replace`` it, so a
crash or a kill never leaves a half-written output where a finished one was.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import DataError


def read_text(path: str | Path) -> str:
    """A UTF-8 text file (a byte-order mark is dropped); a missing or undecodable file is a
    :class:`DataError` naming it."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_jsonl(path: str | Path, required: Sequence[str] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for each non-blank line; check the ``required`` fields."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    with path.open("r", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, f"malformed JSON ({exc.msg} at column {exc.colno})", line_no) from None
            if not isinstance(record, dict):
                raise DataError(path, f"expected a JSON object, got {type(record).__name__}", line_no)
            missing = [field for field in required if record.get(field) is None]
            if missing:
                raise DataError(path, f"missing field(s) {', '.join(map(repr, missing))}", line_no)
            yield line_no, record


def read_tsv(
    path: str | Path, columns: int, header: bool | None = None, sep: str = "\t"
) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` for a delimited file with exactly ``columns`` fields a line.

    ``header=None`` skips the first line only when its last field is not a number (qrels headers).
    Whitespace-separated files (TREC qrels/runs) are read with ``sep=None``.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    with path.open("r", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\n\r").split(sep) if sep else line.split()
            if line_no == 1 and (header or (header is None and not _is_number(fields[-1]))):
                continue
            if len(fields) != columns:
                raise DataError(path, f"expected {columns} fields, found {len(fields)}", line_no)
            yield line_no, fields


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Give a temporary path beside ``path``; on success move it into place, on error remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def short_hash(obj: Any, length: int = 12) -> str:
    """A stable hash of a JSON-able object, ``length`` hex digits (folder names keyed by settings)."""
    import hashlib

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
