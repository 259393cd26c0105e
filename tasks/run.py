"""The one Prefect task every stage instance runs as (named after the instance)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from .cache import StageResult
from .stage import Node, execute


# Prefect's result cache is off: it cannot see a deleted output file; the manifests decide.
@task(name="stage", cache_policy=NO_CACHE, persist_result=False)
def run_stage(node: Node, inputs: dict, force: bool = False) -> StageResult:
    result = execute(node, inputs, force, get_run_logger())
    if node.stage.after is not None:
        node.stage.after(node.cfg, result)
    return result


def options(node: Node):
    """The task, named and configured for one instance (retries as its stage declares them)."""
    return run_stage.with_options(name=node.stage.name, task_run_name=node.id, retries=node.stage.retries,
                                  retry_delay_seconds=5, tags=[f"stage:{node.stage.name}"])
