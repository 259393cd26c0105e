"""TopiOCQA and QReCC: fixtures in the official formats, served on loopback, through the registry."""

from __future__ import annotations

import csv
import json
import re
import zipfile
from pathlib import Path

import pyarrow as pa
import pytest

from disco_core import datasets, schemas
from disco_core.datasets import _convqa, qrecc, topiocqa
from disco_core.errors import DataError
from loopback import StaticServer, register_fixture

# ---------------------------------------------------------------- fixtures in the official formats

PASSAGES = [  # (id, text, title) as in full_wiki_segments.tsv
    (1, "Dunkirk is a 2017 war film written, directed, and produced by Christopher Nolan.",
     "Dunkirk (2017 film) [SEP] Introduction"),
    (2, "The film was released on DVD on 18 December 2017.", "Dunkirk (2017 film) [SEP] Release"),
    (3, 'The score, called "Supermarine", was composed by Hans Zimmer.', "Dunkirk (2017 film) [SEP] Music"),
    (4, "Christopher Nolan is a British-American filmmaker.", "Christopher Nolan [SEP] Introduction"),
    (5, "Nolan was born in London.", "Christopher Nolan [SEP] Early life"),
    (6, "The Dunkirk evacuation took place in 1940.", "Dunkirk evacuation [SEP] Introduction"),
    (7, "Hans Zimmer is a German film score composer.", "Hans Zimmer [SEP] Introduction"),
    (8, "Zimmer has won two Academy Awards.", "Hans Zimmer [SEP] Awards"),
    (9, "Inception is a 2010 science fiction action film.", "Inception [SEP] Introduction"),
    (10, "A passage whose title has no section.", "Orphan page"),
]


def _topiocqa_turns(conversations: list[list[tuple[str, str, str, object]]], first_no: int = 1) -> list[dict]:
    """Records of ``topiocqa_<split>.json``: one list of (question, answer, topic, gold id) per
    conversation; gold None leaves ``Gold_passage`` out."""
    records = []
    for conv_no, turns in enumerate(conversations, start=first_no):
        context: list[str] = []
        for turn_no, (question, answer, topic, gold) in enumerate(turns, start=1):
            record = {"Conversation_no": conv_no, "Turn_no": turn_no, "Question": question, "Answer": answer,
                      "Topic": topic, "Topic_section": "Introduction", "Context": list(context),
                      "Rationale": answer, "is_nq": turn_no == 1}
            if gold is not None:
                record["Gold_passage"] = {"id": gold, "title": f"{topic} [SEP] Introduction", "text": "..."}
            records.append(record)
            context += [question, answer]
    return records


TOPIOCQA_TRAIN = _topiocqa_turns([
    [("when was dunkirk released on dvd", "18 December 2017", "Dunkirk (2017 film)", "wiki:2"),
     ("what is this film about?", "Dunkirk evacuation", "Dunkirk (2017 film)", "wiki:1"),
     ("who composed its music?", "Hans Zimmer", "Dunkirk (2017 film)", "wiki:3")],
    [("who is christopher nolan", "a filmmaker", "Christopher Nolan", "wiki:4"),
     ("where was he born?", "London", "Christopher Nolan", "wiki:5"),
     ("what else did he direct?", "Inception", "Inception", "wiki:9"),
     ("what is it about?", "UNANSWERABLE", "Inception", None)],  # no gold passage: no judgment
    [("who is hans zimmer", "a composer", "Hans Zimmer", "wiki:7"),
     ("did he win awards?", "two Academy Awards", "Hans Zimmer", "wiki:8"),
     ("which films?", "The Lion King and Dune", "Hans Zimmer", "wiki:999"),  # not in the collection
     ("when was the evacuation?", "1940", "Dunkirk evacuation", 6),  # a bare numeric id
     ("how many soldiers?", "338,226", "Dunkirk evacuation", "wiki:6")],
])
TOPIOCQA_DEV = _topiocqa_turns([
    [("what is inception", "a 2010 film", "Inception", "wiki:9"),
     ("who directed it?", "Christopher Nolan", "Christopher Nolan", "wiki:4"),
     ("where was he born?", "London", "Christopher Nolan", "wiki:5")],
    [("tell me about dunkirk", "a 2017 war film", "Dunkirk (2017 film)", "wiki:1"),
     ("who wrote the music?", "Hans Zimmer", "Hans Zimmer", "wiki:7"),
     ("is there an orphan?", "yes", "Orphan page", "wiki:10")],
], first_no=101)


