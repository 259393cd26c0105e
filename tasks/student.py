"""The student: train (one instance per student, a named artifact in ``<work_dir>/students``)."""

from __future__ import annotations

import platform
import shutil

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel

from disco_core import distill, evaluation, schemas, splits, students, teachers
from disco_core.conversation import ConversationFormatter
from disco_core.sharded_index import ShardedIndex
from disco_core.trainer import Trainer
from disco_core.io import write_json_atomic
from disco_core.models import resolve_model

from .execute import Context
from .spine import corpus_doc_ids, corpus_vectors
from .stage import measured, plain, stage


class Trained(BaseModel):
    student: str
    examples: int
    train_turns: int
    dev_turns: int
    steps: int
    epoch: int  # the epoch whose weights were kept
    dev: dict[str, float]  # epoch -> dev MRR@10 (empty without a dev set)
    resumed_epochs: int = measured(0)  # how this build went, not what it made
    final: dict


def base_model(cfg) -> str:
    return cfg.train.base_model or cfg.encoder.model


@stage("train", needs=("ingest", "encode_corpus", "fuse", "index"), result=Trained,
       outputs={"model": "model", "provenance": students.PROVENANCE, "log": "train_log.json"})
def train(ctx: Context) -> Trained:
    """The student query encoder, trained on its data's cached teacher targets."""
    cfg, parts = ctx.cfg, ctx.params["parts"]
    doc_matrix, offsets = _documents(ctx)
    run_dir = _run_dir(ctx)
    trainer = Trainer(base_model(cfg), cfg.train, doc_matrix, run_dir, device=cfg.encoder.device,
                              threads=cfg.encoder.threads)
    formatter = ConversationFormatter(trainer.student.tokenizer, cfg.train.max_length, cfg.conversation.answers)
    examples, dev_sets, counts = [], [], []
    for i, part in enumerate(parts):
        train_turns, dev_turns = _turns(ctx, i, part)
        qrels = evaluation.qrels_dict(schemas.read_table("qrels", ctx.inputs["ingest"][i]["qrels"]))
        targets = teachers.target_lists(schemas.read_table("targets", ctx.inputs["fuse"][i]["targets"]))
        doc_ids = corpus_doc_ids(ctx.inputs["encode_corpus"][i])
        position = {d: offsets[i] + j for j, d in enumerate(doc_ids)}
        # query ids carry their part: another dataset's turn of the same id is another turn
        ids = [f"{part.ds.scope}:{t['query_id']}" for t in train_turns]
        examples += distill.build_examples(ids, formatter.format_many(train_turns),
                                           {f"{part.ds.scope}:{q}": v for q, v in targets.items()},
                                           {f"{part.ds.scope}:{q}": v for q, v in qrels.items()}, position,
                                           unjudged=cfg.train.unjudged)
        if dev_turns:
            dev_sets.append(distill.DevSet([t["query_id"] for t in dev_turns], formatter.format_many(dev_turns),
                                           qrels, ShardedIndex.load(ctx.inputs["index"][i]["index"])))
        counts.append({"dataset": part.ds.name, "split": str(part.split), "train_turns": len(train_turns),
                       "dev_turns": len(dev_turns)})
    ctx.log.info("train %s: %d examples from %s", ctx.params["student"], len(examples), counts)
    history = trainer.train(examples, progress=lambda r: ctx.log.info("train: %s", r),
                            dev=distill.dev_evaluator(dev_sets) if dev_sets else None)
    epoch = trainer.best_epoch()
    trainer.save_final(ctx.out("model"), epoch)
    write_json_atomic(ctx.out("log"), history)
    # the per-epoch checkpoints (weights and optimizer, ~50 MB an epoch for splade-tiny) exist to
    # resume a killed run; the final model is saved, so they go: kept, a recipe sweep's students
    # filled 22 GB here
    shutil.rmtree(run_dir, ignore_errors=True)
    result = Trained(student=ctx.params["student"], examples=len(examples), steps=trainer.step, epoch=epoch,
                     train_turns=sum(c["train_turns"] for c in counts), dev_turns=sum(c["dev_turns"] for c in counts),
                     dev={str(e): s for e, s in trainer.dev_scores().items()}, resumed_epochs=trainer.resumed_epochs,
                     final=next((r for r in reversed(history) if "loss" in r), {}))
    students.write_provenance(ctx.node.folder, _provenance(ctx, result, counts))
    return result


