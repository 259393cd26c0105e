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
index and its shards, and between batch sizes. Selection keeps the k best by (score desc, position
asc) (a buffer and partitions, see ``_compact``); ties resolve by position.

All the kernels stay in this one file: numba's on-disk cache notices a change to a function's own
file only, so a kernel calling helpers from another module could run stale compiled helpers.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

LANES = 16  # queries scored together (16 float32 = one AVX-512 register, two AVX2 registers)


# Selection. A candidate is a 64-bit key: its score's bits (float32 > 0, so the bits order like the
# values) above the complement of its position, so that a larger key is a better result: higher
# score, then earlier document. Candidates above the threshold are appended to a buffer of 2k;
# when it fills, a partition keeps the k largest and the threshold rises to the k-th score (a later
# document with that score ranks below all k: it may not enter). Amortised O(1) a candidate.

@numba.njit(cache=True, nogil=True)
def _key(bits, doc):
    return (np.uint64(bits) << np.uint64(32)) | np.uint64(0xFFFFFFFF - doc)


@numba.njit(cache=True, nogil=True)
def _score_of(key, scratch):
    """The float32 score in a key (``scratch``: a float32[1] and its uint32 view)."""
    scratch[1][0] = np.uint32(key >> np.uint64(32))
    return scratch[0][0]


@numba.njit(cache=True, nogil=True)
def _compact(buffer, size, k, scratch):
    """Keep the k largest keys at the front; returns the k-th score (the new threshold)."""
    kept = np.partition(buffer[:size], size - k)[size - k :]
    buffer[:k] = kept
    return _score_of(kept.min(), scratch)


@numba.njit(cache=True, nogil=True)
def _finish(buffer, size, k, scratch, out_d, out_s):
    """The kept candidates best first into out (returns their number, at most k)."""
    if size > k:
        _compact(buffer, size, k, scratch)
        size = k
    ordered = np.sort(buffer[:size])
    for i in range(size):
        key = ordered[size - 1 - i]
        out_s[i] = _score_of(key, scratch)
        out_d[i] = np.int64(0xFFFFFFFF - (key & np.uint64(0xFFFFFFFF)))
    return size


@numba.njit(cache=True, nogil=True)
def _scratch():
    value = np.zeros(1, dtype=np.float32)
    return value, value.view(np.uint32)


@numba.njit(cache=True, nogil=True)
def _aligned_zeros(n):
    """float32 zeros whose first element sits on a 64-byte boundary (one lane group = one cache line)."""
    buf = np.zeros(n + 16, dtype=np.float32)
    skip = ((64 - buf.ctypes.data % 64) % 64) // 4
    return buf[skip : skip + n]


@numba.njit(cache=True, nogil=True)
def _select(acc, n, base, buffer, size, k, threshold, floor, scratch):
    """Offer documents base..base+n (scores ``acc[d]``) to the buffer. Returns (size, threshold)."""
    bits = acc.view(np.uint32)
    for d in range(n):
        if acc[d] > threshold:
            buffer[size] = _key(bits[d], base + d)
            size += 1
            if size == buffer.shape[0]:
                threshold = max(_compact(buffer, size, k, scratch), floor)
                size = k
    return size, threshold


@numba.njit(cache=True, nogil=True)
def _scan_one(terms, qweights, skips, docs, codes, weights, codebook, n_docs, block_docs, first_block, last_block,
              tile, k, floor, out_d, out_s):
    """One query over blocks [first_block, last_block), ``tile`` blocks at a time: its top k into
    out (returns the count)."""
    stride = (n_docs + block_docs - 1) // block_docs + 1
    coded = codes.shape[0] > 0
    acc = _aligned_zeros(block_docs * tile)
    buffer = np.empty(2 * k, dtype=np.uint64)
    scratch = _scratch()
    size, threshold = 0, floor
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
        size, threshold = _select(acc, n, first * block_docs, buffer, size, k, threshold, floor, scratch)
        acc[:n] = 0.0
    return _finish(buffer, size, k, scratch, out_d, out_s)


