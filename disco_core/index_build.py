"""Building the index's arrays with bounded memory, whatever the collection's size.

Layout (read by :mod:`disco_core._index_kernels`): the postings of term ``t`` are
``docs[skips[t, 0]:skips[t, n_blocks]]`` in document order (term-major, like a CSC matrix), and
``skips[t, b]`` is where its documents of block ``b`` (documents ``b * block_docs`` onwards)
start; a document is stored as a ``uint16`` offset inside its block. Weights are ``uint16`` codes
into a sorted ``float32`` codebook when the collection has at most 65,536 distinct weights (bit
patterns: exactly the same values, in two bytes instead of four), else ``float32``.

Two passes over the document vectors, given in document order in chunks of any size: the first
counts each term's postings per block and collects the distinct weights; the second writes each
chunk's postings where they belong (``os.pwrite`` into preallocated ``.npy`` files, or into arrays
in memory). Peak memory is one chunk plus the skip table, never the collection's matrix.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import scipy.sparse as sp

BLOCK_DOCS = 4096
MAX_CODES = 1 << 16
SUB_CHUNK = 32_768  # rows converted to columns at a time in the second pass (bounds its memory)
ARRAYS = ("skips", "docs", "weights", "codebook")


class Layout:
    """What the first pass learns: sizes, the skip table and the codebook (None: float weights)."""

    def __init__(self, vocab_size: int, block_docs: int, weights: str):
        if not 1 <= block_docs <= MAX_CODES:
            raise ValueError(f"block_docs must be between 1 and {MAX_CODES}")
        if weights not in ("auto", "float32"):
            raise ValueError("weights must be 'auto' or 'float32'")
        self.vocab_size, self.block_docs = int(vocab_size), int(block_docs)
        self.n_docs = self.nnz = 0
        self._block_counts: list[np.ndarray] = []  # postings per term, one array per block
        self._keys = np.empty(0, np.uint32) if weights == "auto" else None  # distinct weight bit patterns

    def count(self, matrix: sp.csr_matrix) -> None:
        bs = self.block_docs
        start, stop = self.n_docs, self.n_docs + matrix.shape[0]
        for b in range(start // bs, (stop - 1) // bs + 1 if stop > start else 0):
            lo, hi = max(b * bs, start) - start, min((b + 1) * bs, stop) - start
            counts = np.bincount(matrix.indices[matrix.indptr[lo] : matrix.indptr[hi]], minlength=self.vocab_size)
            if b == len(self._block_counts):
                self._block_counts.append(counts.astype(np.uint32))
            else:
                self._block_counts[b] += counts.astype(np.uint32)
        if self._keys is not None:
            self._keys = _distinct(np.concatenate([self._keys, _distinct(matrix.data.view(np.uint32))]))
            if self._keys.shape[0] > MAX_CODES:
                self._keys = None
        self.n_docs, self.nnz = stop, self.nnz + matrix.nnz

    @property
    def n_blocks(self) -> int:
        return len(self._block_counts)

    def skips(self) -> np.ndarray:
        """``(vocab, n_blocks + 1)`` int64, flattened: term-major running counts."""
        counts = np.zeros((self.vocab_size, self.n_blocks + 1), dtype=np.int64)
        for b, block in enumerate(self._block_counts):
            counts[:, b + 1] = block
        counts = counts.ravel()
        return np.cumsum(counts, out=counts)  # counts[t, 0] = 0, so row t starts where term t starts

    def codebook(self) -> np.ndarray | None:
        return None if self._keys is None else self._keys.view(np.float32)

    def describe(self) -> dict:
        return {"n_docs": self.n_docs, "nnz": self.nnz, "vocab_size": self.vocab_size, "block_docs": self.block_docs,
                "weights": "float32" if self._keys is None else "uint16 codes"}


def _distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (np.unique is much slower on large arrays in numpy 2.x)."""
    values = np.sort(values)
    return values[np.concatenate([[True], values[1:] != values[:-1]])] if values.shape[0] else values


class _Memory:
    """Postings written into arrays in memory."""

    def __init__(self, nnz: int, weight_dtype):
        self.arrays = {"docs": np.zeros(nnz, np.uint16), "weights": np.zeros(nnz, weight_dtype)}

    def put_runs(self, terms, starts, stops, positions, docs, weights) -> None:
        """Each term's run ``[start, stop)`` of this chunk's postings goes to ``position``."""
        out_docs, out_weights = self.arrays["docs"], self.arrays["weights"]
        for a, b, at in zip(starts, stops, positions):
            out_docs[at : at + b - a] = docs[a:b]
            out_weights[at : at + b - a] = weights[a:b]

    def close(self) -> None:
        pass


