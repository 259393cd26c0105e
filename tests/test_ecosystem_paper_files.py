"""The DiSCo authors' files in and out, on the embedded dataset with splade-tiny, and TREC exports
that ranx and trec_eval (pytrec_eval) read back to the pipeline's own figures."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from disco_core import datasets, paper_files, schemas, trec
from disco_core.config import TrainConfig
from disco_core.conversation import ConversationFormatter
from disco_core.distill import build_examples
from disco_core.trainer import Trainer
from disco_core.encoder import SpladeEncoder, document_text
from disco_core.errors import DataError
from disco_core.evaluation import evaluate, qrels_dict
from disco_core.index import InvertedIndex
from disco_core.teachers import target_lists, teacher_scores

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world():
    """The embedded dataset, its corpus encoded and indexed, and the human teacher's top-50."""
    tables = datasets.load("embedded")
    corpus = tables.corpus.to_pydict()
    encoder = SpladeEncoder("splade-tiny", max_length=128, batch_size=16)
    doc_matrix = encoder.encode([document_text(t, x) for t, x in zip(corpus["title"], corpus["text"])])
    index = InvertedIndex.build(doc_matrix, corpus["doc_id"])
    turns = tables.turns.to_pylist()
    rewrites = dict(zip(tables.rewrites["query_id"].to_pylist(), tables.rewrites["text"].to_pylist()))
    qids = [t["query_id"] for t in turns]
    teacher = teacher_scores(index, encoder.encode([rewrites[q] for q in qids]), qids, "human", k=50)
    last_turn = index.search_ids(encoder.encode([t["utterance"] for t in turns]), qids, k=50)
    return {"tables": tables, "encoder": encoder, "doc_matrix": doc_matrix, "index": index, "turns": turns,
            "qids": qids, "teacher": teacher, "last_turn": last_turn}


# ------------------------------------------------------------------ teacher runs
def test_a_literal_authors_run_file_reads_as_teacher_scores(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"0": {"doc-b": 12.5, "doc-a": 20.25, "doc-c": 12.5},\n "1": {"doc-a": 3}}')
    table = paper_files.read_teacher_run(path, "mistral", id_map={"0": "7_1", "1": "7_2"})
    assert table.schema.equals(schemas.TEACHER_SCORES, check_metadata=False)
    assert table.to_pylist()[:3] == [
        {"query_id": "7_1", "doc_id": "doc-a", "teacher": "mistral", "rank": 1, "score": 20.25},
        {"query_id": "7_1", "doc_id": "doc-b", "teacher": "mistral", "rank": 2, "score": 12.5},  # tie: doc id
        {"query_id": "7_1", "doc_id": "doc-c", "teacher": "mistral", "rank": 3, "score": 12.5}]
    assert paper_files.read_teacher_run(path, "m", k=1).num_rows == 2  # top-1 per query, ids as they are


def test_unmapped_and_malformed_runs_are_named(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"0": {"d": 1.0},\n "1": {"d": 2.0}}')
    with pytest.raises(DataError, match=r"query id '1' is not in the id map"):
        paper_files.read_teacher_run(path, "t", id_map={"0": "a_1"})
    dropped = paper_files.read_teacher_run(path, "t", id_map={"0": "a_1"}, unmapped="drop")
    assert dropped["query_id"].to_pylist() == ["a_1"]
    path.write_text('{"0": {"d": 1.0},\n "1": {"d": "high"}}')
    with pytest.raises(DataError, match=r"run.json:2: query '1': expected \{doc id: score\}"):
        paper_files.read_teacher_run(path, "t")
    path.write_text('{"0": {"d": 1.0},\n\n "1": {"d" 2.0}}')
    with pytest.raises(DataError, match=r"run.json:3: malformed JSON"):
        paper_files.read_teacher_run(path, "t")


def test_an_authors_run_round_trips_and_trains_a_student(world, tmp_path):
    """Our teacher scores exported in the authors' TopiOCQA form (row-number query ids), imported
    back through the id mapping, then trained on."""
    rows = paper_files.ordinal_id_map(world["qids"])  # "0" -> first turn, ...
    path = paper_files.write_teacher_run(world["teacher"], tmp_path / "run.json", id_map=paper_files.invert(rows))
    raw = json.loads(path.read_text())
    assert set(raw) == {str(i) for i in range(len(world["qids"]))}
    assert all(isinstance(s, float) for s in raw["0"].values()) and len(raw["0"]) == 50

    imported = paper_files.read_teacher_run(path, "human", id_map=rows)
    original = world["teacher"].sort_by([("query_id", "ascending"), ("rank", "ascending")])
    assert imported.sort_by([("query_id", "ascending"), ("rank", "ascending")]).equals(original)

    tables, turns = world["tables"], world["turns"]
    formatter = ConversationFormatter(world["encoder"].tokenizer, 64)
    position = {d: i for i, d in enumerate(tables.corpus["doc_id"].to_pylist())}
    examples = build_examples(world["qids"], formatter.format_many(turns), target_lists(imported, "teacher"),
                              qrels_dict(tables.qrels), position)
    assert len(examples) == len(turns)
    settings = TrainConfig(batch_size=4, epochs=1, negatives=4, negative_ranks=[11, 50], max_length=64)
    trainer = Trainer("splade-tiny", settings, world["doc_matrix"], tmp_path / "train")
    history = trainer.train(examples, max_steps=3)
    assert len(history) == 3 and all(np.isfinite(h["loss"]) and h["kl"] >= 0 for h in history)


