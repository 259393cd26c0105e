"""The llama.cpp engine backend, for real on the SmolLM2 GGUF: rewrites, a kill and resume, and one
clear error (nothing finished lost) for a missing or corrupt model file and an engine that fails
to start. Skipped when the optional extra (``pip install -e .[engine]``) is not installed."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="the engine is the optional extra: pip install -e '.[engine]'")

from disco_core import datasets  # noqa: E402
from disco_core.rewriters import LlamaCppRewriter, RewriteJournal, RewriterError, run_rewriter  # noqa: E402
from disco_core.rewriters.local import gguf_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = gguf_path("smollm2-135m-instruct", None, None)


@pytest.fixture(scope="module")
def turns():
    """Turns with history from the embedded dataset, short answers kept short for speed."""
    rows = [t for t in datasets.load("embedded").turns.to_pylist() if t["history"]]
    return rows[:12]


class Recording(LlamaCppRewriter):
    """The real engine, noting which turns it was asked to rewrite."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked = []

    def rewrite(self, turns, on_result):
        self.asked += [t["query_id"] for t in turns]
        super().rewrite(turns, on_result)


@pytest.mark.slow
def test_engine_rewrites_turns_with_smollm2(turns, tmp_path):
    rewriter = LlamaCppRewriter("smollm2", "smollm2-135m-instruct", parallel=3, max_new_tokens=32, threads=2)
    rows = run_rewriter(rewriter, turns[:4], RewriteJournal(tmp_path / "j.jsonl"))
    assert [r["query_id"] for r in rows] == [t["query_id"] for t in turns[:4]]
    assert all(r["text"].strip() and "\n" not in r["text"] for r in rows)
    assert sum(r["status"] != "empty" for r in rows) >= 3  # the model's words, not the utterance
    # the prompt is the chat template of the GGUF, rendered as transformers renders it
    prompt = rewriter.prompt_text(turns[0])
    assert prompt.startswith("<|im_start|>system\nYou rewrite the last question") and prompt.endswith(
        "<|im_start|>assistant\n")
    # decoding several turns together, or one at a time, writes the same rewrites here
    alone = run_rewriter(LlamaCppRewriter("smollm2", parallel=1, max_new_tokens=32, threads=2), turns[:4])
    assert [(r["text"], r["status"]) for r in alone] == [(r["text"], r["status"]) for r in rows]
    rewriter.close()


@pytest.mark.slow
def test_gemma_base_model_gets_the_completion_prompt(turns, tmp_path):
    """The gemma3-270m alias: chunks joined once into the cache (checked against the package's
    SHA-256), a plain completion prompt after the BOS token, rewrites from the shipped Q4_K_M."""
    rewriter = LlamaCppRewriter("gemma", "gemma3-270m", parallel=2, max_new_tokens=32, threads=2,
                                weights="gguf", cache_dir=tmp_path)
    rows = run_rewriter(rewriter, turns[:2])
    assert (tmp_path / "gemma-3-270m-q4_k_m.gguf").stat().st_size > 200e6
    prompt = rewriter.prompt_text(turns[0])
    assert prompt.startswith("You rewrite the last question") and "<start_of_turn>" not in prompt
    engine = rewriter.load()
    assert rewriter.token_ids(turns[:1])[0][0] == engine.ll.llama_vocab_bos(engine.vocab)
    assert all(r["text"].strip() and "\n" not in r["text"] for r in rows)
    rewriter.close()


@pytest.mark.slow
def test_engine_prompt_matches_the_transformers_path(turns):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(SMOLLM2.parent), gguf_file=SMOLLM2.name)
    from disco_core.rewriters import chat_messages

    rewriter = LlamaCppRewriter("smollm2", "smollm2-135m-instruct")
    for turn in turns[:3]:
        messages = chat_messages(turn["history"], turn["utterance"])
        expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert rewriter.prompt_text(turn) == expected
        assert rewriter.token_ids([turn])[0] == tokenizer(expected, add_special_tokens=False)["input_ids"]
    rewriter.close()


_KILLABLE = textwrap.dedent("""
    import json, sys
    from disco_core import datasets
    from disco_core.rewriters import LlamaCppRewriter, RewriteJournal, run_rewriter
    turns = [t for t in datasets.load("embedded").turns.to_pylist() if t["history"]][:12]
    rewriter = LlamaCppRewriter("smollm2", parallel=2, max_new_tokens=32, threads=1)
    run_rewriter(rewriter, turns, RewriteJournal(sys.argv[1]))
""")


