"""The disco layout (JSONL/TSV), the embedded default dataset in ``data/embedded``, and ``local``.

Layout, the generic format for a user's own data (``--set dataset.name=local --set dataset.path=DIR``):

``corpus.jsonl``         ``{"doc_id", "title"?, "text", "topic"?}`` — or ``corpus.tsv``:
                         ``doc_id<TAB>title<TAB>text`` (a ``doc_id title text`` header is optional)
``conversations.jsonl``  ``{"conversation_id", "topic"?, "turns": [{"turn", "user", "agent"?,
                         "rewrite"?, "qrels"?: {doc_id: grade}}]}`` with turns numbered 1..N
``qrels.tsv``            optional: ``query_id<TAB>doc_id<TAB>grade`` or TREC ``qid 0 docid grade``
                         (a header such as ``query_id doc_id relevance`` is recognised by its names)
``rewrites.tsv``         optional: ``query_id<TAB>text`` (more ``human`` rewrites; header optional)

Query ids are ``<conversation_id>_<turn>``; ``rewrite`` becomes the ``human`` teacher. Ids must not
hold whitespace; a passage with empty text is left out and reported (see :mod:`._rows`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import schemas
from ..env import ROOT
from ..errors import ConfigError, DataError
from ..io import read_jsonl, read_tsv
from ._rows import (CORPUS_HEADER, REWRITES_HEADER, KeyedRows, Passages, check_id, check_judgment, domain, grade,
                    optional_text, qrels_mapping, query_id, read_qrels, text, turn_number)
from .registry import DatasetSpec, DatasetTables, register

PROJECT_DATA = ROOT / "data"


def _topic(rec: dict[str, Any]) -> Any:
    return rec.get("topic") if rec.get("topic") not in (None, "") else rec.get("domain")


def read_corpus(root: Path) -> tuple[Path, Passages]:
    """``corpus.jsonl``, or else ``corpus.tsv`` (with or without a ``doc_id title text`` header)."""
    corpus = Passages("doc_id")
    path = root / "corpus.jsonl"
    if not path.exists() and (root / "corpus.tsv").exists():
        path = root / "corpus.tsv"
        for line, (doc_id, title, body) in read_tsv(path, columns=3, header=CORPUS_HEADER):
            corpus.add_passage(check_id(doc_id, "doc_id", path, line), title.strip(),
                               text(body, "text", path, line, allow_empty=True), None, path, line)
    elif not path.exists():
        raise DataError(path, "file not found (nor corpus.tsv): the corpus is required")
    else:
        for line, rec in read_jsonl(path, required=("doc_id", "text")):
            corpus.add_passage(check_id(rec["doc_id"], "doc_id", path, line),
                               optional_text(rec.get("title"), "title", path, line),
                               text(rec["text"], "text", path, line, allow_empty=True),
                               domain(_topic(rec), path, line, "topic"), path, line)
    corpus.check_not_empty(path)
    return path, corpus


class _Conversations:
    """The tables built from ``conversations.jsonl`` (turns, inline judgments and rewrites)."""

    def __init__(self, path: Path, corpus: Passages):
        self.path, self.corpus = path, corpus
        self.turns, self.qrels = KeyedRows("query_id"), KeyedRows("judgment")
        self.rewrites, self.ids = KeyedRows("rewrite of query"), KeyedRows("conversation_id")

    def read(self) -> None:
        for line, rec in read_jsonl(self.path, required=("conversation_id", "turns")):
            self.add(rec, line)
        if not self.ids.rows:
            raise DataError(self.path, "no conversations (the file is empty)")

    def add(self, rec: dict[str, Any], line: int) -> None:
        path = self.path
        conv_id = check_id(rec["conversation_id"], "conversation_id", path, line)
        self.ids.add(conv_id, {}, path, line)
        if not isinstance(rec["turns"], list) or not rec["turns"]:
            raise DataError(path, f"conversation {conv_id!r} has no turns (expected a non-empty list)", line)
        topic = domain(_topic(rec), path, line, "topic")
        history: list[dict] = []
        for position, turn in enumerate(rec["turns"], start=1):
            where = f"conversation {conv_id!r} turn {position}"
            if not isinstance(turn, dict) or "user" not in turn:
                raise DataError(path, f"{where}: missing field 'user'", line)
            if "turn" in turn:
                number = turn_number(turn["turn"], f"{where}: turn", path, line)
                if number != position:
                    problem = f"turn {number} again" if number < position else f"found turn {number}"
                    raise DataError(path, f"{where}: {problem}; turns must be numbered 1..N in order", line)
            utterance = text(turn["user"], f"{where}: user", path, line)
            qid = query_id(conv_id, position)
            self.turns.add(qid, {"query_id": qid, "conversation_id": conv_id, "turn": position,
                                 "utterance": utterance, "history": list(history), "domain": topic}, path, line)
            rewrite = optional_text(turn.get("rewrite"), f"{where}: rewrite", path, line)
            if rewrite:
                self.rewrites.add(qid, {"query_id": qid, "teacher": "human", "text": rewrite}, path, line)
            for doc_id, value in qrels_mapping(turn.get("qrels"), f"{where}: qrels", path, line).items():
                check_judgment(path, line, qid, doc_id, self.turns, self.corpus, f"{where}: ")
                relevance = grade(value, f"{where}: grade of {doc_id!r}", path, line)
                self.qrels.add((qid, doc_id), {"query_id": qid, "doc_id": doc_id, "relevance": relevance}, path, line)
            history.append({"speaker": "user", "text": utterance})
            agent = optional_text(turn.get("agent"), f"{where}: agent", path, line)
            if agent:
                history.append({"speaker": "agent", "text": agent})


def load_disco_jsonl(root: Path) -> DatasetTables:
    corpus_path, corpus = read_corpus(root)
    conversations = _Conversations(root / "conversations.jsonl", corpus)
    conversations.read()
    turns, qrels, rewrites = conversations.turns, conversations.qrels, conversations.rewrites
    qrels_path = root / "qrels.tsv"
    if qrels_path.exists():
        # ``query_id<TAB>doc_id<TAB>grade`` or TREC ``qid 0 docid grade``; a header is recognised by its names
        found = 0
        for line, qid, doc_id, relevance in read_qrels(qrels_path):
            check_judgment(qrels_path, line, qid, doc_id, turns, corpus)
            qrels.add((qid, doc_id), {"query_id": qid, "doc_id": doc_id, "relevance": relevance}, qrels_path, line)
            found += 1
        if not found:
            raise DataError(qrels_path, "no judgments (the file is empty or holds only a header)")
    rewrites_path = root / "rewrites.tsv"
    if rewrites_path.exists():
        for line, (qid, rewrite) in read_tsv(rewrites_path, columns=2, header=REWRITES_HEADER):
            qid = check_id(qid, "query id", rewrites_path, line)
            if qid not in turns:
                raise DataError(rewrites_path, f"rewrite of unknown query {qid!r}", line)
            rewrites.add(qid, {"query_id": qid, "teacher": "human",
                               "text": text(rewrite, "rewrite", rewrites_path, line)}, rewrites_path, line)
    return DatasetTables(
        corpus=schemas.to_table("corpus", corpus.rows),
        turns=schemas.to_table("turns", turns.rows),
        qrels=schemas.to_table("qrels", qrels.rows),
        rewrites=schemas.to_table("rewrites", rewrites.rows),
        empty_passages=corpus.empty_report(),
    )


def _no_default_path() -> Path:
    raise ConfigError("dataset 'local' reads your own folder: set dataset.path (see README, 'Your own data')")


register(
    DatasetSpec(
        name="embedded",
        description="disco's own small conversational benchmark (fictional encyclopedia, human rewrites, graded qrels)",
        source="written for this project (data/embedded)",
        license="Apache-2.0 (project's own text)",
        loader=load_disco_jsonl,
        default_path=lambda: PROJECT_DATA / "embedded",
    )
)

register(
    DatasetSpec(
        name="local",
        description="your own data in the disco layout (corpus.jsonl|tsv, conversations.jsonl, qrels.tsv?, rewrites.tsv?)",
        source="a local folder: --set dataset.path=DIR",
        license="yours",
        loader=load_disco_jsonl,
        default_path=_no_default_path,
    )
)
