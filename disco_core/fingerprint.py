"""Content fingerprints of files, folders and models, each file hashed once per version.

A file's fingerprint is the SHA-256 of its bytes. Hashing a large file on every run would cost more
than the cache saves, so a digest is remembered together with the file's ``stat`` identity (size,
mtime, ctime, inode) in a small SQLite table shared by every process. ``ctime`` is the point: a user
can restore a file's mtime after overwriting it (``touch -d``), but not its ctime, which the kernel
sets on every change; a file whose identity changed is hashed again.

A model is fingerprinted by the contents of its weight, config and tokenizer files when it is a
local folder or file (a trained student, splade-tiny from its package, a GGUF), and by its resolved
revision when it is a Hugging Face hub id whose snapshot is in the local hub cache.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

from .env import cache_dir

_lock = threading.Lock()
_memo: dict[tuple, str] = {}
_db: sqlite3.Connection | None = None
# Files of a model folder that do not change what it computes.
_IGNORED_SUFFIXES = (".md", ".txt.lock", ".lock")


def identity(path: Path) -> tuple[int, int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def _store() -> sqlite3.Connection:
    global _db
    if _db is None:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        _db = sqlite3.connect(folder / "fingerprints.sqlite", timeout=60, check_same_thread=False,
                              isolation_level=None)
        _db.execute("PRAGMA journal_mode=WAL")
        _db.execute("CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, "
                    "mtime_ns INTEGER, ctime_ns INTEGER, ino INTEGER, sha256 TEXT)")
    return _db


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, computed once per file version (size, mtime, ctime, inode)."""
    path = Path(path).resolve()
    ident = identity(path)
    memo_key = (str(path), *ident)
    with _lock:
        if memo_key in _memo:
            return _memo[memo_key]
        row = _store().execute("SELECT size, mtime_ns, ctime_ns, ino, sha256 FROM digests WHERE path = ?",
                               (str(path),)).fetchone()
    if row is not None and tuple(row[:4]) == ident:
        digest = row[4]
    else:
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        if identity(path) != ident:  # written while we read it: never remember a torn digest
            return file_digest(path)
        with _lock:
            _store().execute("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?)", (str(path), *ident, digest))
    with _lock:
        _memo[memo_key] = digest
    return digest


def folder_files(folder: Path) -> list[Path]:
    """The files that make up a folder's content: hidden files and notes (README.md) left out."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not any(part.startswith(".")
                  for part in p.relative_to(folder).parts) and not p.name.endswith(_IGNORED_SUFFIXES))


def path_digest(path: str | Path) -> str:
    """A file's digest, or a folder's: the digests of its files with their relative paths."""
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    digest = hashlib.sha256()
    for f in folder_files(path):
        digest.update(f"{f.relative_to(path).as_posix()}\0{file_digest(f)}\n".encode())
    return digest.hexdigest()


def hub_revision(repo_id: str) -> str | None:
    """The commit of a hub model's snapshot in the local Hugging Face cache, if there is one."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on it
        return None
    found = try_to_load_from_cache(repo_id, "config.json")
    if isinstance(found, str):
        return Path(found).parent.name  # .../snapshots/<commit>/config.json
    return None


def model_fingerprint(name: str, resolved: str | Path | None = None) -> dict:
    """What a cache key holds for a model: ``resolved`` (a local folder or file; default: ``name``
    itself when it exists) by content, else a hub id by its cached revision (None if unknown)."""
    local = Path(resolved if resolved is not None else name).expanduser()
    if local.exists():
        return {"model": name, "content": path_digest(local)}
    return {"model": name, "revision": hub_revision(name)}


def reset_memo() -> None:
    """Forget digests remembered by this process (tests that rewrite files in place)."""
    with _lock:
        _memo.clear()

