"""The pipeline's stages as Prefect tasks: ingest, encode corpus, index, encode queries, retrieve,
evaluate. Each wraps disco_core, writes under ``<work_dir>/<dataset>/<stage>/`` and is cached by
:func:`tasks.cache.run_stage` (Prefect's own result cache is off: our manifest decides)."""

from __future__ import annotations

import re
from pathlib import Path

from . import _env  # noqa: F401

import pyarrow.compute as pc  # noqa: E402
from prefect import get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

import disco_core.conversation  # noqa: E402
import disco_core.datasets  # noqa: E402
import disco_core.encoder  # noqa: E402
import disco_core.evaluation  # noqa: E402
import disco_core.index  # noqa: E402
import disco_core.io  # noqa: E402
import disco_core.models  # noqa: E402
import disco_core.queries  # noqa: E402
import disco_core.runs  # noqa: E402
import disco_core.schemas  # noqa: E402
import disco_core.vectors  # noqa: E402
from disco_core import datasets, schemas  # noqa: E402
from disco_core.config import Config  # noqa: E402
from disco_core.io import write_json_atomic, write_text_atomic  # noqa: E402

from .cache import StageResult, run_stage  # noqa: E402

STAGES = ("ingest", "encode_corpus", "index", "encode_queries", "retrieve", "evaluate")
TASK_OPTIONS = dict(cache_policy=NO_CACHE, persist_result=False)


def dataset_folder(cfg: Config) -> Path:
    name = cfg.dataset.name + ("-" + "-".join(sorted(cfg.dataset.domains)) if cfg.dataset.domains else "")
    return cfg.work_path / name


def stage_folder(cfg: Config, stage: str) -> Path:
    return dataset_folder(cfg) / stage


def slug(variant: str) -> str:
    return variant.replace(":", "-").replace("/", "_")


def resolved_variants(cfg: Config) -> list[str]:
    teacher = datasets.get(cfg.dataset.name).rewrite_teacher
    return [disco_core.queries.resolve_variant(v, teacher) for v in cfg.evaluation.variants]


def _encoder(cfg: Config, max_length: int):
    e = cfg.encoder
    return disco_core.encoder.SpladeEncoder(e.model, max_length=max_length, batch_size=e.batch_size,
                                            token_budget=e.token_budget, device=e.device, threads=e.threads)


@task(name="ingest", **TASK_OPTIONS)
def ingest(cfg: Config, force: bool = False) -> StageResult:
    """Dataset source files -> corpus, turns, qrels and rewrites tables, plus a validation summary."""
    logger = get_run_logger()
    folder = stage_folder(cfg, "ingest")
    outputs = {name: folder / f"{name}.parquet" for name in datasets.TABLES}
    outputs["validation"] = folder / "validation.json"

    def build():
        tables = datasets.load(cfg.dataset.name, cfg.dataset.path, cfg.dataset.domains)
        for name, table in tables.items():
            schemas.write_table(name, table, outputs[name])
        summary = validation_summary(tables)
        write_json_atomic(outputs["validation"], summary)
        logger.info("ingest: %s", summary)
        return summary

    inputs = datasets.source_files(cfg.dataset.name, cfg.dataset.path)
    return run_stage("ingest", folder, inputs, cfg.dataset.model_dump(), [ingest.fn, disco_core.datasets,
                     disco_core.schemas, disco_core.io], outputs, build, logger, force)


def validation_summary(tables: datasets.DatasetTables) -> dict:
    qrels = tables.qrels
    positive = qrels.filter(pc.greater(qrels["relevance"], 0))
    grades = qrels.group_by("relevance").aggregate([([], "count_all")]).to_pydict()
    teachers = tables.rewrites.group_by("teacher").aggregate([([], "count_all")]).to_pydict()
    return {
        "conversations": pc.count_distinct(tables.turns["conversation_id"]).as_py(),
        "turns": tables.turns.num_rows,
        "turns_with_positive": pc.count_distinct(positive["query_id"]).as_py() if positive.num_rows else 0,
        "passages": tables.corpus.num_rows,
        "qrels_by_grade": {str(g): c for g, c in sorted(zip(grades["relevance"], grades["count_all"]))},
        "rewrites_by_teacher": dict(zip(teachers["teacher"], teachers["count_all"])),
    }


