"""One configuration's view of a plan: its datasets, teachers, variants, splits and students,
resolved and checked by name before any work (an unknown dataset, domain, teacher, variant or
student, or a student evaluated on turns it trained on, is a ConfigError here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from disco_core import splits
from disco_core import students as students_lib
from disco_core.config import Config, DatasetConfig, TeacherConfig
from disco_core.datasets import registry
from disco_core.errors import ConfigError
from disco_core.io import short_hash
from disco_core.variants import FUSED_TEACHERS, Variant, parse_variant

from .execute import Node

if TYPE_CHECKING:  # annotations only: graph imports this module
    from .graph import Graph


@dataclass
class DatasetRef:
    """A dataset as the pipeline sees it (registry name, source folder, domain filter)."""

    config: DatasetConfig

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def scope(self) -> str:
        """Its folder under the work dir: the name, and the domains it keeps."""
        domains = self.config.domains
        return self.name + ("-" + "-".join(sorted(domains)) if domains else "")

    @property
    def spec(self) -> registry.DatasetSpec:
        return registry.get(self.name)

    @property
    def teacher(self) -> str:
        """The teacher of the dataset's own rewrites (``human``, or e.g. ``mtrag-mixtral``)."""
        return self.spec.rewrite_teacher

    def __str__(self) -> str:
        return self.scope


@dataclass
class TeacherRef:
    name: str
    config: TeacherConfig

    def __str__(self) -> str:
        return self.name


@dataclass
class StudentRef:
    """A student to encode with: trained in this plan (``node``) or found on disk (``ref``)."""

    name: str
    node: str | None = None
    ref: students_lib.StudentRef | None = None
    answers: str = "last"
    max_length: int = 256

    def __str__(self) -> str:
        return self.name


def slug(text: str) -> str:
    return text.replace(":", "-").replace("/", "_").replace(",", "_")


