"""Run files round-trip; ranx metrics match values computed by hand."""

import math

import pytest

from disco_core import fusion, runs
from disco_core.errors import DataError
from disco_core.evaluation import evaluate, qrels_dict
from disco_core import schemas

RUN = {"q1": [("d3", 3.0), ("d1", 2.5), ("d9", 1.0)], "q2": [("d2", 1.5)]}


def test_parquet_and_trec_roundtrip(tmp_path):
    assert runs.read_parquet(runs.write_parquet(RUN, tmp_path / "r.parquet")) == RUN
    path = runs.write_trec(RUN, tmp_path / "r.trec", tag="t")
    assert path.read_text().splitlines()[0] == "q1 Q0 d3 1 3 t"  # 9 significant digits, no padding
    assert runs.read_trec(path) == RUN
    (tmp_path / "bad.trec").write_text("q1 Q0 d3 1 3.0 t\nq1 Q0 d4 2 t\n")
    with pytest.raises(DataError, match=r"bad.trec:2: expected 6 fields"):
        runs.read_trec(tmp_path / "bad.trec")


def test_metrics_against_hand_computation():
    qrels = {"q1": {"d1": 2, "d2": 1}, "q2": {"d2": 1}, "q3": {"d7": 1}}
    ev = evaluate(qrels, {"r": RUN}, ["mrr@10", "ndcg@3", "recall@10", "recall@100"])
    s = ev.scores["r"]
    # q1: first relevant at rank 2; q2: rank 1; q3: nothing retrieved (scores 0, still counted)
    assert s["mrr@10"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    # nDCG@3 (ranx: linear gain): q1 DCG = 2/log2(3); IDCG = 2 + 1/log2(3); q2 = 1; q3 = 0
    ndcg_q1 = (2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert s["ndcg@3"] == pytest.approx((ndcg_q1 + 1 + 0) / 3)
    assert s["recall@10"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert ev.per_query["r"]["mrr@10"] == pytest.approx({"q1": 0.5, "q2": 1.0, "q3": 0.0})
    assert ev.n_queries == 3


def test_significance_and_table():
    qrels = {f"q{i}": {"good": 1} for i in range(30)}
    good = {q: [("good", 2.0), ("bad", 1.0)] for q in qrels}
    bad = {q: [("bad", 2.0)] + ([("good", 1.0)] if i % 5 == 0 else []) for i, q in enumerate(qrels)}
    ev = evaluate(qrels, {"bad": bad, "good": good, "same": dict(good)}, ["mrr@10", "recall@10"])
    assert ev.significant("good", "bad", "mrr@10")
    assert not ev.significant("bad", "good", "mrr@10")
    assert not ev.significant("same", "good", "mrr@10")
    table = ev.markdown(baseline="bad")
    assert "| good | 1.0000* | 1.0000* |" in table and "| bad | 0.1000 | 0.2000 |" in table


def test_qrels_keep_relevant_only():
    table = schemas.to_table("qrels", [{"query_id": "a", "doc_id": "x", "relevance": 0},
                                       {"query_id": "a", "doc_id": "y", "relevance": 2},
                                       {"query_id": "b", "doc_id": "x", "relevance": 0}])
    assert qrels_dict(table) == {"a": {"y": 2}}


def test_fusion_of_runs_that_hold_different_queries():
    """RRF over a student run (every turn) and a rewrite run (turns with a rewrite only): shared
    queries fused by ranx, a query one run lacks keeps the other's ranking."""
    student = {"q1": [("a", 9.0), ("b", 8.0), ("c", 1.0)], "q2": [("x", 3.0), ("y", 2.0)]}
    rewrite = {"q1": [("b", 5.0), ("c", 4.0), ("a", 0.5)]}
    fused = fusion.fuse({"student": student, "rewrite": rewrite}, "rrf", k=2)
    # rrf (k=60): a = 1/61 + 1/63, b = 1/62 + 1/61, c = 1/63 + 1/62: b, then a
    assert [d for d, _ in fused["q1"]] == ["b", "a"]
    assert [d for d, _ in fused["q2"]] == ["x", "y"]
    assert set(fused) == {"q1", "q2"}
