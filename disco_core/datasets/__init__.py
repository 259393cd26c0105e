"""The dataset registry: a name gives a loader that produces the canonical tables.

Modelled on ir_datasets' registry: each entry names its source, licence and parser; ``load`` turns
the source files into :class:`DatasetTables` (see :mod:`disco_core.schemas`). Loaders report bad
records with the file and line (:class:`~disco_core.errors.DataError`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .. import schemas
from ..errors import ConfigError, DataError

TABLES = ("corpus", "turns", "qrels", "rewrites")


@dataclass
class DatasetTables:
    corpus: pa.Table
    turns: pa.Table
    qrels: pa.Table
    rewrites: pa.Table

    def items(self):
        return ((name, getattr(self, name)) for name in TABLES)

    def filter_domains(self, domains: list[str] | None) -> DatasetTables:
        if not domains:
            return self
        keep = pa.array(domains)
        turns = self.turns.filter(pc.is_in(self.turns["domain"], keep))
        queries = turns["query_id"]
        return DatasetTables(
            corpus=self.corpus.filter(pc.is_in(self.corpus["domain"], keep)),
            turns=turns,
            qrels=self.qrels.filter(pc.is_in(self.qrels["query_id"], queries)),
            rewrites=self.rewrites.filter(pc.is_in(self.rewrites["query_id"], queries)),
        )


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    source: str
    license: str
    loader: Callable[[Path], DatasetTables]
    default_path: Callable[[], Path]
    # The teacher used by the ``rewrite`` query variant (human when the dataset has people's rewrites).
    rewrite_teacher: str = "human"
    source_files: tuple[str, ...] = field(default=())


REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in REGISTRY:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    return spec


def get(name: str) -> DatasetSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; registered: {', '.join(sorted(REGISTRY))}") from None


def source_path(name: str, path: str | Path | None = None) -> Path:
    return Path(path) if path else get(name).default_path()


def source_files(name: str, path: str | Path | None = None) -> list[Path]:
    """The files a dataset is read from (for cache keys): every file under its source folder."""
    root = source_path(name, path)
    if not root.exists():
        raise DataError(root, f"source folder of dataset {name!r} not found")
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def load(name: str, path: str | Path | None = None, domains: list[str] | None = None) -> DatasetTables:
    spec = get(name)
    root = source_path(name, path)
    if not root.exists():
        raise DataError(root, f"source folder of dataset {name!r} not found")
    tables = spec.loader(root).filter_domains(domains)
    return DatasetTables(**{n: schemas.validate(n, t, source=root) for n, t in tables.items()})


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


from . import embedded, mtrag  # noqa: E402,F401  (registers the built-in datasets)
