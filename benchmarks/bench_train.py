"""Training throughput: the cached-vector trainer against one that re-encodes the candidates.

DiSCo's document encoder is frozen, so a candidate's vector is a row of the corpus matrix already
built for the index. The anchor is the same trainer with ``doc_source="encode"``: every step runs
the frozen encoder on the batch's 17 x batch-size candidate documents. Same examples, same seed,
same batches, one process; the losses of the first steps must agree (numerical tolerance).

    python benchmarks/bench_train.py [--steps 12] [--batch-size 16] [--json out.json]

Target: the cached trainer at least 5x the queries/s of the re-encoding one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tasks  # noqa: E402,F401  (environment defaults before torch)

import numpy as np  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from disco_core import datasets, distill, evaluation, teachers  # noqa: E402
from disco_core.config import TrainConfig  # noqa: E402
from disco_core.conversation import ConversationFormatter  # noqa: E402
from disco_core.encoder import SpladeEncoder, document_text  # noqa: E402
from disco_core.index import InvertedIndex  # noqa: E402

TARGET = 5.0


def examples_and_corpus(encoder: SpladeEncoder, doc_max_length: int):
    """The embedded dataset: corpus vectors, human-teacher targets, DiSCo examples."""
    t = datasets.load("embedded")
    corpus = t.corpus.to_pydict()
    doc_texts = [document_text(a, b) for a, b in zip(corpus["title"], corpus["text"])]
    doc_matrix = encoder.encode(doc_texts, max_length=doc_max_length)
    index = InvertedIndex.build(doc_matrix, corpus["doc_id"])
    human = t.rewrites.filter(pc.equal(t.rewrites["teacher"], "human")).to_pydict()
    queries = encoder.encode(human["text"])
    scores = teachers.teacher_scores(index, queries, human["query_id"], "human", k=1000)
    targets = teachers.target_lists(scores, source="teacher")
    turns = t.turns.to_pylist()
    texts = ConversationFormatter(encoder.tokenizer, 256).format_many(turns)
    position = {d: i for i, d in enumerate(corpus["doc_id"])}
    examples = distill.build_examples([x["query_id"] for x in turns], texts, targets,
                                      evaluation.qrels_dict(t.qrels), position)
    return doc_matrix, doc_texts, examples


def measure(source: str, settings: TrainConfig, doc_matrix, doc_texts, examples, steps: int, out_dir: Path,
            doc_max_length: int) -> dict:
    trainer = distill.Trainer("splade-tiny", settings, doc_matrix, out_dir / source, doc_source=source,
                              doc_texts=doc_texts, doc_max_length=doc_max_length)
    trainer.train(examples[: settings.batch_size], max_steps=1)  # warm-up step (allocations, first calls)
    fresh = distill.Trainer("splade-tiny", settings, doc_matrix, out_dir / (source + "-timed"), doc_source=source,
                            doc_texts=doc_texts, doc_max_length=doc_max_length)
    start = time.perf_counter()
    history = fresh.train(examples, max_steps=steps)
    seconds = time.perf_counter() - start
    queries = len(history) * settings.batch_size
    return {"source": source, "steps": len(history), "seconds": seconds, "queries_per_s": queries / seconds,
            "losses": [h["loss"] for h in history]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--doc-max-length", type=int, default=256)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import tempfile

    encoder = SpladeEncoder("splade-tiny")
    doc_matrix, doc_texts, examples = examples_and_corpus(encoder, args.doc_max_length)
    settings = TrainConfig(batch_size=args.batch_size, epochs=1, seed=7)
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(s, settings, doc_matrix, doc_texts, examples, args.steps, Path(tmp), args.doc_max_length)
                   for s in ("encode", "cached")]
    encode, cached = results
    ratio = cached["queries_per_s"] / encode["queries_per_s"]
    diffs = np.abs(np.asarray(cached["losses"]) - np.asarray(encode["losses"]))
    rel = diffs / np.maximum(np.abs(np.asarray(encode["losses"])), 1e-8)
    print(f"embedded dataset: {len(examples)} training turns, {len(doc_texts)} documents; batch {args.batch_size} "
          f"queries x (1 + {settings.negatives}) candidates, {args.steps} steps each, {os.cpu_count()} CPU cores")
    print(f"{'trainer':42s} {'queries/s':>10s} {'s/step':>8s}")
    for r, label in ((encode, "re-encode 17 candidates per query (anchor)"), (cached, "cached vectors (disco)")):
        print(f"{label:42s} {r['queries_per_s']:10.1f} {r['seconds'] / r['steps']:8.3f}")
    print(f"speed-up: {ratio:.1f}x (target >= {TARGET:.0f}x): {'PASS' if ratio >= TARGET else 'FAIL'}")
    print(f"first losses, re-encode: {[round(x, 5) for x in encode['losses'][:4]]}")
    print(f"first losses, cached:    {[round(x, 5) for x in cached['losses'][:4]]}")
    print(f"max relative loss difference over {len(diffs)} steps: {rel.max():.2e} (first step {rel[0]:.2e})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": results, "ratio": ratio, "max_rel_loss_diff": float(rel.max())},
                                        indent=2))
    return 0 if ratio >= TARGET and rel[0] < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
