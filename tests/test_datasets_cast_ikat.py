"""TREC CAsT 2019-2022 and iKAT 2023: small fixtures in the official formats, served on loopback,
downloaded and parsed (through ir_datasets' parsers) into the canonical tables. Nothing here reaches
the internet or lets ir_datasets download anything."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from disco_core import datasets
from disco_core.datasets import cast, ikat
from disco_core.errors import DataError
from loopback import StaticServer, register_fixture


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    # downloads and ir_datasets' home go to throwaway folders (ir_datasets creates its home on import)
    monkeypatch.setenv("DISCO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path / "ir_datasets"))


@pytest.fixture
def serve():
    servers: list[StaticServer] = []

    def start(root: Path) -> StaticServer:
        servers.append(StaticServer(root))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def write_files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def topics_json(topics: list) -> str:
    return json.dumps(topics, indent=4, ensure_ascii=False) + "\n"


def load_served(name: str, files: dict[str, str], tmp_path: Path, serve, monkeypatch) -> datasets.DatasetTables:
    """Serve ``files`` as the official files of ``name``, load the fixture entry twice, and check the
    second load downloads nothing."""
    root = write_files(tmp_path / "www", files)
    assert set(files) == {f.name for f in datasets.get(name).files}
    server = serve(root)
    fixture = register_fixture(name, root, server, monkeypatch)
    tables = datasets.load(fixture)
    assert server.total_requests == len(files)
    again = datasets.load(fixture)
    assert server.total_requests == len(files)  # verified cache: no new request
    assert again.turns.equals(tables.turns) and again.qrels.equals(tables.qrels)
    return tables


def rows(tables) -> dict[str, dict]:
    return {r["query_id"]: r for r in tables.turns.to_pylist()}


def user(text: str) -> dict:
    return {"speaker": "user", "text": text}


def agent(text: str) -> dict:
    return {"speaker": "agent", "text": text}


def teachers(tables) -> Counter:
    return Counter(tables.rewrites["teacher"].to_pylist())


def rewrite(tables, query_id: str, teacher: str = "human") -> str:
    return next(r["text"] for r in tables.rewrites.to_pylist() if r["query_id"] == query_id and r["teacher"] == teacher)


# ---------------------------------------------------------------- fixtures in the official formats
CAST2019 = [
    {"number": 31, "title": "head and neck cancer",
     "description": "A person is trying to compare and contrast types of cancer.",
     "turn": [{"number": 1, "raw_utterance": "What is throat cancer?"},
              {"number": 2, "raw_utterance": "Is it treatable?"},
              {"number": 3, "raw_utterance": "Tell me about lung cancer."}]},
    {"number": 32, "title": "sharks",  # no description, like topic 44 of the real file
     "turn": [{"number": 1, "raw_utterance": "What are the different types of sharks?"},
              {"number": 2, "raw_utterance": "Are sharks endangered?"},
              {"number": 3, "raw_utterance": "Tell me more about tiger sharks."},
              {"number": 4, "raw_utterance": "What do they eat?"}]},
]
CAST2019_RESOLVED = ("31_1\tWhat is throat cancer?\n31_2\tIs throat cancer treatable?\n31_3\tTell me about lung cancer.\n"
                     "32_1\tWhat are the different types of sharks?\n32_2\tAre sharks endangered?\n"
                     "32_3\tTell me more about tiger sharks.\n32_4\tWhat do tiger sharks eat?\n")
CAST2019_QRELS = ("31_1 Q0 MARCO_5498474 3\n31_1 Q0 CAR_116d829c4c800c2fc70f11692fec5e8c7e975250 0\n"
                  "31_2 Q0 MARCO_1092925 4\n31_3 Q0 WAPO_903cc1eab726b829294d1abdd755d5ab-1 1\n\n"
                  "32_4 Q0 MARCO_955948 2\n32_4 Q0 MARCO_5498474 0\n")


def cast2020_turn(number: int, raw: str, manual: str, automatic: str, canonical: str) -> dict:
    return {"number": number, "raw_utterance": raw, "manual_rewritten_utterance": manual,
            "automatic_rewritten_utterance": automatic, "manual_canonical_result_id": canonical}


CAST2020 = [
    {"number": 81, "turn": [
        cast2020_turn(1, "How do you know when your garage door opener is going bad?",
                      "How do you know when your garage door opener is going bad?",
                      "How do you know when your garage door opener is going bad?", "MARCO_5498474"),
        cast2020_turn(2, "Now it stopped working. Why?", "Now my garage door opener stopped working. Why?",
                      "Why did garage door opener stop working?", "MARCO_3942603"),
        cast2020_turn(3, "How much does it cost for someone to fix it?",
                      "How much does it cost for someone to repair a garage door opener?",
                      "How much does garage door opener cost for someone to fix?", "MARCO_368559")]},
    {"number": 82, "turn": [
        cast2020_turn(1, "I would like to learn about GMO Food labeling.", "I would like to learn about GMO Food labeling.",
                      "I would like to learn about GMO Food labeling.", "MARCO_955185"),
        cast2020_turn(2, "What are the pros and cons?", "What are the pros and cons of GMO food labeling?",
                      "What are the pros and cons of GMO Food labeling?", "CAR_bafb3c1c72e23c444e182cac4e0ea9e4330d21c9"),
        cast2020_turn(3, "And what about the cons?", "What are the cons of GMO food labeling?",
                      "What about the GMO Food labeling pros and cons?", "MARCO_3674279"),
        cast2020_turn(4, "What are the EU rules?", "What are the GMO food labeling rules in the EU?",
                      "What are the EU rules on GMO food labeling?", "CAR_9727b05a936eee2b477f4fb5d5276da27dabd9d4")]},
]
CAST2020_QRELS = ("81_1 0 MARCO_5498474 4\n81_1 0 CAR_0f244498984d51edbdc0627f98cf72613774c7dc 0\n"
                  "81_2 0 MARCO_3942603 3\n82_4 0 CAR_9727b05a936eee2b477f4fb5d5276da27dabd9d4 2\n"
                  "82_4 0 MARCO_1 1\n82_4 0 MARCO_2 0\n")


def cast2021_turn(number: int, raw: str, manual: str, automatic: str, canonical: str, passage_id: int,
                  passage: str) -> dict:
    return {"number": number, "raw_utterance": raw, "passage": passage, "manual_rewritten_utterance": manual,
            "canonical_result_id": canonical, "passage_id": passage_id, "automatic_rewritten_utterance": automatic}


P_TYPES = "Types Breast cancer can be: Ductal carcinoma: This begins in the milk duct."
P_LCIS = "The vast majority of women diagnosed with ALH or LCIS will never get breast cancer."
CAST2021 = [
    {"number": 106, "turn": [
        cast2021_turn(1, "I just had a breast biopsy for cancer. What are the most common types?",
                      "What are the most common types of breast cancer?", "What are the most common types of cancer?",
                      "MARCO_D59865", 7, P_TYPES),
        cast2021_turn(2, "How deadly is it?", "How deadly is lobular carcinoma in situ?", "How deadly is LCIS?",
                      "MARCO_D684519", 2, P_LCIS),
        cast2021_turn(3, "What are common treatments?", "What are common treatments for lobular carcinoma in situ?",
                      "What are common treatments for lobular carcinoma?", "MARCO_D684519", 2, P_LCIS)]},
    {"number": 107, "turn": [
        cast2021_turn(1, "How do I build a cheap driveway?", "How do I build a cheap driveway?",
                      "How do I build a cheap driveway?", "MARCO_D188443", 1, "Gravel driveways are cheap."),
        cast2021_turn(2, "Which is cheaper: concrete or asphalt?", "Which is cheaper for a driveway: concrete or asphalt?",
                      "Which is cheaper: concrete or asphalt driveways?", "MARCO_D170348", 0,
                      "Concrete lasts longer, but asphalt driveways are less expensive to install."),
        cast2021_turn(3, "What about gravel?", "What about gravel driveways?", "What about gravel?",
                      "KILT_1845197", 7, "Gravel is loose aggregation of rock fragments.")]},
]
CAST2021_QRELS = ("106_1 0 KILT_19782967 4\n106_1 0 MARCO_D59865 4\n106_2 0 MARCO_D684519 3\n"
                  "106_3 0 WAPO_1fbc40f4-279c-11e3-b3e9-d97fb087acd6 0\n107_2 0 MARCO_D170348 2\n")


def user_turn(number: str, parent: str | None, utterance: str, manual: str) -> dict:
    turn = {"number": number, "participant": "User", "utterance": utterance, "manual_rewritten_utterance": manual}
    return {**({"parent": parent} if parent else {}), **turn}


def system_turn(number: str, parent: str, response: str, provenance: list[str]) -> dict:
    return {"number": number, "parent": parent, "participant": "System", "response": response, "provenance": provenance}


CAST2022 = [
    {"number": 132, "turn": [
        user_turn("1-1", None, "What was COP26 about?", "What was the COP26 conference about?"),
        system_turn("1-2", "1-1", "COP26 is a UN summit about climate change.", ["MARCO_26_222804180-1"]),
        user_turn("1-3", "1-2", "What are the effects of these changes?", "What are the effects of climate change?"),
        system_turn("1-4", "1-3", "Rising seas and growing deserts.", ["MARCO_02_1687136851-3"]),
        user_turn("2-1", "1-2", "Who hosted it?", "Who hosted COP26?"),
        system_turn("2-2", "2-1", "Glasgow hosted it.", ["KILT_78449-18"]),
        user_turn("2-3", "2-2", "When was it?", "When was COP26 in Glasgow?")]},
    {"number": 133, "turn": [
        user_turn("1-1", None, "How do I start running?", "How do I start running?"),
        system_turn("1-2", "1-1", "Start slowly, with walking breaks.", ["WAPO_BOUVWAKS4BEUNAH5I62TGMUQQQ-1"]),
        user_turn("1-3", "1-2", "How often?", "How often should a beginner run?")]},
]
CAST2022_QRELS = ("132_1-1 0 MARCO_26_222804180-1 3\n132_1-1 0 MARCO_16_3117875026-1 0\n"
                  "132_2-3 0 KILT_78449-18 4\n133_1-3 0 WAPO_BOUVWAKS4BEUNAH5I62TGMUQQQ-1 1\n")

IKAT2023 = [
    {"number": "9-1", "title": "Finding a diet",
     "ptkb": {"1": "I'm vegetarian.", "10": "I'm an Android user.", "2": "I'm lactose intolerant."},
     "turns": [
         {"turn_id": 1, "utterance": "Can you help me find a diet for myself?",
          "resolved_utterance": "Can you help me find a diet for a lactose-intolerant vegetarian?",
          "response": "Sure: Vegan Mediterranean, Vegan Keto, Eco-Atkins.",
          "ptkb_provenance": [1, 2], "response_provenance": ["clueweb22-en0035-25-01897:1"]},
         {"turn_id": 2, "utterance": "Which is the fastest way to lose weight?",
          "resolved_utterance": "Which vegetarian diet is the fastest way to lose weight?",
          "response": "Vegan Keto.", "ptkb_provenance": [], "response_provenance": ["clueweb22-en0015-64-14250:2"]},
         {"turn_id": 3, "utterance": "Can I eat fish in it?", "resolved_utterance": "Can I eat fish in Vegan Keto?",
          "response": "No.", "ptkb_provenance": [1], "response_provenance": []}]},
    {"number": "9-2", "title": "Finding a diet",
     "ptkb": {"1": "I'm 155 cm tall.", "2": "I have a knee injury."},
     "turns": [
         {"turn_id": 1, "utterance": "How can I measure obesity?", "resolved_utterance": "How can I measure obesity?",
          "response": "BMI, waist circumference and waist-hip ratio.", "ptkb_provenance": [],
          "response_provenance": ["clueweb22-en0035-35-09152:7"]},
         {"turn_id": 2, "utterance": "What are the other two?",
          "resolved_utterance": "What are waist circumference and waist-hip ratio?",
          "response": "Indicators of central fat distribution.", "ptkb_provenance": [], "response_provenance": []},
         {"turn_id": 3, "utterance": "What can I do to lose weight?", "resolved_utterance": "What can I do to lose weight?",
          "response": "Swimming or cycling.", "ptkb_provenance": [2], "response_provenance": []},
         {"turn_id": 4, "utterance": "Tell me more about the first one.", "resolved_utterance": "Tell me more about swimming.",
          "response": "Swimming is easy on the knees.", "ptkb_provenance": [2], "response_provenance": []}]},
]
IKAT2023_QRELS = ("9-1_1 0 clueweb22-en0035-25-01897:1 4\n9-1_1 0 clueweb22-en0004-30-08099:2 0\n"
                  "9-1_3 0 clueweb22-en0020-69-12751:1 3\n9-2_4 0 clueweb22-en0014-80-11015:0 2\n"
                  "9-2_4 0 clueweb22-en0033-52-13433:2 1\n")


def cast_files(year: int) -> dict[str, str]:
    spec = cast.YEARS[year]
    topics = {2019: CAST2019, 2020: CAST2020, 2021: CAST2021, 2022: CAST2022}[year]
    qrels = {2019: CAST2019_QRELS, 2020: CAST2020_QRELS, 2021: CAST2021_QRELS, 2022: CAST2022_QRELS}[year]
    files = {spec.topics.name: topics_json(topics), spec.qrels.name: qrels}
    if spec.resolved:
        files[spec.resolved.name] = CAST2019_RESOLVED
    return files


def ikat_files() -> dict[str, str]:
    return {ikat.TOPICS.name: topics_json(IKAT2023), ikat.QRELS.name: IKAT2023_QRELS}


# ---------------------------------------------------------------- the entries
def test_registry_entries_name_the_official_files():
    for year in (2019, 2020, 2021, 2022):
        spec = datasets.get(f"cast{year}")
        assert spec.folder_name == "trec-cast" and spec.rewrite_teacher == "human"
        assert all(f.url.startswith("https://") for f in spec.files)
        assert all(f.md5 for f in spec.files if f.name in cast.IRDS_DOWNLOADS)
    spec = datasets.get("ikat2023")
    assert spec.folder_name == "trec-ikat" and [f.md5 for f in spec.files] == [
        "684fa0197cdec8c3cfb6a2e586ab83f6", "79dc121bab25b2245e52a53263e5ad1f"]


def test_cast_files_match_ir_datasets_downloads_json():
    # read the installed package's file without importing ir_datasets
    origin = Path(importlib.util.find_spec("ir_datasets").origin)
    entries = json.loads((origin.parent / "etc" / "downloads.json").read_text())["trec-cast"]
    files = {f.name: f for year in cast.YEARS.values() for f in year.files}
    assert set(cast.IRDS_DOWNLOADS) <= set(files)
    for name, key in cast.IRDS_DOWNLOADS.items():
        entry = entries[key]
        assert (files[name].url, files[name].md5, name) == (entry["url"], entry["expected_md5"], entry["cache_path"])


# ---------------------------------------------------------------- CAsT per year
def test_cast2019(tmp_path, serve, monkeypatch):
    t = load_served("cast2019", cast_files(2019), tmp_path, serve, monkeypatch)
    turns = rows(t)
    assert len(turns) == 7 and {r["conversation_id"] for r in turns.values()} == {"31", "32"}
    assert turns["32_3"]["turn"] == 3 and turns["32_3"]["utterance"] == "Tell me more about tiger sharks."
    assert turns["32_4"]["history"] == [user("What are the different types of sharks?"), user("Are sharks endangered?"),
                                        user("Tell me more about tiger sharks.")]
    assert turns["31_1"]["history"] == []
    assert teachers(t) == {"human": 7} and rewrite(t, "32_4") == "What do tiger sharks eat?"
    assert Counter(t.qrels["relevance"].to_pylist()) == {0: 2, 1: 1, 2: 1, 3: 1, 4: 1}
    assert t.corpus.num_rows == 0
    assert datasets.validation_report(t) == {
        "conversations": 2, "turns": 7, "turns_with_positive": 4, "passages": 0,
        "qrels_by_grade": {"0": 2, "1": 1, "2": 1, "3": 1, "4": 1}, "rewrites_by_teacher": {"human": 7},
        "judged_passages_missing_from_corpus": 5, "turns_with_judged_passages_missing": 4,
        "empty_utterances": 0, "duplicate_ids": "refused at load", "empty_passages_left_out": 0, "empty_passages": [],
    }


def test_cast2020(tmp_path, serve, monkeypatch):
    t = load_served("cast2020", cast_files(2020), tmp_path, serve, monkeypatch)
    turns = rows(t)
    assert len(turns) == 7 and {r["conversation_id"] for r in turns.values()} == {"81", "82"}
    assert turns["82_3"]["history"] == [user("I would like to learn about GMO Food labeling."),
                                        user("What are the pros and cons?")]
    assert teachers(t) == {"human": 7, "cast-automatic": 7}
    assert rewrite(t, "81_2") == "Now my garage door opener stopped working. Why?"
    assert rewrite(t, "81_2", "cast-automatic") == "Why did garage door opener stop working?"
    report = datasets.validation_report(t)
    assert report["qrels_by_grade"] == {"0": 2, "1": 1, "2": 1, "3": 1, "4": 1}
    assert report["turns_with_positive"] == 3 and report["judged_passages_missing_from_corpus"] == 6
    assert report["conversations"] == 2 and report["passages"] == 0


def test_cast2021_keeps_canonical_passages(tmp_path, serve, monkeypatch):
    t = load_served("cast2021", cast_files(2021), tmp_path, serve, monkeypatch)
    turns = rows(t)
    assert len(turns) == 6
    assert turns["106_3"]["history"] == [
        user("I just had a breast biopsy for cancer. What are the most common types?"), agent(P_TYPES),
        user("How deadly is it?"), agent(P_LCIS)]
    # one corpus row per canonical passage (106_2 and 106_3 share one), ids as in the CAsT 2021 runs
    assert sorted(t.corpus["doc_id"].to_pylist()) == [
        "KILT_1845197-7", "MARCO_D170348-0", "MARCO_D188443-1", "MARCO_D59865-7", "MARCO_D684519-2"]
    assert teachers(t) == {"human": 6, "cast-automatic": 6}
    assert datasets.validation_report(t) == {
        "conversations": 2, "turns": 6, "turns_with_positive": 3, "passages": 5,
        "qrels_by_grade": {"0": 1, "2": 1, "3": 1, "4": 2}, "rewrites_by_teacher": {"human": 6, "cast-automatic": 6},
        # document-level qrels never name a passage id
        "judged_passages_missing_from_corpus": 5, "turns_with_judged_passages_missing": 4,
        "empty_utterances": 0, "duplicate_ids": "refused at load", "empty_passages_left_out": 0, "empty_passages": [],
    }


def test_cast2022_follows_the_branch(tmp_path, serve, monkeypatch):
    t = load_served("cast2022", cast_files(2022), tmp_path, serve, monkeypatch)
    turns = rows(t)
    assert sorted(turns) == ["132_1-1", "132_1-3", "132_2-1", "132_2-3", "133_1-1", "133_1-3"]  # User turns only
    first, response = user("What was COP26 about?"), agent("COP26 is a UN summit about climate change.")
    # 2-1 branches from the system turn 1-2: turns 1-3 and 1-4 are not in its history
    assert turns["132_2-3"]["history"] == [first, response, user("Who hosted it?"), agent("Glasgow hosted it.")]
    assert turns["132_2-3"]["turn"] == 3 and turns["132_2-3"]["utterance"] == "When was it?"
    assert turns["132_2-1"]["history"] == turns["132_1-3"]["history"] == [first, response]
    assert turns["132_2-1"]["turn"] == turns["132_1-3"]["turn"] == 2
    assert turns["132_1-1"]["history"] == [] and turns["133_1-3"]["conversation_id"] == "133"
    assert teachers(t) == {"human": 6} and rewrite(t, "132_2-3") == "When was COP26 in Glasgow?"
    assert datasets.validation_report(t) == {
        "conversations": 2, "turns": 6, "turns_with_positive": 3, "passages": 0,
        "qrels_by_grade": {"0": 1, "1": 1, "3": 1, "4": 1}, "rewrites_by_teacher": {"human": 6},
        "judged_passages_missing_from_corpus": 4, "turns_with_judged_passages_missing": 3,
        "empty_utterances": 0, "duplicate_ids": "refused at load", "empty_passages_left_out": 0, "empty_passages": [],
    }


# ---------------------------------------------------------------- iKAT
def test_ikat2023(tmp_path, serve, monkeypatch):
    t = load_served("ikat2023", ikat_files(), tmp_path, serve, monkeypatch)
    turns = rows(t)
    assert sorted(turns) == ["9-1_1", "9-1_2", "9-1_3", "9-2_1", "9-2_2", "9-2_3", "9-2_4"]
    assert turns["9-2_3"]["conversation_id"] == "9-2" and turns["9-2_3"]["turn"] == 3
    # the PTKB (keys in numeric order) opens the history, then the earlier turns with their responses
    assert turns["9-1_1"]["history"] == [user("I'm vegetarian.\nI'm lactose intolerant.\nI'm an Android user.")]
    assert turns["9-2_3"]["history"] == [
        user("I'm 155 cm tall.\nI have a knee injury."),
        user("How can I measure obesity?"), agent("BMI, waist circumference and waist-hip ratio."),
        user("What are the other two?"), agent("Indicators of central fat distribution.")]
    assert teachers(t) == {"human": 7} and rewrite(t, "9-1_3") == "Can I eat fish in Vegan Keto?"
    assert t.corpus.num_rows == 0
    assert datasets.validation_report(t) == {
        "conversations": 2, "turns": 7, "turns_with_positive": 3, "passages": 0,
        "qrels_by_grade": {"0": 1, "1": 1, "2": 1, "3": 1, "4": 1}, "rewrites_by_teacher": {"human": 7},
        "judged_passages_missing_from_corpus": 5, "turns_with_judged_passages_missing": 3,
        "empty_utterances": 0, "duplicate_ids": "refused at load", "empty_passages_left_out": 0, "empty_passages": [],
    }


# ---------------------------------------------------------------- ir_datasets
def test_years_are_registered_with_ir_datasets(tmp_path):
    # files where datasets.download puts them: <DISCO_DATA_DIR>/trec-cast/<year>/...
    for year in (2019, 2021, 2022):
        write_files(tmp_path / "data" / "trec-cast", cast_files(year))
    write_files(tmp_path / "data" / "trec-ikat", ikat_files())
    datasets.load("cast2021", path=tmp_path / "data" / "trec-cast")  # a load registers the entries
    import ir_datasets
    from ir_datasets.datasets import trec_cast

    ikat.register_ir_datasets()
    ds = ir_datasets.load("disco/trec-cast/2021")
    assert ds.queries_cls() is trec_cast.Cast2021Query
    assert [q.query_id for q in ds.queries_iter()][:2] == ["106_1", "106_2"]
    assert sum(1 for _ in ds.qrels_iter()) == 5
    tree = list(ir_datasets.load("disco/trec-cast/2022").queries_iter())
    assert len(tree) == 10 and tree[4].parent_id == "132_1-2"
    # 2019 is read the way ir_datasets' own trec-cast/v1/2019 reads it (same classes; nothing downloaded)
    ours, theirs = ir_datasets.load("disco/trec-cast/2019"), ir_datasets.load("trec-cast/v1/2019")
    assert type(ours.queries_handler()) is type(theirs.queries_handler())
    assert ours.queries_cls() is theirs.queries_cls() and ours.qrels_defs() == theirs.qrels_defs()
    assert next(iter(ours.qrels_iter())).iteration == "Q0"
    assert [q.query_id for q in ir_datasets.load("disco/trec-ikat/2023").queries_iter()][-1] == "9-2_4"
    with pytest.raises(FileNotFoundError, match="download"):
        next(iter(ir_datasets.load("disco/trec-cast/2020").queries_iter()))


# ---------------------------------------------------------------- bad input is named by file and line
def local_copy(tmp_path: Path, files: dict[str, str], **changes: str) -> Path:
    return write_files(tmp_path / "local", {**files, **changes})


def test_malformed_topics_file(tmp_path):
    files = cast_files(2020)
    name = cast.YEARS[2020].topics.name
    root = local_copy(tmp_path, files, **{name: files[name][:400]})
    with pytest.raises(DataError, match=rf"{name}:\d+: malformed JSON") as err:
        datasets.load("cast2020", path=root)
    assert err.value.line is not None and err.value.path.endswith(name)


def test_turn_without_a_required_field(tmp_path):
    topics = json.loads(topics_json(CAST2020))
    del topics[1]["turn"][2]["manual_rewritten_utterance"]
    name = cast.YEARS[2020].topics.name
    text = topics_json(topics)
    lines = text.splitlines()
    # the last turn numbered 3 is topic 82's; its object opens on the line before its "number"
    line = max(i for i, x in enumerate(lines) if x.strip() == '"number": 3,')
    root = local_copy(tmp_path, cast_files(2020), **{name: text})
    with pytest.raises(DataError, match=rf"{name}:{line}: topic 82 turn 3: missing field 'manual_rewritten_utterance'"):
        datasets.load("cast2020", path=root)


def test_qrels_line_with_a_missing_column(tmp_path):
    name = cast.YEARS[2022].qrels.name
    bad = CAST2022_QRELS.replace("132_2-3 0 KILT_78449-18 4", "132_2-3 KILT_78449-18 4")
    root = local_copy(tmp_path, cast_files(2022), **{name: bad})
    with pytest.raises(DataError, match=rf"{name}:3: bad TREC qrels line .*expected 4 columns, got 3"):
        datasets.load("cast2022", path=root)
    root = local_copy(tmp_path, cast_files(2022), **{name: CAST2022_QRELS.replace("133_1-3 0 WAPO", "133_1-3 0 WAPO x")})
    with pytest.raises(DataError, match=rf"{name}:4: .*expected 4 columns, got 5"):
        datasets.load("cast2022", path=root)


def test_bad_grade_unknown_turn_and_broken_tree(tmp_path):
    name = ikat.QRELS.name
    root = local_copy(tmp_path, ikat_files(), **{name: IKAT2023_QRELS.replace(":2 1", ":2 high")})
    with pytest.raises(DataError, match=rf"{name}:5: .*invalid literal for int"):
        datasets.load("ikat2023", path=root)
    root = local_copy(tmp_path, ikat_files(), **{name: IKAT2023_QRELS + "9-3_1 0 clueweb22-en0000-00-00000:0 1\n"})
    with pytest.raises(DataError, match=rf"{name}:6: judgment for unknown turn '9-3_1'"):
        datasets.load("ikat2023", path=root)
    topics = json.loads(topics_json(CAST2022))
    topics[0]["turn"][4]["parent"] = "1-9"
    root = local_copy(tmp_path, cast_files(2022), **{cast.YEARS[2022].topics.name: topics_json(topics)})
    with pytest.raises(DataError, match=r"topic 132 turn 2-1: parent '132_1-9' is not a turn of the topic"):
        datasets.load("cast2022", path=root)


# ---------------------------------------------------------------- the full collection, via ir_datasets
def test_cast2019_streams_its_collection_through_ir_datasets(tmp_path, serve, monkeypatch):
    """``dataset.collection``: the documents come from an ir_datasets dataset (here a small one
    registered over a local TSV, standing in for ``trec-cast/v1``), streamed in chunks."""
    import dataclasses

    import ir_datasets
    from ir_datasets.formats import TsvDocs
    from ir_datasets.util import LocalDownload

    from disco_core import schemas
    from disco_core.datasets import _irds

    docs = tmp_path / "docs.tsv"
    ids = ["MARCO_5498474", "MARCO_1092925", "MARCO_955948", "CAR_116d829c4c800c2fc70f11692fec5e8c7e975250",
           "MARCO_1", "MARCO_2", "MARCO_3"]
    docs.write_text("".join(f"{i}\tpassage {n} about sharks\n" for n, i in enumerate(ids)), encoding="utf-8")
    collection = "disco-test/cast-docs"
    if collection not in ir_datasets.registry:
        ir_datasets.registry.register(collection, ir_datasets.Dataset(TsvDocs(LocalDownload(docs, mkdir=False))))
    monkeypatch.setattr(_irds.docs_chunks, "__defaults__", (3,))  # 3 passages a chunk
    monkeypatch.setitem(datasets.REGISTRY, "cast2019",
                        dataclasses.replace(datasets.get("cast2019"), collection=collection))
    root = write_files(tmp_path / "www", cast_files(2019))
    fixture = register_fixture("cast2019", root, serve(root), monkeypatch)
    assert datasets.get(fixture).collection == collection

    tables = datasets.load(fixture, collection=True)
    assert tables.corpus is None
    chunks = list(tables.corpus_chunks())
    assert [c.num_rows for c in chunks] == [3, 3, 1]
    corpus_file = tmp_path / "corpus.parquet"
    assert schemas.write_table_chunks("corpus", iter(chunks), corpus_file) == 7
    assert schemas.read_table("corpus", corpus_file)["doc_id"].to_pylist() == ids
    report = datasets.validation_report(tables, corpus_file)
    assert report["passages"] == 7
    # only the WaPo judgment (not in the v1 collection) stays missing
    assert report["judged_passages_missing_from_corpus"] == 1 and report["turns_with_judged_passages_missing"] == 1


def test_collection_is_refused_where_none_is_registered():
    from disco_core.errors import ConfigError

    with pytest.raises(ConfigError, match="no document collection"):
        datasets.load("embedded", collection=True)
    assert datasets.get("cast2019").collection == datasets.get("cast2020").collection == "trec-cast/v1"
    assert datasets.get("cast2021").collection is None
