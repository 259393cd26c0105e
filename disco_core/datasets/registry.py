"""The dataset registry: a name gives a loader that produces the canonical tables.

Modelled on ir_datasets' registry: each entry names its source, licence and parser; ``load`` turns
the source files into :class:`DatasetTables` (see :mod:`disco_core.schemas`). Loaders report bad
records with the file and line (:class:`~disco_core.errors.DataError`), through the field checks of
:mod:`disco_core.datasets._rows`. ``domains`` lists a dataset's domains; ``load(..., domains=...)``
refuses unknown ones and names that could become paths (:class:`~disco_core.errors.ConfigError`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import schemas
from ..download import RemoteFile, fetch
from ..env import cache_dir
from ..errors import ConfigError, DataError

TABLES = ("corpus", "turns", "qrels", "rewrites")


@dataclass
class DatasetTables:
    """The canonical tables of a dataset. A very large collection comes as ``corpus_chunks`` (a
    function returning an iterator of corpus tables, streamed to disk with bounded memory) and
    ``corpus`` is then None. ``empty_passages``: ``file:line doc_id`` of each passage left out of
    the corpus because its text is empty (filled while a streamed corpus is read)."""

    corpus: pa.Table | None
    turns: pa.Table
    qrels: pa.Table
    rewrites: pa.Table
    corpus_chunks: Callable[[], Iterator[pa.Table]] | None = None
    empty_passages: list[str] = field(default_factory=list)

    def items(self):
        return ((name, getattr(self, name)) for name in TABLES)

    def domains(self) -> list[str]:
        """The domains of the turns (what ``filter_domains`` can keep), sorted."""
        return sorted(d for d in pc.unique(self.turns["domain"]).to_pylist() if d is not None)

    def filter_domains(self, domains: list[str] | None, dataset: str = "the dataset") -> DatasetTables:
        """Keep the turns of ``domains`` with their judgments and rewrites, and the passages of
        those domains; an unknown domain is a :class:`ConfigError` listing the known ones."""
        if not domains:
            return self
        check_domain_names(domains)
        known = self.domains()
        unknown = [d for d in domains if d not in known]
        if unknown:
            listed = f"its domains are {', '.join(known)}" if known else "it has no domains"
            raise ConfigError(f"dataset.domains: {dataset} has no domain {', '.join(map(repr, unknown))}; {listed}")
        if self.corpus is None:
            raise ConfigError("dataset.domains: domain filtering needs an in-memory corpus "
                              "(not with dataset.collection or a streamed collection)")
        keep = pa.array(domains)
        turns = self.turns.filter(pc.is_in(self.turns["domain"], keep))
        queries = turns["query_id"]
        return DatasetTables(
            corpus=self.corpus.filter(pc.is_in(self.corpus["domain"], keep)),
            turns=turns,
            qrels=self.qrels.filter(pc.is_in(self.qrels["query_id"], queries)),
            rewrites=self.rewrites.filter(pc.is_in(self.rewrites["query_id"], queries)),
            empty_passages=self.empty_passages,
        )


def check_domain_names(domains: list[str]) -> None:
    """Refuse domain names that are not plain names: empty, ``.``/``..``, or holding a path
    separator or a control character (domains name folders of the work dir)."""
    for name in domains:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"dataset.domains: {name!r} is not a domain name")
        if (name in (".", "..") or any(sep in name for sep in ("/", "\\", os.sep))
                or any(ord(c) < 0x20 for c in name)):
            raise ConfigError(f"dataset.domains: {name!r} is not a domain name (no path separators, "
                              "'.' or '..', or control characters)")


@dataclass(frozen=True)
class DatasetSpec:
    """One registry entry (one dataset and split).

    Local datasets name a ``default_path``; downloaded ones list their official ``files``, fetched
    into ``<data dir>/<cache_name>`` (splits of one dataset share the folder, so a collection is
    downloaded once). ``loader(folder)`` parses that folder into :class:`DatasetTables`."""

    name: str
    description: str
    source: str
    license: str
    loader: Callable[[Path], DatasetTables]
    default_path: Callable[[], Path] | None = None
    files: tuple[RemoteFile, ...] = ()
    cache_name: str | None = None
    # The teacher used by the ``rewrite`` query variant (human when the dataset has people's rewrites).
    rewrite_teacher: str = "human"
    # The ir_datasets id whose documents are the full collection, streamed into the corpus when
    # ``dataset.collection`` is on (ir_datasets downloads it on first use: tens of GB for CAsT).
    collection: str | None = None
    # The domains of the default source, when known without loading it (``domains`` lists them).
    domains: tuple[str, ...] = ()

    @property
    def folder_name(self) -> str:
        return self.cache_name or self.name


REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in REGISTRY:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    if spec.default_path is None and not spec.files:
        raise ValueError(f"dataset {spec.name!r} needs a default_path or files to download")
    REGISTRY[spec.name] = spec
    return spec


def get(name: str) -> DatasetSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; registered: {', '.join(sorted(REGISTRY))}") from None


def data_dir() -> Path:
    """Where downloaded datasets live: ``$DISCO_DATA_DIR`` or ``<project>/.cache/datasets``."""
    env = os.environ.get("DISCO_DATA_DIR")
    return Path(env) if env else cache_dir() / "datasets"


def source_path(name: str, path: str | Path | None = None, cache_dir: str | Path | None = None) -> Path:
    spec = get(name)
    if path:
        return Path(path)
    if spec.files:
        return Path(cache_dir or data_dir()) / spec.folder_name
    return spec.default_path()


def download(name: str, cache_dir: str | Path | None = None, mirror: str | Path | None = None,
             log=None) -> Path:
    """Fetch the dataset's official files (verified; complete ones are not fetched again)."""
    spec = get(name)
    root = source_path(name, None, cache_dir)
    for remote in spec.files:
        fetch(remote, root, mirror=mirror, log=log)
    return root


