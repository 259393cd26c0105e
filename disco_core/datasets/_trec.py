"""Reading shared by the TREC conversational datasets (CAsT, iKAT), with errors that point into the file.

The official topic files are one JSON array of topics, each with a list of turns. :func:`read_topics`
loads one and gives every topic and turn the line where it starts, and :func:`check_fields` checks
the fields a year needs, so that a bad record is reported as ``file:line: topic 31 turn 3: ...``
before ir_datasets (which reports no position) parses the file. :func:`record_lines` gives the line
of each record ir_datasets' ``TrecQrels`` reads, so its errors can name the line too.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..io import read_lines, read_text
from ._rows import KeyedRows

_SPACE = re.compile(r"\s*")


@dataclass
class Turn:
    """One turn of a topic: its JSON object and where it starts."""

    topic: Topic
    index: int  # 0-based position in the topic's turn list
    line: int
    data: dict[str, Any]

    @property
    def where(self) -> str:
        number = self.data.get("number", self.data.get("turn_id", self.index + 1))
        return f"topic {self.topic.number} turn {number}"


@dataclass
class Topic:
    """One topic (a conversation): its JSON object, where it starts, and its turns."""

    number: Any
    line: int
    data: dict[str, Any]
    turns: list[Turn] = field(default_factory=list)


class _Positions:
    """Positions of the values of a JSON text that is known to parse (to give records their lines)."""

    def __init__(self, text: str):
        self.text = text
        self.decoder = json.JSONDecoder()
        self.newlines = [m.start() for m in re.finditer("\n", text)]

    def line(self, pos: int) -> int:
        return bisect.bisect_left(self.newlines, pos) + 1

    def _skip(self, pos: int) -> int:
        return _SPACE.match(self.text, pos).end()

    def items(self, pos: int) -> list[int]:
        """The start of each element of the array at ``pos``."""
        pos = self._skip(self._skip(pos) + 1)  # past '['
        starts: list[int] = []
        while self.text[pos] != "]":
            starts.append(pos)
            _, end = self.decoder.raw_decode(self.text, pos)
            pos = self._skip(end)
            if self.text[pos] == ",":
                pos = self._skip(pos + 1)
        return starts

    def members(self, pos: int) -> dict[str, int]:
        """The start of each member's value of the object at ``pos``."""
        pos = self._skip(self._skip(pos) + 1)  # past '{'
        starts: dict[str, int] = {}
        while self.text[pos] != "}":
            key, end = self.decoder.raw_decode(self.text, pos)
            pos = self._skip(self._skip(end) + 1)  # past ':'
            starts[key] = pos
            _, end = self.decoder.raw_decode(self.text, pos)
            pos = self._skip(end)
            if self.text[pos] == ",":
                pos = self._skip(pos + 1)
        return starts


def read_topics(path: Path, turns_key: str) -> list[Topic]:
    """The topics of an official topics file (a JSON array of objects with ``number`` and a
    non-empty list of turn objects under ``turns_key``), each topic and turn with its line."""
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"malformed JSON ({exc.msg} at column {exc.colno})", exc.lineno) from None
    if not isinstance(data, list) or not data:
        raise DataError(path, "expected a non-empty JSON array of topics", 1)
    where = _Positions(text)
    topics: list[Topic] = []
    for index, (start, record) in enumerate(zip(where.items(0), data), start=1):
        line = where.line(start)
        if not isinstance(record, dict):
            raise DataError(path, f"topic {index}: expected a JSON object, got {type(record).__name__}", line)
        if "number" not in record:
            raise DataError(path, f"topic {index}: missing field 'number'", line)
        topic = Topic(record["number"], line, record)
        turns = record.get(turns_key)
        if not isinstance(turns, list) or not turns:
            raise DataError(path, f"topic {topic.number}: missing or empty list {turns_key!r}", line)
        for position, (turn_start, turn) in enumerate(zip(where.items(where.members(start)[turns_key]), turns)):
            turn_line = where.line(turn_start)
            if not isinstance(turn, dict):
                raise DataError(path, f"topic {topic.number} turn {position + 1}: expected a JSON object", turn_line)
            topic.turns.append(Turn(topic, position, turn_line, turn))
        topics.append(topic)
    return topics


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({str: "a string", int: "an integer", list: "a list", dict: "an object"}[k] for k in kinds)


def check_fields(path: Path, what: str, line: int, record: Mapping[str, Any],
                 required: Mapping[str, type | tuple[type, ...]],
                 optional: Mapping[str, type | tuple[type, ...]] | None = None) -> None:
    """Refuse a record that lacks a required field or has a field of the wrong JSON type."""
    for name, kind in {**required, **(optional or {})}.items():
        if name not in record or record[name] is None:
            if name in required:
                raise DataError(path, f"{what}: missing field {name!r}", line)
            continue
        value = record[name]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise DataError(path, f"{what}: field {name!r} must be {_type_name(kind)}, "
                                  f"got {type(value).__name__}", line)


def record_lines(path: Path) -> list[int]:
    """The line number of each record of a TREC qrels file, as ir_datasets' ``TrecQrels`` reads it
    (every line except the exact line ``"\\n"``)."""
    return [number for number, line in read_lines(path, keepends=True) if line != "\n"]


def message(speaker: str, text: str | None) -> list[dict[str, str]]:
    """A history message, or none when the text is empty."""
    text = (text or "").strip()
    return [{"speaker": speaker, "text": text}] if text else []


def rewrite_row(query_id: str, teacher: str, text: str) -> dict[str, Any]:
    """A row of the rewrites table for a rewrite that comes with the dataset."""
    return {"query_id": query_id, "teacher": teacher, "text": text.strip(), "model": None,
            "prompt_hash": None, "status": None}


def qrel_rows(judgments: Iterable[tuple[int | None, Any]], path: Path, turns: KeyedRows) -> list[dict[str, Any]]:
    """Rows of the qrels table from ``(line, qrel)`` pairs; a judgment of an unknown turn, or a
    second judgment of the same (turn, document), raises :class:`DataError` at its line. Documents
    are not checked: the collections are not downloaded (``validation_report`` counts them)."""
    rows = KeyedRows("judgment")
    for line, qrel in judgments:
        if qrel.query_id not in turns:
            raise DataError(path, f"judgment for unknown turn {qrel.query_id!r}", line)
        rows.add((qrel.query_id, qrel.doc_id),
                 {"query_id": qrel.query_id, "doc_id": qrel.doc_id, "relevance": qrel.relevance}, path, line)
    return rows.rows
