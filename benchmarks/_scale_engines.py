"""The engines of ``bench_scale.py``: each builds from the collection's vector files into a folder
(in a subprocess, for its peak memory), loads that folder, and searches query matrices.

``build(files, folder)``; ``load(folder)``; ``prepare(queries)`` (untimed: the engine's query
format); ``search(prepared, k)`` (timed); ``arrays(result, k)`` (untimed) -> positions and scores
(the collection's scale) as ``n x k`` arrays; ``subset(prepared, n)``: the first n queries.
"""

from __future__ import annotations

import contextlib
import os
import sys
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from _synthetic import QUANTUM
from disco_core.index import InvertedIndex
from disco_core.sharded_index import ShardedIndex
from disco_core.vectors import load_vector_files, load_vectors


class _Engine:
    name = ""
    build_of = None  # engines with the same build_of share one build (folder)

    def __init__(self, threads: int):
        self.threads = threads

    def prepare(self, queries: sp.csr_matrix):
        return queries

    def subset(self, prepared, n: int):
        return prepared[:n]

    def arrays(self, result, k: int):
        return result

    def close(self) -> None:
        pass


class DiscoOne(_Engine):
    name = "disco InvertedIndex, 1 shard (project)"

    def build(self, files, folder: Path) -> None:
        InvertedIndex.from_vector_files(folder, files)

    def load(self, folder: Path) -> None:
        self.index = InvertedIndex.load(folder)

    def search(self, queries, k: int):
        return self.index.search_positions(queries, k, threads=self.threads)


class DiscoSharded(DiscoOne):
    name = "disco ShardedIndex (project)"
    build_of = "disco-sharded"

    def build(self, files, folder: Path) -> None:
        ShardedIndex.build(folder, files)

    def load(self, folder: Path) -> None:
        self.index = ShardedIndex.load(folder)
        self.index.shards  # memory-map them now  # noqa: B018


