"""Every bad input named: malformed dataset folders in the local (disco) and MTRAG layouts each end
in one DataError whose message starts with ``file:line:`` (or ``file:`` for a whole-file problem),
and a valid copy of the same folder still loads.

The local fixture is a copy of ``data/embedded`` (corpus.jsonl line 2 is ``bridges-002``, judged at
turn 2 of conversations.jsonl line 1, ``bridges-c1``); the MTRAG fixture is a slice of the real files:
the first three conversations with their tasks, judgments, passages and rewrites.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import pytest

from disco_core import datasets, io
from disco_core.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]
EMBEDDED = ROOT / "data" / "embedded"


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def mtrag_slice(tmp_path_factory, mtrag_path) -> Path:
    """Three MTRAG conversations in the MTRAG layout (built once; copied by each case)."""
    folder = tmp_path_factory.mktemp("mtrag") / "mtrag"
    (folder / "queries").mkdir(parents=True)
    conversations = (mtrag_path / "conversations.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)[:3]
    ids = {json.loads(c)["conversation_id"] for c in conversations}
    tasks = [t for t in (mtrag_path / "tasks.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
             if json.loads(t)["conversation_id"] in ids]
    task_ids = {json.loads(t)["task_id"] for t in tasks}
    judged = set()
    for name in ("qrels.tsv", "annotator_judgments.tsv"):
        header, *rows = (mtrag_path / name).read_text(encoding="utf-8").splitlines(keepends=True)
        rows = [r for r in rows if r.split("\t")[0] in task_ids]
        judged |= {r.split("\t")[1] for r in rows}
        (folder / name).write_text(header + "".join(rows), encoding="utf-8")
    with (mtrag_path / "corpus.jsonl").open(encoding="utf-8") as corpus:
        passages = [line for line in corpus if json.loads(line)["_id"] in judged]
    (folder / "corpus.jsonl").write_text("".join(passages), encoding="utf-8")
    (folder / "conversations.jsonl").write_text("".join(conversations), encoding="utf-8")
    (folder / "tasks.jsonl").write_text("".join(tasks), encoding="utf-8")
    for path in sorted((mtrag_path / "queries").glob("*_rewrite.jsonl")):
        rows = [r for r in path.read_text(encoding="utf-8").splitlines(keepends=True)
                if json.loads(r)["_id"] in task_ids]
        if rows:
            (folder / "queries" / path.name).write_text("".join(rows), encoding="utf-8")
    return folder


@pytest.fixture
def copy_of(tmp_path, mtrag_slice_if_needed):
    def make(layout: str) -> Path:
        source = EMBEDDED if layout == "local" else mtrag_slice_if_needed()
        return Path(shutil.copytree(source, tmp_path / layout))
    return make


@pytest.fixture
def mtrag_slice_if_needed(request):
    return lambda: request.getfixturevalue("mtrag_slice")


# ---------------------------------------------------------------- editing helpers
def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def set_line(path: Path, number: int, text: str) -> None:
    lines = lines_of(path)
    lines[number - 1] = text + "\n"
    path.write_text("".join(lines), encoding="utf-8")


def edit_json(path: Path, number: int, change) -> None:
    record = json.loads(lines_of(path)[number - 1])
    change(record)
    set_line(path, number, json.dumps(record))


def setter(*keys, value):
    """``change`` for edit_json: set record[k1][k2]... = value."""
    def change(record):
        for key in keys[:-1]:
            record = record[key]
        record[keys[-1]] = value
    return change


def grade_of(path: Path, number: int, grade: str) -> None:
    set_line(path, number, lines_of(path)[number - 1].rstrip("\n").rsplit("\t", 1)[0] + "\t" + grade)


def reencode(path: Path, encoding: str) -> None:
    path.write_bytes(path.read_text(encoding="utf-8").encode(encoding))


def latin1_on(path: Path, number: int) -> None:
    """Line ``number`` gets an 'é' in Latin-1 (one byte 0xe9, not UTF-8)."""
    lines = [line.encode("utf-8") for line in lines_of(path)]
    lines[number - 1] = lines[number - 1].replace(b'"', '"é'.encode("latin-1"), 4)[:-1] + b"\n"
    path.write_bytes(b"".join(lines))


def qrels_tsv(folder: Path, text: str) -> None:
    (folder / "qrels.tsv").write_text(text, encoding="utf-8")


def first_judged(folder: Path) -> str:
    """The passage judged on line 2 of the MTRAG slice's qrels.tsv."""
    return lines_of(folder / "qrels.tsv")[1].split("\t")[1]


