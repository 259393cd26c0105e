"""The numba kernels behind :class:`disco_core.index.InvertedIndex` (exact top-k, no pruning).

Layout (written by :mod:`disco_core.index_build`): term ``t``'s postings are
``docs[skips[t, 0]:skips[t, n_blocks]]``, in document order, and ``skips[t, b]`` is where its
documents of block ``b`` start; a document is a ``uint16`` offset in its block of ``block_docs``.
Weights are ``uint16`` codes into a ``float32`` codebook or plain ``float32``.

Scoring is term-at-a-time inside a tile of blocks at a time, so the score accumulator is a tile's
worth of documents and stays in the core's cache. Queries are scored sixteen at a time: the
accumulator holds sixteen lanes per document and each posting updates all of them with one vector
operation (``acc[d, :] += w * query_weights[term, :]``), so a posting list that several queries
share is read once for all of them. A single query uses a one-lane accumulator.

Every query's contributions are added in ascending term order, whatever the kernel, so a
document's score is bit-identical between the one-lane and the sixteen-lane kernels, between one
index and its shards, and between batch sizes. Selection keeps a size-k min-heap on
(score, -document); documents arrive in position order and enter only on a strictly higher score,
so ties resolve by position.
"""

from __future__ import annotations

import contextlib

import numba
import numpy as np

LANES = 16  # queries scored together (16 float32 = one AVX-512 register, two AVX2 registers)


@contextlib.contextmanager
def vectorizing_compiler():
    """Compile with LLVM's SLP vectoriser on (numba's default is off): it turns the sixteen
    written-out lane updates into vector instructions. Same IEEE operations, same results."""
    old = numba.core.config.SLP_VECTORIZE
    numba.core.config.SLP_VECTORIZE = 1
    try:
        yield
    finally:
        numba.core.config.SLP_VECTORIZE = old


@numba.njit(cache=True, nogil=True)
def _push(heap_s, heap_d, n, k, s, d):
    """Add (s, d) to a min-heap on (score, -doc) of n <= k entries; when full, (s, d) replaces the
    root (the caller checked that it beats it). Returns the new size."""
    if n < k:
        heap_s[n] = s
        heap_d[n] = d
        i = n
        n += 1
        while i > 0:  # sift up
            parent = (i - 1) // 2
            if heap_s[i] < heap_s[parent] or (heap_s[i] == heap_s[parent] and heap_d[i] > heap_d[parent]):
                heap_s[i], heap_s[parent] = heap_s[parent], heap_s[i]
                heap_d[i], heap_d[parent] = heap_d[parent], heap_d[i]
                i = parent
            else:
                break
        return n
    heap_s[0] = s
    heap_d[0] = d
    _sift_down(heap_s, heap_d, 0, n)
    return n


@numba.njit(cache=True, nogil=True)
def _sift_down(heap_s, heap_d, i, n):
    while True:
        left = 2 * i + 1
        if left >= n:
            return
        child = left
        right = left + 1
        if right < n and (heap_s[right] < heap_s[left] or (heap_s[right] == heap_s[left] and heap_d[right] > heap_d[left])):
            child = right
        if heap_s[child] < heap_s[i] or (heap_s[child] == heap_s[i] and heap_d[child] > heap_d[i]):
            heap_s[i], heap_s[child] = heap_s[child], heap_s[i]
            heap_d[i], heap_d[child] = heap_d[child], heap_d[i]
            i = child
        else:
            return


@numba.njit(cache=True, nogil=True)
def _heap_sort(heap_s, heap_d, n, out_d, out_s):
    """Empty the heap into ``out`` best first: (score desc, doc asc)."""
    for end in range(n - 1, -1, -1):
        out_d[end] = heap_d[0]
        out_s[end] = heap_s[0]
        heap_s[0] = heap_s[end]
        heap_d[0] = heap_d[end]
        _sift_down(heap_s, heap_d, 0, end)


@numba.njit(cache=True, nogil=True)
def _aligned_zeros(n):
    """float32 zeros whose first element sits on a 64-byte boundary (one lane group = one cache line)."""
    buf = np.zeros(n + 16, dtype=np.float32)
    skip = ((64 - buf.ctypes.data % 64) % 64) // 4
    return buf[skip : skip + n]


