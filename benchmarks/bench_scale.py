"""Collection-scale benchmark: the project's index (one shard, several) beside scipy, splade-index
and PISA on a synthetic SPLADE-like collection of a million passages (by default), in one run.

The collection (``_synthetic.py``: vocabulary 30,522, Zipf terms, ~120 non-zeros a passage,
log-normal weights in multiples of 1/100) is generated from a seed and written as shard vector
files (the format ``disco_core.shards`` writes), cached under ``--work``. Two query sets come from
the same law: ~40 non-zeros (a SPLADE query) and ~150 (a conversational query, DiSCo's input).

For each engine: build time, peak memory during the build (``VmHWM`` of a subprocess that
only builds), disk size; then, in this process, queries/s at k=1000 and k=10 (median of
``--repeat`` interleaved passes; a slow engine is timed on the first queries that fit in
``--pass-budget`` seconds, a multiple of 16), one-query latency p50/p99 (k=1000), and exactness on
the first ``--sample`` queries against a float64 brute force (scores equal within ``--rtol`` of each
query's best score; ties may order differently in engines that break them differently).

    python benchmarks/bench_scale.py                      # 1M passages (~25 min on 2 shared cores)
    python benchmarks/bench_scale.py --docs 200000        # quick
    python benchmarks/bench_scale.py --docs 2000000 --engines disco-one,disco-sharded,splade-index
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _synthetic import SyntheticCollection  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ENGINES = "disco-one,disco-sharded,scipy,splade-index,pisa-maxscore,pisa-bmw,pisa-taat"
PROJECT = ("disco-one", "disco-sharded", "disco-dask")
QUERY_SETS = {"~40 non-zeros": (40, 1), "~150 non-zeros (conversational)": (150, 2)}
CONVERSATIONAL = "~150 non-zeros (conversational)"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=1_000_000, help="passages in the collection")
    p.add_argument("--shard-size", type=int, default=100_000, help="passages per shard (vector file and index shard)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--queries", type=int, default=256, help="queries per set")
    p.add_argument("--sample", type=int, default=16, help="queries of each set checked against brute force")
    p.add_argument("--repeat", type=int, default=3, help="timed passes (median reported)")
    p.add_argument("--pass-budget", type=float, default=10.0, help="seconds a pass may take (fewer queries for slow engines)")
    p.add_argument("--latency-queries", type=int, default=32, help="single queries timed per engine and set (k=1000)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every engine")
    p.add_argument("--engines", default=DEFAULT_ENGINES, help=f"comma-separated; also disco-dask (default: {DEFAULT_ENGINES})")
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument("--work", type=Path, default=ROOT / ".cache" / "bench" / "scale", help="collection and builds")
    p.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    p.add_argument("--build-engine", help=argparse.SUPPRESS)  # internal: build one engine in this process
    return p.parse_args()


def collection_folder(args) -> Path:
    return args.work / f"docs{args.docs}-seed{args.seed}-shard{args.shard_size}"


def write_collection(args) -> list[Path]:
    """The collection as shard vector files (cached: kept when already complete)."""
    from disco_core.vectors import save_vectors

    folder = collection_folder(args) / "vectors"
    collection = SyntheticCollection(args.docs, seed=args.seed)
    starts = range(0, args.docs, args.shard_size)
    files = [folder / f"shard-{n:05d}.npz" for n in range(len(starts))]
    if (folder / "complete.json").exists():
        return files
    started = time.perf_counter()
    for path, start in zip(files, starts):
        stop = min(args.docs, start + args.shard_size)
        save_vectors(path, collection.rows(start, stop), [f"doc{i}" for i in range(start, stop)])
    (folder / "complete.json").write_text(json.dumps(collection.describe()))
    print(f"   collection generated and written in {time.perf_counter() - started:.0f} s")
    return files


# ---------------------------------------------------------------------------------------------
# Builds, one subprocess each (peak memory of the build alone)


def build_in_this_process(args) -> None:
    import psutil
    from _scale_engines import make_engines

    engine = make_engines(args.threads, [args.build_engine])[args.build_engine]
    folder = collection_folder(args) / "builds" / (engine.build_of or args.build_engine)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    files = sorted((collection_folder(args) / "vectors").glob("shard-*.npz"))
    start_rss = psutil.Process().memory_info().rss
    started = time.perf_counter()
    engine.build(files, folder)
    seconds = time.perf_counter() - started
    peak = high_water_rss()
    disk = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    print("BUILD " + json.dumps({"build_s": seconds, "peak_rss": peak, "start_rss": start_rss, "disk": disk}))


def high_water_rss() -> int:
    """Peak resident memory of this process image, in bytes (``VmHWM``: unlike ``ru_maxrss``, it
    does not include the parent's memory at the fork that started this process)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def build(args, key: str) -> dict:
    command = [sys.executable, __file__, "--build-engine", key, "--docs", str(args.docs), "--seed", str(args.seed),
               "--shard-size", str(args.shard_size), "--threads", str(args.threads), "--work", str(args.work)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    for line in done.stdout.splitlines():
        if line.startswith("BUILD "):
            return json.loads(line[6:])
    raise RuntimeError(f"build failed (exit {done.returncode}): {(done.stderr or done.stdout)[-600:]}")


# ---------------------------------------------------------------------------------------------
# Reference and measurement


def reference(files: list[Path], queries, k: int):
    """Exact float64 scores of the sample queries over the whole collection, top k, ties by position."""
    from bench_index import dense_top_k
    from disco_core.vectors import load_vectors

    q = queries.astype(np.float64).T.tocsc()
    parts = []
    for path in files:
        matrix, _ = load_vectors(path)
        parts.append((matrix.astype(np.float64) @ q).toarray().T)
    return dense_top_k(np.concatenate(parts, axis=1), k)


def queries_within_budget(engine, prepared, n_total: int, k: int, budget: float) -> int:
    engine.search(engine.subset(prepared, 16), k)  # warm-up (numba compilation, thread pools)
    started = time.perf_counter()
    engine.search(engine.subset(prepared, 16), k)
    per_query = (time.perf_counter() - started) / 16
    return int(max(16, min(n_total, budget / max(per_query, 1e-9) // 16 * 16)))


def measure_throughput(engines: dict, prepared: dict, n_total: int, k: int, args) -> dict:
    sizes = {key: queries_within_budget(e, prepared[key], n_total, k, args.pass_budget) for key, e in engines.items()}
    times, answers = {key: [] for key in engines}, {}
    for _ in range(args.repeat):
        for key, engine in engines.items():
            batch = engine.subset(prepared[key], sizes[key])
            started = time.perf_counter()
            result = engine.search(batch, k)
            times[key].append(time.perf_counter() - started)
            answers[key] = engine.arrays(result, k)
    return {key: {"queries": sizes[key], "pass_s": times[key], "queries_per_s": sizes[key] / float(np.median(times[key])),
                  "answers": answers[key]} for key in engines}


def measure_latency(engine, prepared, args) -> dict:
    engine.search(engine.subset(prepared, 1), 1000)
    times, spent = [], 0.0
    for i in range(args.latency_queries):
        one = engine.subset(prepared, i + 1)
        one = one[i:] if not isinstance(one, tuple) else (one[0][i:], one[1][i:])
        started = time.perf_counter()
        engine.search(one, 1000)
        times.append(time.perf_counter() - started)
        spent += times[-1]
        if spent > args.pass_budget and len(times) >= 8:
            break
    ms = np.array(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "n": len(times)}


def exactness(answer, ref, k: int, rtol: float) -> dict:
    from bench_index import normalise, overlap, scores_match

    positions, scores = normalise(answer[0][: len(ref[0])], answer[1][: len(ref[0])], k)
    ref_pos, ref_scores = normalise(ref[0][:, :k], ref[1][:, :k], k)
    exact, error = scores_match(scores, ref_scores, rtol)
    return {"exact": exact, "max_rel_error": error, "overlap": overlap(positions, ref_pos, k)}


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.build_engine:
        build_in_this_process(arguments)
    else:
        from _scale_report import main

        main(arguments)
