"""TopiOCQA (McGill-NLP; CC BY-NC-SA 4.0): open-domain conversations with topic switches.

Source: ``McGill-NLP/topiocqa`` ``download_data.py`` (Zenodo). Entries ``topiocqa-train`` and
``topiocqa-dev`` share the cache folder ``topiocqa``, so the passage collection is fetched once.

Files (no sizes or checksums are published; downloads are checked against none):

``topiocqa_{train,dev}.json``  one JSON array of turn records: ``Conversation_no``, ``Turn_no``,
                               ``Question``, ``Answer``, ``Topic``, ``Topic_section``, ``Context``
                               (earlier questions and answers alternating), ``Rationale``,
                               ``is_nq``, ``Gold_passage`` (``{id: "wiki:<n>", title, text}``).
                               JSON Lines (the Hugging Face mirror's form) is read as well.
``full_wiki_segments.tsv``     25,700,592 Wikipedia passages, tab-separated with a header
                               ``id text title``, read with ``csv.reader(delimiter="\\t")`` as the
                               official code does; ``id`` is an integer, ``title`` is
                               ``"<Page> [SEP] <Section>"``.

Decisions:

- query ids are ``<Conversation_no>_<Turn_no>``; ``history`` comes from ``Context`` (user first);
  ``domain`` is the turn's ``Topic`` (the Wikipedia page the turn is about) or None.
- qrels: the gold passage, relevance 1, with ``doc_id`` the collection's id (``wiki:14979882`` ->
  ``14979882``; DPR adds the ``wiki:`` prefix to the TSV id). A turn without ``Gold_passage`` has
  no judgment. Gold passages missing from the collection are not an error (the validation report
  counts them).
- no rewrites: TopiOCQA has no human rewrites (the ``rewrites`` table is empty).
- the corpus is streamed (``corpus_chunks``, tables of :data:`CHUNK_ROWS` rows), never held in
  memory whole; its ``title`` is rendered ``"<Page>: <Section>"`` (a literal ``[SEP]`` would be read
  as the separator token by BERT tokenizers), ``domain`` is None.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pyarrow as pa

from .. import schemas
from ..download import RemoteFile
from ..errors import DataError
from ..io import read_lines
from ._rows import KeyedRows, check_id
from .registry import DatasetSpec, DatasetTables, register
from ._convqa import optional_text, read_json_records, turn_row

CORPUS_FILE = "full_wiki_segments.tsv"
CORPUS_URL = "https://zenodo.org/record/6149599/files/data/wikipedia_split/full_wiki_segments.tsv"
SPLIT_URL = "https://zenodo.org/record/7709644/files/topiocqa_{split}.json"
SPLITS = {"train": "3,509 conversations, 45,450 turns", "dev": "205 conversations, 2,514 turns"}
CHUNK_ROWS = 100_000  # corpus rows per streamed table
PASSAGE_COLUMNS = ("id", "text", "title")
ID_PREFIX = "wiki:"


def conversations_file(split: str) -> str:
    return f"topiocqa_{split}.json"


def passage_id(value: object) -> str | None:
    """The collection id named by a gold passage id (``"wiki:123"`` or ``123`` -> ``"123"``)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    text = str(value).strip()
    if text.startswith(ID_PREFIX):
        text = text[len(ID_PREFIX):].strip()
    return text or None


def render_title(title: str) -> str:
    """``"Page [SEP] Section"`` -> ``"Page: Section"`` (a title without the separator is kept)."""
    return ": ".join(part for part in (p.strip() for p in title.split("[SEP]")) if part)