def blank_passage(folder: Path, doc_id: str) -> None:
    path = folder / "corpus.jsonl"
    number = next(i for i, line in enumerate(lines_of(path), 1) if json.loads(line)["_id"] == doc_id)
    edit_json(path, number, setter("text", value="  \n "))


# ---------------------------------------------------------------- the table of bad inputs
# (layout, case, edit(folder), file, line or None, words the message holds)
L, M = "local", "mtrag"
CASES = [
    # encodings other than UTF-8
    (L, "utf16-bom corpus", lambda f: reencode(f / "corpus.jsonl", "utf-16"), "corpus.jsonl", 1,
     "UTF-16 (little-endian, with a byte-order mark), not UTF-8: save it as UTF-8"),
    (M, "utf16-bom corpus", lambda f: reencode(f / "corpus.jsonl", "utf-16"), "corpus.jsonl", 1,
     "UTF-16 (little-endian, with a byte-order mark), not UTF-8: save it as UTF-8"),
    (L, "utf16le no bom", lambda f: reencode(f / "conversations.jsonl", "utf-16-le"), "conversations.jsonl", 1,
     "looks like UTF-16 (little-endian, without a byte-order mark)"),
    (M, "utf16be no bom", lambda f: reencode(f / "tasks.jsonl", "utf-16-be"), "tasks.jsonl", 1,
     "looks like UTF-16 (big-endian, without a byte-order mark)"),
    (L, "latin-1", lambda f: latin1_on(f / "conversations.jsonl", 3), "conversations.jsonl", 3,
     "not UTF-8 (byte 0xe9 at column"),
    (M, "latin-1", lambda f: latin1_on(f / "conversations.jsonl", 2), "conversations.jsonl", 2,
     "looks like Latin-1 or Windows-1252 text: save it as UTF-8"),
    (M, "latin-1 rewrite", lambda f: latin1_on(next((f / "queries").glob("*")), 1), None, 1, "not UTF-8"),
    (L, "binary", lambda f: (f / "corpus.jsonl").write_bytes(bytes(range(256)) * 8), "corpus.jsonl", 1,
     "binary data (a NUL byte at column 1)"),
    (M, "binary", lambda f: (f / "corpus.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(1, 256))),
     "corpus.jsonl", 1, "binary data (byte 0x89 at column 1)"),
    (L, "utf16 qrels", lambda f: (f / "qrels.tsv").write_text("bridges-c1_1\tbridges-002\t1\n", encoding="utf-16"),
     "qrels.tsv", 1, "UTF-16"),
    (M, "utf16 qrels", lambda f: reencode(f / "qrels.tsv", "utf-16"), "qrels.tsv", 1, "UTF-16"),
    (L, "json nested too deeply", lambda f: set_line(f / "corpus.jsonl", 2, "[" * 100_000 + "]" * 100_000),
     "corpus.jsonl", 2, "nested too deeply"),
    (L, "lone surrogate", lambda f: set_line(f / "corpus.jsonl", 2, '{"doc_id": "x", "text": "a \\ud800 b"}'),
     "corpus.jsonl", 2, "lone UTF-16 surrogate"),
    # headers by their names: a malformed first data line is data, and an error
    (L, "bad first qrels line", lambda f: qrels_tsv(f, "q\td\thigh\nbridges-c1_1\tbridges-002\t1\n"), "qrels.tsv", 1,
     "grade must be an integer, got 'high' (a header line must name its columns: query_id doc_id relevance)"),
    (M, "bad first qrels line", lambda f: set_line(f / "qrels.tsv", 1, "q\td\thigh"), "qrels.tsv", 1,
     "grade must be an integer, got 'high'"),
    (L, "header out of order", lambda f: qrels_tsv(f, "doc_id\tquery_id\trelevance\nbridges-c1_1\tbridges-002\t1\n"),
     "qrels.tsv", 1, "a header with its columns in another order"),
    (L, "qrels header only", lambda f: qrels_tsv(f, "query_id\tdoc_id\trelevance\n"), "qrels.tsv", None,
     "no judgments"),
    (M, "qrels header only", lambda f: qrels_tsv(f, "query-id\tcorpus-id\tscore\n"), "qrels.tsv", None,
     "no judgments"),
    # ids that would break TREC run and qrels files
    (L, "doc id with a space", lambda f: edit_json(f / "corpus.jsonl", 2, setter("doc_id", value="bridges 002")),
     "corpus.jsonl", 2, "doc_id 'bridges 002' contains a space (character 8)"),
    (L, "doc id with a tab", lambda f: edit_json(f / "corpus.jsonl", 2, setter("doc_id", value="b\t2")),
     "corpus.jsonl", 2, "contains a tab"),
    (L, "doc id with a newline", lambda f: edit_json(f / "corpus.jsonl", 2, setter("doc_id", value="b\n2")),
     "corpus.jsonl", 2, "contains a newline"),
    (L, "tsv doc id with a space", lambda f: ((f / "corpus.jsonl").unlink(), (f / "corpus.tsv").write_text(
        "doc_id\ttitle\ttext\nd1\tT\tone\nd 2\tT\ttwo\n")), "corpus.tsv", 3, "doc_id 'd 2' contains a space"),
    (L, "conversation id with a space",
     lambda f: edit_json(f / "conversations.jsonl", 1, setter("conversation_id", value="bridges c1")),
     "conversations.jsonl", 1, "conversation_id 'bridges c1' contains a space"),
    (L, "qrels doc id with a space", lambda f: qrels_tsv(f, "bridges-c1_1\tbridges 002\t1\n"), "qrels.tsv", 1,
     "doc id 'bridges 002' contains a space"),
    (L, "rewrite id with a space", lambda f: (f / "rewrites.tsv").write_text("bridges c1_1\tx\n"), "rewrites.tsv", 1,
     "query id 'bridges c1_1' contains a space"),
    (M, "passage id with a space", lambda f: edit_json(f / "corpus.jsonl", 1, setter("_id", value="a b")),
     "corpus.jsonl", 1, "_id 'a b' contains a space"),
    (M, "task id with a space", lambda f: edit_json(f / "tasks.jsonl", 2, setter("task_id", value="t\u00a02")),
     "tasks.jsonl", 2, "task_id 't\\xa02' contains U+00A0 (no-break space)"),
    # empty corpus, passage, conversation, utterance
    (L, "empty corpus", lambda f: (f / "corpus.jsonl").write_text(""), "corpus.jsonl", None, "the corpus has no passages"),
    (M, "empty corpus", lambda f: (f / "corpus.jsonl").write_text("\n"), "corpus.jsonl", None,
     "the corpus has no passages"),
    (L, "judged passage with empty text", lambda f: edit_json(f / "corpus.jsonl", 2, setter("text", value=" ")),
     "conversations.jsonl", 1, "judgment names passage 'bridges-002', whose text is empty ({folder}/corpus.jsonl:2)"),
    (M, "judged passage with empty text", lambda f: blank_passage(f, first_judged(f)), "qrels.tsv", 2,
     "whose text is empty"),
    (L, "no conversations", lambda f: (f / "conversations.jsonl").write_text(""), "conversations.jsonl", None,
     "no conversations"),
    (M, "no conversations", lambda f: (f / "conversations.jsonl").write_text("\n\n"), "conversations.jsonl", None,
     "no conversations"),
    (M, "no tasks", lambda f: (f / "tasks.jsonl").write_text(""), "tasks.jsonl", None, "no tasks"),
    (L, "conversation without turns", lambda f: edit_json(f / "conversations.jsonl", 1, setter("turns", value=[])),
     "conversations.jsonl", 1, "conversation 'bridges-c1' has no turns"),
    (M, "conversation without messages",
     lambda f: edit_json(f / "conversations.jsonl", 2, setter("messages", value=[])),
     "conversations.jsonl", 2, "conversation '2' has no messages"),
    (L, "empty utterance", lambda f: edit_json(f / "conversations.jsonl", 1, setter("turns", 1, "user", value=" ")),
     "conversations.jsonl", 1, "conversation 'bridges-c1' turn 2: user is empty"),
    (M, "empty utterance", lambda f: edit_json(f / "conversations.jsonl", 1, setter("messages", 2, "text", value="")),
     "conversations.jsonl", 1, "conversation '1' message 3 (user, turn 2): text is empty"),
    # grades
    (L, "huge inline grade", lambda f: edit_json(f / "conversations.jsonl", 1,
                                                 setter("turns", 0, "qrels", value={"bridges-001": 10**20})),
     "conversations.jsonl", 1, "grade of 'bridges-001' 100000000000000000000 is out of range"),
    (L, "huge grade in qrels.tsv", lambda f: qrels_tsv(f, "bridges-c1_1\tbridges-002\t99999999999999999999\n"),
     "qrels.tsv", 1, "out of range"),
    (M, "huge grade", lambda f: grade_of(f / "qrels.tsv", 3, "99999999999999999999"), "qrels.tsv", 3, "out of range"),
    (M, "infinite grade", lambda f: grade_of(f / "qrels.tsv", 2, "1e400"), "qrels.tsv", 2,
     "grade must be an integer, got '1e400'"),
    (L, "inline qrels as a list", lambda f: edit_json(f / "conversations.jsonl", 1,
                                                      setter("turns", 0, "qrels", value=["bridges-001"])),
     "conversations.jsonl", 1, "qrels must be an object mapping doc_id to grade"),
    (L, "fractional inline grade", lambda f: edit_json(f / "conversations.jsonl", 1,
                                                       setter("turns", 0, "qrels", value={"bridges-001": 1.5})),
     "conversations.jsonl", 1, "grade of 'bridges-001' must be an integer, got 1.5"),
    (L, "inline grade as text", lambda f: edit_json(f / "conversations.jsonl", 1,
                                                    setter("turns", 0, "qrels", value={"bridges-001": "2"})),
     "conversations.jsonl", 1, "must be an integer, got '2'"),
    (L, "fractional grade in qrels.tsv", lambda f: qrels_tsv(f, "bridges-c1_1 0 bridges-002 1.5\n"), "qrels.tsv", 1,
     "grade must be an integer, got '1.5'"),
    (M, "fractional grade", lambda f: grade_of(f / "qrels.tsv", 2, "1.5"), "qrels.tsv", 2, "got '1.5'"),
    (M, "annotator judgment not 0 or 1", lambda f: grade_of(f / "annotator_judgments.tsv", 2, "2"),
     "annotator_judgments.tsv", 2, "relevant must be 0 or 1, got 2"),
    # turn numbers
    (M, "task turn 'x2'", lambda f: edit_json(f / "tasks.jsonl", 2, setter("turn", value="x2")), "tasks.jsonl", 2,
     "turn must be an integer, got 'x2'"),
    (M, "message turn 'x2'", lambda f: edit_json(f / "conversations.jsonl", 1, setter("messages", 1, "turn", value="x2")),
     "conversations.jsonl", 1, "conversation '1' message 2: turn must be an integer, got 'x2'"),
    (M, "fractional task turn", lambda f: edit_json(f / "tasks.jsonl", 2, setter("turn", value=2.5)), "tasks.jsonl", 2,
     "got 2.5"),
    (L, "negative turn", lambda f: edit_json(f / "conversations.jsonl", 1, setter("turns", 0, "turn", value=-1)),
     "conversations.jsonl", 1, "turn must be 1 or more, got -1"),
    (M, "negative task turn", lambda f: edit_json(f / "tasks.jsonl", 2, setter("turn", value=-2)), "tasks.jsonl", 2,
     "turn must be 1 or more, got -2"),
    (M, "negative message turn", lambda f: edit_json(f / "conversations.jsonl", 1, setter("messages", 0, "turn", value=-1)),
     "conversations.jsonl", 1, "turn must be 1 or more"),
    (L, "boolean turn", lambda f: edit_json(f / "conversations.jsonl", 1, setter("turns", 0, "turn", value=True)),
     "conversations.jsonl", 1, "turn must be an integer, got True"),
    (L, "duplicate turn", lambda f: edit_json(f / "conversations.jsonl", 1, setter("turns", 1, "turn", value=1)),
     "conversations.jsonl", 1, "turn 2: turn 1 again; turns must be numbered 1..N in order"),
    (M, "duplicate task turn", lambda f: edit_json(f / "tasks.jsonl", 2, setter("turn", value=1)), "tasks.jsonl", 2,
     "conversation '1' turn 1 is already task"),
    (M, "duplicate user turn", lambda f: edit_json(f / "conversations.jsonl", 1, setter("messages", 2, "turn", value=1)),
     "conversations.jsonl", 1, "a second user message at turn 1"),
    (M, "messages out of order", lambda f: edit_json(f / "conversations.jsonl", 1, setter("messages", 1, "turn", value=9)),
     "conversations.jsonl", 1, "messages must be in turn order"),
    # wrong types and shapes
    (L, "corpus is a folder", lambda f: ((f / "corpus.jsonl").unlink(), (f / "corpus.jsonl").mkdir()), "corpus.jsonl",
     None, "not a file"),
    (M, "corpus is a folder", lambda f: ((f / "corpus.jsonl").unlink(), (f / "corpus.jsonl").mkdir()), "corpus.jsonl",
     None, "not a file"),
    (L, "topic not a string", lambda f: edit_json(f / "conversations.jsonl", 2, setter("topic", value=5)),
     "conversations.jsonl", 2, "topic must be a string, got int"),
    (M, "title not a string", lambda f: edit_json(f / "corpus.jsonl", 1, setter("title", value=["a"])), "corpus.jsonl", 1,
     "title must be a string, got list"),
    (M, "domain not a string", lambda f: edit_json(f / "tasks.jsonl", 3, setter("domain", value=4)), "tasks.jsonl", 3,
     "domain must be a string, got int"),
    (M, "message without text", lambda f: edit_json(f / "conversations.jsonl", 1, lambda r: r["messages"][1].pop("text")),
     "conversations.jsonl", 1, "message 2 (agent, turn 1): text is missing"),
    (M, "rewrite not a string", lambda f: edit_json(next((f / "queries").glob("*")), 1, setter("text", value=5)),
     None, 1, "text must be a string, got int"),
    (L, "rewrite given twice", lambda f: (f / "rewrites.tsv").write_text("query_id\ttext\nbridges-c1_1\tagain\n"),
     "rewrites.tsv", 2, "duplicate rewrite of query 'bridges-c1_1' (first seen at"),
]


@pytest.mark.parametrize("layout, case, edit, file, line, words", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_bad_input_is_one_data_error_naming_file_and_line(copy_of, layout, case, edit, file, line, words):
    folder = copy_of(layout)
    edit(folder)
    with pytest.raises(DataError) as info:
        datasets.load(layout, folder)
    error = info.value
    path = Path(error.path)
    if file is None:  # a rewrite file: whichever queries/ file the slice has first
        assert path.parent == folder / "queries"
    else:
        assert path == folder / file
    assert error.line == line
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    assert str(error).startswith(where), str(error)
    assert words.format(folder=folder) in str(error), str(error)
    assert "\n" not in str(error)


# ---------------------------------------------------------------- valid inputs still load
def add_bom(path: Path) -> None:
    path.write_bytes(io.UTF8_BOM + path.read_bytes())


def crlf(path: Path) -> None:
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))


