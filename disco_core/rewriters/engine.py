"""A small greedy decoder on llama.cpp's C API (through llama-cpp-python's ctypes bindings).

Why not ``llama_cpp.Llama``: it holds one sequence, so turns would be decoded one after another.
Here ``parallel`` sequences share one context: the few-shot prefix is decoded once into sequence 0
and copied to each slot (in llama.cpp's unified KV cache a copy tags the same cells, it computes
nothing and stores nothing twice); each step then decodes one batch holding the next token of every
busy slot plus the prompt tokens of slots starting a new turn (continuous batching: a finished
turn's slot takes the next turn at once).
"""

from __future__ import annotations

import collections
import ctypes
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .base import RewriterError
from .prompt import answer_is_settled

_LOG: collections.deque[str] = collections.deque(maxlen=20)


def _import_llama_cpp():
    """The bindings, with llama.cpp's log kept for error messages instead of printed."""
    # llama.cpp's OpenMP threads must not spin without bound while they wait: on a shared 2-core
    # machine unbounded spinning made decoding 10-100x slower (measured). Sleeping at once costs a
    # wake-up at each of the ~450 barriers of a decoding step: a short bounded spin took a step of
    # 8 tokens from 57 to 25 ms on idle cores and cost 13% with both cores busy elsewhere (measured).
    # libgomp reads these when it loads; an explicit spin count overrides PASSIVE.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    try:
        import llama_cpp
    except ImportError as exc:
        raise RewriterError("backend 'llamacpp' needs llama-cpp-python: make install-engine (it builds llama.cpp "
                            "from source: cmake and a C++ compiler), or run the teachers through transformers: "
                            f"-c data/configs/hf-teachers.yaml ({exc})") from None
    except (OSError, RuntimeError) as exc:  # the package is there, its shared library is not loadable
        raise RewriterError(f"llama.cpp could not start: its library does not load ({exc})") from None
    if not getattr(_import_llama_cpp, "callback", None):
        kept = [False]

        @llama_cpp.llama_log_callback
        def keep(level, text, user_data):
            # ggml levels: 3 warning, 4 error (the reason a load fails), 5 continues the last line
            if level in (3, 4) or (level == 5 and kept[0]):
                _LOG.append(text.decode("utf-8", "replace").strip())
            if level != 5:
                kept[0] = level in (3, 4)

        _import_llama_cpp.callback = keep  # a reference, so ctypes does not free the callback
        llama_cpp.llama_log_set(keep, ctypes.c_void_p(0))
    return llama_cpp


def _log_tail() -> str:
    lines = [line for line in _LOG if line]
    return "; ".join(lines[-3:]) or "no message from llama.cpp"


def convert_weights(source: Path, target: Path, weights: str) -> Path:
    """``source`` with its tensors stored as ``weights`` (``f32``, ``bf16``, ``f16``), written once to ``target``.

    Why: llama.cpp's kernels for some quantized types are slow on CPU (SmolLM2's Q4_1 decoded at half
    the speed of the same weights in f32, measured); ``f32`` holds exactly the numbers the
    transformers path computes with (it dequantizes the GGUF to float32 too); ``bf16`` keeps f32's
    range and halves the weights (on AVX512-BF16 as fast as f32 for SmolLM2, 1.24x for Gemma, and the
    same 40 of 40 SmolLM2 rewrites)."""
    ll = _import_llama_cpp()
    if target.is_file():
        return target
    params = ll.llama_model_quantize_default_params()
    params.ftype = {"f32": ll.LLAMA_FTYPE_ALL_F32, "bf16": ll.LLAMA_FTYPE_MOSTLY_BF16,
                    "f16": ll.LLAMA_FTYPE_MOSTLY_F16}[weights]
    params.allow_requantize, params.nthread = True, len(os.sched_getaffinity(0))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    _LOG.clear()
    try:
        if ll.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params)) != 0:
            raise RewriterError(f"{source}: llama.cpp cannot convert this GGUF model to {weights} ({_log_tail()})")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


