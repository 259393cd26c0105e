"""ir_datasets glue for TREC CAsT and iKAT: its parsers over disco's downloaded files, and the
``disco/...`` entries registered with ir_datasets.

This module is imported lazily (by the loaders), because ir_datasets is slow to import and creates
its home folder (``$IR_DATASETS_HOME``, default ``~/.ir_datasets``) on import. Nothing here
downloads: every component reads a file of a disco dataset folder.

CAsT uses ir_datasets' own classes (``CastQueries`` with ``Cast2019Query`` .. ``Cast2022Query``,
``TrecQrels`` with the CAsT grade definitions), also for 2021 and 2022, which ir_datasets 0.6.3
defines but does not register. iKAT 2023 is not in ir_datasets 0.6.3: :class:`IkatQueries` follows
the ``trec-ikat`` loader proposed to ir_datasets (PR #264: same record and query ids).
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import ir_datasets
from ir_datasets.datasets import trec_cast
from ir_datasets.datasets.base import Dataset
from ir_datasets.formats import BaseQueries, TrecQrel, TrecQrels
from ir_datasets.util import BaseDownload, LocalDownload

from ..errors import DataError
from ._rows import check_id
from ._trec import record_lines

# Graded 0 (fails to meet) .. 4 (fully meets): CAsT 2019-2022 evaluation qrels and iKAT 2023.
QRELS_DEFS: dict[int, str] = trec_cast.QRELS_DEFS
CAST_QUERY_CLASSES: dict[int, type] = {
    2019: trec_cast.Cast2019Query,
    2020: trec_cast.Cast2020Query,
    2021: trec_cast.Cast2021Query,
    2022: trec_cast.Cast2022Query,
}
IKAT_NAMESPACE = "trec-ikat"


class DataFile(BaseDownload):
    """A file of a disco dataset folder, located each time it is read (so a registered entry
    follows ``$DISCO_DATA_DIR``). It is never downloaded from here: ``disco`` downloads it."""

    def __init__(self, folder: Callable[[], Path], name: str, dataset: str):
        self._folder, self._name, self._dataset = folder, name, dataset

    def __repr__(self) -> str:
        return f"DataFile({self._dataset!r}, {self._name!r})"

    def path(self, force: bool = True) -> Path:
        path = self._folder() / self._name
        if force and not path.exists():
            raise FileNotFoundError(f"{path} (download it first: disco_core.datasets.download({self._dataset!r}))")
        return path

    @contextlib.contextmanager
    def stream(self) -> Iterator[Any]:
        with self.path().open("rb") as handle:
            yield handle


def local(path: Path) -> LocalDownload:
    """ir_datasets' wrapper of a local file (no folder is created)."""
    return LocalDownload(path, mkdir=False)


class IkatQuery(NamedTuple):
    """One iKAT 2023 turn, as in the proposed ir_datasets ``trec-ikat`` loader."""

    query_id: str  # f"{topic number}_{turn_id}", e.g. "9-1_3"
    topic_title: str
    topic_ptkb: dict[str, str]
    topic_number: str
    turn_id: int
    utterance: str
    resolved_utterance: str
    response: str

    def default_text(self) -> str:
        """utterance"""
        return self.utterance


class IkatQueries(BaseQueries):
    """The turns of an iKAT topics file (a JSON array of topics with ``ptkb`` and ``turns``)."""

    def __init__(self, dlc: BaseDownload):
        super().__init__()
        self._dlc = dlc

    def queries_iter(self) -> Iterator[IkatQuery]:
        with self._dlc.stream() as stream:
            topics = json.load(stream)
        for topic in topics:
            for turn in topic["turns"]:
                yield IkatQuery(f"{topic['number']}_{turn['turn_id']}", topic["title"], topic["ptkb"],
                                topic["number"], turn["turn_id"], turn["utterance"],
                                turn["resolved_utterance"], turn["response"])

    def queries_cls(self) -> type:
        return IkatQuery

    def queries_namespace(self) -> str:
        return IKAT_NAMESPACE

    def queries_lang(self) -> str:
        return "en"


