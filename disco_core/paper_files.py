"""The DiSCo authors' released files, in and out: teacher runs and rewrites, with query id maps.

Formats (from the authors' code, github.com/SimonLupart/disco-conv-splade, ``splade/hf/datasets.py``
and ``setup_script/``; their Hugging Face datasets ``slupart/*-distillation-*`` and
``slupart/*-rewrite-*``):

teacher run   ``run.json``: one JSON object ``{query id: {doc id: score}}``, the teacher's top-1000
              per query (SPLADE on the LLM's rewrites); read as a ``teacher_scores`` table, ranks by
              descending score (ties by doc id).
rewrites      ``*.parquet`` with columns ``id`` and ``text`` (their Hugging Face rewrite datasets), or
              ``id<TAB>text`` lines without a header (``.tsv``/``.txt``), or a JSON object
              ``{id: text}`` (``.json``); read as a ``rewrites`` table.
(TREC qrels and runs for ``trec_eval``: :mod:`disco_core.trec`.)

Query ids. Ours are the dataset's own (``<conversation>_<turn>`` for TopiOCQA and QReCC, see
``disco_core/datasets``). The authors' QReCC files use ``<Conversation_no>_<Turn_no>``: the same ids,
no mapping needed. Their TopiOCQA files use the row number (``"0"``, ``"1"``, ...) of the turn in the
DPR retriever file their ``parse_topiocqa.py`` reads (``all_history/train.json``, ``dev.json``):
:func:`topiocqa_row_ids` reads that file and maps each row to ``<conv_id>_<turn_id>``.
:func:`ordinal_id_map` assumes instead that rows follow our turns' order, and any other mapping can
be given as a two-column TSV (:func:`load_id_map`) or a dict. ``id_map`` is always *their id -> our
id*; exports take the inverse (:func:`invert`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import schemas
from .datasets._convqa import read_json_records
from .errors import ConfigError, DataError
from .io import LineAt, atomic_path, read_text, read_tsv, skip_json_space, write_text_atomic

log = logging.getLogger(__name__)

IdMap = Mapping[str, str]  # their query id -> our query id
UNMAPPED = ("error", "drop", "keep")


# ------------------------------------------------------------------ query id mappings
def load_id_map(path: str | Path) -> dict[str, str]:
    """A ``their_id<TAB>our_id`` file (no header); a repeated id is an error."""
    out: dict[str, str] = {}
    for line, (theirs, ours) in read_tsv(path, columns=2, header=False):
        if theirs in out:
            raise DataError(path, f"id {theirs!r} mapped twice", line)
        out[theirs.strip()] = ours.strip()
    return out


def topiocqa_row_ids(dpr_file: str | Path) -> dict[str, str]:
    """Row number -> ``<conv_id>_<turn_id>`` from the DPR retriever file (a JSON array of records
    with ``conv_id`` and ``turn_id``), as the authors' ``parse_topiocqa.py`` numbers the rows."""
    out = {}
    for line, index, record in read_json_records(Path(dpr_file)):
        if record.get("conv_id") is None or record.get("turn_id") is None:
            raise DataError(dpr_file, f"record {index} has no conv_id/turn_id", line)
        out[str(index)] = f"{record['conv_id']}_{record['turn_id']}"
    return out


def ordinal_id_map(query_ids: Sequence[str]) -> dict[str, str]:
    """``"0" -> query_ids[0]``, ... : for files numbered by row in the same order as our turns."""
    return {str(i): q for i, q in enumerate(query_ids)}


def invert(id_map: IdMap) -> dict[str, str]:
    out: dict[str, str] = {}
    for theirs, ours in id_map.items():
        if ours in out:
            raise ConfigError(f"id map sends both {out[ours]!r} and {theirs!r} to {ours!r}: it cannot be inverted")
        out[ours] = theirs
    return out


def _mapper(id_map: IdMap | None, unmapped: str, path: str | Path):
    if unmapped not in UNMAPPED:
        raise ConfigError(f"unmapped must be one of {UNMAPPED}, not {unmapped!r}")
    missing: list[str] = []

    def mapped(qid: str) -> str | None:
        if id_map is None:
            return qid
        if qid in id_map:
            return id_map[qid]
        if unmapped == "error":
            raise DataError(path, f"query id {qid!r} is not in the id map ({len(id_map)} ids); give a complete "
                                  f"map or unmapped='drop'")
        missing.append(qid)
        return qid if unmapped == "keep" else None

    return mapped, missing


