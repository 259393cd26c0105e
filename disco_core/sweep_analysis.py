"""What a finished sweep says about one of its axes: the paired comparison on dev that chooses a
setting, the test figures beside it (reported, never used to choose), and the main metric and the
query non-zeros by turn depth.

Pure computation on tables a sweep already wrote (its per-cell leaderboard rows; each cell's
per-query scores, turn numbers and query non-zeros): nothing is retrained or re-evaluated, so it
serves any sweep run before. ``flows/sweep.py`` gathers the tables from the folders.

The comparison pairs cells that differ only in the compared axis (same fold, same seed, ...): each
pair is one (reference, candidate) difference of the student's dev MRR@10. Over the pairs: the mean
difference, the wins, a paired t-test and a Wilcoxon signed-rank test.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from .errors import ConfigError
from .leaderboard import DEV

DEPTHS = ((1, 1, "1"), (2, 3, "2-3"), (4, 6, "4-6"), (7, 10**9, "7+"))  # about even on MTRAG's test turns


def depth_of(turn: int) -> str:
    return next(name for first, last, name in DEPTHS if first <= turn <= last)


@dataclass
class CellScores:
    """One cell's per-query data: its axis labels, ``scores[variant][metric][query] = value`` (judged
    turns), each query's turn number, and ``nonzeros[variant][query]`` (variants with a query vector)."""

    labels: dict[str, str]
    scores: dict[str, dict[str, dict[str, float]]]
    turn_of: dict[str, int]
    nonzeros: dict[str, dict[str, int]] = field(default_factory=dict)


def _axis_values(rows: list[dict], axis: str, axes: list[str], reference: str | None) -> tuple[list[str], str]:
    if axis not in axes:
        raise ConfigError(f"compare: {axis!r} is not an axis of the sweep ({', '.join(axes)})")
    values = list(dict.fromkeys(str(r[axis]) for r in rows))
    reference = values[0] if reference is None else str(reference)
    if reference not in values:
        raise ConfigError(f"compare: {reference!r} is not a value of axis {axis} ({', '.join(values)})")
    return values, reference


def _paired_p(candidate: list[float], reference: list[float]) -> tuple[float | None, float | None]:
    """(paired t-test p, Wilcoxon p); 1.0 when every pair is equal; None with fewer than 2 pairs, and
    for the t-test when every difference is the same (its variance is 0: no test)."""
    import numpy as np
    from scipy import stats

    if len(candidate) < 2:
        return None, None
    diff = np.asarray(candidate) - np.asarray(reference)
    if not diff.any():
        return 1.0, 1.0
    t = None if np.ptp(diff) <= 1e-12 * np.abs(diff).max() else float(stats.ttest_rel(candidate, reference).pvalue)
    return t, float(stats.wilcoxon(candidate, reference).pvalue)


def dev_comparison(rows: list[dict], axes: list[str], axis: str, reference: str | None = None,
                   variant: str = "student", test_metrics: tuple[str, ...] = ("mrr@10", "recall@100")) -> list[dict]:
    """One row per value of ``axis`` other than ``reference`` (default: the axis's first value):
    the pairs it shares with the reference (cells equal on every other axis, seeds included, both
    with a dev score), the mean dev score of each side, the difference, the wins and the p-values;
    then the same pairs' test metrics, reported beside (never for choosing). ``rows``: the sweep's
    per-cell leaderboard rows."""
    values, reference = _axis_values(rows, axis, axes, reference)
    others = [a for a in axes if a != axis]
    by: dict[str, dict[tuple, dict]] = defaultdict(dict)
    for r in rows:
        if r["variant"] == variant and r.get(DEV) is not None:
            by[str(r[axis])][tuple(str(r[a]) for a in others)] = r
    out = []
    for value in values:
        if value == reference:
            continue
        pairs = sorted(set(by[value]) & set(by[reference]))
        out.append({"axis": axis, "value": value, "reference": reference, "pairs": len(pairs),
                    **_compared(DEV, pairs, by[value], by[reference]),
                    **{k: v for m in test_metrics for k, v in _compared(m, pairs, by[value], by[reference]).items()}})
    return out


def _compared(metric: str, pairs: list[tuple], mine: dict, ref: dict) -> dict:
    a = [mine[k][metric] for k in pairs]
    b = [ref[k][metric] for k in pairs]
    t, w = _paired_p(a, b)
    mean = (lambda xs: sum(xs) / len(xs) if xs else math.nan)
    return {f"{metric} reference": mean(b), f"{metric}": mean(a), f"{metric} diff": mean(a) - mean(b),
            f"{metric} wins": sum(x > y for x, y in zip(a, b)), f"{metric} t p": t, f"{metric} wilcoxon p": w}


