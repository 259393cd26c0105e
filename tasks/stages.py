"""The pipeline's stages as Prefect tasks.

The spine: download (registered remote datasets), ingest, encode_corpus, index, encode_queries,
retrieve, evaluate. DiSCo: rewrite (per teacher), score_teachers (per teacher), fuse, train, report.
Each wraps disco_core, writes under ``<work_dir>/<dataset>/<stage>/`` and is cached by
:func:`tasks.cache.run_stage` (Prefect's own result cache is off: our manifest decides)."""

from __future__ import annotations

import importlib
import inspect
import re
import shutil
import sys
import time
from pathlib import Path

from . import _env  # noqa: F401

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
from prefect import get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

import disco_core.conversation  # noqa: E402
import disco_core.datasets  # noqa: E402
import disco_core.distill  # noqa: E402
import disco_core.download  # noqa: E402
import disco_core.encoder  # noqa: E402
import disco_core.errors  # noqa: E402
import disco_core.evaluation  # noqa: E402
import disco_core.index  # noqa: E402
import disco_core.io  # noqa: E402
import disco_core.models  # noqa: E402
import disco_core.queries  # noqa: E402
import disco_core.report  # noqa: E402
import disco_core.rewriters  # noqa: E402
import disco_core.runs  # noqa: E402
import disco_core.schemas  # noqa: E402
import disco_core.teachers  # noqa: E402
import disco_core.vectors  # noqa: E402
from disco_core import datasets, schemas  # noqa: E402
from disco_core.config import Config  # noqa: E402
from disco_core.io import write_json_atomic, write_text_atomic  # noqa: E402

from .cache import StageResult, fingerprint, run_stage  # noqa: E402

STAGES = ("download", "ingest", "encode_corpus", "index", "encode_queries", "retrieve", "evaluate",
          "rewrite", "score_teachers", "fuse", "train", "report")
TASK_OPTIONS = dict(cache_policy=NO_CACHE, persist_result=False)


def dataset_folder(cfg: Config) -> Path:
    name = cfg.dataset.name + ("-" + "-".join(sorted(cfg.dataset.domains)) if cfg.dataset.domains else "")
    return cfg.work_path / name


def stage_folder(cfg: Config, stage: str) -> Path:
    return dataset_folder(cfg) / stage


def slug(variant: str) -> str:
    return variant.replace(":", "-").replace("/", "_")


def dataset_teacher(cfg: Config) -> str:
    """The teacher of the dataset's own rewrites (``human``, or e.g. ``mtrag-mixtral``)."""
    return datasets.get(cfg.dataset.name).rewrite_teacher


def resolved_variants(cfg: Config) -> list[str]:
    return [disco_core.queries.resolve_variant(v, dataset_teacher(cfg)) for v in cfg.evaluation.variants]


def publish(cfg: Config, kind: str, markdown_file: Path, description: str) -> None:
    """The stage's Markdown as a Prefect artifact, keyed per dataset (also on a cache hit)."""
    key = re.sub(r"[^a-z0-9-]+", "-", f"disco-{kind}-{dataset_folder(cfg).name}".lower())
    create_markdown_artifact(key=key, markdown=markdown_file.read_text(), description=description)


def _encoder(cfg: Config, max_length: int):
    e = cfg.encoder
    return disco_core.encoder.SpladeEncoder(e.model, max_length=max_length, batch_size=e.batch_size,
                                            token_budget=e.token_budget, device=e.device, threads=e.threads)


@task(name="download", **TASK_OPTIONS)
def download(cfg: Config, force: bool = False) -> StageResult:
    """A registered dataset's official files, fetched once into the shared data folder, verified."""
    logger = get_run_logger()
    spec = datasets.get(cfg.dataset.name)
    root = datasets.source_path(cfg.dataset.name, None, cfg.dataset.cache_dir)
    outputs = {f.name: root / f.name for f in spec.files}

    def build():
        datasets.download(cfg.dataset.name, cfg.dataset.cache_dir, cfg.dataset.mirror, log=logger.info)
        return {"folder": str(root), "files": len(spec.files)}

    # the key names what is fetched (URLs and checksums), not where from (a mirror serves the same)
    settings = {"files": [[f.name, f.url, f.size, f.md5, f.sha256] for f in spec.files]}
    return run_stage("download", stage_folder(cfg, "download"), [], settings, [download.fn, disco_core.download],
                     outputs, build, logger, force)


