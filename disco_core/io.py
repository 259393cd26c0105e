"""File helpers shared by every module: line-numbered readers and atomic writers.

Readers raise :class:`~disco_core.errors.DataError` naming the file and the line of the first bad
record. Every reader goes through one decoding check (:func:`read_lines`, :func:`decode_text`):
text must be UTF-8 (a UTF-8 byte-order mark is dropped); UTF-16/32, Latin-1 and binary files are
named with the line and the encoding to convert from, never a raw ``UnicodeDecodeError``. Writers
write to a temporary file in the destination folder and ``os.replace`` it, so a crash or a kill
never leaves a half-written output where a finished one was.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import DataError

UTF8_BOM = b"\xef\xbb\xbf"
# Longest first: the UTF-32 LE mark starts with the UTF-16 LE one.
_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32", "little-endian"), (b"\x00\x00\xfe\xff", "UTF-32", "big-endian"),
         (b"\xff\xfe", "UTF-16", "little-endian"), (b"\xfe\xff", "UTF-16", "big-endian"))
_CONVERT = "save it as UTF-8 (e.g. iconv -f {src} -t UTF-8 FILE > FILE.utf8)"
_TEXT_CONTROLS = frozenset(b"\t\n\r\f\v")
_SAMPLE = 4096  # bytes read to tell binary data from text in another encoding
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _readable(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    if not path.is_file():
        raise DataError(path, "not a file (a folder or a special file)")
    return path


def _open(path: Path):
    try:
        return path.open("rb")
    except OSError as exc:
        raise DataError(path, f"cannot read ({exc.strerror or exc})") from None


def _head(path: Path) -> bytes:
    with _open(path) as handle:
        return handle.read(_SAMPLE)


def _check_bom(path: Path, head: bytes) -> None:
    for mark, encoding, order in _BOMS:
        if head.startswith(mark):
            raise DataError(path, f"the file is {encoding} ({order}, with a byte-order mark), not UTF-8: "
                                  + _CONVERT.format(src=encoding), 1)


def _decode_line(path: Path, number: int, raw: bytes, sample: Callable[[], bytes]) -> str:
    """One line's bytes as text; anything but UTF-8 text is a DataError saying what it looks like
    (``sample``: the file's first bytes, to tell binary data from text in another encoding)."""
    if b"\x00" in raw:
        raise DataError(path, _nul_reason(raw), number)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = len(raw[:exc.start].decode("utf-8", "replace")) + 1
        start = sample()
        if _looks_binary(raw) or _looks_binary(start) or b"\x00" in start:
            raise DataError(path, f"binary data (byte 0x{raw[exc.start]:02x} at column {column}), not UTF-8 "
                                  "text: is this the right file?", number) from None
        raise DataError(path, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {column}); the file looks "
                              "like Latin-1 or Windows-1252 text: " + _CONVERT.format(src="WINDOWS-1252"),
                        number) from None


def _nul_reason(raw: bytes) -> str:
    """NUL bytes never occur in UTF-8 text: UTF-16 without a byte-order mark has them in every
    other byte (ASCII text), anything else is binary."""
    even, odd = raw[0::2].count(0), raw[1::2].count(0)
    if len(raw) >= 4 and max(even, odd) >= 0.4 * len(raw) / 2 and min(even, odd) <= 0.1 * max(even, odd):
        order = "little-endian" if odd > even else "big-endian"
        return (f"the file looks like UTF-16 ({order}, without a byte-order mark), not UTF-8: "
                + _CONVERT.format(src="UTF-16LE" if odd > even else "UTF-16BE"))
    return f"binary data (a NUL byte at column {raw.index(0) + 1}), not UTF-8 text: is this the right file?"


def _looks_binary(raw: bytes) -> bool:
    controls = sum(1 for b in raw if b < 0x20 and b not in _TEXT_CONTROLS)
    return controls > 0.05 * len(raw)


