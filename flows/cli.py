"""``disco``: run the pipeline, some stages, or a sweep, with a config file and overrides.

    disco run                         # evaluation and the DiSCo report, default config (embedded)
    disco run -c data/configs/mtrag.yaml --set retrieval.k=100
    disco run encode_queries --force encode_queries
    disco sweep -c data/configs/sweeps/mtrag-lodo.yaml
    disco compare work/sweeps/recipe-seeds recipe   # a sweep axis's values compared on dev, by depth
    disco stages                      # the stages, as declared
    disco students                    # the students trained in the work dir
    disco package NAME                # a student as a sentence-transformers folder with a model card
    disco publish NAME me/my-student  # ... pushed to the Hugging Face hub
    disco datasets                    # the registry
    disco config -c my.yaml           # the resolved configuration

A mistake (an unknown stage or setting, bad data) prints one line naming it and exits with 2;
``--debug`` shows the traceback too.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import tasks  # noqa: F401  (environment defaults, stage declarations)
from disco_core.errors import DiscoError


def _error_names(cls: type = DiscoError) -> set[str]:
    return {cls.__name__}.union(*(_error_names(c) for c in cls.__subclasses__()))


class _QuietUserErrors(logging.Filter):
    """Drop what Prefect logs about a user mistake (a DiscoError: its traceback, the failed task
    and flow states): the CLI prints the one line that names it."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, DiscoError):
            return False
        if record.levelno >= logging.ERROR or "Finished in state Failed" in record.getMessage():
            message = record.getMessage()
            return not any(f"{name}:" in message or f"{name}(" in message for name in _error_names())
        return True


def _quiet_prefect() -> None:
    quiet = _QuietUserErrors()
    for name in ("prefect", "prefect.task_runs", "prefect.flow_runs", "prefect.task_engine", "prefect.flow_engine"):
        logging.getLogger(name).addFilter(quiet)
    for handler in logging.getLogger("prefect").handlers:
        handler.addFilter(quiet)


