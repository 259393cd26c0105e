"""Encoder benchmark: the project's SpladeEncoder against the textbook SPLADE forward.

Both encode the SAME MTRAG passages (``document_text(title, text)``) in one process, with the same
model weights, ``max_length`` and batch size:

- project:  ``SpladeEncoder.encode`` (length-bucketed batches, vocabulary head on real tokens only,
            max before the activation; returns CSR);
- textbook: ``textbook_splade`` (batches in input order, full logits, ``log1p(relu)`` on every token,
            masked max; returns dense). It runs on chunks of whole batches so that its dense output
            never holds the corpus at once; batching is unchanged.

Reported: documents/s of each, their ratio (target: project >= 1.5x the textbook), the peak RSS
above the level at the start of each run, and the largest absolute difference between the outputs.

    python benchmarks/bench_encoder.py                  # seeded sample of 1000 passages
    python benchmarks/bench_encoder.py --docs all       # the whole corpus (40-50 min on 2 cores)
"""

from __future__ import annotations

import argparse

import _common  # noqa: F401  (environment defaults before torch)
from _common import (PeakRSS, Stopwatch, docs_arg, machine, print_header, print_table, sample_positions, verdict,
                     write_json)

import torch

from disco_core import datasets
from disco_core.encoder import SpladeEncoder, document_text, textbook_splade


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=docs_arg, default=1000, help="passages to encode: a number (seeded sample) or 'all'")
    p.add_argument("--seed", type=int, default=0, help="sample seed")
    p.add_argument("--dataset", default="mtrag")
    p.add_argument("--model", default="splade-tiny")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass, both encoders")
    p.add_argument("--target", type=float, default=1.5, help="required speed ratio project / textbook")
    p.add_argument("--tolerance", type=float, default=1e-5, help="required max |project - textbook|")
    p.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    return p.parse_args()


def load_texts(dataset: str, n: int | None, seed: int) -> list[str]:
    corpus = datasets.load(dataset).corpus
    titles, bodies = corpus["title"].to_pylist(), corpus["text"].to_pylist()
    return [document_text(titles[i], bodies[i]) for i in sample_positions(len(bodies), n, seed)]


def run_textbook(encoder: SpladeEncoder, texts: list[str], reference, max_length: int, batch_size: int):
    """Encode with ``textbook_splade`` chunk by chunk; return (seconds, max |difference| to reference).

    Chunks are whole numbers of batches, so the batches are exactly those of one call over all texts;
    only the ``textbook_splade`` calls are timed, not the comparison."""
    chunk = batch_size * max(1, 1024 // batch_size)
    seconds, max_diff = 0.0, 0.0
    for start in range(0, len(texts), chunk):
        with Stopwatch() as t:
            dense = textbook_splade(encoder.model, encoder.tokenizer, texts[start : start + chunk], max_length, batch_size)
        seconds += t.seconds
        # in place, no dense copy: the comparison's memory is not charged to the textbook's peak
        expected = reference[start : start + len(dense)].tocoo()
        dense[expected.row, expected.col] -= expected.data
        max_diff = max(max_diff, float(dense.max()), float(-dense.min()))
    return seconds, max_diff


def main() -> None:
    args = parse_args()
    texts = load_texts(args.dataset, args.docs, args.seed)
    encoder = SpladeEncoder(args.model, max_length=args.max_length, batch_size=args.batch_size)
    info = {**machine(), "torch threads": torch.get_num_threads(), "dataset": args.dataset, "documents": len(texts),
            "sample seed": args.seed if args.docs else None, "model": args.model, "max_length": args.max_length,
            "batch_size": args.batch_size}
    print_header("encoder benchmark: SpladeEncoder.encode vs textbook_splade (same documents, same run)", info)

    # Warm-up (first-call allocations, thread pools), untimed.
    warm = texts[: args.batch_size]
    encoder.encode(warm)
    textbook_splade(encoder.model, encoder.tokenizer, warm, args.max_length, args.batch_size)

    with PeakRSS() as project_mem, Stopwatch() as project_time:
        vectors = encoder.encode(texts)
    with PeakRSS() as textbook_mem:
        textbook_seconds, max_diff = run_textbook(encoder, texts, vectors, args.max_length, args.batch_size)

    n = len(texts)
    project_rate, textbook_rate = n / project_time.seconds, n / textbook_seconds
    ratio = project_rate / textbook_rate
    print()
    print_table(
        ["encoder", "seconds", "docs/s", "speed vs textbook", "peak RSS above start (MiB)"],
        [["textbook_splade (anchor)", f"{textbook_seconds:.1f}", f"{textbook_rate:.1f}", "1.00x", f"{textbook_mem.delta_mib:.0f}"],
         ["SpladeEncoder (project)", f"{project_time.seconds:.1f}", f"{project_rate:.1f}", f"{ratio:.2f}x", f"{project_mem.delta_mib:.0f}"]],
    )
    print(f"\nnon-zeros per document (project): {vectors.nnz / n:.1f}")
    print(f"max |project - textbook| over {n} x {vectors.shape[1]} weights: {max_diff:.2e}")
    print(f"{verdict(ratio >= args.target)}  speed: project {ratio:.2f}x the textbook forward (target >= {args.target}x)")
    print(f"{verdict(max_diff <= args.tolerance)}  agreement: max abs difference {max_diff:.2e} (tolerance {args.tolerance:.0e})")

    write_json(args.json, {
        "benchmark": "encoder", **info,
        "project": {"seconds": project_time.seconds, "docs_per_s": project_rate, "peak_rss_delta_mib": project_mem.delta_mib},
        "textbook": {"seconds": textbook_seconds, "docs_per_s": textbook_rate, "peak_rss_delta_mib": textbook_mem.delta_mib},
        "speed_ratio": ratio, "speed_target": args.target, "speed_pass": ratio >= args.target,
        "max_abs_diff": max_diff, "tolerance": args.tolerance, "agreement_pass": max_diff <= args.tolerance,
        "peak_rss_process_mib": max(project_mem.peak_mib, textbook_mem.peak_mib),
    })


if __name__ == "__main__":
    main()
