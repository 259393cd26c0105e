"""Shared reading of the conversational-QA record format used by TopiOCQA and QReCC.

Both datasets ship one JSON array of turn records, each with ``Conversation_no``, ``Turn_no``
(1-based), ``Question`` and ``Context`` (the earlier questions and answers, alternating, user
first). :func:`json_records` walks such an array record by record and gives each record's line
number (so errors point into the file); it also reads JSON Lines, the form of the Hugging Face
mirrors. :func:`turn_row` turns one record into a row of the ``turns`` table.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..io import LineAt, read_text, skip_json_space
from ._rows import check_id, query_id

TURN_FIELDS = ("Conversation_no", "Turn_no", "Question", "Context")


def read_json_records(path: Path) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """``(line, index, record)`` for each object of the JSON array (or JSON Lines) file ``path``."""
    return json_records(read_text(path), path)


def json_records(text: str, path: Path) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """``(line, index, record)`` for each object of a JSON array, or of JSON Lines, in ``text``.

    ``line`` is the 1-based line where the record starts and ``index`` its 0-based position; a
    record that is not an object, or text that is not JSON, raises :class:`DataError` there."""
    decoder, line_at = json.JSONDecoder(), LineAt(text)

    def skip(pos: int) -> int:
        return skip_json_space(text, pos)

    def decode(pos: int, index: int) -> tuple[int, dict[str, Any], int]:
        try:
            record, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"malformed JSON in record {index} ({exc.msg} at column {exc.colno})",
                            exc.lineno) from None
        start = line_at(pos)
        if not isinstance(record, dict):
            raise DataError(path, f"record {index}: expected a JSON object, got {type(record).__name__}", start)
        return start, record, end

    pos = skip(0)
    if not text.startswith("[", pos):  # JSON Lines (or concatenated objects)
        index = 0
        while pos < len(text):
            start, record, end = decode(pos, index)
            yield start, index, record
            pos, index = skip(end), index + 1
        return
    pos, index = skip(pos + 1), 0
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            start, record, end = decode(pos, index)
            yield start, index, record
            pos, index = skip(end), index + 1
            if text.startswith(",", pos):
                pos = skip(pos + 1)
            elif text.startswith("]", pos):
                pos += 1
                break
            else:
                where = "the end of the file" if pos >= len(text) else repr(text[pos])
                raise DataError(path, f"expected ',' or ']' after record {index - 1}, found {where}", line_at(pos))
    pos = skip(pos)
    if pos < len(text):
        raise DataError(path, "unexpected text after the JSON array", line_at(pos))


def turn_row(record: dict[str, Any], path: Path, line: int, index: int) -> dict[str, Any]:
    """The ``turns`` row of one record (``domain`` None: the caller sets it).

    ``Question`` may be empty (the validation report counts empty utterances); ``Context`` items
    alternate user, agent, user, ... oldest first."""
    missing = [f for f in TURN_FIELDS if record.get(f) is None]
    if missing:
        raise DataError(path, f"record {index}: missing field(s) {', '.join(map(repr, missing))}", line)
    conv, turn = record["Conversation_no"], record["Turn_no"]
    if isinstance(conv, bool) or not isinstance(conv, (int, str)) or not str(conv).strip():
        raise DataError(path, f"record {index}: Conversation_no must be an integer or a non-empty string", line)
    if isinstance(turn, bool) or not isinstance(turn, int) or turn < 1:
        raise DataError(path, f"record {index}: Turn_no must be an integer >= 1, got {turn!r}", line)
    conversation_id = check_id(conv, f"record {index}: Conversation_no", path, line)
    where = f"record {index} (conversation {conversation_id!r} turn {turn})"
    question = record["Question"]
    if not isinstance(question, str):
        raise DataError(path, f"{where}: Question must be a string, got {type(question).__name__}", line)
    context = record["Context"]
    if not isinstance(context, list) or not all(isinstance(t, str) for t in context):
        raise DataError(path, f"{where}: Context must be a list of strings", line)
    history = [{"speaker": "user" if i % 2 == 0 else "agent", "text": t.strip()} for i, t in enumerate(context)]
    return {"query_id": query_id(conversation_id, turn), "conversation_id": conversation_id, "turn": turn,
            "utterance": question.strip(), "history": history, "domain": None}


def optional_text(record: dict[str, Any], field: str, path: Path, line: int, where: str) -> str | None:
    """The stripped string in ``field``; None when the field is absent, null or blank."""
    value = record.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DataError(path, f"{where}: {field} must be a string, got {type(value).__name__}", line)
    return value.strip() or None
