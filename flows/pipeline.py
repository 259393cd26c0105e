"""The disco pipeline as one Prefect flow, its order derived from the stages' declarations.

``disco_pipeline`` plans a configuration's instances (:mod:`tasks.graph`) and submits each as a
task, with the results it reads as inputs: independent instances (teachers, query variants,
datasets) run concurrently on the task runner (threads, or a Dask cluster given its address).
``targets`` narrows the run to some stages (every instance of them) or instances, and what they
need; ``force`` reruns stages or instances although they are fresh. Parameters are JSON-able (a
config path and ``section.key=value`` overrides), so the same call works from the CLI, from
``prefect deployment run`` and from a schedule.
"""

from __future__ import annotations

import os
import queue
import socket
from collections.abc import Callable

import tasks  # noqa: F401  (environment defaults, stage declarations)

from prefect import flow, get_run_logger
from prefect.exceptions import UpstreamTaskError

from disco_core.config import Config
from disco_core.config_files import load_config
from tasks.cache import StageResult
from tasks.graph import Graph, plan
from tasks.run import options
from tasks.execute import cached


def task_runner(cfg: Config):
    """Threads on this machine, or a Dask cluster when ``run.dask_address`` names one."""
    if cfg.run.dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=cfg.run.dask_address)
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=cfg.run.workers)


def run_tags() -> list[str]:
    """Tags that let a later run tell that this one was killed (see :func:`mark_crashed`)."""
    return ["disco", f"pid:{os.getpid()}", f"host:{socket.gethostname()}"]


def submit(graph: Graph, ids: list[str], force: list[str] = (),
           on_progress: Callable[[set[str]], None] | None = None) -> dict[str, StageResult]:
    """Run the instances ``ids`` need, each as a task given its inputs' futures; wait for all.
    Instances whose inputs are all known and whose outputs are fresh are cache hits at once, with
    no task; the rest run on the task runner, independent ones concurrently. A failure stops what
    depends on it, not the rest; then its error is raised."""
    log = get_run_logger()
    forced = set(graph.select(list(force))) if force else set()
    hits: dict[str, StageResult] = {}
    futures = {}
    for node in graph.by_depth(graph.order(ids)):
        known = {**hits, **futures}
        inputs = {name: [known[i] for i in need] if isinstance(need, list) else known[need]
                  for name, need in node.needs.items()}
        if node.id not in forced and all(i in hits for i in _need_ids(node)):
            hit = cached(node, inputs, log)
            if hit is not None:
                log.info("%s: cache hit", node.id)
                if node.stage.after is not None:
                    node.stage.after(node.cfg, hit)
                hits[node.id] = hit
                continue
        futures[node.id] = options(node).submit(node, inputs, force=node.id in forced)
    _wait(futures, set(hits), on_progress)
    results, errors = dict(hits), []
    for node_id, future in futures.items():
        try:
            results[node_id] = future.result()
        except Exception as exc:  # noqa: BLE001  (raised below: the first that is not a consequence)
            errors.append(exc)
    if errors:
        raise next((e for e in errors if not isinstance(e, UpstreamTaskError)), errors[0])
    return {n.id: results[n.id] for n in graph.order(ids)}  # in plan order


def _wait(futures: dict, done: set[str], on_progress, every: float = 10.0) -> None:
    """Wait for every future; tell ``on_progress`` the finished instance ids as they finish.
    Done-callbacks feed a queue: ``prefect.futures.wait(timeout=...)`` times out with SIGALRM in the
    main thread, which can land inside a lock's re-acquire and broke a 40-minute sweep here
    ("release unlocked lock")."""
    finished: queue.SimpleQueue = queue.SimpleQueue()
    for instance, future in futures.items():
        future.add_done_callback(lambda _, instance=instance: finished.put(instance))
    pending = set(futures)
    while True:
        if on_progress is not None:
            on_progress(done | (set(futures) - pending))
        if not pending:
            return
        try:
            pending.discard(finished.get(timeout=every if on_progress else None))
            while True:
                pending.discard(finished.get_nowait())
        except queue.Empty:
            pass


def _need_ids(node) -> list[str]:
    return [i for need in node.needs.values() for i in (need if isinstance(need, list) else [need])]


def summary(results: dict[str, StageResult]) -> dict:
    return {node_id: {"stage": r.stage, "cache_hit": r.cache_hit, "folder": str(r.folder),
                      "info": r.info.model_dump(mode="json"), "started": r.started, "finished": r.finished}
            for node_id, r in results.items()}


@flow(name="disco-pipeline", log_prints=True)
def disco_pipeline(config_path: str | None = None, overrides: list[str] | None = None,
                   targets: list[str] | None = None, force: list[str] | None = None) -> dict:
    """Datasets to evaluation and the DiSCo report; every stage a cache hit when fresh."""
    mark_crashed()
    cfg = load_config(config_path, overrides or [])
    graph, ids = plan(cfg, targets)
    results = submit(graph, ids, force or [])
    get_run_logger().info("stages: %s", ", ".join(f"{i}={'hit' if r.cache_hit else 'ran'}" for i, r in results.items()))
    return summary(results)


def run(config_path: str | None = None, overrides: list[str] | None = None, targets: list[str] | None = None,
        force: list[str] | None = None) -> dict:
    """The pipeline flow on the configuration's task runner, tagged with this process."""
    from prefect import tags

    cfg = load_config(config_path, overrides or [])
    graph, _ = plan(cfg, targets)  # every planning mistake before Prefect starts
    if force:
        graph.select(list(force))
    with tags(*run_tags()):
        return disco_pipeline.with_options(task_runner=task_runner(cfg))(
            config_path=config_path, overrides=overrides or [], targets=targets, force=force)


def mark_crashed() -> int:
    """Flow runs of this machine left RUNNING by a killed process: marked Crashed. Returns how many."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
                                                FlowRunFilterTags)
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    host = f"host:{socket.gethostname()}"
    marked = 0
    with get_client(sync_client=True) as client:
        running = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=["disco", host]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))))
        for run_ in running:
            pid = next((int(t[4:]) for t in run_.tags if t.startswith("pid:") and t[4:].isdigit()), None)
            if pid is not None and pid != os.getpid() and not _alive(pid):
                client.set_flow_run_state(run_.id, Crashed(message=f"process {pid} ended while running"), force=True)
                marked += 1
    return marked


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
