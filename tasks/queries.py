"""The query side: encode_queries and retrieve (one instance per dataset and variant), fuse_runs."""

from __future__ import annotations

import time

from pydantic import BaseModel

from disco_core import fusion as fusion_lib
from disco_core import runs as runs_lib
from disco_core import schemas, vectors
from disco_core.conversation import ConversationFormatter
from disco_core.errors import ConfigError
from disco_core.sharded_index import ShardedIndex
from disco_core.variants import FUSED_TEACHERS, Variant, query_texts

from .spine import document_encoder, splade
from .execute import Context
from .stage import measured, stage

LATENCY_SAMPLE = 32  # queries timed one at a time, as a user's search would run them


def _label(cfg, ds, variant: Variant, student=None, **_) -> str:
    if variant.uses_student:  # the student's own name, not "student": cells train different ones
        who = student.name
        return f"student:{who}" if variant.kind == "student" else f"student+rewrite:{who},{variant.teacher}"
    return variant.name


# ------------------------------------------------------------------ encode_queries
class EncodedQueries(BaseModel):
    queries: int
    query_nonzeros: float
    encoder: str
    encode_ms: float | None = measured(None, description="one query at a time, mean over a sample")


@stage("encode_queries", needs=("ingest", "rewrite", "train"), result=EncodedQueries,
       outputs={"queries": "queries.parquet", "vectors": "vectors.npz", "ids": "vectors.ids.json"})
def encode_queries(ctx: Context) -> EncodedQueries:
    """Turns (and a teacher's rewrites) -> one variant's query texts and SPLADE vectors."""
    variant: Variant = ctx.params["variant"]
    model, max_length, answers = _query_encoder(ctx)
    enc = splade(ctx.cfg, model, max_length)
    turns = schemas.read_table("turns", ctx.inputs["ingest"]["turns"]).to_pylist()
    rewrites = schemas.read_table("rewrites", ctx.inputs["rewrite"]["rewrites"]) if "rewrite" in ctx.inputs else None
    formatter = ConversationFormatter(enc.tokenizer, max_length, answers) if variant.reads_conversation else None
    qids, texts = query_texts(variant, turns, formatter, rewrites)
    table = schemas.to_table("queries", {"variant": [variant.name] * len(qids), "query_id": qids, "text": texts})
    schemas.write_table("queries", table, ctx.out("queries"))
    matrix = enc.encode(texts)
    vectors.save_vectors(ctx.out("vectors"), matrix, qids)
    start = time.perf_counter()
    for text in texts[:LATENCY_SAMPLE]:
        enc.encode([text])
    ms = 1000 * (time.perf_counter() - start) / max(min(len(texts), LATENCY_SAMPLE), 1)
    ctx.log.info("encode_queries %s: %d queries, %.1f non-zeros", variant, len(qids), vectors.mean_nonzeros(matrix))
    return EncodedQueries(queries=len(qids), query_nonzeros=vectors.mean_nonzeros(matrix), encoder=str(model),
                          encode_ms=ms)


def _query_encoder(ctx: Context) -> tuple[str, int, str]:
    """(model, max_length, conversation answers) of the variant's query encoder."""
    cfg, variant = ctx.cfg, ctx.params["variant"]
    if not variant.uses_student:
        return cfg.encoder.model, cfg.encoder.query_max_length, cfg.conversation.answers
    student = ctx.params["student"]
    model = str(ctx.inputs["train"]["model"]) if "train" in ctx.inputs else student.ref.model
    return model, student.max_length, student.answers


@encode_queries.wire
def _(plan, ds, variant, student=None):
    needs = {"ingest": plan.node("ingest", ds=ds)}
    if variant.kind in ("rewrite", "student+rewrite"):
        needs["rewrite"] = plan.node("rewrite", ds=ds, teacher=plan.teacher(ds, variant.teacher))
    if student is not None and student.node:
        needs["train"] = plan.graph.nodes[student.node]
    return needs


@encode_queries.settings
def _(cfg, ds, variant, student=None):
    if variant.uses_student:
        return {"variant": variant.kind, "student": student.name, "answers": student.answers,
                "max_length": student.max_length}
    settings = {"variant": variant.name, "model": cfg.encoder.model, "query_max_length": cfg.encoder.query_max_length}
    if variant.reads_conversation:
        settings["answers"] = cfg.conversation.answers
    return settings


