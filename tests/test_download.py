"""Careful downloads against a real HTTP server on loopback: resume, verification, mirrors."""

import hashlib

import pytest

from disco_core.download import DownloadError, RemoteFile, fetch, is_complete
from loopback import StaticServer

PAYLOAD = bytes(range(256)) * 4000  # ~1 MB


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "data.bin").write_bytes(PAYLOAD)
    servers = []

    def start(**kw):
        s = StaticServer(root, **kw)
        servers.append(s)
        return s

    yield root, start
    for s in servers:
        s.close()


def remote(url, **kw):
    return RemoteFile("data.bin", f"{url}/data.bin", size=len(PAYLOAD),
                      md5=hashlib.md5(PAYLOAD).hexdigest(), **kw)


def test_download_verify_and_second_run_downloads_nothing(served, tmp_path):
    _, start = served
    server = start()
    path = fetch(remote(server.url), tmp_path / "cache")
    assert path.read_bytes() == PAYLOAD and is_complete(remote(server.url), tmp_path / "cache")
    assert server.total_requests == 1
    fetch(remote(server.url), tmp_path / "cache")
    assert server.total_requests == 1
    # a registry entry whose published checksum changed (same URL) is not served from the old file
    changed = RemoteFile("data.bin", f"{server.url}/data.bin", md5="0" * 32)
    assert not is_complete(changed, tmp_path / "cache")
    with pytest.raises(DownloadError):
        fetch(changed, tmp_path / "cache")
    assert server.total_requests == 3  # fetched again, twice (the second try after a failed check)


def test_a_killed_download_resumes_with_range(served, tmp_path):
    _, start = served
    server = start(cut_after=300_000)
    path = fetch(remote(server.url), tmp_path / "cache", retries=2, backoff=0.01)
    assert path.read_bytes() == PAYLOAD
    assert server.ranges and server.ranges[0] >= 300_000 - 65536  # resumed, not restarted


def test_a_corrupt_file_is_fetched_again_then_refused(served, tmp_path):
    root, start = served
    server = start()
    cache = tmp_path / "cache"
    # a corrupt partial left by an earlier run: verification fails, the file is fetched from scratch
    cache.mkdir()
    (cache / "data.bin.part").write_bytes(b"garbage" * 10)
    assert fetch(remote(server.url), cache, backoff=0.01).read_bytes() == PAYLOAD
    # a server that serves wrong bytes: refused, with no cache entry left behind
    (root / "data.bin").write_bytes(PAYLOAD[:-1] + b"X")
    other = tmp_path / "other"
    with pytest.raises(DownloadError, match=r"data.bin: md5 mismatch"):
        fetch(remote(server.url), other, backoff=0.01)
    assert not (other / "data.bin").exists() and not (other / "data.bin.part").exists()


def test_unreachable_host_and_missing_file(tmp_path, served):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=rf"127.0.0.1:{port}/data.bin: download failed after 2 attempts \(ConnectError"):
        fetch(remote(f"http://127.0.0.1:{port}"), tmp_path / "cache", retries=1, backoff=0.01, timeout=2)
    _, start = served
    server = start()
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(RemoteFile("nope.bin", f"{server.url}/nope.bin"), tmp_path / "cache")


def test_local_and_http_mirrors(served, tmp_path):
    root, start = served
    official = remote("https://unreachable.invalid")
    assert fetch(official, tmp_path / "a", mirror=root).read_bytes() == PAYLOAD
    server = start()
    assert fetch(official, tmp_path / "b", mirror=server.url).read_bytes() == PAYLOAD
    with pytest.raises(DownloadError, match="not in the mirror"):
        fetch(official, tmp_path / "c", mirror=tmp_path / "empty")
