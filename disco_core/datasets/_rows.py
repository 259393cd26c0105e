"""Rows of the canonical tables as loaders build them, and the checks every field goes through.

One module that every loader imports (and that imports neither the registry nor a loader, so the
datasets package has no import circle), so a record is judged the same way in every format: an id that would break a TREC run or qrels file, an empty text,
a grade or turn number that is not an integer, a qrels mapping given as a list are each one
:class:`~disco_core.errors.DataError` naming the file and line.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..io import read_lines, read_tsv

INT32 = (-(2**31), 2**31 - 1)  # the range of relevance and turn columns (schemas: int32)
_INTEGER = re.compile(r"[+-]?\d+")
_BAD_ID_CHAR = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")  # Unicode whitespace and control characters (Cc)
_NAMED = {" ": "a space", "\t": "a tab", "\n": "a newline", "\r": "a carriage return"}

# Names a header line may give each column (compared by io.header_name); the first is suggested.
QUERY_COLUMN = ("query_id", "qid", "query", "queryid", "topic", "topic_id", "task_id", "id", "_id")
DOC_COLUMN = ("doc_id", "docid", "docno", "corpus_id", "passage_id", "pid", "doc", "document", "document_id")
GRADE_COLUMN = ("relevance", "rel", "grade", "score", "label", "relevant", "judgment", "judgement")
QRELS_HEADER = (QUERY_COLUMN, DOC_COLUMN, GRADE_COLUMN)
TREC_QRELS_HEADER = (QUERY_COLUMN, ("iter", "iteration", "q0", "0", "unused"), DOC_COLUMN, GRADE_COLUMN)
CORPUS_HEADER = (("doc_id", "docid", "id", "_id", "pid", "passage_id", "corpus_id"), ("title",),
                 ("text", "passage", "contents", "body"))
REWRITES_HEADER = (QUERY_COLUMN, ("text", "rewrite", "query", "utterance"))


class KeyedRows:
    """Rows of one table, refusing a duplicate key with both places it was seen."""

    def __init__(self, what: str):
        self.what = what
        self.rows: list[dict] = []
        self.seen: dict[object, str] = {}

    def add(self, key: object, row: dict, path: Path, line: int) -> None:
        if key in self.seen:
            raise DataError(path, f"duplicate {self.what} {key!r} (first seen at {self.seen[key]})", line)
        self.seen[key] = f"{path}:{line}"
        self.rows.append(row)

    def __contains__(self, key: object) -> bool:
        return key in self.seen


class Passages(KeyedRows):
    """The corpus rows. A passage whose text is empty is left out (it can never be found by its
    text) and remembered in ``empty`` as ``file:line doc_id`` for the validation report; a judgment
    naming it is refused (:func:`check_judgment`)."""

    def __init__(self, what: str = "doc_id"):
        super().__init__(what)
        self.empty: dict[str, str] = {}

    def add_passage(self, doc_id: str, title: str, text: str, domain: str | None, path: Path, line: int) -> None:
        first = self.seen.get(doc_id) or self.empty.get(doc_id)
        if first:
            raise DataError(path, f"duplicate {self.what} {doc_id!r} (first seen at {first})", line)
        if text.strip():
            self.add(doc_id, {"doc_id": doc_id, "title": title, "text": text, "domain": domain}, path, line)
        else:
            self.empty[doc_id] = f"{path}:{line}"

    def empty_report(self) -> list[str]:
        return [f"{where} {doc_id}" for doc_id, where in self.empty.items()]

    def check_not_empty(self, path: Path) -> None:
        if not self.rows:
            found = f" ({len(self.empty)} passages, all with empty text)" if self.empty else ""
            raise DataError(path, f"the corpus has no passages{found}")


def query_id(conversation_id: str, turn: int) -> str:
    """The query id of a turn, where a dataset has none of its own: ``<conversation>_<turn>``."""
    return f"{conversation_id}_{turn}"


def check_judgment(path: Path, line: int, qid: str, doc_id: str, turns: KeyedRows, corpus: KeyedRows,
                   where: str = "") -> None:
    """A judgment must name a known turn and a document of the corpus (with text). ``where``
    prefixes the message (``conversation 'c1' turn 2: ``)."""
    if qid not in turns:
        raise DataError(path, f"{where}judgment for unknown query {qid!r}", line)
    if doc_id not in corpus:
        empty = getattr(corpus, "empty", {})
        if doc_id in empty:
            raise DataError(path, f"{where}judgment names passage {doc_id!r}, whose text is empty "
                                  f"({empty[doc_id]})", line)
        raise DataError(path, f"{where}judgment names unknown document {doc_id!r}", line)


def _describe(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    return f"U+{ord(char):04X} ({unicodedata.name(char, 'a control character').lower()})"


def check_id(value: Any, what: str, path: Path, line: int | None) -> str:
    """An id as a string (a JSON integer is accepted), stripped. Empty ids, and ids holding
    whitespace or control characters (they split or break the lines of TREC run and qrels files),
    are refused, saying which character and where."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(path, f"{what} must be a string, got {type(value).__name__}", line)
    text = str(value).strip()
    if not text:
        raise DataError(path, f"{what} is empty", line)
    bad = _BAD_ID_CHAR.search(text)
    if bad:
        raise DataError(path, f"{what} {text!r} contains {_describe(bad.group())} (character {bad.start() + 1}): ids "
                              "must not hold whitespace or control characters, which break TREC run and qrels files",
                        line)
    return text


