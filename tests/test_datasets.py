"""Dataset loaders: the embedded default, MTRAG on the real files, and bad input named by file:line."""

import json
from collections import Counter

import pyarrow.compute as pc
import pytest

from disco_core import datasets
from disco_core.errors import ConfigError, DataError


# ---------------------------------------------------------------- embedded default
@pytest.fixture(scope="module")
def embedded():
    return datasets.load("embedded")


def test_embedded_size_and_shape(embedded):
    corpus, turns = embedded.corpus, embedded.turns
    assert corpus.num_rows >= 300
    assert len(set(corpus["domain"].to_pylist())) >= 10
    per_conv = Counter(turns["conversation_id"].to_pylist())
    assert len(per_conv) >= 40
    assert all(4 <= n <= 8 for n in per_conv.values())
    # a human rewrite for every turn, graded qrels with a relevant passage for every turn
    human = embedded.rewrites.filter(pc.equal(embedded.rewrites["teacher"], "human"))
    assert set(human["query_id"].to_pylist()) == set(turns["query_id"].to_pylist())
    grades = Counter(embedded.qrels["relevance"].to_pylist())
    assert grades[2] >= turns.num_rows and grades[1] > 0
    positives = embedded.qrels.filter(pc.equal(embedded.qrels["relevance"], 2))
    assert set(positives["query_id"].to_pylist()) == set(turns["query_id"].to_pylist())


def test_embedded_history_is_the_conversation_so_far(embedded):
    rows = {r["query_id"]: r for r in embedded.turns.to_pylist()}
    for qid, row in rows.items():
        if row["turn"] == 1:
            assert row["history"] == []
        else:
            prev = rows[f"{row['conversation_id']}_{row['turn'] - 1}"]
            assert row["history"][: len(prev["history"])] == prev["history"]
            assert row["history"][len(prev["history"])] == {"speaker": "user", "text": prev["utterance"]}


# ---------------------------------------------------------------- MTRAG (real files in ../shared)
def test_mtrag_counts_match_its_readme(mtrag_path):
    t = datasets.load("mtrag", mtrag_path)
    # 19,687 passages in the file; the three whose text is blank (judged by no one) are left out
    assert t.corpus.num_rows == 19684
    assert [e.split()[-1] for e in t.empty_passages] == ["ibmcld_00004-0-0", "ibmcld_01049-0-2", "ibmcld_16335-0-6"]
    assert t.empty_passages[0] == f"{mtrag_path / 'corpus.jsonl'}:13433 ibmcld_00004-0-0"
    assert Counter(t.corpus["domain"].to_pylist()) == {"clapnq": 6026, "cloud": 6252, "fiqa": 6959, "govt": 447}
    assert t.domains() == datasets.domains("mtrag") == ["clapnq", "cloud", "fiqa", "govt"]
    assert t.turns.num_rows == 842
    assert pc.count_distinct(t.turns["conversation_id"]).as_py() == 110
    positives = t.qrels.filter(pc.greater(t.qrels["relevance"], 0))
    assert pc.count_distinct(positives["query_id"]).as_py() == 777
    assert t.qrels.filter(pc.equal(t.qrels["relevance"], 0)).num_rows > 0  # annotators' judged negatives
    assert set(t.rewrites["teacher"].to_pylist()) == {"mtrag-mixtral"}
    assert not any(x.startswith("|user|") for x in t.rewrites["text"].to_pylist())


def test_mtrag_turns_carry_their_history(mtrag_path):
    t = datasets.load("mtrag", mtrag_path, domains=["govt"])
    assert set(t.corpus["domain"].to_pylist()) == {"govt"} and t.corpus.num_rows == 447
    conversations = {json.loads(line)["conversation_id"]: json.loads(line)
                     for line in (mtrag_path / "conversations.jsonl").open()}
    for row in t.turns.to_pylist()[:50]:
        messages = conversations[row["conversation_id"]]["messages"]
        earlier = [{"speaker": m["speaker"], "text": m["text"]} for m in messages if m["turn"] < row["turn"]]
        assert row["history"] == earlier
        user = [m["text"] for m in messages if m["speaker"] == "user" and m["turn"] == row["turn"]]
        assert row["utterance"] == user[0].strip()


# ---------------------------------------------------------------- bad input
def write_dataset(folder, corpus_lines, conv_lines):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("\n".join(corpus_lines) + "\n")
    (folder / "conversations.jsonl").write_text("\n".join(conv_lines) + "\n")
    return folder


DOC = '{"doc_id": "d%d", "title": "T", "text": "passage %d"}'
CONV = json.dumps({"conversation_id": "c1", "turns": [
    {"turn": 1, "user": "what is d1?", "rewrite": "what is d1?", "agent": "a doc", "qrels": {"d1": 2}},
    {"turn": 2, "user": "and the other?", "rewrite": "what is d2?", "qrels": {"d2": 1}}]})


def test_a_valid_small_dataset_loads(tmp_path):
    t = datasets.load("embedded", write_dataset(tmp_path, [DOC % (1, 1), DOC % (2, 2)], [CONV]))
    assert (t.corpus.num_rows, t.turns.num_rows, t.qrels.num_rows, t.rewrites.num_rows) == (2, 2, 2, 2)
    assert t.turns.to_pylist()[1]["history"] == [{"speaker": "user", "text": "what is d1?"},
                                                 {"speaker": "agent", "text": "a doc"}]


