"""Sharded corpus encoding: plan shards of a corpus table, encode each one on its own.

``plan_shards`` reads the corpus Parquet once, in record batches (never the whole table), and
cuts it into shards of ``shard_size`` consecutive passages, each with a fingerprint of its rows
(``doc_id``, ``title``, ``text``): a shard whose rows change gets a new fingerprint and is
re-encoded alone. ``encode_shard`` reads one shard's rows (only the row groups that hold them) and
writes its vectors (``disco_core.vectors`` format) and, last, a seal naming the fingerprint and the
encoder settings; ``shard_done`` checks the seal. Every function takes plain values (a
:class:`ShardSpec` is a frozen dataclass, JSON-able with ``to_dict``), so each shard can be a
cached task of a workflow engine, on any worker.

Determinism: the encoder batches texts within windows of ``encoder.sort_window`` texts, so when
shard boundaries are multiples of it (checked) the shards' vectors, stacked, are bit-identical to
encoding the whole corpus in one call, on the same hardware and threads.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import ConfigError, DataError
from .io import write_json_atomic

COLUMNS = ("doc_id", "title", "text")  # what a shard's vectors depend on
READ_BATCH = 10_000


@dataclass(frozen=True)
class ShardSpec:
    """Rows ``start`` to ``stop`` (exclusive) of the corpus table at ``corpus``."""

    corpus: str
    number: int
    start: int
    stop: int
    fingerprint: str

    @property
    def name(self) -> str:
        return f"shard-{self.number:05d}"

    @property
    def size(self) -> int:
        return self.stop - self.start

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ShardSpec:
        return cls(**data)


def plan_shards(corpus: str | Path, shard_size: int = 100_000) -> list[ShardSpec]:
    """The shards of a corpus table: consecutive ranges of ``shard_size`` rows (the last one
    shorter), each fingerprinted. Reads the table once, one record batch at a time."""
    if shard_size < 1:
        raise ConfigError(f"shard_size must be a positive number of passages, got {shard_size}")
    corpus = Path(corpus)
    file = _parquet(corpus)
    specs, hasher, start, row = [], _RowsHasher(), 0, 0
    for batch in file.iter_batches(batch_size=READ_BATCH, columns=list(COLUMNS)):
        offset = 0
        while offset < batch.num_rows:
            take = min(batch.num_rows - offset, start + shard_size - row)
            hasher.update(batch.slice(offset, take))
            offset, row = offset + take, row + take
            if row - start == shard_size:
                specs.append(ShardSpec(str(corpus), len(specs), start, row, hasher.hexdigest()))
                hasher, start = _RowsHasher(), row
    if row > start:
        specs.append(ShardSpec(str(corpus), len(specs), start, row, hasher.hexdigest()))
    return specs


def read_shard(spec: ShardSpec, columns: tuple[str, ...] = COLUMNS) -> pa.Table:
    """The shard's rows, read from the row groups that hold them only."""
    schema = _parquet(Path(spec.corpus)).schema_arrow
    return pa.Table.from_batches(list(_shard_batches(spec, columns)), schema=pa.schema([schema.field(c) for c in columns]))


def shard_texts(spec: ShardSpec) -> tuple[list[str], list[str]]:
    """``(doc_ids, texts)`` of a shard, texts as the encoder reads them (title, then body)."""
    from .encoder import document_text

    table = read_shard(spec)
    titles, bodies = table["title"].to_pylist(), table["text"].to_pylist()
    return table["doc_id"].to_pylist(), [document_text(t, x) for t, x in zip(titles, bodies)]


def vector_path(folder: str | Path, spec: ShardSpec) -> Path:
    return Path(folder) / f"{spec.name}.npz"


def seal_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.stem + ".seal.json")


def encoder_settings(encoder) -> dict:
    """What a shard's vectors depend on besides its rows."""
    return {"model": encoder.name, "max_length": encoder.max_length, "sort_window": encoder.sort_window}


def shard_done(spec: ShardSpec, path: str | Path, settings: dict | None = None) -> bool:
    """True when ``path`` holds this shard's vectors, sealed for its current rows (and, when
    given, the same encoder settings)."""
    seal = seal_path(path)
    if not (Path(path).exists() and seal.exists()):
        return False
    sealed = json.loads(seal.read_text())
    return sealed.get("fingerprint") == spec.fingerprint and (settings is None or sealed.get("encoder") == settings)


def encode_shard(spec: ShardSpec, encoder, path: str | Path,
                 progress: Callable[[int, int], None] | None = None, settings: dict | None = None) -> dict:
    """Encode one shard into ``path`` (vectors and ids, then the seal). Returns what the seal says.
    ``settings``: what the seal records as the encoder (default :func:`encoder_settings`; a caller
    adds what else the vectors depend on, e.g. the model weights' digest)."""
    from .vectors import mean_nonzeros, save_vectors

    if spec.start % encoder.sort_window:
        raise ConfigError(f"shard {spec.name} starts at row {spec.start}, not a multiple of the encoder's "
                          f"sort_window ({encoder.sort_window}): make the shard size a multiple of it")
    seal = seal_path(path)
    seal.unlink(missing_ok=True)  # unsealed while (re)written
    doc_ids, texts = shard_texts(spec)
    matrix = encoder.encode(texts, progress=progress)
    save_vectors(path, matrix, doc_ids)
    info = {**spec.to_dict(), "encoder": settings or encoder_settings(encoder), "documents": matrix.shape[0],
            "doc_nonzeros": mean_nonzeros(matrix)}
    write_json_atomic(seal, info)
    return info


