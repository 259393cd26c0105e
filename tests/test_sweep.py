"""Sweeps: a grid of cached pipelines and one leaderboard; bad specs fail before any work; the same
sweep on a Dask cluster; the scheduled deployment served against a real Prefect server."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from disco_core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write_spec(path: Path, work: Path, **changes) -> Path:
    spec = {"name": "tiny",
            "set": {"work_dir": str(work), "teachers": [{"backend": "dataset"}], "train.epochs": 1,
                    "train.batch_size": 32, "evaluation.split": "test",
                    # one torch thread everywhere: a Dask worker's results then equal a local run's
                    "encoder.threads": 1},
            "axes": {"train.seed": [1, 2]},
            "variants": ["last_turn", "student"], "baseline": "last_turn"}
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"colour": "red"}, "unknown key(s) ['colour']"),
    ({"axes": {"dataset.name": ["embedded", "nowhere"]}}, "unknown dataset 'nowhere'"),
    ({"axes": {"evaluation.split": ["test", "halves"]}}, "cell evaluation.split=halves: invalid configuration: "
                                                         "evaluation.split: unknown split 'halves'"),
    ({"variants": ["last_turn", "sideways"]}, "unknown query variant 'sideways'"),
    ({"axes": {"train.seed": []}}, "axes.train.seed is empty"),
    ({"axes": {"train.epochs": [1, True]}}, "cell train.epochs=true"),
    ({"variants": ["last_turn", "student:nobody"]}, "no student 'nobody'"),
    ({"seeds": "train.lr"}, "seeds: 'train.lr' is not an axis"),
    ({"baseline": "conversation"}, "baseline 'conversation' is not among the variants"),
    ({"axes": {"evaluation.split": ["all"]}}, "overlaps the training split"),
    ({"axes": {"train.name": ["same", "same2"], "train.seed": [1, 2]}}, "two configurations need it"),
    ({"compare": "colour"}, "compare: expected an axis (train.seed)"),
    ({"compare": {"axis": "train.seed", "reference": 7}}, "compare.reference: '7' is not a value of axis train.seed"),
    ({"compare": {"axis": ["train.seed"]}}, "compare: expected an axis"),
])
def test_bad_specs_fail_before_any_work(tmp_path, changes, message):
    from flows.sweep import plan_sweep

    spec = write_spec(tmp_path / "s.yaml", tmp_path / "work", **changes)
    with pytest.raises(ConfigError) as error:
        plan_sweep(str(spec))
    assert message in str(error.value)
    assert not (tmp_path / "work").exists()  # nothing was written


def test_a_bad_spec_on_the_command_line_is_one_line(tmp_path, capsys):
    from flows.cli import main

    spec = write_spec(tmp_path / "s.yaml", tmp_path / "work", colour="red")
    assert main(["sweep", "-c", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().startswith("disco: error:") and len(err.strip().splitlines()) == 1


def test_the_grid_is_the_product_of_the_axes(tmp_path):
    from disco_core.sweep import expand, load_spec

    spec = load_spec(write_spec(tmp_path / "s.yaml", tmp_path / "work", axes={
        "fold": {"a": {"train.learning_rate": 1e-4}, "b": {"train.learning_rate": 2e-4}}, "train.seed": [1, 2, 3]}))
    cells = expand(spec)
    assert [c.name for c in cells][:2] == ["fold=a,train.seed=1", "fold=a,train.seed=2"] and len(cells) == 6
    assert {(c.config.train.learning_rate, c.config.train.seed) for c in cells} == \
        {(lr, s) for lr in (1e-4, 2e-4) for s in (1, 2, 3)}
    assert spec.seeds == "train.seed" and all(not c.config.report.enabled for c in cells)


def test_the_repository_sweeps_plan(tmp_path, mtrag_path, monkeypatch):
    """The sweep files in data/configs/sweeps plan (every cell, dataset, split and variant checked)."""
    from flows.sweep import plan_sweep

    monkeypatch.setenv("DISCO_MTRAG_PATH", str(mtrag_path))
    for path in sorted((ROOT / "data" / "configs" / "sweeps").glob("*.yaml")):
        spec, cells, graph, targets = plan_sweep(str(path), [f"work_dir={tmp_path}"])
        assert len(targets) == len(cells) > 0, path


def leaderboard(folder: Path) -> dict:
    table = pq.read_table(folder / "leaderboard.parquet").to_pylist()
    return {(r["train.seed"], r["variant"]): round(r["mrr@10"], 6) for r in table}


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory, prefect_harness):
    from flows.sweep import run_sweep

    tmp = tmp_path_factory.mktemp("sweep")
    spec = write_spec(tmp / "tiny.yaml", tmp / "work")
    first = run_sweep(str(spec))
    return spec, tmp, first


@pytest.mark.slow
def test_a_sweep_writes_one_leaderboard_and_reruns_only_new_cells(local_sweep):
    from flows.sweep import run_sweep

    spec, tmp, first = local_sweep
    folder = Path(first["folder"])
    for name in ("leaderboard.parquet", "summary.parquet", "leaderboard.md", "leaderboard.png", "cells.json"):
        assert (folder / name).exists(), name
    text = (folder / "leaderboard.md").read_text()
    assert "| student | " in text and "± " in text and "over 2 seeds" in text
    board = leaderboard(folder)
    assert set(board) == {(s, v) for s in ("1", "2") for v in ("last_turn", "student")}
    assert board[("1", "last_turn")] == board[("2", "last_turn")] and board[("1", "student")] != board[("2", "student")]
    summary = pq.read_table(folder / "summary.parquet").to_pylist()
    student = next(r for r in summary if r["variant"] == "student")
    assert student["seeds"] == 2 and student["mrr@10 std"] > 0 and 0 <= student["mrr@10 p"] <= 1

    again = run_sweep(str(spec))  # the same sweep: nothing runs
    assert all(s["cache_hit"] for s in again["stages"].values())
    bigger = write_spec(tmp / "tiny3.yaml", tmp / "work", name="tiny3", axes={"train.seed": [1, 2, 3]})
    third = run_sweep(str(bigger))  # a new seed: only its cell's instances run
    ran = {i.split("[")[0] for i, s in third["stages"].items() if not s["cache_hit"]}
    assert ran == {"train", "encode_queries", "retrieve", "evaluate"}
    assert sum(not s["cache_hit"] for s in third["stages"].values()) == 4


@pytest.mark.slow
def test_a_sweep_compares_an_axis_on_dev_paired_over_seeds(local_sweep, capsys):
    """``compare: recipe``: each recipe against the reference on the students' dev scores, paired over
    the seeds, with test beside and MRR@10 / query non-zeros by turn depth; ``disco compare``
    rebuilds the same file from the folder alone, and a wrong axis is one line and exit 2."""
    from flows.cli import main
    from flows.sweep import run_sweep

    _, tmp, _ = local_sweep
    spec = write_spec(tmp / "recipes.yaml", tmp / "work", name="recipes", compare={"axis": "recipe", "reference": "slow"}, axes={
        "recipe": {"slow": {"train.learning_rate": 5e-5}, "fast": {"train.learning_rate": 5e-4}}, "train.seed": [1, 2]})
    text = yaml.safe_load(spec.read_text())
    text["set"]["train.dev_fraction"] = 0.15
    spec.write_text(yaml.safe_dump(text))
    folder = Path(run_sweep(str(spec))["folder"])

    rows = [r for r in pq.read_table(folder / "leaderboard.parquet").to_pylist() if r["variant"] == "student"]
    dev = {(r["recipe"], r["train.seed"]): r["dev mrr@10"] for r in rows}
    [compared] = pq.read_table(folder / "compare-recipe.parquet").to_pylist()
    assert (compared["value"], compared["reference"], compared["pairs"]) == ("fast", "slow", 2)
    expected = sum(dev[("fast", s)] - dev[("slow", s)] for s in ("1", "2")) / 2
    assert compared["dev mrr@10 diff"] == pytest.approx(expected)
    assert 0 <= compared["dev mrr@10 t p"] <= 1 and compared["mrr@10 wins"] in (0, 1, 2)
    written = (folder / "compare-recipe.md").read_text()
    assert "| fast | 2 |" in written and "| slow | student |" in written and "| fast | last_turn |" in written

    (folder / "compare-recipe.md").unlink()
    assert main(["compare", str(folder), "recipe", "--reference", "slow"]) == 0
    assert (folder / "compare-recipe.md").read_text() == written
    judged = rows[0]["n_queries"]
    depth_counts = [int(x) for x in written.split("| slow | student |")[1].splitlines()[0].split("|")[-5:-1]]
    assert sum(depth_counts) == 2 * judged  # every judged turn of both seeds' cells, in one bucket each
    capsys.readouterr()
    assert main(["compare", str(folder), "colour"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("disco: error: compare: 'colour' is not an axis") and len(err.splitlines()) == 1


@pytest.mark.slow
def test_the_same_sweep_on_a_dask_cluster_gives_the_same_leaderboard(local_sweep, monkeypatch):
    """A two-worker Dask LocalCluster runs the cells' stages (students, vectors, runs,
    evaluations) and produces the local leaderboard's numbers."""
    from distributed import LocalCluster
    from prefect.settings import PREFECT_API_URL

    from flows.sweep import run_sweep

    spec, tmp, first = local_sweep
    work = tmp / "dask-work"
    shutil.copytree(tmp / "work", work, ignore=shutil.ignore_patterns("students", "encode_queries", "retrieve",
                                                                        "evaluate", "sweeps"))
    on_dask = write_spec(tmp / "dask.yaml", work)
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())  # the workers report to the test's server
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        result = run_sweep(str(on_dask), dask_address=cluster.scheduler_address)
    ran = {i.split("[")[0] for i, s in result["stages"].items() if not s["cache_hit"]}
    assert {"train", "encode_queries", "retrieve", "evaluate"} <= ran
    assert leaderboard(Path(result["folder"])) == leaderboard(Path(first["folder"]))