def corpus_as_tsv(folder: Path, header: str) -> None:
    rows = [json.loads(line) for line in lines_of(folder / "corpus.jsonl")]
    (folder / "corpus.jsonl").unlink()
    (folder / "corpus.tsv").write_text(header + "".join(f"{r['doc_id']}\t{r['title']}\t{r['text']}\n" for r in rows))


def append_empty_passage(folder: Path, layout: str) -> None:
    key = "doc_id" if layout == L else "_id"
    with (folder / "corpus.jsonl").open("a", encoding="utf-8") as corpus:
        corpus.write(json.dumps({key: "blank-1", "title": "", "text": "\n\n"}) + "\n")


VALID = [
    (L, "as is", lambda f: None, {}),
    (M, "as is", lambda f: None, {}),
    (L, "UTF-8 byte-order marks", lambda f: (add_bom(f / "corpus.jsonl"), add_bom(f / "conversations.jsonl")), {}),
    (M, "UTF-8 byte-order marks", lambda f: (add_bom(f / "corpus.jsonl"), add_bom(f / "qrels.tsv")), {}),
    (L, "CRLF line ends", lambda f: (crlf(f / "corpus.jsonl"), crlf(f / "conversations.jsonl")), {}),
    (M, "CRLF line ends", lambda f: (crlf(f / "tasks.jsonl"), crlf(f / "qrels.tsv")), {}),
    (L, "qrels header query_id doc_id relevance",
     lambda f: qrels_tsv(f, "query_id\tdoc_id\trelevance\nbridges-c1_1\tbridges-002\t1\n"), {"qrels": +1}),
    (L, "qrels header qid docid rel", lambda f: qrels_tsv(f, "qid\tdocid\trel\nbridges-c1_1\tbridges-002\t1\n"),
     {"qrels": +1}),
    (L, "TREC qrels with a header", lambda f: qrels_tsv(f, "qid iter docid rel\nbridges-c1_1 0 bridges-002 -1\n"),
     {"qrels": +1}),
    (L, "TREC qrels without a header", lambda f: qrels_tsv(f, "bridges-c1_1 Q0 bridges-002 0\n"), {"qrels": +1}),
    (L, "corpus.tsv with a header", lambda f: corpus_as_tsv(f, "doc_id\ttitle\ttext\n"), {}),
    (L, "corpus.tsv without a header", lambda f: corpus_as_tsv(f, ""), {}),
    (L, "rewrites.tsv with a header", lambda f: (
        edit_json(f / "conversations.jsonl", 1, lambda r: r["turns"][0].pop("rewrite")),
        (f / "rewrites.tsv").write_text("query_id\trewrite\nbridges-c1_1\tWhy was the bridge built?\n")), {}),
    (L, "an unjudged passage with empty text", lambda f: append_empty_passage(f, L), {"empty": 1}),
    (M, "an unjudged passage with empty text", lambda f: append_empty_passage(f, M), {"empty": 1}),
    (M, "a tab around an id (stripped)",
     lambda f: edit_json(f / "conversations.jsonl", 1, setter("conversation_id", value="1\t")), {}),
]


