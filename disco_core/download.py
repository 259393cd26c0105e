"""Downloads done with care: resumable, verified, never a half-written cache entry.

A :class:`RemoteFile` names an official file (URL, expected size and checksum where published).
:func:`fetch` puts it at ``<cache>/<name>``:

- an entry is complete only with its ``.verified`` stamp (size and checksum recorded after the
  check), so a second run downloads nothing and a half-written file is never taken for a whole one;
- bytes arrive in ``<name>.part``; a killed download resumes from there with an HTTP ``Range``
  request (a server that ignores it sends the whole file again, which is handled);
- the size and checksum are verified before the rename; a corrupt file is deleted and fetched again
  once, then the error names the URL and what differed;
- ``mirror=`` reads the same file names from a local folder (or another URL prefix) instead of the
  official host, for machines without internet or shared caches.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import DiscoError
from .progress import progress as show_progress

CHUNK = 1 << 20


class DownloadError(DiscoError):
    """A file could not be fetched or failed verification (the message names URL and cause)."""


@dataclass(frozen=True)
class RemoteFile:
    name: str  # file name in the cache folder (may contain a sub-folder)
    url: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None

    def expected(self) -> dict:
        return {k: v for k, v in (("size", self.size), ("sha256", self.sha256), ("md5", self.md5)) if v}


def _digests(path: Path) -> dict:
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
    return {"size": path.stat().st_size, "sha256": sha.hexdigest(), "md5": md5.hexdigest()}


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def is_complete(file: RemoteFile, cache_dir: str | Path) -> bool:
    dest = Path(cache_dir) / file.name
    stamp = _stamp(dest)
    if not dest.exists() or not stamp.exists():
        return False
    try:
        recorded = json.loads(stamp.read_text())
    except json.JSONDecodeError:
        return False
    # the stamp's digests must still satisfy what the registry expects (a published checksum may
    # change without the URL changing)
    return (recorded.get("size") == dest.stat().st_size and recorded.get("url") == file.url
            and all(recorded.get(key) == want for key, want in file.expected().items()))


def verify(file: RemoteFile, path: Path) -> dict:
    """The file's digests; raises :class:`DownloadError` when they differ from the expected ones."""
    got = _digests(path)
    for key, want in file.expected().items():
        if got[key] != want:
            raise DownloadError(f"{file.url}: {key} mismatch (expected {want}, got {got[key]})")
    return got


def fetch(file: RemoteFile, cache_dir: str | Path, mirror: str | Path | None = None, timeout: float = 60.0,
          retries: int = 3, backoff: float = 1.0, log=None) -> Path:
    """Return the verified local path of ``file``, downloading (or resuming) only what is missing."""
    cache_dir = Path(cache_dir)
    dest = cache_dir / file.name
    if is_complete(file, cache_dir):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in (1, 2):  # a corrupt download is fetched once more from scratch
        source = _mirror_source(file, mirror) if mirror else file.url
        if isinstance(source, Path):
            shutil.copyfile(source, part)
        else:
            _download(source, part, timeout, retries, backoff, log)
        try:
            digests = verify(file, part)
        except DownloadError:
            part.unlink(missing_ok=True)
            if attempt == 2:
                raise
            if log:
                log(f"{file.name}: verification failed, fetching it again")
            continue
        os.replace(part, dest)
        _stamp(dest).write_text(json.dumps({**digests, "url": file.url}))
        return dest
    raise AssertionError("unreachable")


def _mirror_source(file: RemoteFile, mirror: str | Path) -> Path | str:
    text = str(mirror)
    if text.startswith(("http://", "https://")):
        return text.rstrip("/") + "/" + file.name
    path = Path(mirror) / file.name
    if not path.exists():
        raise DownloadError(f"{path}: not in the mirror (expected the file {file.name!r} from {file.url})")
    return path


def _download(url: str, part: Path, timeout: float, retries: int, backoff: float, log) -> None:
    import httpx

    last = "no attempt"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with httpx.stream("GET", url, headers=headers, timeout=timeout, follow_redirects=True) as response:
                if response.status_code == 416:  # nothing left to send: the part is whole
                    return
                if response.status_code >= 400:
                    last = f"HTTP {response.status_code}"
                    if response.status_code < 500 and response.status_code != 429:
                        raise DownloadError(f"{url}: {last}")
                    continue
                mode = "ab" if have and response.status_code == 206 else "wb"  # 200: the server restarted
                if log and have:
                    log(f"{part.name}: resuming at byte {have}" if mode == "ab" else f"{part.name}: restarting")
                offset = have if mode == "ab" else 0
                total = _expected_total(response, offset)
                with part.open(mode) as out, show_progress(total, f"downloading {part.name[:-len('.part')]}",
                                                           unit="B", unit_scale=True, initial=offset) as bar:
                    for chunk in response.iter_bytes():  # as received: a drop keeps every byte so far
                        out.write(chunk)
                        bar.update(len(chunk))
            if total is not None and part.stat().st_size < total:
                # the connection ended early without an error: keep the bytes, resume them
                last = f"connection closed at byte {part.stat().st_size} of {total}"
                continue
            return
        except httpx.HTTPError as exc:  # unreachable host, reset, timeout: keep the part, retry
            last = f"{type(exc).__name__}: {exc}"
    raise DownloadError(f"{url}: download failed after {retries + 1} attempts ({last}); "
                        f"the partial file {part} is kept and the next run resumes it")


def _expected_total(response, offset: int) -> int | None:
    """The file's full size from Content-Range (206) or offset + Content-Length (200)."""
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None
