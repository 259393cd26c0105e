"""Running one instance of a stage: its cache key (settings, models, inputs by content, code), its
lock, a cache hit or its build, and its record (:mod:`tasks.cache`)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from disco_core.config import Config
from disco_core.fingerprint import model_fingerprint, path_digest

from . import cache
from .codehash import code_digest
from .stage import Stage


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
    """What a build function gets: the instance, its inputs' results, its output paths, a logger,
    and its cache key (to name resumable work: a killed build with the same key picks it up)."""

    node: Node
    inputs: dict[str, Any]
    log: logging.Logger
    force: bool = False
    key: str = ""

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


def key_of(node: Node, inputs: dict[str, Any]) -> tuple[str, dict]:
    """The instance's cache key and its parts, once its inputs' results are known."""
    code, _ = code_digest(node.stage.build)
    models = [model_fingerprint(name, resolved) for name, resolved in node.models]
    return cache.stage_key(node.stage.name, node.settings, _input_digests(node, inputs), models, code)


def cached(node: Node, inputs: dict[str, Any], log: logging.Logger) -> cache.StageResult | None:
    """The instance's result if it is a cache hit (checked under its lock), else None."""
    key, _ = key_of(node, inputs)
    with cache.exclusive(node.folder, node.cfg.run.lock_timeout, log.info):
        manifest = cache.lookup(node.folder, key, node.outputs)
    return None if manifest is None else _result(node, manifest, key, hit=True)


def execute(node: Node, inputs: dict[str, Any], force: bool, log: logging.Logger) -> cache.StageResult:
    """Run one instance: a cache hit if its manifest matches, else its build, then its record."""
    stage = node.stage
    key, parts = key_of(node, inputs)
    timeout = node.cfg.run.lock_timeout
    with cache.exclusive(node.folder, timeout, log.info):
        manifest, why = (None, "forced") if force else cache.check(node.folder, key, node.outputs, parts)
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
            info = stage.build(Context(node, inputs, log, force, key))
        finished = time.time()
        if not isinstance(info, stage.result):
            raise TypeError(f"stage {stage.name} returned {type(info).__name__}, not {stage.result.__name__}")
        missing = [str(p) for p in node.outputs.values() if not p.exists()]
        if missing:
            raise RuntimeError(f"stage {stage.name} did not write {missing}")
        manifest = cache.record(node.folder, key, node.outputs, {
            "stage": stage.name, "instance": node.id, "result": info.model_dump(mode="json"), "parts": parts,
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