@pytest.mark.parametrize("layout, case, edit, changes", VALID, ids=[f"{v[0]}-{v[1]}" for v in VALID])
def test_a_valid_copy_still_loads(copy_of, layout, case, edit, changes):
    original = copy_of(layout)
    baseline = datasets.load(layout, original)
    edited = Path(shutil.copytree(original, original.with_name(f"{layout}-edited")))
    edit(edited)
    tables = datasets.load(layout, edited)
    for name in ("corpus", "turns", "rewrites"):
        assert getattr(tables, name).num_rows == getattr(baseline, name).num_rows, name
    assert tables.qrels.num_rows == baseline.qrels.num_rows + changes.get("qrels", 0)
    assert len(tables.empty_passages) == changes.get("empty", 0)
    if changes.get("empty"):
        last = len(lines_of(edited / "corpus.jsonl"))
        assert tables.empty_passages == [f"{edited / 'corpus.jsonl'}:{last} blank-1"]
        report = datasets.validation_report(tables)
        assert report["empty_passages_left_out"] == 1 and report["empty_passages"] == tables.empty_passages
    assert tables.turns.to_pylist()[0]["utterance"] == baseline.turns.to_pylist()[0]["utterance"]


# ---------------------------------------------------------------- domains
def test_domains_are_listed_and_checked(copy_of):
    assert datasets.domains("mtrag") == ["clapnq", "cloud", "fiqa", "govt"]  # from the registry: no load
    local = copy_of(L)
    known = datasets.domains("local", local)
    assert "bridges" in known and known == sorted(known) and len(known) >= 10
    kept = datasets.load("local", local, domains=["bridges"])
    assert set(kept.turns["domain"].to_pylist()) == {"bridges"} and set(kept.corpus["domain"].to_pylist()) == {"bridges"}
    with pytest.raises(ConfigError, match=r"dataset.domains: dataset 'local' has no domain 'nope'; its domains are "
                                          r"bridges, castles"):
        datasets.load("local", local, domains=["bridges", "nope"])