class Planner:
    """One configuration's view of a graph: resolves its datasets, teachers, variants and students."""

    def __init__(self, graph: Graph, cfg: Config):
        self.graph, self.cfg = graph, cfg

    def node(self, stage_name: str, **params) -> Node:
        return self.graph.add(self.cfg, stage_name, **params)

    # -------------------------------------------------------------- names
    def dataset(self, name: str | None = None, path: str | None = None) -> DatasetRef:
        """The configuration's dataset, or another registered one (a training mixture's)."""
        if name is None or (name == self.cfg.dataset.name and path is None):
            ref = DatasetRef(self.cfg.dataset)
        else:
            ref = DatasetRef(DatasetConfig(name=name, path=path, cache_dir=self.cfg.dataset.cache_dir,
                                           mirror=self.cfg.dataset.mirror))
        self.check_domains(ref, ref.config.domains or (), "dataset.domains")
        return ref

    def check_domains(self, ds: DatasetRef, domains, setting: str) -> None:
        """Domains the registry lists for the dataset (MTRAG's); others are checked at ingest."""
        known = ds.spec.domains  # an unknown dataset fails here, before any work
        unknown = [d for d in domains if known and d not in known]
        if unknown:
            raise ConfigError(f"{setting}: dataset {ds.name} has no domain {', '.join(map(repr, unknown))}; "
                              f"its domains are {', '.join(sorted(known))}")

    def teachers(self, ds: DatasetRef) -> list[TeacherRef]:
        refs = []
        for t in self.cfg.teachers:
            name = t.name or (ds.teacher if t.backend == "dataset" else None)
            if name is None:
                raise ConfigError(f"teachers: a teacher with backend {t.backend!r} needs a name")
            refs.append(TeacherRef(name, t))
        names = [r.name for r in refs]
        if len(set(names)) != len(names):
            raise ConfigError(f"teachers: names must be unique on dataset {ds.name}, got {names}")
        return refs

    def teacher(self, ds: DatasetRef, name: str) -> TeacherRef:
        """A configured teacher, or the dataset's rewrites of that name."""
        for ref in self.teachers(ds):
            if ref.name == name:
                return ref
        return TeacherRef(name, TeacherConfig(name=name, backend="dataset"))

    def fuse(self, ds: DatasetRef) -> Node:
        """The dataset's fused teacher targets."""
        return self.node("fuse", ds=ds, teachers=tuple(self.teachers(ds)))

    def variants(self, ds: DatasetRef, names: list[str]) -> list[Variant]:
        fusions = tuple(f.name for f in self.cfg.evaluation.fusions)
        out = [parse_variant(v, ds.teacher, fusions) for v in names]
        seen = [v.name for v in out]
        if len(set(seen)) != len(seen):
            raise ConfigError(f"evaluation.variants: a variant is named twice: {seen}")
        return out

    def evaluated_variants(self, ds: DatasetRef) -> list[Variant]:
        """``evaluation.variants``, then every declared fusion not listed there."""
        listed = self.variants(ds, self.cfg.evaluation.variants)
        names = {v.name for v in listed}
        return listed + [Variant("fusion", fusion=f.name) for f in self.cfg.evaluation.fusions if f.name not in names]

    # -------------------------------------------------------------- the student
    def student_name(self) -> str:
        """The configuration's student: ``train.name``, or its data and a hash of its settings."""
        from .stage import plain

        t = self.cfg.train
        if t.name:
            return t.name
        data = "+".join(f"{d.ds}-{d.split.label}" for d in self.train_data())
        identity = [plain(t), plain(self.cfg.teachers), plain(self.cfg.distill), plain(self.cfg.split),
                    self.cfg.conversation.answers, self.cfg.encoder.model, [str(d.config) for d in self.train_data()]]
        return f"{data}-{short_hash(identity, 8)}"

    def train_data(self) -> list[TrainPart]:
        data = self.cfg.train.data
        if data is None:
            return [TrainPart(self.dataset(), splits.parse_split("train"), None)]
        parts = [TrainPart(self.dataset(d.dataset, d.path), splits.parse_split(d.split), d) for d in data]
        for part in parts:
            self.check_domains(part.ds, part.split.domains, "train.data.split")
        return parts

    def student(self, name: str | None) -> StudentRef:
        """``None``: the student this configuration trains (planned now); else a name or path."""
        t = self.cfg.train
        if name is None:
            node = self.node("train", student=self.student_name(), parts=tuple(self.train_data()))
            self.graph.students[self.student_name()] = node.id
            return StudentRef(self.student_name(), node=node.id, answers=self.cfg.conversation.answers,
                              max_length=t.max_length)
        if name in self.graph.students:
            node = self.graph.nodes[self.graph.students[name]]
            return StudentRef(name, node=node.id, answers=node.cfg.conversation.answers,
                              max_length=node.cfg.train.max_length)
        ref = students_lib.resolve(name, self.cfg.work_dir, self.cfg.conversation.answers, t.max_length)
        return StudentRef(name, ref=ref, answers=ref.answers, max_length=ref.max_length)

    def check_disjoint(self, ds: DatasetRef, split: splits.Split, variants: list[Variant], setting: str) -> None:
        """Evaluating a student on turns it trained on is refused (this configuration's student,
        or a trained one whose provenance says where it trained)."""
        self.check_domains(ds, split.domains, setting)
        for v in variants:
            if not v.uses_student:
                continue
            if v.student is None:
                parts = [(p.ds.name, str(p.split)) for p in self.train_data()]
            else:
                student = self.student(v.student)
                node = self.graph.nodes.get(student.node) if student.node else None
                parts = ([(p.ds.name, str(p.split)) for p in node.params["parts"]] if node
                         else students_lib.trained_on(student.ref.provenance))
            for name, trained in parts:
                if name == ds.name and splits.overlap(splits.parse_split(trained), split):
                    raise ConfigError(f"{setting} {str(split)!r} overlaps the training split {trained!r} of "
                                      f"student {v.name} on dataset {ds.name}: evaluate on turns it did not train on")


@dataclass
class TrainPart:
    """One part of a student's training data."""

    ds: DatasetRef
    split: splits.Split
    config: object | None


def report_variants(planner: Planner, ds: DatasetRef) -> list[str]:
    """The DiSCo report's rows: the student, each teacher, the fused teachers, the baselines."""
    teachers = planner.teachers(ds)
    names = ["student", *(f"rewrite:{t.name}" for t in teachers)]
    if len(teachers) > 1 and planner.cfg.distill.fusion != "per-teacher":
        names.append(FUSED_TEACHERS)
    return names + ["last_turn", "conversation"]