@intrinsic
def _add_lanes(typingctx, acc, offset, w, lane_weights, row):
    """``acc[offset : offset + 16] += w * lane_weights[row, :]`` as one vector multiply and one
    vector add (LLVM IR written out: the SLP vectoriser, asked to do the same from sixteen scalar
    updates, gave up or not depending on the surrounding code: up to 5x slower). Each lane gets
    exactly the scalar ``acc + w * weight`` (no fused multiply-add), so results are bit-identical
    to the one-lane kernel. Offsets are multiples of 16 (``acc`` has 16 floats per document)."""
    signature = types.void(acc, offset, w, lane_weights, row)

    def codegen(context, builder, sig, args):
        acc_value, offset_value, w_value, weights_value, row_value = args
        vector = ir.VectorType(ir.FloatType(), LANES)
        acc_array = context.make_array(sig.args[0])(context, builder, acc_value)
        weights_array = context.make_array(sig.args[3])(context, builder, weights_value)
        acc_pointer = builder.bitcast(builder.gep(acc_array.data, [offset_value]), vector.as_pointer())
        row_start = builder.mul(row_value, ir.Constant(row_value.type, LANES))
        weights_pointer = builder.bitcast(builder.gep(weights_array.data, [row_start]), vector.as_pointer())
        splat = builder.insert_element(ir.Constant(vector, ir.Undefined), w_value, ir.Constant(ir.IntType(32), 0))
        splat = builder.shuffle_vector(splat, ir.Constant(vector, ir.Undefined),
                                       ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))
        product = builder.fmul(splat, builder.load(weights_pointer, align=4))
        builder.store(builder.fadd(builder.load(acc_pointer, align=4), product), acc_pointer, align=4)
        return context.get_dummy_value()

    return signature, codegen


def _lane_pointer(context, builder, array_type, array_value, offset_value):
    vector = ir.VectorType(ir.FloatType(), LANES)
    array = context.make_array(array_type)(context, builder, array_value)
    return builder.bitcast(builder.gep(array.data, [offset_value]), vector.as_pointer()), vector


@intrinsic
def _any_lane_above(typingctx, acc, offset, thresholds):
    """Whether any of ``acc[offset : offset + 16]`` is above its lane's threshold (one vector
    compare: most documents are not, and are then skipped without looking at each lane)."""
    signature = types.boolean(acc, offset, thresholds)

    def codegen(context, builder, sig, args):
        acc_pointer, vector = _lane_pointer(context, builder, sig.args[0], args[0], args[1])
        limit_pointer, _ = _lane_pointer(context, builder, sig.args[2], args[2], ir.Constant(ir.IntType(64), 0))
        above = builder.fcmp_ordered(">", builder.load(acc_pointer, align=4), builder.load(limit_pointer, align=4))
        bits = builder.bitcast(above, ir.IntType(LANES))
        return builder.icmp_unsigned("!=", bits, ir.Constant(ir.IntType(LANES), 0))

    return signature, codegen


@intrinsic
def _zero_lanes(typingctx, acc, offset):
    """``acc[offset : offset + 16] = 0`` as one vector store."""
    signature = types.void(acc, offset)

    def codegen(context, builder, sig, args):
        acc_pointer, vector = _lane_pointer(context, builder, sig.args[0], args[0], args[1])
        builder.store(ir.Constant(vector, None), acc_pointer, align=4)
        return context.get_dummy_value()

    return signature, codegen


@numba.njit(cache=True, nogil=True)
def _select_lanes(acc, n, base, n_lanes, buffers, sizes, k, floors, limits, scratch):
    """Offer documents base..base+n of a sixteen-lane tile to the lanes' buffers, and zero the
    tile. ``limits[j]``: the score lane j's next document must exceed (+inf for unused lanes).
    Per lane, documents arrive in position order, as in ``_select``."""
    bits = acc.view(np.uint32)
    for d in range(n):
        o = np.uint64(d) * np.uint64(LANES)
        if _any_lane_above(acc, o, limits):
            for j in range(n_lanes):
                if acc[o + np.uint64(j)] > limits[j]:
                    buffers[j, sizes[j]] = _key(bits[o + np.uint64(j)], base + d)
                    sizes[j] += 1
                    if sizes[j] == buffers.shape[1]:
                        limits[j] = max(_compact(buffers[j], sizes[j], k, scratch), floors[j])
                        sizes[j] = k
        _zero_lanes(acc, o)