def test_mtrag_domains_are_checked(mtrag_path):
    with pytest.raises(ConfigError, match=r"dataset 'mtrag' has no domain 'nope'; its domains are clapnq, cloud, fiqa"):
        datasets.load("mtrag", mtrag_path, domains=["nope"])


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".", "", "a\\b", "x\ny"])
def test_domain_names_that_could_become_paths_are_refused_before_reading(tmp_path, name):
    with pytest.raises(ConfigError, match="dataset.domains: .* is not a domain name"):
        datasets.load("local", tmp_path / "not-even-there", domains=[name])


# ---------------------------------------------------------------- the io layer itself
@pytest.mark.parametrize("data, words", [
    ("a\tb\n".encode("utf-16"), "UTF-16 (little-endian, with a byte-order mark)"),
    ("a\tb\n".encode("utf-32"), "UTF-32 (little-endian, with a byte-order mark)"),
    ("a\tb\n".encode("utf-16-be"), "UTF-16 (big-endian, without a byte-order mark)"),
    ("a\tcafé\n".encode("latin-1"), "not UTF-8 (byte 0xe9 at column 6); the file looks like Latin-1"),
    (bytes(range(128, 256)) + b"\x01\x02\x03" * 10, "binary data"),
], ids=["utf-16", "utf-32", "utf-16be-no-bom", "latin-1", "binary"])
def test_readers_never_raise_a_raw_unicode_error(tmp_path, data, words):
    path = tmp_path / "f.tsv"
    path.write_bytes(data)
    for read in (lambda: list(io.read_tsv(path, 2)), lambda: list(io.read_jsonl(path)), lambda: io.read_text(path),
                 lambda: list(io.read_lines(path))):
        with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:1: .*{re.escape(words)}"):
            read()