class Engine:
    """One GGUF model in llama.cpp: tokenize, and decode many prompts greedily in parallel."""

    def __init__(self, path: Path, threads: int | None = None):
        self.ll = ll = _import_llama_cpp()
        self.path = path
        self.threads = threads or len(os.sched_getaffinity(0))
        ll.llama_backend_init()
        params = ll.llama_model_default_params()
        _LOG.clear()
        self.model = ll.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise RewriterError(f"{path}: llama.cpp cannot load this GGUF model ({_log_tail()})")
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = ll.llama_model_n_ctx_train(self.model)
        template = ll.llama_model_chat_template(self.model, None)
        self.chat_template = template.decode("utf-8") if template else None
        self.counts = {"prompt_tokens": 0, "generated_tokens": 0}  # computed, not cached: for benchmarks

    def close(self) -> None:
        if getattr(self, "model", None):
            self.ll.llama_model_free(self.model)
            self.model = None

    def token_text(self, token: int) -> str:
        return self.piece(token, special=True).decode("utf-8", "replace")

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        data = text.encode("utf-8")
        size = len(data) + 8
        buf = (self.ll.llama_token * size)()
        n = self.ll.llama_tokenize(self.vocab, data, len(data), buf, size, add_special, True)
        if n < 0:
            raise RewriterError(f"llama.cpp could not tokenize a prompt of {len(data)} bytes")
        return list(buf[:n])

    def piece(self, token: int, special: bool = False) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self.ll.llama_token_to_piece(self.vocab, token, buf, 64, 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self.ll.llama_token_to_piece(self.vocab, token, buf, -n, 0, special)
        return buf.raw[:n]

    def _context(self, n_ctx: int, n_batch: int, n_seq: int):
        ll = self.ll
        params = ll.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = n_ctx, n_batch, n_batch
        params.n_seq_max, params.kv_unified, params.swa_full = n_seq, True, True
        params.n_threads = params.n_threads_batch = self.threads
        params.no_perf = True
        _LOG.clear()
        ctx = ll.llama_init_from_model(self.model, params)
        if not ctx:
            raise RewriterError(f"llama.cpp could not start: no context of {n_ctx} tokens for {n_seq} sequences "
                                f"({_log_tail()})")
        return ctx

    def generate(self, prompts: Sequence[list[int]], prefix: list[int], max_new_tokens: int, parallel: int,
                 on_done: Callable[[int, str], None], chains: Sequence[Sequence[int]] | None = None,
                 n_batch: int = 512) -> None:
        """Greedy continuations of ``prompts``; ``on_done(i, text)`` as each one finishes (end of
        generation, ``max_new_tokens``, or the rewrite settled).

        ``chains``: prompt indices that one slot takes in order (a conversation's turns): a turn
        keeps what it shares with the slot's previous turn in the KV cache, beyond the few-shot
        prefix (its history; 27% of the embedded dataset's turn tokens, measured)."""
        ll = self.ll
        starts = [len(prefix) if p[:len(prefix)] == prefix and len(p) > len(prefix) else 0 for p in prompts]
        longest = max(len(p) - s for p, s in zip(prompts, starts))
        per_seq = len(prefix) + longest + max_new_tokens
        if per_seq > self.n_ctx_train:
            raise RewriterError(f"{self.path.name}: a prompt of {len(prefix) + longest} tokens plus {max_new_tokens} "
                                f"new ones exceeds the model's context of {self.n_ctx_train} tokens")
        chains = [list(c) for c in chains] if chains is not None else [[i] for i in range(len(prompts))]
        parallel = max(1, min(parallel, len(chains)))
        n_ctx = -(-(len(prefix) + parallel * (longest + max_new_tokens) + n_batch) // 256) * 256
        ctx = self._context(n_ctx, n_batch, parallel + 1)
        batch = ll.llama_batch_init(n_batch, 0, 1)
        try:
            self._run(ctx, batch, prompts, starts, prefix, max_new_tokens, parallel, on_done, chains, n_batch)
        finally:
            ll.llama_batch_free(batch)
            ll.llama_free(ctx)

    def _start(self, mem, seq: int, prompt: list[int], start: int, cached: list[int]) -> dict:
        """A slot's state for a new prompt: keep the longest cached run it shares (at least the
        few-shot prefix, copied from sequence 0) and compute the rest."""
        ll = self.ll
        keep = 0
        for a, b in zip(cached, prompt[:-1]):  # the last prompt token is computed anyway (for its logits)
            if a != b:
                break
            keep += 1
        if keep <= start or not ll.llama_memory_seq_rm(mem, seq, keep, -1):
            keep = start
            ll.llama_memory_seq_rm(mem, seq, -1, -1)
            if start:
                ll.llama_memory_seq_cp(mem, 0, seq, 0, start)
        self.counts["prompt_tokens"] += len(prompt) - keep
        return {"pending": list(prompt[keep:]), "pos": keep, "kv": list(prompt[:keep]), "out": b"", "n": 0}

    def _run(self, ctx, batch, prompts, starts, prefix, max_new_tokens, parallel, on_done, chains, n_batch):
        ll = self.ll
        mem = ll.llama_get_memory(ctx)
        self.counts["prompt_tokens"] += len(prefix)
        if prefix:  # sequence 0: the shared few-shot prefix, decoded once
            for at in range(0, len(prefix), n_batch):
                self._decode(ctx, batch, [(0, at + j, t, False) for j, t in enumerate(prefix[at:at + n_batch])])
        waiting = collections.deque(collections.deque(c) for c in chains if c)
        lanes = {seq: collections.deque() for seq in range(1, parallel + 1)}  # each slot's chain
        kv = {seq: [] for seq in lanes}  # the tokens in each slot's KV cache
        slots: dict[int, dict] = {}  # busy slots: seq id -> {"i", "pending", "pos", "kv", "out", "n"}
        while True:
            for seq in lanes:  # an idle slot goes on with its chain, or takes the next chain
                if seq in slots or not (lanes[seq] or waiting):
                    continue
                if not lanes[seq]:
                    lanes[seq] = waiting.popleft()
                i = lanes[seq].popleft()
                slots[seq] = {"i": i, **self._start(mem, seq, prompts[i], starts[i], kv[seq])}
            if not slots:
                return
            entries, wants = [], []
            # decoding slots first (one token each), then the prompts of slots starting a turn
            for seq, slot in sorted(slots.items(), key=lambda item: len(item[1]["pending"])):
                room = n_batch - len(entries)
                if room <= 0:
                    break
                take = slot["pending"][:room]
                last = len(take) == len(slot["pending"])
                entries += [(seq, slot["pos"] + j, t, last and j == len(take) - 1) for j, t in enumerate(take)]
                slot["pending"], slot["pos"] = slot["pending"][len(take):], slot["pos"] + len(take)
                slot["kv"] += take
                if last:
                    wants.append((seq, len(entries) - 1))
            self._decode(ctx, batch, entries)
            for seq, index in wants:
                slot = slots[seq]
                logits = np.ctypeslib.as_array(ll.llama_get_logits_ith(ctx, index), shape=(self.n_vocab,))
                token = int(logits.argmax())
                done = ll.llama_vocab_is_eog(self.vocab, token)
                if not done:
                    slot["out"] += self.piece(token)
                    slot["n"] += 1
                    self.counts["generated_tokens"] += 1
                    slot["pending"] = [token]
                    done = slot["n"] >= max_new_tokens or answer_is_settled(slot["out"].decode("utf-8", "replace"))
                if done:
                    on_done(slot["i"], slot["out"].decode("utf-8", "replace"))
                    kv[seq] = slots.pop(seq)["kv"]

    def _decode(self, ctx, batch, entries) -> None:
        for k, (seq, pos, token, logits) in enumerate(entries):
            batch.token[k], batch.pos[k], batch.n_seq_id[k] = token, pos, 1
            batch.seq_id[k][0], batch.logits[k] = seq, logits
        batch.n_tokens = len(entries)
        status = self.ll.llama_decode(ctx, batch)
        if status != 0:
            raise RewriterError(f"llama.cpp decode failed (status {status}: "
                                f"{'no room in the KV cache' if status == 1 else _log_tail()})")