def _parser() -> argparse.ArgumentParser:
    from tasks.stage import STAGES

    parser = argparse.ArgumentParser(prog="disco", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the pipeline, or some stages and what they need")
    run.add_argument("stages", nargs="*", metavar="STAGE",
                     help=f"stages (every instance) or instance ids: {', '.join(STAGES)}")
    sweep = sub.add_parser("sweep", help="run a sweep file: a grid of pipelines, one leaderboard")
    config = sub.add_parser("config", help="print the resolved configuration")
    for p in (run, sweep, config):
        p.add_argument("-c", "--config", required=p is sweep, help="YAML config (sweep: the sweep file)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a setting, e.g. --set retrieval.k=100 (repeatable)")
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    for p in (run, sweep):
        p.add_argument("--force", action="append", default=[], metavar="STAGE",
                       help="rerun this stage (or instance) although it is fresh (repeatable)")
    sweep.add_argument("--dask", metavar="ADDRESS", help="run the cells on this Dask scheduler")
    compare = sub.add_parser("compare", help="a finished sweep's axis: each value against a reference on dev "
                             "(paired over the other axes), test beside, and by turn depth")
    compare.add_argument("sweep", help="the sweep's folder (<work_dir>/sweeps/<name>)")
    compare.add_argument("axis", help="the axis to compare (e.g. recipe)")
    compare.add_argument("--reference", help="the value compared against (default: the axis's first)")
    sub.add_parser("stages", help="list the stages as declared")
    students = sub.add_parser("students", help="list the students trained in a work dir")
    students.add_argument("-c", "--config", help="YAML config (its work_dir)")
    students.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    sub.add_parser("datasets", help="list the registered datasets")
    pack = sub.add_parser("package", help="a trained student as a sentence-transformers folder with a model card")
    publish = sub.add_parser("publish", help="package a trained student and push it to the Hugging Face hub")
    for p in (pack, publish):
        p.add_argument("student", help="the student's name (see `disco students`)")
        p.add_argument("-c", "--config", help="YAML config (its work_dir)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
        p.add_argument("--out", help="the folder to write (default: <student>/package)")
    publish.add_argument("repo_id", help="e.g. me/disco-mtrag-splade")
    export = sub.add_parser("export-teachers", help="each teacher's scores and rewrites in the DiSCo authors' formats")
    export.add_argument("out", help="the folder to write <teacher>.run.json and <teacher>.rewrites.tsv to")
    export.add_argument("-c", "--config", help="YAML config")
    export.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    export.add_argument("--id-map", help="TSV of their query ids -> ours, to write their ids")
    publish.add_argument("--private", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.debug:
        _quiet_prefect()
    try:
        return _COMMANDS[args.command](args)
    except DiscoError as exc:
        if args.debug:
            raise
        print(f"disco: error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from disco_core.config_files import load_config
    from flows.pipeline import run
    from tasks.graph import plan

    cfg = load_config(args.config, args.overrides)
    summary = run(args.config, args.overrides, args.stages or None, args.force)
    print("\nstages: " + ", ".join(f"{n} {'(cache hit)' if s['cache_hit'] else '(ran)'}" for n, s in summary.items()))
    graph, wanted = plan(cfg)
    for node_id in wanted:
        node = graph.nodes[node_id]
        if node_id in summary:
            print("\n" + node.outputs["table" if node.stage.name == "evaluate" else "report"].read_text())
    print(f"outputs: {cfg.work_path / graph.nodes[wanted[0]].params['ds'].scope}")
    return 0


def _sweep(args) -> int:
    from flows.sweep import run_sweep

    result = run_sweep(args.config, args.overrides, args.force, dask_address=args.dask)
    print("\n" + Path(result["leaderboard_md"]).read_text())
    print(f"leaderboard: {result['leaderboard_md']}")
    return 0


def _compare(args) -> int:
    from flows.sweep import compare_sweep

    path = compare_sweep(args.sweep, args.axis, args.reference)
    print(path.read_text())
    print(f"written: {path} (and {path.with_suffix('.parquet').name})")
    return 0


def _config(args) -> int:
    from disco_core.config_files import load_config

    print(json.dumps(load_config(args.config, args.overrides).model_dump(), indent=2))
    return 0


def _stages(args) -> int:
    from tasks.stage import STAGES

    for name, stage in STAGES.items():
        needs = f" (needs {', '.join(stage.needs)})" if stage.needs else ""
        print(f"{name:15s} {stage.description}{needs}")
    return 0


def _students(args) -> int:
    from disco_core.config_files import load_config
    from disco_core.students import list_students

    cfg = load_config(args.config, args.overrides)
    for p in list_students(cfg.work_dir):
        data = ", ".join(f"{d['dataset']}:{d['split']}" for d in p.get("data", []))
        print(f"{p['name']:40s} {data}; epoch {p.get('epoch')}; dev {p.get('dev') or '-'}")
    return 0


def _package(args) -> int:
    from disco_core import students
    from disco_core.config_files import load_config

    folder = students.package(load_config(args.config, args.overrides).work_dir, args.student, args.out)
    print(f"packaged: {folder} (sentence_transformers.SparseEncoder({str(folder)!r}))")
    return 0


def _publish(args) -> int:
    from disco_core import packaging, students
    from disco_core.config_files import load_config

    folder = students.package(load_config(args.config, args.overrides).work_dir, args.student, args.out)
    print(f"published: {packaging.publish(folder, args.repo_id, private=args.private)}")
    return 0


def _export_teachers(args) -> int:
    """The dataset's teachers (run or cache hits), written in the authors' run JSON and rewrite TSV."""
    from disco_core import paper_files, schemas
    from flows.pipeline import run

    summary = run(args.config, args.overrides, ["score_teachers"])
    id_map = paper_files.invert(paper_files.load_id_map(args.id_map)) if args.id_map else None
    out = Path(args.out)
    for node_id, s in summary.items():
        folder = Path(s["folder"])
        if s["stage"] == "score_teachers":
            table = schemas.read_table("teacher_scores", folder / "teacher_scores.parquet")
            paper_files.write_teacher_run(table, out / f"{s['info']['teacher']}.run.json", id_map=id_map)
        elif s["stage"] == "rewrite":
            table = schemas.read_table("rewrites", folder / "rewrites.parquet")
            paper_files.write_rewrites(table, out / f"{s['info']['teacher']}.rewrites.tsv", id_map=id_map)
    print(f"teachers written to {out}")
    return 0


def _datasets(args) -> int:
    from disco_core import datasets

    for name, spec in sorted(datasets.REGISTRY.items()):
        print(f"{name:15s} {spec.description}\n{'':15s} source: {spec.source}; licence: {spec.license}")
    return 0


_COMMANDS = {"run": _run, "sweep": _sweep, "compare": _compare, "config": _config, "stages": _stages, "students": _students,
             "datasets": _datasets, "package": _package, "publish": _publish, "export-teachers": _export_teachers}


if __name__ == "__main__":
    sys.exit(main())
