"""Stage caching: a stage reruns only when its inputs, settings, models or code changed, or an
output is gone or altered.

Each stage folder holds ``_manifest.json``: the stage's key, its typed result, and for every
output file its size, mtime, ctime, inode and SHA-256. The key hashes
- the SHA-256 of every input file (upstream outputs, dataset sources),
- the stage's settings (its slice of the configuration; performance-only fields never enter it),
- the fingerprints of the models it uses (weights and config files, by content),
- the code of its build function and of every project module that code reaches.

A hit needs the same key and every recorded output intact. "Intact" is checked by identity
(size, mtime, ctime, inode) and, where the identity changed, by the content hash: a copied work
dir (new inodes) stays a hit, while an overwrite is a miss even at the same size with its mtime
put back (ctime cannot be put back). What this does not see: a change that keeps size, mtime,
ctime and inode, which needs root and a clock set back. Because a key holds the content of its
inputs, a rerun stage whose outputs come out identical leaves everything downstream a hit.

Outputs are written atomically and the manifest last, so a killed stage is a miss next time and
never records a half-written file; leftovers of a kill (``*.tmp``) are swept before a build and are
never outputs. One OS lock per stage folder (``.lock``, ``flock``): a second run needing a stage
that another process is building waits, then takes its result as a hit; a killed holder's lock is
released by the kernel. While a stage builds it holds shared locks on the folders it reads, so no
other run can rebuild them under it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from disco_core.errors import DiscoError
from disco_core.fingerprint import file_digest, identity
from disco_core.io import short_hash, write_json_atomic

MANIFEST = "_manifest.json"
LOCK = ".lock"
OWNER = ".lock.owner"


class StageBusy(DiscoError):
    """Another process holds a stage's lock for longer than the configured wait."""


class StaleInput(DiscoError):
    """An input was rebuilt by another run after this run keyed a stage on it."""


def is_temporary(path: Path) -> bool:
    """Leftovers of an interrupted atomic write (``.name.XXXX.tmp``) or checkpoint (``*.tmp``)."""
    return path.name.endswith(".tmp")


def output_files(outputs: dict[str, Path]) -> list[Path]:
    """Every file of the outputs (an output folder: the files under it), temporary files excluded."""
    files: list[Path] = []
    for path in outputs.values():
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file()
                            and not any(is_temporary(Path(part)) for part in p.relative_to(path).parts))
        elif path.exists():
            files.append(path)
    return files


def _relative(folder: Path, path: Path) -> str:
    # outputs inside the stage folder are recorded relative to it, others (a shared download
    # cache) by their absolute path; ``folder / name`` gives both back
    return str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)


@dataclass
class StageResult:
    """What a stage instance produced: its outputs, their content digests and its typed result."""

    stage: str
    instance: str
    folder: Path
    outputs: dict[str, Path]
    digests: dict[str, str]  # output file -> SHA-256
    cache_hit: bool
    key: str
    info: Any = None  # the stage's result model
    started: float = 0.0
    finished: float = 0.0
    meta: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> Path:
        return self.outputs[name]

    @property
    def files(self) -> list[Path]:
        return [Path(p) for p in self.digests]


def stage_key(stage: str, settings: Any, inputs: dict[str, Any], models: list, code: str) -> tuple[str, dict]:
    """``(key, parts)``: the key, and a short hash of each of its parts, kept in the manifest to say
    what changed when a key does (settings, a model, the code, which input)."""
    parts = {"settings": short_hash(settings, 16), "models": {m.get("model", "?"): short_hash(m, 16) for m in models},
             "code": code[:16], "inputs": {name: short_hash(value, 16) for name, value in inputs.items()}}
    return short_hash({"stage": stage, **parts}, 64), parts


def what_changed(old: dict | None, new: dict) -> str:
    """The first part of a key that differs between a manifest's parts and the new ones."""
    if not old:
        return "inputs, settings, models or code changed"
    if old.get("settings") != new["settings"]:
        return "settings changed"
    if old.get("code") != new["code"]:
        return "code changed"
    for name, digest in new["models"].items():
        if old.get("models", {}).get(name) != digest:
            return f"model {name} changed"
    for name, digest in new["inputs"].items():
        if name not in old.get("inputs", {}):
            return f"new input {name}"
        if old["inputs"][name] != digest:
            return f"input {name} changed"
    gone = sorted(set(old.get("inputs", {})) - set(new["inputs"]))
    return f"input {gone[0]} no longer used" if gone else "inputs, settings, models or code changed"


