"""A stage is one declaration; the DAG, cache keys, folders, CLI and flows are derived from it.

    @stage("retrieve", needs=("index", "encode_queries"), result=Retrieved, keys=("retrieval.k",),
           outputs={"run": "run.parquet", "trec": "run.trec"})
    def retrieve(ctx: Context) -> Retrieved: ...          # the build function

    @retrieve.wire                                        # which upstream instances it reads
    def _(plan, ds, variant):
        return {"index": plan.node("index", ds=ds), "queries": plan.node("encode_queries", ds=ds, variant=variant)}

A stage runs as *instances*, one per parameter set (a dataset, a teacher, a query variant, ...):
``retrieve[embedded/last_turn]``. An instance's folder is named by its parameters and a hash of its
settings and upstream folders, so the settings a sweep varies never share a folder, while a code
or data change rebuilds in place. Its cache key (see :mod:`tasks.cache`) is computed: settings from
``keys`` (performance-only fields dropped), models by fingerprint, inputs by content, and the code
its build function reaches (:mod:`tasks.codehash`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from disco_core.config import Config, is_perf
from disco_core.errors import DiscoError
from disco_core.fingerprint import model_fingerprint, path_digest

from . import cache
from .codehash import code_digest

STAGES: dict[str, Stage] = {}  # declaration order is the pipeline's order


class Stage:
    """One declaration: name, needs, outputs, keyed settings, build function and typed result."""

    def __init__(self, name: str, build: Callable[[Context], BaseModel], result: type[BaseModel],
                 needs: tuple[str, ...] = (), outputs: dict[str, str] | Callable[..., dict[str, str]] = (),
                 keys: tuple[str, ...] = (), retries: int = 0, measured_inputs: bool = False,
                 description: str | None = None):
        self.name, self.build, self.result, self.needs = name, build, result, tuple(needs)
        self._outputs, self.keys, self.retries = outputs, tuple(keys), retries
        # a stage that shows its inputs' timings (the report) keys on them too
        self.measured_inputs = measured_inputs
        self.description = description or (build.__doc__ or "").strip().splitlines()[0]
        self._wire: Callable[..., dict] = lambda plan, **params: {}
        self._settings: Callable[..., dict] = lambda cfg, **params: {}
        self._models: Callable[..., list] = lambda cfg, **params: []
        self._sources: Callable[..., list] = lambda cfg, **params: []
        self._scope: Callable[..., str] = lambda cfg, **params: params["ds"].scope
        self._label: Callable[..., str] = lambda cfg, **params: "/".join(
            str(v) for k, v in params.items() if k != "ds")
        self._folder: Callable[..., str] | None = None  # a fixed folder (a named artifact) instead
        self.after: Callable[[Config, cache.StageResult], None] | None = None
        self.tracked: Callable[[Node, cache.StageResult], None] | None = None

    # hooks, used as decorators on the declaration
    def wire(self, fn):
        """``fn(plan, **params) -> {name: Node | [Node]}``: the upstream instances it reads."""
        self._wire = fn
        return fn

    def settings(self, fn):
        """``fn(cfg, **params) -> dict``: keyed settings that depend on the parameters."""
        self._settings = fn
        return fn

    def models(self, fn):
        """``fn(cfg, **params) -> [(name, local path or None)]``: models fingerprinted into the key."""
        self._models = fn
        return fn

    def sources(self, fn):
        """``fn(cfg, **params) -> [Path]``: files outside the work dir that it reads."""
        self._sources = fn
        return fn

    def scope(self, fn):
        self._scope = fn
        return fn

    def label(self, fn):
        self._label = fn
        return fn

    def folder(self, fn):
        """``fn(cfg, **params) -> str``: the folder under the work dir, for instances that are named
        artifacts (a student); other instances get ``<scope>/<stage>/<label>-<settings hash>``."""
        self._folder = fn
        return fn

    def publish(self, fn):
        """``fn(cfg, result)``: after the instance (hit or not), e.g. a Prefect artifact."""
        self.after = fn
        return fn

    def track(self, fn):
        """``fn(node, result)``: after the instance built (not on a hit), with ``tracking.enabled``:
        what it logs to the experiment tracker."""
        self.tracked = fn
        return fn

    def outputs(self, cfg: Config, **params) -> dict[str, str]:
        return self._outputs(cfg, **params) if callable(self._outputs) else dict(self._outputs)

    def __repr__(self) -> str:
        return f"Stage({self.name!r})"

    def __reduce__(self):
        # sent by name (to a Dask worker, say): its functions are module code, found again there
        return declared, (self.name,)


def declared(name: str) -> Stage:
    """The declared stage ``name`` (importing ``tasks`` declares them all)."""
    import tasks  # noqa: F401

    return STAGES[name]


def stage(name: str, **declaration: Any) -> Callable[[Callable], Stage]:
    """Declare a stage from its build function (see the module docstring)."""

    def declare(build: Callable) -> Stage:
        if name in STAGES:
            raise ValueError(f"stage {name!r} is declared twice")
        STAGES[name] = Stage(name, build, **declaration)
        return STAGES[name]

    return declare


def measured(default: Any = None, **kwargs: Any) -> Any:
    """A result field that is a measurement (a timing): downstream keys ignore it, except those of
    stages that show it (``measured_inputs``)."""
    return Field(default, json_schema_extra={"measured": True}, **kwargs)


# ------------------------------------------------------------------ settings slices
def plain(value: Any) -> Any:
    """A config value as JSON data for a key: sections without their performance-only fields."""
    if isinstance(value, BaseModel):
        return {k: plain(getattr(value, k)) for k in type(value).model_fields if not is_perf(type(value), k)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def config_value(cfg: Config, dotted: str) -> Any:
    value: Any = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def keyed_settings(cfg: Config, keys: tuple[str, ...]) -> dict:
    return {k: plain(config_value(cfg, k)) for k in keys}


# ------------------------------------------------------------------ instances
@dataclass
class Node:
    """One instance of a stage in a plan: everything about it that is known before it runs."""

    stage: Stage
    cfg: Config
    params: dict
    id: str
    folder: Path
    needs: dict[str, str | list[str]]  # input name -> upstream instance id(s)
    settings: dict
    models: list[tuple[str, str | None]]
    sources: list[Path]
    outputs: dict[str, Path]
    upstream_folders: list[Path] = field(default_factory=list)


@dataclass
class Context:
    """What a build function gets: the instance, its inputs' results, its output paths, a logger."""

    node: Node
    inputs: dict[str, Any]
    log: logging.Logger
    force: bool = False

    @property
    def cfg(self) -> Config:
        return self.node.cfg

    @property
    def params(self) -> dict:
        return self.node.params

    def out(self, name: str) -> Path:
        return self.node.outputs[name]


