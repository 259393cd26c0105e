"""``backend: llamacpp``: GGUF models in llama.cpp, in this process (the extra ``disco[engine]``).

The prompt is the one every backend uses: chat messages rendered with the model's own chat
template (the one in the GGUF, rendered as transformers renders it), or the plain completion prompt
for base models such as Gemma 3 270M. The shared few-shot prefix is decoded once per run; turns are
decoded ``parallel`` at a time (see :mod:`.engine`). Greedy decoding; a turn stops at the end of
generation, at ``max_new_tokens``, or once its cleaned rewrite cannot change any more.

``weights``: ``bf16`` (default) converts the GGUF's tensors once to bfloat16 (cached next to the
transformers path's safetensors): on these CPUs (AVX512-BF16) as fast as f32 for SmolLM2 and 1.24x
for Gemma, with a quarter less peak memory (830 against 1085 MiB for SmolLM2), and 40/40 SmolLM2
and 38/40 Gemma rewrites the same as f32's; ``f32`` holds the very numbers the transformers path
computes with, and is still faster than SmolLM2's Q4_1 kernels; ``f16``; ``gguf`` uses the file as
shipped (least memory; Gemma's Q4_K_M is as fast as f32). The engine is the default teachers'
backend: ``make install`` builds it (``disco[engine]``).
"""

from __future__ import annotations

from pathlib import Path

from ..io import short_hash
from .base import Rewriter
from .hf import _PROBES, _common_prefix
from .local import DEFAULT_CACHE, LLM_ALIASES, check_gguf, gguf_path
from .prompt import chat_messages, clean_rewrite, completion_prompt, prompt_hash


def render_chat(template: str, messages: list[dict], bos_token: str, eos_token: str) -> str:
    """A chat template rendered the way transformers' ``apply_chat_template`` does."""
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                            bos_token=bos_token, eos_token=eos_token)


class LlamaCppRewriter(Rewriter):
    """A GGUF model (alias, ``.gguf`` path, or folder + ``gguf_file``) decoded by llama.cpp."""

    def __init__(self, teacher: str, model: str = "smollm2-135m-instruct", gguf_file: str | None = None,
                 max_new_tokens: int = 40, history_turns: int = 3, answer_chars: int = 400, prompt: str = "auto",
                 parallel: int = 8, threads: int | None = None, cache_dir: str | Path | None = None,
                 weights: str = "bf16"):
        self.teacher, self.model, self.gguf_file, self.weights = teacher, model, gguf_file, weights
        self.max_new_tokens, self.history_turns, self.answer_chars = max_new_tokens, history_turns, answer_chars
        self.parallel, self.threads = parallel, threads
        self.cache_dir = Path(cache_dir) if cache_dir else DEFAULT_CACHE
        alias = LLM_ALIASES.get(model)
        self.prompt_kind = alias.prompt if alias and prompt == "auto" else prompt
        extra = {} if self.prompt_kind == "auto" else {"prompt": self.prompt_kind}
        self.prompt_hash = prompt_hash(kind="llamacpp", max_new_tokens=max_new_tokens, history_turns=history_turns,
                                       answer_chars=answer_chars, decoding="greedy", weights=weights, **extra)
        self._engine = None

    def __repr__(self) -> str:
        return f"LlamaCppRewriter(teacher={self.teacher!r}, model={self.model!r}, parallel={self.parallel})"

    def load(self):
        if self._engine is None:
            from .engine import Engine, convert_weights

            path = gguf_path(self.model, self.gguf_file, self.cache_dir)
            check_gguf(path)
            if self.weights != "gguf":
                stat = path.stat()
                key = short_hash([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
                path = convert_weights(path, self.cache_dir / f"{path.stem}-{key}-{self.weights}.gguf", self.weights)
            self._engine = Engine(path, self.threads)
            if self.prompt_kind == "auto":
                self.prompt_kind = "chat" if self._engine.chat_template else "completion"
        return self._engine

    def prepare(self) -> None:
        self.load()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def prompt_text(self, turn: dict) -> str:
        engine = self.load()
        if self.prompt_kind == "chat":
            messages = chat_messages(turn["history"], turn["utterance"], self.history_turns, self.answer_chars)
            ll = engine.ll
            bos = engine.token_text(ll.llama_vocab_bos(engine.vocab))
            eos = engine.token_text(ll.llama_vocab_eos(engine.vocab))
            return render_chat(engine.chat_template or "", messages, bos, eos)
        return completion_prompt(turn["history"], turn["utterance"], self.history_turns, self.answer_chars)

    def token_ids(self, turns) -> list[list[int]]:
        engine = self.load()
        return [engine.tokenize(self.prompt_text(t), self.prompt_kind == "completion") for t in turns]

    def rewrite(self, turns, on_result):
        engine = self.load()
        a, b = self.token_ids([{"query_id": "", "history": h, "utterance": q} for h, q in _PROBES])
        prefix = a[:_common_prefix(a, b)]

        def done(i: int, raw: str) -> None:
            text, status = clean_rewrite(raw, turns[i]["utterance"])
            on_result({"query_id": turns[i]["query_id"], "text": text, "status": status})

        # a conversation's turns go to one slot, in order: each keeps the history it shares with
        # the turn before it in the KV cache
        chains: dict[str, list[int]] = {}
        for i, turn in enumerate(turns):
            chains.setdefault(turn.get("conversation_id") or turn["query_id"], []).append(i)
        engine.generate(self.token_ids(turns), prefix, self.max_new_tokens, self.parallel, done, list(chains.values()))