def write_passages(path: Path, rows=PASSAGES) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "text", "title"])
        writer.writerows(rows)


def json_array_one_record_a_line(records: list[dict]) -> str:
    """A JSON array with record i on line i + 2 (for exact line numbers in error tests)."""
    return "[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n"


def _qrecc_turns(conversations: list[tuple[str, list[tuple[str, str, str, str]]]], first_no: int = 1) -> list[dict]:
    """Records of ``qrecc_<split>.json``: (source, [(question, rewrite, answer, answer_url)])."""
    records = []
    for conv_no, (source, turns) in enumerate(conversations, start=first_no):
        context: list[str] = []
        for turn_no, (question, rewrite, answer, url) in enumerate(turns, start=1):
            records.append({"Context": list(context), "Question": question, "Rewrite": rewrite, "Answer": answer,
                            "Answer_URL": url, "Conversation_no": conv_no, "Turn_no": turn_no,
                            "Conversation_source": source})
            context += [question, answer]
    return records


QRECC_TRAIN = _qrecc_turns([
    ("trec", [("What are the pros and cons of electric cars?", "What are the pros and cons of electric cars?",
               "Some pros are ...", "https://www.example.org/ev"),
              ("Tell me more about Tesla", "Tell me more about Tesla the car company.", "Tesla Inc. is ...",
               "https://en.wikipedia.org/wiki/Tesla,_Inc."),
              ("Who founded it?", "Who founded Tesla Inc.?", "Martin Eberhard and Marc Tarpenning",
               "https://en.wikipedia.org/wiki/Tesla,_Inc. https://www.example.org/founders")]),
    ("quac", [("What did Ada Lovelace do?", "What did Ada Lovelace do?", "She wrote the first program.",
               "https://en.wikipedia.org/wiki/Ada_Lovelace"),
              ("When?", "When did Ada Lovelace write the first program?", "1843", ""),
              ("Anything else?", "", "", ""),  # no rewrite, no answer page
              ("Who was her father?", "Who was Ada Lovelace's father?", "Lord Byron",
               "https://a.org/x https://a.org/x")]),  # a URL given twice: one judgment
    ("nq", [("who wrote hamlet", "who wrote hamlet", "William Shakespeare", "https://en.wikipedia.org/wiki/Hamlet"),
            ("when", "when was hamlet written", "around 1600", "https://en.wikipedia.org/wiki/Hamlet"),
            ("where is it set", "where is hamlet set", "Denmark", "https://en.wikipedia.org/wiki/Hamlet")]),
])
QRECC_TEST = _qrecc_turns([
    ("trec", [("What is a cryptocurrency?", "What is a cryptocurrency?", "A digital currency ...",
               "https://en.wikipedia.org/wiki/Cryptocurrency"),
              ("How is it mined?", "How is a cryptocurrency mined?", "By proof of work ...", ""),
              ("Is it legal?", "Is cryptocurrency legal?", "It depends ...", "https://www.example.org/legal")]),
    ("quac", [("Who was Alan Turing?", "Who was Alan Turing?", "A mathematician.",
               "https://en.wikipedia.org/wiki/Alan_Turing"),
              ("What did he do in the war?", "What did Alan Turing do in the war?", "Broke Enigma.",
               "https://en.wikipedia.org/wiki/Alan_Turing")]),
], first_no=9001)


