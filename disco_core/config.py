"""The run configuration: one typed object, loaded from YAML with ``section.key=value`` overrides.

Unknown keys and wrong types are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError

DEFAULT_METRICS = ["mrr@10", "ndcg@3", "recall@10", "recall@100"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatasetConfig(_Section):
    name: str = Field("embedded", description="registry name (see `disco datasets`)")
    path: str | None = Field(None, description="source folder; overrides the registry's default location")
    domains: list[str] | None = Field(None, description="keep only these domains (MTRAG: clapnq, cloud, fiqa, govt)")
    cache_dir: str | None = Field(None, description="downloaded datasets (default $DISCO_DATA_DIR or .cache/datasets)")
    mirror: str | None = Field(None, description="read official files from this folder or URL prefix instead")
    collection: bool = Field(False, description="also stream the dataset's full document collection into the "
                             "corpus (CAsT 2019/2020: ir_datasets trec-cast/v1, MS MARCO + TREC CAR, 38.6M passages)")


class EncoderConfig(_Section):
    model: str = Field("splade-tiny", description="alias, Hugging Face id or local folder of a masked LM")
    doc_max_length: int = Field(256, gt=2, description="tokens kept per passage")
    query_max_length: int = Field(256, gt=2, description="tokens kept per query / formatted conversation")
    # Performance-only settings: they change speed and memory, not the vectors, so they are not
    # part of any cache key.
    batch_size: int = Field(32, gt=0, description="texts per forward pass (upper bound)")
    token_budget: int = Field(4096, gt=0, description="non-padding tokens per forward pass: bounds memory")
    device: str = Field("cpu", description="torch device")
    threads: int | None = Field(None, description="torch intra-op threads (default: torch's choice)")


class ConversationConfig(_Section):
    answers: Literal["last", "all", "none"] = Field(
        "last", description="agent answers in the student input: the previous one (DiSCo), all, or none"
    )


class IndexConfig(_Section):
    engine: Literal["inverted"] = "inverted"
    # Performance-only.
    query_batch_size: int = Field(4096, gt=0, description="queries scored per batch (bounds memory)")
    threads: int | None = Field(None, description="numba threads for retrieval (default: all cores)")


class RetrievalConfig(_Section):
    k: int = Field(1000, gt=0, le=10000, description="documents retrieved per query")


class EvaluationConfig(_Section):
    variants: list[str] = Field(
        ["last_turn", "conversation", "rewrite"],
        description="query variants: last_turn, conversation, rewrite (dataset default teacher) or rewrite:<teacher>",
    )
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    stat_test: Literal["student", "fisher", "tukey"] = Field("student", description="paired test (ranx)")
    max_p: float = Field(0.05, gt=0, lt=1)


class TeacherConfig(_Section):
    """One teacher: a named rewriter backend (see disco_core/rewriters/ and docs/teachers.md).

    Fields marked ``# perf-only`` change speed, memory or how failures are retried, never the
    rewrites: they belong in no cache key."""

    name: str | None = Field(None, description="teacher name (default: the dataset's teacher for backend=dataset)")
    backend: Literal["dataset", "hf", "llamacpp", "openai", "file"] = "dataset"
    model: str | None = Field(None, description="hf/llamacpp: alias (smollm2-135m-instruct, gemma3-270m), hub id, "
                              "folder or .gguf file; openai: the served model name")
    gguf_file: str | None = Field(None, description="hf/llamacpp: GGUF file inside the model folder/repo")
    prompt: Literal["auto", "chat", "completion"] = Field(
        "auto", description="hf/llamacpp: chat messages through the model's chat template, or one plain-text "
        "completion prompt (base models); auto: the alias's choice, else chat when the model has a template")
    weights: Literal["f32", "f16", "gguf"] = Field(
        "f32", description="llamacpp: the GGUF's tensors converted once to float32 (the numbers the hf path "
        "computes with; fastest here), to float16, or used as shipped (gguf: least memory)")
    path: str | None = Field(None, description="file: TSV/JSONL of query id and rewrite")
    base_url: str | None = Field(None, description="openai: e.g. http://localhost:8000/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai: environment variable holding the key")
    concurrency: int = Field(4, gt=0, description="openai: requests in flight")  # perf-only
    timeout: float = Field(60.0, gt=0, description="openai: seconds per request")  # perf-only
    retries: int = Field(4, ge=0, description="openai: retries of a request, exponential backoff")  # perf-only
    backoff: float = Field(1.0, ge=0, description="openai: first backoff in seconds, doubled per retry")  # perf-only
    retry_pause: float = Field(30.0, ge=0, description="openai: seconds before the second pass over turns "
                               "left unanswered (a restarting server)")  # perf-only
    batch_size: int = Field(16, gt=0, description="hf: prompts per generate call")  # perf-only
    prefix_cache: bool = Field(True, description="hf: compute the few-shot prefix once and reuse its "
                               "keys/values (same greedy rewrites, measured)")  # perf-only
    parallel: int = Field(8, gt=0, description="llamacpp: sequences decoded together (one batch per "
                          "step, the few-shot prefix shared in the KV cache)")  # perf-only
    threads: int | None = Field(None, gt=0, description="hf/llamacpp: CPU threads (default: the "
                                "library's choice)")  # perf-only
    max_new_tokens: int = Field(40, gt=0, description="a rewrite is one question: ~10-30 tokens")
    history_turns: int = Field(3, gt=0, description="earlier turns shown to the LLM")
    answer_chars: int = Field(400, gt=0, description="characters kept of each earlier answer")


def _default_teachers() -> list[TeacherConfig]:
    return [TeacherConfig(backend="dataset"),
            TeacherConfig(name="smollm2", backend="hf", model="smollm2-135m-instruct")]


class DistillConfig(_Section):
    fusion: Literal["mean", "max", "per-teacher"] = Field("mean", description="how teachers' scores combine")
    teacher_k: int = Field(1000, gt=0, description="documents scored per teacher and query")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="conversations held out for the report")
    split_seed: int = 13


class TrainConfig(_Section):
    seed: int = 42
    learning_rate: float = Field(2e-4, gt=0, description="2e-4 suits splade-tiny; DiSCo used 2e-5 for SPLADE++")
    batch_size: int = Field(16, gt=1, description="queries per step (in-batch negatives need 2+)")
    epochs: int = Field(3, gt=0)
    max_length: int = Field(256, gt=2, description="tokens of the student's conversation input")
    grad_accumulation: int = Field(1, gt=0)
    negatives: int = Field(16, gt=0)
    negative_ranks: tuple[int, int] = Field((11, 960), description="teacher ranks negatives are sampled from")
    kl_weight: float = 0.99
    ce_weight: float = 0.01
    temperature: float = Field(1.0, gt=0)
    flops_weight: float = Field(0.0, ge=0, description="FLOPS regularizer on query vectors")
    l1_weight: float = Field(0.0, ge=0, description="L1 regularizer on query vectors")
    reg_warmup_steps: int = Field(0, ge=0, description="quadratic warm-up of the regularizers")
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up")
    log_every: int = Field(10, gt=0)


class Config(_Section):
    work_dir: str = Field("work", description="where every stage writes (relative to the current directory)")
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    conversation: ConversationConfig = Field(default_factory=ConversationConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    teachers: list[TeacherConfig] = Field(default_factory=_default_teachers)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @property
    def work_path(self) -> Path:
        return Path(self.work_dir)


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``a.b.c=value`` override; the value is parsed as YAML (``k=100``, ``x=[a,b]``)."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} is not of the form section.key=value")
    dotted, raw = assignment.split("=", 1)
    keys = dotted.strip().split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {assignment!r}: {key!r} is not a section")
    node[keys[-1]] = yaml.safe_load(raw) if raw.strip() else None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    for assignment in overrides:
        apply_override(data, assignment)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        where = f"{path}: " if path else ""
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{where}invalid configuration: {problems}") from None