@numba.njit(cache=True, nogil=True)
def _score_lanes(acc, starts, first, last, lane_weights, docs, codes, weights, codebook, block_docs):
    """Add a tile's postings (block rows first..last of ``starts``) to the sixteen-lane accumulator."""
    coded = codes.shape[0] > 0
    for u in range(lane_weights.shape[0]):
        for i in range(first, last):
            base = np.uint64((i - first) * block_docs)
            if coded:
                for p in range(starts[i, u], starts[i + 1, u]):
                    _add_lanes(acc, (base + np.uint64(docs[p])) * np.uint64(LANES), codebook[codes[p]], lane_weights, u)
            else:
                for p in range(starts[i, u], starts[i + 1, u]):
                    _add_lanes(acc, (base + np.uint64(docs[p])) * np.uint64(LANES), weights[p], lane_weights, u)


@numba.njit(cache=True, nogil=True)
def _scan_lanes(union, lane_weights, n_lanes, skips, docs, codes, weights, codebook, n_docs, block_docs, first_block,
                last_block, tile, k, floors, out_d, out_s, out_n):
    """Up to sixteen queries together over blocks [first_block, last_block), ``tile`` blocks at a
    time. ``union``: the terms of any of them, ascending; ``lane_weights[u, j]``: query j's weight
    of union[u] (0 if absent)."""
    stride = (n_docs + block_docs - 1) // block_docs + 1
    # The union's skips, block-major: a tile reads one contiguous row per block (term-major, it
    # would touch a cache line per term per block: 2x slower).
    n_union = union.shape[0]
    starts = np.empty((last_block - first_block + 1, n_union), dtype=np.int64)
    for u in range(n_union):
        row = union[u] * stride + first_block
        for i in range(last_block - first_block + 1):
            starts[i, u] = skips[row + i]
    acc = _aligned_zeros(block_docs * tile * LANES)
    buffers = np.empty((LANES, 2 * k), dtype=np.uint64)
    sizes = np.zeros(LANES, dtype=np.int64)
    scratch = _scratch()
    limits = _aligned_zeros(LANES)
    limits[:] = np.inf  # unused lanes never select
    limits[:n_lanes] = floors[:n_lanes]
    for first in range(first_block, last_block, tile):
        last = min(last_block, first + tile)
        _score_lanes(acc, starts, first - first_block, last - first_block, lane_weights, docs, codes, weights, codebook,
                     block_docs)
        n = min(last * block_docs, n_docs) - first * block_docs
        _select_lanes(acc, n, first * block_docs, n_lanes, buffers, sizes, k, floors, limits, scratch)
    for j in range(n_lanes):
        out_n[j] = _finish(buffers[j], sizes[j], k, scratch, out_d[j], out_s[j])


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


@numba.njit(cache=True, nogil=True)
def search_item(q_indptr, q_terms, q_weights, first, last, grouped, skips, docs, codes, weights, codebook, vocab,
                n_docs, block_docs, first_block, last_block, chunk, tile, k, floors, out_d, out_s, out_n):
    """One work item: queries first..last (up to sixteen: one lane group, or one query after the
    other when ``grouped`` is False) over blocks [first_block, last_block); their top k into
    ``out_*[query, chunk]`` (best first, with counts).
    Work items write disjoint parts of the outputs and release the GIL: the caller runs them on
    threads. ``floors[q]``: only scores above it are kept (0; a sharded search passes the k-th
    score of the shards before)."""
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
            out_d[first + j, chunk, :n] = lane_d[j, :n]
            out_s[first + j, chunk, :n] = lane_s[j, :n]
            out_n[first + j, chunk] = n
    else:
        for q in range(first, last):
            a, b = q_indptr[q], q_indptr[q + 1]
            out_n[q, chunk] = _scan_one(q_terms[a:b], q_weights[a:b], skips, docs, codes, weights, codebook, n_docs,
                                        block_docs, first_block, last_block, tile, k, floors[q], out_d[q, chunk],
                                        out_s[q, chunk])


@numba.njit(cache=True, nogil=True)
def merge_sorted(cand_d, cand_s, cand_n, k):
    """Per query, merge ``n_lists`` lists sorted by (score desc, doc asc) into the top k.

    ``cand_d``/``cand_s``: ``(n_queries, n_lists, width)``; ``cand_n``: the valid length of each
    list. Returns ``(docs, scores)`` of shape ``(n_queries, k)``, padded with -1 / 0."""
    n_queries, n_lists = cand_n.shape
    out_d = np.full((n_queries, k), -1, dtype=np.int64)
    out_s = np.zeros((n_queries, k), dtype=np.float32)
    for q in range(n_queries):  # cheap next to the search: not worth a parallel region's compile time
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
