"""Evaluation with ranx: per-variant metrics, per-query scores and paired significance tests.

ranx objects are built from dicts (``Qrels.from_df`` breaks with pandas 3). Queries are those with
at least one relevant (grade > 0) judgment; a variant that retrieved nothing for one of them scores
0 there (ranx's ``make_comparable``), so every variant is averaged over the same queries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from .env import NUMBA_PARALLEL
from .runs import Run

METRIC_LABELS = {"mrr": "MRR", "ndcg": "nDCG", "recall": "R", "precision": "P", "map": "MAP", "hits": "Hits"}


def label(metric: str) -> str:
    name, _, cutoff = metric.partition("@")
    return f"{METRIC_LABELS.get(name, name)}@{cutoff}" if cutoff else METRIC_LABELS.get(name, name)


def qrels_dict(qrels: pa.Table) -> dict[str, dict[str, int]]:
    """Relevant judgments only (grade > 0), for the queries that have one."""
    out: dict[str, dict[str, int]] = {}
    cols = qrels.to_pydict()
    for qid, did, rel in zip(cols["query_id"], cols["doc_id"], cols["relevance"]):
        if rel > 0:
            out.setdefault(qid, {})[did] = int(rel)
    return out


@dataclass
class Evaluation:
    metrics: list[str]
    scores: dict[str, dict[str, float]]  # variant -> metric -> mean
    per_query: dict[str, dict[str, dict[str, float]]]  # variant -> metric -> query -> score
    p_values: dict[str, dict[str, dict[str, float]]]  # variant -> other -> metric -> p
    n_queries: int
    stat_test: str
    max_p: float
    extra: dict[str, dict[str, float]] = field(default_factory=dict)  # variant -> column -> value

    def significant(self, variant: str, other: str, metric: str) -> bool:
        """``variant`` is significantly better than ``other`` on ``metric``."""
        p = self.p_values.get(variant, {}).get(other, {}).get(metric, 1.0)
        return p < self.max_p and self.scores[variant][metric] > self.scores[other][metric]

    def to_dict(self) -> dict:
        return {"metrics": self.metrics, "scores": self.scores, "p_values": self.p_values,
                "n_queries": self.n_queries, "stat_test": self.stat_test, "max_p": self.max_p,
                "extra": self.extra}

    def save(self, folder: str | Path, **meta) -> Path:
        """``metrics.json`` (scores, p-values, ``meta``) and ``per_query.parquet`` in ``folder``."""
        from . import schemas
        from .io import write_json_atomic

        folder = Path(folder)
        write_json_atomic(folder / "metrics.json", {**self.to_dict(), "variants": list(self.scores), **meta})
        schemas.write_table("per_query", per_query_table(self), folder / "per_query.parquet")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Evaluation:
        """What :meth:`save` wrote (variant order kept)."""
        import json

        from . import schemas

        folder = Path(folder)
        data = json.loads((folder / "metrics.json").read_text())
        order = data.get("variants") or list(data["scores"])
        per_query: dict = {v: {m: {} for m in data["metrics"]} for v in order}
        table = schemas.read_table("per_query", folder / "per_query.parquet").to_pydict()
        for v, q, m, value in zip(table["variant"], table["query_id"], table["metric"], table["value"]):
            per_query[v][m][q] = value
        return cls(metrics=data["metrics"], scores={v: data["scores"][v] for v in order}, per_query=per_query,
                   p_values=data["p_values"], n_queries=data["n_queries"], stat_test=data["stat_test"],
                   max_p=data["max_p"], extra=data.get("extra", {}))

    def select(self, names: dict[str, str]) -> Evaluation:
        """These variants only, renamed (``{old: new}``, in that order)."""
        def rename(d: dict) -> dict:
            return {new: d[old] for old, new in names.items() if old in d}

        p_values = {names[v]: rename(others) for v, others in self.p_values.items() if v in names}
        return Evaluation(self.metrics, rename(self.scores), rename(self.per_query),
                          {v: p_values.get(v, {}) for v in rename(self.scores)}, self.n_queries, self.stat_test,
                          self.max_p, rename(self.extra))

    def markdown(self, baseline: str | None = None, digits: int = 4) -> str:
        """A table, variants as rows; ``*`` marks a significant difference from ``baseline`` (up or down)."""
        extra_cols = sorted({c for v in self.extra.values() for c in v})
        head = ["variant"] + [label(m) for m in self.metrics] + extra_cols
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        for variant, scores in self.scores.items():
            cells = [variant]
            for m in self.metrics:
                mark = ""
                if baseline and variant != baseline and baseline in self.scores:
                    p = self.p_values.get(variant, {}).get(baseline, {}).get(m, 1.0)
                    mark = "*" if p < self.max_p else ""
                cells.append(f"{scores[m]:.{digits}f}{mark}")
            for c in extra_cols:
                value = self.extra.get(variant, {}).get(c)
                cells.append("" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}")
            lines.append("| " + " | ".join(cells) + " |")
        note = f"{self.n_queries} queries with a relevant judgment; "
        if baseline:
            note += f"* = differs from {baseline} with p < {self.max_p} (paired {self.stat_test} test, ranx)."
        return "\n".join(lines) + "\n\n" + note + "\n"


def evaluate(
    qrels: dict[str, dict[str, int]],
    runs: dict[str, Run],
    metrics: list[str],
    stat_test: str = "student",
    max_p: float = 0.05,
) -> Evaluation:
    if not qrels:
        raise ValueError("no query has a relevant judgment: nothing to evaluate")
    with NUMBA_PARALLEL:  # ranx's metrics are numba parallel regions
        return _evaluate(qrels, runs, metrics, stat_test, max_p)


def _evaluate(qrels, runs, metrics, stat_test, max_p) -> Evaluation:
    import ranx  # deferred: importing ranx compiles numba kernels

    ranx_qrels = ranx.Qrels(qrels, name="qrels")
    ranx_runs = []
    for name, run in runs.items():
        # Keep judged queries only; an empty list would break ranx, a missing query scores 0.
        judged = {q: {d: float(s) for d, s in hits} for q, hits in run.items() if q in qrels and hits}
        ranx_runs.append(ranx.Run(judged, name=name))
    per_query: dict[str, dict[str, dict[str, float]]] = {}
    if len(ranx_runs) > 1:
        report = ranx.compare(ranx_qrels, ranx_runs, metrics, stat_test=stat_test, max_p=max_p,
                              make_comparable=True, rounding_digits=8)
        as_dict = report.to_dict()
        scores = {r.name: {m: float(as_dict[r.name]["scores"][m]) for m in metrics} for r in ranx_runs}
        p_values = {r.name: {o: {m: float(p) for m, p in ps.items()} for o, ps in as_dict[r.name]["comparisons"].items()}
                    for r in ranx_runs}
    else:
        run = ranx_runs[0]
        values = ranx.evaluate(ranx_qrels, run, metrics, make_comparable=True)
        values = values if isinstance(values, dict) else {metrics[0]: values}
        scores = {run.name: {m: float(values[m]) for m in metrics}}
        p_values = {run.name: {}}
    for r in ranx_runs:
        per_query[r.name] = {m: {q: float(s) for q, s in r.scores[m].items()} for m in metrics}
    return Evaluation(metrics=list(metrics), scores=scores, per_query=per_query, p_values=p_values,
                      n_queries=len(qrels), stat_test=stat_test, max_p=max_p)


def per_query_table(evaluation: Evaluation) -> pa.Table:
    """The ``per_query`` table (see :mod:`disco_core.schemas`)."""
    from . import schemas

    rows: dict[str, list] = {"variant": [], "query_id": [], "metric": [], "value": []}
    for variant, by_metric in evaluation.per_query.items():
        for metric, by_query in by_metric.items():
            for qid, value in by_query.items():
                rows["variant"].append(variant)
                rows["query_id"].append(qid)
                rows["metric"].append(metric)
                rows["value"].append(value)
    return schemas.to_table("per_query", rows)
