"""Sharded encoding through the pipeline: the embedded corpus (325 passages) in shards of 100
gives the runs of one shard, byte for byte; a lost shard re-encodes alone; a two-worker Dask
LocalCluster encodes the shards and searches them with the same results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from disco_core import vectors

SHARDED = ["encoder.sort_window=100", "encoder.shard_size=100"]
TARGET = "retrieve[embedded/last_turn]"


def run(work: Path, *overrides: str, force=()) -> dict:
    from flows.pipeline import run as run_pipeline

    return run_pipeline(None, [f"work_dir={work}", "teachers=[{backend: dataset}]", *overrides], [TARGET], list(force))


def out(summary: dict, stage: str) -> Path:
    return Path(next(s["folder"] for i, s in summary.items() if i.startswith(stage + "[")))


def ran(summary: dict) -> set[str]:
    return {i.split("[")[0] for i, s in summary.items() if not s["cache_hit"]}


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, prefect_harness):
    work = tmp_path_factory.mktemp("sharded")
    return work, run(work, *SHARDED)


@pytest.mark.slow
def test_shards_give_the_runs_of_one_shard_and_a_lost_shard_reencodes_alone(sharded, tmp_path):
    work, summary = sharded
    shard_folder = out(summary, "encode_corpus") / "doc_vectors"
    names = json.loads((shard_folder / "shards.json").read_text())["shards"]
    assert names == [f"shard-{n:05d}.npz" for n in range(4)]
    assert len(json.loads((out(summary, "index") / "inverted" / "shards.json").read_text())["shards"]) == 4
    # one shard: the same vectors bit for bit, the same run byte for byte
    single = run(tmp_path / "one", "encoder.sort_window=100", "encoder.shard_size=1000")
    one, one_ids = vectors.load_vectors(out(single, "encode_corpus") / "doc_vectors" / "shard-00000.npz")
    many, many_ids = vectors.load_vector_files([shard_folder / n for n in names])
    assert one_ids == many_ids
    for part in ("indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(one, part), getattr(many, part))
    assert (out(single, "retrieve") / "run.trec").read_bytes() == (out(summary, "retrieve") / "run.trec").read_bytes()

    # a lost shard (and the manifest: a run killed before it finished): only that shard is encoded
    seals = {n: (shard_folder / n.replace(".npz", ".seal.json")).stat().st_mtime_ns for n in names}
    (shard_folder / names[2]).unlink()
    again = run(work, *SHARDED)
    assert ran(again) == {"encode_corpus"}  # identical vectors: everything downstream is a hit
    after = {n: (shard_folder / n.replace(".npz", ".seal.json")).stat().st_mtime_ns for n in names}
    assert [n for n in names if after[n] != seals[n]] == [names[2]]


@pytest.mark.slow
def test_a_two_worker_dask_cluster_encodes_and_searches_the_shards_alike(sharded, tmp_path, monkeypatch):
    from distributed import LocalCluster
    from prefect.settings import PREFECT_API_URL

    work, local = sharded
    dask_work = tmp_path / "dask"
    shutil.copytree(work / "embedded" / "ingest", dask_work / "embedded" / "ingest")
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())  # the workers report to the test's server
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        on_dask = run(dask_work, *SHARDED, f"run.dask_address={cluster.scheduler_address}")
    assert {"encode_corpus", "index", "retrieve"} <= ran(on_dask)
    seals = [json.loads(p.read_text()) for p in sorted((out(on_dask, "encode_corpus") / "doc_vectors").glob("*.seal.json"))]
    assert [s["documents"] for s in seals] == [100, 100, 100, 25]
    assert (out(on_dask, "retrieve") / "run.trec").read_bytes() == (out(local, "retrieve") / "run.trec").read_bytes()
