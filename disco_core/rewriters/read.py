"""Rewriters that read rewrites made elsewhere (the dataset's own, or a file), or take the question
as written (the last turn as a teacher)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from ..errors import DataError
from ..io import read_jsonl, read_tsv
from .base import Rewriter, RewriterError
from .prompt import clean_rewrite


class DatasetRewriter(Rewriter):
    """Rewrites that ship with the dataset (people's, or a dataset's own LLM rewrites)."""

    generates = False

    def __init__(self, teacher: str, rewrites: Iterable[dict]):
        self.teacher = teacher
        # People's rewrites cost no LLM call (but a person); a dataset's model rewrites (MTRAG's
        # Mixtral, CAsT's automatic ones) stand for one model call per turn at search time.
        self.llm_calls_per_turn = 0 if teacher == "human" else 1
        self.rows = {r["query_id"]: r for r in rewrites if r["teacher"] == teacher}
        if not self.rows:
            raise RewriterError(f"the dataset has no rewrites from teacher {teacher!r}")
        self.model = next(iter(self.rows.values())).get("model")

    def rewrite(self, turns, on_result):
        for turn in turns:
            row = self.rows.get(turn["query_id"])
            if row is not None:
                on_result({"query_id": turn["query_id"], "text": row["text"], "status": row.get("status") or "ok"})


class QuestionRewriter(Rewriter):
    """No rewrite: each turn's question as the user wrote it. As a teacher beside an LLM's rewrites,
    it pulls the student towards what the last turn alone retrieves (which the student falls below
    out of domain: docs/recipe_study.md)."""

    generates = False
    llm_calls_per_turn = 0

    def __init__(self, teacher: str):
        self.teacher = teacher

    def rewrite(self, turns, on_result):
        for turn in turns:
            on_result({"query_id": turn["query_id"], "text": turn["utterance"], "status": "as-written"})


class FileRewriter(Rewriter):
    """Rewrites made elsewhere: TSV (``query_id<TAB>text``) or JSONL (``{"query_id"|"_id"|"id", "text"}``)."""

    generates = False

    def __init__(self, teacher: str, path: str | Path, model: str | None = None):
        self.teacher, self.path, self.model = teacher, Path(path), model
        self.texts: dict[str, str] = {}
        if self.path.suffix in (".jsonl", ".json"):
            for line, rec in read_jsonl(self.path, required=("text",)):
                qid = rec.get("query_id") or rec.get("_id") or rec.get("id")
                if qid is None:
                    raise DataError(self.path, "missing field 'query_id'", line)
                self._add(str(qid), str(rec["text"]), line)
        else:
            for line, (qid, text) in read_tsv(self.path, columns=2, header=False):
                self._add(qid, text, line)
        self.prompt_hash = hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]

    def _add(self, qid: str, text: str, line: int) -> None:
        if qid in self.texts:
            raise DataError(self.path, f"duplicate rewrite for query {qid!r}", line)
        self.texts[qid] = text

    def rewrite(self, turns, on_result):
        known = {t["query_id"] for t in turns}
        unknown = sorted(set(self.texts) - known)
        if unknown and not (set(self.texts) & known):
            raise DataError(self.path, f"no query id matches the dataset (e.g. {unknown[0]!r})")
        for turn in turns:
            if turn["query_id"] in self.texts:
                text, status = clean_rewrite(self.texts[turn["query_id"]], turn["utterance"])
                on_result({"query_id": turn["query_id"], "text": text, "status": status})
