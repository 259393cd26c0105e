"""Rewriting speed: the transformers path as it was, the sped-up transformers path, and llama.cpp.

The same turns, the same prompt (the model's chat template, or the completion prompt for a base
model), greedy decoding, ``max_new_tokens`` alike, for each model:

- *transformers (anchor)*: ``HFRewriter(prefix_cache=False, stop_settled=False)``, the path before
  this change: whole prompts left-padded in batches, every sequence decoded to EOS or the limit;
- *transformers, fast*: ``HFRewriter`` as configured by default (few-shot prefix computed once and
  its KV cache copied per batch; a sequence stops once its cleaned rewrite is settled);
- *llama.cpp engine*: ``LlamaCppRewriter`` (``parallel`` sequences per step over one shared
  prefix), with the GGUF's weights converted once to bfloat16 (``engine``, the default), to float32
  (``engine-f32``: the numbers the transformers paths compute with) and as shipped (``engine-gguf``).

Each path runs in a fresh subprocess (clean peak memory, no allocator state carried over), one after
another, model loading untimed. Reported: wall and CPU seconds per turn (CPU time is the steadier
figure on a shared machine), turns/s, generated tokens/s, prompt tokens computed per turn, peak RSS
of the process, and how many rewrites (text and status) are identical to the anchor's.

    python benchmarks/bench_rewrite.py [--turns 40] [--models smollm2-135m-instruct,gemma3-270m]
    python benchmarks/bench_rewrite.py --dataset mtrag --turns 40     # MTRAG turns (long answers)
    python benchmarks/bench_rewrite.py --concurrent                   # + two engine teachers at once

Targets: the engine at least 10x the anchor's turns/s (issue 14); the fast transformers path at
least 2x the anchor with every rewrite identical.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time

from _common import ROOT, machine, print_header, print_table, verdict, write_json

ENGINE_TARGET, FAST_TARGET = 10.0, 2.0
PATHS = ("hf-anchor", "hf-fast", "engine", "engine-f32", "engine-gguf")
ENGINE_WEIGHTS = {"engine": "bf16", "engine-f32": "f32", "engine-gguf": "gguf"}


def load_turns(dataset: str, n: int) -> list[dict]:
    """The first ``n`` turns that have a conversation before them (every conversation, in order)."""
    from disco_core import datasets

    path = None
    if dataset == "mtrag":
        path = os.environ.get("DISCO_MTRAG_PATH", str(ROOT.parent / "shared" / "data" / "mtrag"))
    turns = datasets.load(dataset, path=path).turns.to_pylist()
    with_history = [t for t in turns if t["history"]]
    return with_history[:n]


def make(path: str, model: str, args):
    from disco_core.rewriters import HFRewriter, LlamaCppRewriter

    common = dict(max_new_tokens=args.max_new_tokens, history_turns=args.history_turns, answer_chars=args.answer_chars)
    if path.startswith("engine"):
        return LlamaCppRewriter("bench", model, parallel=args.parallel, threads=args.threads,
                                weights=ENGINE_WEIGHTS[path], **common)
    fast = path == "hf-fast"
    return HFRewriter("bench", model, batch_size=args.batch_size, prefix_cache=fast, stop_settled=fast,
                      threads=args.threads, **common)


def worker(args) -> None:
    """One path, one model: prints one JSON line."""
    from disco_core.rewriters import run_rewriter

    turns = load_turns(args.dataset, args.turns)
    rewriter = make(args.worker, args.model, args)
    started = time.perf_counter()
    rewriter.prepare()
    load_s = time.perf_counter() - started
    cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])  # noqa: E731
    started, cpu_started = time.perf_counter(), cpu()
    rows = run_rewriter(rewriter, turns)
    seconds, cpu_seconds = time.perf_counter() - started, cpu() - cpu_started
    counts = (rewriter._engine.counts if args.worker.startswith("engine") else rewriter.counts)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"path": args.worker, "model": args.model, "load_s": load_s, "seconds": seconds,
                      "cpu_seconds": cpu_seconds,
                      "turns": len(rows), "peak_rss_mib": peak, **counts,
                      "rows": {r["query_id"]: [r["text"], r["status"]] for r in rows}}))


def run_worker(path: str, model: str, args) -> dict:
    command = [sys.executable, __file__, "--worker", path, "--model", model, *args.passthrough]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{path} {model} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def concurrent_engines(models: list[str], args) -> dict:
    """Two engine teachers: one after the other with all threads each, then at once, one thread each."""
    from disco_core.rewriters import LlamaCppRewriter, run_rewriter

    turns = load_turns(args.dataset, args.turns)
    cores = len(os.sched_getaffinity(0))
    out = {}
    for mode, threads in (("one after the other", cores), ("at once", max(1, cores // len(models)))):
        rewriters = [LlamaCppRewriter(m, m, parallel=args.parallel, threads=threads, max_new_tokens=args.max_new_tokens,
                                      history_turns=args.history_turns, answer_chars=args.answer_chars) for m in models]
        for r in rewriters:
            r.prepare()
        started = time.perf_counter()
        if mode == "at once":
            workers = [threading.Thread(target=run_rewriter, args=(r, turns)) for r in rewriters]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
        else:
            for r in rewriters:
                run_rewriter(r, turns)
        out[mode] = {"threads each": threads, "seconds": time.perf_counter() - started}
        for r in rewriters:
            r.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="embedded", choices=["embedded", "mtrag"])
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--models", default="smollm2-135m-instruct,gemma3-270m")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--batch-size", type=int, default=16, help="transformers: prompts per generate call")
    parser.add_argument("--parallel", type=int, default=8, help="engine: sequences decoded together")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--history-turns", type=int, default=3)
    parser.add_argument("--answer-chars", type=int, default=400)
    parser.add_argument("--concurrent", action="store_true", help="also two engine teachers at once")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--worker", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return 0
    args.passthrough = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                        if k in ("dataset", "turns", "batch_size", "parallel", "max_new_tokens", "history_turns",
                                 "answer_chars") or (k == "threads" and v)]
    models, paths = args.models.split(","), args.paths.split(",")
    info = {**machine(), "dataset": args.dataset, "turns": args.turns, "models": models,
            "decoding": f"greedy, max_new_tokens={args.max_new_tokens}",
            "transformers batch": args.batch_size, "engine parallel sequences": args.parallel}
    print_header("rewrite benchmark: transformers as it was, transformers fast, llama.cpp engine (same turns)", info)
    results, ok = [], True
    for model in models:
        runs = {p: run_worker(p, model, args) for p in paths}
        anchor = runs.get("hf-anchor")
        table = []
        for path, r in runs.items():
            same = sum(anchor["rows"][q] == v for q, v in r["rows"].items()) if anchor else None
            r.update(turns_per_s=r["turns"] / r["seconds"], identical=same,
                     speedup=(r["turns"] / r["seconds"]) / (anchor["turns"] / anchor["seconds"]) if anchor else None,
                     cpu_speedup=(anchor["cpu_seconds"] / anchor["turns"]) / (r["cpu_seconds"] / r["turns"])
                     if anchor else None)
            table.append([path, f"{r['load_s']:.1f}", f"{r['seconds'] / r['turns']:.3f}",
                          f"{r['cpu_seconds'] / r['turns']:.3f}", f"{r['turns_per_s']:.2f}",
                          f"{r['generated_tokens'] / r['seconds']:.0f}", f"{r['prompt_tokens'] / r['turns']:.0f}",
                          f"{r['peak_rss_mib']:.0f}", f"{r['speedup']:.1f}x" if anchor else "-",
                          f"{r['cpu_speedup']:.1f}x" if anchor else "-",
                          f"{same}/{r['turns']}" if anchor else "-"])
        print(f"\n{model}")
        print_table(["path", "load s", "s/turn", "CPU s/turn", "turns/s", "gen tok/s", "prompt tok/turn computed", "peak RSS MiB",
                     "vs anchor", "CPU vs anchor", "identical"], table)
        if anchor and "engine" in runs:
            good = runs["engine"]["speedup"] >= ENGINE_TARGET
            ok &= good
            print(f"{verdict(good)}  engine {runs['engine']['speedup']:.1f}x the anchor's turns/s, "
                  f"{runs['engine']['cpu_speedup']:.1f}x in CPU time (target >= {ENGINE_TARGET:.0f}x)")
        if anchor and "hf-fast" in runs:
            fast = runs["hf-fast"]
            good = fast["speedup"] >= FAST_TARGET and fast["identical"] == fast["turns"]
            ok &= good
            print(f"{verdict(good)}  transformers fast {fast['speedup']:.1f}x the anchor ({fast['cpu_speedup']:.1f}x in "
                  f"CPU time), {fast['identical']}/"
                  f"{fast['turns']} rewrites identical (target >= {FAST_TARGET:.0f}x, all identical)")
        results += list(runs.values())  # with each path's rewrites
    concurrent = None
    if args.concurrent and len(models) >= 2:
        concurrent = concurrent_engines(models[:2], args)
        print(f"\ntwo engine teachers ({', '.join(models[:2])}), {args.turns} turns each:")
        print_table(["mode", "threads each", "seconds"],
                    [[m, v["threads each"], f"{v['seconds']:.1f}"] for m, v in concurrent.items()])
    print(f"\nload average at the end (1 min): {os.getloadavg()[0]:.2f}")
    write_json(args.json, {**info, "results": results, "concurrent": concurrent})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
