"""Evaluation: evaluate (per dataset, split and set of variants) and the DiSCo report that renders it."""

from __future__ import annotations

import re

from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from disco_core import evaluation, latex, schemas, splits, trec, vectors
from disco_core import report as report_lib
from disco_core.io import write_json_atomic, write_text_atomic
from disco_core.variants import FUSED_TEACHERS

from .queries import read_run, run_source
from .execute import Context
from .stage import stage


def publish(kind: str, scope: str, markdown_file, description: str) -> None:
    """A stage's Markdown as a Prefect artifact, keyed per dataset (also on a cache hit)."""
    key = re.sub(r"[^a-z0-9-]+", "-", f"disco-{kind}-{scope}".lower())
    create_markdown_artifact(key=key, markdown=markdown_file.read_text(), description=description)


def split_turns(ctx: Context) -> list[dict]:
    """The turns of the instance's split."""
    cfg = ctx.cfg
    turns = schemas.read_table("turns", ctx.inputs["ingest"]["turns"]).to_pylist()
    return splits.turns_in(turns, splits.select(ctx.params["split"], turns, cfg.split.test_fraction, cfg.split.seed))


# ------------------------------------------------------------------ evaluate
class Evaluated(BaseModel):
    scores: dict[str, dict[str, float]]
    n_queries: int
    split: str


@stage("evaluate", needs=("ingest", "encode_corpus", "retrieve", "fuse_runs", "fuse", "encode_queries"),
       result=Evaluated, keys=("evaluation.metrics", "evaluation.stat_test", "evaluation.max_p"),
       outputs={"metrics": "metrics.json", "table": "metrics.md", "per_query": "per_query.parquet",
                "latex": "metrics.tex", "qrels": "qrels.trec"})
def evaluate(ctx: Context) -> Evaluated:
    """Runs + qrels of one split -> metrics.json, metrics.md, per_query.parquet (ranx)."""
    cfg, ds = ctx.cfg, ctx.params["ds"]
    variants = [v.name for v in ctx.params["variants"]]
    ids = {t["query_id"] for t in split_turns(ctx)}
    qrels = {q: d for q, d in evaluation.qrels_dict(schemas.read_table("qrels", ctx.inputs["ingest"]["qrels"])).items()
             if q in ids}
    runs = {v: {q: hits for q, hits in read_run(r).items() if q in ids} for v, r in zip(variants, ctx.inputs["runs"])}
    e = cfg.evaluation
    ev = evaluation.evaluate(qrels, runs, e.metrics, e.stat_test, e.max_p)
    doc_nnz = ctx.inputs["encode_corpus"].info.doc_nonzeros
    encoded = [v for v, r in zip(variants, ctx.inputs["runs"]) if r.stage == "retrieve"]
    for v in variants:
        ev.extra[v] = {"q nnz": None, "d nnz": doc_nnz}
    for v, queries in zip(encoded, ctx.inputs["queries"]):
        judged = [n for q, n in query_nonzeros(queries).items() if q in qrels]
        ev.extra[v]["q nnz"] = sum(judged) / len(judged) if judged else None
    split = str(ctx.params["split"])
    title = f"## {ds.name}: retrieval with {cfg.encoder.model}" + ("" if split == "all" else f" ({split} turns)")
    # each encoded variant's query encoder (a student's model folder: how `disco package` finds
    # the evaluations of a student)
    encoders = {v: q.info.encoder for v, q in zip(encoded, ctx.inputs["queries"])}
    ev.save(ctx.node.folder, dataset=ds.name, model=cfg.encoder.model, split=split, baseline=variants[0],
            encoders=encoders)
    write_text_atomic(ctx.out("table"), f"{title}\n\n" + ev.markdown(baseline=variants[0]))
    write_text_atomic(ctx.out("latex"), latex.evaluation_latex(ev, baseline=variants[0], caption=title.lstrip("# ")))
    # the judged turns of the split as TREC qrels, beside the runs' .trec files: trec_eval -c gives
    # the metrics above (queries without a relevant judgment are left out, as ranx leaves them out)
    trec.write_trec_qrels(qrels, ctx.out("qrels"))
    return Evaluated(scores=ev.scores, n_queries=ev.n_queries, split=split)


def query_nonzeros(encoded) -> dict[str, float]:
    matrix, ids = vectors.load_vectors(encoded["vectors"])
    return {q: float(n) for q, n in zip(ids, matrix.getnnz(axis=1))}


@evaluate.wire
def _(plan, ds, split, variants):
    plan.check_disjoint(ds, split, variants, "evaluation.split")
    sources = [run_source(plan, ds, v) for v in variants]
    return {"ingest": plan.node("ingest", ds=ds), "encode_corpus": plan.node("encode_corpus", ds=ds),
            "runs": sources, "queries": encoded_queries(plan, sources)}


def encoded_queries(plan, sources) -> list:
    """The encode_queries instances behind the retrieved runs among ``sources``, in order."""
    return [plan.graph.nodes[s.needs["queries"]] for s in sources if s.stage.name == "retrieve"]


@evaluate.settings
def _(cfg, ds, split, variants):
    settings = {"split": str(split), "variants": [v.name for v in variants]}
    if split.kind in splits.RANDOM_SPLITS:
        settings["random_split"] = [cfg.split.test_fraction, cfg.split.seed]
    return settings