def write_qrecc_zip(path: Path, train=QRECC_TRAIN, test=QRECC_TEST, folder: str = "",
                    train_text: str | None = None) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{folder}qrecc_train.json", train_text if train_text is not None else json.dumps(train, indent=2))
        zf.writestr(f"{folder}qrecc_test.json", json.dumps(test, indent=2))


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A folder served on loopback, and DISCO_DATA_DIR pointed at an empty cache."""
    www = tmp_path / "www"
    www.mkdir()
    monkeypatch.setenv("DISCO_DATA_DIR", str(tmp_path / "data"))
    server = StaticServer(www)
    yield www, server
    server.close()


def streamed_report(tables: datasets.DatasetTables, folder) -> dict:
    """The validation report as the ingest stage makes it: the streamed corpus written, then read back."""
    corpus_file = folder / "corpus.parquet"
    schemas.write_table_chunks("corpus", tables.corpus_chunks(), corpus_file)
    return datasets.validation_report(tables, corpus_file)


def corpus_of(tables: datasets.DatasetTables) -> pa.Table:
    assert tables.corpus is None and tables.corpus_chunks is not None
    return pa.concat_tables(list(tables.corpus_chunks()))


# ---------------------------------------------------------------- TopiOCQA

@pytest.fixture
def topiocqa_www(served):
    www, server = served
    (www / "topiocqa_train.json").write_text(json.dumps(TOPIOCQA_TRAIN, indent=2), encoding="utf-8")
    (www / "topiocqa_dev.json").write_text(json.dumps(TOPIOCQA_DEV, indent=2), encoding="utf-8")
    write_passages(www / "full_wiki_segments.tsv")
    return www, server


def test_topiocqa_train_loads_streams_its_corpus_and_is_cached(topiocqa_www, monkeypatch, tmp_path):
    www, server = topiocqa_www
    name = register_fixture("topiocqa-train", www, server, monkeypatch)
    tables = datasets.load(name)
    assert server.requests == {"topiocqa_train.json": 1, "full_wiki_segments.tsv": 1}

    turns = tables.turns.to_pylist()
    assert len(turns) == 12 and len({t["conversation_id"] for t in turns}) == 3
    assert [t["query_id"] for t in turns[:4]] == ["1_1", "1_2", "1_3", "2_1"]
    third = next(t for t in turns if t["query_id"] == "1_3")
    assert third["conversation_id"] == "1" and third["turn"] == 3
    assert third["utterance"] == "who composed its music?"
    assert third["history"] == [
        {"speaker": "user", "text": "when was dunkirk released on dvd"},
        {"speaker": "agent", "text": "18 December 2017"},
        {"speaker": "user", "text": "what is this film about?"},
        {"speaker": "agent", "text": "Dunkirk evacuation"},
    ]
    assert next(t for t in turns if t["query_id"] == "2_3")["domain"] == "Inception"  # the turn's topic

    qrels = {(r["query_id"], r["doc_id"]): r["relevance"] for r in tables.qrels.to_pylist()}
    assert len(qrels) == 11 and set(qrels.values()) == {1}
    assert qrels[("1_1", "2")] == 1 and qrels[("3_4", "6")] == 1 and ("3_3", "999") in qrels
    assert not any(q == "2_4" for q, _ in qrels)  # no Gold_passage: no judgment
    assert tables.rewrites.num_rows == 0

    corpus = corpus_of(tables)
    assert corpus.num_rows == 10 and corpus.schema.equals(schemas.CORPUS, check_metadata=False)
    rows = {r["doc_id"]: r for r in corpus.to_pylist()}
    assert rows["1"]["title"] == "Dunkirk (2017 film): Introduction"
    assert rows["10"]["title"] == "Orphan page" and rows["1"]["domain"] is None
    assert rows["3"]["text"] == 'The score, called "Supermarine", was composed by Hans Zimmer.'

    report = streamed_report(tables, tmp_path)
    assert report["conversations"] == 3 and report["turns"] == 12 and report["passages"] == 10
    assert report["turns_with_positive"] == 11 and report["qrels_by_grade"] == {"1": 11}
    assert report["rewrites_by_teacher"] == {}
    assert report["judged_passages_missing_from_corpus"] == 1 and report["turns_with_judged_passages_missing"] == 1

    before = server.total_requests
    again = datasets.load(name)
    assert server.total_requests == before
    assert again.turns.equals(tables.turns) and corpus_of(again).equals(corpus)


def test_topiocqa_dev_shares_the_collection_with_train(topiocqa_www, monkeypatch, tmp_path):
    www, server = topiocqa_www
    train = register_fixture("topiocqa-train", www, server, monkeypatch)
    dev = register_fixture("topiocqa-dev", www, server, monkeypatch)
    datasets.load(train)
    tables = datasets.load(dev)
    # same cache folder: the passage collection is not fetched a second time
    assert server.requests == {"topiocqa_train.json": 1, "topiocqa_dev.json": 1, "full_wiki_segments.tsv": 1}
    assert datasets.source_path(dev) == datasets.source_path(train)

    turns = tables.turns.to_pylist()
    assert len(turns) == 6 and {t["conversation_id"] for t in turns} == {"101", "102"}
    last = next(t for t in turns if t["query_id"] == "102_3")
    assert [m["speaker"] for m in last["history"]] == ["user", "agent", "user", "agent"]
    assert last["history"][2]["text"] == "who wrote the music?"
    report = streamed_report(tables, tmp_path)
    assert (report["conversations"], report["turns"], report["passages"]) == (2, 6, 10)
    assert report["qrels_by_grade"] == {"1": 6} and report["judged_passages_missing_from_corpus"] == 0
    assert tables.rewrites.num_rows == 0

    before = server.total_requests
    datasets.load(dev)
    assert server.total_requests == before


def test_topiocqa_corpus_streams_in_chunks(topiocqa_www, monkeypatch, tmp_path):
    www, server = topiocqa_www
    name = register_fixture("topiocqa-dev", www, server, monkeypatch)
    monkeypatch.setattr(topiocqa, "CHUNK_ROWS", 4)
    tables = datasets.load(name)
    chunks = list(tables.corpus_chunks())
    assert [c.num_rows for c in chunks] == [4, 4, 2]
    # as the ingest stage writes it: one Parquet file, streamed
    assert schemas.write_table_chunks("corpus", tables.corpus_chunks(), tmp_path / "corpus.parquet") == 10
    assert [c.num_rows for c in topiocqa.read_passages(www / "full_wiki_segments.tsv", chunk_rows=3)] == [3, 3, 3, 1]


def test_topiocqa_conversation_record_without_question(tmp_path):
    records = [dict(r) for r in TOPIOCQA_DEV]
    del records[3]["Question"]
    (tmp_path / "topiocqa_dev.json").write_text(json_array_one_record_a_line(records), encoding="utf-8")
    write_passages(tmp_path / "full_wiki_segments.tsv")
    path = tmp_path / "topiocqa_dev.json"
    with pytest.raises(DataError) as err:
        topiocqa.load_topiocqa(tmp_path, "dev")
    assert str(err.value).startswith(f"{path}:5: record 3: missing field(s) 'Question'")
    assert err.value.line == 5

    # in an indented array the line is the one where the record's object starts
    text = json.dumps(records, indent=2)
    path.write_text(text, encoding="utf-8")
    start = [m.start() for m in re.finditer(r"^  \{", text, flags=re.M)][3]
    with pytest.raises(DataError, match=re.escape(f"{path}:{text.count(chr(10), 0, start) + 1}: record 3")):
        topiocqa.load_topiocqa(tmp_path, "dev")


def test_topiocqa_bad_records_name_the_line(tmp_path):
    write_passages(tmp_path / "full_wiki_segments.tsv")
    path = tmp_path / "topiocqa_dev.json"
    cases = [
        ({"Context": "not a list"}, "Context must be a list of strings"),
        ({"Turn_no": 0}, "Turn_no must be an integer >= 1"),
        ({"Gold_passage": "wiki:1"}, "Gold_passage must be an object"),
        ({"Topic": 7}, "Topic must be a string"),
    ]
    for change, message in cases:
        records = [dict(r) for r in TOPIOCQA_DEV]
        records[2].update(change)
        path.write_text(json_array_one_record_a_line(records), encoding="utf-8")
        with pytest.raises(DataError, match=re.escape(f"{path}:4: record 2") + ".*" + re.escape(message)):
            topiocqa.load_topiocqa(tmp_path, "dev")
    records = [dict(r) for r in TOPIOCQA_DEV]
    records[4] = dict(records[1])  # the same conversation and turn twice
    path.write_text(json_array_one_record_a_line(records), encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{path}:6: duplicate query_id '101_2' (first seen at {path}:3)")):
        topiocqa.load_topiocqa(tmp_path, "dev")
    path.write_text(json_array_one_record_a_line(TOPIOCQA_DEV)[:-3] + ",\n]\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{path}:8: malformed JSON in record 6")):
        topiocqa.load_topiocqa(tmp_path, "dev")


def test_topiocqa_malformed_passage_rows(tmp_path):
    (tmp_path / "topiocqa_dev.json").write_text(json.dumps(TOPIOCQA_DEV), encoding="utf-8")
    tsv = tmp_path / "full_wiki_segments.tsv"
    write_passages(tsv)
    lines = tsv.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[7] = "7\tHans Zimmer is a German film score composer.\n"  # the title column is missing
    tsv.write_text("".join(lines), encoding="utf-8")
    tables = topiocqa.load_topiocqa(tmp_path, "dev")  # the collection is read when streamed
    with pytest.raises(DataError) as err:
        list(tables.corpus_chunks())
    assert str(err.value) == f"{tsv}:8: expected 3 fields, found 2"

    tsv.write_text("doc\ttext\ttitle\n1\tx\ty\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{tsv}:1: expected a header with the columns id, text, title")):
        list(topiocqa.read_passages(tsv))
    tsv.write_text("id\ttext\ttitle\n1\tx\ty\n\t  \tz\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{tsv}:3: passage id is empty")):
        list(topiocqa.read_passages(tsv))
    tsv.unlink()
    with pytest.raises(DataError, match=re.escape(f"{tsv}: file not found")):
        topiocqa.load_topiocqa(tmp_path, "dev")


def test_topiocqa_passage_ids_and_titles():
    assert topiocqa.passage_id("wiki:14979882") == "14979882"
    assert topiocqa.passage_id(14979882) == "14979882" and topiocqa.passage_id("") is None
    assert topiocqa.render_title("Dunkirk (2017 film) [SEP] Introduction") == "Dunkirk (2017 film): Introduction"
    assert topiocqa.render_title("No section") == "No section"


def test_json_records_reads_arrays_and_json_lines(tmp_path):
    path = tmp_path / "x.json"
    assert [(line, i, r["a"]) for line, i, r in _convqa.json_records('[\n {"a": 1},\n\n {"a": 2}\n]', path)] \
        == [(2, 0, 1), (4, 1, 2)]
    assert [(line, r["a"]) for line, _, r in _convqa.json_records('{"a": 1}\n\n{"a": 2}\n', path)] == [(1, 1), (3, 2)]
    assert list(_convqa.json_records(" [ ] \n", path)) == []
    with pytest.raises(DataError, match=re.escape(f"{path}:2: unexpected text after the JSON array")):
        list(_convqa.json_records('[{"a": 1}]\n[]', path))
    with pytest.raises(DataError, match=re.escape(f"{path}:1: record 1: expected a JSON object, got list")):
        list(_convqa.json_records('[{"a": 1}, [2]]', path))
    with pytest.raises(DataError, match=re.escape(f"{path}:1: expected ',' or ']' after record 0, found the end")):
        list(_convqa.json_records('[{"a": 1}', path))


# ---------------------------------------------------------------- QReCC

@pytest.fixture
def qrecc_www(served):
    www, server = served
    write_qrecc_zip(www / "qrecc_data.zip")
    return www, server


@pytest.mark.parametrize("split, counts", [
    # conversations, turns, rewrites, URL judgments, turns with a judgment, sources
    ("train", (3, 10, 9, 9, 8, {"trec", "quac", "nq"})),
    ("test", (2, 5, 5, 4, 4, {"trec", "quac"})),
])
def test_qrecc_split_loads_and_is_cached(qrecc_www, monkeypatch, split, counts):
    www, server = qrecc_www
    conversations, n_turns, n_rewrites, n_qrels, with_positive, sources = counts
    name = register_fixture(f"qrecc-{split}", www, server, monkeypatch)
    tables = datasets.load(name)
    assert server.requests == {"qrecc_data.zip": 1}
    assert tables.corpus is not None and tables.corpus.num_rows == 0 and tables.corpus_chunks is None

    turns = tables.turns.to_pylist()
    assert len(turns) == n_turns and {t["domain"] for t in turns} == sources
    report = datasets.validation_report(tables)
    assert report["conversations"] == conversations and report["turns"] == n_turns
    assert report["rewrites_by_teacher"] == {"human": n_rewrites}
    assert report["qrels_by_grade"] == {"1": n_qrels} and report["turns_with_positive"] == with_positive
    assert report["passages"] == 0
    # answer pages are not passages: every judgment is counted as missing from the (absent) corpus
    assert report["turns_with_judged_passages_missing"] == with_positive
    assert tables.rewrites["teacher"].unique().to_pylist() == ["human"]

    before = server.total_requests
    datasets.load(name)
    assert server.total_requests == before


def test_qrecc_train_turns_rewrites_and_answer_pages(qrecc_www, monkeypatch):
    www, server = qrecc_www
    tables = datasets.load(register_fixture("qrecc-train", www, server, monkeypatch))
    turns = {t["query_id"]: t for t in tables.turns.to_pylist()}
    assert list(turns)[:4] == ["1_1", "1_2", "1_3", "2_1"]
    later = turns["2_4"]
    assert later["conversation_id"] == "2" and later["turn"] == 4 and later["domain"] == "quac"
    assert later["utterance"] == "Who was her father?"
    assert later["history"] == [
        {"speaker": "user", "text": "What did Ada Lovelace do?"},
        {"speaker": "agent", "text": "She wrote the first program."},
        {"speaker": "user", "text": "When?"},
        {"speaker": "agent", "text": "1843"},
        {"speaker": "user", "text": "Anything else?"},
        {"speaker": "agent", "text": ""},
    ]
    rewrites = {r["query_id"]: r for r in tables.rewrites.to_pylist()}
    assert rewrites["1_2"]["text"] == "Tell me more about Tesla the car company."
    assert rewrites["1_2"]["model"] is None and "2_3" not in rewrites  # an empty Rewrite is none
    qrels = sorted((r["query_id"], r["doc_id"]) for r in tables.qrels.to_pylist())
    assert [d for q, d in qrels if q == "1_3"] == ["https://en.wikipedia.org/wiki/Tesla,_Inc.",
                                                   "https://www.example.org/founders"]
    assert [d for q, d in qrels if q == "2_4"] == ["https://a.org/x"]
    assert not any(q in ("2_2", "2_3") for q, _ in qrels)  # no Answer_URL: no judgment


def test_qrecc_malformed_record_names_member_and_line(tmp_path):
    records = [dict(r) for r in QRECC_TRAIN]
    del records[4]["Question"]
    archive = tmp_path / "qrecc_data.zip"
    write_qrecc_zip(archive, train_text=json_array_one_record_a_line(records))
    member = archive / "qrecc_train.json"
    with pytest.raises(DataError) as err:
        qrecc.load_qrecc(tmp_path, "train")
    assert str(err.value).startswith(f"{member}:6: record 4: missing field(s) 'Question'")
    assert qrecc.load_qrecc(tmp_path, "test").turns.num_rows == 5  # the other split is intact

    records = [dict(r) for r in QRECC_TRAIN]
    records[1]["Answer_URL"] = ["https://a.org"]
    write_qrecc_zip(archive, train_text=json_array_one_record_a_line(records))
    with pytest.raises(DataError, match=re.escape(f"{member}:3: record 1 (1_2): Answer_URL must be a string")):
        qrecc.load_qrecc(tmp_path, "train")


def test_qrecc_archive_layouts(tmp_path):
    archive = tmp_path / "qrecc_data.zip"
    write_qrecc_zip(archive, folder="qrecc_data/")
    with zipfile.ZipFile(archive, "a") as zf:  # macOS resource forks are ignored
        zf.writestr("__MACOSX/qrecc_data/qrecc_train.json", "junk")
    assert qrecc.load_qrecc(tmp_path, "train").turns.num_rows == 10

    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("qrecc_test.json", "[]")
    with pytest.raises(DataError, match=re.escape(f"{archive}: archive has no qrecc_train.json")):
        qrecc.load_qrecc(tmp_path, "train")
    assert qrecc.load_qrecc(tmp_path, "test").turns.num_rows == 0

    archive.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=re.escape(f"{archive}: not a readable zip archive")):
        qrecc.load_qrecc(tmp_path, "train")


def test_registry_entries():
    for name, cache, n_files, licence in [("topiocqa-train", "topiocqa", 2, "CC BY-NC-SA 4.0"),
                                          ("topiocqa-dev", "topiocqa", 2, "CC BY-NC-SA 4.0"),
                                          ("qrecc-train", "qrecc", 1, "CC BY-SA 3.0 Unported"),
                                          ("qrecc-test", "qrecc", 1, "CC BY-SA 3.0 Unported")]:
        spec = datasets.get(name)
        assert spec.folder_name == cache and len(spec.files) == n_files and spec.license == licence
        assert all(f.url.startswith("https://") for f in spec.files) and spec.rewrite_teacher == "human"
    assert datasets.get("qrecc-train").files[0].md5 == "f88fcc7ef3678cd6312080389c8abd67"
    assert datasets.get("topiocqa-dev").files[1] == datasets.get("topiocqa-train").files[1]