@numba.njit(cache=True, nogil=True)
def _select(acc, stride, lane, n, base, heap_s, heap_d, size, k, floor):
    """Offer documents base..base+n (scores ``acc[d * stride + lane]``) to the heap; only scores
    above ``floor`` (0, or a score that k earlier documents already reach) can enter."""
    threshold = max(heap_s[0], floor) if size == k else floor
    for d in range(n):
        s = acc[d * stride + lane]
        if s > threshold:
            size = _push(heap_s, heap_d, size, k, s, base + d)
            if size == k:
                threshold = heap_s[0]
    return size


@numba.njit(cache=True, nogil=True)
def _scan_one(terms, qweights, skips, docs, codes, weights, codebook, n_docs, block_docs, first_block, last_block,
              tile, k, floor, out_d, out_s):
    """One query over blocks [first_block, last_block), ``tile`` blocks at a time: its top k into
    out (returns the count)."""
    stride = (n_docs + block_docs - 1) // block_docs + 1
    coded = codes.shape[0] > 0
    acc = _aligned_zeros(block_docs * tile)
    heap_s = np.empty(k, dtype=np.float32)
    heap_d = np.empty(k, dtype=np.int64)
    size = 0
    for first in range(first_block, last_block, tile):
        last = min(last_block, first + tile)
        for j in range(terms.shape[0]):
            row = terms[j] * stride
            w = qweights[j]
            for b in range(first, last):
                base = (b - first) * block_docs
                if coded:
                    for p in range(skips[row + b], skips[row + b + 1]):
                        acc[base + np.int64(docs[p])] += w * codebook[codes[p]]
                else:
                    for p in range(skips[row + b], skips[row + b + 1]):
                        acc[base + np.int64(docs[p])] += w * weights[p]
        n = min(last * block_docs, n_docs) - first * block_docs
        size = _select(acc, 1, 0, n, first * block_docs, heap_s, heap_d, size, k, floor)
        acc[:n] = 0.0
    _heap_sort(heap_s, heap_d, size, out_d, out_s)
    return size


