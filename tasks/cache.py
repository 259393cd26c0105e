"""Stage caching: a stage reruns only when its inputs, settings or code changed, or an output is gone.

Each stage folder holds ``_manifest.json``: the stage's key and the fingerprint (size, mtime) of
every output it wrote. The key hashes
- the fingerprints of the input files (an upstream stage that reran rewrote them: new mtimes),
- the stage's settings (the slice of the config that changes its outputs),
- the source code of the stage and of the disco_core modules it calls.
A hit needs the same key and every output present with the recorded fingerprint, so a deleted or
edited output is a miss (Prefect's own cache would hand back a path to a file that is gone). The
manifest is written last, after every output was replaced atomically: a stage killed halfway is a
miss next time, and a stage that fails leaves the previous outputs and manifest as they were.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from disco_core.io import write_json_atomic

MANIFEST = "_manifest.json"


def fingerprint(path: Path) -> list:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def code_hash(objects: Iterable[object]) -> str:
    """Hash the source of functions and modules (a package: its ``__init__`` only; list the
    submodules a stage uses explicitly)."""
    digest = hashlib.sha256()
    for obj in objects:
        digest.update(inspect.getsource(obj).encode())
    return digest.hexdigest()


def stage_key(stage: str, inputs: Iterable[Path], settings: dict, code: str) -> str:
    payload = {
        "stage": stage,
        "inputs": {str(p): fingerprint(p) for p in sorted(set(map(Path, inputs)))},
        "settings": settings,
        "code": code,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class StageResult:
    stage: str
    folder: Path
    outputs: dict[str, Path]
    cache_hit: bool
    key: str
    info: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> Path:
        return self.outputs[name]

    @property
    def files(self) -> list[Path]:
        return output_files(self.outputs)


def output_files(outputs: dict[str, Path]) -> list[Path]:
    """Every file of the outputs (an output folder: the files under it)."""
    files: list[Path] = []
    for path in outputs.values():
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return files


def lookup(folder: Path, key: str, outputs: dict[str, Path]) -> dict | None:
    """The manifest if it matches ``key`` and every recorded output is intact, else None."""
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        return None
    if manifest.get("key") != key:
        return None
    recorded: dict = manifest.get("files", {})
    if not recorded or any(not p.exists() for p in outputs.values()):
        return None
    for name, fp in recorded.items():
        path = folder / name
        if not path.exists() or fingerprint(path) != fp:
            return None
    return manifest


def record(folder: Path, key: str, outputs: dict[str, Path], info: dict) -> None:
    # outputs inside the stage folder are recorded relative to it, others (a shared download
    # cache) by their absolute path; ``folder / name`` gives both back
    files = {str(p.relative_to(folder)) if p.is_relative_to(folder) else str(p): fingerprint(p)
             for p in output_files(outputs)}
    write_json_atomic(folder / MANIFEST, {"key": key, "files": files, "info": info})


def run_stage(stage: str, folder: Path, inputs: Iterable[Path], settings: dict, code: Iterable[object],
              outputs: dict[str, Path], build, logger, force: bool = False) -> StageResult:
    """Return the cached outputs of ``stage`` when the manifest matches, else ``build()`` them.

    ``build()`` writes every path of ``outputs`` (atomically) and returns a JSON-able info dict.
    """
    folder.mkdir(parents=True, exist_ok=True)
    key = stage_key(stage, inputs, settings, code_hash(code))
    manifest = None if force else lookup(folder, key, outputs)
    if manifest is not None:
        logger.info("%s: cache hit (%s)", stage, folder)
        return StageResult(stage, folder, outputs, True, key, manifest.get("info", {}))
    logger.info("%s: running (%s)", stage, "forced" if force else "inputs, settings, code or outputs changed")
    # The old manifest stays until the new one replaces it: a failed run leaves the previous outputs
    # and their record intact (a partial rewrite changes fingerprints, so it can never pass as a hit).
    start = time.perf_counter()
    info = build() or {}
    info["seconds"] = round(time.perf_counter() - start, 3)
    missing = [str(p) for p in outputs.values() if not p.exists()]
    if missing:
        raise RuntimeError(f"stage {stage} did not write {missing}")
    record(folder, key, outputs, info)
    logger.info("%s: done in %.1f s", stage, info["seconds"])
    return StageResult(stage, folder, outputs, False, key, info)
