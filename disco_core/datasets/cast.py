"""TREC CAsT 2019-2022 (Conversational Assistance Track): official topics and qrels.

Entries ``cast2019`` .. ``cast2022`` download, into ``<data dir>/trec-cast/<year>/``, the year's
evaluation topics (the manual ones from 2020 on) and its NIST qrels, at the URLs and md5s of
ir_datasets 0.6.3 (``etc/downloads.json``, section ``trec-cast``; the file names are its cache paths,
so the folder has ir_datasets' layout). 2019 also downloads the organisers' resolved utterances
(``evaluation_topics_annotated_resolved_v1.0.tsv``; no published checksum), its only manual rewrites.

Parsing. The topics and qrels are read by ir_datasets' own classes (``CastQueries`` with
``Cast2019Query`` .. ``Cast2022Query``, ``TrecQrels``) over the downloaded files, so query ids and
fields mean what they mean in ir_datasets (``trec-cast/v1/2019``, ``v1/2020``; 2021 and 2022 are
defined but not registered there in 0.6.3). The years are registered with ir_datasets as
``disco/trec-cast/<year>`` over the downloaded files (:func:`register_ir_datasets`; the loaders call
it), queries and qrels only. Before ir_datasets reads a file it is checked here, so a bad record is
reported as ``file:line: topic 31 turn 3: ...``; fields ir_datasets leaves out (the 2021 canonical
passage and its number) and the 2019 resolved TSV are read here.

Tables.

- turns: one row per user turn, ``query_id`` as in ir_datasets (``31_1``; 2022 ``132_1-1``),
  ``conversation_id`` the topic number, ``utterance`` the raw utterance. ``history`` holds the earlier
  raw utterances of the topic and, where the year gives them as text, the canonical responses as
  agent messages (2021: the canonical passage; 2022: the System turns' responses). 2022 topics are
  trees: a turn's history follows its ``parent`` chain (its own branch and the turns it branched
  from, not every earlier turn), and ``turn`` is its depth in user turns.
- rewrites: the manual rewrite as teacher ``human`` (2019: the resolved TSV) and, in 2020 and 2021,
  the organisers' automatic rewrite as teacher ``cast-automatic``.
- qrels: the NIST judgments, graded 0 (fails to meet) .. 4 (fully meets). 2021 qrels are at
  document level (``MARCO_D59865``), the others at passage level.
- corpus: by default only the passages given in the topic files: 2021's canonical passages, with
  the id the CAsT 2021 runs use, ``<canonical_result_id>-<passage_id>`` (e.g. ``MARCO_D59865-7``;
  ``passage_id`` counts from 0, unlike ir_datasets' 1-based passage numbers). With
  ``dataset.collection`` on, 2019 and 2020 stream ir_datasets' ``trec-cast/v1`` documents (MS MARCO
  passages as ``MARCO_<id>``, TREC CAR paragraphs as ``CAR_<id>``: the ids of the qrels; 38.6M
  passages, downloaded by ir_datasets on first use). The 2021/2022 collections (MS MARCO documents
  v1/v2, Washington Post, KILT, each under its own terms, WaPo only with a NIST agreement) are not
  registered in ir_datasets 0.6.3 and not downloaded; judgments naming documents outside the corpus
  are kept and counted by ``validation_report``.

Licence: the topics and qrels come from NIST TREC (the ``daltonj/treccastweb`` repository is under
MIT); the document collections keep their own terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from .. import schemas
from ..download import RemoteFile
from ..errors import DataError
from ..io import read_tsv
from ._rows import KeyedRows, check_id
from .registry import DatasetSpec, DatasetTables, register, source_path
from ._trec import Turn, check_fields, message, qrel_rows, read_topics, rewrite_row

NAME = "trec-cast"
AUTOMATIC_TEACHER = "cast-automatic"
LICENSE = ("TREC CAsT topics and qrels from NIST TREC (daltonj/treccastweb, MIT); "
           "the document collections keep their own terms and are not downloaded")
_GITHUB = "https://raw.githubusercontent.com/daltonj/treccastweb/master"
_NIST = "https://trec.nist.gov/data/cast"


@dataclass(frozen=True)
class CastYear:
    """The official files of one CAsT year and what a turn of its topics file holds."""

    year: int
    topics: RemoteFile
    qrels: RemoteFile
    description: str
    turn_fields: dict[str, type | tuple[type, ...]]
    optional_turn_fields: dict[str, type | tuple[type, ...]]
    resolved: RemoteFile | None = None  # 2019: manual rewrites, one "<query_id>\t<text>" a line
    collection: str | None = None  # the ir_datasets id of the year's documents, when it has them

    @property
    def dataset(self) -> str:
        return f"cast{self.year}"

    @property
    def irds_name(self) -> str:
        return f"disco/{NAME}/{self.year}"

    @property
    def files(self) -> tuple[RemoteFile, ...]:
        return (self.topics, self.qrels) + ((self.resolved,) if self.resolved else ())


YEARS: dict[int, CastYear] = {
    c.year: c
    for c in (
        CastYear(
            2019,
            RemoteFile("2019/evaluation_topics_v1.0.json", f"{_GITHUB}/2019/data/evaluation/evaluation_topics_v1.0.json",
                       md5="362283885194feefcab8441d2bb24f7c"),
            RemoteFile("2019/2019qrels.txt", f"{_NIST}/2019qrels.txt", md5="aab238105020c4cd55fae60dedfa9f1e"),
            "TREC CAsT 2019 evaluation: 479 turns, graded passage qrels, organisers' resolved rewrites "
            "(collection MS MARCO passages + TREC CAR: dataset.collection=true streams it via ir_datasets)",
            {"number": int, "raw_utterance": str},
            {},
            resolved=RemoteFile("2019/evaluation_topics_annotated_resolved_v1.0.tsv",
                                f"{_GITHUB}/2019/data/evaluation/evaluation_topics_annotated_resolved_v1.0.tsv"),
            collection="trec-cast/v1",
        ),
        CastYear(
            2020,
            RemoteFile("2020/2020_manual_evaluation_topics_v1.0.json",
                       f"{_GITHUB}/2020/2020_manual_evaluation_topics_v1.0.json", md5="98ae2be2c82e294895a83e76b4133e19"),
            RemoteFile("2020/2020qrels.txt", f"{_NIST}/2020qrels.txt", md5="de6a8406217945bdbf1da304214ef60c"),
            "TREC CAsT 2020 manual evaluation topics: 216 turns, graded passage qrels, manual and automatic "
            "rewrites (collection MS MARCO passages + TREC CAR: dataset.collection=true streams it via ir_datasets)",
            {"number": int, "raw_utterance": str, "manual_rewritten_utterance": str,
             "automatic_rewritten_utterance": str, "manual_canonical_result_id": str},
            {},
            collection="trec-cast/v1",
        ),
        CastYear(
            2021,
            RemoteFile("2021/2021_manual_evaluation_topics_v1.0.json",
                       f"{_GITHUB}/2021/2021_manual_evaluation_topics_v1.0.json", md5="eafb4d4c5b914baab02a71c474e4ecc4"),
            RemoteFile("2021/trec-cast-qrels-docs.2021.qrel", f"{_GITHUB}/2021/trec-cast-qrels-docs.2021.qrel",
                       md5="3393d7d2fbf8771511e3cf2448ad3dad"),
            "TREC CAsT 2021 manual evaluation topics: 239 turns, graded document qrels, canonical passages, manual "
            "and automatic rewrites (collection MS MARCO documents + WaPo + KILT not downloaded)",
            {"number": int, "raw_utterance": str, "manual_rewritten_utterance": str,
             "automatic_rewritten_utterance": str, "canonical_result_id": str},
            {"passage": str, "passage_id": int},
        ),
        CastYear(
            2022,
            RemoteFile("2022/2022_evaluation_topics_tree_v1.0.json",
                       f"{_GITHUB}/2022/2022_evaluation_topics_tree_v1.0.json", md5="a2996adf88b3933816f65ad5536c7860"),
            RemoteFile("2022/2022qrels.txt", f"{_NIST}/2022-qrels.txt", md5="1d1ffe3d3a3a7fc64278ac7cc72b8bde"),
            "TREC CAsT 2022 evaluation topic trees: user turns with their branch history and system responses, "
            "graded passage qrels, manual rewrites (collection MS MARCO v2 + WaPo + KILT not downloaded)",
            {"number": str, "participant": str},
            {"parent": str, "utterance": str, "manual_rewritten_utterance": str, "response": str, "provenance": list},
        ),
    )
}

# The ir_datasets 0.6.3 downloads.json key of each file (tests check URL and md5 against it).
IRDS_DOWNLOADS: dict[str, str] = {
    "2019/evaluation_topics_v1.0.json": "2019/eval/queries",
    "2019/2019qrels.txt": "2019/eval/qrels",
    "2020/2020_manual_evaluation_topics_v1.0.json": "2020/queries",
    "2020/2020qrels.txt": "2020/qrels",
    "2021/2021_manual_evaluation_topics_v1.0.json": "2021/queries",
    "2021/trec-cast-qrels-docs.2021.qrel": "2021/qrels",
    "2022/2022_evaluation_topics_tree_v1.0.json": "2022/queries",
    "2022/2022qrels.txt": "2022/qrels",
}


def register_ir_datasets() -> None:
    """Register ``disco/trec-cast/2019`` .. ``disco/trec-cast/2022`` with ir_datasets (queries and
    qrels over the files in the data dir, located when read; run ``datasets.download("cast2021")``
    first). Idempotent; imports ir_datasets."""
    from . import _irds

    for cast in YEARS.values():
        folder = partial(source_path, cast.dataset)
        _irds.register(cast.irds_name, partial(_irds.cast_dataset, cast.year,
                                               _irds.DataFile(folder, cast.topics.name, cast.dataset),
                                               _irds.DataFile(folder, cast.qrels.name, cast.dataset)))


def load_cast(year: int, root: Path) -> DatasetTables:
    """Parse the CAsT ``year`` files in ``root`` (laid out as downloaded) into canonical tables."""
    from . import _irds

    cast = YEARS[year]
    topics_path, qrels_path = root / cast.topics.name, root / cast.qrels.name
    topics = read_topics(topics_path, "turn")
    located = [turn for topic in topics for turn in topic.turns]
    for topic in topics:
        check_fields(topics_path, f"topic {topic.number}", topic.line, topic.data,
                     {"number": int, **({"title": str} if year == 2019 else {})},
                     {"description": str} if year == 2019 else None)
        for turn in topic.turns:
            check_fields(topics_path, turn.where, turn.line, turn.data, cast.turn_fields, cast.optional_turn_fields)

    dataset = _irds.cast_dataset(year, _irds.local(topics_path), _irds.local(qrels_path))
    pairs = _irds.turn_queries(dataset, topics_path, located)
    turns, rewrites, corpus = KeyedRows("query_id"), KeyedRows("rewrite"), KeyedRows("passage id")
    if year == 2022:
        _tree_turns(pairs, topics_path, turns, rewrites)
    else:
        _linear_turns(pairs, topics_path, turns, rewrites, corpus)
    if cast.resolved:
        _resolved_rewrites(root / cast.resolved.name, turns, rewrites)
    qrels = qrel_rows(_irds.qrels(dataset, qrels_path), qrels_path, turns)
    register_ir_datasets()
    return DatasetTables(
        corpus=schemas.to_table("corpus", corpus.rows),
        turns=schemas.to_table("turns", turns.rows),
        qrels=schemas.to_table("qrels", qrels),
        rewrites=schemas.to_table("rewrites", rewrites.rows),
    )


def _turn_row(query: Any, conversation: Any, turn: int, history: list[dict]) -> dict:
    return {"query_id": query.query_id, "conversation_id": str(conversation), "turn": turn,
            "utterance": query.raw_utterance.strip(), "history": history, "domain": None}


def _add_rewrite(rewrites: KeyedRows, query_id: str, teacher: str, text: str | None, path: Path, line: int) -> None:
    if text and text.strip():
        rewrites.add((query_id, teacher), rewrite_row(query_id, teacher, text), path, line)


def _linear_turns(pairs: list[tuple[Turn, Any]], path: Path, turns: KeyedRows, rewrites: KeyedRows,
                  corpus: KeyedRows) -> None:
    """2019-2021: each topic is one sequence of user turns."""
    histories: dict[Any, list[dict]] = {}
    for turn, query in pairs:
        history = histories.setdefault(query.topic_number, [])
        turns.add(query.query_id, _turn_row(query, query.topic_number, query.turn_number, list(history)),
                  path, turn.line)
        _add_rewrite(rewrites, query.query_id, "human", getattr(query, "manual_rewritten_utterance", None),
                     path, turn.line)
        _add_rewrite(rewrites, query.query_id, AUTOMATIC_TEACHER,
                     getattr(query, "automatic_rewritten_utterance", None), path, turn.line)
        history += message("user", query.raw_utterance)
        # 2021: the canonical passage's text (a field ir_datasets' Cast2021Query leaves out)
        passage = (turn.data.get("passage") or "").strip()
        if passage:
            history += message("agent", passage)
            if turn.data.get("passage_id") is not None:
                doc_id = check_id(f"{query.canonical_result_id}-{turn.data['passage_id']}",
                                  f"{turn.where}: canonical passage id", path, turn.line)
                if doc_id not in corpus:  # the same canonical passage may serve several turns
                    corpus.add(doc_id, {"doc_id": doc_id, "title": "", "text": passage, "domain": None},
                               path, turn.line)


def _tree_turns(pairs: list[tuple[Turn, Any]], path: Path, turns: KeyedRows, rewrites: KeyedRows) -> None:
    """2022: User and System turns form a tree per topic (``parent``); one row per User turn."""
    nodes: dict[str, tuple[Turn, Any]] = {}
    for turn, query in pairs:
        if query.participant not in ("User", "System"):
            raise DataError(path, f"{turn.where}: participant must be 'User' or 'System', "
                                  f"got {query.participant!r}", turn.line)
        if query.participant == "User" and not isinstance(query.raw_utterance, str):
            raise DataError(path, f"{turn.where}: a User turn needs an 'utterance'", turn.line)
        if query.query_id in nodes:
            raise DataError(path, f"{turn.where}: duplicate turn {query.query_id!r} "
                                  f"(first at line {nodes[query.query_id][0].line})", turn.line)
        nodes[query.query_id] = (turn, query)
    for turn, query in pairs:
        if query.participant != "User":
            continue
        chain, parent = [], query.parent_id
        while parent:
            if parent not in nodes:
                raise DataError(path, f"{turn.where}: parent {parent!r} is not a turn of the topic", turn.line)
            if len(chain) > len(nodes):
                raise DataError(path, f"{turn.where}: the parent chain loops", turn.line)
            chain.append(nodes[parent][1])
            parent = nodes[parent][1].parent_id
        chain.reverse()
        history: list[dict] = []
        for earlier in chain:
            history += (message("user", earlier.raw_utterance) if earlier.participant == "User"
                        else message("agent", earlier.response))
        depth = 1 + sum(earlier.participant == "User" for earlier in chain)
        turns.add(query.query_id, _turn_row(query, query.topic_number, depth, history), path, turn.line)
        _add_rewrite(rewrites, query.query_id, "human", query.manual_rewritten_utterance, path, turn.line)


def _resolved_rewrites(path: Path, turns: KeyedRows, rewrites: KeyedRows) -> None:
    """2019: the organisers' resolved utterances, ``<query_id>\\t<rewrite>`` a line, no header."""
    for line, (query_id, text) in read_tsv(path, columns=2):
        if query_id not in turns:
            raise DataError(path, f"rewrite of unknown turn {query_id!r}", line)
        _add_rewrite(rewrites, query_id, "human", text, path, line)


for _cast in YEARS.values():
    register(
        DatasetSpec(
            name=_cast.dataset,
            description=_cast.description,
            source=f"TREC CAsT {_cast.year} (treccastweb topics, NIST qrels), parsed with ir_datasets' trec-cast classes",
            license=LICENSE,
            loader=partial(load_cast, _cast.year),
            files=_cast.files,
            cache_name=NAME,
            collection=_cast.collection,
        )
    )