@numba.njit(cache=True, nogil=True)
def _scan_lanes(union, lane_weights, n_lanes, skips, docs, codes, weights, codebook, n_docs, block_docs, first_block,
                last_block, tile, k, floors, out_d, out_s, out_n):
    """Up to sixteen queries together over blocks [first_block, last_block), ``tile`` blocks at a
    time. ``union``: the terms of any of them, ascending; ``lane_weights[u, j]``: query j's weight
    of union[u] (0 if absent)."""
    stride = (n_docs + block_docs - 1) // block_docs + 1
    coded = codes.shape[0] > 0
    # The union's skips, block-major: a tile reads one contiguous row per block (term-major, it
    # would touch a cache line per term per block: 2x slower).
    n_union = union.shape[0]
    starts = np.empty((last_block - first_block + 1, n_union), dtype=np.int64)
    for u in range(n_union):
        row = union[u] * stride + first_block
        for i in range(last_block - first_block + 1):
            starts[i, u] = skips[row + i]
    acc = _aligned_zeros(block_docs * tile * LANES)
    heap_s = np.empty((LANES, k), dtype=np.float32)
    heap_d = np.empty((LANES, k), dtype=np.int64)
    sizes = np.zeros(LANES, dtype=np.int64)
    for first in range(first_block, last_block, tile):
        last = min(last_block, first + tile)
        for u in range(n_union):
            # The sixteen lane updates are written out (a loop over lanes is not vectorised):
            # with the weights in locals, the SLP vectoriser makes them one vector multiply-add.
            w0 = lane_weights[u, 0]; w1 = lane_weights[u, 1]; w2 = lane_weights[u, 2]; w3 = lane_weights[u, 3]  # noqa: E702
            w4 = lane_weights[u, 4]; w5 = lane_weights[u, 5]; w6 = lane_weights[u, 6]; w7 = lane_weights[u, 7]  # noqa: E702
            w8 = lane_weights[u, 8]; w9 = lane_weights[u, 9]; w10 = lane_weights[u, 10]; w11 = lane_weights[u, 11]  # noqa: E702
            w12 = lane_weights[u, 12]; w13 = lane_weights[u, 13]; w14 = lane_weights[u, 14]; w15 = lane_weights[u, 15]  # noqa: E702
            for b in range(first, last):
                base = np.uint64((b - first) * block_docs)
                a, e = starts[b - first_block, u], starts[b - first_block + 1, u]
                # Two copies of the loop, one per kind of weight: behind a shared helper or an
                # inlined overload, the SLP vectoriser gave up on the codes' loop (3.5x slower).
                if coded:
                    for p in range(a, e):
                        w = codebook[codes[p]]
                    o = (base + np.uint64(docs[p])) * np.uint64(LANES)
                    acc[o] += w * w0; acc[o + np.uint64(1)] += w * w1  # noqa: E702
                    acc[o + np.uint64(2)] += w * w2; acc[o + np.uint64(3)] += w * w3  # noqa: E702
                    acc[o + np.uint64(4)] += w * w4; acc[o + np.uint64(5)] += w * w5  # noqa: E702
                    acc[o + np.uint64(6)] += w * w6; acc[o + np.uint64(7)] += w * w7  # noqa: E702
                    acc[o + np.uint64(8)] += w * w8; acc[o + np.uint64(9)] += w * w9  # noqa: E702
                    acc[o + np.uint64(10)] += w * w10; acc[o + np.uint64(11)] += w * w11  # noqa: E702
                    acc[o + np.uint64(12)] += w * w12; acc[o + np.uint64(13)] += w * w13  # noqa: E702
                    acc[o + np.uint64(14)] += w * w14; acc[o + np.uint64(15)] += w * w15  # noqa: E702
                else:
                    for p in range(a, e):
                        w = weights[p]
                    o = (base + np.uint64(docs[p])) * np.uint64(LANES)
                    acc[o] += w * w0; acc[o + np.uint64(1)] += w * w1  # noqa: E702
                    acc[o + np.uint64(2)] += w * w2; acc[o + np.uint64(3)] += w * w3  # noqa: E702
                    acc[o + np.uint64(4)] += w * w4; acc[o + np.uint64(5)] += w * w5  # noqa: E702
                    acc[o + np.uint64(6)] += w * w6; acc[o + np.uint64(7)] += w * w7  # noqa: E702
                    acc[o + np.uint64(8)] += w * w8; acc[o + np.uint64(9)] += w * w9  # noqa: E702
                    acc[o + np.uint64(10)] += w * w10; acc[o + np.uint64(11)] += w * w11  # noqa: E702
                    acc[o + np.uint64(12)] += w * w12; acc[o + np.uint64(13)] += w * w13  # noqa: E702
                    acc[o + np.uint64(14)] += w * w14; acc[o + np.uint64(15)] += w * w15  # noqa: E702
        n = min(last * block_docs, n_docs) - first * block_docs
        for j in range(n_lanes):
            sizes[j] = _select(acc, LANES, j, n, first * block_docs, heap_s[j], heap_d[j], sizes[j], k, floors[j])
        acc[: n * LANES] = 0.0
    for j in range(n_lanes):
        _heap_sort(heap_s[j], heap_d[j], sizes[j], out_d[j], out_s[j])
        out_n[j] = sizes[j]


@numba.njit(cache=True, nogil=True)
def _lane_group(q_indptr, q_terms, q_weights, first, last, vocab):
    """The union of the terms of queries first..last (ascending) and their lane weights."""
    slot = np.full(vocab, -1, dtype=np.int64)
    for q in range(first, last):
        for p in range(q_indptr[q], q_indptr[q + 1]):
            slot[q_terms[p]] = 0
    union = np.flatnonzero(slot >= 0)
    for u in range(union.shape[0]):
        slot[union[u]] = u
    lane_weights = np.zeros((union.shape[0], LANES), dtype=np.float32)
    for q in range(first, last):
        for p in range(q_indptr[q], q_indptr[q + 1]):
            lane_weights[slot[q_terms[p]], q - first] = q_weights[p]
    return union, lane_weights


