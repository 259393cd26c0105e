"""The document side: download, ingest, encode_corpus, index (one instance per dataset)."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import sys
from pathlib import Path

from pydantic import BaseModel

from disco_core import encoder as encoder_lib
from disco_core import schemas, vectors
from disco_core.datasets import registry
from disco_core import shards
from disco_core.fingerprint import model_fingerprint
from disco_core.io import write_json_atomic
from disco_core.models import resolve_model
from disco_core.sharded_index import ShardedIndex

from .codehash import code_digest
from .execute import Context
from .stage import measured, stage


def splade(cfg, model: str, max_length: int) -> encoder_lib.SpladeEncoder:
    """A SPLADE encoder with the configuration's performance settings."""
    e = cfg.encoder
    return encoder_lib.SpladeEncoder(model, max_length=max_length, batch_size=e.batch_size,
                                     token_budget=e.token_budget, device=e.device, threads=e.threads,
                                     sort_window=e.sort_window)


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
    shards: int = 1
    docs_per_second: float | None = measured()


@stage("encode_corpus", needs=("ingest",), result=EncodedCorpus,
       keys=("encoder.model", "encoder.doc_max_length", "encoder.sort_window"),
       outputs={"doc_vectors": "doc_vectors"})
def encode_corpus(ctx: Context) -> EncodedCorpus:
    """Corpus table -> SPLADE document vectors, a sealed shard file at a time (``doc_vectors/``):
    a killed run resumes at the next shard, a changed passage re-encodes its shard alone."""
    import time

    cfg = ctx.cfg.encoder
    folder = ctx.out("doc_vectors")
    folder.mkdir(parents=True, exist_ok=True)
    specs = shards.plan_shards(ctx.inputs["ingest"]["corpus"], cfg.shard_size)
    seal = _shard_seal(ctx)
    shards.remove_other_shards(folder, specs)
    todo = [s for s in specs if not shards.shard_done(s, shards.vector_path(folder, s), seal)]
    if len(todo) < len(specs):
        ctx.log.info("encode_corpus: %d of %d shards already sealed, resuming", len(specs) - len(todo), len(specs))
    start = time.perf_counter()
    if todo and ctx.cfg.run.dask_address:
        _encode_on_dask(ctx, todo, folder, seal)
    elif todo:
        enc = splade(ctx.cfg, cfg.model, cfg.doc_max_length)
        for spec in todo:
            shards.encode_shard(spec, enc, shards.vector_path(folder, spec), settings=seal,
                                progress=lambda d, n, s=spec: ctx.log.info("encode_corpus %s: %d/%d", s.name, d, n))
    encoded = sum(s.size for s in todo)
    sealed = [json.loads(shards.seal_path(shards.vector_path(folder, s)).read_text()) for s in specs]
    documents = sum(s["documents"] for s in sealed)
    shards.write_shard_list(folder, specs)
    return EncodedCorpus(documents=documents, shards=len(specs),
                         doc_nonzeros=sum(s["doc_nonzeros"] * s["documents"] for s in sealed) / max(documents, 1),
                         docs_per_second=encoded / max(time.perf_counter() - start, 1e-9) if encoded else None)


def corpus_vectors(result):
    """An ``encode_corpus`` result as one matrix and its ids (small corpora: training, fusion)."""
    return vectors.load_vector_files(shards.listed_shards(result["doc_vectors"]))


def corpus_doc_ids(result) -> list[str]:
    """An ``encode_corpus`` result's document ids in corpus order (the vectors left unread)."""
    return vectors.load_ids(shards.listed_shards(result["doc_vectors"]))


def _shard_seal(ctx: Context) -> dict:
    """What a shard's vectors depend on besides its rows: the encoder's settings, its weights'
    fingerprint and the code (a retrained model at the same path must not reuse sealed shards)."""
    e = ctx.cfg.encoder
    return {"model": e.model, "max_length": e.doc_max_length, "sort_window": e.sort_window,
            "weights": [model_fingerprint(name, resolved) for name, resolved in ctx.node.models],
            "code": code_digest(encode_corpus.build)[0]}


def _encode_on_dask(ctx: Context, todo, folder: Path, seal: dict) -> None:
    """The shards as tasks on the Dask cluster at ``run.dask_address``: one encoder per worker
    (kept loaded between shards), on the worker's GPU when it has one. Each shard is sealed by its
    worker, so shards finished before a failure are kept. The folder must be shared with the workers."""
    from distributed import as_completed

    e = ctx.cfg.encoder
    encoder = {"model": str(resolve_model(e.model)), "max_length": e.doc_max_length, "batch_size": e.batch_size,
               "token_budget": e.token_budget, "device": None if e.device == "cpu" else e.device,
               "sort_window": e.sort_window}
    with _dask_client(ctx.cfg.run.dask_address) as client:
        futures = [client.submit(shards.encode_shard_with, spec, str(shards.vector_path(folder, spec)), encoder,
                                 seal, key=f"encode-{ctx.key[:12]}-{spec.name}", pure=False) for spec in todo]
        for done, future in enumerate(as_completed(futures), 1):
            future.result()
            ctx.log.info("encode_corpus: %d/%d shards on Dask", done, len(todo))


def _dask_client(address: str):
    """A client of the cluster; inside a Dask worker (the stage itself runs there under the Dask
    task runner) the worker's own, which leaves the worker's thread while it waits: a stage
    waiting on its shards must not hold the slot they need."""
    from distributed import Client, get_worker, worker_client

    try:
        get_worker()
    except ValueError:
        return Client(address)
    return worker_client()


@encode_corpus.wire
def _(plan, ds):
    return {"ingest": plan.node("ingest", ds=ds)}


encode_corpus.models(lambda cfg, ds: document_encoder(cfg))


# ------------------------------------------------------------------ index
class Indexed(BaseModel):
    documents: int
    postings: int
    doc_nonzeros: float
    shards: int = 1


@stage("index", needs=("encode_corpus",), result=Indexed, keys=("index.engine",),
       outputs=lambda cfg, ds: {"index": cfg.index.engine})
def index(ctx: Context) -> Indexed:
    """Document vectors -> exact inverted index on disk, one memory-mapped index per shard, built
    from its vector file alone (memory: one shard); searched as one, with an exact merge."""
    built = ShardedIndex.build(ctx.out("index"), shards.listed_shards(ctx.inputs["encode_corpus"]["doc_vectors"]),
                               meta={"model": ctx.cfg.encoder.model})
    return Indexed(documents=built.n_docs, postings=built.nnz, doc_nonzeros=built.nnz / max(built.n_docs, 1),
                   shards=built.n_shards)


@index.wire
def _(plan, ds):
    return {"encode_corpus": plan.node("encode_corpus", ds=ds)}
