"""A local causal LM through transformers: the reference path, and the one for hub models without GGUF.

GGUF checkpoints are dequantized once and cached as safetensors. Decoding is greedy, in batches of
prompts of similar length. Two speed-ups leave every rewrite as it was:

- *prefix cache*: the few-shot prefix (system prompt and examples, the same for every turn) is run
  through the model once; each batch starts from a copy of its keys and values and computes only
  the turns' own tokens (left-padded between the prefix and the turn, positions continuing);
- *settled stop*: a sequence stops as soon as more tokens cannot change its cleaned rewrite (see
  :func:`~disco_core.rewriters.prompt.answer_is_settled`).
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Sequence

from ..io import short_hash
from ..models import LOADING
from .base import Rewriter, RewriterError
from .local import DEFAULT_CACHE, LLM_ALIASES
from .prompt import answer_is_settled, chat_messages, clean_rewrite, completion_prompt, prompt_hash

_PROBES = ([{"speaker": "user", "text": "Alpha?"}], "one?"), ([{"speaker": "user", "text": "Zulu!"}], "two!")


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class HFRewriter(Rewriter):
    """A local causal LM (alias, hub id, folder, or GGUF file) with batched greedy decoding."""

    def __init__(self, teacher: str, model: str = "smollm2-135m-instruct", gguf_file: str | None = None,
                 batch_size: int = 16, max_new_tokens: int = 40, history_turns: int = 3, answer_chars: int = 400,
                 device: str = "cpu", cache_dir: str | Path | None = None, prompt: str = "auto",
                 prefix_cache: bool = True, stop_settled: bool = True, threads: int | None = None):
        self.teacher, self.model = teacher, model
        self.gguf_file, self.batch_size, self.max_new_tokens = gguf_file, batch_size, max_new_tokens
        self.history_turns, self.answer_chars, self.device = history_turns, answer_chars, device
        self.cache_dir = Path(cache_dir) if cache_dir else DEFAULT_CACHE
        self.prefix_cache, self.stop_settled, self.threads = prefix_cache, stop_settled, threads
        alias = LLM_ALIASES.get(model)
        self.prompt_kind = alias.prompt if alias and prompt == "auto" else prompt  # "auto": the template decides
        extra = {} if self.prompt_kind == "auto" else {"prompt": self.prompt_kind}
        self.prompt_hash = prompt_hash(kind="hf", max_new_tokens=max_new_tokens, history_turns=history_turns,
                                       answer_chars=answer_chars, decoding="greedy", **extra)
        self._lm = None
        self._prefix = None  # (token ids, cache) of the few-shot prefix
        self.counts = {"prompt_tokens": 0, "generated_tokens": 0}  # computed, not cached: for benchmarks

    def _source(self) -> tuple[str, str | None]:
        if self.model in LLM_ALIASES:
            return LLM_ALIASES[self.model](self.cache_dir)
        return self.model, self.gguf_file

    def _dequantized(self, path: str, gguf: str) -> str:
        """The folder of the GGUF's weights as safetensors (written on first use)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf_path = Path(path) / gguf
        if not gguf_path.exists():
            raise RewriterError(f"{gguf_path}: GGUF file not found")
        stat = gguf_path.stat()
        key = short_hash([str(gguf_path.resolve()), stat.st_size, stat.st_mtime_ns])
        cached = self.cache_dir / f"{gguf_path.stem}-{key}"
        if not (cached / "config.json").exists():
            try:
                with LOADING:
                    tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=gguf)
                    lm = AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf)
            except Exception as exc:  # a truncated or foreign file fails deep inside the GGUF reader
                raise RewriterError(f"{gguf_path}: cannot read the GGUF model ({type(exc).__name__}: {exc})") from None
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
        return str(cached)

    def load(self):
        """(model, tokenizer); a GGUF checkpoint is dequantized once and cached as safetensors."""
        if self._lm is not None:
            return self._lm
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.threads:
            torch.set_num_threads(self.threads)
        path, gguf = self._source()
        if gguf:
            path = self._dequantized(path, gguf)
        # Also right after dequantizing: the model reloaded from safetensors generates 13% faster
        # than the one built from the GGUF (1.44 vs 1.63 s a turn, measured), for 2 s of loading.
        try:
            with LOADING:
                tokenizer = AutoTokenizer.from_pretrained(path)
                lm = AutoModelForCausalLM.from_pretrained(path)
        except OSError as exc:
            raise RewriterError(f"cannot load causal LM {self.model!r}: {exc}") from None
        tokenizer.padding_side = "left"  # decoder-only: pad on the left so generation continues the text
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        lm.eval().to(self.device)
        if self.prompt_kind == "auto":
            self.prompt_kind = "chat" if tokenizer.chat_template else "completion"
        self._lm = (lm, tokenizer)
        return self._lm

    def prepare(self) -> None:
        self.load()

    def close(self) -> None:
        self._lm = self._prefix = None

    def prompt_text(self, turn: dict) -> str:
        _, tokenizer = self.load()
        if self.prompt_kind == "chat":
            messages = chat_messages(turn["history"], turn["utterance"], self.history_turns, self.answer_chars)
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return completion_prompt(turn["history"], turn["utterance"], self.history_turns, self.answer_chars)

    def prompts(self, turns: Sequence[dict]) -> list[str]:
        return [self.prompt_text(t) for t in turns]

    def token_ids(self, turns: Sequence[dict]) -> list[list[int]]:
        """Prompt token ids; a completion prompt gets the tokenizer's special tokens (a base model's
        BOS), a chat template writes its own."""
        _, tokenizer = self.load()
        special = self.prompt_kind == "completion"
        return [tokenizer(p, add_special_tokens=special)["input_ids"] for p in self.prompts(turns)]

    def _prefix_state(self):
        """The few-shot prefix: the tokens two unrelated turns' prompts share, run once."""
        if self._prefix is None:
            import torch

            lm, _ = self.load()
            a, b = self.token_ids([{"query_id": "", "history": h, "utterance": q} for h, q in _PROBES])
            ids = a[:_common_prefix(a, b)]
            with torch.inference_mode():
                out = lm(input_ids=torch.tensor([ids], device=self.device), use_cache=True)
            self._prefix = (ids, out.past_key_values)
            self.counts["prompt_tokens"] += len(ids)
        return self._prefix

    def _batch_inputs(self, ids: list[list[int]]):
        """(input_ids, attention_mask, past_key_values or None) for one batch."""
        import torch

        _, tokenizer = self.load()
        pad = tokenizer.pad_token_id
        prefix, cache = self._prefix_state() if self.prefix_cache else ([], None)
        if prefix and any(row[:len(prefix)] != prefix or len(row) == len(prefix) for row in ids):
            prefix, cache = [], None  # a prompt that does not start with the prefix: compute it whole
        rest = [row[len(prefix):] for row in ids]
        self.counts["prompt_tokens"] += sum(map(len, rest))
        width = max(map(len, rest))
        input_ids = [prefix + [pad] * (width - len(r)) + r for r in rest]
        mask = [[1] * len(prefix) + [0] * (width - len(r)) + [1] * len(r) for r in rest]
        if cache is not None:
            cache = copy.deepcopy(cache)
            cache.batch_repeat_interleave(len(ids))
        return (torch.tensor(input_ids, device=self.device), torch.tensor(mask, device=self.device), cache)

    def _stopping(self, tokenizer, start: int):
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class Settled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                texts = tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
                return torch.tensor([answer_is_settled(t) for t in texts], device=input_ids.device)

        return StoppingCriteriaList([Settled()]) if self.stop_settled else None

    def rewrite(self, turns, on_result):
        import torch

        lm, tokenizer = self.load()
        # Longest prompts first, so similar lengths share a batch (less padding).
        order = sorted(range(len(turns)), key=lambda i: -len(turns[i]["utterance"]) - sum(len(m["text"]) for m in turns[i]["history"]))
        for start in range(0, len(order), self.batch_size):
            batch = [turns[i] for i in order[start : start + self.batch_size]]
            input_ids, mask, cache = self._batch_inputs(self.token_ids(batch))
            width = input_ids.shape[1]
            with torch.inference_mode():
                out = lm.generate(input_ids=input_ids, attention_mask=mask, past_key_values=cache,
                                  max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
                                  pad_token_id=tokenizer.pad_token_id, stopping_criteria=self._stopping(tokenizer, width))
            self.counts["generated_tokens"] += int((out[:, width:] != tokenizer.pad_token_id).sum())
            texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
            for turn, raw in zip(batch, texts):
                text, status = clean_rewrite(raw, turn["utterance"])
                on_result({"query_id": turn["query_id"], "text": text, "status": status})
