"""Chat completions from any OpenAI-compatible server (vLLM, llama.cpp's server, a hosted API).

Each turn is one request, ``concurrency`` in flight, retried with exponential backoff on
connection errors, timeouts, 429 and 5xx. Once a turn has used up its retries, the server is taken
to be down: the next turns get one attempt each (a fast failure rather than every turn's full
backoff) until one is answered again. After ``retry_pause`` seconds the unanswered turns get one
more pass with the same retries. What is still missing then is named in one error (how many turns,
and that the finished ones are kept: a rerun asks only for those). A 4xx other than 429 is the
request's fault (wrong model name, bad key): no retry.

The retry window, the longest a server may be down with the run still finishing, is about
``2 * backoff * (2**retries - 1) + retry_pause`` seconds (plus the timeouts of the attempts).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from .base import Rewriter, RewriterError
from .prompt import chat_messages, clean_rewrite, prompt_hash


class _Unanswered(Exception):
    """A turn with no answer after its retries (the server may come back)."""


class OpenAIRewriter(Rewriter):
    """Chat completions from any OpenAI-compatible server. The key is read from ``api_key`` or the
    environment variable ``api_key_env`` and is never logged or written anywhere."""

    def __init__(self, teacher: str, base_url: str, model: str, api_key: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", concurrency: int = 4, timeout: float = 60.0,
                 retries: int = 4, backoff: float = 1.0, max_tokens: int = 64, history_turns: int = 3,
                 answer_chars: int = 400, retry_pause: float = 30.0):
        self.teacher, self.model = teacher, model
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key or os.environ.get(api_key_env)
        self.concurrency, self.timeout, self.retries, self.backoff = concurrency, timeout, retries, backoff
        self.retry_pause = retry_pause
        self.max_tokens, self.history_turns, self.answer_chars = max_tokens, history_turns, answer_chars
        self.prompt_hash = prompt_hash(kind="chat", max_tokens=max_tokens, history_turns=history_turns,
                                       answer_chars=answer_chars, decoding="temperature=0")

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIRewriter(teacher={self.teacher!r}, base_url={self.base_url!r}, model={self.model!r})"

    def request_body(self, turn: dict) -> dict:
        return {"model": self.model, "temperature": 0, "max_tokens": self.max_tokens,
                "messages": chat_messages(turn["history"], turn["utterance"], self.history_turns, self.answer_chars)}

    def _complete(self, client, turn: dict, down: threading.Event) -> str:
        import httpx

        body = self.request_body(turn)
        last_error = "no attempt"
        attempts = 1 if down.is_set() else self.retries + 1
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = client.post(f"{self.base_url}/chat/completions", json=body)
            except httpx.HTTPError as exc:  # connection refused, timeout, reset
                last_error = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                last_error = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                raise RewriterError(f"{self.base_url}: HTTP {response.status_code} for model {self.model!r}: "
                                    f"{response.text[:200]}")
            try:
                content = response.json()["choices"][0]["message"]["content"] or ""
            except (ValueError, KeyError, IndexError, TypeError):
                last_error = "malformed response"
                continue
            down.clear()
            return content
        down.set()
        raise _Unanswered(f"no answer after {attempts} attempt{'s' * (attempts > 1)} ({last_error})")

    def _pass(self, client, turns, on_result) -> tuple[list[dict], str | None]:
        """One pass over ``turns``: hands over every answer; returns the unanswered turns and the
        first error seen. A request error (4xx) is raised once the pass has finished."""
        down, unanswered, reason, fatal = threading.Event(), [], None, None
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(self._complete, client, t, down): t for t in turns}
            for future in as_completed(futures):
                turn = futures[future]
                try:
                    raw = future.result()
                except _Unanswered as exc:
                    unanswered.append(turn)
                    reason = reason or f"{exc} for query {turn['query_id']!r}"
                    continue
                except RewriterError as exc:
                    fatal = fatal or exc
                    continue  # keep collecting the others: every finished rewrite is kept
                text, status = clean_rewrite(raw, turn["utterance"])
                on_result({"query_id": turn["query_id"], "text": text, "status": status})
        if fatal is not None:
            raise fatal
        return unanswered, reason

    def rewrite(self, turns, on_result):
        import httpx

        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        lock = threading.Lock()

        def hand_over(row):
            with lock:
                on_result(row)

        with httpx.Client(headers=headers, timeout=self.timeout) as client:
            unanswered, reason = self._pass(client, turns, hand_over)
            if not unanswered:
                return
            time.sleep(self.retry_pause)  # the server may be restarting: one more pass, bounded
            order = {t["query_id"]: i for i, t in enumerate(turns)}
            unanswered.sort(key=lambda t: order[t["query_id"]])
            still, second_reason = self._pass(client, unanswered, hand_over)
        if still:
            finished = len(turns) - len(still)
            raise RewriterError(
                f"{self.base_url}: {len(still)} of {len(turns)} turns failed after a second pass "
                f"{self.retry_pause:g} s later ({second_reason or reason}); the {finished} finished rewrites "
                "are kept, and the next run asks only for the missing ones")
