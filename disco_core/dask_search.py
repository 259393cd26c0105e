"""Searching a sharded index on a Dask cluster: each worker keeps some shards loaded.

``DaskShardSearcher(index, client)`` splits the shards into one contiguous range per worker (by
documents), has each worker memory-map its range once, and then, for each search, sends the
queries to every worker, which searches its shards and merges them; the client merges the
workers' lists (see :mod:`disco_core.sharded_index` for why the merge is exact). Shard folders
must be readable by the workers at the same paths (a shared filesystem, or copies).

``distributed`` is imported by the caller that creates the client, never here: this module only
uses the client it is given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .index import InvertedIndex, ranked_ids
from .sharded_index import ShardedIndex, merge_top_k, search_shards

_LOADED: dict[str, InvertedIndex] = {}  # on each worker: its shards, memory-mapped once


def load_shards(folders: list[str]) -> int:
    """(On a worker) load the shards; returns how many documents they hold."""
    for folder in folders:
        if folder not in _LOADED:
            _LOADED[folder] = InvertedIndex.load(folder)
    return sum(_LOADED[f].n_docs for f in folders)


def search_loaded(folders: list[str], offsets: list[int], queries: sp.csr_matrix, k: int,
                  threads: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(On a worker) top-k over its shards, global positions."""
    load_shards(folders)
    return search_shards([_LOADED[f] for f in folders], offsets, queries, k, threads)


class DaskShardSearcher:
    """A :class:`ShardedIndex` searched by the workers of a ``distributed.Client``."""

    def __init__(self, index: ShardedIndex | str | Path, client, threads: int | None = None):
        self.index = index if isinstance(index, ShardedIndex) else ShardedIndex.load(index)
        self.client = client
        workers = client.scheduler_info(n_workers=-1)["workers"]
        if not workers:
            raise RuntimeError("the Dask cluster has no workers")
        self.assignment = _split(self.index, sorted(workers))
        # search threads per worker: its Dask threads, unless told
        self.threads = {w: threads or workers[w].get("nthreads") or None for w in self.assignment}
        loads = [client.submit(load_shards, folders, workers=[w], allow_other_workers=False, pure=False)
                 for w, (folders, _) in self.assignment.items()]
        if sum(client.gather(loads)) != self.index.n_docs:
            raise RuntimeError("the workers did not load every shard")

    def search_positions(self, queries: sp.spmatrix, k: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        queries = sp.csr_matrix(queries, dtype=np.float32)
        k = max(0, int(min(k, self.index.n_docs)))
        futures = [self.client.submit(search_loaded, folders, offsets, queries, k, self.threads[w], workers=[w],
                                      allow_other_workers=False, pure=False)
                   for w, (folders, offsets) in self.assignment.items()]
        return merge_top_k(self.client.gather(futures), k)

    def search_ids(self, queries: sp.spmatrix, query_ids: list[str], k: int = 1000) -> dict[str, list[tuple[str, float]]]:
        docs, scores = self.search_positions(queries, k)
        return ranked_ids(query_ids, docs, scores, self.index.doc_ids)


def _split(index: ShardedIndex, workers: list[str]) -> dict[str, tuple[list[str], list[int]]]:
    """Contiguous shard ranges of about equal documents, one per worker (fewer if few shards)."""
    folders = [str(f.resolve()) for f in index.shard_folders()]
    ends = index.offsets[1:]
    cuts = [int(np.searchsorted(ends, i * index.n_docs / len(workers), side="left")) + 1 for i in range(1, len(workers))]
    bounds = [0, *sorted(set(min(c, len(folders)) for c in cuts)), len(folders)]
    out = {}
    for worker, lo, hi in zip(workers, bounds[:-1], bounds[1:]):
        if hi > lo:
            out[worker] = (folders[lo:hi], [int(o) for o in index.offsets[lo:hi]])
    return out