@numba.njit(cache=True, parallel=True)
def search_batch(q_indptr, q_terms, q_weights, skips, docs, codes, weights, codebook, vocab, n_docs, block_docs, k,
                 grouped, n_chunks, tile, floors):
    """Top-k of every query: ``(docs, scores, counts)`` with ``docs``/``scores`` of shape
    ``(n_queries, n_chunks, k)`` (each chunk of blocks separately, best first) and ``counts``
    ``(n_queries, n_chunks)``; :func:`merge_sorted` combines the chunks.

    ``grouped``: score sixteen queries at a time (else one). The work items, (group, chunk of
    blocks) pairs, run in parallel: with few queries, chunks split one query's blocks over threads."""
    n_queries = q_indptr.shape[0] - 1
    n_blocks = (n_docs + block_docs - 1) // block_docs
    group = LANES if grouped else 1
    n_groups = (n_queries + group - 1) // group
    out_d = np.full((n_queries, n_chunks, k), -1, dtype=np.int64)
    out_s = np.zeros((n_queries, n_chunks, k), dtype=np.float32)
    out_n = np.zeros((n_queries, n_chunks), dtype=np.int64)
    per_chunk = (n_blocks + n_chunks - 1) // n_chunks
    for item in numba.prange(n_groups * n_chunks):
        g = item // n_chunks
        c = item % n_chunks
        first_block = min(n_blocks, c * per_chunk)
        last_block = min(n_blocks, first_block + per_chunk)
        first, last = g * group, min(n_queries, (g + 1) * group)
        if grouped:
            union, lane_weights = _lane_group(q_indptr, q_terms, q_weights, first, last, vocab)
            lane_d = np.empty((LANES, k), dtype=np.int64)
            lane_s = np.empty((LANES, k), dtype=np.float32)
            lane_n = np.zeros(LANES, dtype=np.int64)
            lane_floors = np.zeros(LANES, dtype=np.float32)
            lane_floors[: last - first] = floors[first:last]
            _scan_lanes(union, lane_weights, last - first, skips, docs, codes, weights, codebook, n_docs, block_docs,
                        first_block, last_block, tile, k, lane_floors, lane_d, lane_s, lane_n)
            for j in range(last - first):
                n = lane_n[j]
                out_d[first + j, c, :n] = lane_d[j, :n]
                out_s[first + j, c, :n] = lane_s[j, :n]
                out_n[first + j, c] = n
        else:
            a, b = q_indptr[first], q_indptr[first + 1]
            out_n[first, c] = _scan_one(q_terms[a:b], q_weights[a:b], skips, docs, codes, weights, codebook, n_docs,
                                        block_docs, first_block, last_block, tile, k, floors[first], out_d[first, c],
                                        out_s[first, c])
    return out_d, out_s, out_n


@numba.njit(cache=True, parallel=True)
def merge_sorted(cand_d, cand_s, cand_n, k):
    """Per query, merge ``n_lists`` lists sorted by (score desc, doc asc) into the top k.

    ``cand_d``/``cand_s``: ``(n_queries, n_lists, width)``; ``cand_n``: the valid length of each
    list. Returns ``(docs, scores)`` of shape ``(n_queries, k)``, padded with -1 / 0."""
    n_queries, n_lists = cand_n.shape
    out_d = np.full((n_queries, k), -1, dtype=np.int64)
    out_s = np.zeros((n_queries, k), dtype=np.float32)
    for q in numba.prange(n_queries):
        heads = np.zeros(n_lists, dtype=np.int64)
        for r in range(k):
            best = -1
            for i in range(n_lists):
                h = heads[i]
                if h < cand_n[q, i]:
                    if best < 0:
                        best = i
                    else:
                        hb = heads[best]
                        s, sb = cand_s[q, i, h], cand_s[q, best, hb]
                        if s > sb or (s == sb and cand_d[q, i, h] < cand_d[q, best, hb]):
                            best = i
            if best < 0:
                break
            out_d[q, r] = cand_d[q, best, heads[best]]
            out_s[q, r] = cand_s[q, best, heads[best]]
            heads[best] += 1
    return out_d, out_s
