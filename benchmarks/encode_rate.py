"""Encoding rate per CPU core, for the collection-scale projections in benchmarks/README.md.

Encodes a seeded sample of MTRAG passages with ``SpladeEncoder`` on ONE thread (torch and
OpenMP), for two models: ``splade-tiny`` (the project's default, shipped offline) and a
BERT-base-sized masked LM with the same architecture as SPLADE++ (DiSCo's document encoder,
``naver/splade-cocondenser-ensembledistil``: 12 layers, 768 hidden, 30,522 vocabulary), built from
its configuration with random weights: the weights are not on this machine, and the compute does
not depend on their values. Prints passages/s, tokens/s and the floating-point operations per
token (counted from the shapes), so that a GPU rate can be derived from a stated peak and
utilisation.

    python benchmarks/encode_rate.py                   # 200 passages per model
"""

from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (environment defaults before torch)
from _common import machine, print_header, print_table, sample_positions, write_json

import torch

from disco_core import datasets
from disco_core.encoder import SpladeEncoder, document_text


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", default="mtrag")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--json", metavar="PATH")
    return p.parse_args()


def bert_base_splade():
    """A BERT-base masked LM (SPLADE++'s shape) with random weights, and splade-tiny's tokenizer
    (the same BERT uncased vocabulary)."""
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072, max_position_embeddings=512)
    torch.manual_seed(0)
    return BertForMaskedLM(config)


def flops_per_token(model, tokens: int) -> float:
    """Multiply-adds x 2 per token for a sequence of ``tokens``: the layers' matrices, attention
    scores and weighted sums, and the vocabulary head."""
    c = model.config
    h, f, layers, v = c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.vocab_size
    per_layer = 4 * h * h + 2 * h * f + 2 * tokens * h  # projections, feed-forward, attention
    head = h * h + h * v  # transform + vocabulary projection
    return 2.0 * (layers * per_layer + head)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    host = machine()
    print_header("encoding rate on one CPU core", {**host, "passages": args.docs, "max_length": args.max_length})
    corpus = datasets.load(args.dataset).corpus
    titles, bodies = corpus["title"].to_pylist(), corpus["text"].to_pylist()
    texts = [document_text(titles[i], bodies[i]) for i in sample_positions(len(bodies), args.docs, args.seed)]
    tiny = SpladeEncoder("splade-tiny", max_length=args.max_length, threads=1)
    base = SpladeEncoder("splade-tiny", max_length=args.max_length, threads=1, model_obj=bert_base_splade(),
                         tokenizer=tiny.tokenizer)
    tokens = [len(x) for x in tiny.tokenizer(texts, truncation=True, max_length=args.max_length)["input_ids"]]
    mean_tokens = sum(tokens) / len(tokens)
    rows, figures = [], {}
    for name, encoder in (("splade-tiny", tiny), ("BERT-base SPLADE (SPLADE++ shape)", base)):
        encoder.encode(texts[:8])  # warm-up
        # CPU seconds of this process (all its threads): a per-core rate that other jobs on a
        # shared machine do not inflate (wall time is printed too)
        cpu, wall = time.process_time(), time.perf_counter()
        encoder.encode(texts)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        rate = len(texts) / cpu
        flops = flops_per_token(encoder.model, int(mean_tokens))
        figures[name] = {"passages_per_cpu_s": rate, "wall_s": wall, "cpu_s": cpu, "tokens_per_cpu_s": rate * mean_tokens,
                         "flops_per_token": flops, "achieved_gflops": rate * mean_tokens * flops / 1e9}
        rows.append([name, f"{rate:.2f}", f"{rate * mean_tokens:.0f}", f"{flops / 1e6:.0f}",
                     f"{figures[name]['achieved_gflops']:.1f}"])
    print(f"   mean tokens per passage: {mean_tokens:.1f}\n")
    print_table(["model", "passages / CPU s", "tokens / CPU s", "MFLOP/token", "GFLOP / CPU s"], rows)
    write_json(args.json, {"benchmark": "encode_rate", **host, "mean_tokens": mean_tokens, "models": figures})


if __name__ == "__main__":
    main()
