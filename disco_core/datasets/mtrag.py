"""MTRAG (IBM, Apache-2.0) in the layout of ``shared/data/mtrag``, or any folder in that layout.

Files: ``corpus.jsonl`` (``_id, title, text, domain``), ``conversations.jsonl`` (messages with
``speaker, turn, text``), ``tasks.jsonl`` (one retrieval task per user turn), ``qrels.tsv``
(official, with header), optional ``annotator_judgments.tsv`` (judged-irrelevant passages become
relevance 0) and ``queries/<domain>_rewrite.jsonl`` (Mixtral 8x7B rewrites, teacher ``mtrag-mixtral``).
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import schemas
from ..errors import DataError
from ..io import read_jsonl, read_tsv
from .registry import DatasetSpec, DatasetTables, KeyedRows, check_judgment, register

REWRITE_TEACHER = "mtrag-mixtral"
REWRITE_MODEL = "Mixtral-8x7B-Instruct (MTRAG official rewrite)"
USER_PREFIX = "|user|:"


def default_path() -> Path:
    # ``../shared/data/mtrag`` from the project root, unless DISCO_MTRAG_PATH says otherwise.
    env = os.environ.get("DISCO_MTRAG_PATH")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data" / "mtrag"


def _strip_prefix(text: str) -> str:
    text = text.strip()
    return text[len(USER_PREFIX):].strip() if text.startswith(USER_PREFIX) else text


def load_mtrag(root: Path) -> DatasetTables:
    corpus_path = root / "corpus.jsonl"
    corpus = KeyedRows("corpus id")
    for line, rec in read_jsonl(corpus_path, required=("_id", "text")):
        doc_id = str(rec["_id"])
        corpus.add(doc_id, {"doc_id": doc_id, "title": rec.get("title") or "", "text": rec["text"],
                            "domain": rec.get("domain")}, corpus_path, line)

    conv_path = root / "conversations.jsonl"
    messages: dict[str, list[dict]] = {}
    conv_lines: dict[str, int] = {}
    for line, rec in read_jsonl(conv_path, required=("conversation_id", "messages")):
        conv_id = str(rec["conversation_id"])
        if conv_id in messages:
            raise DataError(conv_path, f"duplicate conversation_id {conv_id!r} (first at line {conv_lines[conv_id]})", line)
        msgs = rec["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise DataError(conv_path, f"conversation {conv_id!r} has no messages", line)
        for m in msgs:
            if not isinstance(m, dict) or m.get("speaker") not in ("user", "agent") or "turn" not in m:
                raise DataError(conv_path, f"conversation {conv_id!r}: message without speaker user/agent and turn", line)
        messages[conv_id], conv_lines[conv_id] = msgs, line

    tasks_path = root / "tasks.jsonl"
    turns = KeyedRows("task_id")
    for line, rec in read_jsonl(tasks_path, required=("task_id", "conversation_id", "turn")):
        qid, conv_id, turn = str(rec["task_id"]), str(rec["conversation_id"]), int(rec["turn"])
        if conv_id not in messages:
            raise DataError(tasks_path, f"task {qid!r} names unknown conversation {conv_id!r}", line)
        msgs = messages[conv_id]
        user = [m for m in msgs if m["speaker"] == "user" and m["turn"] == turn]
        if not user or not str(user[0]["text"]).strip():
            raise DataError(tasks_path, f"task {qid!r}: conversation {conv_id!r} has no user text at turn {turn}", line)
        history = [{"speaker": m["speaker"], "text": m["text"]} for m in msgs if m["turn"] < turn]
        turns.add(qid, {"query_id": qid, "conversation_id": conv_id, "turn": turn,
                        "utterance": str(user[0]["text"]).strip(), "history": history,
                        "domain": rec.get("domain")}, tasks_path, line)

    qrels = KeyedRows("judgment")
    qrels_path = root / "qrels.tsv"
    for line, (qid, doc_id, score) in read_tsv(qrels_path, columns=3):
        check_judgment(qrels_path, line, qid, doc_id, turns, corpus)
        try:
            relevance = int(float(score))
        except ValueError:
            raise DataError(qrels_path, f"relevance {score!r} is not a number", line) from None
        qrels.add((qid, doc_id), {"query_id": qid, "doc_id": doc_id, "relevance": relevance}, qrels_path, line)
    judged_path = root / "annotator_judgments.tsv"
    if judged_path.exists():
        for line, (qid, doc_id, relevant) in read_tsv(judged_path, columns=3):
            check_judgment(judged_path, line, qid, doc_id, turns, corpus)
            if relevant.strip() == "0" and (qid, doc_id) not in qrels:
                qrels.add((qid, doc_id), {"query_id": qid, "doc_id": doc_id, "relevance": 0}, judged_path, line)

    rewrites = KeyedRows("rewrite")
    for path in sorted((root / "queries").glob("*_rewrite.jsonl")):
        for line, rec in read_jsonl(path, required=("_id", "text")):
            qid = str(rec["_id"])
            if qid not in turns:
                raise DataError(path, f"rewrite of unknown task {qid!r}", line)
            text = _strip_prefix(str(rec["text"]))
            if not text:
                raise DataError(path, f"empty rewrite for task {qid!r}", line)
            rewrites.add(qid, {"query_id": qid, "teacher": REWRITE_TEACHER, "text": text,
                               "model": REWRITE_MODEL, "prompt_hash": None}, path, line)

    return DatasetTables(
        corpus=schemas.to_table("corpus", corpus.rows),
        turns=schemas.to_table("turns", turns.rows),
        qrels=schemas.to_table("qrels", qrels.rows),
        rewrites=schemas.to_table("rewrites", rewrites.rows),
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
    )
)