@task(name="ingest", **TASK_OPTIONS)
def ingest(cfg: Config, force: bool = False) -> StageResult:
    """Dataset source files -> corpus, turns, qrels and rewrites tables, plus a validation report."""
    logger = get_run_logger()
    folder = stage_folder(cfg, "ingest")
    outputs = {name: folder / f"{name}.parquet" for name in datasets.TABLES}
    outputs["validation"] = folder / "validation.json"

    def build():
        d = cfg.dataset
        tables = datasets.load(d.name, d.path, d.domains, cache_dir=d.cache_dir, mirror=d.mirror,
                               collection=d.collection)
        for name, table in tables.items():
            if table is not None:
                schemas.write_table(name, table, outputs[name])
        if tables.corpus is None:  # a large collection: streamed in chunks
            rows = schemas.write_table_chunks("corpus", tables.corpus_chunks(), outputs["corpus"])
            logger.info("ingest: streamed %d passages", rows)
        report = datasets.validation_report(tables, outputs["corpus"])
        write_json_atomic(outputs["validation"], report)
        logger.info("ingest: validation report %s", report)
        return report

    inputs = datasets.source_files(cfg.dataset.name, cfg.dataset.path, cfg.dataset.cache_dir)
    settings = cfg.dataset.model_dump(exclude={"mirror", "cache_dir"})
    return run_stage("ingest", folder, inputs, settings, [ingest.fn, disco_core.datasets.registry,
                     *_loader_modules(cfg.dataset.name), disco_core.schemas, disco_core.io],
                     outputs, build, logger, force)


def _loader_modules(name: str) -> list:
    """The dataset's module and the ``disco_core.datasets`` helpers it uses (``_trec``, ...), so a
    change to another dataset's module leaves this one's ingest a cache hit."""
    loader = datasets.get(name).loader
    module = sys.modules[getattr(loader, "func", loader).__module__]
    # also the helpers imported inside functions (``from . import _irds``, imported lazily)
    names = {a or b for a, b in re.findall(r"from \.(?:(_\w+) import| import (_\w+))", inspect.getsource(module))}
    return [module, *(importlib.import_module(f"disco_core.datasets.{n}") for n in sorted(names))]


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
        schemas.write_table("per_query", disco_core.evaluation.per_query_table(ev), outputs["per_query"])
        return {"scores": ev.scores, "n_queries": ev.n_queries}

    inputs = [ingested["qrels"], encoded["doc_vectors"], *(queries[v] for v in variants),
              *(retrieved[v] for v in variants)]
    settings = {"metrics": cfg.evaluation.metrics, "stat_test": cfg.evaluation.stat_test,
                "max_p": cfg.evaluation.max_p}
    result = run_stage("evaluate", folder, inputs, settings, [evaluate.fn, disco_core.evaluation],
                       outputs, build, logger, force)
    publish(cfg, "metrics", outputs["table"], "disco retrieval metrics")
    return result


# ---------------------------------------------------------------------------- distillation
def teacher_names(cfg: Config) -> list[str]:
    names = [disco_core.rewriters.teacher_name(t, dataset_teacher(cfg)) for t in cfg.teachers]
    if len(set(names)) != len(names):
        raise disco_core.errors.ConfigError(f"teacher names must be unique: {names}")
    return names


# Settings of a teacher that change its rewrites (not speed: concurrency, timeouts, batch size).
_TEACHER_OUTPUT_SETTINGS = ("name", "backend", "model", "gguf_file", "path", "base_url", "max_new_tokens",
                            "history_turns", "answer_chars")