def text(value: Any, what: str, path: Path, line: int | None, allow_empty: bool = False) -> str:
    """A text field, stripped; a non-string, or an empty text unless ``allow_empty``, is refused."""
    if value is None:
        raise DataError(path, f"{what} is missing", line)
    if not isinstance(value, str):
        raise DataError(path, f"{what} must be a string, got {type(value).__name__}", line)
    if not allow_empty and not value.strip():
        raise DataError(path, f"{what} is empty", line)
    return value.strip()


def optional_text(value: Any, what: str, path: Path, line: int | None) -> str:
    """A text that may be absent (None) or empty: ``""`` then."""
    return "" if value is None else text(value, what, path, line, allow_empty=True)


def domain(value: Any, path: Path, line: int | None, what: str = "domain") -> str | None:
    """A domain label: None when absent or blank, else a string."""
    if value is None:
        return None
    return text(value, what, path, line, allow_empty=True) or None


def _integer(value: Any, what: str, path: Path, line: int | None, low: int, from_text: bool = False) -> int:
    if from_text and isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        value = int(value.strip())
    elif isinstance(value, bool) or not isinstance(value, int):
        shown = repr(value) if isinstance(value, (str, int, float)) else f"a {type(value).__name__}"
        raise DataError(path, f"{what} must be an integer, got {shown}", line)
    if value < low and low == 1:
        raise DataError(path, f"{what} must be 1 or more, got {value}", line)
    if not low <= value <= INT32[1]:
        raise DataError(path, f"{what} {value} is out of range ({low}..{INT32[1]})", line)
    return value


def grade(value: Any, what: str, path: Path, line: int | None, from_text: bool = False) -> int:
    """A relevance grade: a JSON integer, or integer text when ``from_text`` (TSV), within 32 bits;
    negative grades (TREC's -1 for junk) are kept."""
    return _integer(value, what, path, line, INT32[0], from_text)


def turn_number(value: Any, what: str, path: Path, line: int | None) -> int:
    """A turn number: a JSON integer >= 1 (not a string, a float or a boolean)."""
    return _integer(value, what, path, line, 1)


def qrels_mapping(value: Any, what: str, path: Path, line: int) -> dict:
    """Inline judgments: a JSON object mapping doc_id to grade (absent: none)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DataError(path, f"{what} must be an object mapping doc_id to grade "
                              f'(e.g. {{"d1": 2}}), got {type(value).__name__}', line)
    return value


def read_qrels(path: Path) -> Iterator[tuple[int, str, str, int]]:
    """``(line, query_id, doc_id, grade)`` from ``query_id<TAB>doc_id<TAB>grade`` lines or TREC
    ``qid iter docid grade`` lines (the first non-blank line decides which), each with an optional
    header recognised by its names (:data:`QRELS_HEADER`, :data:`TREC_QRELS_HEADER`)."""
    first_line, first = next(((n, line) for n, line in read_lines(path) if line.strip()), (0, ""))
    tsv = len(first.split("\t")) == 3 or len(first.split()) != 4
    rows = (read_tsv(path, 3, header=QRELS_HEADER) if tsv
            else read_tsv(path, 4, header=TREC_QRELS_HEADER, sep=None))
    for line, fields in rows:
        qid, doc_id, value = fields if tsv else (fields[0], fields[2], fields[3])
        try:
            relevance = grade(value, "grade", path, line, from_text=True)
        except DataError as exc:
            if line != first_line:  # not the first line: no header was mistaken for data
                raise
            names = " ".join(c[0] for c in (QRELS_HEADER if tsv else TREC_QRELS_HEADER))
            raise DataError(path, f"{exc.reason} (a header line must name its columns: {names})", line) from None
        yield line, check_id(qid, "query id", path, line), check_id(doc_id, "doc id", path, line), relevance
