"""The cached Prefect pipeline on the embedded dataset: hits, misses, and what reruns downstream."""

import json
import re
import shutil
from pathlib import Path

import pytest

from disco_core.config_files import load_config
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
    (folder(summary, "encode_corpus") / "doc_vectors" / "shard-00000.npz").unlink()
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
    assert run()[0] == ran  # the edit undone: the same stages again (their manifests hold the edit)
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
        assert server.requests == 2 * 250  # 302 turns, 52 of them first turns kept as written
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


def test_teacher_weights_and_normalisation_refit_only_the_targets(run):
    run()
    for setting in ("distill.normalise=zscore", "distill.weights={dataset: 3.0}"):
        ran, summary = run(setting)
        assert ran == {"fuse"} | STUDENT | {"evaluate[test]", "report[test]"}, setting


def test_a_mixture_part_can_stay_out_of_dev(run):
    """``dev: false``: the part trains whole; the dev set is the other parts' alone."""
    data = "train.data=[{dataset: embedded, split: train}, {dataset: embedded, split: train, dev: false}]"
    ran, summary = run("train.dev_fraction=0.2", data, targets=["train"])
    trained = next(s for i, s in summary.items() if i.startswith("train["))
    provenance = json.loads((Path(trained["folder"]) / "student.json").read_text())
    first, second = provenance["data"]
    assert first["dev_turns"] > 0 and second["dev_turns"] == 0
    assert second["train_turns"] == first["train_turns"] + first["dev_turns"]


def test_targets_and_force(run):
    ran, summary = run(targets=["index"])
    assert {short(i) for i in summary} == {"ingest", "encode_corpus", "index"}
    assert run(targets=["index"], force=["index"])[0] == {"index"}
    # a forced training trains again from scratch; a finished one keeps its model, not its checkpoints
    ran, summary = run(targets=["train"], force=["train"])
    trained = summary[next(i for i in summary if i.startswith("train["))]
    assert ran == {"train"} and trained["info"]["resumed_epochs"] == 0
    assert (Path(trained["folder"]) / "model").is_dir() and not list(Path(trained["folder"]).glob("run-*"))


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


def test_a_trained_student_loads_in_sentence_transformers_with_its_card(run, monkeypatch, tmp_path):
    """`disco package`: SparseEncoder(folder) encodes a conversation with the student and a passage
    with the frozen document encoder, giving the pipeline's own vectors; `disco publish` goes as far
    as the upload call."""
    import numpy as np

    from disco_core import schemas, vectors
    from disco_core.encoder import document_text
    from disco_core.packaging import load_student
    from flows.cli import main

    _, summary = run()
    student = folder(summary, "train")
    assert main(["package", student.name, "--set", f"work_dir={run.work}", "--out", str(tmp_path / "pkg")]) == 0
    model = load_student(tmp_path / "pkg")
    # the pipeline's student vectors of a held-out turn, and its document vectors of a passage
    stored, qids = vectors.load_vectors(folder(summary, "encode_queries[student]") / "vectors.npz")
    queries = schemas.read_table("queries", folder(summary, "encode_queries[student]") / "queries.parquet").to_pylist()
    text = next(q["text"] for q in queries if q["query_id"] == qids[7])
    q = model.encode_query([text], convert_to_tensor=True).to_dense().numpy()
    assert np.abs(q - stored[7].toarray()).max() < 1e-5
    docs, doc_ids = vectors.load_vectors(folder(summary, "encode_corpus") / "doc_vectors" / "shard-00000.npz")
    corpus = schemas.read_table("corpus", folder(summary, "ingest") / "corpus.parquet").to_pylist()
    d = model.encode_document([document_text(corpus[3]["title"], corpus[3]["text"])], convert_to_tensor=True)
    assert doc_ids[3] == corpus[3]["doc_id"] and np.abs(d.to_dense().numpy() - docs[3].toarray()).max() < 1e-5
    card = (tmp_path / "pkg" / "README.md").read_text()
    assert "| lowercase |" in card and "| human | people |" in card  # the teachers
    assert "MRR@10" in card and "| **student** |" in card and "### embedded (test)" in card  # the test table

    calls = []
    from huggingface_hub import HfApi

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id)))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw["repo_id"],
                                                                                  kw["folder_path"])) or "url")
    assert main(["publish", student.name, "me/disco-test", "--set", f"work_dir={run.work}",
                 "--out", str(tmp_path / "pub")]) == 0
    assert calls == [("create", "me/disco-test"), ("upload", "me/disco-test", str(tmp_path / "pub"))]