@pytest.mark.slow
def test_the_scheduled_deployment_produces_the_leaderboard(local_sweep, tmp_path):
    """prefect.yaml's scheduled sweep, served (flow.serve) against a Prefect server this test
    starts: one scheduled run writes the leaderboard."""
    import socket

    deployment = next(d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
                      if d.get("schedules"))
    assert deployment["entrypoint"] == "flows/sweep.py:disco_sweep"
    spec, tmp, first = local_sweep
    scheduled = write_spec(tmp_path / "nightly.yaml", tmp / "work", name="scheduled")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2", "PREFECT_RUNNER_POLL_FREQUENCY": "2",
           "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    serve = None
    try:
        _wait_for(lambda: _healthy(port), 120, "the Prefect server")
        serve_code = (
            "from datetime import timedelta\n"
            "from flows.sweep import disco_sweep\n"
            f"disco_sweep.serve(name={deployment['name']!r}, interval=timedelta(seconds=10), limit=1,\n"
            f"                  parameters={{'sweep_path': {str(scheduled)!r}}})\n")
        serve = subprocess.Popen([sys.executable, "-c", serve_code], cwd=ROOT, env=env, start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        board = tmp / "work" / "sweeps" / "scheduled" / "leaderboard.md"
        _wait_for(board.exists, 300, "the scheduled run's leaderboard")
        assert "| student |" in board.read_text()
    finally:
        for proc in (serve, server):
            if proc is not None:  # the runner and the flow runs it started, then the server
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL) if proc is serve else proc.terminate()
                proc.wait(60)


def _healthy(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"{what} did not come within {seconds} s")