@task(name="encode_corpus", **TASK_OPTIONS)
def encode_corpus(cfg: Config, ingested: StageResult, force: bool = False) -> StageResult:
    """Corpus table -> SPLADE document vectors (CSR ``doc_vectors.npz`` + ids)."""
    logger = get_run_logger()
    folder = stage_folder(cfg, "encode_corpus")
    vectors = folder / "doc_vectors.npz"
    outputs = {"doc_vectors": vectors, "doc_ids": disco_core.vectors.ids_path(vectors)}

    def build():
        corpus = schemas.read_table("corpus", ingested["corpus"]).to_pydict()
        texts = [disco_core.encoder.document_text(t, x) for t, x in zip(corpus["title"], corpus["text"])]
        encoder = _encoder(cfg, cfg.encoder.doc_max_length)
        matrix = encoder.encode(texts, progress=lambda d, n: logger.info("encode_corpus: %d/%d documents", d, n))
        disco_core.vectors.save_vectors(vectors, matrix, corpus["doc_id"])
        return {"documents": len(texts), "doc_nonzeros": disco_core.vectors.mean_nonzeros(matrix)}

    settings = {"model": cfg.encoder.model, "doc_max_length": cfg.encoder.doc_max_length}
    return run_stage("encode_corpus", folder, [ingested["corpus"]], settings,
                     [encode_corpus.fn, disco_core.encoder, disco_core.models, disco_core.vectors],
                     outputs, build, logger, force)


@task(name="index", **TASK_OPTIONS)
def build_index(cfg: Config, encoded: StageResult, force: bool = False) -> StageResult:
    """Document vectors -> exact inverted index on disk."""
    logger = get_run_logger()
    folder = stage_folder(cfg, "index")
    outputs = {"index": folder / cfg.index.engine}

    def build():
        matrix, doc_ids = disco_core.vectors.load_vectors(encoded["doc_vectors"])
        index = disco_core.index.InvertedIndex.build(matrix, doc_ids, meta={"model": cfg.encoder.model})
        index.save(outputs["index"])
        return {"documents": index.n_docs, "postings": index.nnz,
                "doc_nonzeros": index.nnz / max(index.n_docs, 1)}

    return run_stage("index", folder, encoded.files, {"engine": cfg.index.engine},
                     [build_index.fn, disco_core.index], outputs, build, logger, force)


@task(name="encode_queries", **TASK_OPTIONS)
def encode_queries(cfg: Config, ingested: StageResult, force: bool = False) -> StageResult:
    """Turns and rewrites -> the queries table and one vector file per variant."""
    logger = get_run_logger()
    folder = stage_folder(cfg, "encode_queries")
    variants = resolved_variants(cfg)
    outputs = {"queries": folder / "queries.parquet"}
    outputs.update({v: folder / "vectors" / f"{slug(v)}.npz" for v in variants})

    def build():
        encoder = _encoder(cfg, cfg.encoder.query_max_length)
        formatter = disco_core.conversation.ConversationFormatter(
            encoder.tokenizer, cfg.encoder.query_max_length, cfg.conversation.answers)
        turns = schemas.read_table("turns", ingested["turns"])
        rewrites = schemas.read_table("rewrites", ingested["rewrites"])
        queries = disco_core.queries.build_queries(turns, rewrites, variants, formatter)
        schemas.write_table("queries", queries, outputs["queries"])
        info = {}
        for variant in variants:
            subset = queries.filter(pc.equal(queries["variant"], variant))
            matrix = encoder.encode(subset["text"].to_pylist())
            disco_core.vectors.save_vectors(outputs[variant], matrix, subset["query_id"].to_pylist())
            info[variant] = {"queries": subset.num_rows, "query_nonzeros": disco_core.vectors.mean_nonzeros(matrix)}
            logger.info("encode_queries: %s: %d queries, %.1f non-zeros", variant, subset.num_rows,
                        info[variant]["query_nonzeros"])
        return info

    settings = {"model": cfg.encoder.model, "query_max_length": cfg.encoder.query_max_length,
                "answers": cfg.conversation.answers, "variants": variants}
    return run_stage("encode_queries", folder, [ingested["turns"], ingested["rewrites"]], settings,
                     [encode_queries.fn, disco_core.encoder, disco_core.models, disco_core.conversation,
                      disco_core.queries, disco_core.vectors], outputs, build, logger, force)


