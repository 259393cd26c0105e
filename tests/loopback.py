"""Test helpers: a static HTTP server on loopback (Range requests, optional mid-file drop) and
registry entries pointed at fixture files served by it."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class StaticServer:
    """Serves ``root`` on 127.0.0.1 with Range support; counts requests per path.

    ``cut_after=n`` makes the first response stop after n bytes (a dropped connection)."""

    def __init__(self, root: Path, cut_after: int | None = None):
        self.requests: dict[str, int] = {}
        self.ranges: list[int] = []
        self.cut_after = cut_after
        outer = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                outer.requests[name] = outer.requests.get(name, 0) + 1
                path = root / name
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = 0
                if "Range" in self.headers:
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    outer.ranges.append(start)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut_after is not None:
                    n, outer.cut_after = outer.cut_after, None
                    self.wfile.write(body[:n])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the connection dies mid-transfer
                    return
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def register_fixture(name: str, fixture_dir: Path, server: StaticServer, monkeypatch) -> str:
    """Register ``<name>-fixture``: the entry ``name`` with its files served from ``fixture_dir``
    by ``server`` (same file names, the fixtures' own md5). Returns the new name."""
    from disco_core import datasets
    from disco_core.download import RemoteFile

    spec = datasets.get(name)
    files = tuple(RemoteFile(f.name, f"{server.url}/{f.name}",
                             md5=hashlib.md5((fixture_dir / f.name).read_bytes()).hexdigest())
                  for f in spec.files)
    fixture = dataclasses.replace(spec, name=f"{name}-fixture", files=files, cache_name=f"{spec.folder_name}-fixture")
    monkeypatch.setitem(datasets.REGISTRY, fixture.name, fixture)
    return fixture.name


class ChatServer:
    """An OpenAI-compatible chat-completions server on 127.0.0.1 that rewrites by rule (its
    in the last question becomes "the lighthouse"), prefixed "Rewritten: ".

    ``fail_every=n``: every n-th request answers 503; queries containing a string of ``always_fail``
    never succeed; ``down()`` closes the port (connection refused) and ``up()`` opens the same port
    again; ``delay``: seconds before each answer. Counts requests, and the questions answered;
    records the Authorization headers seen."""

    def __init__(self, fail_every: int = 0, always_fail=(), delay: float = 0.0):
        import json
        import time

        self.requests, self.answered, self.auth = 0, [], set()
        self.fail_every, self.always_fail = fail_every, set(always_fail)
        self._lock = threading.Lock()
        outer = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                question = body["messages"][-1]["content"].rsplit("User: ", 1)[1].split("\n")[0]
                time.sleep(delay)
                with outer._lock:
                    outer.requests += 1
                    n = outer.requests
                    outer.auth.add(self.headers.get("Authorization"))
                    fail = (outer.fail_every and n % outer.fail_every == 0) or any(
                        q in question for q in outer.always_fail)
                    if not fail:
                        outer.answered.append(question)
                if fail:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                reply = {"choices": [{"message": {"role": "assistant",
                                                  "content": f"Rewritten: {question.replace('its', 'the lighthouse')}"}}]}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._handler = Handler
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._serve()

    def _serve(self) -> None:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def up(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
        self._serve()

    def close(self) -> None:
        self.down()