def read_passages(path: Path, chunk_rows: int | None = None, empty: list[str] | None = None) -> Iterator[pa.Table]:
    """Stream ``full_wiki_segments.tsv`` as corpus tables of ``chunk_rows`` rows (the last one
    shorter). Bad rows raise :class:`DataError` with the line where the row starts. A passage with
    empty text is left out and listed in ``empty`` (``file:line doc_id``), as in every layout."""
    size = chunk_rows or CHUNK_ROWS
    empty = [] if empty is None else empty
    empty.clear()
    # the lines come through io.read_lines: UTF-8 checked, another encoding named with its line
    reader = csv.reader((line for _, line in read_lines(path, keepends=True)), delimiter="\t")
    columns: dict[str, list] = {"doc_id": [], "title": [], "text": [], "domain": []}
    start, passages = 0, 0  # start: the line before the current row
    try:
        header = next(reader, None)
        if header is None or sorted(header) != sorted(PASSAGE_COLUMNS):
            raise DataError(path, f"expected a header with the columns {', '.join(PASSAGE_COLUMNS)}, "
                            f"found {header!r}", 1)
        at = {name: header.index(name) for name in PASSAGE_COLUMNS}
        start = reader.line_num
        for row in reader:
            if row:  # not a blank line
                if len(row) != len(PASSAGE_COLUMNS):
                    raise DataError(path, f"expected {len(PASSAGE_COLUMNS)} fields, found {len(row)}", start + 1)
                doc_id = check_id(row[at["id"]], "passage id", path, start + 1)
                if row[at["text"]].strip():
                    columns["doc_id"].append(doc_id)
                    columns["title"].append(render_title(row[at["title"]]))
                    columns["text"].append(row[at["text"]].strip())
                    columns["domain"].append(None)
                    passages += 1
                else:
                    empty.append(f"{path}:{start + 1} {doc_id}")
                if len(columns["doc_id"]) >= size:
                    yield schemas.to_table("corpus", columns)
                    columns = {name: [] for name in columns}
            start = reader.line_num  # the next row starts on the line after this one
    except csv.Error as exc:
        raise DataError(path, f"malformed TSV ({exc})", start + 1) from None
    if not passages:
        raise DataError(path, "the corpus has no passages" + (f" ({len(empty)}, all with empty text)" if empty else ""))
    if columns["doc_id"]:
        yield schemas.to_table("corpus", columns)


def load_topiocqa(root: Path, split: str) -> DatasetTables:
    corpus_path = root / CORPUS_FILE
    if not corpus_path.exists():
        raise DataError(corpus_path, "file not found")
    conv_path = root / conversations_file(split)
    turns, qrels, empty = KeyedRows("query_id"), [], []
    for line, index, record in read_json_records(conv_path):
        row = turn_row(record, conv_path, line, index)
        qid = row["query_id"]
        where = f"record {index} ({qid})"
        row["domain"] = optional_text(record, "Topic", conv_path, line, where)
        turns.add(qid, row, conv_path, line)
        gold = record.get("Gold_passage")
        if gold is None:
            continue
        if not isinstance(gold, dict):
            raise DataError(conv_path, f"{where}: Gold_passage must be an object", line)
        doc_id = passage_id(gold.get("id"))
        if gold.get("id") is not None and doc_id is None:
            raise DataError(conv_path, f"{where}: Gold_passage id {gold.get('id')!r} is not a passage id", line)
        if doc_id is not None:
            qrels.append({"query_id": qid, "doc_id": doc_id, "relevance": 1})
    return DatasetTables(
        corpus=None,
        turns=schemas.to_table("turns", turns.rows),
        qrels=schemas.to_table("qrels", qrels),
        rewrites=schemas.to_table("rewrites", []),
        corpus_chunks=lambda: read_passages(corpus_path, empty=empty),
        empty_passages=empty,
    )


for _split, _counts in SPLITS.items():
    register(
        DatasetSpec(
            name=f"topiocqa-{_split}",
            description=f"TopiOCQA {_split}: {_counts}; 25.7M Wikipedia passages (McGill-NLP)",
            source="McGill-NLP/topiocqa download_data.py (Zenodo records 7709644 and 6149599)",
            license="CC BY-NC-SA 4.0",
            loader=partial(load_topiocqa, split=_split),
            files=(
                RemoteFile(conversations_file(_split), SPLIT_URL.format(split=_split)),
                RemoteFile(CORPUS_FILE, CORPUS_URL),
            ),
            cache_name="topiocqa",
            rewrite_teacher="human",  # no human rewrites exist: the rewrite variant has nothing to read
        )
    )
del _split, _counts