def matched(cells: list[CellScores], axis: str) -> list[CellScores]:
    """The cells whose other axes' values every value of ``axis`` has: so each value's pooled rows
    cover the same folds, seeds and turns."""
    values = {c.labels[axis] for c in cells}
    rest = (lambda c: tuple(v for k, v in sorted(c.labels.items()) if k != axis))
    seen: dict[tuple, set] = defaultdict(set)
    for c in cells:
        seen[rest(c)].add(c.labels[axis])
    return [c for c in cells if seen[rest(c)] == values]


def depth_table(cells: list[CellScores], axis: str | None, variants: tuple[str, ...] = ("student", "last_turn"),
                metric: str = "mrr@10") -> list[dict]:
    """``metric`` and query non-zeros by turn depth, one row per (value of ``axis``, variant), every
    judged turn of the matched cells (:func:`matched`) with that value pooled (folds and seeds together)."""
    values: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    nonzeros: dict[tuple, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for cell in (matched(cells, axis) if axis else cells):
        group = cell.labels[axis] if axis else "all"
        for variant in variants:
            for query, value in cell.scores.get(variant, {}).get(metric, {}).items():
                depth = depth_of(cell.turn_of[query])
                values[(group, variant)][depth].append(value)
                if query in cell.nonzeros.get(variant, {}):
                    nonzeros[(group, variant)][depth].append(cell.nonzeros[variant][query])
    rows = []
    for (group, variant), by_depth in values.items():
        row: dict = {"value": group, "variant": variant}
        for *_, depth in DEPTHS:
            row[f"n {depth}"] = len(by_depth[depth])
            row[f"{metric} {depth}"] = _mean(by_depth[depth])
            row[f"q nnz {depth}"] = _mean(nonzeros[(group, variant)][depth])
        rows.append(row)
    return rows


def _mean(values: list) -> float:
    return sum(values) / len(values) if values else math.nan


def markdown(comparison: list[dict], depth: list[dict], axis: str, metric: str = "mrr@10",
             test_metrics: tuple[str, ...] = ("mrr@10", "recall@100")) -> str:
    """The comparison and the depth table as Markdown (``-``: not measured)."""
    from .evaluation import label

    test_metrics = tuple(m for m in test_metrics if not comparison or f"{m} diff" in comparison[0])
    title = f"# {axis}: each value against `{comparison[0]['reference']}`" if comparison else f"# {axis}"
    lines = [title, "",
             "Pairs: cells equal on every other axis (seeds included). Dev decides; test is reported only. "
             "p: paired t-test / Wilcoxon signed-rank over the pairs (`-`: no test; Wilcoxon's smallest "
             "two-sided p is 0.0625 with 5 pairs, 0.031 with 6); test p: paired t-test.", "",
             f"| {axis} | pairs | dev MRR@10 | reference | diff | wins | p (t / W) | "
             + " | ".join(f"test {label(m)} diff | p" for m in test_metrics) + " |",
             "|---|---:|---:|---:|---:|---:|---|" + "---:|---|" * len(test_metrics)]
    for r in comparison:
        cells = [r["value"], str(r["pairs"]), _f(r[DEV]), _f(r[f"{DEV} reference"]), _f(r[f"{DEV} diff"], "+"),
                 f"{r[f'{DEV} wins']}/{r['pairs']}", f"{_p(r[f'{DEV} t p'])} / {_p(r[f'{DEV} wilcoxon p'])}"]
        cells += [x for m in test_metrics for x in (_f(r[f"{m} diff"], "+"), _p(r[f"{m} t p"]))]
        lines.append("| " + " | ".join(cells) + " |")
    if depth:
        names = [d for *_, d in DEPTHS]
        lines += ["", f"## {label(metric)} and query non-zeros by turn depth", "",
                  "The judged turns of every cell's evaluation split, pooled over the cells that every value "
                  "has (folds and seeds together); n: turns x cells.", "",
                  f"| {axis} | variant | " + " | ".join(f"q nnz {d}" for d in names) + " | "
                  + " | ".join(f"{label(metric)} {d}" for d in names) + " | " + " | ".join(f"n {d}" for d in names) + " |",
                  "|---|---|" + "---:|" * (3 * len(names))]
        for r in depth:
            lines.append(f"| {r['value']} | {r['variant']} | " + " | ".join(_f(r[f'q nnz {d}'], digits=1) for d in names)
                         + " | " + " | ".join(_f(r[f'{metric} {d}'], digits=3) for d in names)
                         + " | " + " | ".join(str(r[f'n {d}']) for d in names) + " |")
    return "\n".join(lines) + "\n"


def _f(value: float | None, sign: str = "", digits: int = 4) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:{sign}.{digits}f}"


def _p(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2g}"