@task(name="rewrite", **TASK_OPTIONS)
def rewrite(cfg: Config, ingested: StageResult, teacher_index: int, force: bool = False) -> StageResult:
    """One teacher's rewrites of every turn, journaled as they arrive (a rerun resumes)."""
    logger = get_run_logger()
    teacher = cfg.teachers[teacher_index]
    name = disco_core.rewriters.teacher_name(teacher, dataset_teacher(cfg))
    folder = stage_folder(cfg, "rewrite") / slug(name)
    outputs = {"rewrites": folder / "rewrites.parquet"}
    settings = {k: getattr(teacher, k) for k in _TEACHER_OUTPUT_SETTINGS}

    def build():
        turns = schemas.read_table("turns", ingested["turns"]).to_pylist()
        dataset_rows = schemas.read_table("rewrites", ingested["rewrites"]).to_pylist()
        rewriter = disco_core.rewriters.make_rewriter(teacher, dataset_teacher(cfg), dataset_rows,
                                                      device=cfg.encoder.device)
        journal, before = None, 0
        if rewriter.generates:
            # one journal per model and prompt: another prompt never reuses these rewrites; a
            # forced rewrite starts it over
            journal = disco_core.rewriters.RewriteJournal(
                folder / f"journal-{disco_core.io.short_hash([settings, rewriter.settings()])}.jsonl")
            if force:
                journal.reset()
            before = len(journal.load())
        rows = disco_core.rewriters.run_rewriter(rewriter, turns, journal)
        timed = [r["seconds"] for r in rows if r.get("seconds") is not None]
        table = schemas.to_table("rewrites", [{**r, "teacher": name, "model": rewriter.model,
                                               "prompt_hash": rewriter.prompt_hash} for r in rows])
        schemas.write_table("rewrites", table, outputs["rewrites"])
        statuses = dict(zip(*table.group_by("status").aggregate([([], "count_all")]).to_pydict().values()))
        logger.info("rewrite %s: %d turns (%d resumed from the journal), statuses %s", name, len(rows), before, statuses)
        return {"teacher": name, "turns": len(rows), "resumed": before, "status": statuses,
                "llm_calls_per_turn": rewriter.llm_calls_per_turn,
                # wall time per turn over every session that wrote the journal
                "seconds_per_turn": sum(timed) / len(timed) if timed and rewriter.llm_calls_per_turn else None}

    inputs = [ingested["turns"], ingested["rewrites"]] + ([Path(teacher.path)] if teacher.path else [])
    return run_stage(f"rewrite[{name}]", folder, inputs, settings, [rewrite.fn, disco_core.rewriters],
                     outputs, build, logger, force)


@task(name="score_teachers", **TASK_OPTIONS)
def score_teacher(cfg: Config, rewritten: StageResult, indexed: StageResult, force: bool = False) -> StageResult:
    """SPLADE on one teacher's rewrites, top-k from the shared index: teacher_scores.parquet."""
    logger = get_run_logger()
    name = rewritten.info["teacher"]
    folder = stage_folder(cfg, "teacher_scores") / slug(name)
    outputs = {"teacher_scores": folder / "teacher_scores.parquet", "vectors": folder / "query_vectors.npz"}

    def build():
        table = schemas.read_table("rewrites", rewritten["rewrites"])
        encoder = _encoder(cfg, cfg.encoder.query_max_length)
        matrix = encoder.encode(table["text"].to_pylist())
        qids = table["query_id"].to_pylist()
        disco_core.vectors.save_vectors(outputs["vectors"], matrix, qids)
        index = disco_core.index.InvertedIndex.load(indexed["index"])
        scores = disco_core.teachers.teacher_scores(index, matrix, qids, name, k=cfg.distill.teacher_k,
                                                    batch_size=cfg.index.query_batch_size, threads=cfg.index.threads)
        schemas.write_table("teacher_scores", scores, outputs["teacher_scores"])
        logger.info("score_teachers %s: %d queries, %d scores", name, len(qids), scores.num_rows)
        return {"teacher": name, "queries": len(qids), "query_nonzeros": disco_core.vectors.mean_nonzeros(matrix)}

    settings = {"model": cfg.encoder.model, "query_max_length": cfg.encoder.query_max_length,
                "k": cfg.distill.teacher_k}
    return run_stage(f"score_teachers[{name}]", folder, rewritten.files + indexed.files, settings,
                     [score_teacher.fn, disco_core.teachers, disco_core.index, disco_core.encoder],
                     outputs, build, logger, force)


@task(name="fuse", **TASK_OPTIONS)
def fuse_teachers(cfg: Config, scored: list[StageResult], encoded: StageResult, force: bool = False) -> StageResult:
    """Teachers combined at the score level on the union of their candidates: targets.parquet."""
    logger = get_run_logger()
    folder = stage_folder(cfg, "fuse")
    outputs = {"targets": folder / "targets.parquet"}

    def build():
        scores = pa.concat_tables([schemas.read_table("teacher_scores", s["teacher_scores"]) for s in scored])
        vectors = {s.info["teacher"]: disco_core.vectors.load_vectors(s["vectors"]) for s in scored}
        doc_matrix, doc_ids = disco_core.vectors.load_vectors(encoded["doc_vectors"])
        targets = disco_core.teachers.fuse(scores, vectors, doc_matrix, doc_ids, cfg.distill.fusion,
                                           k=cfg.distill.teacher_k)
        schemas.write_table("targets", targets, outputs["targets"])
        logger.info("fuse: %s over %s: %d targets", cfg.distill.fusion, list(vectors), targets.num_rows)
        return {"fusion": cfg.distill.fusion, "teachers": list(vectors), "targets": targets.num_rows}

    inputs = [f for s in scored for f in s.files] + [encoded["doc_vectors"]]
    return run_stage("fuse", folder, inputs, {"fusion": cfg.distill.fusion, "k": cfg.distill.teacher_k},
                     [fuse_teachers.fn, disco_core.teachers], outputs, build, logger, force)


