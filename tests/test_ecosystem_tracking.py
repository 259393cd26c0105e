"""Experiment tracking: a run lands in a real local MLflow store, read back with MLflow's client."""

import pytest

from disco_core.config import TrainConfig
from disco_core.evaluation import evaluate
from disco_core.tracking import Tracker, log_run, metric_key, tracker

mlflow = pytest.importorskip("mlflow", reason="tracking tests need the tracking extra (mlflow-skinny)")


def test_metric_names_are_made_mlflow_safe():
    assert metric_key("test", "student (DiSCo)", "mrr@10") == "test/student DiSCo/mrr_at_10"
    assert metric_key("", "teacher: smollm2", "q nnz") == "teacher: smollm2/q nnz"


def test_disabled_tracking_does_nothing(tmp_path):
    off = tracker(enabled=False, root=tmp_path / "store")
    assert log_run(off, "train", params={"a": 1}, metrics={"m": 1.0}, artifacts=[tmp_path]) is None
    assert not (tmp_path / "store").exists()


@pytest.mark.slow
def test_a_training_and_evaluation_run_lands_in_the_store(tmp_path):
    from mlflow import MlflowClient
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from disco_core.models import resolve_model

    student = tmp_path / "model"
    AutoModelForMaskedLM.from_pretrained(resolve_model("splade-tiny")).save_pretrained(student)
    AutoTokenizer.from_pretrained(resolve_model("splade-tiny")).save_pretrained(student)
    (tmp_path / "report.md").write_text("# DiSCo report\n")
    (tmp_path / "depth.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    ev = evaluate({"q1": {"d1": 1}, "q2": {"d2": 1}},
                  {"student (DiSCo)": {"q1": [("d1", 2.0)], "q2": [("d3", 2.0), ("d2", 1.0)]},
                   "last turn": {"q1": [("d9", 1.0)], "q2": [("d2", 1.0)]}}, ["mrr@10", "ndcg@3"])
    ev.extra = {"student (DiSCo)": {"q nnz": 40.0, "LLM calls": 0, "ms/query": float("nan")}}
    history = [{"epoch": 1, "step": s, "loss": 1.0 / s, "kl": 0.5 / s} for s in (1, 2, 3)]

    store = Tracker(root=tmp_path / "mlflow", experiment="disco-test")
    train = TrainConfig(learning_rate=2e-4).model_dump()
    run_id = log_run(store, "train+report", params={"train": train, "dataset": "embedded"},
                     metrics={"examples": 120}, evaluation=ev, history=history,
                     artifacts=[tmp_path / "report.md", tmp_path / "depth.png"], student=student,
                     tags={"disco.stage": "report"})

    assert (tmp_path / "mlflow" / "mlflow.db").exists()
    client = MlflowClient(tracking_uri=store.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "train+report"
    assert run.data.params["train.learning_rate"] == "0.0002" and run.data.params["dataset"] == "embedded"
    assert run.data.params["train.negative_ranks"] == "[11, 960]"
    assert run.data.metrics["test/student DiSCo/mrr_at_10"] == pytest.approx(0.75)
    assert run.data.metrics["test/last turn/ndcg_at_3"] == pytest.approx(ev.scores["last turn"]["ndcg@3"])
    assert run.data.metrics["test/student DiSCo/q nnz"] == 40.0 and "test/student DiSCo/ms/query" not in run.data.metrics
    assert run.data.metrics["examples"] == 120 and run.data.tags["disco.stage"] == "report"
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "train/loss")] == [
        (1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3))]
    assert {a.path for a in client.list_artifacts(run_id)} >= {"report.md", "depth.png"}

    experiment = client.get_experiment_by_name("disco-test")
    assert experiment.artifact_location.startswith((tmp_path / "mlflow" / "artifacts").as_uri())
    models = client.search_logged_models([experiment.experiment_id])
    assert len(models) == 1 and models[0].source_run_id == run_id and models[0].status == "READY"
    files = {f.path for f in client.list_logged_model_artifacts(models[0].model_id)}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files


@pytest.mark.slow
def test_a_failing_block_marks_the_run_failed(tmp_path):
    from mlflow import MlflowClient

    store = Tracker(root=tmp_path / "mlflow")
    with pytest.raises(RuntimeError):
        with store.run("train") as run:
            run.log_metrics({"loss": 1.0})
            raise RuntimeError("killed")
    assert MlflowClient(tracking_uri=store.uri).get_run(run.run_id).info.status == "FAILED"
