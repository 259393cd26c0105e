"""Rewriters: cleaning, journaling, files, the transformers path on the real SmolLM2 file.

The endpoint backend: test_rewriters_endpoint.py; the llama.cpp engine: test_rewriters_engine.py."""

import pytest

from disco_core.errors import DataError
from disco_core.rewriters import (FileRewriter, HFRewriter, Rewriter, RewriteJournal, RewriterError, answer_is_settled,
                                  chat_messages, clean_rewrite, run_rewriter)

TURNS = [
    {"query_id": f"c_{i}", "utterance": f"and its height {i}?",
     "history": [{"speaker": "user", "text": "Tell me about the Carrow Head Lighthouse."},
                 {"speaker": "agent", "text": "It stands on the cliffs north of Saltmere."}]}
    for i in range(1, 13)
]


@pytest.mark.parametrize("raw, text, status", [
    ("How tall is the Carrow Head Lighthouse?", "How tall is the Carrow Head Lighthouse?", "ok"),
    ("Rewrite: How tall is it?\n", "How tall is it?", "cleaned"),
    ('"How tall is X?"', "How tall is X?", "cleaned"),
    ("How tall is X?\nIt is 40 metres tall.", "How tall is X?", "multiline"),
    ("   \n", "and its height?", "empty"),
    ("Rewritten question:", "and its height?", "empty"),
])
def test_clean_rewrite(raw, text, status):
    assert clean_rewrite(raw, "and its height?") == (text, status)


@pytest.mark.parametrize("raw", ["How tall is X?", "How tall is X?\n", "\n\nHow tall is X?\n  \n", "How tall\ufffd"])
def test_an_answer_is_not_settled_before_a_second_line_begins(raw):
    assert not answer_is_settled(raw)


@pytest.mark.parametrize("raw", ["How tall is X?\nIt", "\nHow tall is X?\n\nConversation:", "A?\r\nB"])
def test_a_settled_answer_cleans_the_same_whatever_follows(raw):
    assert answer_is_settled(raw)
    assert clean_rewrite(raw, "u") == clean_rewrite(raw + " more words\nand lines", "u")


def test_prompt_has_system_few_shot_and_conversation():
    messages = chat_messages(TURNS[0]["history"], "and its height?")
    assert messages[0]["role"] == "system" and len(messages) == 8
    assert messages[-1]["content"].endswith("User: and its height?\n\nRewrite the last user question:")
    assert "Assistant: It stands on the cliffs" in messages[-1]["content"]


class Counting(Rewriter):
    """Writes "x?" for every turn and records which turns it was asked for."""

    def __init__(self):
        self.teacher, self.seen = "t", []

    def rewrite(self, turns, on_result):
        for t in turns:
            self.seen.append(t["query_id"])
            on_result({"query_id": t["query_id"], "text": "x?", "status": "ok"})


def test_journal_survives_a_torn_line_and_resumes(tmp_path):
    journal = RewriteJournal(tmp_path / "j.jsonl")
    run_rewriter(Counting(), TURNS[:1], journal)
    with journal.path.open("a") as f:
        f.write('{"query_id": "c_2", "te')  # killed mid-write
    assert list(journal.load()) == ["c_1"]
    assert journal.path.read_text().endswith("\n")  # the torn tail is cut: the next row starts a line

    rewriter = Counting()
    rows = run_rewriter(rewriter, TURNS[:3], journal)
    assert rewriter.seen == ["c_2", "c_3"] and [r["query_id"] for r in rows] == ["c_1", "c_2", "c_3"]
    # every row is journaled with its wall time, so the time per turn survives a resume
    assert all(r["seconds"] >= 0 for r in rows) and list(journal.load()) == ["c_1", "c_2", "c_3"]


def test_journaled_rewrite_of_a_changed_turn_is_redone(tmp_path):
    journal = RewriteJournal(tmp_path / "j.jsonl")
    run_rewriter(Counting(), TURNS[:2], journal)
    changed = [TURNS[0], {**TURNS[1], "utterance": "and its age?"}]
    rewriter = Counting()
    run_rewriter(rewriter, changed, journal)
    assert rewriter.seen == ["c_2"]  # c_1 reads the same: kept; c_2 changed: asked again


def test_first_turns_are_kept_as_written_without_an_llm_call(tmp_path):
    first = {"query_id": "c_0", "utterance": "Tell me about the Carrow Head Lighthouse.", "history": []}
    journal = RewriteJournal(tmp_path / "j.jsonl")
    rewriter = Counting()
    rewriter.first_turns = "as-written"
    rows = run_rewriter(rewriter, [first, *TURNS[:2]], journal)
    assert rewriter.seen == ["c_1", "c_2"]
    assert rows[0] == {"query_id": "c_0", "text": first["utterance"], "status": "first-turn",
                       "input": rows[0]["input"], "seconds": None}
    asked = Counting()  # "rewrite": the LLM gets the first turn too (the journal has it not)
    run_rewriter(asked, [first, *TURNS[:2]], journal)
    assert asked.seen == ["c_0"]


def test_a_teacher_keeps_first_turns_as_written_unless_told_otherwise():
    from disco_core.config import TeacherConfig
    from disco_core.rewriters import make_rewriter

    assert make_rewriter(TeacherConfig(name="s", backend="hf"), "human").first_turns == "as-written"
    told = TeacherConfig(name="s", backend="hf", first_turns="rewrite")
    assert make_rewriter(told, "human").first_turns == "rewrite"