class _Files:
    """Postings written into preallocated ``.npy`` files (temporary names until ``close``)."""

    def __init__(self, folder: Path, nnz: int, weight_dtype):
        self.folder, self.handles, self.offset = folder, {}, {}
        for name, dtype in (("docs", np.uint16), ("weights", np.dtype(weight_dtype))):
            handle = open(folder / f".{name}.npy.tmp", "w+b")
            header = _npy_header(dtype, nnz)
            handle.write(header)
            handle.truncate(len(header) + nnz * np.dtype(dtype).itemsize)
            self.handles[name], self.offset[name] = handle, len(header)

    def put_runs(self, terms, starts, stops, positions, docs, weights) -> None:
        """Each term's run ``[start, stop)`` of this chunk's postings goes to ``position``."""
        fd_docs, fd_weights = self.handles["docs"].fileno(), self.handles["weights"].fileno()
        base_docs, base_weights = self.offset["docs"], self.offset["weights"]
        docs_bytes, weights_bytes = memoryview(docs).cast("B"), memoryview(weights).cast("B")
        w = weights.itemsize
        for a, b, at in zip(starts, stops, positions):
            os.pwrite(fd_docs, docs_bytes[2 * a : 2 * b], base_docs + 2 * at)
            os.pwrite(fd_weights, weights_bytes[w * a : w * b], base_weights + w * at)

    def close(self) -> None:
        for name, handle in self.handles.items():
            handle.close()
            os.replace(self.folder / f".{name}.npy.tmp", self.folder / f"{name}.npy")


def _npy_header(dtype, length: int) -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                  "fortran_order": False, "shape": (int(length),)})
    return header.getvalue()


def _fill(chunks: Iterable[sp.csr_matrix], layout: Layout, skips: np.ndarray, codebook: np.ndarray | None, out) -> None:
    """Second pass: each chunk's postings, term by term, after the ones already written."""
    n_terms, bs = layout.vocab_size, layout.block_docs
    cursor = skips.reshape(n_terms, -1)[:, 0].copy()
    keys = None if codebook is None else codebook.view(np.uint32)
    start = 0
    for matrix in chunks:
        for lo in range(0, matrix.shape[0], SUB_CHUNK):
            part = matrix[lo : lo + SUB_CHUNK].tocsc()
            part.sort_indices()
            docs = ((part.indices + np.int32((start + lo) % bs)) % np.int32(bs)).astype(np.uint16)
            weights = part.data if keys is None else np.searchsorted(keys, part.data.view(np.uint32)).astype(np.uint16)
            counts = np.diff(part.indptr)
            present = np.flatnonzero(counts)
            out.put_runs(present.tolist(), part.indptr[present].tolist(), part.indptr[present + 1].tolist(),
                         cursor[present].tolist(), docs, weights)
            cursor += counts
        start += matrix.shape[0]
    out.close()


def _as_csr(matrix: sp.spmatrix, vocab_size: int) -> sp.csr_matrix:
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    if matrix.shape[1] != vocab_size:
        raise ValueError(f"vectors have {matrix.shape[1]} dimensions, index has {vocab_size}")
    matrix.sum_duplicates()
    return matrix


def build_arrays(matrix: sp.spmatrix, block_docs: int = BLOCK_DOCS, weights: str = "auto") -> tuple[dict, dict]:
    """The index arrays of a matrix, in memory, and the layout's description."""
    matrix = _as_csr(matrix, matrix.shape[1])
    layout = Layout(matrix.shape[1], block_docs, weights)
    layout.count(matrix)
    skips, codebook = layout.skips(), layout.codebook()
    memory = _Memory(layout.nnz, np.float32 if codebook is None else np.uint16)
    _fill([matrix], layout, skips, codebook, memory)
    return {**memory.arrays, "skips": skips, "codebook": _codebook_array(codebook)}, layout.describe()


def write_arrays(folder: str | Path, chunks: Callable[[], Iterable[sp.spmatrix]], vocab_size: int,
                 block_docs: int = BLOCK_DOCS, weights: str = "auto") -> dict:
    """Write the index arrays into ``folder`` from ``chunks()`` (called twice: one iterator per
    pass, the same vectors in the same order). Returns the layout's description."""
    folder = Path(folder)
    layout = Layout(vocab_size, block_docs, weights)
    for matrix in chunks():
        layout.count(_as_csr(matrix, vocab_size))
    skips, codebook = layout.skips(), layout.codebook()
    for name, values in (("skips", skips), ("codebook", _codebook_array(codebook))):
        with open(folder / f"{name}.npy", "wb") as handle:
            np.save(handle, values)
    out = _Files(folder, layout.nnz, np.float32 if codebook is None else np.uint16)
    _fill((_as_csr(m, vocab_size) for m in chunks()), layout, skips, codebook, out)
    return layout.describe()


def _codebook_array(codebook: np.ndarray | None) -> np.ndarray:
    return np.empty(0, np.float32) if codebook is None else codebook


class IdsWriter:
    """Document ids streamed into a JSON list (never all in memory while building); the file
    takes its name on ``close``."""

    def __init__(self, path: Path):
        self.path, self.partial = Path(path), Path(path).with_name(f".{Path(path).name}.tmp")
        self._handle = self.partial.open("w", encoding="utf-8")
        self._handle.write("[")
        self.count = 0

    def add(self, ids: Iterable[str]) -> None:
        encoded = [json.dumps(str(doc_id)) for doc_id in ids]
        if encoded:
            self._handle.write(("," if self.count else "") + ",".join(encoded))
            self.count += len(encoded)

    def close(self) -> None:
        self._handle.write("]\n")
        self._handle.close()
        os.replace(self.partial, self.path)
