"""Runs (ranked lists) as Parquet tables of the ``run`` schema and as TREC run files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from . import schemas
from .errors import DataError
from .io import atomic_path, read_tsv

Run = dict[str, list[tuple[str, float]]]  # query id -> [(doc id, score)], best first


def to_table(run: Run) -> pa.Table:
    qids, dids, ranks, scores = [], [], [], []
    for qid, hits in run.items():
        for rank, (did, score) in enumerate(hits, start=1):
            qids.append(qid)
            dids.append(did)
            ranks.append(rank)
            scores.append(score)
    return schemas.to_table("run", {"query_id": qids, "doc_id": dids, "rank": ranks,
                                    "score": np.asarray(scores, dtype=np.float32)})


def from_table(table: pa.Table) -> Run:
    run: Run = {}
    cols = table.sort_by([("query_id", "ascending"), ("rank", "ascending")]).to_pydict()
    for qid, did, score in zip(cols["query_id"], cols["doc_id"], cols["score"]):
        run.setdefault(qid, []).append((did, float(score)))
    return run


def write_parquet(run: Run, path: str | Path) -> Path:
    return schemas.write_table("run", to_table(run), path)


def read_parquet(path: str | Path) -> Run:
    return from_table(schemas.read_table("run", path))


def write_trec(run: Run, path: str | Path, tag: str = "disco") -> Path:
    """``qid Q0 docid rank score tag`` lines (trec_eval's format). Scores keep 9 significant digits,
    enough to tell any two float32 scores apart: rounding must not create ties that reorder a run."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as out:
        for qid, hits in run.items():
            for rank, (did, score) in enumerate(hits, start=1):
                out.write(f"{qid} Q0 {did} {rank} {score:.9g} {tag}\n")
    return Path(path)


def read_trec(path: str | Path) -> Run:
    run: Run = {}
    for line, (qid, _q0, did, _rank, score, _tag) in read_tsv(path, columns=6, header=False, sep=None):
        try:
            run.setdefault(qid, []).append((did, float(score)))
        except ValueError:
            raise DataError(path, f"score {score!r} is not a number", line) from None
    return {q: sorted(h, key=lambda x: -x[1]) for q, h in run.items()}