def test_rewrites_read_from_a_file_are_not_journaled(tmp_path):
    source = tmp_path / "r.tsv"
    source.write_text("c_1\tHow tall is it?\n")
    rewriter = FileRewriter("mine", source)
    assert not rewriter.generates
    assert [r["text"] for r in run_rewriter(rewriter, TURNS[:1])] == ["How tall is it?"]


# ------------------------------------------------------------------ precomputed files
def test_file_rewriter_tsv_and_jsonl(tmp_path):
    (tmp_path / "r.tsv").write_text("c_1\tHow tall is X?\nc_2\tRewrite: How old is X?\n")
    rows = []
    FileRewriter("f", tmp_path / "r.tsv").rewrite(TURNS, rows.append)
    assert rows == [{"query_id": "c_1", "text": "How tall is X?", "status": "ok"},
                    {"query_id": "c_2", "text": "How old is X?", "status": "cleaned"}]
    (tmp_path / "r.jsonl").write_text('{"_id": "c_1", "text": "A?"}\n{"_id": "c_2"}\n')
    with pytest.raises(DataError, match=r"r.jsonl:2: missing field\(s\) 'text'"):
        FileRewriter("f", tmp_path / "r.jsonl")
    (tmp_path / "bad.tsv").write_text("c_1\tA?\nc_2\n")
    with pytest.raises(DataError, match=r"bad.tsv:2: expected 2 fields"):
        FileRewriter("f", tmp_path / "bad.tsv")


# ------------------------------------------------------------------ GGUF on the real SmolLM2 file
@pytest.mark.slow
def test_gguf_backend_on_smollm2(tmp_path):
    rewriter = HFRewriter("smollm2", "smollm2-135m-instruct", batch_size=2, max_new_tokens=24,
                          cache_dir=tmp_path / "models")
    rows = []
    rewriter.rewrite(TURNS[:3], rows.append)
    assert [r["query_id"] for r in sorted(rows, key=lambda r: r["query_id"])] == ["c_1", "c_2", "c_3"]
    assert all(r["text"].strip() and "\n" not in r["text"] for r in rows)
    # the model's own words, not the utterance standing in for an empty output
    assert sum(r["status"] != "empty" for r in rows) >= 2
    cached = list((tmp_path / "models").iterdir())
    assert len(cached) == 1 and (cached[0] / "model.safetensors").exists()  # dequantized once, kept
    # a second rewriter loads the cached safetensors; the path as it was before the few-shot prefix
    # cache and the settled stop (whole prompts, decoded to the end) writes the same greedy rewrites
    again = []
    HFRewriter("smollm2", "smollm2-135m-instruct", batch_size=2, max_new_tokens=24, prefix_cache=False,
               stop_settled=False, cache_dir=tmp_path / "models").rewrite(TURNS[:3], again.append)
    assert sorted(map(tuple, map(dict.values, again))) == sorted(map(tuple, map(dict.values, rows)))


def test_endpoint_settings_from_the_environment(monkeypatch):
    from disco_core.config import TeacherConfig
    from disco_core.rewriters import make_rewriter

    with pytest.raises(RewriterError, match="needs base_url and model"):
        make_rewriter(TeacherConfig(name="llm", backend="openai"), "human")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_MODEL", "served-model")
    rewriter = make_rewriter(TeacherConfig(name="llm", backend="openai"), "human")
    assert (rewriter.base_url, rewriter.model) == ("http://127.0.0.1:9/v1", "served-model")


def test_dataset_rewrites_cost_an_llm_call_unless_people_wrote_them():
    from disco_core.rewriters import DatasetRewriter

    rows = [{"query_id": "q1", "teacher": "human", "text": "a"}, {"query_id": "q1", "teacher": "mtrag-mixtral", "text": "b"}]
    assert DatasetRewriter("human", rows).llm_calls_per_turn == 0
    assert DatasetRewriter("mtrag-mixtral", rows).llm_calls_per_turn == 1
    got = []
    DatasetRewriter("mtrag-mixtral", rows).rewrite([{"query_id": "q1"}, {"query_id": "q2"}], got.append)
    assert got == [{"query_id": "q1", "text": "b", "status": "ok"}]


def test_engine_teacher_from_the_config_loads_nothing_until_asked():
    """make_rewriter builds a llama.cpp teacher without loading the optional engine."""
    from disco_core.config import TeacherConfig
    from disco_core.rewriters import make_rewriter

    teacher = TeacherConfig(name="gemma", backend="llamacpp", model="gemma3-270m", parallel=4, threads=1,
                            weights="gguf")
    rewriter = make_rewriter(teacher, "human")
    assert type(rewriter).__name__ == "LlamaCppRewriter" and rewriter.prompt_kind == "completion"
    assert (rewriter.parallel, rewriter.threads, rewriter.weights) == (4, 1, "gguf")
    assert rewriter._engine is None
    # the prompt hash names what changes the rewrites: weights, not parallel or threads
    other = make_rewriter(teacher.model_copy(update={"parallel": 8, "threads": 2}), "human")
    assert other.prompt_hash == rewriter.prompt_hash
    assert make_rewriter(teacher.model_copy(update={"weights": "f32"}), "human").prompt_hash != rewriter.prompt_hash
