"""The cached Prefect pipeline on the embedded dataset: hits, misses, and what reruns downstream."""

import json
import re
import shutil
from pathlib import Path

import pytest

from disco_core.config import load_config
from disco_core.errors import DataError

pytestmark = pytest.mark.slow

SPINE = {"ingest", "encode_corpus", "index", "encode_queries[last_turn]", "retrieve[last_turn]",
         "encode_queries[conversation]", "retrieve[conversation]", "evaluate[all]"}
TEACHERS = ("human", "lowercase")
PER_TEACHER = {f"{s}[{t}]" for t in TEACHERS for s in ("rewrite", "score_teachers")} | \
    {f"{s}[rewrite:{t}]" for t in TEACHERS for s in ("encode_queries", "retrieve")}
STUDENT = {"train", "encode_queries[student]", "retrieve[student]"}
REPORT = {"fuse", "evaluate[test]", "report[test]"}


def short(node_id: str) -> str:
    """``encode_queries[embedded/student:embedded-train-1a2b]`` -> ``encode_queries[student]``."""
    stage, _, label = node_id.partition("[")
    label = re.sub(r"student:[^,\]]+", "student", label.rstrip("]").split("#")[0].removeprefix("embedded/"))
    return stage if label in ("", "embedded") or stage == "train" else f"{stage}[{label}]"


@pytest.fixture(scope="module")
def run(tmp_path_factory, prefect_harness):
    """Run the pipeline in a fresh work dir with fast teachers (the human rewrites and a file teacher)."""
    from disco_core import datasets
    from flows.pipeline import run as run_pipeline

    work = tmp_path_factory.mktemp("work")
    human = datasets.load("embedded").rewrites.to_pydict()
    teacher_file = work / "lowercase.tsv"
    teacher_file.write_text("".join(f"{q}\t{t.lower()}\n" for q, t in zip(human["query_id"], human["text"])))
    teachers = f"teachers=[{{backend: dataset}}, {{name: lowercase, backend: file, path: {teacher_file}}}]"
    fast = [f"work_dir={work}", teachers, "train.epochs=1", "train.batch_size=32"]

    def _run(*overrides, targets=None, force=()):
        summary = run_pipeline(None, [*fast, *overrides], targets, list(force))
        return {short(i) for i, s in summary.items() if not s["cache_hit"]}, summary

    _run.work = work
    _run.teachers = teachers
    _run.teacher_file = teacher_file
    return _run


def folder(summary: dict, name: str) -> Path:
    return Path(next(s["folder"] for i, s in summary.items() if short(i) == name))


def test_first_run_second_run_and_invalidation(run):
    ran, summary = run()
    assert ran == SPINE | PER_TEACHER | STUDENT | REPORT
    metrics = json.loads((folder(summary, "evaluate[all]") / "metrics.json").read_text())
    scores = metrics["scores"]
    assert set(scores) == {"last_turn", "conversation", "rewrite:human"}
    # the embedded dataset is conversational: the last turn alone is clearly worse than the rewrite
    assert scores["rewrite:human"]["mrr@10"] > scores["last_turn"]["mrr@10"] + 0.15
    assert (folder(summary, "retrieve[last_turn]") / "run.trec").exists()
    table = (folder(summary, "evaluate[all]") / "metrics.md").read_text()
    assert "| rewrite:human |" in table and "MRR@10" in table
    report = folder(summary, "report[test]")
    text = (report / "report.md").read_text()
    assert "| student (DiSCo) |" in text and "| teacher: lowercase |" in text and "by turn depth" in text
    assert (report / "depth.png").stat().st_size > 10_000
    student = folder(summary, "train")
    assert student.parent.name == "students" and (student / "student.json").exists()

    # second run: every stage is a cache hit
    assert run()[0] == set()

    # a deleted output reruns its stage; an identical rebuild leaves everything downstream a hit
    # (keys hold the inputs' content)
    (folder(summary, "encode_corpus") / "doc_vectors.npz").unlink()
    assert run()[0] == {"encode_corpus"}
    # an edited output reruns its stage and, as its content differs, what reads it
    run_file = folder(summary, "retrieve[last_turn]") / "run.parquet"
    run_file.write_bytes(run_file.read_bytes())  # same bytes, a new file: a hit, by content
    assert run()[0] == set()
    shutil.rmtree(folder(summary, "index"))
    ran, summary = run()
    assert ran == {"index"}

    # a setting reruns the stages it keys (in their own folders: the old ones stay for a switch back)
    assert run("retrieval.k=100")[0] == {"retrieve[last_turn]", "retrieve[conversation]", "retrieve[rewrite:human]",
                                         "retrieve[rewrite:lowercase]", "retrieve[student]", "evaluate[all]",
                                         "evaluate[test]", "report[test]"}
    assert run()[0] == set()
    # a training setting trains a new student and evaluates it; rewriting and scoring stay hits
    ran, summary = run("train.learning_rate=1e-4")
    assert ran == STUDENT | {"evaluate[test]", "report[test]"}
    assert summary[next(i for i in summary if i.startswith("train["))]["info"]["resumed_epochs"] == 0


def test_performance_settings_rerun_nothing(run):
    run()
    assert run("encoder.batch_size=7", "encoder.token_budget=999", "index.query_batch_size=3",
               "index.threads=1", "train.log_every=3", "run.workers=2", "run.lock_timeout=10")[0] == set()


