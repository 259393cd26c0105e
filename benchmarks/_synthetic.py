"""A seeded synthetic SPLADE-like collection: Zipf-distributed terms, log-normal weights.

Terms are drawn with replacement from a Zipf law over a 30,522-term vocabulary (BERT's; the rank
order is a seeded permutation of the term ids, as in a real vocabulary) and repeated draws of a
text are merged, so a text's number of distinct terms is controlled by how many draws it gets (a
per-text target, normal around the mean, turned into draws with the law's expected number of
distinct terms). Weights are log-normal, rounded to multiples of 1/100 (the usual quantisation of
SPLADE impacts for PISA/Anserini): every engine then indexes the same weights exactly, PISA as the
integers ``100 w``.

Rows are produced in chunks from per-chunk seeds, so any chunk can be generated alone and the
collection is the same whatever the chunk size used to write it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

VOCAB = 30_522
QUANTUM = 100  # weights are integers / QUANTUM


class SyntheticCollection:
    """``rows(start, stop)`` of documents; ``queries(n, mean_nnz, seed)``; all seeded."""

    def __init__(self, n_docs: int, doc_nnz: float = 120, zipf: float = 1.0, seed: int = 0, chunk: int = 50_000,
                 weight_mu: float = -0.4, weight_sigma: float = 0.7, vocab: int = VOCAB):
        self.n_docs, self.doc_nnz, self.zipf, self.seed, self.chunk = n_docs, doc_nnz, zipf, seed, chunk
        self.weight_mu, self.weight_sigma, self.vocab = weight_mu, weight_sigma, vocab
        ranks = np.arange(1, vocab + 1, dtype=np.float64)
        p = ranks ** -zipf
        p /= p.sum()
        self.term_of_rank = np.random.default_rng([seed, 1]).permutation(vocab).astype(np.int32)
        self.cdf = np.cumsum(p)
        self.cdf[-1] = 1.0
        # expected distinct terms after m draws, for m = 0..max_draws (to turn a target into draws)
        self._grid = _grid(2 * vocab)
        log_miss = np.log1p(-p)
        self._expected_distinct = np.array([np.sum(-np.expm1(m * log_miss)) for m in self._grid])

    def describe(self) -> dict:
        return {"documents": self.n_docs, "vocabulary": self.vocab, "zipf exponent": self.zipf,
                "doc non-zeros (target mean)": self.doc_nnz, "seed": self.seed,
                "weights": f"log-normal(mu={self.weight_mu}, sigma={self.weight_sigma}), multiples of 1/{QUANTUM}"}

    def draws_for(self, distinct: np.ndarray) -> np.ndarray:
        """Draws that give ``distinct`` different terms on average."""
        m = np.interp(distinct, self._expected_distinct, self._grid)
        return np.maximum(1, np.rint(m)).astype(np.int64)

    def _rows(self, n: int, mean_nnz: float, rng: np.random.Generator) -> sp.csr_matrix:
        targets = np.clip(rng.normal(mean_nnz, 0.3 * mean_nnz, size=n), 1, None)
        draws = self.draws_for(targets)
        row_of_draw = np.repeat(np.arange(n, dtype=np.int64), draws)
        terms = self.term_of_rank[np.searchsorted(self.cdf, rng.random(row_of_draw.shape[0]), side="right")]
        keys = np.sort(row_of_draw * self.vocab + terms)  # by (row, term); np.unique is 100x slower here
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]  # repeated draws merged
        rows, cols = np.divmod(keys, self.vocab)
        weights = np.rint(rng.lognormal(self.weight_mu, self.weight_sigma, size=keys.shape[0]) * QUANTUM)
        weights = (np.maximum(weights, 1) / QUANTUM).astype(np.float32)
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        return sp.csr_matrix((weights, cols.astype(np.int32), indptr), shape=(n, self.vocab))

    def chunk_rows(self, number: int) -> sp.csr_matrix:
        start = number * self.chunk
        n = min(self.chunk, self.n_docs - start)
        return self._rows(n, self.doc_nnz, np.random.default_rng([self.seed, 2, number]))

    def rows(self, start: int, stop: int) -> sp.csr_matrix:
        """Documents ``start`` to ``stop`` (any range; built from the chunks that cover it)."""
        first, last = start // self.chunk, (stop - 1) // self.chunk
        parts = []
        for number in range(first, last + 1):
            block = self.chunk_rows(number)
            lo = max(start - number * self.chunk, 0)
            hi = min(stop - number * self.chunk, block.shape[0])
            parts.append(block[lo:hi])
        return sp.vstack(parts, format="csr") if len(parts) > 1 else parts[0]

    def queries(self, n: int, mean_nnz: float, seed: int) -> sp.csr_matrix:
        return self._rows(n, mean_nnz, np.random.default_rng([self.seed, 3, seed]))


def _grid(max_draws: int) -> np.ndarray:
    """Draw counts at which the expected number of distinct terms is tabulated (denser at first)."""
    return np.unique(np.concatenate([np.arange(0, 2000), np.geomspace(2000, max(max_draws, 2001), 400).astype(np.int64)]))