def student_inputs(cfg: Config, turns: list[dict], tokenizer) -> list[str]:
    formatter = disco_core.conversation.ConversationFormatter(tokenizer, cfg.train.max_length, cfg.conversation.answers)
    return formatter.format_many(turns)


def held_out(cfg: Config, turns: list[dict]) -> set[str]:
    return disco_core.report.split_conversations([t["conversation_id"] for t in turns], cfg.distill.test_fraction,
                                                 cfg.distill.split_seed)


@task(name="train", **TASK_OPTIONS)
def train_student(cfg: Config, ingested: StageResult, encoded: StageResult, fused: StageResult,
                  force: bool = False) -> StageResult:
    """The student query encoder, trained on the cached targets of the training conversations."""
    logger = get_run_logger()
    folder = stage_folder(cfg, "train")
    outputs = {"model": folder / "model", "log": folder / "train_log.json"}
    settings = {"train": cfg.train.model_dump(), "model": cfg.encoder.model, "answers": cfg.conversation.answers,
                "split": [cfg.distill.test_fraction, cfg.distill.split_seed]}
    inputs = [ingested["turns"], ingested["qrels"], encoded["doc_vectors"], fused["targets"]]

    def build():
        turns = schemas.read_table("turns", ingested["turns"]).to_pylist()
        test = held_out(cfg, turns)
        train_turns = [t for t in turns if t["conversation_id"] not in test]
        doc_matrix, doc_ids = disco_core.vectors.load_vectors(encoded["doc_vectors"])
        targets = disco_core.teachers.target_lists(schemas.read_table("targets", fused["targets"]))
        qrels = disco_core.evaluation.qrels_dict(schemas.read_table("qrels", ingested["qrels"]))
        # Checkpoints resume the same run only (same settings, same input files: a killed run).
        # Other inputs or --force start from scratch; earlier runs' checkpoints are removed.
        run_dir = folder / f"run-{disco_core.io.short_hash([settings, [fingerprint(p) for p in inputs]])}"
        for old in folder.glob("run-*"):
            if force or old != run_dir:
                shutil.rmtree(old)
        trainer = disco_core.distill.Trainer(cfg.encoder.model, cfg.train, doc_matrix, run_dir,
                                             device=cfg.encoder.device)
        texts = student_inputs(cfg, train_turns, trainer.student.tokenizer)
        position = {d: i for i, d in enumerate(doc_ids)}
        examples = disco_core.distill.build_examples([t["query_id"] for t in train_turns], texts, targets,
                                                     qrels, position)
        logger.info("train: %d examples from %d training turns (%d conversations held out)",
                    len(examples), len(train_turns), len(test))
        history = trainer.train(examples, progress=lambda r: logger.info("train: %s", r))
        trainer.save_final(outputs["model"])
        write_json_atomic(outputs["log"], history)
        return {"examples": len(examples), "steps": trainer.step, "resumed_epochs": trainer.resumed_epochs,
                "held_out_conversations": len(test),
                "final": history[-1] if history else {}}

    return run_stage("train", folder, inputs, settings, [train_student.fn, disco_core.distill, disco_core.teachers,
                     disco_core.conversation, disco_core.encoder], outputs, build, logger, force)


