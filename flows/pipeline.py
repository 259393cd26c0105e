"""The disco pipeline as Prefect flows.

``disco_pipeline`` runs every stage; each ``<stage>_flow`` runs the stages up to that one (the
upstream ones are cache hits when their outputs are fresh) — "rerun a single stage" is
``disco run <stage>`` (add ``--force <stage>`` to rerun it although it is fresh).
Flows take JSON-able parameters (a config path and ``section.key=value`` overrides), so the same
call works from the CLI, from ``prefect deployment run`` and from a schedule.
"""

from __future__ import annotations

import tasks  # noqa: F401  (environment defaults before prefect is imported)

from prefect import flow, get_run_logger

from disco_core.config import Config, load_config
from tasks import stages
from tasks.cache import StageResult

STAGES = stages.STAGES


def run_until(cfg: Config, until: str = "report", force: tuple[str, ...] = ()) -> dict[str, StageResult]:
    """Run the stages in order up to ``until``; ``force`` names stages to rerun even when fresh.

    Per-teacher stages are keyed ``rewrite[<teacher>]`` and ``score_teachers[<teacher>]``."""
    if until not in STAGES:
        raise ValueError(f"unknown stage {until!r}; stages: {', '.join(STAGES)}")
    for name in force:
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r} in force; stages: {', '.join(STAGES)}")
    wanted = set(STAGES[: STAGES.index(until) + 1])
    f = {name: name in force for name in STAGES}
    done: dict[str, StageResult] = {}
    if stages.datasets.get(cfg.dataset.name).files and not cfg.dataset.path:
        done["download"] = stages.download(cfg, force=f["download"])
    if until == "download":
        return done
    done["ingest"] = stages.ingest(cfg, force=f["ingest"])
    if wanted & {"encode_corpus", "index", "retrieve", "evaluate", "score_teachers", "fuse", "train", "report"}:
        done["encode_corpus"] = stages.encode_corpus(cfg, done["ingest"], force=f["encode_corpus"])
        done["index"] = stages.build_index(cfg, done["encode_corpus"], force=f["index"])
    if wanted & {"encode_queries", "retrieve", "evaluate", "report"}:
        done["encode_queries"] = stages.encode_queries(cfg, done["ingest"], force=f["encode_queries"])
    if wanted & {"retrieve", "evaluate", "report"}:
        done["retrieve"] = stages.retrieve(cfg, done["index"], done["encode_queries"], force=f["retrieve"])
    if "evaluate" in wanted:
        done["evaluate"] = stages.evaluate(cfg, done["ingest"], done["encode_corpus"], done["encode_queries"],
                                           done["retrieve"], force=f["evaluate"])
    rewritten, scored = [], []
    if wanted & {"rewrite", "score_teachers", "fuse", "train", "report"}:
        stages.teacher_names(cfg)  # unique names, before any work
        for i in range(len(cfg.teachers)):
            r = stages.rewrite(cfg, done["ingest"], i, force=f["rewrite"])
            done[f"rewrite[{r.info['teacher']}]"] = r
            rewritten.append(r)
    if wanted & {"score_teachers", "fuse", "train", "report"}:
        for r in rewritten:
            s = stages.score_teacher(cfg, r, done["index"], force=f["score_teachers"])
            done[f"score_teachers[{r.info['teacher']}]"] = s
            scored.append(s)
    if wanted & {"fuse", "train", "report"}:
        done["fuse"] = stages.fuse_teachers(cfg, scored, done["encode_corpus"], force=f["fuse"])
    if wanted & {"train", "report"}:
        done["train"] = stages.train_student(cfg, done["ingest"], done["encode_corpus"], done["fuse"], force=f["train"])
    if "report" in wanted:
        done["report"] = stages.report(cfg, done["ingest"], done["index"], done["encode_queries"], done["retrieve"],
                                       rewritten, scored, done["fuse"], done["train"], force=f["report"])
    logger = get_run_logger()
    logger.info("stages: %s", ", ".join(f"{n}={'hit' if r.cache_hit else 'ran'}" for n, r in done.items()))
    return done