def source_files(name: str, path: str | Path | None = None, cache_dir: str | Path | None = None) -> list[Path]:
    """The files a dataset is read from (for cache keys)."""
    spec = get(name)
    root = source_path(name, path, cache_dir)
    if not root.exists():
        raise DataError(root, f"source folder of dataset {name!r} not found"
                        + (" (download it first)" if spec.files and not path else ""))
    if spec.files and not path:
        return [root / f.name for f in spec.files]
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and not p.name.endswith((".verified", ".part")))


def load(name: str, path: str | Path | None = None, domains: list[str] | None = None,
         cache_dir: str | Path | None = None, mirror: str | Path | None = None,
         collection: bool = False) -> DatasetTables:
    """Parse a dataset into canonical tables (downloading its files first when it has some).
    ``collection``: stream the registry's full document collection into the corpus as well."""
    spec = get(name)
    if collection and not spec.collection:
        raise ConfigError(f"dataset {name!r} names no document collection to stream (dataset.collection)")
    if domains:
        check_domain_names(domains)
    root = download(name, cache_dir, mirror) if spec.files and not path else source_path(name, path, cache_dir)
    if not root.exists():
        raise DataError(root, f"source folder of dataset {name!r} not found")
    tables = spec.loader(root)
    if not tables.turns.num_rows:
        raise DataError(root, f"dataset {name!r} has no turns (no conversations to retrieve for)")
    tables = tables.filter_domains(domains, f"dataset {name!r}")
    if collection:
        tables = _with_collection(tables, spec.collection)
    return DatasetTables(**{n: schemas.validate(n, t, source=root) if t is not None else None
                            for n, t in tables.items()}, corpus_chunks=tables.corpus_chunks,
                         empty_passages=tables.empty_passages)


def domains(name: str, path: str | Path | None = None, cache_dir: str | Path | None = None) -> list[str]:
    """The domains of a dataset's turns (the values ``dataset.domains`` may take), sorted: from the
    registry entry when it lists them and no ``path`` is given, else by loading the dataset."""
    spec = get(name)
    if spec.domains and not path:
        return sorted(spec.domains)
    return load(name, path, cache_dir=cache_dir).domains()


def _with_collection(tables: DatasetTables, collection: str) -> DatasetTables:
    """The dataset's own passages (if any) followed by the collection, streamed in chunks."""
    from . import _irds  # ir_datasets: slow to import, only needed here

    own = tables.corpus

    def chunks() -> Iterator[pa.Table]:
        if own is not None and own.num_rows:
            yield own
        yield from _irds.docs_chunks(collection)

    return DatasetTables(corpus=None, turns=tables.turns, qrels=tables.qrels, rewrites=tables.rewrites,
                         corpus_chunks=chunks, empty_passages=tables.empty_passages)


def validation_report(tables: DatasetTables, corpus_file: Path | None = None) -> dict:
    """Counts and problems of a parsed dataset (kept as validation.json beside the tables). A
    streamed corpus is read back from ``corpus_file``, one column and one batch at a time."""
    qrels, turns = tables.qrels, tables.turns
    positive = qrels.filter(pc.greater(qrels["relevance"], 0))
    grades = qrels.group_by("relevance").aggregate([([], "count_all")]).to_pydict()
    teachers = tables.rewrites.group_by("teacher").aggregate([([], "count_all")]).to_pydict()
    judged = qrels.to_pydict()
    judged_ids = set(judged["doc_id"])
    if tables.corpus is not None:
        batches = [tables.corpus["doc_id"]]
    elif corpus_file is not None:
        batches = (b.column(0) for b in pq.ParquetFile(corpus_file).iter_batches(columns=["doc_id"]))
    else:
        batches = []
    passages, found = 0, set()
    for ids in batches:
        passages += len(ids)
        found |= judged_ids.intersection(ids.to_pylist())
    missing_docs = judged_ids - found
    turns_missing = {q for q, d in zip(judged["query_id"], judged["doc_id"]) if d in missing_docs}
    empty = [q for q, u in zip(turns["query_id"].to_pylist(), turns["utterance"].to_pylist()) if not u.strip()]
    return {
        "conversations": pc.count_distinct(turns["conversation_id"]).as_py(),
        "turns": turns.num_rows,
        "turns_with_positive": pc.count_distinct(positive["query_id"]).as_py() if positive.num_rows else 0,
        "passages": passages,
        "qrels_by_grade": {str(g): c for g, c in sorted(zip(grades["relevance"], grades["count_all"]))},
        "rewrites_by_teacher": dict(zip(teachers["teacher"], teachers["count_all"])),
        "judged_passages_missing_from_corpus": len(missing_docs),
        "turns_with_judged_passages_missing": len(turns_missing),
        "empty_utterances": len(empty),
        # left out of the corpus (file:line doc_id); a judgment naming one fails the load
        "empty_passages_left_out": len(tables.empty_passages),
        "empty_passages": tables.empty_passages[:20],
        # not a count: a duplicate id fails the load, naming both places it was seen
        "duplicate_ids": "refused at load",
    }