def _documents(ctx: Context) -> tuple[sp.csr_matrix, list[int]]:
    """Every part's document vectors in one matrix (a mixture's corpora side by side), and where
    each part starts in it."""
    matrices = [corpus_vectors(r)[0] for r in ctx.inputs["encode_corpus"]]
    offsets = [0, *np.cumsum([m.shape[0] for m in matrices])[:-1].tolist()]
    return (matrices[0] if len(matrices) == 1 else sp.vstack(matrices, format="csr")), offsets


def _turns(ctx: Context, i: int, part) -> tuple[list[dict], list[dict]]:
    """The part's training turns and the dev turns set aside from them (whole conversations)."""
    cfg = ctx.cfg
    turns = schemas.read_table("turns", ctx.inputs["ingest"][i]["turns"]).to_pylist()
    chosen = splits.select(part.split, turns, cfg.split.test_fraction, cfg.split.seed)
    fraction = cfg.train.dev_fraction if part.config is None or part.config.dev else 0.0
    rest, dev = splits.set_aside(chosen, fraction, cfg.split.seed)
    return splits.turns_in(turns, rest), splits.turns_in(turns, dev)


def _run_dir(ctx: Context):
    # Checkpoints resume the same run only (the same key: settings, inputs, base model and code; a
    # killed run). Anything else, or --force, starts from scratch; earlier runs' checkpoints go.
    run_dir = ctx.node.folder / f"run-{ctx.key[:12]}"
    for old in ctx.node.folder.glob("run-*"):
        if ctx.force or old != run_dir:
            shutil.rmtree(old)
    return run_dir


def _teachers(ctx: Context) -> list[dict]:
    """Each teacher by the name it had on each dataset (``backend: dataset`` is ``human`` on one,
    ``mtrag-mixtral`` on another) with its settings."""
    out = []
    for part, fused in zip(ctx.params["parts"], ctx.inputs["fuse"]):
        for name, teacher in zip(fused.info.teachers, ctx.cfg.teachers):
            out.append({"dataset": part.ds.name, **plain(teacher), "name": name})
    return out


def _provenance(ctx: Context, result: Trained, counts: list[dict]) -> dict:
    cfg = ctx.cfg
    return {
        "name": ctx.params["student"],
        "base_model": base_model(cfg), "document_encoder": cfg.encoder.model,
        "document_max_length": cfg.encoder.doc_max_length,
        "conversation": {"answers": cfg.conversation.answers, "max_length": cfg.train.max_length,
                         "format": "q_n [SEP] a_{n-1} [SEP] q_{n-1} ... (newest first)"},
        "data": counts, "split": plain(cfg.split), "dev_fraction": cfg.train.dev_fraction,
        "teachers": _teachers(ctx), "fused": [r.info.model_dump() for r in ctx.inputs["fuse"]],
        "fusion": cfg.distill.fusion, "settings": plain(cfg.train), "epoch": result.epoch, "dev": result.dev,
        "examples": result.examples, "steps": result.steps, "llm_calls_at_search": 0,
        "platform": platform.platform(),
    }


@train.wire
def _(plan, student, parts):
    needs: dict = {"ingest": [], "encode_corpus": [], "fuse": [], "index": []}
    for part in parts:
        needs["ingest"].append(plan.node("ingest", ds=part.ds))
        needs["encode_corpus"].append(plan.node("encode_corpus", ds=part.ds))
        needs["fuse"].append(plan.fuse(part.ds))
        if plan.cfg.train.dev_fraction > 0:
            needs["index"].append(plan.node("index", ds=part.ds))
    return needs


@train.settings
def _(cfg, student, parts):
    return {"train": plain(cfg.train), "data": [[p.ds.scope, str(p.split)] for p in parts],
            "answers": cfg.conversation.answers, "split": plain(cfg.split)}


@train.track
def _(node, result):
    import json

    from disco_core.tracking import log_run

    from .run import tracker

    history = json.loads(result["log"].read_text())
    dev = {f"dev_mrr@10_epoch_{e}": s for e, s in result.info.dev.items()}
    log_run(tracker(node.cfg), f"train {result.info.student}", params={"train": plain(node.cfg.train),
            "data": node.settings["data"], "teachers": plain(node.cfg.teachers), "fusion": node.cfg.distill.fusion},
            metrics={"examples": result.info.examples, "epoch": result.info.epoch, **dev}, history=history,
            artifacts=[result["provenance"], result["log"]], student=result["model"],
            tags={"stage": "train", "student": result.info.student})


train.models(lambda cfg, student, parts: [(base_model(cfg), resolve_model(base_model(cfg)))])
train.scope(lambda cfg, student, parts: "students")
train.label(lambda cfg, student, parts: student)
train.folder(lambda cfg, student, parts: f"students/{student}")