def read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def lookup(folder: Path, key: str, outputs: dict[str, Path]) -> dict | None:
    """The manifest if it matches ``key`` and every recorded output is intact, else None."""
    manifest, _ = check(folder, key, outputs)
    return manifest


def check(folder: Path, key: str, outputs: dict[str, Path], parts: dict | None = None) -> tuple[dict | None, str]:
    """``(manifest, "")`` on a hit, else ``(None, why not)`` (``parts``: the new key's, to name
    what changed)."""
    manifest = read_manifest(folder)
    if manifest is None:
        return None, "not built yet"
    if manifest.get("key") != key:
        return None, what_changed(manifest.get("parts"), parts) if parts else "inputs, settings, models or code changed"
    recorded: dict = manifest.get("files", {})
    present = {_relative(folder, p) for p in output_files(outputs)}
    gone = sorted(set(recorded) - present) or [str(p) for p in outputs.values() if not p.exists()]
    if gone or not recorded:
        return None, f"output {gone[0] if gone else '?'} is gone"
    if present != set(recorded):
        return None, f"unrecorded file {sorted(present - set(recorded))[0]} among the outputs"
    refreshed = False
    for name, rec in recorded.items():
        path = folder / name
        if list(identity(path)) == rec["identity"]:
            continue
        if file_digest(path) != rec["sha256"]:
            return None, f"output {name} was changed"
        rec["identity"] = list(identity(path))  # same content, new identity (a copied work dir)
        refreshed = True
    if refreshed:
        write_json_atomic(folder / MANIFEST, manifest)
    return manifest, ""


def record(folder: Path, key: str, outputs: dict[str, Path], manifest: dict) -> dict:
    files = {_relative(folder, p): {"identity": list(identity(p)), "sha256": file_digest(p)}
             for p in output_files(outputs)}
    manifest = {**manifest, "key": key, "files": files}
    write_json_atomic(folder / MANIFEST, manifest)
    return manifest


def digests(folder: Path, manifest: dict) -> dict[str, str]:
    return {str(folder / name): rec["sha256"] for name, rec in manifest["files"].items()}


def sweep_temporary(folder: Path) -> list[Path]:
    """Remove what interrupted writes left behind in a stage folder (the caller holds its lock)."""
    swept = [p for p in folder.rglob("*.tmp") if is_temporary(p)]
    for p in swept:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return swept


# ------------------------------------------------------------------ locks
def _owner_line(folder: Path) -> str:
    try:
        owner = json.loads((folder / OWNER).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return "another process"
    since = time.strftime("%H:%M:%S", time.localtime(owner.get("since", 0)))
    return f"pid {owner.get('pid')} on {owner.get('host')} ({owner.get('command')}) since {since}"


@contextlib.contextmanager
def exclusive(folder: Path, timeout: float, log=None) -> Iterator[None]:
    """Hold the stage folder's lock; wait up to ``timeout`` s for another holder, then fail naming it."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / LOCK).open("a") as handle:
        _acquire(handle, fcntl.LOCK_EX, folder, timeout, log)
        try:
            write_json_atomic(folder / OWNER, {"pid": os.getpid(), "host": socket.gethostname(),
                                               "command": " ".join(sys.argv[:4]), "since": time.time()})
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def shared(folders: Iterable[Path], timeout: float, log=None) -> Iterator[None]:
    """Shared locks on the folders a build reads: nobody rebuilds them until it is done."""
    with contextlib.ExitStack() as stack:
        for folder in sorted(set(folders)):
            if not folder.is_dir():
                continue
            handle = stack.enter_context((folder / LOCK).open("a"))
            _acquire(handle, fcntl.LOCK_SH, folder, timeout, log)
            stack.callback(fcntl.flock, handle, fcntl.LOCK_UN)
        yield


def _acquire(handle, mode: int, folder: Path, timeout: float, log) -> None:
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if not told and log:
                log(f"{folder} is being built by {_owner_line(folder)}: waiting")
                told = True
            if time.monotonic() >= deadline:
                raise StageBusy(f"{folder} is being built by {_owner_line(folder)}; waited {timeout:.0f} s "
                                "(run.lock_timeout)") from None
            time.sleep(0.2)