class DiscoDask(DiscoSharded):
    """The sharded index searched by a two-worker Dask ``LocalCluster`` (loopback)."""

    name = "disco ShardedIndex on 2 Dask workers (project)"
    build_of = "disco-sharded"

    def load(self, folder: Path) -> None:
        from distributed import Client, LocalCluster

        from disco_core.dask_search import DaskShardSearcher

        workers = 2
        self.cluster = LocalCluster(n_workers=workers, threads_per_worker=max(1, self.threads // workers),
                                    processes=True, host="127.0.0.1", dashboard_address=":0")
        self.client = Client(self.cluster)
        self.index = DaskShardSearcher(folder, self.client)

    def search(self, queries, k: int):
        return self.index.search_positions(queries, k)

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


class Scipy(_Engine):
    """Exact: sparse ``Q @ D.T`` per batch of queries (batches spread over threads), then
    argpartition + sort of each row (``bench_index.dense_top_k``)."""

    name = "scipy brute force"

    def __init__(self, threads: int, batch_size: int = 16):
        super().__init__(threads)
        self.batch_size = batch_size

    def build(self, files, folder: Path) -> None:
        docs, _ = load_vector_files(files)
        terms = docs.T.tocsr()
        for name in ("data", "indices", "indptr"):
            np.save(folder / f"{name}.npy", getattr(terms, name))
        np.save(folder / "shape.npy", np.array(terms.shape))

    def load(self, folder: Path) -> None:
        arrays = [np.load(folder / f"{n}.npy") for n in ("data", "indices", "indptr")]
        self.terms = sp.csr_matrix(tuple(arrays), shape=tuple(np.load(folder / "shape.npy")))

    def search(self, queries, k: int):
        from bench_index import dense_top_k

        batches = [queries[i : i + self.batch_size] for i in range(0, queries.shape[0], self.batch_size)]
        with ThreadPoolExecutor(self.threads) as pool:
            parts = list(pool.map(lambda b: dense_top_k((b @ self.terms).toarray(), k), batches))
        return np.concatenate([d for d, _ in parts]), np.concatenate([s for _, s in parts])


class SpladeIndex(_Engine):
    """splade-index 0.2.0's numba scorer on the CSC arrays its ``index()`` builds (see bench_index)."""

    name = "splade-index 0.2.0 (numba)"

    def build(self, files, folder: Path) -> None:
        docs, _ = load_vector_files(files)
        csc = docs.tocsc()
        csc.sort_indices()
        np.save(folder / "data.npy", csc.data.astype(np.float32))
        np.save(folder / "indices.npy", csc.indices.astype(np.int32))
        np.save(folder / "indptr.npy", csc.indptr.astype(np.int32))
        np.save(folder / "num_docs.npy", np.array(docs.shape[0]))

    def load(self, folder: Path) -> None:
        from splade_index.numba.retrieve_utils import _retrieve_numba_functional

        self._retrieve = _retrieve_numba_functional
        self.scores = {n: np.load(folder / f"{n}.npy") for n in ("data", "indices", "indptr")}
        self.scores["num_docs"] = int(np.load(folder / "num_docs.npy"))

    def prepare(self, queries):
        rows = [queries[i] for i in range(queries.shape[0])]
        return [r.indices.astype(np.int32) for r in rows], [r.data.astype(np.float32) for r in rows]

    def subset(self, prepared, n: int):
        return prepared[0][:n], prepared[1][:n]

    def search(self, prepared, k: int):
        return self._retrieve(*prepared, self.scores, k=k, sorted=True, return_as="tuple", show_progress=False,
                              n_threads=self.threads)


class Pisa(_Engine):
    """PISA through pyterrier-pisa: an index of the integer impacts ``100 w`` (the collection's
    weights are multiples of 1/100, so it is exact), searched with the quantized scorer; scores are
    divided by 100 x 100. ``ranked_or_taat`` (term-at-a-time, an accumulator) is not in
    pyterrier-pisa's enum but is in its C++ dispatch; it shares one accumulator between threads,
    so it runs on one thread (with two it returns wrong scores: checked)."""

    build_of = "pisa"  # one PISA index serves every algorithm

    def __init__(self, threads: int, algorithm: str):
        self.algorithm = algorithm
        self.threads = 1 if algorithm == "ranked_or_taat" else threads
        self.name = f"PISA {algorithm} ({self.threads} thread{'s' if self.threads > 1 else ''})"

    def build(self, files, folder: Path) -> None:
        from pyterrier_pisa import PisaIndex

        def documents():
            position = 0
            for path in files:
                matrix, _ = load_vectors(path)
                for row in range(matrix.shape[0]):
                    a, b = matrix.indptr[row], matrix.indptr[row + 1]
                    yield {"docno": str(position), "toks": _impacts(matrix.indices[a:b], matrix.data[a:b])}
                    position += 1

        PisaIndex(str(folder), stemmer="none", stops="none", threads=self.threads).toks_indexer(scale=1.0).index(documents())

    def load(self, folder: Path) -> None:
        from pyterrier_pisa import PisaIndex

        self.index = PisaIndex(str(folder), stemmer="none", stops="none", threads=self.threads)
        self._retrievers = {}

    def retriever(self, k: int):
        if k not in self._retrievers:
            name = "maxscore" if self.algorithm == "ranked_or_taat" else self.algorithm
            with native_output_silenced():  # PISA logs its index loading to the terminal
                retriever = self.index.quantized(num_results=k, threads=self.threads, toks_scale=1.0,
                                                 query_algorithm=name)
            if self.algorithm == "ranked_or_taat":
                retriever.query_algorithm = types.SimpleNamespace(value="ranked_or_taat")
            self._retrievers[k] = retriever
        return self._retrievers[k]

    def prepare(self, queries):
        import pandas as pd

        rows = [{"qid": str(i), "query_toks": _impacts(queries[i].indices, queries[i].data)} for i in range(queries.shape[0])]
        return pd.DataFrame(rows)

    def subset(self, prepared, n: int):
        return prepared.iloc[:n]

    def search(self, prepared, k: int):
        return len(prepared), self.retriever(k)(prepared)

    def arrays(self, result, k: int):
        n, frame = result
        positions, scores = np.full((n, k), -1, dtype=np.int64), np.zeros((n, k))
        for qid, group in frame.groupby("qid", sort=False):
            group = group.sort_values("rank")
            row = int(qid)
            positions[row, : len(group)] = group["docno"].astype(np.int64).to_numpy()
            scores[row, : len(group)] = group["score"].to_numpy(np.float64) / QUANTUM**2
        return positions, scores


@contextlib.contextmanager
def native_output_silenced():
    """Silence what native code writes to the process's stdout and stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _impacts(terms: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    return {str(t): float(round(float(w) * QUANTUM)) for t, w in zip(terms.tolist(), weights.tolist())}


def make_engines(threads: int, names: list[str]) -> dict[str, _Engine]:
    factories = {
        "disco-one": lambda: DiscoOne(threads),
        "disco-sharded": lambda: DiscoSharded(threads),
        "disco-dask": lambda: DiscoDask(threads),
        "scipy": lambda: Scipy(threads),
        "splade-index": lambda: SpladeIndex(threads),
        "pisa-maxscore": lambda: Pisa(threads, "maxscore"),
        "pisa-bmw": lambda: Pisa(threads, "block_max_wand"),
        "pisa-taat": lambda: Pisa(threads, "ranked_or_taat"),
    }
    return {name: factories[name]() for name in names}
