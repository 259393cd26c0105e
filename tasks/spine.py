"""The document side: download, ingest, encode_corpus, index (one instance per dataset)."""

from __future__ import annotations

import importlib
import inspect
import re
import sys

from pydantic import BaseModel

from disco_core import encoder as encoder_lib
from disco_core import schemas, vectors
from disco_core.datasets import registry
from disco_core.index import InvertedIndex
from disco_core.io import write_json_atomic
from disco_core.models import resolve_model

from .execute import Context
from .stage import measured, stage


def splade(cfg, model: str, max_length: int) -> encoder_lib.SpladeEncoder:
    """A SPLADE encoder with the configuration's performance settings."""
    e = cfg.encoder
    return encoder_lib.SpladeEncoder(model, max_length=max_length, batch_size=e.batch_size,
                                     token_budget=e.token_budget, device=e.device, threads=e.threads)


def document_encoder(cfg) -> list[tuple[str, str | None]]:
    """The models list of stages that use the document encoder (fingerprinted into their keys)."""
    return [(cfg.encoder.model, resolve_model(cfg.encoder.model))]


# ------------------------------------------------------------------ download
class Downloaded(BaseModel):
    folder: str
    files: int


def _remote(ds) -> bool:
    return bool(ds.spec.files) and not ds.config.path


def _downloaded_files(cfg, ds) -> dict[str, str]:
    # the files in the shared data folder (outside the work dir): absolute paths
    root = registry.source_path(ds.name, None, ds.config.cache_dir)
    return {f.name: str(root / f.name) for f in ds.spec.files}


@stage("download", result=Downloaded, outputs=_downloaded_files, retries=2)
def download(ctx: Context) -> Downloaded:
    """A registered dataset's official files, fetched once into the shared data folder, verified."""
    d = ctx.params["ds"].config
    root = registry.download(d.name, d.cache_dir, d.mirror, log=ctx.log.info)
    return Downloaded(folder=str(root), files=len(ctx.params["ds"].spec.files))


@download.settings
def _(cfg, ds):
    # what is fetched (URLs and checksums), not where from: a mirror serves the same files
    return {"files": [[f.name, f.url, f.size, f.md5, f.sha256] for f in ds.spec.files]}




# ------------------------------------------------------------------ ingest
class Ingested(BaseModel):
    conversations: int
    turns: int
    turns_with_positive: int
    passages: int
    qrels_by_grade: dict[str, int]
    rewrites_by_teacher: dict[str, int]
    judged_passages_missing_from_corpus: int
    turns_with_judged_passages_missing: int
    empty_utterances: int
    duplicate_ids: str


@stage("ingest", needs=("download",), result=Ingested,
       outputs={**{t: f"{t}.parquet" for t in registry.TABLES}, "validation": "validation.json"})
def ingest(ctx: Context) -> Ingested:
    """Dataset source files -> corpus, turns, qrels and rewrites tables, plus a validation report."""
    d = ctx.params["ds"].config
    tables = registry.load(d.name, d.path, d.domains, cache_dir=d.cache_dir, mirror=d.mirror, collection=d.collection)
    for name, table in tables.items():
        if table is not None:
            schemas.write_table(name, table, ctx.out(name))
    if tables.corpus is None:  # a large collection: streamed in chunks
        rows = schemas.write_table_chunks("corpus", tables.corpus_chunks(), ctx.out("corpus"))
        ctx.log.info("ingest: streamed %d passages", rows)
    report = registry.validation_report(tables, ctx.out("corpus"))
    write_json_atomic(ctx.out("validation"), report)
    ctx.log.info("ingest: validation report %s", report)
    return Ingested(**report)


@ingest.wire
def _(plan, ds):
    return {"download": plan.node("download", ds=ds)} if _remote(ds) else {}


@ingest.settings
def _(cfg, ds):
    return {"dataset": ds.config.model_dump(exclude={"mirror", "cache_dir"}),
            "loader": _loader_code(ds.name)}


@ingest.sources
def _(cfg, ds):
    return [] if _remote(ds) else registry.source_files(ds.name, ds.config.path, ds.config.cache_dir)




def _loader_code(name: str) -> str:
    """The dataset's own module and the ``_helpers`` it uses, by content: the build reaches the
    registry only, so another dataset's module changes no key of this one."""
    from tasks.codehash import module_closure

    loader = registry.get(name).loader
    module = sys.modules[getattr(loader, "func", loader).__module__]
    helpers = {a or b for a, b in re.findall(r"from \.(?:(_\w+) import| import (_\w+))", inspect.getsource(module))}
    names = [module.__name__, *(importlib.import_module(f"disco_core.datasets.{n}").__name__ for n in sorted(helpers))]
    closure = module_closure(names)
    from disco_core.io import short_hash

    return short_hash({k: v.decode() for k, v in sorted(closure.items())}, 64)


# ------------------------------------------------------------------ encode_corpus
class EncodedCorpus(BaseModel):
    documents: int
    doc_nonzeros: float
    docs_per_second: float | None = measured()


@stage("encode_corpus", needs=("ingest",), result=EncodedCorpus, keys=("encoder.model", "encoder.doc_max_length"),
       outputs={"doc_vectors": "doc_vectors.npz", "doc_ids": "doc_vectors.ids.json"})
def encode_corpus(ctx: Context) -> EncodedCorpus:
    """Corpus table -> SPLADE document vectors (CSR ``doc_vectors.npz`` + ids)."""
    import time

    corpus = schemas.read_table("corpus", ctx.inputs["ingest"]["corpus"]).to_pydict()
    texts = [encoder_lib.document_text(t, x) for t, x in zip(corpus["title"], corpus["text"])]
    enc = splade(ctx.cfg, ctx.cfg.encoder.model, ctx.cfg.encoder.doc_max_length)
    start = time.perf_counter()
    matrix = enc.encode(texts, progress=lambda d, n: ctx.log.info("encode_corpus: %d/%d documents", d, n))
    rate = len(texts) / max(time.perf_counter() - start, 1e-9)
    vectors.save_vectors(ctx.out("doc_vectors"), matrix, corpus["doc_id"])
    return EncodedCorpus(documents=len(texts), doc_nonzeros=vectors.mean_nonzeros(matrix), docs_per_second=rate)


@encode_corpus.wire
def _(plan, ds):
    return {"ingest": plan.node("ingest", ds=ds)}


encode_corpus.models(lambda cfg, ds: document_encoder(cfg))


# ------------------------------------------------------------------ index
class Indexed(BaseModel):
    documents: int
    postings: int
    doc_nonzeros: float


@stage("index", needs=("encode_corpus",), result=Indexed, keys=("index.engine",),
       outputs=lambda cfg, ds: {"index": cfg.index.engine})
def index(ctx: Context) -> Indexed:
    """Document vectors -> exact inverted index on disk."""
    matrix, doc_ids = vectors.load_vectors(ctx.inputs["encode_corpus"]["doc_vectors"])
    built = InvertedIndex.build(matrix, doc_ids, meta={"model": ctx.cfg.encoder.model})
    built.save(ctx.out("index"))
    return Indexed(documents=built.n_docs, postings=built.nnz, doc_nonzeros=built.nnz / max(built.n_docs, 1))


@index.wire
def _(plan, ds):
    return {"encode_corpus": plan.node("encode_corpus", ds=ds)}
