"""The DiSCo report: student vs teachers vs baselines, rendered from an evaluation.

Rows: the student (0 LLM calls at inference), each teacher (1 LLM call per turn; 0 for people's
rewrites, which are not available at search time either), the fused teachers, the last turn, and
the untrained model on the conversation as the student reads it. Columns: the metrics, query
non-zeros, LLM calls, and measured query latency (rewriting, where the rewrite stage timed it, +
encoding + search). ``*`` marks a significant difference from the best teacher; a second table
breaks the main metric down by turn depth; a plot shows effectiveness and query non-zeros against
turn depth. Nothing here retrieves or scores: the evaluation (``disco_core.evaluation``) already
holds every per-query value.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .evaluation import Evaluation, label


@dataclass
class Row:
    name: str  # as shown
    variant: str  # the evaluation's name for it
    kind: str  # student | teacher | fused | baseline
    llm_calls: float
    query_nonzeros: dict[str, float] = field(default_factory=dict)  # query id -> nnz
    latency_ms: float | None = None


def depth_bucket(turn: int, last: int = 6) -> str:
    return f"{last}+" if turn >= last else str(turn)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def build_report(evaluation: Evaluation, rows: list[Row], turn_of: dict[str, int]) -> tuple[Evaluation, dict]:
    """The rows of ``evaluation`` renamed and annotated; a summary with the best teacher and the
    main metric (the first) by turn depth, over the evaluation's judged queries."""
    ev = evaluation.select({r.variant: r.name for r in rows})
    main = ev.metrics[0]
    teachers = [r.name for r in rows if r.kind == "teacher"]
    best_teacher = max(teachers, key=lambda t: ev.scores[t][main]) if teachers else None
    judged = set(ev.per_query[rows[0].name][main])
    depth: dict[str, dict[str, float]] = {}
    nnz_depth: dict[str, dict[str, float]] = {}
    for r in rows:
        by_bucket, nnz_bucket = defaultdict(list), defaultdict(list)
        for qid, value in ev.per_query[r.name][main].items():
            by_bucket[depth_bucket(turn_of[qid])].append(value)
        for qid, nnz in r.query_nonzeros.items():
            if qid in judged:
                nnz_bucket[depth_bucket(turn_of[qid])].append(nnz)
        depth[r.name] = {b: _mean(v) for b, v in sorted(by_bucket.items())}
        nnz_depth[r.name] = {b: _mean(v) for b, v in sorted(nnz_bucket.items())}
        ev.extra[r.name] = {"q nnz": _mean([n for q, n in r.query_nonzeros.items() if q in judged]),
                            "LLM calls": r.llm_calls,
                            "ms/query": r.latency_ms if r.latency_ms is not None else float("nan")}
    counts = defaultdict(int)
    for qid in judged:
        counts[depth_bucket(turn_of[qid])] += 1
    summary = {"best_teacher": best_teacher, "main_metric": main, "depth": depth, "nnz_depth": nnz_depth,
               "depth_counts": dict(sorted(counts.items())), "kinds": {r.name: r.kind for r in rows}}
    return ev, summary


def markdown(ev: Evaluation, summary: dict, title: str) -> str:
    best = summary["best_teacher"]
    main = summary["main_metric"]
    lines = [f"# {title}", "", ev.markdown(baseline=best).replace(
        f"* = differs from {best}", f"* = differs from the best teacher ({best})"),
             "LLM calls: per turn at search time, on average (an LLM teacher keeps first turns as written, "
             "with no call; a `human` teacher needs a person instead: 0 LLM calls, "
             "but not available at search time either). ms/query: encoding + top-k search, one query at a "
             "time, plus the teacher's rewriting time per turn as the rewrite stage measured it (blank for model "
             "rewrites made elsewhere, whose time is unknown).", ""]
    student = [n for n, k in summary["kinds"].items() if k == "student"]
    if student and best:
        s, t = ev.scores[student[0]], ev.scores[best]
        gaps = ", ".join(f"{label(m)} {s[m] - t[m]:+.4f}" for m in ev.metrics)
        lines += [f"Student minus best teacher ({best}): {gaps}.", ""]
    buckets = list(summary["depth_counts"])
    lines += [f"## {label(main)} by turn depth", "",
              "| variant | " + " | ".join(f"turn {b} (n={summary['depth_counts'][b]})" for b in buckets) + " |",
              "|---|" + "---:|" * len(buckets)]
    for name, values in summary["depth"].items():
        lines.append(f"| {name} | " + " | ".join(f"{values.get(b, float('nan')):.4f}" for b in buckets) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: str | Path, title: str) -> Path:
    """Effectiveness vs turn depth, and query non-zeros vs turn depth, side by side (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    buckets = list(summary["depth_counts"])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, values) in enumerate(summary["depth"].items()):
        kind = summary["kinds"][name]
        style = dict(linestyle="-" if kind == "student" else "--" if kind == "teacher" else ":",
                     marker="o", color=colors[i % len(colors)], label=name)  # same colour in both panels
        left.plot(buckets, [values.get(b) for b in buckets], **style)
        nnz = summary["nnz_depth"].get(name, {})
        if nnz:
            right.plot(buckets, [nnz.get(b) for b in buckets], **style)
    left.set(xlabel="turn depth", ylabel=label(summary["main_metric"]), title="effectiveness")
    right.set(xlabel="turn depth", ylabel="query non-zeros", title="query sparsity")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    from .io import atomic_path

    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
    return path