# ------------------------------------------------------------------ teacher runs
def _object_items(text: str, path: str | Path) -> Iterator[tuple[str, object, int]]:
    """``(key, value, line)`` of a top-level JSON object, one member at a time (a 1 GB run is never
    a 1 GB dict of dicts)."""
    decoder, line_at = json.JSONDecoder(), LineAt(text)

    def skip(pos: int) -> int:
        return skip_json_space(text, pos)

    def fail(pos: int, what: str):
        raise DataError(path, what, line_at(pos))

    pos = skip(0)
    if not text.startswith("{", pos):
        fail(pos, "expected a JSON object {query id: {doc id: score}}")
    pos = skip(pos + 1)
    if text.startswith("}", pos):
        return
    while True:
        try:
            key, pos = decoder.raw_decode(text, pos)
            pos = skip(pos)
            if not text.startswith(":", pos):
                fail(pos, "expected ':' after a query id")
            start = skip(pos + 1)
            value, pos = decoder.raw_decode(text, start)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"malformed JSON ({exc.msg})", exc.lineno) from None
        if not isinstance(key, str):
            fail(start, "expected a string query id")
        yield key, value, line_at(start)
        pos = skip(pos)
        if text.startswith(",", pos):
            pos = skip(pos + 1)
        elif text.startswith("}", pos):
            if skip(pos + 1) < len(text):
                fail(skip(pos + 1), "unexpected text after the JSON object")
            return
        else:
            fail(pos, "expected ',' or '}'")


def read_teacher_run(path: str | Path, teacher: str, id_map: IdMap | None = None, k: int | None = None,
                     unmapped: str = "error") -> pa.Table:
    """An authors' ``run.json`` as the ``teacher_scores`` table of ``teacher`` (top ``k`` per query)."""
    mapped, missing = _mapper(id_map, unmapped, path)
    columns: dict[str, list] = {"query_id": [], "doc_id": [], "rank": [], "score": []}
    parts: list[pa.Table] = []
    for qid, docs, line in _object_items(read_text(path), path):
        if not isinstance(docs, dict) or not all(isinstance(s, (int, float)) and not isinstance(s, bool)
                                                 for s in docs.values()):
            raise DataError(path, f"query {qid!r}: expected {{doc id: score}}", line)
        ours = mapped(qid)
        if ours is None:
            continue
        ranked = sorted(docs.items(), key=lambda item: (-item[1], item[0]))[:k]
        columns["query_id"] += [ours] * len(ranked)
        columns["doc_id"] += [d for d, _ in ranked]
        columns["rank"] += range(1, len(ranked) + 1)
        columns["score"] += [s for _, s in ranked]
        if len(columns["doc_id"]) >= 1_000_000:  # bounded Python lists; Arrow holds the rest
            parts.append(_scores_table(columns, teacher))
    parts.append(_scores_table(columns, teacher))
    if missing:
        log.warning("%s: %d query id(s) not in the id map (%s), e.g. %r", path, len(missing), unmapped, missing[0])
    return schemas.validate("teacher_scores", pa.concat_tables(parts), source=path)


def _scores_table(columns: dict[str, list], teacher: str) -> pa.Table:
    """The collected rows as a table; empties ``columns``."""
    n = len(columns["doc_id"])
    table = schemas.to_table("teacher_scores", {**columns, "teacher": pa.repeat(teacher, n) if n else [],
                                                "score": np.asarray(columns["score"], dtype=np.float32)})
    for values in columns.values():
        values.clear()
    return table


def _one_source(table: pa.Table, source: str | None) -> tuple[pa.Table, str]:
    column = "teacher" if "teacher" in table.column_names else "source"
    names = sorted(set(table[column].to_pylist()))
    if source is None:
        if len(names) > 1:
            raise ConfigError(f"the table holds {len(names)} {column}s {names}: name the one to export")
        return table, column
    if source not in names:
        raise ConfigError(f"no {column} {source!r} in the table; it holds {names}")
    return table.filter(pc.equal(table[column], source)), column


