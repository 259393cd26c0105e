"""Rewriters, the teachers' first half: one interface, several backends, each named as a teacher.

- :class:`DatasetRewriter`: rewrites already in the tables (``human``, ``mtrag-mixtral``);
- :class:`HFRewriter`: a local causal LM through transformers (GGUF files dequantized once and
  cached as safetensors), batched greedy decoding from a cached few-shot prefix: the reference path;
- :class:`LlamaCppRewriter` (``backend: llamacpp``, extra ``disco[engine]``, the default): GGUF models
  in llama.cpp, in process, several sequences decoded together over one shared few-shot prefix;
- :class:`OpenAIRewriter`: any OpenAI-compatible chat endpoint (vLLM, llama.cpp's server, a hosted
  API) with bounded concurrency, timeouts, retries with backoff and a second pass over failed turns;
- :class:`FileRewriter`: a TSV/JSONL of ``query_id`` and text made elsewhere;
- :class:`QuestionRewriter` (``backend: question``): no rewrite, the question as written.

Every generating backend runs under :func:`run_rewriter`, which journals each finished rewrite
(:class:`RewriteJournal`), so a failure or a kill loses nothing and a rerun resumes with the turns
still missing. Outputs are cleaned (first line, no quotes or "Rewrite:" prefix) and flagged in
``status``; an empty output is never kept: the user's utterance stands in, flagged ``empty``.

Modules: ``prompt`` (the prompt and cleaning), ``base`` (interface), ``read`` (dataset, file),
``local`` (model aliases and files), ``hf``, ``llamacpp`` with ``engine``, ``endpoint`` (backends),
``journal``, ``factory`` (from a ``TeacherConfig``).
"""

from __future__ import annotations

import sys

from .base import FIRST_TURN, Rewriter, RewriterError, Row
from .endpoint import OpenAIRewriter
from .factory import make_rewriter, teacher_name
from .hf import HFRewriter
from .journal import RewriteJournal, run_rewriter
from .local import LLM_ALIASES, LocalLLM
from .prompt import (FEW_SHOT, PROMPT_VERSION, SYSTEM_PROMPT, answer_is_settled, chat_messages, clean_rewrite,
                     completion_prompt, prompt_hash, render_conversation)
from .read import DatasetRewriter, FileRewriter, QuestionRewriter


def __getattr__(name: str):
    if name == "LlamaCppRewriter":  # the optional engine's module, loaded only when asked for
        from .llamacpp import LlamaCppRewriter

        return LlamaCppRewriter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def source_modules() -> list:
    """Every module of this package (for code hashes: ``inspect.getsource`` of a package reads
    only its ``__init__``)."""
    from . import base, endpoint, engine, factory, hf, journal, llamacpp, local, prompt, read

    return [sys.modules[__name__], base, endpoint, engine, factory, hf, journal, llamacpp, local, prompt, read]


__all__ = ["FIRST_TURN", "Rewriter", "RewriterError", "Row", "DatasetRewriter", "FileRewriter", "QuestionRewriter", "HFRewriter",
           "OpenAIRewriter", "LlamaCppRewriter", "RewriteJournal", "run_rewriter", "make_rewriter", "teacher_name",
           "clean_rewrite", "chat_messages", "completion_prompt", "render_conversation", "prompt_hash",
           "answer_is_settled", "LLM_ALIASES", "LocalLLM", "SYSTEM_PROMPT", "FEW_SHOT", "PROMPT_VERSION",
           "source_modules"]
