"""The one Prefect task every stage instance runs as (named after the instance), with the
instance's progress as a Prefect progress artifact and, when asked, its run in the experiment tracker."""

from __future__ import annotations

import contextlib

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from disco_core import progress, tracking

from .cache import StageResult
from .execute import Node, execute


# Prefect's result cache is off: it cannot see a deleted output file; the manifests decide.
@task(name="stage", cache_policy=NO_CACHE, persist_result=False)
def run_stage(node: Node, inputs: dict, force: bool = False) -> StageResult:
    with progress.subscribed(_ProgressArtifact(node.id), every=5.0, after=2.0):
        result = execute(node, inputs, force, get_run_logger())
    if node.stage.after is not None:
        node.stage.after(node.cfg, result)
    if not result.cache_hit and node.stage.tracked is not None and node.cfg.tracking.enabled:
        node.stage.tracked(node, result)
    return result


def options(node: Node):
    """The task, named and configured for one instance (retries as its stage declares them)."""
    return run_stage.with_options(name=node.stage.name, task_run_name=node.id, retries=node.stage.retries,
                                  retry_delay_seconds=5, tags=[f"stage:{node.stage.name}"])


def tracker(cfg) -> tracking.Tracker:
    """The configured experiment tracker (a local store under the work dir unless a URI is given)."""
    t = cfg.tracking
    return tracking.tracker(t.enabled, t.uri, root=cfg.work_path / "mlflow", experiment=t.experiment)


class _ProgressArtifact:
    """A long step's progress (encoding, training) as a Prefect progress artifact of its task."""

    def __init__(self, name: str):
        self.name, self.artifact = name, None

    def __call__(self, event: progress.ProgressEvent) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        percent = 100.0 * (event.fraction or 0.0)
        with contextlib.suppress(Exception):  # a display: never fail the stage over it
            if self.artifact is None:
                self.artifact = create_progress_artifact(percent, description=f"{self.name}: {event.desc}")
            else:
                update_progress_artifact(self.artifact, percent, description=f"{self.name}: {event.line()}")