evaluate.label(lambda cfg, ds, split, variants: split.label)


@evaluate.track
def _(node, result):
    _track(node, result, [result["table"], result["latex"]])


def _track(node, result, artifacts) -> None:
    from disco_core.tracking import log_run

    from .run import tracker

    log_run(tracker(node.cfg), node.id, params={"evaluation": node.settings, "dataset": node.params["ds"].name},
            metrics=result.info.scores, artifacts=artifacts, tags={"stage": node.stage.name})
evaluate.publish(lambda cfg, result: publish("metrics", result.folder.parent.parent.name, result["table"],
                                             "disco retrieval metrics"))


# ------------------------------------------------------------------ report
class Reported(BaseModel):
    scores: dict[str, dict[str, float]]
    best_teacher: str | None


NAMES = {"student": "student (DiSCo)", FUSED_TEACHERS: "fused teachers ({fusion})", "last_turn": "last turn",
         "conversation": "conversation (untrained)"}


@stage("report", needs=("evaluate", "ingest", "rewrite", "encode_queries", "retrieve"), result=Reported,
       measured_inputs=True, outputs={"report": "report.md", "json": "report.json", "plot": "depth.png",
                                      "latex": "report.tex"})
def report(ctx: Context) -> Reported:
    """Student vs teachers vs baselines on the split: Markdown, JSON, plot (rendered, not recomputed)."""
    ds = ctx.params["ds"]
    ev = evaluation.Evaluation.load(ctx.inputs["evaluate"].folder)
    rows = [_row(ctx, v.name) for v in ctx.params["variants"]]
    turn_of = {t["query_id"]: t["turn"] for t in split_turns(ctx)}
    ev, summary = report_lib.build_report(ev, rows, turn_of)
    n_conversations = len({t["conversation_id"] for t in split_turns(ctx)})
    title = f"DiSCo on {ds.scope}: {n_conversations} conversations of split {ctx.params['split']}"
    text = report_lib.markdown(ev, summary, title)
    write_text_atomic(ctx.out("report"), text)
    write_json_atomic(ctx.out("json"), {**ev.to_dict(), **summary})
    report_lib.plot(summary, ctx.out("plot"), title)
    best = summary["best_teacher"]
    write_text_atomic(ctx.out("latex"), latex.evaluation_latex(ev, baseline=best, caption=title,
                                                               label=f"tab:disco-{ds.scope}"))
    ctx.log.info("report:\n%s", text)
    return Reported(scores=ev.scores, best_teacher=summary["best_teacher"])


def _row(ctx: Context, variant: str) -> report_lib.Row:
    """A report row: the variant's display name, kind, LLM calls, latency and query non-zeros."""
    rewrites = {r.info.teacher: r.info for r in ctx.inputs["rewrite"]}
    names = [v.name for v in ctx.params["variants"] if v.encoded]
    per_variant = dict(zip(names, zip(ctx.inputs["queries"], ctx.inputs["retrieve"])))
    encoded, retrieved = per_variant.get(variant, (None, None))
    ms = encoded.info.encode_ms + retrieved.info.search_ms if encoded is not None else None
    if variant.startswith("rewrite:"):
        info = rewrites[variant.split(":", 1)[1]]
        # rewrites made elsewhere by a model: their rewriting time is unknown, so no latency
        ms = (ms + 1000 * info.seconds_per_turn * info.llm_calls_per_turn if info.seconds_per_turn
              else (None if info.llm_calls_per_turn else ms))
        return report_lib.Row(f"teacher: {info.teacher}", variant, "teacher", info.llm_calls_per_turn,
                              query_nonzeros(encoded), ms)
    if variant == FUSED_TEACHERS:
        name = NAMES[variant].format(fusion=ctx.cfg.distill.fusion)
        return report_lib.Row(name, variant, "fused", sum(i.llm_calls_per_turn for i in rewrites.values()))
    kind = "student" if variant == "student" else "baseline"
    return report_lib.Row(NAMES[variant], variant, kind, 0, query_nonzeros(encoded), ms)


@report.wire
def _(plan, ds, split, variants):
    plan.check_disjoint(ds, split, variants, "report.split")
    sources = [run_source(plan, ds, v) for v in variants]
    return {"evaluate": plan.node("evaluate", ds=ds, split=split, variants=variants),
            "ingest": plan.node("ingest", ds=ds),
            "rewrite": [plan.node("rewrite", ds=ds, teacher=t) for t in plan.teachers(ds)],
            "queries": encoded_queries(plan, sources), "retrieve": [s for s in sources if s.stage.name == "retrieve"]}


@report.settings
def _(cfg, ds, split, variants):
    settings = {"split": str(split)}
    if split.kind in splits.RANDOM_SPLITS:
        settings["random_split"] = [cfg.split.test_fraction, cfg.split.seed]
    return settings


report.label(lambda cfg, ds, split, variants: split.label)
report.track(lambda node, result: _track(node, result, [result["report"], result["plot"], result["latex"]]))
report.publish(lambda cfg, result: publish("report", result.folder.parent.parent.name, result["report"],
                                           "DiSCo report"))
