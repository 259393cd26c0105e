"""``disco``: run the pipeline or one stage with a config file and overrides.

    disco run                         # full pipeline, default config (embedded dataset)
    disco run -c data/configs/mtrag.yaml --set retrieval.k=100
    disco run encode_queries --force encode_queries
    disco datasets                    # the registry
    disco config -c my.yaml           # the resolved configuration
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import tasks  # noqa: F401  (environment defaults)

from disco_core.config import load_config
from disco_core.errors import DiscoError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="disco", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the full pipeline or the stages up to one")
    run.add_argument("stage", nargs="?", default="pipeline",
                     help="pipeline (default) or the stages up to one: ingest, encode_corpus, index, "
                          "encode_queries, retrieve, evaluate, rewrite, score_teachers, fuse, train, report")
    for p in (run, sub.add_parser("config", help="print the resolved configuration")):
        p.add_argument("-c", "--config", help="YAML config file")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a setting, e.g. --set retrieval.k=100 (repeatable)")
    run.add_argument("--force", action="append", default=[], metavar="STAGE", help="rerun this stage although fresh")
    sub.add_parser("datasets", help="list the registered datasets")
    args = parser.parse_args(argv)

    try:
        if args.command == "datasets":
            from disco_core import datasets

            for name, spec in sorted(datasets.REGISTRY.items()):
                print(f"{name:12s} {spec.description}\n{'':12s} source: {spec.source}; licence: {spec.license}")
            return 0
        cfg = load_config(args.config, args.overrides)
        if args.command == "config":
            print(json.dumps(cfg.model_dump(), indent=2))
            return 0
        from flows.pipeline import FLOWS
        from tasks.stages import stage_folder

        if args.stage not in FLOWS:
            parser.error(f"unknown stage {args.stage!r}; choose from {', '.join(FLOWS)}")
        summary = FLOWS[args.stage](config_path=args.config, overrides=args.overrides, force=args.force)
    except DiscoError as exc:
        print(f"disco: error: {exc}", file=sys.stderr)
        return 2
    print("\nstages: " + ", ".join(f"{n} {'(cache hit)' if s['cache_hit'] else '(ran)'}" for n, s in summary.items()))
    if "evaluate" in summary:
        print("\n" + Path(stage_folder(cfg, "evaluate"), "metrics.md").read_text())
    if "report" in summary:
        print("\n" + Path(stage_folder(cfg, "report"), "report.md").read_text())
    print(f"outputs: {stage_folder(cfg, 'ingest').parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
