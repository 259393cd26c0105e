"""The cached Prefect pipeline on the embedded dataset: hits, misses, and what reruns downstream."""

import json
import shutil

import pytest

from disco_core.config import load_config
from disco_core.errors import DataError

pytestmark = pytest.mark.slow

ALL = {"ingest", "encode_corpus", "index", "encode_queries", "retrieve", "evaluate"}


@pytest.fixture(scope="module")
def run(tmp_path_factory, prefect_harness):
    from flows.pipeline import FLOWS

    work = tmp_path_factory.mktemp("work")

    def _run(*overrides, flow="pipeline", force=()):
        summary = FLOWS[flow](overrides=[f"work_dir={work}", *overrides], force=list(force))
        return {name for name, s in summary.items() if not s["cache_hit"]}, summary

    _run.work = work / "embedded"
    return _run


def test_first_run_second_run_and_invalidation(run):
    ran, summary = run()
    assert ran == ALL
    metrics = json.loads((run.work / "evaluate" / "metrics.json").read_text())
    scores = metrics["scores"]
    assert set(scores) == {"last_turn", "conversation", "rewrite:human"}
    # the embedded dataset is conversational: the last turn alone is clearly worse than the rewrite
    assert scores["rewrite:human"]["mrr@10"] > scores["last_turn"]["mrr@10"] + 0.15
    assert (run.work / "retrieve" / "runs" / "last_turn.trec").exists()
    table = (run.work / "evaluate" / "metrics.md").read_text()
    assert "| rewrite:human |" in table and "MRR@10" in table

    # second run: every stage is a cache hit
    assert run()[0] == set()

    # a deleted output reruns its stage and the ones downstream, no others
    (run.work / "encode_corpus" / "doc_vectors.npz").unlink()
    assert run()[0] == {"encode_corpus", "index", "retrieve", "evaluate"}
    shutil.rmtree(run.work / "index")
    assert run()[0] == {"index", "retrieve", "evaluate"}

    # a stage setting reruns that stage and what follows it
    assert run("retrieval.k=100")[0] == {"retrieve", "evaluate"}
    assert run("retrieval.k=100", "encoder.query_max_length=64")[0] == {"encode_queries", "retrieve", "evaluate"}
    assert run("retrieval.k=100", "encoder.query_max_length=64", "evaluation.max_p=0.01")[0] == {"evaluate"}
    # performance-only settings are not part of any key
    assert run("retrieval.k=100", "encoder.query_max_length=64", "evaluation.max_p=0.01",
               "encoder.batch_size=7", "index.query_batch_size=3")[0] == set()


def test_single_stage_flow_and_force(run):
    ran, summary = run(flow="index")
    assert set(summary) == {"ingest", "encode_corpus", "index"}
    assert run(flow="index", force=["index"])[0] == {"index"}


def test_bad_source_fails_with_file_and_line_and_keeps_finished_work(run, tmp_path):
    from disco_core.datasets import get

    source = tmp_path / "src"
    shutil.copytree(get("embedded").default_path(), source)
    good = run(f"dataset.path={source}", flow="ingest")
    corpus = run.work / "ingest" / "corpus.parquet"
    before = corpus.read_bytes()
    lines = (source / "conversations.jsonl").read_text().splitlines()
    lines[2] = lines[2][: len(lines[2]) // 2]  # a truncated record on line 3
    (source / "conversations.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"conversations.jsonl:3: malformed JSON"):
        run(f"dataset.path={source}", flow="ingest")
    assert corpus.read_bytes() == before
    assert good[1]["ingest"]["folder"] == str(run.work / "ingest")


def test_config_round_trip_for_deployments():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / "data" / "configs" / "default.yaml")
    assert cfg.dataset.name == "embedded" and cfg.retrieval.k == 1000