@pytest.mark.parametrize("corpus, convs, where, message", [
    ([DOC % (1, 1), '{"doc_id": "d2", "title": "T", "text": "unclosed', DOC % (3, 3)], [CONV],
     "corpus.jsonl:2", "malformed JSON"),
    ([DOC % (1, 1), '{"doc_id": "d2", "title": "T"}'], [CONV], "corpus.jsonl:2", "missing field(s) 'text'"),
    ([DOC % (1, 1), DOC % (2, 2), DOC % (1, 1)], [CONV], "corpus.jsonl:3", "duplicate doc_id 'd1'"),
    ([DOC % (1, 1)], [CONV], "conversations.jsonl:1", "unknown document 'd2'"),
    ([DOC % (1, 1), DOC % (2, 2)], [CONV, CONV], "conversations.jsonl:2", "duplicate conversation_id 'c1'"),
    ([DOC % (1, 1), DOC % (2, 2)], [CONV, '{"conversation_id": "c2", "turns": []}'],
     "conversations.jsonl:2", "has no turns"),
    ([DOC % (1, 1), DOC % (2, 2)], [CONV.replace('"what is d1?", "rewrite"', '"  ", "rewrite"')],
     "conversations.jsonl:1", "user is empty"),
    ([DOC % (1, 1), DOC % (2, 2)], [CONV.replace('"turn": 2', '"turn": 3')], "conversations.jsonl:1", "numbered 1..N"),
])
def test_bad_input_names_file_and_line(tmp_path, corpus, convs, where, message):
    folder = write_dataset(tmp_path, corpus, convs)
    with pytest.raises(DataError) as info:
        datasets.load("embedded", folder)
    assert str(info.value).startswith(str(folder / where) + ":")
    assert message in str(info.value)


def test_mtrag_layout_errors(tmp_path, mtrag_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(mtrag_path, folder)
    (folder / "qrels.tsv").chmod(0o644)
    with (folder / "qrels.tsv").open("a") as f:
        f.write("dd6b6ffd177f2b311abe676261279d2f<::>1\tno-such-doc\t1\n")
    n = sum(1 for _ in (folder / "qrels.tsv").open())
    with pytest.raises(DataError, match=rf"qrels.tsv:{n}: judgment names unknown document 'no-such-doc'"):
        datasets.load("mtrag", folder)


def test_unknown_dataset_and_missing_folder(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        datasets.load("nope")
    with pytest.raises(DataError, match="not found"):
        datasets.load("embedded", tmp_path / "missing")


# ---------------------------------------------------------------- the generic local layout
def test_local_layout_with_tsv_files(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "corpus.tsv").write_text("d1\tT1\tpassage one\nd2\t\tpassage two\n")
    conv = {"conversation_id": "c", "turns": [{"turn": 1, "user": "what is d1?"}, {"turn": 2, "user": "and d2?"}]}
    (folder / "conversations.jsonl").write_text(json.dumps(conv) + "\n")
    (folder / "qrels.tsv").write_text("c_1 0 d1 2\nc_2 0 d2 1\n")
    (folder / "rewrites.tsv").write_text("c_2\twhat is d2?\n")
    t = datasets.load("local", folder)
    assert (t.corpus.num_rows, t.turns.num_rows, t.qrels.num_rows, t.rewrites.num_rows) == (2, 2, 2, 1)
    assert t.qrels.to_pylist()[0] == {"query_id": "c_1", "doc_id": "d1", "relevance": 2}
    (folder / "qrels.tsv").write_text("c_1 0 d1 2\nc_2 0 d9 1\n")
    with pytest.raises(DataError, match=r"qrels.tsv:2: judgment names unknown document 'd9'"):
        datasets.load("local", folder)
    # tab-separated qrels with a header line; a judgment given twice names both places
    (folder / "qrels.tsv").write_text("query_id\tdoc_id\tgrade\nc_1\td1\t2\n")
    assert datasets.load("local", folder).qrels.to_pylist() == [{"query_id": "c_1", "doc_id": "d1", "relevance": 2}]
    (folder / "qrels.tsv").write_text("c_1\td1\t2\nc_1\td1\t1\n")
    with pytest.raises(DataError, match=r"qrels.tsv:2: duplicate judgment .* \(first seen at .*qrels.tsv:1\)"):
        datasets.load("local", folder)
    with pytest.raises(ConfigError, match="set dataset.path"):
        datasets.load("local")


def test_mtrag_validation_report_matches_its_readme(mtrag_path):
    report = datasets.validation_report(datasets.load("mtrag", mtrag_path))
    assert report["conversations"] == 110 and report["turns"] == 842
    assert report["turns_with_positive"] == 777 and report["passages"] == 19684
    assert report["empty_passages_left_out"] == 3 and len(report["empty_passages"]) == 3
    assert report["judged_passages_missing_from_corpus"] == 0 and report["empty_utterances"] == 0
    assert report["rewrites_by_teacher"] == {"mtrag-mixtral": 777}