def _checked_lines(path: str | Path) -> Iterator[tuple[int, bytes, str]]:
    """``(line_number, bytes, text)`` of each line, the text decoded and checked (see read_lines)."""
    path = _readable(path)
    sample = lambda: _head(path)  # noqa: E731  (read only when a line fails to decode)
    with _open(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1:
                _check_bom(path, raw)
                raw = raw.removeprefix(UTF8_BOM)
            yield number, raw, _decode_line(path, number, raw, sample)


def read_lines(path: str | Path, keepends: bool = False) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` for every line of a UTF-8 text file (blank ones too), without
    its ``\\n`` / ``\\r\\n`` unless ``keepends``. A UTF-8 byte-order mark is dropped; any other
    encoding, or binary data, is a :class:`DataError` at the first line that shows it."""
    for number, _, line in _checked_lines(path):
        yield number, line if keepends else line.rstrip("\r\n")


def decode_text(path: str | Path, data: bytes) -> str:
    """``data`` (the bytes of ``path``, or of an archive member named so) as UTF-8 text, checked as
    :func:`read_lines` checks each line; a UTF-8 byte-order mark is dropped."""
    path = Path(path)
    _check_bom(path, data[:4])
    data = data.removeprefix(UTF8_BOM)
    if b"\x00" not in data:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    for number, raw in enumerate(data.split(b"\n"), start=1):  # find and name the bad line
        _decode_line(path, number, raw, lambda: data[:_SAMPLE])
    raise AssertionError("unreachable: a line failed to decode")


def read_text(path: str | Path) -> str:
    """A whole UTF-8 text file (see :func:`decode_text`); a missing or undecodable file is a
    :class:`DataError` naming it."""
    path = _readable(path)
    with _open(path) as handle:
        return decode_text(path, handle.read())


def read_jsonl(path: str | Path, required: Sequence[str] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for each non-blank line; check the ``required`` fields."""
    for line_no, raw, line in _checked_lines(path):
        if not line.strip():
            continue
        record = _json_line(path, line_no, line, raw)
        if not isinstance(record, dict):
            raise DataError(path, f"expected a JSON object, got {type(record).__name__}", line_no)
        missing = [field for field in required if record.get(field) is None]
        if missing:
            raise DataError(path, f"missing field(s) {', '.join(map(repr, missing))}", line_no)
        yield line_no, record


def _json_line(path: str | Path, line_no: int, line: str, raw: bytes) -> Any:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"malformed JSON ({exc.msg} at column {exc.colno})", line_no) from None
    except RecursionError:
        raise DataError(path, "malformed JSON (nested too deeply)", line_no) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise DataError(path, f"malformed JSON ({exc})", line_no) from None
    # an escaped UTF-16 surrogate (\\ud800-\\udfff): only a pair makes a character
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(record, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(path, "malformed JSON (a lone UTF-16 surrogate escape such as \\ud800: "
                                  "not a character)", line_no) from None
    return record


def header_name(field: str) -> str:
    """A header field as compared with known column names: lower case, ``-`` and spaces as ``_``."""
    return field.strip().lower().replace("-", "_").replace(" ", "_")


class LineAt:
    """The 1-based line of a position in ``text``, for a streaming JSON reader's messages.

    Positions only move forward, so newlines are counted once, incrementally (a 1 GB file is not
    rescanned from its start at every record)."""

    def __init__(self, text: str):
        self.text, self.counted_to, self.line = text, 0, 1

    def __call__(self, pos: int) -> int:
        self.line += self.text.count("\n", self.counted_to, pos)
        self.counted_to = pos
        return self.line


_JSON_SPACE = re.compile(r"[ \t\r\n]*")


def skip_json_space(text: str, pos: int) -> int:
    """The first position at or after ``pos`` that is not JSON whitespace."""
    return _JSON_SPACE.match(text, pos).end()


def read_tsv(
    path: str | Path, columns: int, header: Sequence[Sequence[str]] | None = None, sep: str | None = "\t"
) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` for a delimited file with exactly ``columns`` fields a line.

    ``header``: the names each column may have in a header line (compared by :func:`header_name`;
    the first name of each column is the one error messages suggest).
    The first non-blank line is skipped when it names every column so; when it holds only column
    names but in another order it is a :class:`DataError`; otherwise it is data like any other line
    (a header is recognised by its names, never by failing to parse). ``header=None``: no header.
    Whitespace-separated files (TREC qrels/runs) are read with ``sep=None``.
    """
    first = True
    for line_no, line in read_lines(path):
        if not line.strip():
            continue
        fields = line.split(sep) if sep else line.split()
        if first and header and _is_header(path, line_no, fields, header):
            first = False
            continue
        first = False
        if len(fields) != columns:
            raise DataError(path, f"expected {columns} fields, found {len(fields)}", line_no)
        yield line_no, fields


def _is_header(path: str | Path, line_no: int, fields: list[str], header: Sequence[Sequence[str]]) -> bool:
    names = [header_name(f) for f in fields]
    if len(names) != len(header):
        return False
    if all(name in allowed for name, allowed in zip(names, header)):
        return True
    known = set().union(*header)
    if all(name in known for name in names):
        expected = " ".join(allowed[0] for allowed in header)
        raise DataError(path, f"a header with its columns in another order ({' '.join(fields)}): "
                              f"expected {expected}", line_no)
    return False


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
