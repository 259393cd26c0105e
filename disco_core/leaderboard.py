"""A sweep's leaderboard: rows per cell and variant, aggregated over seeds (mean, std, a paired
t-test against the baseline on the seed-mean per-query scores), as Markdown, a table by one axis,
and a plot."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa

from .sweep import Cell, SweepSpec


def written_names(cell: Cell, evaluation) -> list[str]:
    """The cell's variants as the sweep names them (``rewrite``, not ``rewrite:mtrag-mixtral``), so
    that cells on different datasets share rows; in the evaluation's order."""
    e = cell.config.evaluation
    written = list(e.variants) + [f.name for f in e.fusions if f.name not in e.variants]
    return written if len(written) == len(evaluation.scores) else list(evaluation.scores)


def as_written(cell: Cell, evaluation):
    """The evaluation with its variants renamed as the sweep names them."""
    return evaluation.select(dict(zip(evaluation.scores, written_names(cell, evaluation))))


DEV = "dev mrr@10"  # the cell's student's score on its own dev turns (what settings are chosen by)


def _dev(variant: str, dev: float | None) -> float | None:
    return dev if variant.startswith("student") else None


def leaderboard_rows(spec: SweepSpec, cells: list[Cell], evaluations: list, dev: list | None = None) -> list[dict]:
    """One row per (cell, variant): axis values, metric means (``evaluations``: the cells'
    :class:`~disco_core.evaluation.Evaluation`, in cell order; ``dev``: each cell's student's dev
    score, or None)."""
    rows = []
    dev = dev or [None] * len(cells)
    for cell, ev, cell_dev in zip(cells, evaluations, dev):
        for (variant, scores), evaluated in zip(as_written(cell, ev).scores.items(), ev.scores):
            rows.append({**cell.labels, "variant": variant, "evaluated_as": evaluated, "n_queries": ev.n_queries,
                         **{m: float(s) for m, s in scores.items()}, DEV: _dev(variant, cell_dev)})
    return rows


def aggregate(spec: SweepSpec, cells: list[Cell], evaluations: list,
              dev: list | None = None) -> tuple[list[dict], list[str]]:
    """Rows grouped over the seed axis: mean, std, seeds, and the paired t-test p-value of each
    metric against the baseline variant (on per-query scores averaged over seeds); the students'
    mean dev score."""
    from scipy import stats

    keys = [a for a in spec.axes if a != spec.seeds]
    metrics = evaluations[0].metrics if evaluations else []
    groups: dict[tuple, list] = {}
    devs: dict[tuple, list] = {}
    for cell, ev, cell_dev in zip(cells, evaluations, dev or [None] * len(cells)):
        group = tuple(cell.labels[k] for k in keys)
        groups.setdefault(group, []).append(as_written(cell, ev))
        devs.setdefault(group, []).append(cell_dev)
    out = []
    for group, evs in groups.items():
        for variant in evs[0].scores:
            row: dict = {**dict(zip(keys, group)), "variant": variant, "seeds": len(evs), "n_queries": evs[0].n_queries}
            known = [d for d in devs[group] if d is not None]
            row[DEV] = _dev(variant, sum(known) / len(known) if known else None)
            for m in metrics:
                values = [ev.scores[variant][m] for ev in evs]
                row[m] = sum(values) / len(values)
                row[f"{m} std"] = _std(values)
                row[f"{m} p"] = None  # the baseline itself
                if variant != spec.baseline:
                    mine, base = _per_query_mean(evs, variant, m), _per_query_mean(evs, spec.baseline, m)
                    common = sorted(set(mine) & set(base))
                    differs = any(mine[q] != base[q] for q in common)
                    row[f"{m} p"] = float(stats.ttest_rel([mine[q] for q in common], [base[q] for q in common]).pvalue) \
                        if len(common) > 1 and differs else 1.0
            out.append(row)
    return out, metrics


def _std(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _per_query_mean(evs: list, variant: str, metric: str) -> dict[str, float]:
    sums: dict[str, float] = {}
    for ev in evs:
        for q, v in ev.per_query[variant][metric].items():
            sums[q] = sums.get(q, 0.0) + v / len(evs)
    return sums


def to_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows)


def markdown(spec: SweepSpec, rows: list[dict], metrics: list[str], max_p: float = 0.05) -> str:
    """The leaderboard (mean ± std over seeds; ``*`` = differs from the baseline, paired t-test),
    then, for a sweep with one other axis, a table of the main metric with that axis as columns."""
    from .evaluation import label

    keys = [k for k in spec.axes if k != spec.seeds]
    seeds = f" over {rows[0]['seeds']} seeds ({spec.seeds})" if rows and spec.seeds else ""
    with_dev = any(r.get(DEV) is not None for r in rows)
    head = keys + ["variant"] + [label(m) for m in metrics] + ["n"] + (["dev MRR@10"] if with_dev else [])
    lines = [f"# Sweep {spec.name}", "", f"Mean{' ± std' if seeds else ''}{seeds}; `*` = differs from "
             f"`{spec.baseline}` in the same cell with p < {max_p} (paired t-test over queries"
             f"{' on seed-mean scores' if seeds else ''}).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * (len(keys) + 1) + "---:|" * (len(head) - len(keys) - 1)]
    for r in rows:
        cells = [str(r[k]) for k in keys] + [r["variant"]] + [_cell(r, m, max_p, bool(seeds)) for m in metrics]
        cells.append(str(r["n_queries"]))
        if with_dev:
            cells.append("" if r.get(DEV) is None else f"{r[DEV]:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    if len(keys) == 1 and metrics:
        lines += ["", _pivot(keys[0], rows, metrics[0], max_p, bool(seeds))]
    return "\n".join(lines) + "\n"


def _cell(row: dict, metric: str, max_p: float, with_std: bool) -> str:
    mark = "*" if (row.get(f"{metric} p") or 1.0) < max_p else ""
    std = f" ± {row[f'{metric} std']:.4f}" if with_std else ""
    return f"{row[metric]:.4f}{std}{mark}"


def _pivot(axis: str, rows: list[dict], metric: str, max_p: float, with_std: bool) -> str:
    from .evaluation import label

    columns = list(dict.fromkeys(r[axis] for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    by = {(r["variant"], r[axis]): r for r in rows}
    lines = [f"## {label(metric)} by {axis}", "", "| variant | " + " | ".join(columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for v in variants:
        lines.append(f"| {v} | " + " | ".join(_cell(by[(v, c)], metric, max_p, with_std) if (v, c) in by else ""
                                               for c in columns) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], metric: str, spec: SweepSpec, path: str | Path) -> Path:
    """Bars of ``metric`` per variant, grouped by the first non-seed axis, with std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .evaluation import label
    from .io import atomic_path

    keys = [k for k in spec.axes if k != spec.seeds]
    group = (lambda r: ",".join(str(r[k]) for k in keys)) if keys else (lambda r: "all")
    groups = list(dict.fromkeys(group(r) for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    width = 0.8 / max(len(variants), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(groups) * max(1, len(variants) / 3)), 4))
    for i, v in enumerate(variants):
        by = {group(r): r for r in rows if r["variant"] == v}
        xs = [g + i * width for g in range(len(groups))]
        ax.bar(xs, [by[g][metric] if g in by else 0 for g in groups], width,
               yerr=[by[g].get(f"{metric} std", 0) if g in by else 0 for g in groups], label=v, capsize=2)
    ax.set_xticks([g + width * (len(variants) - 1) / 2 for g in range(len(groups))], groups, fontsize=8)
    ax.set(ylabel=label(metric), title=f"sweep {spec.name}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