def test_read_tsv_recognises_a_header_by_its_names(tmp_path):
    path = tmp_path / "f.tsv"
    header = (("query_id", "qid"), ("text",))
    path.write_bytes(io.UTF8_BOM + b"QID\tText\nq1\thello\n")
    assert list(io.read_tsv(path, 2, header=header)) == [(2, ["q1", "hello"])]
    path.write_text("q1\thello\n")
    assert list(io.read_tsv(path, 2, header=header)) == [(1, ["q1", "hello"])]
    assert list(io.read_tsv(path, 2)) == [(1, ["q1", "hello"])]
    path.write_text("query_id\ttext\n")
    assert list(io.read_tsv(path, 2)) == [(1, ["query_id", "text"])]  # no header expected: data


def test_datasets_modules_import_no_circle():
    """disco_core.datasets: the intra-package imports (at module level or inside functions) form no cycle."""
    package = ROOT / "disco_core" / "datasets"
    graph: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found |= {node.module} if node.module else {a.name for a in node.names}
        graph[path.stem] = {m for m in found if (package / f"{m}.py").exists()}
    graph.pop("__init__")

    def visit(module, trail):
        assert module not in trail, f"import circle: {' -> '.join(trail + [module])}"
        for imported in graph.get(module, ()):
            visit(imported, trail + [module])

    for module in graph:
        visit(module, [])
    assert "registry" not in graph["_trec"] and "registry" not in graph["_rows"]


