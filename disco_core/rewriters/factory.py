"""A rewriter from a ``TeacherConfig``: which backend, with which settings."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .base import Rewriter, RewriterError
from .endpoint import OpenAIRewriter
from .hf import HFRewriter
from .read import DatasetRewriter, FileRewriter, QuestionRewriter

DEFAULT_LLM = "smollm2-135m-instruct"


def make_rewriter(teacher, dataset_teacher: str, dataset_rewrites: Iterable[dict] = (),
                  cache_dir: str | Path | None = None, device: str = "cpu") -> Rewriter:
    """A rewriter from a ``TeacherConfig`` (``dataset_teacher``: the dataset's own rewrite teacher)."""
    rewriter = _backend(teacher, dataset_teacher, dataset_rewrites, cache_dir, device)
    rewriter.first_turns = teacher.first_turns
    return rewriter


def _backend(teacher, dataset_teacher: str, dataset_rewrites: Iterable[dict], cache_dir: str | Path | None,
             device: str) -> Rewriter:
    name = teacher_name(teacher, dataset_teacher)
    if teacher.backend == "dataset":
        return DatasetRewriter(name, dataset_rewrites)
    if teacher.backend == "question":
        return QuestionRewriter(name)
    if teacher.backend == "file":
        if not teacher.path:
            raise RewriterError(f"teacher {name!r}: backend 'file' needs a path")
        return FileRewriter(name, teacher.path, model=teacher.model)
    if teacher.backend == "hf":
        return HFRewriter(name, teacher.model or DEFAULT_LLM, teacher.gguf_file, teacher.batch_size,
                          teacher.max_new_tokens, teacher.history_turns, teacher.answer_chars, device, cache_dir,
                          prompt=teacher.prompt, prefix_cache=teacher.prefix_cache, threads=teacher.threads)
    if teacher.backend == "llamacpp":
        from .llamacpp import LlamaCppRewriter  # the optional engine: imported only when asked for

        return LlamaCppRewriter(name, teacher.model or DEFAULT_LLM, teacher.gguf_file,
                                max_new_tokens=teacher.max_new_tokens, history_turns=teacher.history_turns,
                                answer_chars=teacher.answer_chars, prompt=teacher.prompt,
                                parallel=teacher.parallel, threads=teacher.threads, cache_dir=cache_dir,
                                weights=teacher.weights)
    # base URL and model from the config, else from the environment (as OpenAI's own clients do)
    base_url = teacher.base_url or os.environ.get("OPENAI_BASE_URL")
    model = teacher.model or os.environ.get("OPENAI_MODEL")
    if not base_url or not model:
        raise RewriterError(f"teacher {name!r}: backend 'openai' needs base_url and model "
                            "(config, or OPENAI_BASE_URL / OPENAI_MODEL in the environment)")
    return OpenAIRewriter(name, base_url, model, api_key_env=teacher.api_key_env,
                          concurrency=teacher.concurrency, timeout=teacher.timeout, retries=teacher.retries,
                          backoff=teacher.backoff, max_tokens=teacher.max_new_tokens,
                          history_turns=teacher.history_turns, answer_chars=teacher.answer_chars,
                          retry_pause=teacher.retry_pause)


def teacher_name(teacher, dataset_teacher: str) -> str:
    if teacher.name:
        return teacher.name
    if teacher.backend == "dataset":
        return dataset_teacher
    raise RewriterError(f"a teacher with backend {teacher.backend!r} needs a name")
