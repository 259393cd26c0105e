"""The teachers: rewrite (per dataset and teacher), score_teachers (likewise) and fuse (per dataset)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel

from disco_core import paper_files, rewriters, schemas, teachers, vectors
from disco_core.sharded_index import ShardedIndex
from disco_core.io import short_hash
from disco_core.variants import Variant

from .execute import Context
from .spine import corpus_vectors
from .stage import measured, plain, stage


# ------------------------------------------------------------------ rewrite
class Rewritten(BaseModel):
    teacher: str
    model: str | None
    turns: int
    status: dict[str, int]
    llm_calls_per_turn: float
    resumed: int = measured(0)
    seconds_per_turn: float | None = measured(None, description="wall time per turn the LLM rewrote")


@stage("rewrite", needs=("ingest",), result=Rewritten, outputs={"rewrites": "rewrites.parquet"})
def rewrite(ctx: Context) -> Rewritten:
    """One teacher's rewrites of every turn, journaled as they arrive (a rerun resumes)."""
    ds, teacher = ctx.params["ds"], ctx.params["teacher"]
    turns = schemas.read_table("turns", ctx.inputs["ingest"]["turns"]).to_pylist()
    dataset_rows = schemas.read_table("rewrites", ctx.inputs["ingest"]["rewrites"]).to_pylist()
    rewriter = rewriters.make_rewriter(teacher.config, ds.teacher, dataset_rows, device=ctx.cfg.encoder.device)
    journal, before = None, 0
    if rewriter.generates:
        # one journal per model and prompt: another prompt never reuses these rewrites; a
        # forced rewrite starts it over
        name = f"journal-{short_hash([ctx.node.settings, rewriter.settings()])}.jsonl"
        journal = rewriters.RewriteJournal(ctx.node.folder / name)
        if ctx.force:
            journal.reset()
        before = len(journal.load())
    rows = rewriters.run_rewriter(rewriter, turns, journal)
    table = schemas.to_table("rewrites", [{**r, "teacher": teacher.name, "model": rewriter.model,
                                           "prompt_hash": rewriter.prompt_hash} for r in rows])
    schemas.write_table("rewrites", table, ctx.out("rewrites"))
    statuses = dict(zip(*table.group_by("status").aggregate([([], "count_all")]).to_pydict().values()))
    ctx.log.info("rewrite %s: %d turns (%d resumed from the journal), statuses %s", teacher, len(rows), before, statuses)
    timed = [r["seconds"] for r in rows if r.get("seconds") is not None]
    per_turn = sum(timed) / len(timed) if timed and rewriter.llm_calls_per_turn else None
    asked = sum(1 for r in rows if r["status"] != rewriters.FIRST_TURN)  # first turns kept as written cost no call
    calls = rewriter.llm_calls_per_turn * asked / len(rows) if rows else 0.0
    return Rewritten(teacher=teacher.name, model=rewriter.model, turns=len(rows), status=statuses,
                     llm_calls_per_turn=calls, resumed=before, seconds_per_turn=per_turn)


@rewrite.wire
def _(plan, ds, teacher):
    return {"ingest": plan.node("ingest", ds=ds)}


@rewrite.settings
def _(cfg, ds, teacher):
    return {"teacher": teacher.name, **plain(teacher.config)}


@rewrite.models
def _(cfg, ds, teacher):
    t = teacher.config
    if t.backend not in ("hf", "llamacpp"):
        return []  # a served model is known by its name alone (the openai backend's settings)
    return [(t.model, llm_file(t.model, t.gguf_file))]


@rewrite.sources
def _(cfg, ds, teacher):
    return [Path(teacher.config.path)] if teacher.config.path else []


def llm_file(model: str | None, gguf_file: str | None) -> str | None:
    """The local file or folder behind a causal LM name (an alias's GGUF, a folder), if any."""
    if model in rewriters.LLM_ALIASES:
        folder, name = rewriters.LLM_ALIASES[model]()
        return str(Path(folder) / name)
    if model and gguf_file and Path(model, gguf_file).exists():
        return str(Path(model, gguf_file))
    return model if model and Path(model).exists() else None


# ------------------------------------------------------------------ score_teachers
class TeacherScores(BaseModel):
    teacher: str
    queries: int
    scores: int


@stage("score_teachers", needs=("index", "encode_queries"), result=TeacherScores, keys=("distill.teacher_k",),
       outputs={"teacher_scores": "teacher_scores.parquet"})