SHARD_LIST = "shards.json"


def write_shard_list(folder: str | Path, specs: list[ShardSpec]) -> Path:
    """``shards.json``: the folder's shard vector files in corpus order (written once all are sealed)."""
    return write_json_atomic(Path(folder) / SHARD_LIST, {"shards": [vector_path(folder, s).name for s in specs]})


def listed_shards(folder: str | Path) -> list[Path]:
    """The vector files ``write_shard_list`` listed, in corpus order."""
    folder = Path(folder)
    return [folder / name for name in json.loads((folder / SHARD_LIST).read_text())["shards"]]


def remove_other_shards(folder: str | Path, specs: list[ShardSpec]) -> None:
    """Remove shard files of an earlier plan (another shard size, a longer corpus): not this one's."""
    names = {vector_path(folder, s).stem for s in specs}
    for path in Path(folder).glob("shard-*"):
        if path.name.split(".")[0] not in names:
            path.unlink()


def encode_shards(specs: list[ShardSpec], encoder, folder: str | Path,
                  on_shard: Callable[[ShardSpec, dict | None], None] | None = None) -> list[Path]:
    """Encode the shards one after the other into ``folder``, skipping those already sealed for
    the same rows and settings (a killed run resumes at the next shard). ``on_shard(spec, info)``
    is called after each shard (``info`` None when it was skipped). Returns the vector files."""
    paths, settings = [], encoder_settings(encoder)
    for spec in specs:
        path = vector_path(folder, spec)
        info = None if shard_done(spec, path, settings) else encode_shard(spec, encoder, path)
        if on_shard:
            on_shard(spec, info)
        paths.append(path)
    return paths


@functools.lru_cache(maxsize=2)
def cached_encoder(model: str = "splade-tiny", max_length: int = 256, batch_size: int = 32, token_budget: int = 4096,
                   device: str | None = None, sort_window: int = 1000):
    """One encoder per process and settings (a worker keeps its model loaded between shards);
    ``device`` None: the GPU when there is one. Vectors computed on a GPU differ from CPU ones in
    the last bits: keep one kind of worker per collection."""
    from .encoder import SpladeEncoder
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return SpladeEncoder(model, max_length=max_length, batch_size=batch_size, token_budget=token_budget,
                         device=device, sort_window=sort_window)


def encode_shard_with(spec: ShardSpec, path: str | Path, encoder: dict, settings: dict | None = None) -> dict:
    """``encode_shard`` with the process's cached encoder for the settings in ``encoder`` (keyword
    arguments of :func:`cached_encoder`): plain arguments, for a task on a remote worker."""
    return encode_shard(spec, cached_encoder(**encoder), path, settings=settings)


# ---------------------------------------------------------------------------------------------


def _parquet(path: Path) -> pq.ParquetFile:
    if not path.exists():
        raise DataError(path, "corpus table not found")
    file = pq.ParquetFile(path)
    missing = [c for c in COLUMNS if c not in file.schema_arrow.names]
    if missing:
        raise DataError(path, f"corpus table lacks column(s) {missing}")
    return file


def _shard_batches(spec: ShardSpec, columns) -> Iterator[pa.RecordBatch]:
    file = _parquet(Path(spec.corpus))
    bounds = np.cumsum([0] + [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)])
    if spec.stop > bounds[-1]:
        raise DataError(spec.corpus, f"{spec.name} ends at row {spec.stop} but the table has {bounds[-1]} rows: plan again")
    groups = [i for i in range(file.num_row_groups) if bounds[i] < spec.stop and bounds[i + 1] > spec.start]
    if not groups:
        return
    row = int(bounds[groups[0]])
    for batch in file.iter_batches(batch_size=READ_BATCH, columns=list(columns), row_groups=groups):
        lo, hi = max(spec.start - row, 0), min(spec.stop - row, batch.num_rows)
        if hi > lo:
            yield batch.slice(lo, hi - lo)
        row += batch.num_rows


class _RowsHasher:
    """A digest of string columns that does not depend on how the rows are batched: per column,
    one stream of value lengths and one of value bytes."""

    def __init__(self):
        self.streams = {(c, part): hashlib.blake2b(digest_size=16) for c in COLUMNS for part in ("len", "data")}

    def update(self, batch: pa.RecordBatch) -> None:
        for column in COLUMNS:
            lengths, data = _string_parts(batch.column(column))
            self.streams[column, "len"].update(lengths.tobytes())
            self.streams[column, "data"].update(data)

    def hexdigest(self) -> str:
        total = hashlib.blake2b(digest_size=16)
        for key in sorted(self.streams):
            total.update(self.streams[key].digest())
        return total.hexdigest()


def _string_parts(array: pa.Array) -> tuple[np.ndarray, memoryview]:
    """Value lengths (int64) and the values' bytes of a string array slice, without copies."""
    array = array.cast(pa.large_string()) if not pa.types.is_large_string(array.type) else array
    if array.null_count:
        raise DataError(None, "corpus rows must not have null doc_id, title or text")
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    data = memoryview(data_buffer)[offsets[0] : offsets[-1]] if data_buffer is not None else memoryview(b"")
    return np.diff(offsets), data
