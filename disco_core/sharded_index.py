"""A collection as several indexes (shards over consecutive document ranges), searched exactly.

Each shard is an :class:`~disco_core.index.InvertedIndex` folder built from its own vectors (one
shard's memory at a time); ``shards.json`` (written last, the seal) lists them in document order.
A search runs the shards one after the other, or on Dask workers that each keep some shards
loaded (:class:`DaskShardSearcher`), and merges their top-k lists.

Exactness: a document's score is computed by the same additions in its shard as in one index
over everything (query terms in ascending order), so it is bit-identical; each shard returns its
k best by (score desc, position asc); the global top k is therefore contained in the union of the
shards' lists, and merging them by (score desc, global position asc) gives the same documents,
scores and tie order as the single index.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from . import _index_kernels as kernels
from .errors import DataError
from .index import InvertedIndex, default_threads, ranked_ids
from .io import write_json_atomic

MANIFEST = "shards.json"


class ShardedIndex:
    """Shards as one index: ``build``/``assemble``, ``load``, ``search``, ``search_ids``."""

    def __init__(self, folder: str | Path, entries: list[dict], shards: list[InvertedIndex] | None = None):
        self.folder, self.entries = Path(folder), entries
        self.offsets = np.concatenate([[0], np.cumsum([e["n_docs"] for e in entries])]).astype(np.int64)
        self._shards = shards
        self._ids: dict[int, list[str]] = {}

    # ----------------------------------------------------------------------------- building
    @staticmethod
    def build_shard(vector_file: str | Path, folder: str | Path, meta: dict | None = None, **kwargs) -> InvertedIndex:
        """One shard's index from its vector file (one unit of work: memory is that shard's)."""
        return InvertedIndex.from_vector_files(folder, [vector_file], meta, **kwargs)

    @classmethod
    def build(cls, folder: str | Path, vector_files: list[str | Path], meta: dict | None = None,
              **kwargs) -> ShardedIndex:
        """A shard per vector file, in order, under ``folder``; shards already built from the same
        file (and, when the vectors are sealed by ``disco_core.shards``, the same rows) are kept."""
        folder = Path(folder)
        names = []
        for number, path in enumerate(vector_files):
            name, source = f"shard-{number:05d}", _source(path)
            if _built_from(folder / name) != source:
                cls.build_shard(path, folder / name, {**(meta or {}), "source": source}, **kwargs)
            names.append(name)
        return cls.assemble(folder, names)

    @classmethod
    def assemble(cls, folder: str | Path, shard_folders: list[str | Path]) -> ShardedIndex:
        """Seal shards already built (folders relative to ``folder`` or absolute) as one index."""
        folder = Path(folder)
        entries = []
        for shard in shard_folders:
            meta_path = folder / shard / "meta.json"
            if not meta_path.exists():
                raise DataError(folder / shard, "not an index folder (meta.json missing): build the shard first")
            meta = json.loads(meta_path.read_text())
            entries.append({"folder": str(shard), "n_docs": meta["n_docs"], "nnz": meta["nnz"],
                            "vocab_size": meta["vocab_size"]})
        if len({e["vocab_size"] for e in entries}) > 1:
            raise DataError(folder, "shards have different vocabulary sizes")
        write_json_atomic(folder / MANIFEST, {"shards": entries})
        return cls(folder, entries)

    @classmethod
    def load(cls, folder: str | Path) -> ShardedIndex:
        """The manifest only; shards are memory-mapped when first searched."""
        folder = Path(folder)
        path = folder / MANIFEST
        if not path.exists():
            raise DataError(folder, f"not a sharded index ({MANIFEST} missing)")
        return cls(folder, json.loads(path.read_text())["shards"])

    # ----------------------------------------------------------------------------- reading
    @property
    def n_docs(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_shards(self) -> int:
        return len(self.entries)

    @property
    def nnz(self) -> int:
        return int(sum(e["nnz"] for e in self.entries))

    @property
    def doc_ids(self) -> _IdLookup:
        """``doc_ids[position]`` as for one index (each shard's ids read when first needed)."""
        return _IdLookup(self)

    def shard_folders(self) -> list[Path]:
        return [self.folder / e["folder"] for e in self.entries]

    @property
    def shards(self) -> list[InvertedIndex]:
        if self._shards is None:
            self._shards = [InvertedIndex.load(f) for f in self.shard_folders()]
        return self._shards

    def search_positions(self, queries: sp.spmatrix, k: int = 1000, threads: int | None = None,
                         batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Top-k over all shards: ``(global positions int64, scores)``, ``n_queries x k``."""
        return search_shards(self.shards, self.offsets[:-1], queries, min(k, self.n_docs), threads, batch_size)

    def search(self, queries: sp.spmatrix, k: int = 1000, **kwargs) -> tuple[np.ndarray, np.ndarray]:
        return self.search_positions(queries, k, **kwargs)

    def search_ids(self, queries: sp.spmatrix, query_ids: list[str], k: int = 1000, **kwargs) -> dict[str, list[tuple[str, float]]]:
        docs, scores = self.search_positions(queries, k, **kwargs)
        return ranked_ids(query_ids, docs, scores, self.doc_ids)

    def doc_id(self, position: int) -> str:
        shard = int(np.searchsorted(self.offsets, position, side="right")) - 1
        if shard not in self._ids:  # one shard's ids at a time, when first needed
            self._ids[shard] = json.loads((self.shard_folders()[shard] / "doc_ids.json").read_text())
        return self._ids[shard][position - self.offsets[shard]]


class _IdLookup:
    """Global positions to document ids, shard by shard, loaded lazily."""

    def __init__(self, index: ShardedIndex):
        self.index = index

    def __len__(self) -> int:
        return self.index.n_docs

    def __getitem__(self, position: int) -> str:
        return self.index.doc_id(int(position))


def search_shards(shards: list[InvertedIndex], offsets, queries: sp.spmatrix, k: int, threads: int | None = None,
                  batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Top-k over shards, global positions. Rows are ``k`` wide whatever the shards' sizes (the
    caller bounds k by the collection).

    Many queries: shard after shard, each on all threads, merging as we go (memory: two
    ``n x k`` lists) and passing on the k-th score so far, which a later shard's documents must
    beat. Few queries (fewer lane groups than threads): the shards run side by side, one thread
    each, and their lists are merged at the end."""
    queries = sp.csr_matrix(queries, dtype=np.float32)
    k = max(0, int(k))
    threads = max(1, int(threads or default_threads()))
    best_d = np.full((queries.shape[0], k), -1, dtype=np.int64)
    best_s = np.zeros((queries.shape[0], k), dtype=np.float32)
    if k == 0 or not shards:
        return best_d, best_s
    if len(shards) > 1 and threads > 1 and queries.shape[0] <= kernels.LANES * (threads - 1):
        def one(item):
            shard, offset = item
            docs, scores = shard.search_positions(queries, k, batch_size, threads=1)
            return np.where(docs >= 0, docs + int(offset), -1), scores

        with ThreadPoolExecutor(min(threads, len(shards))) as pool:
            lists = list(pool.map(one, zip(shards, offsets)))
        return merge_top_k([(pad(d, k), pad(s, k)) for d, s in lists], k)
    for shard, offset in zip(shards, offsets):
        # a later shard's document must beat the k-th best so far (on a tie, the earlier wins)
        floors = np.where(best_d[:, -1] >= 0, best_s[:, -1], 0).astype(np.float32)
        docs, scores = shard.search_positions(queries, k, batch_size, threads, floors)
        docs = np.where(docs >= 0, docs + int(offset), -1)
        best_d, best_s = merge_top_k([(best_d, best_s), (pad(docs, k), pad(scores, k))], k)
    return best_d, best_s


def merge_top_k(lists: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-query top lists (positions -1 past the end), each sorted by (score desc,
    position asc), into the top k."""
    docs = np.stack([d for d, _ in lists], axis=1)
    scores = np.stack([s for _, s in lists], axis=1)
    return kernels.merge_sorted(docs, scores, (docs >= 0).sum(axis=2), k)


def pad(array: np.ndarray, k: int) -> np.ndarray:
    """Rows widened to k columns (-1 / 0) when a shard has fewer than k documents."""
    if array.shape[1] == k:
        return array
    fill = -1 if array.dtype.kind == "i" else 0
    out = np.full((array.shape[0], k), fill, dtype=array.dtype)
    out[:, : array.shape[1]] = array
    return out


def _source(path: str | Path) -> dict:
    from .shards import seal_path

    path, seal = Path(path), seal_path(path)
    if seal.exists():  # sealed shard vectors: their rows' fingerprint
        return {"vectors": str(path.resolve()), "fingerprint": json.loads(seal.read_text()).get("fingerprint")}
    if not path.exists():
        raise DataError(path, "vector file not found")
    stat = path.stat()
    return {"vectors": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _built_from(folder: Path) -> dict | None:
    meta = folder / "meta.json"
    return json.loads(meta.read_text()).get("source") if meta.exists() else None