def cast_dataset(year: int, topics: BaseDownload, qrels: BaseDownload) -> Dataset:
    """A CAsT year as ir_datasets' ``trec-cast`` defines it, minus the document collection."""
    return Dataset(trec_cast.CastQueries(topics, CAST_QUERY_CLASSES[year]), TrecQrels(qrels, QRELS_DEFS))


def ikat_dataset(topics: BaseDownload, qrels: BaseDownload) -> Dataset:
    """iKAT 2023 (test topics and their qrels), minus the ClueWeb22 passage collection."""
    return Dataset(IkatQueries(topics), TrecQrels(qrels, QRELS_DEFS))


_REGISTERED: set[str] = set()


def register(name: str, dataset: Callable[[], Dataset]) -> None:
    """Register ``name`` with ir_datasets once (later calls do nothing)."""
    if name not in _REGISTERED:
        ir_datasets.registry.register(name, dataset())
        _REGISTERED.add(name)


def queries(dataset: Dataset, path: Path, lines: Sequence[int]) -> Iterator[tuple[int | None, Any]]:
    """``(line, query)`` for each query ir_datasets reads from the topics file ``path`` (``lines``:
    the line of each record, in file order); a record it cannot read raises :class:`DataError`."""
    return _located(dataset.queries_iter(), path, lines, "ir_datasets could not read this turn")


def turn_queries(dataset: Dataset, path: Path, located: Sequence[Any]) -> list[tuple[Any, Any]]:
    """``(turn, query)`` pairs: each turn found in the topics file ``path`` (``located``: objects
    with a ``line``, in file order) with the query ir_datasets reads for it; the two must agree."""
    read = [query for _, query in queries(dataset, path, [t.line for t in located])]
    if len(read) != len(located):
        raise DataError(path, f"ir_datasets read {len(read)} turns, the file has {len(located)}")
    for turn, query in zip(located, read):  # ids go into TREC run files: no whitespace
        check_id(query.query_id, f"{turn.where}: query id", path, turn.line)
    return list(zip(located, read))


def qrels(dataset: Dataset, path: Path) -> Iterator[tuple[int | None, TrecQrel]]:
    """``(line, qrel)`` for each judgment ir_datasets' ``TrecQrels`` reads from ``path``; a bad line
    (not 4 columns, a grade that is not an integer) raises :class:`DataError` naming it."""
    return _located(dataset.qrels_iter(), path, record_lines(path), "bad TREC qrels line (query iteration doc grade)")


def _located(items: Iterable[Any], path: Path, lines: Sequence[int], what: str) -> Iterator[tuple[int | None, Any]]:
    iterator = iter(items)
    for index in itertools.count():
        line = lines[index] if index < len(lines) else None
        try:
            item = next(iterator)
        except StopIteration:
            return
        except KeyError as exc:
            raise DataError(path, f"{what}: missing field {exc.args[0]!r}", line) from None
        except (RuntimeError, TypeError, ValueError) as exc:  # TrecQrels: "expected 4 columns, got 3"
            raise DataError(path, f"{what}: {exc}", line) from None
        yield line, item


def docs_chunks(dataset_id: str, chunk_rows: int = 100_000) -> Iterator[Any]:
    """Stream the documents of the ir_datasets dataset ``dataset_id`` as corpus tables of
    ``chunk_rows`` rows (ir_datasets downloads the collection on first use). Title and text come
    from the document's ``title`` and ``text`` fields (``body`` or ``default_text()`` otherwise)."""
    from .. import schemas

    dataset = ir_datasets.load(dataset_id)
    if not dataset.has_docs():
        raise DataError(None, f"ir_datasets dataset {dataset_id!r} has no documents")
    rows: list[dict] = []
    for doc in dataset.docs_iter():
        text = getattr(doc, "text", None) or getattr(doc, "body", None) or doc.default_text()
        rows.append({"doc_id": doc.doc_id, "title": getattr(doc, "title", "") or "", "text": text, "domain": None})
        if len(rows) == chunk_rows:
            yield schemas.to_table("corpus", rows)
            rows = []
    if rows:
        yield schemas.to_table("corpus", rows)
