"""TREC iKAT 2023 (interactive Knowledge Assistance Track): official test topics and qrels.

Entry ``ikat2023`` downloads, into ``<data dir>/trec-ikat/2023/``, the test topics
(``irlabamsterdam/iKAT`` repository) and the NIST qrels of all turns, at the URLs and md5s that
datamaestro uses (iKAT is not in ir_datasets 0.6.3's downloads.json). The topics are read by
:class:`~disco_core.datasets._irds.IkatQueries` (the record and query ids of the ``trec-ikat``
loader proposed to ir_datasets, PR #264) and the qrels by ir_datasets' ``TrecQrels``; the dataset is
registered with ir_datasets as ``disco/trec-ikat/2023`` over the downloaded files
(:func:`register_ir_datasets`). Bad records are reported as ``file:line: topic 9-1 turn 3: ...``.

Tables.

- turns: one row per turn, ``query_id`` ``<topic number>_<turn_id>`` (``9-1_3``),
  ``conversation_id`` the topic number (``9-1``; topics ``9-1`` and ``9-2`` share a subject but
  have different users), ``utterance`` the user's utterance. ``history`` starts with the user's
  personal text knowledge base (PTKB): one user message with the topic's statements, one a line,
  in the order of their keys, since the task is to answer in the light of them (the PTKB is the
  same for every turn of a topic; which statements matter at a turn, ``ptkb_provenance``, is not
  kept). Then come the earlier turns: the user's utterance and the canonical ``response`` as an
  agent message.
- rewrites: ``resolved_utterance`` as teacher ``human`` (it resolves references and brings in the
  relevant PTKB statements).
- qrels: the official NIST qrels, graded 0 .. 4 like CAsT. The topics' ``response_provenance``
  (the passages the organisers' response used) are not judgments and are not used.
- corpus: empty. The collection, ClueWeb22-B segmented into 116,838,987 passages, needs a licence
  from CMU (https://lemurproject.org/clueweb22/obtain.php) and is not downloaded.

Licence: the topics are from the iKAT organisers (``irlabamsterdam/iKAT``, MIT) and the qrels from
NIST TREC; ClueWeb22 keeps its own licence.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from .. import schemas
from ..download import RemoteFile
from ..errors import DataError
from ._rows import KeyedRows
from .registry import DatasetSpec, DatasetTables, register, source_path
from ._trec import check_fields, message, qrel_rows, read_topics, rewrite_row

NAME = "trec-ikat"
DATASET = "ikat2023"
IRDS_NAME = f"disco/{NAME}/2023"
LICENSE = ("TREC iKAT 2023 topics (irlabamsterdam/iKAT, MIT) and NIST TREC qrels; "
           "the ClueWeb22 collection needs a licence from CMU and is not downloaded")
TOPICS = RemoteFile("2023/2023_test_topics.json",
                    "https://raw.githubusercontent.com/irlabamsterdam/iKAT/refs/heads/main/2023/data/2023_test_topics.json",
                    md5="684fa0197cdec8c3cfb6a2e586ab83f6")
QRELS = RemoteFile("2023/2023-qrels.all-turns.txt", "https://trec.nist.gov/data/ikat/2023-qrels.all-turns.txt",
                   md5="79dc121bab25b2245e52a53263e5ad1f")
TOPIC_FIELDS: dict[str, type] = {"number": str, "title": str, "ptkb": dict}
TURN_FIELDS: dict[str, type] = {"turn_id": int, "utterance": str, "resolved_utterance": str, "response": str}
OPTIONAL_TURN_FIELDS: dict[str, type] = {"ptkb_provenance": list, "response_provenance": list}


def register_ir_datasets() -> None:
    """Register ``disco/trec-ikat/2023`` with ir_datasets (queries and qrels over the files in the
    data dir, located when read; run ``datasets.download("ikat2023")`` first). Idempotent."""
    from . import _irds

    folder = partial(source_path, DATASET)
    _irds.register(IRDS_NAME, partial(_irds.ikat_dataset, _irds.DataFile(folder, TOPICS.name, DATASET),
                                      _irds.DataFile(folder, QRELS.name, DATASET)))


def ptkb_text(ptkb: dict[str, str]) -> str:
    """The PTKB statements, one a line, in the order of their keys ("1", "2", .. "10")."""
    keys = sorted(ptkb, key=lambda k: (0, int(k), "") if str(k).isdigit() else (1, 0, str(k)))
    return "\n".join(ptkb[k].strip() for k in keys if ptkb[k].strip())


def load_ikat(root: Path) -> DatasetTables:
    """Parse the iKAT 2023 files in ``root`` (laid out as downloaded) into canonical tables."""
    from . import _irds

    topics_path, qrels_path = root / TOPICS.name, root / QRELS.name
    topics = read_topics(topics_path, "turns")
    located = [turn for topic in topics for turn in topic.turns]
    for topic in topics:
        check_fields(topics_path, f"topic {topic.number}", topic.line, topic.data, TOPIC_FIELDS)
        for key, statement in topic.data["ptkb"].items():
            if not isinstance(statement, str):
                raise DataError(topics_path, f"topic {topic.number}: PTKB statement {key!r} must be a string",
                                topic.line)
        for turn in topic.turns:
            check_fields(topics_path, turn.where, turn.line, turn.data, TURN_FIELDS, OPTIONAL_TURN_FIELDS)

    dataset = _irds.ikat_dataset(_irds.local(topics_path), _irds.local(qrels_path))
    turns, rewrites = KeyedRows("query_id"), KeyedRows("rewrite")
    histories: dict[str, list[dict]] = {}
    for turn, query in _irds.turn_queries(dataset, topics_path, located):
        history = histories.setdefault(query.topic_number, message("user", ptkb_text(query.topic_ptkb)))
        turns.add(query.query_id, {"query_id": query.query_id, "conversation_id": query.topic_number,
                                   "turn": query.turn_id, "utterance": query.utterance.strip(),
                                   "history": list(history), "domain": None}, topics_path, turn.line)
        if query.resolved_utterance.strip():
            rewrites.add((query.query_id, "human"), rewrite_row(query.query_id, "human", query.resolved_utterance),
                         topics_path, turn.line)
        history += message("user", query.utterance) + message("agent", query.response)
    qrels = qrel_rows(_irds.qrels(dataset, qrels_path), qrels_path, turns)
    register_ir_datasets()
    return DatasetTables(
        corpus=schemas.to_table("corpus", []),
        turns=schemas.to_table("turns", turns.rows),
        qrels=schemas.to_table("qrels", qrels),
        rewrites=schemas.to_table("rewrites", rewrites.rows),
    )


register(
    DatasetSpec(
        name=DATASET,
        description="TREC iKAT 2023 test topics: personalised conversations (PTKB), graded passage qrels, "
                    "resolved rewrites (ClueWeb22 passage collection needs a licence, not downloaded)",
        source="TREC iKAT 2023 (irlabamsterdam/iKAT topics, NIST qrels)",
        license=LICENSE,
        loader=load_ikat,
        files=(TOPICS, QRELS),
        cache_name=NAME,
    )
)
