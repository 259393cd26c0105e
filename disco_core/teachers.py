"""Teacher scoring, offline: SPLADE on each teacher's rewrites against the shared index, and fusion.

A teacher's score for a document is the dot product of its rewrite's SPLADE vector with the
document's vector. ``teacher_scores`` keeps each teacher's top-k; ``fuse`` combines teachers at the
score level on the union of their candidates. Because the document vectors are at hand, a
candidate that one teacher did not retrieve gets that teacher's exact score, not a guess.

Fusion rules: ``mean`` (DiSCo's default: mean over the teachers that rewrote the turn; teacher
weights make it a weighted mean), ``max``, and ``per-teacher`` (no fusion: each teacher's top-k is
a separate target list). Scores are raw dot products, as in DiSCo; ``normalise="zscore"`` first
standardises each teacher's scores over the query's candidates, so that no teacher weighs more
for having a larger score scale, then gives the fused list the teachers' (weighted) mean centre and
spread back, so the KL's targets stay about as sharp as raw scores make them (averaging z-scores of
teachers that disagree narrows them somewhat); what changes is the teachers' relative say.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from . import schemas
from .index import InvertedIndex

FUSIONS = ("mean", "max", "per-teacher")
NORMALISATIONS = ("none", "zscore")


def teacher_scores(index: InvertedIndex, queries: sp.csr_matrix, query_ids: list[str], teacher: str,
                   k: int = 1000, **search) -> pa.Table:
    """The ``teacher_scores`` table of one teacher's top-k."""
    docs, scores = index.search(queries, k=k, **search)
    cols: dict[str, list] = {"query_id": [], "doc_id": [], "teacher": [], "rank": [], "score": []}
    for qid, drow, srow in zip(query_ids, docs, scores):
        n = int((drow >= 0).sum())
        cols["query_id"] += [qid] * n
        cols["doc_id"] += [index.doc_ids[d] for d in drow[:n]]
        cols["teacher"] += [teacher] * n
        cols["rank"] += list(range(1, n + 1))
        cols["score"] += srow[:n].tolist()
    return schemas.to_table("teacher_scores", cols)


def fuse(scores: pa.Table, vectors: dict[str, tuple[sp.csr_matrix, list[str]]],
         doc_matrix: sp.csr_matrix, doc_ids: list[str], rule: str = "mean", k: int | None = None,
         weights: dict[str, float] | None = None, normalise: str = "none") -> pa.Table:
    """Combine teachers into the ``targets`` table.

    ``scores``: the ``teacher_scores`` of every teacher; ``vectors``: each teacher's query vectors
    and their ids (to score the union exactly; a teacher without them, whose scores were imported,
    keeps its listed scores); ``doc_matrix``/``doc_ids``: the corpus vectors.
    ``k`` caps each fused list (default: the size of the union). ``weights``: teacher -> weight in
    the mean (default 1 each); ``normalise``: ``none`` or ``zscore`` (module docstring)."""
    if rule not in FUSIONS:
        raise ValueError(f"unknown fusion {rule!r}; choose from {FUSIONS}")
    if normalise not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {normalise!r}; choose from {NORMALISATIONS}")
    if rule == "per-teacher":
        renamed = scores.rename_columns(["query_id", "doc_id", "source", "rank", "score"])
        return schemas.validate("targets", renamed.select(schemas.TARGETS.names))
    position = {d: i for i, d in enumerate(doc_ids)}
    rows = {}
    teacher_rows = {t: {q: i for i, q in enumerate(ids)} for t, (_, ids) in vectors.items()}
    cols = scores.select(["query_id", "doc_id"]).to_pydict()
    for qid, did in zip(cols["query_id"], cols["doc_id"]):
        rows.setdefault(qid, set()).add(did)
    out: dict[str, list] = {"query_id": [], "source": [], "doc_id": [], "rank": [], "score": []}
    listed = _listed_scores(scores, set(vectors))
    for qid in sorted(rows):
        candidates = sorted(rows[qid], key=position.__getitem__)
        block = doc_matrix[[position[d] for d in candidates]]
        per_teacher = {t: np.asarray((block @ vectors[t][0][teacher_rows[t][qid]].T).todense()).reshape(-1)
                       for t in vectors if qid in teacher_rows[t]}
        per_teacher |= {t: _as_listed(listed[t][qid], candidates) for t in listed if qid in listed[t]}
        fused = _combine(per_teacher, rule, weights or {}, normalise)
        order = np.lexsort((np.arange(len(candidates)), -fused))[:k]
        out["query_id"] += [qid] * len(order)
        out["source"] += [f"fused:{rule}"] * len(order)
        out["doc_id"] += [candidates[i] for i in order]
        out["rank"] += list(range(1, len(order) + 1))
        out["score"] += fused[order].astype(np.float32).tolist()
    return schemas.to_table("targets", out)


def _combine(per_teacher: dict[str, np.ndarray], rule: str, weights: dict[str, float], normalise: str) -> np.ndarray:
    """One query's fused scores over its candidates from each teacher's scores of them."""
    matrix = np.column_stack(list(per_teacher.values()))
    w = np.asarray([weights.get(t, 1.0) for t in per_teacher])
    w = w / w.sum()
    if normalise == "zscore":
        centre, spread = matrix.mean(axis=0), matrix.std(axis=0)
        matrix = (matrix - centre) / np.where(spread > 0, spread, 1.0)
    fused = matrix.max(axis=1) if rule == "max" else matrix @ w
    # back on the teachers' (weighted) mean scale, so the KL's targets stay about as sharp as raw
    return fused * (spread @ w) + centre @ w if normalise == "zscore" else fused


def _listed_scores(scores: pa.Table, rescored: set[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Teacher -> query -> {doc: score} of the teachers without query vectors (imported scores)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    cols = scores.select(["teacher", "query_id", "doc_id", "score"]).to_pydict()
    for t, q, d, sc in zip(cols["teacher"], cols["query_id"], cols["doc_id"], cols["score"]):
        if t not in rescored:
            out.setdefault(t, {}).setdefault(q, {})[d] = sc
    return out


def _as_listed(listed: dict[str, float], candidates: list[str]) -> np.ndarray:
    """An imported teacher's scores of the candidates; one it did not list gets its lowest listed
    score (its exact score is unknown: it ranked below everything it kept)."""
    floor = min(listed.values())
    return np.asarray([listed.get(d, floor) for d in candidates], dtype=np.float64)


def target_lists(table: pa.Table, source: str = "source") -> dict[str, list[tuple[list[str], list[float]]]]:
    """A ``targets`` (or ``teacher_scores``, ``source="teacher"``) table as the trainer reads it:
    per query, one ``(doc ids by rank, scores)`` list per source, sources in name order."""
    table = table.sort_by([("query_id", "ascending"), (source, "ascending"), ("rank", "ascending")])
    lists: dict[tuple[str, str], tuple[list[str], list[float]]] = {}
    for qid, src, did, score in zip(*(table[c].to_pylist() for c in ("query_id", source, "doc_id", "score"))):
        docs, scores = lists.setdefault((qid, src), ([], []))
        docs.append(did)
        scores.append(score)
    out: dict[str, list[tuple[list[str], list[float]]]] = {}
    for (qid, _), pair in lists.items():
        out.setdefault(qid, []).append(pair)
    return out
