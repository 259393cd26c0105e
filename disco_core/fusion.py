"""Rank fusion of runs (``ranx.fuse``: RRF, CombSUM, ...) that may hold different queries."""

from __future__ import annotations

from .env import NUMBA_PARALLEL
from .runs import Run


def fuse(runs: dict[str, Run], method: str = "rrf", norm: str | None = None, params: dict | None = None,
         k: int = 1000) -> Run:
    """Rank fusion (``ranx.fuse``) of named runs, top ``k`` per query. ranx needs every run to hold
    the same queries; a query some runs lack (a teacher without a rewrite for that turn) is fused
    over the runs that hold it, and one held by a single run keeps that run's ranking (every ranx
    method keeps a lone list's order)."""
    import ranx  # deferred: importing ranx compiles numba kernels

    holders: dict[tuple[str, ...], list[str]] = {}
    for qid in dict.fromkeys(q for run in runs.values() for q, hits in run.items() if hits):
        holders.setdefault(tuple(n for n, run in runs.items() if run.get(qid)), []).append(qid)
    fused: Run = {}
    for names, qids in holders.items():
        if len(names) == 1:
            fused.update({q: list(runs[names[0]][q]) for q in qids})
            continue
        parts = [ranx.Run({q: {d: float(s) for d, s in runs[n][q]} for q in qids}, name=n) for n in names]
        with NUMBA_PARALLEL:  # ranx's normalisations are numba kernels, like the metrics
            result = ranx.fuse(parts, norm=norm, method=method, params=dict(params or {})).to_dict()
        fused.update({q: sorted(docs.items(), key=lambda x: (-x[1], x[0])) for q, docs in result.items()})
    return {q: hits[:k] for q, hits in fused.items()}
