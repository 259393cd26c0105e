"""The cached Prefect pipeline on the embedded dataset: hits, misses, and what reruns downstream."""

import json
import shutil
from pathlib import Path

import pytest

from disco_core.config import load_config
from disco_core.errors import DataError

pytestmark = pytest.mark.slow

SPINE = {"ingest", "encode_corpus", "index", "encode_queries", "retrieve", "evaluate"}
TEACHERS = ("human", "lowercase")
DISTILL = {*(f"rewrite[{t}]" for t in TEACHERS), *(f"score_teachers[{t}]" for t in TEACHERS), "fuse", "train", "report"}
SCORED = {f"score_teachers[{t}]" for t in TEACHERS}


@pytest.fixture(scope="module")
def run(tmp_path_factory, prefect_harness):
    """Run a flow in a fresh work dir with fast teachers (the human rewrites and a file teacher)."""
    from disco_core import datasets
    from flows.pipeline import FLOWS

    work = tmp_path_factory.mktemp("work")
    human = datasets.load("embedded").rewrites.to_pydict()
    teacher_file = work / "lowercase.tsv"
    teacher_file.write_text("".join(f"{q}\t{t.lower()}\n" for q, t in zip(human["query_id"], human["text"])))
    teachers = f"teachers=[{{backend: dataset}}, {{name: lowercase, backend: file, path: {teacher_file}}}]"
    fast = [f"work_dir={work}", teachers, "train.epochs=1", "train.batch_size=32"]

    def _run(*overrides, flow="pipeline", force=()):
        summary = FLOWS[flow](overrides=[*fast, *overrides], force=list(force))
        return {name for name, s in summary.items() if not s["cache_hit"]}, summary

    _run.work = work / "embedded"
    _run.teachers = teachers
    _run.teacher_file = teacher_file
    return _run


def test_first_run_second_run_and_invalidation(run):
    ran, summary = run()
    assert ran == SPINE | DISTILL
    metrics = json.loads((run.work / "evaluate" / "metrics.json").read_text())
    scores = metrics["scores"]
    assert set(scores) == {"last_turn", "conversation", "rewrite:human"}
    # the embedded dataset is conversational: the last turn alone is clearly worse than the rewrite
    assert scores["rewrite:human"]["mrr@10"] > scores["last_turn"]["mrr@10"] + 0.15
    assert (run.work / "retrieve" / "runs" / "last_turn.trec").exists()
    table = (run.work / "evaluate" / "metrics.md").read_text()
    assert "| rewrite:human |" in table and "MRR@10" in table
    report = (run.work / "report" / "report.md").read_text()
    assert "| student (DiSCo) |" in report and "| teacher: lowercase |" in report and "by turn depth" in report
    assert (run.work / "report" / "depth.png").stat().st_size > 10_000

    # second run: every stage is a cache hit
    assert run()[0] == set()

    # a deleted output reruns its stage and the ones downstream, no others
    (run.work / "encode_corpus" / "doc_vectors.npz").unlink()
    assert run()[0] == {"encode_corpus", "index", "retrieve", "evaluate"} | SCORED | {"fuse", "train", "report"}
    shutil.rmtree(run.work / "index")
    ran, summary = run()
    assert ran == {"index", "retrieve", "evaluate"} | SCORED | {"fuse", "train", "report"}
    # new inputs train from scratch (the finished run's checkpoints are not resumed, and are gone)
    assert summary["train"]["info"]["resumed_epochs"] == 0 and summary["train"]["info"]["steps"] > 0
    assert len(list((run.work / "train").glob("run-*"))) == 1

    # a stage setting reruns that stage and what follows it
    assert run("retrieval.k=100")[0] == {"retrieve", "evaluate", "report"}
    assert run("retrieval.k=100", "evaluation.max_p=0.01")[0] == {"evaluate", "report"}
    # a training setting reruns training and the report, not rewriting or scoring
    assert run("retrieval.k=100", "evaluation.max_p=0.01", "train.learning_rate=1e-4")[0] == {"train", "report"}
    # performance-only settings are not part of any key
    assert run("retrieval.k=100", "evaluation.max_p=0.01", "train.learning_rate=1e-4",
               "encoder.batch_size=7", "index.query_batch_size=3")[0] == set()


def test_adding_a_teacher_rewrites_and_scores_only_that_teacher(run):
    base = run()[1]
    third = run.teachers[:-1] + f", {{name: upper, backend: file, path: {run.teacher_file}}}]"
    ran, summary = run(third)
    assert ran == {"rewrite[upper]", "score_teachers[upper]", "fuse", "train", "report"}
    assert set(summary) - set(base) == {"rewrite[upper]", "score_teachers[upper]"}


def test_per_teacher_targets_train_an_example_per_teacher(run):
    base = run()[1]
    ran, summary = run("distill.fusion=per-teacher")
    assert ran == {"fuse", "train", "report"}
    assert summary["fuse"]["info"]["targets"] > 0
    # two teachers, each with its own target list: twice the examples of the fused targets
    assert summary["train"]["info"]["examples"] == 2 * base["train"]["info"]["examples"]


def test_single_stage_flow_and_force(run):
    ran, summary = run(flow="index")
    assert set(summary) == {"ingest", "encode_corpus", "index"}
    assert run(flow="index", force=["index"])[0] == {"index"}
    # a forced training trains again from scratch, although a finished run's checkpoints exist
    run(flow="train")  # what the forced index changed downstream
    ran, summary = run(flow="train", force=["train"])
    assert ran == {"train"} and summary["train"]["info"]["resumed_epochs"] == 0


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


def test_config_files_load():
    root = Path(__file__).resolve().parents[1] / "data" / "configs"
    for path in root.glob("*.yaml"):
        load_config(path)
    cfg = load_config(root / "default.yaml")
    assert cfg.dataset.name == "embedded" and cfg.retrieval.k == 1000


def test_download_stage_fetches_once_and_feeds_ingest(tmp_path, monkeypatch, prefect_harness):
    """A registered remote dataset (the disco layout served on loopback) through download + ingest."""
    import dataclasses

    from disco_core import datasets
    from disco_core.download import RemoteFile
    from flows.pipeline import FLOWS
    from loopback import StaticServer

    source = datasets.get("embedded").default_path()
    server = StaticServer(source)
    try:
        files = tuple(RemoteFile(n, f"{server.url}/{n}", size=(source / n).stat().st_size)
                      for n in ("corpus.jsonl", "conversations.jsonl"))
        spec = dataclasses.replace(datasets.get("embedded"), name="remote-embedded", files=files, default_path=None)
        monkeypatch.setitem(datasets.REGISTRY, spec.name, spec)
        overrides = [f"work_dir={tmp_path / 'work'}", "dataset.name=remote-embedded",
                     f"dataset.cache_dir={tmp_path / 'data'}"]
        first = FLOWS["ingest"](overrides=overrides)
        assert not first["download"]["cache_hit"] and not first["ingest"]["cache_hit"]
        assert first["ingest"]["info"]["passages"] == 325 and server.total_requests == 2
        again = FLOWS["ingest"](overrides=overrides)
        assert again["download"]["cache_hit"] and again["ingest"]["cache_hit"] and server.total_requests == 2
        (tmp_path / "data" / "remote-embedded" / "corpus.jsonl").unlink()  # a lost cache entry is fetched again
        third = FLOWS["ingest"](overrides=overrides)
        assert not third["download"]["cache_hit"] and server.total_requests == 3
    finally:
        server.close()
