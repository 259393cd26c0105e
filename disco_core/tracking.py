"""Experiment tracking with MLflow: optional, off unless asked for, imported only when used.

``pip install 'disco[tracking]'`` (mlflow-skinny). A :class:`Tracker` writes to a local store by
default: ``<root>/mlflow.db`` (SQLite; MLflow 3 keeps its plain-folder store in maintenance mode)
with the files in ``<root>/artifacts``; ``uri`` names any other tracking server or database
(``http://mlflow.lab:5000``, ``sqlite:///...``). Browse a local store with
``mlflow ui --backend-store-uri sqlite:///<root>/mlflow.db``.

Each pipeline run (training, evaluation) is one MLflow run: its settings as parameters (nested
dicts flattened to ``train.learning_rate``), its metrics (``test/student DiSCo/mrr_at_10``: MLflow
names allow no ``@`` or parentheses), the training curve as stepped metrics, the report and plot as
artifacts, and the student folder as an MLflow *logged model* (``sparse-encoder``) with its files.

A disabled tracker (``Tracker(enabled=False)``, the default of :func:`tracker`) hands out a run whose
methods do nothing, so callers never branch on tracking.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .errors import ConfigError

DEFAULT_EXPERIMENT = "disco"
DEFAULT_ROOT = Path(".cache") / "mlflow"
_BAD = re.compile(r"[^\w.\- /:]")


def metric_key(*parts: str) -> str:
    """An MLflow-safe metric or parameter name: ``@`` -> ``_at_``, parentheses dropped, others ``_``."""
    name = "/".join(str(p) for p in parts if p != "")
    return _BAD.sub("_", name.replace("@", "_at_").replace("(", "").replace(")", "")).strip()


def flatten(values: Mapping, prefix: str = "", sep: str = ".") -> dict:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``."""
    out: dict = {}
    for key, value in values.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name, sep))
        else:
            out[name] = value
    return out


def _mlflow():
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise ConfigError("tracking needs MLflow: pip install 'disco[tracking]' (mlflow-skinny)") from None
    return MlflowClient


def _metric_items(metrics: Mapping, step: int, prefix: str) -> list:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(metric_key(prefix, k), float(v), now, step) for k, v in flatten(metrics, sep="/").items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)]


class NullRun:
    """What a disabled tracker hands out: every method accepts its arguments and does nothing."""

    run_id = None

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class TrackedRun:
    """One MLflow run, open inside :meth:`Tracker.run`."""

    def __init__(self, client, experiment_id: str, run_id: str):
        self.client, self.experiment_id, self.run_id = client, experiment_id, run_id

    def log_params(self, params: Mapping) -> None:
        from mlflow.entities import Param

        flat = flatten(params)
        items = [Param(metric_key(k), v if isinstance(v, str) else json.dumps(v, default=str)[:6000])
                 for k, v in flat.items()]
        for start in range(0, len(items), 100):  # MLflow's batch limit for params
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: Mapping, step: int = 0, prefix: str = "") -> None:
        """Numbers only (nested dicts flattened with ``/``); NaN and non-numbers are skipped."""
        self._log_metric_items(_metric_items(metrics, step, prefix))

    def log_history(self, records: Sequence[Mapping], step: str = "step", prefix: str = "train") -> None:
        """A training log (``[{"step": 1, "loss": ...}, ...]``) as stepped metrics."""
        self._log_metric_items([item for record in records for item in _metric_items(
            {k: v for k, v in record.items() if k != step}, int(record.get(step, 0)), prefix)])

    def _log_metric_items(self, items: list) -> None:
        for start in range(0, len(items), 1000):  # MLflow's batch limit for metrics
            self.client.log_batch(self.run_id, metrics=items[start : start + 1000])

    def log_evaluation(self, evaluation, prefix: str = "test") -> None:
        """An :class:`~disco_core.evaluation.Evaluation`: every variant's metrics and extra columns."""
        self.log_metrics({variant: {**scores, **evaluation.extra.get(variant, {})}
                          for variant, scores in evaluation.scores.items()}, prefix=prefix)
        self.log_metrics({"queries": evaluation.n_queries}, prefix=prefix)

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        """A file, or a folder's files, under ``folder`` of the run's artifacts."""
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), folder)
        else:
            self.client.log_artifact(self.run_id, str(path), folder)

    def log_student(self, folder: str | Path, name: str = "disco-student", params: Mapping | None = None) -> str:
        """The student folder as an MLflow logged model of this run; returns the model id."""
        model = self.client.create_logged_model(
            self.experiment_id, name=name, source_run_id=self.run_id, model_type="sparse-encoder",
            params={metric_key(k): str(v) for k, v in flatten(params or {}).items()})
        try:
            self.client.log_model_artifacts(model.model_id, str(folder))
        except Exception:
            self.client.finalize_logged_model(model.model_id, "FAILED")
            raise
        self.client.finalize_logged_model(model.model_id, "READY")
        return model.model_id


class Tracker:
    """Where runs go. ``uri`` wins; else a local store under ``root`` (default ``.cache/mlflow``)."""

    def __init__(self, uri: str | None = None, root: str | Path | None = None,
                 experiment: str = DEFAULT_EXPERIMENT, enabled: bool = True):
        self.enabled, self.experiment = enabled, experiment
        self.root = Path(root) if root is not None else (None if uri else DEFAULT_ROOT)
        self.uri = uri
        if enabled and not uri:
            self.root = self.root.resolve()
            self.uri = f"sqlite:///{self.root / 'mlflow.db'}"
        self._client = None

    @property
    def client(self):
        if self._client is None:
            client_class = _mlflow()
            if self.root is not None:
                self.root.mkdir(parents=True, exist_ok=True)
            self._client = client_class(tracking_uri=self.uri)
        return self._client

    def experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        location = (self.root / "artifacts").as_uri() if self.root is not None else None
        return self.client.create_experiment(self.experiment, artifact_location=location)

    @contextlib.contextmanager
    def run(self, name: str, tags: Mapping[str, str] | None = None) -> Iterator[TrackedRun | NullRun]:
        """An MLflow run for the block: FINISHED on success, FAILED if the block raises."""
        if not self.enabled:
            yield NullRun()
            return
        experiment_id = self.experiment_id()
        run = self.client.create_run(experiment_id, run_name=name, tags=dict(tags or {}))
        status = "FAILED"
        try:
            yield TrackedRun(self.client, experiment_id, run.info.run_id)
            status = "FINISHED"
        finally:
            self.client.set_terminated(run.info.run_id, status)


def tracker(enabled: bool = False, uri: str | None = None, root: str | Path | None = None,
            experiment: str = DEFAULT_EXPERIMENT) -> Tracker:
    """A :class:`Tracker`, disabled unless ``enabled`` (nothing is imported then)."""
    return Tracker(uri, root, experiment, enabled)


def log_run(tracker: Tracker, name: str, params: Mapping | None = None, metrics: Mapping | None = None,
            evaluation=None, history: Sequence[Mapping] | None = None, artifacts: Sequence[str | Path] = (),
            student: str | Path | None = None, tags: Mapping[str, str] | None = None) -> str | None:
    """One call for a finished stage: everything given is logged to a new run; returns its id
    (None when tracking is off)."""
    with tracker.run(name, tags) as run:
        if params:
            run.log_params(params)
        if metrics:
            run.log_metrics(metrics)
        if evaluation is not None:
            run.log_evaluation(evaluation)
        if history:
            run.log_history(history)
        for path in artifacts:
            run.log_artifact(path)
        if student is not None:
            run.log_student(student, params=params)
        return run.run_id