def score_teachers(ctx: Context) -> TeacherScores:
    """A teacher's top-k from the shared index, searched with its rewrites' vectors: its scores."""
    cfg, teacher = ctx.cfg, ctx.params["teacher"]
    name = teacher.name
    matrix, qids = vectors.load_vectors(ctx.inputs["queries"]["vectors"])
    if teacher.config.scores:  # the scores someone else computed (the DiSCo authors' run files)
        id_map = paper_files.load_id_map(teacher.config.id_map) if teacher.config.id_map else None
        scores = paper_files.read_teacher_run(teacher.config.scores, name, id_map, k=cfg.distill.teacher_k)
    else:
        index = ShardedIndex.load(ctx.inputs["index"]["index"])
        scores = teachers.teacher_scores(index, matrix, qids, name, k=cfg.distill.teacher_k,
                                         batch_size=cfg.index.query_batch_size, threads=cfg.index.threads)
    schemas.write_table("teacher_scores", scores, ctx.out("teacher_scores"))
    ctx.log.info("score_teachers %s: %d queries, %d scores", name, len(qids), scores.num_rows)
    return TeacherScores(teacher=name, queries=len(qids), scores=scores.num_rows)


@score_teachers.sources
def _(cfg, ds, teacher):
    return [Path(p) for p in (teacher.config.scores, teacher.config.id_map) if p]


@score_teachers.wire
def _(plan, ds, teacher):
    return {"index": plan.node("index", ds=ds),
            "queries": plan.node("encode_queries", ds=ds, variant=Variant("rewrite", teacher=teacher.name))}


# ------------------------------------------------------------------ fuse
class Fused(BaseModel):
    fusion: str
    teachers: list[str]
    targets: int


@stage("fuse", needs=("score_teachers", "encode_queries", "encode_corpus"), result=Fused,
       keys=("distill.fusion", "distill.teacher_k", "distill.weights", "distill.normalise"),
       outputs={"targets": "targets.parquet"})
def fuse(ctx: Context) -> Fused:
    """Teachers combined at the score level on the union of their candidates: targets.parquet."""
    cfg = ctx.cfg
    scored, encoded = ctx.inputs["scores"], ctx.inputs["queries"]
    table = pa.concat_tables([schemas.read_table("teacher_scores", s["teacher_scores"]) for s in scored])
    names = [s.info.teacher for s in scored]
    # a teacher whose scores were imported keeps them: rescoring its candidates with our vectors
    # would replace the very targets it was imported for
    imported = {t.name for t in ctx.params["teachers"] if t.config.scores}
    query_vectors = {n: vectors.load_vectors(e["vectors"]) for n, e in zip(names, encoded) if n not in imported}
    doc_matrix, doc_ids = corpus_vectors(ctx.inputs["encode_corpus"])
    weights = teacher_weights(cfg.distill.weights, ctx.params["teachers"])
    targets = teachers.fuse(table, query_vectors, doc_matrix, doc_ids, cfg.distill.fusion, k=cfg.distill.teacher_k,
                            weights=weights, normalise=cfg.distill.normalise)
    schemas.write_table("targets", targets, ctx.out("targets"))
    ctx.log.info("fuse: %s over %s: %d targets", cfg.distill.fusion, names, targets.num_rows)
    return Fused(fusion=cfg.distill.fusion, teachers=names, targets=targets.num_rows)


def teacher_weights(weights: dict[str, float], refs) -> dict[str, float]:
    """``distill.weights`` by the teachers' names on this dataset (``dataset``: its own rewrites)."""
    from disco_core.errors import ConfigError

    names = {ref.name: ref.name for ref in refs} | {"dataset": r.name for r in refs if r.config.backend == "dataset"}
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ConfigError(f"distill.weights: no teacher {', '.join(map(repr, unknown))}; "
                          f"the teachers are {', '.join(names)}")
    resolved = [names[key] for key in weights]
    if len(set(resolved)) != len(resolved):
        raise ConfigError(f"distill.weights: {sorted(weights)} name one teacher twice")
    return {names[key]: w for key, w in weights.items()}


@fuse.wire
def _(plan, ds, teachers=()):
    refs = list(teachers)
    if not refs:
        from disco_core.errors import ConfigError

        raise ConfigError("teachers: a student needs at least one teacher")
    teacher_weights(plan.cfg.distill.weights, refs)  # an unknown name fails at planning
    return {"scores": [plan.node("score_teachers", ds=ds, teacher=t) for t in refs],
            "queries": [plan.node("encode_queries", ds=ds, variant=Variant("rewrite", teacher=t.name)) for t in refs],
            "encode_corpus": plan.node("encode_corpus", ds=ds)}


fuse.label(lambda cfg, ds, teachers=(): "")
