"""The exact inverted index over SPLADE document vectors, and batched top-k retrieval.

Postings are term-major with skips at every block of documents, documents stored as ``uint16``
offsets in their block and weights as ``uint16`` codes when that is exact (see
:mod:`disco_core.index_build`), as ``.npy`` arrays memory-mapped on load. Retrieval is
term-at-a-time over cache-sized tiles of documents, sixteen queries at a time (see
:mod:`disco_core._index_kernels`), on threads over query groups and, for few queries, over ranges
of blocks: exact scores, no pruning. Only documents sharing at least one term with the query
(score > 0) are returned; ties are broken by document position, so results are deterministic and
a document's score does not depend on the batch, the threads or the sharding.

An index is built in memory from a matrix (``build``) or written to disk from vectors streamed in
document order (``write``, ``from_vector_files``), one chunk of vectors in memory at a time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .errors import DataError
from .index_build import ARRAYS, BLOCK_DOCS, IdsWriter, build_arrays, write_arrays

from . import _index_kernels as kernels  # numba compiles once (~15 s), cached in env's NUMBA_CACHE_DIR

FORMAT_VERSION = 2
GROUP_MIN = 2  # from this many queries on, they are scored sixteen at a time
TILE_DOCS = {True: 4096, False: 16384}  # documents scored per tile: sixteen lanes / one lane


class InvertedIndex:
    """Exact inverted index: ``build``/``write``, ``save``/``load``, ``search``."""

    def __init__(self, arrays: dict[str, np.ndarray], doc_ids: list[str], layout: dict, meta: dict | None = None):
        self.skips, self.docs = arrays["skips"], arrays["docs"]
        self.weights, self.codebook = arrays["weights"], arrays["codebook"]
        self.doc_ids = doc_ids if isinstance(doc_ids, list) else list(doc_ids)
        self.block_docs, self.vocab_size = int(layout["block_docs"]), int(layout["vocab_size"])
        self.meta = dict(meta or {})
        if len(self.doc_ids) >= 2**31:
            raise ValueError("an index holds fewer than 2**31 documents: shard the collection")

    @classmethod
    def build(cls, doc_vectors: sp.spmatrix, doc_ids: list[str], meta: dict | None = None,
              block_docs: int = BLOCK_DOCS, weights: str = "auto") -> InvertedIndex:
        """An in-memory index of a document matrix (rows in ``doc_ids`` order)."""
        if doc_vectors.shape[0] != len(doc_ids):
            raise ValueError(f"{doc_vectors.shape[0]} vectors for {len(doc_ids)} document ids")
        arrays, layout = build_arrays(doc_vectors, block_docs, weights)
        return cls(arrays, list(doc_ids), layout, meta)

    @classmethod
    def write(cls, folder: str | Path, chunks: Callable[[], Iterable[tuple[sp.spmatrix, list[str]]]],
              vocab_size: int, meta: dict | None = None, block_docs: int = BLOCK_DOCS,
              weights: str = "auto") -> InvertedIndex:
        """Write an index into ``folder`` from ``chunks()``: ``(vectors, ids)`` in document order,
        any chunk size (called twice, one pass each; see :mod:`disco_core.index_build`: memory is
        one chunk, never the collection). Returns it loaded (memory-mapped). ``meta.json`` is
        written last: a folder without it is an unfinished build."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "meta.json").unlink(missing_ok=True)  # unsealed until the end
        ids = IdsWriter(folder / "doc_ids.json")

        def vectors(first_pass: bool):
            for matrix, chunk_ids in chunks():
                if matrix.shape[0] != len(chunk_ids):
                    raise ValueError(f"{matrix.shape[0]} vectors for {len(chunk_ids)} document ids")
                if first_pass:
                    ids.add(chunk_ids)
                yield matrix

        passes = iter([True, False])  # ids are written during the first of the two passes
        layout = write_arrays(folder, lambda: vectors(next(passes)), vocab_size, block_docs, weights)
        ids.close()
        _seal(folder, layout, meta)
        return cls.load(folder)

    @classmethod
    def from_vector_files(cls, folder: str | Path, paths: Iterable[str | Path], meta: dict | None = None,
                          **kwargs) -> InvertedIndex:
        """Write one index over vector files (``disco_core.vectors`` format), read one at a time."""
        from .vectors import load_vectors, vector_file_dimensions

        paths = list(paths)
        if not paths:
            raise ValueError("no vector files given")
        return cls.write(folder, lambda: (load_vectors(p) for p in paths), vector_file_dimensions(paths[0]), meta,
                         **kwargs)

    @property
    def n_docs(self) -> int:
        return len(self.doc_ids)

    @property
    def nnz(self) -> int:
        return int(self.docs.shape[0])

    @property
    def n_blocks(self) -> int:
        return (self.n_docs + self.block_docs - 1) // self.block_docs

    @property
    def nbytes(self) -> int:
        """Bytes of the posting arrays (what is memory-mapped)."""
        return int(sum(getattr(self, name).nbytes for name in ARRAYS))

    def layout(self) -> dict:
        return {"n_docs": self.n_docs, "nnz": self.nnz, "vocab_size": self.vocab_size, "block_docs": self.block_docs,
                "weights": "uint16 codes" if self.weights.dtype == np.uint16 else "float32"}

    def save(self, folder: str | Path) -> Path:
        """Write into ``folder`` (files replaced atomically one by one; meta.json last, as the seal)."""
        from .io import atomic_path, write_json_atomic

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "meta.json").unlink(missing_ok=True)
        for name in ARRAYS:
            with atomic_path(folder / f"{name}.npy") as tmp:
                with tmp.open("wb") as handle:
                    np.save(handle, getattr(self, name))
        write_json_atomic(folder / "doc_ids.json", self.doc_ids)
        _seal(folder, self.layout(), self.meta)
        return folder

    @classmethod
    def load(cls, folder: str | Path, mmap: bool = True) -> InvertedIndex:
        folder = Path(folder)
        meta_path = folder / "meta.json"
        if not meta_path.exists():
            raise DataError(folder, "not an index folder (meta.json missing)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataError(meta_path, f"index format {meta.get('format_version')} is not {FORMAT_VERSION}; rebuild it")
        mode = "r" if mmap else None
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode=mode) for name in ARRAYS}
        doc_ids = json.loads((folder / "doc_ids.json").read_text())
        index = cls(arrays, doc_ids, meta, {k: v for k, v in meta.items() if k not in _LAYOUT_KEYS})
        expected_skips = (index.n_blocks + 1) * index.vocab_size
        if index.n_docs != meta["n_docs"] or index.nnz != meta["nnz"] or index.skips.shape[0] != expected_skips:
            raise DataError(folder, "index files do not match meta.json; rebuild it")
        return index

    def search(self, queries: sp.spmatrix, k: int = 1000, batch_size: int = 4096,
               threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k for each query row: ``(doc positions, scores)``, each ``n_queries x k``;
        positions are -1 (score 0) past the last document that shares a term with the query."""
        docs, scores = self.search_positions(queries, k, batch_size, threads)
        return docs.astype(np.int32), scores

    def search_positions(self, queries: sp.spmatrix, k: int = 1000, batch_size: int = 4096,
                         threads: int | None = None, floors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``search`` with int64 positions (what a sharded index adds its offsets to).

        ``floors``: per query, a score documents must exceed to be returned (a sharded search
        passes the k-th best score of the shards before this one, which later documents must beat)."""
        queries = self._prepare(queries)
        k = max(0, int(min(k, self.n_docs)))
        if k == 0 or queries.shape[0] == 0:  # the kernels' heaps need k >= 1
            return np.full((queries.shape[0], k), -1, dtype=np.int64), np.zeros((queries.shape[0], k), np.float32)
        threads = max(1, int(threads or default_threads()))
        floors = np.zeros(queries.shape[0], np.float32) if floors is None else np.asarray(floors, np.float32)
        docs_out, scores_out = [], []
        for start in range(0, queries.shape[0], batch_size):
            docs, scores = self._search_batch(queries[start : start + batch_size], k, threads,
                                              floors[start : start + batch_size])
            docs_out.append(docs)
            scores_out.append(scores)
        return np.concatenate(docs_out), np.concatenate(scores_out)

    def _prepare(self, queries: sp.spmatrix) -> sp.csr_matrix:
        queries = sp.csr_matrix(queries, dtype=np.float32, copy=True)
        if queries.shape[1] != self.vocab_size:
            raise ValueError(f"queries have {queries.shape[1]} dimensions, index has {self.vocab_size}")
        queries.sum_duplicates()  # also sorts each row's terms: contributions add in term order
        return queries

    def _search_batch(self, batch: sp.csr_matrix, k: int, threads: int, floors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_queries = batch.shape[0]
        grouped = n_queries >= GROUP_MIN
        group = kernels.LANES  # queries a work item takes (scored together when grouped)
        n_groups = -(-n_queries // group)
        # few groups: split the blocks too, two chunks per thread, so that every thread has work
        n_chunks = max(1, min(self.n_blocks, -(-2 * threads // n_groups))) if threads > 1 else 1
        per_chunk = -(-self.n_blocks // n_chunks)
        tile = max(1, TILE_DOCS[grouped] // self.block_docs)
        out_d = np.full((n_queries, n_chunks, k), -1, dtype=np.int64)
        out_s = np.zeros((n_queries, n_chunks, k), dtype=np.float32)
        out_n = np.zeros((n_queries, n_chunks), dtype=np.int64)
        q_indptr, q_terms = batch.indptr.astype(np.int64), batch.indices.astype(np.int32)
        codes, weights, codebook = self._kernel_weights()
        floors = np.ascontiguousarray(floors, dtype=np.float32)

        def run(item: tuple[int, int]) -> None:
            g, c = item
            first_block = min(self.n_blocks, c * per_chunk)
            kernels.search_item(q_indptr, q_terms, batch.data, g * group, min(n_queries, (g + 1) * group), grouped,
                                self.skips, self.docs, codes, weights, codebook, self.vocab_size, self.n_docs,
                                self.block_docs, first_block, min(self.n_blocks, first_block + per_chunk), c, tile, k,
                                floors, out_d, out_s, out_n)

        items = [(g, c) for g in range(n_groups) for c in range(n_chunks)]
        if threads == 1 or len(items) == 1:
            for item in items:
                run(item)
        else:  # the kernels release the GIL; the pool hands items out as threads free up
            with ThreadPoolExecutor(min(threads, len(items))) as pool:
                list(pool.map(run, items))
        if n_chunks == 1:
            return out_d[:, 0], out_s[:, 0]
        return kernels.merge_sorted(out_d, out_s, out_n, k)

    def _kernel_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(codes, float weights, codebook) as the kernels take them: one of the first two is empty."""
        if self.weights.dtype == np.uint16:
            return self.weights, np.empty(0, np.float32), self.codebook
        return np.empty(0, np.uint16), self.weights, self.codebook

    def search_ids(self, queries: sp.spmatrix, query_ids: list[str], k: int = 1000, **kwargs) -> dict[str, list[tuple[str, float]]]:
        """Top-k as ``{query_id: [(doc_id, score), ...]}``, best first."""
        docs, scores = self.search_positions(queries, k, **kwargs)
        return ranked_ids(query_ids, docs, scores, self.doc_ids)


_LAYOUT_KEYS = {"format_version", "n_docs", "nnz", "vocab_size", "block_docs", "weights"}


def _seal(folder: Path, layout: dict, meta: dict | None) -> None:
    from .io import write_json_atomic

    write_json_atomic(folder / "meta.json", {**(meta or {}), **layout, "format_version": FORMAT_VERSION})


def default_threads() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def ranked_ids(query_ids: list[str], docs: np.ndarray, scores: np.ndarray, doc_ids) -> dict[str, list[tuple[str, float]]]:
    """``{query_id: [(doc_id, score), ...]}`` from position and score rows (-1 ends a row)."""
    out = {}
    for qid, drow, srow in zip(query_ids, docs, scores):
        n = int((drow >= 0).sum())
        out[qid] = [(doc_ids[d], float(s)) for d, s in zip(drow[:n].tolist(), srow[:n].tolist())]
    return out
