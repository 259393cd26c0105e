"""MTRAG (IBM, Apache-2.0) in the layout of ``shared/data/mtrag``, or any folder in that layout.

Files: ``corpus.jsonl`` (``_id, title, text, domain``), ``conversations.jsonl`` (messages with
``speaker, turn, text``), ``tasks.jsonl`` (one retrieval task per user turn), ``qrels.tsv``
(official, with header), optional ``annotator_judgments.tsv`` (judged-irrelevant passages become
relevance 0) and ``queries/<domain>_rewrite.jsonl`` (Mixtral 8x7B rewrites, teacher ``mtrag-mixtral``).
Fields are checked as in every layout (:mod:`._rows`); the three passages of the official corpus
whose text is blank (``ibmcld_00004-0-0``, ``ibmcld_01049-0-2``, ``ibmcld_16335-0-6``, judged by no
one) are left out and named in the validation report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import schemas
from ..env import ROOT
from ..errors import DataError
from ..io import read_jsonl
from ._rows import (KeyedRows, Passages, check_id, check_judgment, domain, optional_text, read_qrels, text, turn_number)
from .registry import DatasetSpec, DatasetTables, register

REWRITE_TEACHER = "mtrag-mixtral"
REWRITE_MODEL = "Mixtral-8x7B-Instruct (MTRAG official rewrite)"
USER_PREFIX = "|user|:"
DOMAINS = ("clapnq", "cloud", "fiqa", "govt")


def default_path() -> Path:
    # ``../shared/data/mtrag`` from the project root, unless DISCO_MTRAG_PATH says otherwise.
    env = os.environ.get("DISCO_MTRAG_PATH")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "mtrag"


def _strip_prefix(value: str) -> str:
    value = value.strip()
    return value[len(USER_PREFIX):].strip() if value.startswith(USER_PREFIX) else value


@dataclass
class Conversation:
    """One conversation's messages (``speaker``, ``turn``, ``text``, checked) and where it is."""

    line: int
    messages: list[dict[str, Any]]

    def user_text(self, turn: int) -> str | None:
        found = (m["text"] for m in self.messages if m["speaker"] == "user" and m["turn"] == turn)
        return next((t.strip() for t in found), None)

    def history(self, turn: int) -> list[dict[str, str]]:
        return [{"speaker": m["speaker"], "text": m["text"]} for m in self.messages
                if m["turn"] < turn and m["text"].strip()]


def read_corpus(path: Path) -> Passages:
    corpus = Passages("corpus id")
    for line, rec in read_jsonl(path, required=("_id", "text")):
        # title and text are checked but kept as MTRAG ships them (not stripped)
        optional_text(rec.get("title"), "title", path, line)
        text(rec["text"], "text", path, line, allow_empty=True)
        corpus.add_passage(check_id(rec["_id"], "_id", path, line), rec.get("title") or "", rec["text"],
                           domain(rec.get("domain"), path, line), path, line)
    corpus.check_not_empty(path)
    return corpus


def _message(m: Any, where: str, path: Path, line: int) -> dict[str, Any]:
    if not isinstance(m, dict) or m.get("speaker") not in ("user", "agent"):
        raise DataError(path, f"{where}: expected an object with speaker 'user' or 'agent'", line)
    turn = turn_number(m.get("turn"), f"{where}: turn", path, line)
    where = f"{where} ({m['speaker']}, turn {turn})"
    # checked, but kept as written: the history holds the texts verbatim, the utterance stripped
    text(m.get("text"), f"{where}: text", path, line, allow_empty=m["speaker"] == "agent")
    return {"speaker": m["speaker"], "turn": turn, "text": m["text"]}


def _messages(msgs: Any, conv_id: str, path: Path, line: int) -> list[dict[str, Any]]:
    """A conversation's messages, checked: in turn order, one user message a turn."""
    if not isinstance(msgs, list) or not msgs:
        raise DataError(path, f"conversation {conv_id!r} has no messages (expected a non-empty list)", line)
    checked: list[dict[str, Any]] = []
    users: set[int] = set()
    for index, m in enumerate(msgs, start=1):
        where = f"conversation {conv_id!r} message {index}"
        m = _message(m, where, path, line)
        if checked and m["turn"] < checked[-1]["turn"]:
            raise DataError(path, f"{where}: turn {m['turn']} after turn {checked[-1]['turn']} "
                                  "(messages must be in turn order)", line)
        if m["speaker"] == "user":
            if m["turn"] in users:
                raise DataError(path, f"{where}: a second user message at turn {m['turn']}", line)
            users.add(m["turn"])
        checked.append(m)
    return checked


