"""The inverted index is exact: top-k equals a brute-force dot product."""

import numpy as np
import pytest
import scipy.sparse as sp

from disco_core.errors import DataError
from disco_core.index import InvertedIndex


def random_vectors(n, vocab, density, seed, quantize=False):
    m = sp.random(n, vocab, density=density, format="csr", dtype=np.float32, random_state=seed)
    if quantize:  # few distinct values: many tied scores
        m.data = np.ceil(m.data * 4).astype(np.float32)
    return m


def brute_force(queries, docs, k):
    scores = (queries @ docs.T).toarray()
    out = []
    for row in scores:
        order = np.lexsort((np.arange(len(row)), -row))  # score desc, then position asc
        order = order[row[order] > 0][:k]
        out.append((order, row[order]))
    return out


@pytest.mark.parametrize("k, quantize", [(1, False), (10, False), (1000, False), (50, True)])
def test_exact_top_k_against_brute_force(k, quantize):
    docs = random_vectors(3000, 500, 0.02, 1, quantize)
    queries = random_vectors(64, 500, 0.03, 2, quantize)
    index = InvertedIndex.build(docs, [f"d{i}" for i in range(3000)])
    got_docs, got_scores = index.search(queries, k=k, batch_size=16)
    assert got_docs.shape == (64, min(k, 3000))
    for q, (want_docs, want_scores) in enumerate(brute_force(queries, docs, k)):
        n = len(want_docs)
        np.testing.assert_array_equal(got_docs[q, :n], want_docs)
        np.testing.assert_allclose(got_scores[q, :n], want_scores, rtol=1e-5)
        assert (got_docs[q, n:] == -1).all() and (got_scores[q, n:] == 0).all()


def test_queries_without_overlap_and_k_above_corpus_size():
    docs = sp.csr_matrix(np.array([[1, 0, 0], [0, 2, 0]], dtype=np.float32))
    queries = sp.csr_matrix(np.array([[0, 0, 5], [1, 1, 0]], dtype=np.float32))
    index = InvertedIndex.build(docs, ["a", "b"])
    assert index.search_ids(queries, ["q1", "q2"], k=1000) == {"q1": [], "q2": [("b", 2.0), ("a", 1.0)]}
    # k=0 (and an empty index) return empty result rows, never touch the kernel's empty heap
    docs0, scores0 = index.search(queries, k=0)
    assert docs0.shape == scores0.shape == (2, 0)
    empty = InvertedIndex.build(sp.csr_matrix((0, 3), dtype=np.float32), [])
    assert empty.search_ids(queries, ["q1", "q2"], k=10) == {"q1": [], "q2": []}


def test_save_and_load(tmp_path):
    docs = random_vectors(500, 300, 0.05, 3)
    queries = random_vectors(20, 300, 0.05, 4)
    index = InvertedIndex.build(docs, [f"d{i}" for i in range(500)], meta={"model": "m"})
    folder = index.save(tmp_path / "idx")
    loaded = InvertedIndex.load(folder)
    assert loaded.meta["model"] == "m" and loaded.n_docs == 500 and loaded.nnz == docs.nnz
    assert isinstance(loaded.docs, np.memmap) and isinstance(loaded.weights, np.memmap)
    for a, b in zip(index.search(queries, k=100), loaded.search(queries, k=100)):
        np.testing.assert_array_equal(a, b)


def test_bad_index_folder_and_dimension(tmp_path):
    with pytest.raises(DataError, match="meta.json missing"):
        InvertedIndex.load(tmp_path)
    index = InvertedIndex.build(random_vectors(10, 30, 0.2, 5), [str(i) for i in range(10)])
    with pytest.raises(ValueError, match="dimensions"):
        index.search(random_vectors(2, 31, 0.2, 6))


def test_sixteen_lane_scoring_is_one_vector_operation_and_exact():
    """``_add_lanes`` writes the vector multiply-add in LLVM IR; it must equal the scalar updates."""
    from disco_core import _index_kernels as kernels

    rng = np.random.default_rng(0)
    acc = kernels._aligned_zeros(16 * 64)
    lane_weights = rng.random((5, 16)).astype(np.float32)
    docs = rng.integers(0, 64, 500).astype(np.uint16)
    weights = rng.random(500).astype(np.float32)
    starts = np.array([[0, 100, 200, 300, 400], [100, 200, 300, 400, 500]], dtype=np.int64)  # term u: 100u..100u+100
    kernels._score_lanes(acc, starts, 0, 1, lane_weights, docs, np.empty(0, np.uint16), weights, np.empty(0, np.float32), 64)
    expected = np.zeros((64, 16), np.float32)
    for u in range(5):
        for p in range(starts[0, u], starts[1, u]):
            expected[docs[p]] += weights[p] * lane_weights[u]  # float32, one term at a time, like the kernel
    np.testing.assert_array_equal(acc.reshape(64, 16), expected)