def test_trec_files_reproduce_the_metrics_and_latex_tables_are_written(run):
    """The split's qrels beside the runs' TREC files: trec_eval's code (pytrec_eval) gives the
    evaluation's MRR@10 and nDCG@3."""
    import pytrec_eval

    _, summary = run()
    evaluated = folder(summary, "evaluate[test]")
    metrics = json.loads((evaluated / "metrics.json").read_text())
    qrels = {}
    for line in (evaluated / "qrels.trec").read_text().splitlines():
        q, _, d, rel = line.split()
        qrels.setdefault(q, {})[d] = int(rel)
    measure = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank", "ndcg_cut.3"})
    for variant, name in (("student", "retrieve[student]"), ("last_turn", "retrieve[last_turn]")):
        trec_run = {}
        for line in (folder(summary, name) / "run.trec").read_text().splitlines():
            q, _, d, rank, score, _ = line.split()
            if q in qrels and int(rank) <= 10:
                trec_run.setdefault(q, {})[d] = float(score)
        per_query = measure.evaluate(trec_run)
        mean = {m: sum(per_query.get(q, {}).get(m, 0.0) for q in qrels) / len(qrels) for m in ("recip_rank", "ndcg_cut_3")}
        assert abs(mean["recip_rank"] - metrics["scores"][variant]["mrr@10"]) < 1e-4
        assert abs(mean["ndcg_cut_3"] - metrics["scores"][variant]["ndcg@3"]) < 1e-4
    assert "\\begin{table}" in (evaluated / "metrics.tex").read_text()
    assert "W/T/L" in (folder(summary, "report[test]") / "report.tex").read_text()


def test_tracking_logs_a_run_with_parameters_metrics_and_artifacts(run):
    from disco_core.tracking import tracker

    ran, _ = run("tracking.enabled=true", force=["report", "train"])
    assert {"report[test]", "train"} <= ran
    client = tracker(True, root=run.work / "mlflow").client
    experiment = client.get_experiment_by_name("disco")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    report = next(r for name, r in runs.items() if name.startswith("report["))
    assert any(k.endswith("mrr_at_10") for k in report.data.metrics)
    assert {a.path for a in client.list_artifacts(report.info.run_id)} >= {"report.md", "depth.png", "report.tex"}
    train = next(r for name, r in runs.items() if name.startswith("train "))
    assert "train.learning_rate" in train.data.params and "examples" in train.data.metrics


def test_the_authors_files_out_and_in_train_a_student(run, tmp_path):
    """Our teachers exported in the DiSCo authors' formats (their ids: a map), imported back as a
    teacher whose scores are the run file's: its targets are those scores exactly, and a student
    trains on them."""
    from disco_core import schemas
    from flows.cli import main

    turns = schemas.read_table("turns", next((run.work / "embedded" / "ingest").glob("*/turns.parquet")))
    ours = turns["query_id"].to_pylist()
    id_map = tmp_path / "ids.tsv"
    id_map.write_text("".join(f"{i}\t{q}\n" for i, q in enumerate(ours)))  # their ids: row numbers
    out = tmp_path / "paper"
    assert main(["export-teachers", str(out), "--set", f"work_dir={run.work}", "--set", run.teachers,
                 "--id-map", str(id_map)]) == 0
    exported = json.loads((out / "human.run.json").read_text())
    assert set(exported) == {str(i) for i in range(len(ours))}
    assert (out / "human.rewrites.tsv").read_text().startswith("0\t")

    paper = (f"teachers=[{{name: paper, backend: file, path: {tmp_path / 'rewrites.tsv'}, "
             f"scores: {out / 'human.run.json'}, id_map: {id_map}}}]")
    (tmp_path / "rewrites.tsv").write_text("".join(
        f"{q}\t{line.split(chr(9), 1)[1]}" for q, line in zip(ours, (out / "human.rewrites.tsv").read_text().splitlines(True))))
    ran, summary = run(paper, targets=["train"])
    assert {"score_teachers[paper]", "fuse", "train"} <= ran
    targets = schemas.read_table("targets", folder(summary, "fuse") / "targets.parquet").to_pylist()
    first = ours[0]
    listed = {d: s for d, s in exported["0"].items()}
    mine = {t["doc_id"]: t["score"] for t in targets if t["query_id"] == first}
    assert mine.keys() == listed.keys() and all(abs(mine[d] - listed[d]) < 1e-5 for d in mine)
    assert summary[next(i for i in summary if i.startswith("train["))]["info"]["steps"] > 0