def read_conversations(path: Path) -> dict[str, Conversation]:
    """The conversations by id (user texts non-empty; an agent message with empty text is left out
    of the history)."""
    conversations: dict[str, Conversation] = {}
    for line, rec in read_jsonl(path, required=("conversation_id", "messages")):
        conv_id = check_id(rec["conversation_id"], "conversation_id", path, line)
        if conv_id in conversations:
            first = conversations[conv_id].line
            raise DataError(path, f"duplicate conversation_id {conv_id!r} (first at line {first})", line)
        conversations[conv_id] = Conversation(line, _messages(rec["messages"], conv_id, path, line))
    if not conversations:
        raise DataError(path, "no conversations (the file is empty)")
    return conversations


def read_tasks(path: Path, conversations: dict[str, Conversation]) -> KeyedRows:
    turns, at = KeyedRows("task_id"), {}
    for line, rec in read_jsonl(path, required=("task_id", "conversation_id", "turn")):
        qid = check_id(rec["task_id"], "task_id", path, line)
        conv_id = check_id(rec["conversation_id"], f"task {qid!r}: conversation_id", path, line)
        turn = turn_number(rec["turn"], f"task {qid!r}: turn", path, line)
        if conv_id not in conversations:
            raise DataError(path, f"task {qid!r} names unknown conversation {conv_id!r}", line)
        if (conv_id, turn) in at:
            raise DataError(path, f"task {qid!r}: conversation {conv_id!r} turn {turn} is already task "
                                  f"{at[conv_id, turn][0]!r} (line {at[conv_id, turn][1]})", line)
        conversation = conversations[conv_id]
        utterance = conversation.user_text(turn)
        if utterance is None:
            raise DataError(path, f"task {qid!r}: conversation {conv_id!r} has no user message at turn {turn}", line)
        turns.add(qid, {"query_id": qid, "conversation_id": conv_id, "turn": turn, "utterance": utterance,
                        "history": conversation.history(turn), "domain": domain(rec.get("domain"), path, line)},
                  path, line)
        at[conv_id, turn] = (qid, line)
    if not turns.rows:
        raise DataError(path, "no tasks (the file is empty)")
    return turns


def read_judgments(root: Path, turns: KeyedRows, corpus: Passages) -> KeyedRows:
    """The official qrels, then the annotators' judged-irrelevant passages as relevance 0."""
    qrels, qrels_path = KeyedRows("judgment"), root / "qrels.tsv"
    for line, qid, doc_id, relevance in read_qrels(qrels_path):
        check_judgment(qrels_path, line, qid, doc_id, turns, corpus)
        qrels.add((qid, doc_id), {"query_id": qid, "doc_id": doc_id, "relevance": relevance}, qrels_path, line)
    if not qrels.rows:
        raise DataError(qrels_path, "no judgments (the file is empty or holds only a header)")
    judged_path = root / "annotator_judgments.tsv"
    if judged_path.exists():
        for line, qid, doc_id, relevant in read_qrels(judged_path):
            check_judgment(judged_path, line, qid, doc_id, turns, corpus)
            if relevant not in (0, 1):
                raise DataError(judged_path, f"relevant must be 0 or 1, got {relevant}", line)
            if relevant == 0 and (qid, doc_id) not in qrels:
                qrels.add((qid, doc_id), {"query_id": qid, "doc_id": doc_id, "relevance": 0}, judged_path, line)
    return qrels


def read_rewrites(root: Path, turns: KeyedRows) -> KeyedRows:
    rewrites = KeyedRows("rewrite")
    for path in sorted((root / "queries").glob("*_rewrite.jsonl")):
        for line, rec in read_jsonl(path, required=("_id", "text")):
            qid = check_id(rec["_id"], "_id", path, line)
            if qid not in turns:
                raise DataError(path, f"rewrite of unknown task {qid!r}", line)
            rewrite = _strip_prefix(text(rec["text"], "text", path, line, allow_empty=True))
            if not rewrite:
                raise DataError(path, f"empty rewrite for task {qid!r}", line)
            rewrites.add(qid, {"query_id": qid, "teacher": REWRITE_TEACHER, "text": rewrite,
                               "model": REWRITE_MODEL, "prompt_hash": None}, path, line)
    return rewrites


def load_mtrag(root: Path) -> DatasetTables:
    corpus = read_corpus(root / "corpus.jsonl")
    turns = read_tasks(root / "tasks.jsonl", read_conversations(root / "conversations.jsonl"))
    return DatasetTables(
        corpus=schemas.to_table("corpus", corpus.rows),
        turns=schemas.to_table("turns", turns.rows),
        qrels=schemas.to_table("qrels", read_judgments(root, turns, corpus).rows),
        rewrites=schemas.to_table("rewrites", read_rewrites(root, turns).rows),
        empty_passages=corpus.empty_report(),
    )


register(
    DatasetSpec(
        name="mtrag",
        description="MTRAG: 110 conversations, 842 tasks, 19,687 passages in four domains (IBM)",
        source="IBM MTRAG benchmark (layout of shared/data/mtrag)",
        license="Apache-2.0 (passages keep their sources' terms)",
        loader=load_mtrag,
        default_path=default_path,
        rewrite_teacher=REWRITE_TEACHER,
        domains=DOMAINS,
    )
)
