"""A larger student (all-MiniLM-L6-v2 + tied MLM head, warmed up on splade-tiny's vectors) beside
splade-tiny as the query encoder: parameters, per-query latency, match to splade-tiny's vectors and
retrieval against splade-tiny's document index, on a dataset's held-out conversations.

    python benchmarks/student_capacity.py build --out /work/models/minilm-splade-mtrag
    python benchmarks/student_capacity.py evaluate --student /work/models/minilm-splade-mtrag \
        --student /work/models/minilm-splade-mtrag.init --doc-vectors /tmp/mtrag_doc_vectors.npz
    python benchmarks/student_capacity.py distill --base splade-tiny --base /work/models/minilm-splade-mtrag

``evaluate`` encodes the corpus with splade-tiny when ``--doc-vectors`` does not exist yet and keeps
the vectors there (19,684 MTRAG passages: ~9 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, print_header  # noqa: E402  (environment defaults first)

import torch  # noqa: E402

from disco_core import datasets, splits  # noqa: E402
from disco_core.conversation import ConversationFormatter  # noqa: E402
from disco_core.encoder import SpladeEncoder, document_text  # noqa: E402
from disco_core.evaluation import evaluate, qrels_dict  # noqa: E402
from disco_core.index import InvertedIndex  # noqa: E402
from disco_core.student_init import build_student, parameters  # noqa: E402
from disco_core.vectors import load_vectors, mean_nonzeros, save_vectors  # noqa: E402
from disco_core.warm_up import compare_vectors  # noqa: E402

METRICS = ["mrr@10", "ndcg@3", "recall@10", "recall@100"]


def build(args) -> None:
    settings = {k: v for k, v in {"epochs": args.epochs, "steps": args.steps, "learning_rate": args.lr,
                                  "batch_size": args.batch_size, "max_length": args.max_length,
                                  "seed": args.seed, "threads": args.threads, "revive_weight": args.revive_weight,
                                  "margin": args.margin, "suppress_weight": args.suppress_weight}.items() if v is not None}
    out = build_student(args.out, dataset=args.dataset, test_fraction=args.test_fraction, split_seed=args.split_seed,
                        sentences_per_conversation=None if args.sentences_per_conversation < 0
                        else args.sentences_per_conversation, **settings)
    result = json.loads((out / "warm_up.json").read_text())
    print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=1))
    print("last losses:", result["history"][-5:])


def doc_index(dataset: str, tables, path: Path) -> InvertedIndex:
    if not path.exists():
        corpus = tables.corpus
        texts = [document_text(t, x) for t, x in zip(corpus["title"].to_pylist(), corpus["text"].to_pylist())]
        matrix = SpladeEncoder("splade-tiny", max_length=256).encode(texts, desc=f"{dataset} passages")
        save_vectors(path, matrix, corpus["doc_id"].to_pylist())
    matrix, ids = load_vectors(path)
    return InvertedIndex.build(matrix, ids)


def latency_ms(encoder: SpladeEncoder, texts: list[str], n: int = 32) -> float:
    """Mean milliseconds to encode one query alone (after two untimed calls)."""
    for text in texts[:2]:
        encoder.encode([text])
    times = []
    for text in texts[:n]:
        start = time.perf_counter()
        encoder.encode([text])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.mean(times)


def evaluate_students(args) -> None:
    torch.set_num_threads(args.threads or 2)
    tables = datasets.load(args.dataset)
    conversations = set(tables.turns["conversation_id"].to_pylist())
    test = splits.held_out(conversations, args.test_fraction, args.split_seed)
    turns = splits.turns_in(tables.turns.to_pylist(), test)
    qrels = {q: r for q, r in qrels_dict(tables.qrels).items() if q in {t["query_id"] for t in turns}}
    index = doc_index(args.dataset, tables, Path(args.doc_vectors))
    teacher = SpladeEncoder("splade-tiny", max_length=256)
    formatter = ConversationFormatter(teacher.tokenizer, 256)
    qids = [t["query_id"] for t in turns]
    inputs = {"last_turn": [t["utterance"] for t in turns], "conversation": formatter.format_many(turns)}
    encoders = {"splade-tiny": teacher, **{Path(s).name: SpladeEncoder(s, max_length=256) for s in args.student}}
    reference = {v: teacher.encode(texts) for v, texts in inputs.items()}
    runs, rows = {}, []
    for name, encoder in encoders.items():
        row = {"encoder": name, "parameters": parameters(encoder.model),
               "latency_ms": round(latency_ms(encoder, inputs["conversation"]), 1)}
        for variant, texts in inputs.items():
            vectors = reference[variant] if encoder is teacher else encoder.encode(texts)
            runs[f"{name} {variant}"] = index.search_ids(vectors, qids, k=100)
            row[f"{variant} nnz"] = round(mean_nonzeros(vectors), 1)
            if encoder is not teacher:
                match = compare_vectors(vectors, reference[variant])
                row[f"{variant} cosine"] = round(match["cosine"], 3)
                row[f"{variant} term recall"] = round(match["term_recall"], 3)
        rows.append(row)
    result = evaluate(qrels, runs, METRICS)
    print_header(f"student capacity on {args.dataset} ({len(test)} held-out conversations, {len(turns)} turns)",
                 machine())
    for row in rows:
        print(json.dumps(row))
    print(result.markdown(baseline="splade-tiny conversation"))
    for name in list(encoders)[1:]:
        for variant in inputs:
            ours, theirs = f"{name} {variant}", f"splade-tiny {variant}"
            print(f"{ours} vs {theirs}: " + ", ".join(
                f"{m} {result.scores[ours][m] - result.scores[theirs][m]:+.4f} (p={result.p_values[ours][theirs][m]:.3f})"
                for m in METRICS))
    if args.json:
        Path(args.json).write_text(json.dumps({"encoders": rows, "evaluation": result.to_dict()}, indent=1))


def distill_students(args) -> None:
    """A sanity DiSCo distillation on the embedded dataset (people's rewrites as the teacher):
    each ``--base`` trained on the train conversations, scored on the held-out ones."""
    import tempfile

    import pyarrow.compute as pc

    from disco_core import distill, teachers
    from disco_core.config import TrainConfig

    torch.set_num_threads(args.threads or 2)
    tables = datasets.load("embedded")
    index = doc_index("embedded", tables, Path(args.doc_vectors))
    doc_matrix, _ = load_vectors(Path(args.doc_vectors))
    teacher = SpladeEncoder("splade-tiny", max_length=256)
    human = tables.rewrites.filter(pc.equal(tables.rewrites["teacher"], "human")).to_pydict()
    scores = teachers.teacher_scores(index, teacher.encode(human["text"]), human["query_id"], "human", k=1000)
    targets = teachers.target_lists(scores, source="teacher")
    conversations = set(tables.turns["conversation_id"].to_pylist())
    test = splits.held_out(conversations, args.test_fraction, args.split_seed)
    turns = tables.turns.to_pylist()
    train, held = [t for t in turns if t["conversation_id"] not in test], splits.turns_in(turns, test)
    formatter = ConversationFormatter(teacher.tokenizer, 256)
    qrels = qrels_dict(tables.qrels)
    position = {d: i for i, d in enumerate(index.doc_ids)}
    examples = distill.build_examples([t["query_id"] for t in train], formatter.format_many(train), targets, qrels,
                                      position)
    held_qrels = {t["query_id"]: qrels[t["query_id"]] for t in held if t["query_id"] in qrels}
    runs = {}
    for base in args.base:
        settings = TrainConfig(epochs=args.epochs, learning_rate=args.lr, seed=args.seed)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = distill.Trainer(base, settings, doc_matrix, tmp)
            start = time.perf_counter()
            history = trainer.train(examples)
            seconds = time.perf_counter() - start
            name = f"{Path(base).name} lr={args.lr:g}"
            vectors = trainer.student.encode(formatter.format_many(held))
            runs[name] = index.search_ids(vectors, [t["query_id"] for t in held], k=100)
            print(json.dumps({"student": name, "examples": len(examples), "steps": len(history),
                              "seconds": round(seconds, 1), "first loss": history[0]["loss"],
                              "last loss": history[-1]["loss"], "query nnz": round(mean_nonzeros(vectors), 1)}))
    print(evaluate(held_qrels, runs, METRICS).markdown(baseline=next(iter(runs))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("build", "evaluate", "distill"):
        p = sub.add_parser(name)
        p.add_argument("--dataset", default="mtrag")
        p.add_argument("--test-fraction", type=float, default=0.2)
        p.add_argument("--split-seed", type=int, default=13)
        p.add_argument("--threads", type=int, default=2)
        if name == "build":
            p.add_argument("--out", required=True)
            p.add_argument("--sentences-per-conversation", type=float, default=4.0, help="-1: all")
            p.add_argument("--epochs", type=float)
            p.add_argument("--steps", type=int)
            p.add_argument("--lr", type=float)
            p.add_argument("--batch-size", type=int)
            p.add_argument("--max-length", type=int)
            p.add_argument("--seed", type=int)
            p.add_argument("--revive-weight", type=float)
            p.add_argument("--margin", type=float)
            p.add_argument("--suppress-weight", type=float)
        elif name == "evaluate":
            p.add_argument("--student", action="append", default=[], help="a student folder (repeatable)")
            p.add_argument("--doc-vectors", required=True, help="splade-tiny's corpus vectors (.npz), made if missing")
            p.add_argument("--json")
        else:
            p.add_argument("--base", action="append", default=[], help="a student's initial weights (repeatable)")
            p.add_argument("--doc-vectors", required=True, help="splade-tiny's embedded corpus vectors, made if missing")
            p.add_argument("--epochs", type=int, default=3)
            p.add_argument("--lr", type=float, default=2e-4)
            p.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("disco").setLevel(logging.INFO)  # progress lines (importing tasks set the root to WARNING)
    {"build": build, "evaluate": evaluate_students, "distill": distill_students}[args.command](args)


if __name__ == "__main__":
    main()
