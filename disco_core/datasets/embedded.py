"""The disco layout (JSONL/TSV), the embedded default dataset in ``data/embedded``, and ``local``.

Layout, the generic format for a user's own data (``--set dataset.name=local --set dataset.path=DIR``):

``corpus.jsonl``         ``{"doc_id", "title"?, "text", "topic"?}`` — or ``corpus.tsv``:
                         ``doc_id<TAB>title<TAB>text`` (no header)
``conversations.jsonl``  ``{"conversation_id", "topic"?, "turns": [{"turn", "user", "agent"?,
                         "rewrite"?, "qrels"?: {doc_id: grade}}]}`` with turns numbered 1..N
``qrels.tsv``            optional: ``query_id<TAB>doc_id<TAB>grade`` or TREC ``qid 0 docid grade``
``rewrites.tsv``         optional: ``query_id<TAB>text`` (more ``human`` rewrites)

Query ids are ``<conversation_id>_<turn>``; ``rewrite`` becomes the ``human`` teacher.
"""

from __future__ import annotations

from pathlib import Path

from .. import schemas
from ..errors import ConfigError, DataError
from ..io import read_jsonl, read_tsv
from .registry import DatasetSpec, DatasetTables, KeyedRows, check_judgment, query_id, register

PROJECT_DATA = Path(__file__).resolve().parents[2] / "data"


def _text(value: object, what: str, path: Path, line: int, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise DataError(path, f"{what} must be a string, got {type(value).__name__}", line)
    if not allow_empty and not value.strip():
        raise DataError(path, f"{what} is empty", line)
    return value.strip()


def load_disco_jsonl(root: Path) -> DatasetTables:
    corpus_path, conv_path = root / "corpus.jsonl", root / "conversations.jsonl"
    corpus = KeyedRows("doc_id")
    if not corpus_path.exists() and (root / "corpus.tsv").exists():
        corpus_path = root / "corpus.tsv"
        for line, (doc_id, title, text) in read_tsv(corpus_path, columns=3, header=False):
            doc_id = _text(doc_id, "doc_id", corpus_path, line)
            corpus.add(doc_id, {"doc_id": doc_id, "title": title.strip(), "text": _text(text, "text", corpus_path, line),
                                "domain": None}, corpus_path, line)
    else:
        for line, rec in read_jsonl(corpus_path, required=("doc_id", "text")):
            doc_id = _text(rec["doc_id"], "doc_id", corpus_path, line)
            row = {
                "doc_id": doc_id,
                "title": _text(rec.get("title", ""), "title", corpus_path, line, allow_empty=True),
                "text": _text(rec["text"], "text", corpus_path, line),
                "domain": rec.get("topic") or rec.get("domain"),
            }
            corpus.add(doc_id, row, corpus_path, line)

    turns, qrels, rewrites = KeyedRows("query_id"), KeyedRows("judgment"), []
    conversations = KeyedRows("conversation_id")
    for line, rec in read_jsonl(conv_path, required=("conversation_id", "turns")):
        conv_id = _text(str(rec["conversation_id"]), "conversation_id", conv_path, line)
        conversations.add(conv_id, {}, conv_path, line)
        if not isinstance(rec["turns"], list) or not rec["turns"]:
            raise DataError(conv_path, f"conversation {conv_id!r} has no turns", line)
        domain = rec.get("topic") or rec.get("domain")
        history: list[dict] = []
        for position, turn in enumerate(rec["turns"], start=1):
            where = f"conversation {conv_id!r} turn {position}"
            if not isinstance(turn, dict) or "user" not in turn:
                raise DataError(conv_path, f"{where}: missing field 'user'", line)
            number = turn.get("turn", position)
            if number != position:
                raise DataError(conv_path, f"{where}: turns must be numbered 1..N in order, found {number!r}", line)
            utterance = _text(turn["user"], f"{where}: user", conv_path, line)
            qid = query_id(conv_id, position)
            turns.add(qid, {"query_id": qid, "conversation_id": conv_id, "turn": position,
                            "utterance": utterance, "history": list(history), "domain": domain},
                      conv_path, line)
            if turn.get("rewrite"):
                rewrites.append({"query_id": qid, "teacher": "human",
                                 "text": _text(turn["rewrite"], f"{where}: rewrite", conv_path, line)})
            for doc_id, grade in (turn.get("qrels") or {}).items():
                if doc_id not in corpus:
                    raise DataError(conv_path, f"{where}: qrels name unknown document {doc_id!r}", line)
                if not isinstance(grade, int) or isinstance(grade, bool):
                    raise DataError(conv_path, f"{where}: grade of {doc_id!r} must be an integer", line)
                qrels.add((qid, doc_id), {"query_id": qid, "doc_id": doc_id, "relevance": grade}, conv_path, line)
            history.append({"speaker": "user", "text": utterance})
            if turn.get("agent"):
                history.append({"speaker": "agent", "text": _text(turn["agent"], f"{where}: agent", conv_path, line)})
    qrels_path = root / "qrels.tsv"
    if qrels_path.exists():
        # TREC qrels (``qid 0 docid grade``, whitespace) or ``query_id<TAB>doc_id<TAB>grade``; a
        # header line is skipped (read_tsv)
        with qrels_path.open(encoding="utf-8") as handle:
            trec = len(handle.readline().split()) == 4
        for line, fields in read_tsv(qrels_path, columns=4 if trec else 3, sep=None if trec else "\t"):
            qid, doc_id, grade = (fields[0], fields[2], fields[3]) if trec else fields
            check_judgment(qrels_path, line, qid, doc_id, turns, corpus)
            if not grade.strip().lstrip("-").isdigit():
                raise DataError(qrels_path, f"grade {grade!r} is not an integer", line)
            qrels.add((qid, doc_id), {"query_id": qid, "doc_id": doc_id, "relevance": int(grade)}, qrels_path, line)
    rewrites_path = root / "rewrites.tsv"
    if rewrites_path.exists():
        for line, (qid, text) in read_tsv(rewrites_path, columns=2, header=False):
            if qid not in turns:
                raise DataError(rewrites_path, f"rewrite of unknown query {qid!r}", line)
            rewrites.append({"query_id": qid, "teacher": "human", "text": _text(text, "rewrite", rewrites_path, line)})
    return DatasetTables(
        corpus=schemas.to_table("corpus", corpus.rows),
        turns=schemas.to_table("turns", turns.rows),
        qrels=schemas.to_table("qrels", qrels.rows),
        rewrites=schemas.to_table("rewrites", rewrites),
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