@task(name="retrieve", **TASK_OPTIONS)
def retrieve(cfg: Config, indexed: StageResult, queries: StageResult, force: bool = False) -> StageResult:
    """Query vectors x index -> top-k runs per variant (Parquet and TREC)."""
    logger = get_run_logger()
    folder = stage_folder(cfg, "retrieve")
    variants = [v for v in queries.outputs if v != "queries"]
    outputs = {}
    for v in variants:
        outputs[v] = folder / "runs" / f"{slug(v)}.parquet"
        outputs[f"{v}.trec"] = folder / "runs" / f"{slug(v)}.trec"

    def build():
        index = disco_core.index.InvertedIndex.load(indexed["index"])
        info = {}
        for v in variants:
            matrix, qids = disco_core.vectors.load_vectors(queries[v])
            run = index.search_ids(matrix, qids, k=cfg.retrieval.k, batch_size=cfg.index.query_batch_size,
                                   threads=cfg.index.threads)
            disco_core.runs.write_parquet(run, outputs[v])
            disco_core.runs.write_trec(run, outputs[f"{v}.trec"], tag=f"disco-{slug(v)}")
            info[v] = {"queries": len(run), "mean_results": sum(map(len, run.values())) / max(len(run), 1)}
            logger.info("retrieve: %s: %d queries", v, len(run))
        return info

    inputs = indexed.files + [queries[v] for v in variants]
    return run_stage("retrieve", folder, inputs, {"k": cfg.retrieval.k},
                     [retrieve.fn, disco_core.index, disco_core.runs], outputs, build, logger, force)


@task(name="evaluate", **TASK_OPTIONS)
def evaluate(cfg: Config, ingested: StageResult, encoded: StageResult, queries: StageResult,
             retrieved: StageResult, force: bool = False) -> StageResult:
    """Runs + qrels -> metrics.json, metrics.md, per_query.parquet, and a Prefect artifact."""
    logger = get_run_logger()
    folder = stage_folder(cfg, "evaluate")
    outputs = {"metrics": folder / "metrics.json", "table": folder / "metrics.md",
               "per_query": folder / "per_query.parquet"}
    variants = [v for v in queries.outputs if v != "queries"]

    def build():
        qrels = disco_core.evaluation.qrels_dict(schemas.read_table("qrels", ingested["qrels"]))
        runs = {v: disco_core.runs.read_parquet(retrieved[v]) for v in variants}
        ev = disco_core.evaluation.evaluate(qrels, runs, cfg.evaluation.metrics, cfg.evaluation.stat_test,
                                            cfg.evaluation.max_p)
        doc_nnz = encoded.info.get("doc_nonzeros")
        for v in variants:
            ev.extra[v] = {"q nnz": queries.info[v]["query_nonzeros"], "d nnz": doc_nnz}
        table = f"## {cfg.dataset.name}: retrieval with {cfg.encoder.model}\n\n" + ev.markdown(baseline=variants[0])
        write_json_atomic(outputs["metrics"], {**ev.to_dict(), "dataset": cfg.dataset.name,
                                               "model": cfg.encoder.model, "baseline": variants[0]})
        write_text_atomic(outputs["table"], table)
        import pyarrow.parquet as pq
        from disco_core.io import atomic_path

        with atomic_path(outputs["per_query"]) as tmp:
            pq.write_table(disco_core.evaluation.per_query_table(ev), tmp)
        return {"scores": ev.scores, "n_queries": ev.n_queries}

    inputs = [ingested["qrels"], encoded["doc_vectors"], *(queries[v] for v in variants),
              *(retrieved[v] for v in variants)]
    settings = {"metrics": cfg.evaluation.metrics, "stat_test": cfg.evaluation.stat_test,
                "max_p": cfg.evaluation.max_p}
    result = run_stage("evaluate", folder, inputs, settings, [evaluate.fn, disco_core.evaluation],
                       outputs, build, logger, force)
    table = outputs["table"].read_text()
    artifact_key = re.sub(r"[^a-z0-9-]+", "-", f"disco-metrics-{dataset_folder(cfg).name}".lower())
    create_markdown_artifact(key=artifact_key, markdown=table,
                             description="disco retrieval metrics")
    return result
