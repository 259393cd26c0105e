"""Query variants: which text stands for a turn, which encoder reads it, and where its run comes from.

==============================  =====================================================  =========
variant                         text, encoder                                          LLM calls
==============================  =====================================================  =========
``last_turn``                   the user's utterance, the document encoder             0
``conversation``                the formatted conversation, the document encoder       0
``rewrite[:<teacher>]``         a teacher's rewrite (default: the dataset's own), the  the
                                document encoder (the teacher's own query side)        teacher's
``student[:<name or path>]``    the formatted conversation, a trained student (bare:   0
                                the student this configuration trains; a name: one in
                                ``<work_dir>/students``; a path or hub id: a published
                                checkpoint such as ``slupart/splade-disco-*``)
``student+rewrite[:[<s>,]<t>]`` teacher ``t``'s rewrite (default: the dataset's), student the
                                ``s`` ("DiSCo fusion" of the reproducibility study)    teacher's
``fused-teachers``              no text: the teachers' fused scores (the targets)      every teacher's
``<fusion name>``               no text: ranx.fuse of other variants' runs             its variants'
==============================  =====================================================  =========
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from .conversation import ConversationFormatter
from .errors import ConfigError

SIMPLE = ("last_turn", "conversation")
FUSED_TEACHERS = "fused-teachers"
THIS_STUDENT = None  # Variant.student for the student the configuration trains


@dataclass(frozen=True)
class Variant:
    kind: str  # last_turn | conversation | rewrite | student | student+rewrite | fused-teachers | fusion
    teacher: str | None = None
    student: str | None = THIS_STUDENT
    fusion: str | None = None

    @property
    def name(self) -> str:
        if self.kind in SIMPLE or self.kind == FUSED_TEACHERS:
            return self.kind
        if self.kind == "rewrite":
            return f"rewrite:{self.teacher}"
        if self.kind == "student":
            return "student" if self.student is THIS_STUDENT else f"student:{self.student}"
        if self.kind == "student+rewrite":
            who = "" if self.student is THIS_STUDENT else f"{self.student},"
            return f"student+rewrite:{who}{self.teacher}"
        return self.fusion

    @property
    def slug(self) -> str:
        """The name, safe as a file or folder name."""
        return self.name.replace(":", "-").replace("/", "_").replace(",", "_")

    @property
    def encoded(self) -> bool:
        """Has query vectors of its own (fusions and fused teachers only combine runs)."""
        return self.kind not in (FUSED_TEACHERS, "fusion")

    @property
    def uses_student(self) -> bool:
        return self.kind in ("student", "student+rewrite")

    @property
    def reads_conversation(self) -> bool:
        return self.kind in ("conversation", "student")

    def __str__(self) -> str:
        return self.name


def parse_variant(text: str, dataset_teacher: str, fusions: tuple[str, ...] = ()) -> Variant:
    """A variant from its name; ``rewrite`` alone is the dataset's teacher (``human``, ...)."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"a query variant is a non-empty string, not {text!r}")
    text = text.strip()
    if text in SIMPLE or text == FUSED_TEACHERS:
        return Variant(text)
    if text in fusions:
        return Variant("fusion", fusion=text)
    kind, _, arg = text.partition(":")
    if kind == "rewrite":
        return Variant("rewrite", teacher=arg or dataset_teacher)
    if kind == "student":
        return Variant("student", student=arg or THIS_STUDENT)
    if kind == "student+rewrite":
        student, _, teacher = arg.rpartition(",")
        return Variant("student+rewrite", teacher=teacher or dataset_teacher, student=student or THIS_STUDENT)
    raise ConfigError(f"unknown query variant {text!r}: use last_turn, conversation, rewrite[:<teacher>], "
                      "student[:<name>], student+rewrite[:[<student>,]<teacher>], fused-teachers or a fusion's name"
                      + (f" ({', '.join(fusions)})" if fusions else ""))


def query_texts(variant: Variant, turns: list[dict], formatter: ConversationFormatter | None = None,
                rewrites: pa.Table | None = None) -> tuple[list[str], list[str]]:
    """``(query ids, texts)`` of an encoded variant. A turn the teacher did not rewrite is absent
    (it then scores 0 if it is judged)."""
    if variant.kind == "last_turn":
        return [t["query_id"] for t in turns], [t["utterance"] for t in turns]
    if variant.reads_conversation:
        return [t["query_id"] for t in turns], formatter.format_many(turns)
    if variant.kind in ("rewrite", "student+rewrite"):
        by_query = dict(zip(rewrites["query_id"].to_pylist(), rewrites["text"].to_pylist()))
        kept = [t for t in turns if t["query_id"] in by_query]
        return [t["query_id"] for t in kept], [by_query[t["query_id"]] for t in kept]
    raise ValueError(f"variant {variant} has no query text")
