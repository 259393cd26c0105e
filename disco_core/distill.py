"""DiSCo distillation data: training examples from cached teacher scores, candidate sampling, and
the dev set that picks the epoch (the trainer is :mod:`disco_core.trainer`, the loss
:mod:`disco_core.losses`).

The student is a SPLADE query encoder reading the formatted conversation. For each training turn
it scores 1 positive + ``negatives`` documents sampled from the teacher's ranks
``negative_ranks`` (11-960 by default); the loss is

    kl_weight * KL(softmax(teacher / T) || softmax(student / T))   over those candidates
  + ce_weight * cross-entropy of each query against the batch's positives (in-batch negatives)
  + optional FLOPS / L1 regularizers on the query vectors, with a quadratic warm-up.

A positive the teacher did not retrieve gets the query's top teacher score. The document encoder
is frozen, so candidate vectors are rows of the corpus matrix already built for the index: no
document forward pass per step (``doc_source="encode"`` re-encodes them instead, for comparison).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .encoder import SpladeEncoder

log = logging.getLogger(__name__)


@dataclass
class Example:
    query_id: str
    text: str  # the student's input (formatted conversation)
    positives: np.ndarray  # document positions judged relevant
    candidates: np.ndarray  # document positions by teacher rank (rank 1 first)
    scores: np.ndarray  # teacher scores, same order


def build_examples(query_ids: Sequence[str], texts: Sequence[str],
                   targets: dict[str, list[tuple[list[str], list[float]]]],
                   qrels: dict[str, dict[str, int]], doc_position: dict[str, int],
                   unjudged: bool = False) -> list[Example]:
    """One example per target list of each turn that has a relevant document in the corpus.

    ``targets``: ``{query_id: [(doc ids by rank, scores), ...]}``, one list per target source (one
    for fused targets, one per teacher without fusion: see :func:`disco_core.teachers.target_lists`).
    ``unjudged``: also the turns without a relevant judgment, the target's top document standing
    for the positive (the distillation needs no label; only the in-batch term does)."""
    out = []
    for qid, text in zip(query_ids, texts):
        positives = [doc_position[d] for d, rel in qrels.get(qid, {}).items() if rel > 0 and d in doc_position]
        if not positives and not unjudged:
            continue
        for docs, scores in targets.get(qid, ()):
            candidates = np.asarray([doc_position[d] for d in docs])
            if not len(candidates):
                continue
            chosen = np.asarray(sorted(positives)) if positives else candidates[:1]
            out.append(Example(qid, text, chosen, candidates, np.asarray(scores, dtype=np.float32)))
    return out


def sample_candidates(example: Example, rng: np.random.Generator, negatives: int,
                      ranks: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(document positions, teacher scores)``: the positive first, then the negatives."""
    positive = int(rng.choice(example.positives))
    hit = np.flatnonzero(example.candidates == positive)
    positive_score = example.scores[hit[0]] if hit.size else example.scores.max()
    lo, hi = ranks
    pool = np.arange(lo - 1, min(hi, len(example.candidates)))
    pool = pool[~np.isin(example.candidates[pool], example.positives)]
    if pool.size == 0:  # a short teacher list: fall back to any non-relevant candidate
        pool = np.flatnonzero(~np.isin(example.candidates, example.positives))
    if pool.size == 0:
        raise ValueError(f"query {example.query_id!r}: no negative candidate in the teacher's list")
    chosen = rng.choice(pool, size=negatives, replace=pool.size < negatives)
    docs = np.concatenate([[positive], example.candidates[chosen]])
    scores = np.concatenate([[positive_score], example.scores[chosen]]).astype(np.float32)
    return docs, scores


@dataclass
class DevSet:
    """Turns set aside to select the checkpoint: their student inputs, qrels and the index to search."""

    query_ids: list[str]
    texts: list[str]
    qrels: dict[str, dict[str, int]]
    index: object  # disco_core.index.InvertedIndex


def dev_evaluator(dev_sets: Sequence[DevSet], metric: str = "mrr@10", k: int = 100) -> Callable[[SpladeEncoder], float]:
    """``score(student)``: ``metric`` of the student's top-k over every dev turn with a relevant
    judgment (several sets: one mean over all of them, ids kept apart by their set)."""
    from .evaluation import evaluate

    def score(student: SpladeEncoder) -> float:
        qrels, run = {}, {}
        for i, dev in enumerate(dev_sets):
            judged = [(q, t) for q, t in zip(dev.query_ids, dev.texts) if dev.qrels.get(q)]
            if not judged:
                continue
            matrix = student.encode([t for _, t in judged])
            hits = dev.index.search_ids(matrix, [q for q, _ in judged], k=k)
            run.update({f"{i}:{q}": h for q, h in hits.items()})
            qrels.update({f"{i}:{q}": dev.qrels[q] for q, _ in judged})
        if not qrels:
            raise ValueError("the dev set has no turn with a relevant judgment")
        return evaluate(qrels, {"dev": run}, [metric]).scores["dev"][metric]

    return score
