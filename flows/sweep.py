"""Sweeps as one Prefect flow: every cell's pipeline planned into one graph (shared stages once),
run on the task runner (threads, or a Dask cluster), then one leaderboard.

    disco sweep -c data/configs/sweeps/mtrag-lodo.yaml [--dask tcp://scheduler:8786]

Every cell is planned before anything runs, so a bad spec (an unknown key, dataset, split,
variant or student, an empty grid) fails before any work. The leaderboard lands in
``<work_dir>/sweeps/<name>/``: ``leaderboard.parquet`` (one row per cell and variant),
``summary.parquet`` and ``leaderboard.md`` (mean and std over seeds, significance against the
baseline), ``leaderboard.png``, and a Prefect table artifact. The run logs cells done / total, and
keeps a Prefect progress artifact up to date.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import tasks  # noqa: F401  (environment defaults, stage declarations)

import pyarrow.parquet as pq
from prefect import flow, get_run_logger

from disco_core import students as students_lib
from disco_core import latex, leaderboard, schemas, vectors
from disco_core import sweep as sweep_lib
from disco_core import sweep_analysis
from disco_core.errors import DataError, DiscoError
from disco_core.evaluation import Evaluation
from disco_core.io import write_json_atomic, write_text_atomic
from tasks.cache import read_manifest
from tasks.graph import Graph, plan
from tasks.planner import Planner

from .pipeline import run_tags, submit, summary, task_runner


def plan_sweep(sweep_path: str, overrides: list[str] | None = None):
    """(spec, cells, graph, each cell's evaluate instance id): all planning, no work."""
    spec = sweep_lib.load_spec(sweep_path, overrides or [])
    work = spec.base.get("work_dir", "work")
    cells = sweep_lib.expand(spec, students_lib.list_students(work))
    graph = Graph(cells[0].config.work_path)
    for cell in cells:  # students first: a cell may evaluate a student another cell trains
        if any(v == "student" or v.startswith("student+rewrite:") for v in cell.config.evaluation.variants):
            Planner(graph, cell.config).student(None)
    targets = [plan(cell.config, None, graph)[1][0] for cell in cells]  # each cell's evaluate instance
    return spec, cells, graph, targets


@flow(name="disco-sweep", log_prints=True)
def disco_sweep(sweep_path: str, overrides: list[str] | None = None, force: list[str] | None = None) -> dict:
    """A grid of pipelines, one leaderboard; every cell a cache hit when fresh."""
    from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact

    from .pipeline import mark_crashed

    log = get_run_logger()
    mark_crashed()
    spec, cells, graph, targets = plan_sweep(sweep_path, overrides)
    log.info("sweep %s: %d cells, %d stage instances", spec.name, len(cells), len(graph.order(targets)))
    progress = create_progress_artifact(0.0, description=f"sweep {spec.name}: cells done")

    reported = [-1]

    def on_progress(done: set[str]) -> None:
        finished = sum(t in done for t in targets)
        if finished != reported[0]:  # a line when a cell finishes, not every poll
            reported[0] = finished
            log.info("sweep %s: %d/%d cells done", spec.name, finished, len(cells))
            update_progress_artifact(progress, 100.0 * finished / len(cells))

    results = submit(graph, targets, force or [], on_progress=on_progress)
    evaluations = [Evaluation.load(results[t].folder) for t in targets]
    dev = [_dev_score(graph, cell, results) for cell in cells]
    out = write_leaderboard(spec, cells, evaluations, cells[0].config.work_path / "sweeps" / spec.name, dev)
    write_json_atomic(out / "cells.json", [{"cell": c.name, **c.labels, "evaluate": str(results[t].folder)}
                                           for c, t in zip(cells, targets)])
    if spec.compare:  # the leaderboard is written: a comparison that fails loses nothing but itself
        try:
            compare_sweep(out, spec.compare["axis"], spec.compare.get("reference"))
        except (DiscoError, OSError, KeyError, ValueError) as exc:
            log.warning("sweep %s: no compare-%s.md: %s", spec.name, spec.compare["axis"], exc)
    summary_rows = pq.read_table(out / "summary.parquet").to_pylist()
    text = (out / "leaderboard.md").read_text()
    create_table_artifact(key=re.sub(r"[^a-z0-9-]+", "-", f"disco-sweep-{spec.name}".lower()), table=summary_rows,
                          description=f"sweep {spec.name}: leaderboard")
    log.info("sweep %s:\n%s", spec.name, text)
    return {"leaderboard_md": str(out / "leaderboard.md"), "folder": str(out), "cells": len(cells),
            "stages": summary(results)}


def _dev_score(graph, cell, results) -> float | None:
    """The dev MRR@10 of the epoch kept by the cell's own student (None without one or a dev set)."""
    node_id = graph.students.get(Planner(graph, cell.config).student_name())
    info = results[node_id].info if node_id in results else None
    return info.dev.get(str(info.epoch)) if info is not None and info.dev else None


def write_leaderboard(spec, cells, evaluations, out: Path, dev: list | None = None) -> Path:
    """The leaderboard files: rows per cell and variant, the summary over seeds, Markdown, LaTeX, a plot."""
    rows = leaderboard.leaderboard_rows(spec, cells, evaluations, dev)
    summary_rows, metrics = leaderboard.aggregate(spec, cells, evaluations, dev)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(leaderboard.to_table(rows), out / "leaderboard.parquet")
    pq.write_table(leaderboard.to_table(summary_rows), out / "summary.parquet")
    write_text_atomic(out / "leaderboard.md", leaderboard.markdown(spec, summary_rows, metrics,
                                                                   cells[0].config.evaluation.max_p))
    keys = [a for a in spec.axes if a != spec.seeds]
    for r in summary_rows:
        r["name"] = " / ".join([str(r[k]) for k in keys] + [r["variant"]])
    write_text_atomic(out / "leaderboard.tex", latex.leaderboard_latex(
        summary_rows, metrics, caption=f"Sweep {spec.name}: mean over {summary_rows[0]['seeds'] if summary_rows else 0} seed(s).",
        label=f"tab:{spec.name}"))
    leaderboard.plot(summary_rows, metrics[0], spec, out / "leaderboard.png")
    return out


def compare_sweep(folder: str | Path, axis: str, reference: str | None = None) -> Path:
    """``compare-<axis>.md`` and ``.parquet`` in a finished sweep's folder: each value of ``axis``
    against ``reference`` on dev (paired over the other axes), test beside, and the main metric and
    query non-zeros by turn depth (disco_core.sweep_analysis). Reads the folders only, rerunning no
    stage: any finished sweep whose leaderboard.parquet has the ``evaluated_as`` column (every sweep
    since the sweeps' matrix work) is analysed, whichever version ran it."""
    folder = Path(folder)
    for name in ("leaderboard.parquet", "cells.json"):
        if not (folder / name).exists():
            raise DataError(folder, f"no {name}: not the folder of a finished sweep")
    cells = json.loads((folder / "cells.json").read_text())
    axes = [k for k in cells[0] if k not in ("cell", "evaluate")] if cells else []
    rows = pq.read_table(folder / "leaderboard.parquet").to_pylist()
    metrics = tuple(m for m in ("mrr@10", "recall@100") if rows and m in rows[0])
    comparison = sweep_analysis.dev_comparison(rows, axes, axis, reference, test_metrics=metrics)
    scores = [_cell_scores(folder.parent.parent, cell, axes, rows) for cell in cells]
    depth = sweep_analysis.depth_table(scores, axis)
    pq.write_table(leaderboard.to_table(comparison), folder / f"compare-{axis}.parquet")
    write_text_atomic(folder / f"compare-{axis}.md", sweep_analysis.markdown(comparison, depth, axis,
                                                                             test_metrics=metrics))
    return folder / f"compare-{axis}.md"


def _cell_scores(work: Path, cell: dict, axes: list[str], rows: list[dict]) -> sweep_analysis.CellScores:
    """A cell's per-query scores (variants named as the sweep names them), turn numbers and query
    non-zeros, from its evaluation folder and the inputs its manifest lists."""
    labels = {a: str(cell[a]) for a in axes}
    folder = work.joinpath(*Path(cell["evaluate"]).parts[-3:])  # <work>/<dataset>/evaluate/<instance>
    names = {r["evaluated_as"]: r["variant"] for r in rows if all(str(r[a]) == labels[a] for a in axes)}
    ev = Evaluation.load(folder)
    inputs = [work / key for key in (read_manifest(folder) or {}).get("parts", {}).get("inputs", {})]
    turns = next((p for p in inputs if p.name == "turns.parquet"), None)
    if turns is None:
        raise DataError(folder, "its manifest lists no turns table")
    turn_of = dict(zip(*schemas.read_table("turns", turns, columns=["query_id", "turn"]).to_pydict().values()))
    nonzeros = {}
    for path in (p for p in inputs if p.name == "vectors.npz" and "encode_queries" in p.parts):
        variant = schemas.read_table("queries", path.with_name("queries.parquet"), columns=["variant"])["variant"][0].as_py()
        matrix, ids = vectors.load_vectors(path)
        nonzeros[names.get(variant, variant)] = dict(zip(ids, matrix.getnnz(axis=1).tolist()))
    scores = {names.get(v, v): s for v, s in ev.per_query.items()}
    return sweep_analysis.CellScores(labels, scores, turn_of, nonzeros)


def run_sweep(sweep_path: str, overrides: list[str] | None = None, force: list[str] | None = None,
              dask_address: str | None = None) -> dict:
    """The sweep flow on its cells' task runner (or a Dask cluster), planned first (bad specs fail
    before Prefect starts)."""
    from prefect import tags

    _, cells, graph, _ = plan_sweep(sweep_path, overrides)
    if force:
        graph.select(list(force))
    cfg = cells[0].config
    if dask_address:
        cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"dask_address": dask_address})})
    with tags(*run_tags()):
        return disco_sweep.with_options(task_runner=task_runner(cfg))(
            sweep_path=sweep_path, overrides=overrides or [], force=force)