@encode_queries.models
def _(cfg, ds, variant, student=None):
    if not variant.uses_student:
        return document_encoder(cfg)
    if student.ref is not None:  # a student trained elsewhere, a folder or a hub id: by its files
        return [(student.ref.model, None)]
    return []  # trained in this plan: its weights are an input


encode_queries.label(_label)


# ------------------------------------------------------------------ retrieve
class Retrieved(BaseModel):
    queries: int
    mean_results: float
    search_ms: float | None = measured(None, description="one query at a time, mean over a sample")


@stage("retrieve", needs=("index", "encode_queries"), result=Retrieved, keys=("retrieval.k",),
       outputs={"run": "run.parquet", "trec": "run.trec"})
def retrieve(ctx: Context) -> Retrieved:
    """Query vectors x index -> top-k run (Parquet and TREC)."""
    cfg = ctx.cfg
    index = ShardedIndex.load(ctx.inputs["index"]["index"])
    matrix, qids = vectors.load_vectors(ctx.inputs["queries"]["vectors"])
    run = index.search_ids(matrix, qids, k=cfg.retrieval.k, batch_size=cfg.index.query_batch_size,
                           threads=cfg.index.threads)
    runs_lib.write_parquet(run, ctx.out("run"))
    runs_lib.write_trec(run, ctx.out("trec"), tag=f"disco-{ctx.params['variant'].slug}")
    sample = min(matrix.shape[0], LATENCY_SAMPLE)
    start = time.perf_counter()
    for i in range(sample):
        index.search(matrix[i], k=cfg.retrieval.k)
    ms = 1000 * (time.perf_counter() - start) / max(sample, 1)
    return Retrieved(queries=len(run), mean_results=sum(map(len, run.values())) / max(len(run), 1), search_ms=ms)


@retrieve.wire
def _(plan, ds, variant, student=None):
    return {"index": plan.node("index", ds=ds),
            "queries": plan.node("encode_queries", ds=ds, variant=variant, student=student)}


retrieve.label(_label)


# ------------------------------------------------------------------ fuse_runs
class FusedRuns(BaseModel):
    queries: int
    variants: list[str]


@stage("fuse_runs", needs=("retrieve", "fuse"), result=FusedRuns, outputs={"run": "run.parquet", "trec": "run.trec"})
def fuse_runs(ctx: Context) -> FusedRuns:
    """Rank fusion of other variants' runs (ranx.fuse: RRF, CombSUM, ...)."""
    fusion = ctx.params["fusion"]
    run = fusion_lib.fuse({n: read_run(r) for n, r in zip(fusion.variants, ctx.inputs["runs"])}, fusion.method,
                        fusion.norm, fusion.params, k=ctx.cfg.retrieval.k)
    runs_lib.write_parquet(run, ctx.out("run"))
    runs_lib.write_trec(run, ctx.out("trec"), tag=f"disco-{fusion.name}")
    return FusedRuns(queries=len(run), variants=list(fusion.variants))


@fuse_runs.wire
def _(plan, ds, fusion):
    return {"runs": [run_source(plan, ds, v) for v in plan.variants(ds, fusion.variants)]}


@fuse_runs.settings
def _(cfg, ds, fusion):
    return {"fusion": fusion.model_dump(), "k": cfg.retrieval.k}


fuse_runs.label(lambda cfg, ds, fusion: fusion.name)


def run_source(plan, ds, variant: Variant):
    """The instance whose output is a variant's run (retrieve, fuse_runs, or fuse's targets)."""
    if variant.kind == "fusion":
        fusion = next(f for f in plan.cfg.evaluation.fusions if f.name == variant.fusion)
        return plan.node("fuse_runs", ds=ds, fusion=fusion)
    if variant.kind == FUSED_TEACHERS:
        if plan.cfg.distill.fusion == "per-teacher":
            raise ConfigError("variant fused-teachers needs distill.fusion mean or max (per-teacher fuses nothing)")
        return plan.fuse(ds)
    student = plan.student(variant.student) if variant.uses_student else None
    return plan.node("retrieve", ds=ds, variant=variant, student=student)


def read_run(result) -> runs_lib.Run:
    """A variant's run from its retrieve or fuse_runs result, or the fused teachers' targets."""
    if result.stage == "fuse":
        targets = schemas.read_table("targets", result["targets"])
        return runs_lib.from_table(targets.drop_columns(["source"]))
    return runs_lib.read_parquet(result["run"])
