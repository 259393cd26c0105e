"""The main run of ``bench_scale.py``: collection, builds, measurements, tables, verdicts."""

from __future__ import annotations

import os

import _common  # noqa: F401  (environment defaults first)
from _common import machine, print_header, print_table, verdict, write_json


from _scale_engines import make_engines
from _synthetic import SyntheticCollection
from bench_scale import (CONVERSATIONAL, PROJECT, QUERY_SETS, build, collection_folder, exactness, measure_latency,
                         measure_throughput, reference, write_collection)

MIB = 2**20


def main(args) -> None:
    host = machine()
    print_header("collection-scale benchmark: build, memory, disk, queries/s, latency (same run)",
                 {**host, "documents": args.docs, "shard size": args.shard_size, "threads per engine": args.threads,
                  "queries per set": args.queries, "timed passes": args.repeat})
    files = write_collection(args)
    collection = SyntheticCollection(args.docs, seed=args.seed)
    for key, value in collection.describe().items():
        print(f"   {key}: {value}")
    queries = {name: collection.queries(args.queries, nnz, seed) for name, (nnz, seed) in QUERY_SETS.items()}
    for name, q in queries.items():
        print(f"   queries {name}: {q.shape[0]}, mean non-zeros {q.nnz / q.shape[0]:.1f}")

    engines = make_engines(args.threads, [e.strip() for e in args.engines.split(",") if e.strip()])
    builds, failed = {}, {}
    for key, engine in engines.items():
        folder_key = engine.build_of or key
        if folder_key in builds or folder_key in failed:
            continue
        print(f"   building {folder_key} ...", flush=True)
        try:
            builds[folder_key] = build(args, key)
        except Exception as error:
            failed[folder_key] = str(error)
    figures, ready = {}, {}
    for key, engine in engines.items():
        folder_key = engine.build_of or key
        if folder_key in failed:
            failed[key] = failed[folder_key]
            continue
        try:
            engine.load(collection_folder(args) / "builds" / folder_key)
        except Exception as error:
            failed[key] = f"load failed: {type(error).__name__}: {error}"
            continue
        ready[key] = engine
        figures[key] = {"name": engine.name, "build": builds[folder_key], "build_of": folder_key}
    print(f"   load average after the builds: {os.getloadavg()[0]:.2f}")

    results = {}
    for set_name, q in queries.items():
        sample = q[: args.sample]
        ref = reference(files, sample, 1000)
        prepared = {key: engine.prepare(q) for key, engine in ready.items()}
        for k in (1000, 10):
            measured = measure_throughput(ready, prepared, q.shape[0], k, args)
            for key, m in measured.items():
                m.update(exactness(m.pop("answers"), ref, k, args.rtol))
            results[set_name, k] = measured
            print(f"   measured {set_name}, k={k} (load average {os.getloadavg()[0]:.2f})", flush=True)
        for key, engine in ready.items():
            figures[key].setdefault("latency", {})[set_name] = measure_latency(engine, prepared[key], args)
    for engine in ready.values():
        engine.close()
    report(args, figures, results, failed, host)


def report(args, figures, results, failed, host) -> None:
    print("\nBuild (each in its own process; peak = VmHWM, start = RSS after imports)\n")
    rows, seen = [], set()
    for key, f in figures.items():
        if f["build_of"] in seen:
            continue
        seen.add(f["build_of"])
        b = f["build"]
        rows.append([f["build_of"], f"{b['build_s']:.1f}", f"{b['peak_rss'] / MIB:.0f}", f"{b['start_rss'] / MIB:.0f}",
                     f"{b['disk'] / MIB:.0f}", f"{b['peak_rss'] / b['disk']:.2f}"])
    print_table(["build", "seconds", "peak RSS MiB", "start RSS MiB", "disk MiB", "peak / disk"], rows)

    for (set_name, k), measured in results.items():
        print(f"\nQueries {set_name}, k={k}\n")
        project = measured.get("disco-one")
        rows = []
        for key, m in measured.items():
            ratio = f"{m['queries_per_s'] / project['queries_per_s']:.2f}x" if project else "-"
            exact = "yes" if m["exact"] else f"no ({m['max_rel_error']:.0e})"
            rows.append([figures[key]["name"], f"{m['queries_per_s']:.1f}", ratio, m["queries"],
                         f"{m['overlap']:.4f}", exact])
        print_table(["engine", "queries/s", "qps / project", "queries timed", f"overlap@{k}", "exact"], rows)

    print("\nOne query at a time, k=1000 (ms)\n")
    rows = [[f["name"], *[f"{f['latency'][s]['p50_ms']:.1f} / {f['latency'][s]['p99_ms']:.1f} (n={f['latency'][s]['n']})"
                          for s in QUERY_SETS]] for f in figures.values() if "latency" in f]
    print_table(["engine", *[f"p50 / p99, {s}" for s in QUERY_SETS]], rows, "<" + ">" * len(QUERY_SETS))
    for key, reason in failed.items():
        print(f"not measured: {key}: {reason}")

    verdicts = verdict_lines(figures, results)
    print()
    for ok, message in verdicts:
        print(f"{verdict(ok)}  {message}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    write_json(args.json, {"benchmark": "scale", **host, "args": {k: str(v) for k, v in vars(args).items()},
                           "engines": figures, "results": {f"{s} k={k}": m for (s, k), m in results.items()},
                           "failed": failed, "verdicts": [{"pass": ok, "message": m} for ok, m in verdicts]})


def verdict_lines(figures, results) -> list[tuple[bool, str]]:
    out = []
    measured = results.get((CONVERSATIONAL, 1000), {})
    project = measured.get("disco-one")
    others = {k: m for k, m in measured.items() if k not in PROJECT and m["exact"]}
    if project and others:
        fastest = max(others, key=lambda k: others[k]["queries_per_s"])
        ratio = project["queries_per_s"] / others[fastest]["queries_per_s"]
        out.append((project["exact"] and ratio >= 1.5,
                    f"conversational queries, k=1000: project exact={project['exact']}, {ratio:.2f}x the queries/s of the "
                    f"fastest other exact engine ({figures[fastest]['name']}) (target >= 1.5x)"))
    else:
        out.append((False, "conversational k=1000: the project index or every other exact engine is missing"))
    for key in ("disco-one", "disco-sharded"):
        if key in figures:
            b = figures[key]["build"]
            ratio = b["peak_rss"] / b["disk"]
            out.append((ratio <= 1.5, f"{figures[key]['name']}: peak memory during the build {b['peak_rss'] / MIB:.0f} MiB "
                                      f"= {ratio:.2f}x the final index size {b['disk'] / MIB:.0f} MiB (target <= 1.5x)"))
    return out