def write_teacher_run(table: pa.Table, path: str | Path, teacher: str | None = None,
                      id_map: IdMap | None = None) -> Path:
    """A ``teacher_scores`` (or ``targets``) table as the authors' ``{qid: {docid: score}}`` JSON.

    ``teacher``: which teacher (or target source) when the table holds several; ``id_map``: *our id
    -> their id* (e.g. ``invert(topiocqa_row_ids(...))``); ids without an entry are kept."""
    table, _ = _one_source(table, teacher)
    table = table.sort_by([("query_id", "ascending"), ("rank", "ascending")])
    run: dict[str, dict[str, float]] = {}
    for qid, did, score in zip(*(table[c].to_pylist() for c in ("query_id", "doc_id", "score"))):
        run.setdefault(id_map.get(qid, qid) if id_map else qid, {})[did] = float(score)
    return write_text_atomic(path, json.dumps(run))


# ------------------------------------------------------------------ rewrites
def _rewrite_pairs(path: Path) -> Iterator[tuple[str, str, int | None]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        if not path.exists():
            raise DataError(path, "file not found")
        table = pq.read_table(path)
        id_col = next((c for c in ("id", "qid", "query_id") if c in table.column_names), None)
        text_col = next((c for c in ("text", "rewrite") if c in table.column_names), None)
        if id_col is None or text_col is None:
            raise DataError(path, f"expected columns id and text, found {table.column_names}")
        for row, (qid, text) in enumerate(zip(table[id_col].to_pylist(), table[text_col].to_pylist())):
            yield str(qid), text or "", row + 1
    elif suffix == ".json":
        for qid, text, line in _object_items(read_text(path), path):
            if not isinstance(text, str):
                raise DataError(path, f"query {qid!r}: expected a rewrite string", line)
            yield qid, text, line
    else:
        for line, (qid, text) in read_tsv(path, columns=2, header=False):
            yield qid.strip(), text, line


def read_rewrites(path: str | Path, teacher: str, id_map: IdMap | None = None, model: str | None = None,
                  unmapped: str = "error") -> pa.Table:
    """An authors' rewrite file (parquet ``id, text``; TSV ``id<TAB>text``; JSON ``{id: text}``) as
    the ``rewrites`` table of ``teacher``. ``model`` records the LLM that wrote them."""
    path = Path(path)
    mapped, missing = _mapper(id_map, unmapped, path)
    rows, seen = [], {}
    for qid, text, line in _rewrite_pairs(path):
        ours = mapped(qid)
        if ours is None:
            continue
        if ours in seen:
            raise DataError(path, f"second rewrite of query {ours!r} (first at {'row' if path.suffix == '.parquet' else 'line'} {seen[ours]})", line)
        seen[ours] = line
        text = " ".join(text.split())
        rows.append({"query_id": ours, "teacher": teacher, "text": text, "model": model, "prompt_hash": None,
                     "status": None if text else "empty"})
    if missing:
        log.warning("%s: %d query id(s) not in the id map (%s), e.g. %r", path, len(missing), unmapped, missing[0])
    return schemas.validate("rewrites", schemas.to_table("rewrites", rows), source=path)


def write_rewrites(table: pa.Table, path: str | Path, teacher: str | None = None,
                   id_map: IdMap | None = None) -> Path:
    """One teacher's rewrites in the authors' form: ``.parquet`` (``id, text``, as their Hugging Face
    datasets), ``.json`` (``{id: text}``) or otherwise ``id<TAB>text`` lines. ``id_map``: ours -> theirs."""
    table, _ = _one_source(table, teacher)
    ids = [id_map.get(q, q) if id_map else q for q in table["query_id"].to_pylist()]
    texts = [" ".join(t.split()) for t in table["text"].to_pylist()]  # a tab or newline would break a TSV
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        with atomic_path(path) as tmp:
            pq.write_table(pa.table({"id": ids, "text": texts}), tmp)
        return path
    if path.suffix.lower() == ".json":
        return write_text_atomic(path, json.dumps(dict(zip(ids, texts)), ensure_ascii=False))
    return write_text_atomic(path, "".join(f"{q}\t{t}\n" for q, t in zip(ids, texts)))