@task(name="report", **TASK_OPTIONS)
def report(cfg: Config, ingested: StageResult, indexed: StageResult, queries: StageResult,
           retrieved: StageResult, rewritten: list[StageResult], scored: list[StageResult],
           fused: StageResult, trained: StageResult, force: bool = False) -> StageResult:
    """Student vs teachers vs baselines on the held-out conversations: Markdown, JSON, plot, artifact."""
    logger = get_run_logger()
    folder = stage_folder(cfg, "report")
    outputs = {"report": folder / "report.md", "json": folder / "report.json", "plot": folder / "depth.png"}

    def build():
        R = disco_core.report
        turns = schemas.read_table("turns", ingested["turns"]).to_pylist()
        test = held_out(cfg, turns)
        test_turns = [t for t in turns if t["conversation_id"] in test]
        test_ids = {t["query_id"] for t in test_turns}
        turn_of = {t["query_id"]: t["turn"] for t in test_turns}
        qrels = {q: d for q, d in disco_core.evaluation.qrels_dict(
            schemas.read_table("qrels", ingested["qrels"])).items() if q in test_ids}
        index = disco_core.index.InvertedIndex.load(indexed["index"])
        k = cfg.retrieval.k

        def restrict(run):
            return {q: hits for q, hits in run.items() if q in test_ids}

        def nnz_of(path):
            matrix, ids = disco_core.vectors.load_vectors(path)
            return {q: float(n) for q, n in zip(ids, matrix.getnnz(axis=1)) if q in test_ids}

        def latency(encoder, texts, max_length):
            sample = texts[:32]
            start = time.perf_counter()
            for text in sample:
                index.search(encoder.encode([text], max_length=max_length), k=k)
            return 1000 * (time.perf_counter() - start) / max(len(sample), 1)

        # the student: trained query encoder on the formatted conversation
        student = disco_core.encoder.SpladeEncoder(str(trained["model"]), max_length=cfg.train.max_length,
                                                   device=cfg.encoder.device)
        texts = student_inputs(cfg, test_turns, student.tokenizer)
        matrix = student.encode(texts)
        qids = [t["query_id"] for t in test_turns]
        rows = [R.Row("student (DiSCo)", index.search_ids(matrix, qids, k=k), "student", 0,
                      {q: float(n) for q, n in zip(qids, matrix.getnnz(axis=1))},
                      latency(student, texts, cfg.train.max_length))]
        base = _encoder(cfg, cfg.encoder.query_max_length)
        for r, s in zip(rewritten, scored):
            name = r.info["teacher"]
            table = schemas.read_table("teacher_scores", s["teacher_scores"])
            run = restrict(disco_core.runs.from_table(table.drop_columns(["teacher"])))
            rewrites = schemas.read_table("rewrites", r["rewrites"]).to_pydict()
            text_of = dict(zip(rewrites["query_id"], rewrites["text"]))
            ms = latency(base, [text_of[q] for q in qids if q in text_of], cfg.encoder.query_max_length)
            per_turn, calls = r.info.get("seconds_per_turn"), r.info["llm_calls_per_turn"]
            # rewrites made elsewhere by a model: their rewriting time is unknown, so no latency
            ms = ms + 1000 * per_turn if per_turn else (None if calls else ms)
            rows.append(R.Row(f"teacher: {name}", run, "teacher", calls, nnz_of(s["vectors"]), ms))
        if len(scored) > 1 and cfg.distill.fusion != "per-teacher":
            targets = schemas.read_table("targets", fused["targets"])
            run = restrict(disco_core.runs.from_table(targets.drop_columns(["source"])))
            rows.append(R.Row(f"fused teachers ({cfg.distill.fusion})", run, "fused",
                              sum(r.info["llm_calls_per_turn"] for r in rewritten)))
        for variant, name in (("last_turn", "last turn"), ("conversation", "full conversation (untrained)")):
            if variant in retrieved.outputs:
                run = restrict(disco_core.runs.read_parquet(retrieved[variant]))
                rows.append(R.Row(name, run, "baseline", 0, nnz_of(queries[variant])))
        ev, summary = R.build_report(rows, qrels, turn_of, cfg.evaluation.metrics, cfg.evaluation.stat_test,
                                     cfg.evaluation.max_p)
        title = f"DiSCo on {dataset_folder(cfg).name}: {len(test)} held-out conversations"
        text = R.markdown(ev, summary, title)
        write_text_atomic(outputs["report"], text)
        write_json_atomic(outputs["json"], {**ev.to_dict(), **summary})
        R.plot(summary, outputs["plot"], title)
        logger.info("report:\n%s", text)
        return {"scores": ev.scores, "best_teacher": summary["best_teacher"]}

    # everything build() reads (the student model too, not only its training log)
    inputs = [ingested["turns"], ingested["qrels"], *indexed.files, *queries.files, *retrieved.files,
              *(f for r in rewritten for f in r.files), *(f for s in scored for f in s.files),
              fused["targets"], *trained.files]
    settings = {"metrics": cfg.evaluation.metrics, "k": cfg.retrieval.k, "stat_test": cfg.evaluation.stat_test,
                "max_p": cfg.evaluation.max_p, "split": [cfg.distill.test_fraction, cfg.distill.split_seed]}
    result = run_stage("report", folder, inputs, settings, [report.fn, disco_core.report, disco_core.evaluation],
                       outputs, build, logger, force)
    publish(cfg, "report", outputs["report"], "DiSCo report")
    return result
