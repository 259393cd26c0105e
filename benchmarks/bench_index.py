"""Retrieval benchmark: the project's InvertedIndex against exact brute force and PyPI engines.

Every engine indexes the SAME document vectors (MTRAG passages encoded by ``SpladeEncoder``) and
answers the SAME queries (MTRAG turns encoded from several query variants) for the top ``k``:

- ``disco InvertedIndex``: the project's exact index (numba, term-at-a-time);
- ``scipy brute force``:   ``Q @ D.T`` in query batches, then argpartition + sort per row (exact);
- ``splade-index``:        splade-index 0.2.0, numba backend (its exact CSC scorer + heap top-k);
- ``seismic brute force``: pyseismic-lsr 0.5.4, ``SeismicDataset.batch_search`` (exhaustive, Rust;
                           document weights stored as float16, so scores are off by ~1e-4);
- ``seismic index``:       pyseismic-lsr 0.5.4, ``SeismicIndex`` (approximate, Rust).

The reference is an untimed float64 brute force (``Q @ D.T``, documents with score > 0, ties by
position). For each engine: build time, queries/s (median of ``--repeat`` passes, engines
interleaved so that each pass sees the same machine load), the fraction of the reference's top-k
and top-10 document ids it returns, and whether it is exact: its k best scores equal the
reference's (relative tolerance ``--rtol``), so near-ties may swap ids without counting as errors.

Vectors are cached under ``.cache/bench/`` (keyed by model, length and texts), so only the first
run encodes (9 to 11 minutes for the whole corpus on 2 shared cores).

    python benchmarks/bench_index.py                    # whole corpus (19,687 passages)
    python benchmarks/bench_index.py --docs 5000        # seeded sample of 5000 passages
"""

from __future__ import annotations

import argparse
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import _common
from _common import (Stopwatch, docs_arg, machine, native_stdout_silenced, print_header, print_table, sample_positions,
                     verdict, write_json)

import numpy as np
import pyarrow.compute as pc
import scipy.sparse as sp

from disco_core import datasets
from disco_core.encoder import SpladeEncoder, document_text
from disco_core.index import InvertedIndex
from disco_core.conversation import ConversationFormatter
from disco_core.variants import parse_variant, query_texts


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=docs_arg, default=None, help="passages to index: a number (seeded sample) or 'all' (default)")
    p.add_argument("--seed", type=int, default=0, help="sample seed")
    p.add_argument("--dataset", default="mtrag")
    p.add_argument("--variants", default="last_turn,rewrite", help="query variants, comma-separated")
    p.add_argument("--model", default="splade-tiny")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("-k", "--k", type=int, default=1000, help="results per query")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every engine")
    p.add_argument("--repeat", type=int, default=5, help="timed passes per engine (median reported)")
    p.add_argument("--rtol", type=float, default=1e-5, help="score tolerance of the exactness check, relative to a query's best score")
    p.add_argument("--seismic-query-cut", type=int, default=10, help="seismic index: query terms used")
    p.add_argument("--seismic-heap-factor", type=float, default=0.9, help="seismic index: block pruning factor")
    p.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    return p.parse_args()


# ---------------------------------------------------------------------------------------------
# Vectors (cached)


def fingerprint(*parts) -> str:
    digest = hashlib.sha1()
    for part in parts:
        for item in part if isinstance(part, list) else [part]:
            digest.update(str(item).encode())
            digest.update(b"\0")
    return digest.hexdigest()[:12]