# ---------------------------------------------------------------- the other loaders share the checks
def test_conversational_qa_and_topiocqa_passages_use_the_same_checks(tmp_path):
    from disco_core.datasets import _convqa, qrecc, topiocqa

    path = tmp_path / "qrecc_test.json"
    record = {"Conversation_no": "a b", "Turn_no": 1, "Question": "q", "Context": []}
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:3: record 0: Conversation_no 'a b' contains a space"):
        _convqa.turn_row(record, path, 3, 0)
    with pytest.raises(DataError, match=r"qrecc_test.json:1: .*UTF-16"):
        qrecc.decode_text(path, '[{"a": 1}]'.encode("utf-16"))

    tsv = tmp_path / "full_wiki_segments.tsv"
    tsv.write_text("id\ttext\ttitle\n1\tone\tT\n2\t  \tT\n3\tthree\tT\n", encoding="utf-8")
    empty: list[str] = []
    rows = [r for table in topiocqa.read_passages(tsv, empty=empty) for r in table.to_pylist()]
    assert [r["doc_id"] for r in rows] == ["1", "3"] and empty == [f"{tsv}:3 2"]
    tsv.write_text("id\ttext\ttitle\n1\t\tT\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{re.escape(str(tsv))}: the corpus has no passages \(1, all with empty"):
        list(topiocqa.read_passages(tsv))
    tsv.write_bytes("id\ttext\ttitle\n1\tcafé\tT\n".encode("latin-1"))
    with pytest.raises(DataError, match=rf"^{re.escape(str(tsv))}:2: not UTF-8"):
        list(topiocqa.read_passages(tsv))
