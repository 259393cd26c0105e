"""Trained students as named artifacts: ``<work_dir>/students/<name>/``.

A student's folder holds ``model/`` (a masked-LM folder ``AutoModelForMaskedLM`` loads), and
``student.json``: where it came from (base model, document encoder, teachers and their LLMs, the
training data and split, the settings), how it reads a conversation (``answers``, ``max_length``),
its dev scores and chosen epoch, and the fingerprint of its weights. A student is then evaluated
anywhere by name (``student:<name>``), with the input format it was trained on.

Published checkpoints (a hub id such as ``slupart/splade-disco-topiocqa`` or a folder without
``student.json``) are students too: they read the conversation with the configuration's format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .io import write_json_atomic

PROVENANCE = "student.json"


@dataclass(frozen=True)
class StudentRef:
    """Where a student's weights are and how it reads a conversation."""

    name: str
    model: str  # a folder, or a hub id
    answers: str
    max_length: int
    provenance: dict | None = None  # student.json, for students trained here


def students_dir(work_dir: str | Path) -> Path:
    return Path(work_dir) / "students"


def folder(work_dir: str | Path, name: str) -> Path:
    return students_dir(work_dir) / name


def write_provenance(student_folder: Path, provenance: dict) -> Path:
    return write_json_atomic(student_folder / PROVENANCE, provenance)


def read_provenance(student_folder: Path) -> dict | None:
    try:
        return json.loads((student_folder / PROVENANCE).read_text())
    except FileNotFoundError:
        return None


def resolve(name_or_path: str, work_dir: str | Path, answers: str, max_length: int) -> StudentRef:
    """A student trained here (by name), a folder, or a hub id (``answers``/``max_length``: the
    format for students that do not record theirs). An unknown name that is not an existing path
    and does not look like a hub id (``org/name``) is a :class:`ConfigError`."""
    trained = folder(work_dir, name_or_path)
    for candidate in (trained, Path(name_or_path).expanduser()):
        provenance = read_provenance(candidate)
        if provenance is not None:
            fmt = provenance.get("conversation", {})
            return StudentRef(name_or_path, str(candidate / "model"), fmt.get("answers", answers),
                              fmt.get("max_length", max_length), provenance)
    path = Path(name_or_path).expanduser()
    if path.exists():
        return StudentRef(name_or_path, str(path), answers, max_length)
    if "/" in name_or_path and not name_or_path.startswith((".", "/")):
        return StudentRef(name_or_path, name_or_path, answers, max_length)  # a hub id
    known = sorted(p.name for p in students_dir(work_dir).glob("*") if (p / PROVENANCE).exists())
    raise ConfigError(f"no student {name_or_path!r}: not trained in {students_dir(work_dir)} "
                      f"(trained: {', '.join(known) or 'none'}), not a folder, not a hub id")


def list_students(work_dir: str | Path) -> list[dict]:
    """Provenance of every student trained in ``work_dir``."""
    out = []
    for path in sorted(students_dir(work_dir).glob("*")):
        provenance = read_provenance(path)
        if provenance is not None:
            out.append(provenance)
    return out


def trained_on(provenance: dict | None) -> list[tuple[str, str]]:
    """``(dataset, split)`` pairs a student was trained on (its dev turns included), from its
    provenance; empty for students trained elsewhere."""
    return [(d["dataset"], d["split"]) for d in (provenance or {}).get("data", [])]


def overlaps(provenance: dict | None, dataset: str, split: str) -> bool:
    """Whether evaluating the student on ``split`` of ``dataset`` would reuse turns it trained on."""
    from .splits import overlap, parse_split

    return any(d == dataset and overlap(parse_split(s), parse_split(split)) for d, s in trained_on(provenance))


def evaluations_of(work_dir: str | Path, model_folder: str | Path) -> list[tuple[Path, str]]:
    """``(evaluation folder, variant)`` of every evaluation in ``work_dir`` whose query encoder was
    this student's model folder (recorded by the evaluate stage in ``metrics.json``)."""
    target = str(Path(model_folder))
    found = []
    for metrics in sorted(Path(work_dir).glob("*/evaluate/*/metrics.json")):
        data = json.loads(metrics.read_text())
        found += [(metrics.parent, v) for v, encoder in data.get("encoders", {}).items() if str(Path(encoder)) == target]
    return found


def card_provenance(provenance: dict, evaluations: dict) -> dict:
    """What the model card shows (:mod:`disco_core.model_card`), from ``student.json`` and the
    student's evaluations (``{title: Evaluation}``, the student's row named ``student``)."""
    data = provenance.get("data", [])
    teachers = [{"name": t.get("name") or "the dataset's rewrites", "backend": t.get("backend"),
                 "llm": t.get("model") or ("people" if t.get("name") == "human" else
                                           f"the dataset's rewriter ({t.get('name')})" if t.get("backend") == "dataset"
                                           else "unknown (rewrites read from a file)")}
                for t in provenance.get("teachers", [])]
    conversation = provenance.get("conversation", {})
    return {
        "name": f"DiSCo student {provenance['name']}", "base_model": provenance.get("base_model"),
        "document_model": provenance.get("document_encoder"),
        "dataset": {"name": " + ".join(f"{d['dataset']} ({d['split']})" for d in data)},
        "split": {"train_turns": sum(d.get("train_turns", 0) for d in data), "examples": provenance.get("examples"),
                  **({"dev_turns": sum(d.get("dev_turns", 0) for d in data)} if provenance.get("dev") else {})},
        "teachers": teachers, "fusion": provenance.get("fusion"), "conversation": conversation,
        "settings": provenance.get("settings", {}), "query_max_length": conversation.get("max_length"),
        "scores": evaluations, "student": "student", "llm_calls": 0,
    }


def package(work_dir: str | Path, name: str, out: str | Path | None = None) -> Path:
    """A trained student as a folder ``sentence_transformers.SparseEncoder`` loads (query route: the
    student; document route: the frozen document encoder), with a model card of its provenance and
    of every evaluation of it in ``work_dir``; default ``<student>/package``. Returns the folder."""
    from . import packaging
    from .evaluation import Evaluation

    student = folder(work_dir, name)
    provenance = read_provenance(student)
    if provenance is None:
        resolve(name, work_dir, "last", 256)  # names the students there are
        raise ConfigError(f"{student}: no student.json: not a student trained by disco")
    evaluations = {}
    for path, variant in evaluations_of(work_dir, student / "model"):
        meta = json.loads((path / "metrics.json").read_text())
        ev = Evaluation.load(path)
        others = {v: v for v in ev.scores if v != variant}
        evaluations[f"{meta.get('dataset')} ({meta.get('split')})"] = ev.select({variant: "student", **others})
    conversation = provenance.get("conversation", {})
    return packaging.save_student(Path(out) if out else student / "package", student / "model",
                                  provenance["document_encoder"], card_provenance(provenance, evaluations),
                                  query_max_length=conversation.get("max_length"),
                                  document_max_length=provenance.get("document_max_length"))