def _summary(done: dict[str, StageResult]) -> dict:
    return {name: {"cache_hit": r.cache_hit, "folder": str(r.folder), "info": r.info} for name, r in done.items()}


def _run(until: str, config_path: str | None, overrides: list[str] | None, force: list[str] | None) -> dict:
    cfg = load_config(config_path, overrides or [])
    return _summary(run_until(cfg, until, tuple(force or ())))


@flow(name="disco-pipeline", log_prints=True)
def disco_pipeline(config_path: str | None = None, overrides: list[str] | None = None,
                   force: list[str] | None = None) -> dict:
    """Datasets to the DiSCo report: every stage, each a cache hit when fresh."""
    return _run("report", config_path, overrides, force)


@flow(name="disco-download")
def download_flow(config_path: str | None = None, overrides: list[str] | None = None,
                  force: list[str] | None = None) -> dict:
    """Fetch a registered dataset's official files (resumable, verified; a second run fetches nothing)."""
    return _run("download", config_path, overrides, force)


@flow(name="disco-ingest")
def ingest_flow(config_path: str | None = None, overrides: list[str] | None = None,
                force: list[str] | None = None) -> dict:
    return _run("ingest", config_path, overrides, force)


@flow(name="disco-encode-corpus")
def encode_corpus_flow(config_path: str | None = None, overrides: list[str] | None = None,
                       force: list[str] | None = None) -> dict:
    return _run("encode_corpus", config_path, overrides, force)


@flow(name="disco-index")
def index_flow(config_path: str | None = None, overrides: list[str] | None = None,
               force: list[str] | None = None) -> dict:
    return _run("index", config_path, overrides, force)


@flow(name="disco-encode-queries")
def encode_queries_flow(config_path: str | None = None, overrides: list[str] | None = None,
                        force: list[str] | None = None) -> dict:
    return _run("encode_queries", config_path, overrides, force)


@flow(name="disco-retrieve")
def retrieve_flow(config_path: str | None = None, overrides: list[str] | None = None,
                  force: list[str] | None = None) -> dict:
    return _run("retrieve", config_path, overrides, force)


@flow(name="disco-evaluate")
def evaluate_flow(config_path: str | None = None, overrides: list[str] | None = None,
                  force: list[str] | None = None) -> dict:
    """The evaluation run (scheduled in prefect.yaml): refreshes whatever is stale, then evaluates."""
    return _run("evaluate", config_path, overrides, force)


@flow(name="disco-rewrite")
def rewrite_flow(config_path: str | None = None, overrides: list[str] | None = None,
                 force: list[str] | None = None) -> dict:
    return _run("rewrite", config_path, overrides, force)


@flow(name="disco-score-teachers")
def score_teachers_flow(config_path: str | None = None, overrides: list[str] | None = None,
                        force: list[str] | None = None) -> dict:
    return _run("score_teachers", config_path, overrides, force)


@flow(name="disco-fuse")
def fuse_flow(config_path: str | None = None, overrides: list[str] | None = None,
              force: list[str] | None = None) -> dict:
    return _run("fuse", config_path, overrides, force)


@flow(name="disco-train")
def train_flow(config_path: str | None = None, overrides: list[str] | None = None,
               force: list[str] | None = None) -> dict:
    return _run("train", config_path, overrides, force)


@flow(name="disco-report")
def report_flow(config_path: str | None = None, overrides: list[str] | None = None,
                force: list[str] | None = None) -> dict:
    return _run("report", config_path, overrides, force)


FLOWS = {
    "pipeline": disco_pipeline,
    "download": download_flow,
    "ingest": ingest_flow,
    "encode_corpus": encode_corpus_flow,
    "index": index_flow,
    "encode_queries": encode_queries_flow,
    "retrieve": retrieve_flow,
    "evaluate": evaluate_flow,
    "rewrite": rewrite_flow,
    "score_teachers": score_teachers_flow,
    "fuse": fuse_flow,
    "train": train_flow,
    "report": report_flow,
}