def cached_encode(encoder: SpladeEncoder, texts: list[str], what: str) -> sp.csr_matrix:
    """Encode ``texts``, or load them from ``.cache/bench/`` when the same texts were encoded before."""
    path = _common.CACHE / f"{what}-{fingerprint(encoder.name, encoder.max_length, texts)}.npz"
    if path.exists():
        print(f"   {what}: {len(texts)} vectors from {path.relative_to(_common.ROOT)}")
        return sp.load_npz(path).tocsr()
    print(f"   {what}: encoding {len(texts)} texts (cached afterwards) ...", flush=True)
    reported = [0]

    def progress(done: int, n: int) -> None:  # a line per 10 % at most
        if done == n or done * 10 // n > reported[0]:
            reported[0] = done * 10 // n
            print(f"     {done}/{n}", flush=True)

    with Stopwatch() as t:
        vectors = encoder.encode(texts, progress=progress)
    print(f"   {what}: encoded in {t.seconds:.0f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    sp.save_npz(path, vectors)
    return vectors


def load_vectors(args) -> tuple[sp.csr_matrix, sp.csr_matrix, dict]:
    """Document vectors (the sample, in corpus order) and query vectors, with a description."""
    spec = datasets.get(args.dataset)
    tables = datasets.load(args.dataset)
    encoder = SpladeEncoder(args.model, max_length=args.max_length)

    corpus = tables.corpus
    all_texts = [document_text(t, x) for t, x in zip(corpus["title"].to_pylist(), corpus["text"].to_pylist())]
    positions = sample_positions(len(all_texts), args.docs, args.seed)
    full_cache = _common.CACHE / f"docs-{fingerprint(encoder.name, encoder.max_length, all_texts)}.npz"
    if len(positions) == len(all_texts) or full_cache.exists():
        docs = cached_encode(encoder, all_texts, "docs")[positions]  # a sample is sliced from the full cache
    else:
        docs = cached_encode(encoder, [all_texts[i] for i in positions], "docs")

    turns, texts, counts = tables.turns.to_pylist(), [], {}
    for name in args.variants.split(","):
        variant = parse_variant(name.strip(), spec.rewrite_teacher)
        rewrites = tables.rewrites.filter(pc.equal(tables.rewrites["teacher"], variant.teacher or ""))
        _, variant_texts = query_texts(variant, turns, ConversationFormatter(), rewrites)
        texts += variant_texts
        counts[variant.name] = len(variant_texts)
    query_vectors = cached_encode(encoder, texts, "queries")
    info = {"documents": docs.shape[0], "sample seed": args.seed if args.docs else None,
            "doc non-zeros (mean)": round(docs.nnz / docs.shape[0], 1),
            "queries": query_vectors.shape[0], "query variants": counts,
            "query non-zeros (mean)": round(query_vectors.nnz / query_vectors.shape[0], 1)}
    return docs, query_vectors, info


# ---------------------------------------------------------------------------------------------
# Engines: build(docs) once; prepare(queries) untimed (the engine's query format); search(prepared, k)
# returns (doc positions, scores), n_queries x k, best first; any padding is dropped by `normalise`.


class DiscoIndex:
    name, claims_exact = "disco InvertedIndex (project)", True

    def __init__(self, threads: int):
        self.threads = threads

    def build(self, docs: sp.csr_matrix) -> None:
        self.index = InvertedIndex.build(docs, [str(i) for i in range(docs.shape[0])])

    def prepare(self, queries: sp.csr_matrix):
        return queries

    def search(self, queries, k: int):
        return self.index.search(queries, k, threads=self.threads)


class ScipyBruteForce:
    """Exact: sparse ``Q @ D.T`` per batch of queries (batches spread over threads; scipy's sparse
    product releases the GIL), then the k largest positive scores of each row."""

    name, claims_exact = "scipy brute force", True

    def __init__(self, threads: int, batch_size: int = 128):
        self.threads, self.batch_size = threads, batch_size

    def build(self, docs: sp.csr_matrix) -> None:
        self.doc_terms = docs.T.tocsr()  # vocab x docs, the right operand of Q @ D.T

    def prepare(self, queries: sp.csr_matrix):
        return [queries[i : i + self.batch_size] for i in range(0, queries.shape[0], self.batch_size)]

    def search(self, batches, k: int):
        with ThreadPoolExecutor(self.threads) as pool:
            parts = list(pool.map(lambda batch: dense_top_k((batch @ self.doc_terms).toarray(), k), batches))
        return np.concatenate([d for d, _ in parts]), np.concatenate([s for _, s in parts])


class SpladeIndexEngine:
    """splade-index's numba retrieval on our vectors. Its public ``retrieve`` takes query *texts*
    and a sentence-transformers model; after encoding, it calls ``_retrieve_numba_functional`` with
    the query terms and weights and the index's CSC arrays, which is what we call here."""

    name, claims_exact = "splade-index 0.2.0 (numba)", True

    def __init__(self, threads: int):
        from splade_index import SPLADE
        from splade_index.numba.retrieve_utils import _retrieve_numba_functional

        self.threads, self._splade, self._retrieve = threads, SPLADE, _retrieve_numba_functional

    def build(self, docs: sp.csr_matrix) -> None:
        # The arrays SPLADE.index() builds from its encoder's output: CSC, float32 data, int32 indices.
        csc = docs.tocsc()
        csc.sort_indices()
        self.index = self._splade(backend="numba")
        self.index.scores = {"data": csc.data.astype(np.float32), "indices": csc.indices.astype(np.int32),
                             "indptr": csc.indptr.astype(np.int32), "num_docs": docs.shape[0]}

    def prepare(self, queries: sp.csr_matrix):
        rows = [queries[i] for i in range(queries.shape[0])]
        return [r.indices.astype(np.int32) for r in rows], [r.data.astype(np.float32) for r in rows]

    def search(self, prepared, k: int):
        ids, weights = prepared
        positions, scores = self._retrieve(ids, weights, self.index.scores, k=k, sorted=True, return_as="tuple",
                                           show_progress=False, n_threads=self.threads)
        return positions, scores


class SeismicBruteForce:
    """pyseismic-lsr's in-memory dataset searched by brute force: every document is scored, but
    with its weights stored as float16. Term ids are given as component ids
    (``add_documents_by_id``); queries name them as strings."""

    name, claims_exact = "seismic brute force (pyseismic-lsr 0.5.4)", False

    def __init__(self, threads: int):
        import seismic

        self.seismic, self.threads = seismic, threads

    def build(self, docs: sp.csr_matrix) -> None:
        self.dataset = self.seismic.SeismicDataset(dim=docs.shape[1])
        docs = docs.copy()
        docs.sort_indices()
        self.dataset.add_documents_by_id([str(i) for i in range(docs.shape[0])], docs.indices.astype(np.int64),
                                         docs.data.astype(np.float32), docs.indptr.astype(np.int64))

    def prepare(self, queries: sp.csr_matrix):
        string = self.seismic.get_seismic_string()
        rows = [queries[i] for i in range(queries.shape[0])]
        return (np.array([str(i) for i in range(len(rows))], dtype=string),
                [r.indices.astype(str).astype(string) for r in rows], [r.data.astype(np.float32) for r in rows])

    def search(self, prepared, k: int):
        return seismic_arrays(self._search(*prepared, k), len(prepared[0]), k)

    def _search(self, ids, components, values, k):
        return self.dataset.batch_search(ids, components, values, k, num_threads=self.threads)


class SeismicApproximate(SeismicBruteForce):
    """pyseismic-lsr's ``SeismicIndex`` (approximate: pruned posting lists, block summaries), built
    with the library's default parameters and searched with ``query_cut`` and ``heap_factor``."""

    claims_exact = False

    def __init__(self, threads: int, query_cut: int, heap_factor: float):
        super().__init__(threads)
        self.query_cut, self.heap_factor = query_cut, heap_factor
        self.name = f"seismic index (query_cut={query_cut}, heap_factor={heap_factor})"

    def build(self, docs: sp.csr_matrix) -> None:
        super().build(docs)
        with native_stdout_silenced():  # the Rust build logs its configuration and progress
            self.index = self.seismic.SeismicIndex.build_from_dataset(self.dataset, num_threads=self.threads)

    def _search(self, ids, components, values, k):
        return self.index.batch_search(ids, components, values, k, query_cut=self.query_cut,
                                       heap_factor=self.heap_factor, num_threads=self.threads)


def seismic_arrays(results, n_queries: int, k: int):
    """Seismic's ``[[(query_id, score, doc_id), ...], ...]`` as position and score arrays. The
    lists do not come back in query order (parallel search): each row is placed by its query id."""
    positions = np.full((n_queries, k), -1, dtype=np.int64)
    scores = np.zeros((n_queries, k), dtype=np.float32)
    for hits in results:
        if hits:
            row = int(hits[0][0])
            positions[row, : len(hits)] = [int(doc) for _, _, doc in hits]
            scores[row, : len(hits)] = [score for _, score, _ in hits]
    return positions, scores


# ---------------------------------------------------------------------------------------------
# Reference and comparison


def dense_top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top k of each row of a dense score matrix: score descending, then position ascending (ties
    at the k-th score included in position order); documents with score <= 0 are left out
    (position -1, score 0)."""
    n_rows, n_docs = scores.shape
    k = min(k, n_docs)
    kth = np.partition(scores, n_docs - k, axis=1)[:, n_docs - k]  # the k-th largest score of each row
    positions, top_scores = np.full((n_rows, k), -1, dtype=np.int64), np.zeros((n_rows, k), dtype=scores.dtype)
    for row in range(n_rows):
        candidates = np.flatnonzero((scores[row] >= kth[row]) & (scores[row] > 0))  # ascending positions
        best = candidates[np.argsort(-scores[row, candidates], kind="stable")[:k]]
        positions[row, : len(best)], top_scores[row, : len(best)] = best, scores[row, best]
    return positions, top_scores


def reference_top_k(docs: sp.csr_matrix, queries: sp.csr_matrix, k: int, batch_size: int = 256):
    """The ground truth: exact float64 scores, untimed."""
    doc_terms = docs.T.tocsr().astype(np.float64)
    parts = [dense_top_k((queries[i : i + batch_size].astype(np.float64) @ doc_terms).toarray(), k)
             for i in range(0, queries.shape[0], batch_size)]
    return np.concatenate([d for d, _ in parts]), np.concatenate([s for _, s in parts])


def normalise(positions: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """An engine's answer as n x k arrays, best first, without zero-score or padding entries."""
    positions, scores = np.asarray(positions, dtype=np.int64), np.asarray(scores, dtype=np.float64)
    keep = (positions >= 0) & (scores > 0)
    out_pos, out_scores = np.full((len(positions), k), -1, dtype=np.int64), np.zeros((len(positions), k))
    for row in range(len(positions)):
        p, s = positions[row][keep[row]], scores[row][keep[row]]
        order = np.argsort(-s, kind="stable")[:k]
        out_pos[row, : len(order)], out_scores[row, : len(order)] = p[order], s[order]
    return out_pos, out_scores


def overlap(found: np.ndarray, expected: np.ndarray, depth: int) -> float:
    """Fraction of the reference's top-``depth`` document ids (all queries together) that the engine
    also returns in its top ``depth``."""
    hits = total = 0
    for got, want in zip(found[:, :depth], expected[:, :depth]):
        want = want[want >= 0]
        hits += np.intersect1d(got[got >= 0], want).size
        total += want.size
    return hits / total if total else 1.0


def scores_match(found: np.ndarray, expected: np.ndarray, rtol: float) -> tuple[bool, float]:
    """Exactness: the k best scores of every query equal the reference's, within ``rtol`` times the
    query's best score. Returns (exact, largest relative deviation)."""
    scale = np.maximum(expected[:, :1], 1e-12)
    worst = float((np.abs(found - expected) / scale).max()) if found.size else 0.0
    return worst <= rtol, worst


# ---------------------------------------------------------------------------------------------


def make_engines(args) -> tuple[list, dict[str, str]]:
    """The engines to compare, and why any could not be created (not installed, import error)."""
    factories = {
        "disco InvertedIndex": lambda: DiscoIndex(args.threads),
        "scipy brute force": lambda: ScipyBruteForce(args.threads),
        "splade-index": lambda: SpladeIndexEngine(args.threads),
        "seismic brute force": lambda: SeismicBruteForce(args.threads),
        "seismic index": lambda: SeismicApproximate(args.threads, args.seismic_query_cut, args.seismic_heap_factor),
    }
    engines, failed = [], {}
    for label, factory in factories.items():
        try:
            engines.append(factory())
        except Exception as error:
            failed[label] = f"{type(error).__name__}: {error}"
    return engines, failed


def measure(engines: list, docs: sp.csr_matrix, queries: sp.csr_matrix, k: int, repeat: int, failed: dict):
    """Build each engine, then time ``repeat`` passes over all queries, engines interleaved so that
    each pass of each engine sees the same machine load. Returns (figures, last answers) by name."""
    figures, prepared, answers, ready = {}, {}, {}, []
    for engine in engines:
        try:
            with Stopwatch() as build:
                engine.build(docs)
            prepared[engine.name] = engine.prepare(queries)  # untimed: the engine's query format
            engine.search(engine.prepare(queries[:8]), k)  # warm-up: numba compilation, thread pools
        except Exception as error:
            failed[engine.name] = f"build failed: {type(error).__name__}: {error}"
            continue
        ready.append(engine)
        figures[engine.name] = {"build_s": build.seconds, "claims_exact": engine.claims_exact, "pass_s": []}
    for _ in range(repeat):
        for engine in list(ready):
            try:
                with Stopwatch() as t:
                    answers[engine.name] = engine.search(prepared[engine.name], k)
            except Exception as error:
                failed[engine.name] = f"search failed: {type(error).__name__}: {error}"
                ready.remove(engine)
                del figures[engine.name]
                continue
            figures[engine.name]["pass_s"].append(t.seconds)
    return figures, answers


def verdict_line(figures: dict) -> tuple[bool, str]:
    """PASS when the project index is exact and at least as fast as the fastest other exact engine."""
    project = figures.get(DiscoIndex.name)
    if project is None:
        return False, "the project index did not run"
    others = {name: f for name, f in figures.items() if name != DiscoIndex.name and f["exact"]}
    if not others:
        return project["exact"], f"project index exact={project['exact']}; no other exact engine measured"
    fastest = max(others, key=lambda name: others[name]["queries_per_s"])
    ratio = project["queries_per_s"] / others[fastest]["queries_per_s"]
    return (project["exact"] and ratio >= 1.0,
            f"project index exact={project['exact']}, {ratio:.2f}x the queries/s of the fastest other exact engine ({fastest})")


def main() -> None:
    args = parse_args()
    host = machine()
    print_header("index benchmark: top-k retrieval on the same vectors (same run)",
                 {**host, "dataset": args.dataset, "k": args.k, "threads per engine": args.threads,
                  "timed passes": args.repeat})
    docs, queries, data_info = load_vectors(args)
    for key, value in data_info.items():
        print(f"   {key}: {value}")
    k = min(args.k, docs.shape[0])
    ref_pos, ref_scores = reference_top_k(docs, queries, k)

    engines, failed = make_engines(args)
    figures, answers = measure(engines, docs, queries, k, args.repeat, failed)
    for name, f in figures.items():
        pos, scores = normalise(*answers[name], k)
        f["queries_per_s"] = queries.shape[0] / float(np.median(f["pass_s"]))
        f["overlap_at_k"], f["overlap_at_10"] = overlap(pos, ref_pos, k), overlap(pos, ref_pos, 10)
        f["exact"], f["max_rel_score_error"] = scores_match(scores, ref_scores, args.rtol)

    project = figures.get(DiscoIndex.name)
    rows = []
    for name, f in sorted(figures.items(), key=lambda item: item[0] == DiscoIndex.name):  # the project last
        relative = f"{f['queries_per_s'] / project['queries_per_s']:.2f}x" if project else "-"
        overlaps = [f"{f['overlap_at_k']:.4f}"] + ([f"{f['overlap_at_10']:.4f}"] if k > 10 else [])
        rows.append([name, f"{f['build_s']:.2f}", f"{f['queries_per_s']:.0f}", relative, *overlaps,
                     "yes" if f["exact"] else f"no ({f['max_rel_score_error']:.0e})"])
    print()
    print_table(["engine", "build s", "queries/s", "qps / project", f"overlap@{k}"] + (["overlap@10"] if k > 10 else [])
                + ["exact"], rows)
    for name, reason in failed.items():
        print(f"not measured: {name}: {reason}")
    ok, message = verdict_line(figures)
    print(f"{verdict(ok)}  {message}")
    fastest = max(figures, key=lambda name: figures[name]["queries_per_s"], default=None)
    if fastest and fastest != DiscoIndex.name:
        print(f"note: the fastest engine here is {fastest} (exact={figures[fastest]['exact']})")

    write_json(args.json, {"benchmark": "index", **host, **data_info, "k": k, "threads": args.threads,
                           "rtol": args.rtol, "engines": figures, "failed": failed, "pass": ok, "verdict": message})


if __name__ == "__main__":
    main()
