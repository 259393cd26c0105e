"""The OpenAI-compatible backend against a real HTTP server on loopback: retries, a second pass over
failed turns, a server down for part of a run, and the journal keeping every finished rewrite."""

import json
import socket
import threading
import time

import pytest
from loopback import ChatServer

from disco_core.rewriters import OpenAIRewriter, RewriteJournal, RewriterError, run_rewriter

TURNS = [
    {"query_id": f"c_{i}", "utterance": f"and its height {i}?",
     "history": [{"speaker": "user", "text": "Tell me about the Carrow Head Lighthouse."},
                 {"speaker": "agent", "text": "It stands on the cliffs north of Saltmere."}]}
    for i in range(1, 13)
]


def rewriter_for(server_url, **options):
    settings = dict(concurrency=3, timeout=5, retries=2, backoff=0.01, retry_pause=0.05)
    return OpenAIRewriter("llm", server_url, "some-model", **{**settings, **options})


def test_endpoint_retries_failures_and_keeps_the_key_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", "sk-secret-123")
    server = ChatServer(fail_every=3)
    try:
        rewriter = rewriter_for(server.url, api_key_env="TEST_LLM_KEY", retries=3)
        rows = run_rewriter(rewriter, TURNS, RewriteJournal(tmp_path / "j.jsonl"))
    finally:
        server.close()
    assert len(rows) == len(TURNS) and server.requests > len(TURNS)  # some were retried
    assert rows[0]["text"] == "and the lighthouse height 1?" and rows[0]["status"] == "cleaned"
    assert server.auth == {"Bearer sk-secret-123"}
    assert "sk-secret" not in repr(rewriter) and "sk-secret" not in json.dumps(rewriter.settings())


def test_a_failing_turn_is_counted_the_others_are_kept_and_a_rerun_asks_only_for_it(tmp_path):
    journal = RewriteJournal(tmp_path / "j.jsonl")
    server = ChatServer(fail_every=3, always_fail={"height 5?"})
    try:
        rewriter = rewriter_for(server.url, concurrency=2)
        with pytest.raises(RewriterError, match=r"127\.0\.0\.1.*: 1 of 12 turns failed after a second pass .*"
                                                r"no answer after .*c_5.*the 11 finished rewrites are kept"):
            run_rewriter(rewriter, TURNS, journal)
        assert set(journal.load()) == {t["query_id"] for t in TURNS} - {"c_5"}
        server.always_fail.clear()
        before = server.requests
        rows = run_rewriter(rewriter, TURNS, journal)
        assert len(rows) == len(TURNS) and server.requests - before <= 2  # only c_5 was asked again
    finally:
        server.close()


def test_a_server_down_for_part_of_a_run_ends_with_every_turn_in_one_run(tmp_path):
    """Down after 4 answers, back 1 s later: within the retry window (short backoff, then a second
    pass 1.5 s later), so the run finishes every turn and asks none twice."""
    server = ChatServer()
    journal = RewriteJournal(tmp_path / "j.jsonl")
    went_down = threading.Event()

    def outage():
        while len(server.answered) < 4:
            time.sleep(0.005)
        server.down()
        went_down.set()
        time.sleep(1.0)
        server.up()

    threading.Thread(target=outage, daemon=True).start()
    try:
        rewriter = rewriter_for(server.url, concurrency=2, retries=2, backoff=0.05, retry_pause=1.5)
        rows = run_rewriter(rewriter, TURNS, journal)
    finally:
        server.close()
    assert went_down.is_set()
    assert [r["query_id"] for r in rows] == [t["query_id"] for t in TURNS] and len(journal.load()) == len(TURNS)
    assert sorted(server.answered) == sorted(t["utterance"] for t in TURNS)  # each answered once


def test_a_server_down_for_the_whole_run_fails_fast_with_a_count(tmp_path):
    with socket.socket() as s:  # a free port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rewriter = rewriter_for(f"http://127.0.0.1:{port}/v1", retries=3, backoff=0.05, retry_pause=0.1)
    started = time.perf_counter()
    with pytest.raises(RewriterError, match=rf"127.0.0.1:{port}/v1: 12 of 12 turns failed after a second pass "
                                            r"0.1 s later \(no answer after 4 attempts \(ConnectError.*"
                                            r"the 0 finished rewrites are kept"):
        run_rewriter(rewriter, TURNS, RewriteJournal(tmp_path / "j.jsonl"))
    # after the first turn's full backoff, the others get one attempt each: not 12 x the backoff
    assert time.perf_counter() - started < 3.0


def test_a_request_error_is_not_retried(tmp_path):
    """A 4xx (wrong model, bad key) is the request's fault: one clear error, no second pass."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits = []

    class NotFound(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            hits.append(1)
            self.rfile.read(int(self.headers["Content-Length"]))
            body = b'{"error": "model not found"}'
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rewriter = rewriter_for(f"http://127.0.0.1:{server.server_address[1]}/v1", retry_pause=5)
        started = time.perf_counter()
        with pytest.raises(RewriterError, match=r"HTTP 404 for model 'some-model'.*model not found"):
            run_rewriter(rewriter, TURNS[:3], RewriteJournal(tmp_path / "j.jsonl"))
        assert len(hits) == 3 and time.perf_counter() - started < 2
    finally:
        server.shutdown()
        server.server_close()
