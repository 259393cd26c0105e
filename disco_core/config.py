"""The run configuration: one typed object, loaded from YAML with ``section.key=value`` overrides.

Unknown keys and wrong types are errors (a typo must not silently fall back to a default), and
values are not coerced (``train.epochs=true`` is refused, not read as 1). The sections of the
pipeline live here; the distillation half (teachers, fusion, training) in
:mod:`disco_core.config_distill`; the field marks (:func:`perf`, :func:`model_ref`) and the strict
base section in :mod:`disco_core.config_fields`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .config_distill import DistillConfig, TeacherConfig, TrainConfig, TrainData, default_teachers
from .config_fields import SAFE_NAME, Section, check_name, is_model, is_perf, model_ref, perf
from .splits import parse_split

__all__ = ["Config", "DatasetConfig", "EncoderConfig", "ConversationConfig", "IndexConfig", "RetrievalConfig",
           "SplitConfig", "FusionConfig", "EvaluationConfig", "ReportConfig", "TeacherConfig", "DistillConfig",
           "TrainData", "TrainConfig", "TrackingConfig", "RunConfig", "SAFE_NAME", "check_name", "is_model",
           "is_perf", "model_ref", "perf", "DEFAULT_METRICS", "RANX_METRICS", "FUSION_METHODS", "FUSION_NORMS"]

DEFAULT_METRICS = ["mrr@10", "ndcg@3", "recall@10", "recall@100"]
# ranx 0.3.21's metric names (ranx.metrics.metric_switch; a test keeps this list in step with it).
RANX_METRICS = ("hits", "hit_rate", "precision", "recall", "f1", "r-precision", "mrr", "map", "dcg",
                "dcg_burges", "ndcg", "ndcg_burges", "bpref", "rbp")
# ranx.fuse methods that need no training run (the supervised ones need fitted parameters).
FUSION_METHODS = ("rrf", "isr", "log_isr", "logn_isr", "sum", "mnz", "anz", "gmnz", "max", "min", "med",
                  "bordafuse", "condorcet", "rbc", "wsum", "mixed", "wmnz", "w_bordafuse", "w_condorcet")
FUSION_NORMS = ("min-max", "max", "sum", "zmuv", "rank", "borda")
class DatasetConfig(Section):
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


class EncoderConfig(Section):
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


class ConversationConfig(Section):
    # none: chosen on dev by the recipe study (docs/recipe_study.md): it won 15 of 18 (dev split,
    # seed) pairs, +0.029 dev MRR@10 (p < 0.001); MTRAG's long answers crowd the questions out
    answers: Literal["last", "all", "none"] = Field(
        "none", description="agent answers in the student input: none (the user's questions, newest first; "
        "chosen on dev), the previous one (DiSCo's input), or all"
    )


class IndexConfig(Section):
    engine: Literal["inverted"] = "inverted"
    query_batch_size: int = perf(4096, gt=0, description="queries scored per batch (bounds memory)")
    threads: int | None = perf(None, description="numba threads for retrieval (default: all cores)")


class RetrievalConfig(Section):
    k: int = Field(1000, gt=0, le=10000, description="documents retrieved per query")


class SplitConfig(Section):
    """The random conversation split behind the ``test`` and ``train`` splits."""

    test_fraction: float = Field(0.2, gt=0, lt=1, description="conversations held out as `test`")
    seed: int = Field(13, description="seed of the hash order that picks them")


class FusionConfig(Section):
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


class EvaluationConfig(Section):
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


class ReportConfig(Section):
    """The DiSCo report: student vs teachers vs baselines on one split."""

    enabled: bool = True
    split: str = Field("test", description="the turns reported on (test: the held-out conversations)")

    @field_validator("split")
    @classmethod
    def _split(cls, v: str) -> str:
        return str(parse_split(v))


class TrackingConfig(Section):
    """Optional MLflow tracking of training and evaluation (it records, it changes no output)."""

    enabled: bool = perf(False, description="log each training and evaluation run to MLflow")
    uri: str | None = perf(None, description="a tracking server (default: a local store in <work_dir>/mlflow)")
    experiment: str = perf("disco", description="the MLflow experiment")


class RunConfig(Section):
    """How the pipeline runs (never what it computes)."""

    workers: int = perf(4, gt=0, description="stages run at once (threads of the Prefect task runner)")
    dask_address: str | None = perf(None, description="run stages on this Dask scheduler (prefect-dask)")
    lock_timeout: float = perf(3600.0, ge=0, description="seconds to wait for a stage another run is building")


class Config(Section):
    work_dir: str = perf("work", description="where every stage writes (relative to the current directory)")
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    conversation: ConversationConfig = Field(default_factory=ConversationConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    teachers: list[TeacherConfig] = Field(default_factory=default_teachers)
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
