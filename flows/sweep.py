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

import re
from pathlib import Path

import tasks  # noqa: F401  (environment defaults, stage declarations)

import pyarrow.parquet as pq
from prefect import flow, get_run_logger

from disco_core import students as students_lib
from disco_core import latex, leaderboard
from disco_core import sweep as sweep_lib
from disco_core.evaluation import Evaluation
from disco_core.io import write_json_atomic, write_text_atomic
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
