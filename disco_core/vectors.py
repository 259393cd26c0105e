"""Sparse vectors on disk: a CSR matrix (``.npz``) with its row ids (``.ids.json``) beside it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .errors import DataError
from .io import atomic_path, write_json_atomic


def save_vectors(path: str | Path, matrix: sp.csr_matrix, ids: list[str]) -> Path:
    if matrix.shape[0] != len(ids):
        raise ValueError(f"{matrix.shape[0]} rows for {len(ids)} ids")
    path = Path(path)
    write_json_atomic(ids_path(path), list(ids))
    with atomic_path(path) as tmp:
        _save_npz(tmp, sp.csr_matrix(matrix, dtype=np.float32))
    return path


def _save_npz(path: Path, matrix: sp.csr_matrix) -> None:
    """``scipy.sparse.save_npz``'s file, byte for byte the same for the same matrix: its zip entries
    carry a fixed date, not the time of writing. Identical vectors then have identical content
    hashes, and the stages downstream of a rerun that changed nothing stay cache hits."""
    import zipfile

    arrays = {"indices": matrix.indices, "indptr": matrix.indptr, "format": np.array("csr"),
              "shape": np.array(matrix.shape), "data": matrix.data}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asanyarray(array), allow_pickle=False)


def ids_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.stem + ".ids.json")


def load_vectors(path: str | Path) -> tuple[sp.csr_matrix, list[str]]:
    path = Path(path)
    if not path.exists():
        raise DataError(path, "vector file not found")
    matrix = sp.load_npz(path).tocsr()
    ids = json.loads(ids_path(path).read_text())
    if matrix.shape[0] != len(ids):
        raise DataError(path, f"{matrix.shape[0]} vectors but {len(ids)} ids in {ids_path(path).name}")
    return matrix, ids


def load_vector_files(paths: list[str | Path]) -> tuple[sp.csr_matrix, list[str]]:
    """Several vector files (e.g. a corpus's shards, in order) as one matrix and id list."""
    parts = [load_vectors(p) for p in paths]
    if not parts:
        raise ValueError("no vector files given")
    return sp.vstack([m for m, _ in parts], format="csr"), [i for _, ids in parts for i in ids]


def load_ids(paths: list[str | Path]) -> list[str]:
    """The ids of several vector files, in order, without reading their vectors."""
    return [i for path in paths for i in json.loads(ids_path(path).read_text())]


def vector_file_dimensions(path: str | Path) -> int:
    """The number of columns (vocabulary size) of a vector file, without reading the vectors."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "vector file not found")
    with np.load(path) as npz:
        return int(npz["shape"][1])


def mean_nonzeros(matrix: sp.spmatrix) -> float:
    return float(matrix.getnnz(axis=1).mean()) if matrix.shape[0] else 0.0