def _flat(inputs: dict[str, Any]) -> list[cache.StageResult]:
    out = []
    for value in inputs.values():
        out += value if isinstance(value, list) else [value]
    return out


def _input_digests(node: Node, inputs: dict[str, Any]) -> dict[str, Any]:
    """Inputs as the key sees them: upstream outputs by content (paths relative to the work dir,
    so a moved work dir keeps its keys), their results (timings only where the stage shows them),
    and outside files by name and content."""
    work = node.cfg.work_path.resolve()
    keyed: dict[str, Any] = {}
    for result in _flat(inputs):
        for path, digest in result.digests.items():
            p = Path(path).resolve()
            keyed[str(p.relative_to(work)) if p.is_relative_to(work) else path] = digest
        info = result.info.model_dump(mode="json") if isinstance(result.info, BaseModel) else result.info
        if not node.stage.measured_inputs:
            info = {k: v for k, v in (info or {}).items() if not _is_measured(result.info, k)}
        keyed[f"result:{result.instance}"] = info
    for source in node.sources:
        keyed[f"source:{Path(source).name}"] = path_digest(source)
    return keyed


def _is_measured(info: Any, name: str) -> bool:
    fields = getattr(type(info), "model_fields", {})
    return name in fields and bool((fields[name].json_schema_extra or {}).get("measured"))


def key_of(node: Node, inputs: dict[str, Any]) -> str:
    """The instance's cache key, once its inputs' results are known."""
    code, _ = code_digest(node.stage.build)
    models = [model_fingerprint(name, resolved) for name, resolved in node.models]
    return cache.stage_key(node.stage.name, node.settings, _input_digests(node, inputs), models, code)


def cached(node: Node, inputs: dict[str, Any], log: logging.Logger) -> cache.StageResult | None:
    """The instance's result if it is a cache hit (checked under its lock), else None."""
    key = key_of(node, inputs)
    with cache.exclusive(node.folder, node.cfg.run.lock_timeout, log.info):
        manifest = cache.lookup(node.folder, key, node.outputs)
    return None if manifest is None else _result(node, manifest, key, hit=True)


def execute(node: Node, inputs: dict[str, Any], force: bool, log: logging.Logger) -> cache.StageResult:
    """Run one instance: a cache hit if its manifest matches, else its build, then its record."""
    stage = node.stage
    key = key_of(node, inputs)
    timeout = node.cfg.run.lock_timeout
    with cache.exclusive(node.folder, timeout, log.info):
        manifest, why = (None, "forced") if force else cache.check(node.folder, key, node.outputs)
        if manifest is not None:
            log.info("%s: cache hit", node.id)
            return _result(node, manifest, key, hit=True)
        swept = cache.sweep_temporary(node.folder)
        if swept:
            log.info("%s: removed %d leftover temporary file(s) of an interrupted run", node.id, len(swept))
        log.info("%s: running (%s)", node.id, why)
        started = time.time()
        with cache.shared(node.upstream_folders, timeout, log.info):
            _check_inputs_unchanged(inputs)
            info = stage.build(Context(node, inputs, log, force))
        finished = time.time()
        if not isinstance(info, stage.result):
            raise TypeError(f"stage {stage.name} returned {type(info).__name__}, not {stage.result.__name__}")
        missing = [str(p) for p in node.outputs.values() if not p.exists()]
        if missing:
            raise RuntimeError(f"stage {stage.name} did not write {missing}")
        manifest = cache.record(node.folder, key, node.outputs, {
            "stage": stage.name, "instance": node.id, "result": info.model_dump(mode="json"),
            "started": started, "finished": finished, "seconds": round(finished - started, 3)})
        log.info("%s: done in %.1f s", node.id, finished - started)
        return _result(node, manifest, key, hit=False)


def _check_inputs_unchanged(inputs: dict[str, Any]) -> None:
    """Under the shared locks: the inputs are still the ones the key was computed from."""
    for result in _flat(inputs):
        manifest = cache.read_manifest(result.folder)
        if manifest is None or manifest.get("key") != result.key:
            raise cache.StaleInput(f"{result.folder} was rebuilt by another run after this run read it; "
                                   "run again")


def _result(node: Node, manifest: dict, key: str, hit: bool) -> cache.StageResult:
    info = node.stage.result.model_validate(manifest.get("result", {}))
    return cache.StageResult(node.stage.name, node.id, node.folder, node.outputs, cache.digests(node.folder, manifest),
                             hit, key, info, manifest.get("started", 0.0), manifest.get("finished", 0.0))


class PlanError(DiscoError):
    """A plan that cannot be built (an unknown stage, a cycle)."""
