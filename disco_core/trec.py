"""TREC files for ``trec_eval``: qrels beside the runs, so the report's figures can be reproduced.

``trec_eval -c -M 10 -m recip_rank qrels.txt run.trec`` (MRR@10) and ``-c -m ndcg_cut.3`` (nDCG@3)
give :func:`disco_core.evaluation.evaluate`'s values: the qrels hold the queries with a relevant
judgment (the ones every report averages over) and ``-c`` counts a query the run missed as 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa

from .io import write_text_atomic
from .runs import Run, write_trec


def qrels_lines(qrels: pa.Table | Mapping[str, Mapping[str, int]]) -> list[str]:
    """``qid 0 docid grade`` lines of the queries with at least one relevant judgment (the queries
    every report averages over), their judged-irrelevant documents included."""
    if isinstance(qrels, pa.Table):
        judged: dict[str, dict[str, int]] = {}
        for qid, did, rel in zip(*(qrels[c].to_pylist() for c in ("query_id", "doc_id", "relevance"))):
            judged.setdefault(qid, {})[did] = int(rel)
    else:
        judged = {q: dict(d) for q, d in qrels.items()}
    return [f"{qid} 0 {did} {rel}\n" for qid, docs in judged.items() if any(r > 0 for r in docs.values())
            for did, rel in docs.items()]


def write_trec_qrels(qrels: pa.Table | Mapping[str, Mapping[str, int]], path: str | Path) -> Path:
    return write_text_atomic(path, "".join(qrels_lines(qrels)))


def export_trec(folder: str | Path, qrels: pa.Table | Mapping[str, Mapping[str, int]],
                runs: Mapping[str, Run]) -> dict[str, Path]:
    """``qrels.txt`` and one ``<name>.trec`` per run in ``folder``, so that
    ``trec_eval -c -m recip_rank -M 10 -m ndcg_cut.3 qrels.txt <name>.trec`` gives the report's figures.

    Returns ``{"qrels": path, <run name>: path}``. Run names become file names (``/ : space`` -> ``_``)."""
    folder = Path(folder)
    out = {"qrels": write_trec_qrels(qrels, folder / "qrels.txt")}
    for name, run in runs.items():
        safe = "".join("_" if c in '/\\: "\'' else c for c in name)
        out[name] = write_trec(run, folder / f"{safe}.trec", tag=safe[:32] or "disco")
    return out