# ------------------------------------------------------------------ rewrites and id maps
def test_rewrite_files_in_the_authors_forms(world, tmp_path):
    human = world["tables"].rewrites
    ids, texts = human["query_id"].to_pylist(), human["text"].to_pylist()
    theirs = tmp_path / "test-00000-of-00001.parquet"  # their Hugging Face rewrite datasets: id, text
    pq.write_table(pa.table({"id": ids, "text": texts}), theirs)
    table = paper_files.read_rewrites(theirs, "mistral", model="Mistral-7B-Instruct-v0.2")
    assert table.num_rows == len(ids) and set(table["teacher"].to_pylist()) == {"mistral"}
    assert table["text"].to_pylist() == [" ".join(t.split()) for t in texts]
    assert set(table["model"].to_pylist()) == {"Mistral-7B-Instruct-v0.2"}
    for suffix in (".parquet", ".tsv", ".json"):
        out = paper_files.write_rewrites(table, tmp_path / f"out{suffix}")
        back = paper_files.read_rewrites(out, "mistral", model="Mistral-7B-Instruct-v0.2")
        assert back.equals(table), suffix
    assert pq.read_table(tmp_path / "out.parquet").column_names == ["id", "text"]
    (tmp_path / "dup.tsv").write_text("a_1\tfirst\na_1\tsecond\n")
    with pytest.raises(DataError, match=r"dup.tsv:2: second rewrite of query 'a_1' \(first at line 1\)"):
        paper_files.read_rewrites(tmp_path / "dup.tsv", "t")


def test_topiocqa_row_ids_follow_the_dpr_file(tmp_path):
    dpr = tmp_path / "train.json"
    dpr.write_text(json.dumps([{"conv_id": 1, "turn_id": 1, "question": "q", "positive_ctxs": []},
                               {"conv_id": 1, "turn_id": 2, "question": "q [SEP] a [SEP] q2", "positive_ctxs": []},
                               {"conv_id": 2, "turn_id": 1, "question": "x", "positive_ctxs": []}], indent=1))
    assert paper_files.topiocqa_row_ids(dpr) == {"0": "1_1", "1": "1_2", "2": "2_1"}
    (tmp_path / "map.tsv").write_text("0\t1_1\n1\t1_2\n")
    assert paper_files.load_id_map(tmp_path / "map.tsv") == {"0": "1_1", "1": "1_2"}


# ------------------------------------------------------------------ TREC round trip
def _trec_world(world):
    """The embedded qrels plus judged-irrelevant rows (one query has only those: it is not evaluated)."""
    qrels = world["tables"].qrels.to_pylist()
    first, second = world["qids"][:2]
    wrong = [d for d, _ in world["last_turn"][first] if d not in {r["doc_id"] for r in qrels if r["query_id"] == first}]
    qrels += [{"query_id": first, "doc_id": wrong[0], "relevance": 0}]
    qrels = [r for r in qrels if r["query_id"] != second] + [{"query_id": second, "doc_id": wrong[1], "relevance": 0}]
    runs = {"last turn": world["last_turn"], "rewrite: human": {
        q: list(zip(d, s)) for q, d, s in _by_query(world["teacher"])}}
    return schemas.to_table("qrels", qrels), runs


def _by_query(table):
    out = {}
    for q, d, s in zip(*(table[c].to_pylist() for c in ("query_id", "doc_id", "score"))):
        out.setdefault(q, ([], []))
        out[q][0].append(d)
        out[q][1].append(s)
    return [(q, d, s) for q, (d, s) in out.items()]


def test_exported_trec_files_give_the_pipelines_metrics(world, tmp_path):
    import pytrec_eval
    import ranx

    qrels_table, runs = _trec_world(world)
    metrics = ["mrr@10", "ndcg@3"]
    ours = evaluate(qrels_dict(qrels_table), runs, metrics)
    files = trec.export_trec(tmp_path, qrels_table, runs)
    assert set(files) == {"qrels", "last turn", "rewrite: human"}
    assert files["rewrite: human"].name == "rewrite__human.trec"

    qrels = ranx.Qrels.from_file(str(files["qrels"]), kind="trec")
    judged = {q for q, docs in qrels.to_dict().items() if any(r > 0 for r in docs.values())}
    assert len(judged) == ours.n_queries == len(world["qids"]) - 1
    with open(files["qrels"]) as handle:
        trec_qrels = pytrec_eval.parse_qrel(handle)
    for name in runs:
        run = ranx.Run.from_file(str(files[name]), kind="trec")
        scores = ranx.evaluate(qrels, run, metrics, make_comparable=True)
        for m in metrics:
            assert scores[m] == pytest.approx(ours.scores[name][m], abs=1e-9), (name, m)
        # trec_eval's measures (recip_rank on the top 10 = trec_eval -M 10; ndcg_cut.3), averaged as
        # trec_eval -c does: over every judged query, 0 where the run has none
        with open(files[name]) as handle:
            trec_run = pytrec_eval.parse_run(handle)
        top10 = {q: dict(sorted(d.items(), key=lambda x: -x[1])[:10]) for q, d in trec_run.items()}
        rr = pytrec_eval.RelevanceEvaluator(trec_qrels, {"recip_rank"}).evaluate(top10)
        ndcg = pytrec_eval.RelevanceEvaluator(trec_qrels, {"ndcg_cut.3"}).evaluate(trec_run)
        mean = lambda per_query, key: sum(per_query.get(q, {}).get(key, 0.0) for q in judged) / len(judged)  # noqa: E731
        assert mean(rr, "recip_rank") == pytest.approx(ours.scores[name]["mrr@10"], abs=1e-6), name
        assert mean(ndcg, "ndcg_cut_3") == pytest.approx(ours.scores[name]["ndcg@3"], abs=1e-6), name