def test_editing_the_split_module_reruns_exactly_its_stages(run):
    """The split module is in no hand-written list: stages reach it through the code they call."""
    import disco_core.splits
    from tasks.codehash import code_digest
    from tasks.stage import STAGES

    _, summary = run()
    reaching = {name for name, stage in STAGES.items() if "disco_core.splits" in code_digest(stage.build)[1]}
    assert {"train", "evaluate", "report"} <= reaching and not {"encode_corpus", "rewrite", "retrieve"} & reaching
    path = Path(disco_core.splits.__file__)
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n# an edit that changes no behaviour\n")
        ran, _ = run()
    finally:
        path.write_bytes(original)
    # the stages whose code reaches the module rerun; their outputs come out identical, so nothing
    # downstream of them does (the student's weights are the same, its vectors stay hits)
    assert {i.split("[")[0] for i in ran} == reaching
    assert ran == {"train", "evaluate[all]", "evaluate[test]", "report[test]"}
    assert run()[0] == set()


def test_replacing_weights_in_a_model_folder_reruns_its_stages(run, tmp_path):
    """The student's base model is a local folder: new weights at the same path retrain the
    student and rerun what depends on it, and nothing else."""
    import torch
    from transformers import AutoModelForMaskedLM

    from disco_core.models import resolve_model

    base = tmp_path / "base"
    shutil.copytree(resolve_model("splade-tiny"), base)
    assert run(f"train.base_model={base}")[0] == STUDENT | {"evaluate[test]", "report[test]"}
    assert run(f"train.base_model={base}")[0] == set()
    model = AutoModelForMaskedLM.from_pretrained(base)
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight.mul_(1.01)
    model.save_pretrained(base)
    assert run(f"train.base_model={base}")[0] == STUDENT | {"evaluate[test]", "report[test]"}


def test_teachers_rewrite_concurrently(run, tmp_path):
    """Two LLM teachers behind a loopback server: their rewrite stages overlap in time."""
    from loopback import ChatServer

    server = ChatServer(delay=0.01)
    try:
        llm = ", ".join(f"{{name: {n}, backend: openai, base_url: {server.url}, model: m{n}, concurrency: 8}}"
                        for n in ("alpha", "beta"))
        ran, summary = run(f"teachers=[{{backend: dataset}}, {llm}]", targets=["rewrite"])
        spans = {short(i): (s["started"], s["finished"]) for i, s in summary.items() if short(i).startswith("rewrite")}
        (a0, a1), (b0, b1) = spans["rewrite[alpha]"], spans["rewrite[beta]"]
        assert a0 < b1 and b0 < a1, spans  # the two intervals overlap
        assert server.requests == 2 * 302
    finally:
        server.close()


def test_adding_a_teacher_rewrites_and_scores_only_that_teacher(run):
    run()
    third = run.teachers[:-1] + f", {{name: upper, backend: file, path: {run.teacher_file}}}]"
    ran, summary = run(third)
    new_teacher = {"rewrite[upper]", "encode_queries[rewrite:upper]", "score_teachers[upper]", "retrieve[rewrite:upper]"}
    assert ran == new_teacher | STUDENT | REPORT


def test_per_teacher_targets_train_an_example_per_teacher(run):
    base = run()[1]
    ran, summary = run("distill.fusion=per-teacher")
    assert ran == {"fuse"} | STUDENT | {"evaluate[test]", "report[test]"}
    examples = {i.split("[")[0]: s["info"].get("examples") for i, s in summary.items()}
    before = {i.split("[")[0]: s["info"].get("examples") for i, s in base.items()}
    # two teachers, each with its own target list: twice the examples of the fused targets
    assert examples["train"] == 2 * before["train"]
    assert "fused teachers" not in (folder(summary, "report[test]") / "report.md").read_text()


def test_targets_and_force(run):
    ran, summary = run(targets=["index"])
    assert {short(i) for i in summary} == {"ingest", "encode_corpus", "index"}
    assert run(targets=["index"], force=["index"])[0] == {"index"}
    # a forced training trains again from scratch, although a finished run's checkpoints exist
    ran, summary = run(targets=["train"], force=["train"])
    assert ran == {"train"} and summary[next(i for i in summary if i.startswith("train["))]["info"]["resumed_epochs"] == 0


def test_bad_source_fails_with_file_and_line_and_keeps_finished_work(run, tmp_path):
    from disco_core.datasets import get

    source = tmp_path / "src"
    shutil.copytree(get("embedded").default_path(), source)
    _, good = run(f"dataset.path={source}", targets=["ingest"])
    corpus = folder(good, "ingest") / "corpus.parquet"
    before = corpus.read_bytes()
    lines = (source / "conversations.jsonl").read_text().splitlines()
    lines[2] = lines[2][: len(lines[2]) // 2]  # a truncated record on line 3
    (source / "conversations.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"conversations.jsonl:3: malformed JSON"):
        run(f"dataset.path={source}", targets=["ingest"])
    assert corpus.read_bytes() == before


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
    from flows.pipeline import run as run_pipeline
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

        def ingest():
            summary = run_pipeline(None, overrides, ["ingest"])
            return {i.split("[")[0]: s for i, s in summary.items()}

        first = ingest()
        assert not first["download"]["cache_hit"] and not first["ingest"]["cache_hit"]
        assert first["ingest"]["info"]["passages"] == 325 and server.total_requests == 2
        again = ingest()
        assert again["download"]["cache_hit"] and again["ingest"]["cache_hit"] and server.total_requests == 2
        (tmp_path / "data" / "remote-embedded" / "corpus.jsonl").unlink()  # a lost cache entry is fetched again
        third = ingest()
        assert not third["download"]["cache_hit"] and server.total_requests == 3
    finally:
        server.close()
