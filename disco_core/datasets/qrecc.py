"""QReCC (Apple; CC BY-SA 3.0 Unported): question rewriting in conversational context.

Source: ``apple/ml-qrecc`` (``dataset/qrecc_data.zip``, md5 as checked by datamaestro). Entries
``qrecc-train`` and ``qrecc-test`` share the cache folder ``qrecc``: one archive holds both splits.

File: ``qrecc_data.zip`` with ``qrecc_train.json`` (63,501 turns) and ``qrecc_test.json`` (16,451
turns), each one JSON array of turn records ``Context`` (earlier questions and answers,
alternating), ``Question``, ``Rewrite``, ``Answer``, ``Answer_URL``, ``Conversation_no``,
``Turn_no``, ``Conversation_source`` (``trec``, ``quac``, ``nq``). The JSON files are read from the
archive directly, wherever they sit in it (a nested folder is accepted); errors name
``<archive>/<member>`` and the line.

Decisions:

- query ids are ``<Conversation_no>_<Turn_no>``; ``history`` comes from ``Context`` (user first);
  ``domain`` is ``Conversation_source``.
- rewrites: each non-empty ``Rewrite`` is the ``human`` teacher's rewrite.
- qrels: QReCC has no passage judgments (the official evaluation counts a passage as relevant when
  it holds a span close to the gold answer, token F1 >= 0.8). What the file does record is the page
  each answer was taken from: every URL in ``Answer_URL`` (space-separated, possibly none) becomes
  a document-level judgment ``(query, URL, 1)``, the URL verbatim. These ids are web pages, not
  passages: they never match a passage id of the official collection (``<url>_p<i>``), so the
  validation report counts them all as missing from the corpus. Use them for answer-page
  analyses, not as passage-retrieval ground truth.
- no corpus: the passage collection (54M passages, ``passages.zip`` of 27.5 GB on Zenodo, or
  rebuilt from Common Crawl and the Wayback Machine with the repository's scripts) is not
  downloaded; the ``corpus`` table is empty.
"""

from __future__ import annotations

import zipfile
from functools import partial
from pathlib import Path, PurePosixPath

from .. import schemas
from ..download import RemoteFile
from ..errors import DataError
from ..io import decode_text
from ._rows import KeyedRows
from .registry import DatasetSpec, DatasetTables, register
from ._convqa import json_records, optional_text, turn_row

ARCHIVE = "qrecc_data.zip"
ARCHIVE_URL = "https://github.com/apple/ml-qrecc/raw/main/dataset/qrecc_data.zip"
ARCHIVE_MD5 = "f88fcc7ef3678cd6312080389c8abd67"
SPLITS = {"train": "63,501 turns", "test": "16,451 turns"}


def member_name(split: str) -> str:
    return f"qrecc_{split}.json"


def read_member(archive: Path, name: str) -> tuple[Path, str]:
    """The path (``<archive>/<member>``, for messages) and text of the archive member called
    ``name``, at any depth (``__MACOSX`` copies are ignored)."""
    if not archive.exists():
        raise DataError(archive, "file not found")
    try:
        with zipfile.ZipFile(archive) as zf:
            found = [m for m in zf.namelist()
                     if PurePosixPath(m).name == name and not m.startswith("__MACOSX/")]
            if not found:
                raise DataError(archive, f"archive has no {name}")
            if len(found) > 1:
                raise DataError(archive, f"archive has {len(found)} files named {name}: {', '.join(found)}")
            data = zf.read(found[0])
    except zipfile.BadZipFile as exc:
        raise DataError(archive, f"not a readable zip archive ({exc})") from None
    path = archive / found[0]
    return path, decode_text(path, data)


def load_qrecc(root: Path, split: str) -> DatasetTables:
    path, text = read_member(root / ARCHIVE, member_name(split))
    turns, qrels, rewrites = KeyedRows("query_id"), [], []
    for line, index, record in json_records(text, path):
        row = turn_row(record, path, line, index)
        qid = row["query_id"]
        where = f"record {index} ({qid})"
        row["domain"] = optional_text(record, "Conversation_source", path, line, where)
        turns.add(qid, row, path, line)
        rewrite = optional_text(record, "Rewrite", path, line, where)
        if rewrite:
            rewrites.append({"query_id": qid, "teacher": "human", "text": rewrite})
        urls = optional_text(record, "Answer_URL", path, line, where) or ""
        for url in dict.fromkeys(urls.split()):  # unique, in order
            qrels.append({"query_id": qid, "doc_id": url, "relevance": 1})
    return DatasetTables(
        corpus=schemas.to_table("corpus", []),
        turns=schemas.to_table("turns", turns.rows),
        qrels=schemas.to_table("qrels", qrels),
        rewrites=schemas.to_table("rewrites", rewrites),
    )


for _split, _counts in SPLITS.items():
    register(
        DatasetSpec(
            name=f"qrecc-{_split}",
            description=f"QReCC {_split}: {_counts} with human rewrites; no passage collection (Apple)",
            source="apple/ml-qrecc dataset/qrecc_data.zip",
            license="CC BY-SA 3.0 Unported",
            loader=partial(load_qrecc, split=_split),
            files=(RemoteFile(ARCHIVE, ARCHIVE_URL, md5=ARCHIVE_MD5),),
            cache_name="qrecc",
            rewrite_teacher="human",
        )
    )
del _split, _counts