@pytest.mark.slow
def test_a_killed_rewrite_resumes_without_asking_for_finished_turns(turns, tmp_path):
    journal = RewriteJournal(tmp_path / "j.jsonl")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(journal.path)], env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if journal.path.exists() and journal.path.read_text().count("\n") >= 3:
            child.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    child.wait(30)
    assert child.returncode == -signal.SIGKILL, "the rewrite finished before it could be killed"
    finished = journal.load()
    assert 3 <= len(finished) < len(turns)
    rewriter = Recording("smollm2", parallel=2, max_new_tokens=32, threads=2)
    rows = run_rewriter(rewriter, turns, journal)
    assert sorted(rewriter.asked) == sorted(t["query_id"] for t in turns if t["query_id"] not in finished)
    assert [r["query_id"] for r in rows] == [t["query_id"] for t in turns]
    lines = journal.path.read_text().splitlines()
    assert len(lines) == len(turns) and len({json.loads(x)["query_id"] for x in lines}) == len(turns)
    rewriter.close()


def _journal_with_two_rows(tmp_path, turns) -> RewriteJournal:
    journal = RewriteJournal(tmp_path / "j.jsonl")
    from disco_core.io import short_hash

    for t in turns[:2]:
        journal.append({"query_id": t["query_id"], "text": "kept?", "status": "ok",
                        "input": short_hash([t["utterance"], t["history"]]), "seconds": 0.1})
    return journal


@pytest.mark.parametrize("problem, message", [
    ("missing", r"nope\.gguf: GGUF model file not found"),
    ("not gguf", r"bad\.gguf: not a GGUF model file \(it starts with b'PK"),
    ("truncated", r"bad\.gguf: llama\.cpp cannot (load|convert) this GGUF model.* \(.+\)"),
])
def test_a_missing_or_corrupt_model_file_is_one_clear_error(turns, tmp_path, problem, message):
    journal = _journal_with_two_rows(tmp_path, turns)
    before = journal.path.read_bytes()
    path = tmp_path / ("nope.gguf" if problem == "missing" else "bad.gguf")
    if problem == "not gguf":
        path.write_bytes(b"PK\x03\x04" + b"\x00" * 4096)
    elif problem == "truncated":
        path.write_bytes(SMOLLM2.read_bytes()[: 2 << 20])  # the header is right, the tensors are cut
    with pytest.raises(RewriterError, match=message) as info:
        run_rewriter(LlamaCppRewriter("t", str(path)), turns[:4], journal)
    assert "\n" not in str(info.value)
    assert journal.path.read_bytes() == before  # nothing finished lost, nothing added


_BROKEN_ENGINE = textwrap.dedent("""
    import sys
    from disco_core import datasets
    from disco_core.errors import DiscoError
    from disco_core.rewriters import LlamaCppRewriter, RewriteJournal, run_rewriter
    turns = [t for t in datasets.load("embedded").turns.to_pylist() if t["history"]][:4]
    try:
        run_rewriter(LlamaCppRewriter("smollm2"), turns, RewriteJournal(sys.argv[1]))
    except DiscoError as exc:
        print("ERROR", exc)
        sys.exit(2)
""")


def test_an_engine_that_fails_to_start_is_one_clear_error(turns, tmp_path):
    """llama.cpp's shared library does not load (a broken install; LLAMA_CPP_LIB_PATH is the
    bindings' own setting): one line, exit 2 from the caller, the journal untouched; the working
    engine then resumes from it."""
    journal = _journal_with_two_rows(tmp_path, turns)
    before = journal.path.read_bytes()
    broken = tmp_path / "lib"
    broken.mkdir()
    (broken / "libllama.so").write_text("not a shared library")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LLAMA_CPP_LIB_PATH": str(broken)}
    done = subprocess.run([sys.executable, "-c", _BROKEN_ENGINE, str(journal.path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("ERROR")]
    assert len(lines) == 1 and "llama.cpp could not start: its library does not load" in lines[0]
    assert "Traceback" not in done.stderr
    assert journal.path.read_bytes() == before
    rewriter = Recording("smollm2", parallel=2, max_new_tokens=32, threads=2)
    run_rewriter(rewriter, turns[:4], journal)
    assert rewriter.asked == [t["query_id"] for t in turns[2:4]]
    rewriter.close()
