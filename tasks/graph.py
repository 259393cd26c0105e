"""Plans: the stage instances a configuration (or a sweep of them) needs, derived from the stages'
declarations, deduplicated by folder, in an order where every instance follows what it reads.

``Graph`` holds instances across configurations (a sweep's cells share their datasets' stages);
``Planner`` adds one configuration's instances to it. Planning does no work and reads no data, but
it checks names against what exists: datasets, splits, variants, teachers, trained students.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from disco_core import splits
from disco_core import students as students_lib
from disco_core.config import Config, DatasetConfig, TeacherConfig
from disco_core.datasets import registry
from disco_core.errors import ConfigError
from disco_core.io import short_hash
from disco_core.variants import FUSED_TEACHERS, Variant, parse_variant

from .stage import STAGES, Node, PlanError, keyed_settings


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


class Graph:
    """Instances of stages, keyed by id; one per folder."""

    def __init__(self, work_dir: Path):
        self.work = Path(work_dir)
        self.nodes: dict[str, Node] = {}
        self._by_folder: dict[Path, str] = {}
        self.students: dict[str, str] = {}  # student name -> train instance id
        self._building: set[str] = set()

    def add(self, cfg: Config, stage_name: str, **params) -> Node:
        if stage_name not in STAGES:
            raise PlanError(f"unknown stage {stage_name!r}; stages: {', '.join(STAGES)}")
        stage = STAGES[stage_name]
        guard = f"{stage_name}:{params}"
        if guard in self._building:
            raise PlanError(f"stage {stage_name} needs itself ({params})")
        self._building.add(guard)
        try:
            needs = stage._wire(Planner(self, cfg), **params)
        finally:
            self._building.discard(guard)
        settings = {**keyed_settings(cfg, stage.keys), **stage._settings(cfg, **params)}
        models = stage._models(cfg, **params)
        upstream = [self.nodes[i] for i in _ids(needs)]
        scope, label = stage._scope(cfg, **params), stage._label(cfg, **params)
        # named by where it sits in the plan: its settings and upstream folders (relative: a
        # copied work dir keeps its folder names)
        ident = short_hash([settings, [m[0] for m in models], [str(n.folder.relative_to(self.work)) for n in upstream]], 8)
        if stage._folder is not None:
            folder = self.work / stage._folder(cfg, **params)
        else:
            folder = self.work / scope / stage.name / (f"{slug(label)}-{ident}" if label else ident)
        if folder in self._by_folder:
            known = self.nodes[self._by_folder[folder]]
            if known.settings != settings or known.upstream_folders != [n.folder for n in upstream]:
                raise ConfigError(f"{folder}: two configurations need it with different settings "
                                  f"(a name used twice, e.g. train.name in a sweep)")
            return known
        node_id = f"{stage.name}[{scope}{'/' + label if label else ''}]"
        if node_id in self.nodes:  # the same instance name with other settings (a sweep's cells)
            node_id = f"{node_id}#{ident}"
        node = Node(stage, cfg, params, node_id, folder, {k: _ids(v, single=True) for k, v in needs.items()},
                    settings, models, list(stage._sources(cfg, **params)),
                    {name: folder / rel for name, rel in stage.outputs(cfg, **params).items()},
                    [n.folder for n in upstream])
        self.nodes[node_id] = node
        self._by_folder[folder] = node_id
        return node

    def order(self, targets: list[str] | None = None) -> list[Node]:
        """Instances in insertion order (upstream first, by construction), limited to what
        ``targets`` (instance ids) need; all of them without targets."""
        if targets is None:
            return list(self.nodes.values())
        keep: set[str] = set()
        todo = list(targets)
        while todo:
            node_id = todo.pop()
            if node_id not in keep:
                keep.add(node_id)
                todo += _ids(self.nodes[node_id].needs)
        return [n for i, n in self.nodes.items() if i in keep]

    def select(self, names: list[str]) -> list[str]:
        """Instance ids for stage names (every instance of the stage) or instance ids."""
        out = []
        for name in names:
            found = [i for i, n in self.nodes.items() if name in (i, n.stage.name)]
            if not found:
                known = sorted({n.stage.name for n in self.nodes.values()})
                raise PlanError(f"no stage or instance {name!r} in this plan; stages: {', '.join(known)}")
            out += found
        return out


def _ids(value, single: bool = False):
    """Instance ids in a wire's answer (nodes, lists of them, a dict of both) or in ``Node.needs``."""
    if isinstance(value, (Node, str)):
        node_id = value if isinstance(value, str) else value.id
        return node_id if single else [node_id]
    if isinstance(value, dict):
        return [i for v in value.values() for i in _ids(v)]
    return [i for v in value for i in _ids(v)]


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


def plan(cfg: Config, targets: list[str] | None = None, graph: Graph | None = None) -> tuple[Graph, list[str]]:
    """The instances of ``cfg``'s pipeline: its evaluation and report; ``targets`` (stage names or
    instance ids) narrows what runs to them and what they need. Returns (graph, target ids)."""
    graph = graph or Graph(cfg.work_path)
    planner = Planner(graph, cfg)
    ds = planner.dataset()
    wanted = [planner.node("evaluate", ds=ds, split=splits.parse_split(cfg.evaluation.split),
                           variants=tuple(planner.evaluated_variants(ds)))]
    if cfg.report.enabled and cfg.teachers:
        wanted.append(planner.node("report", ds=ds, split=splits.parse_split(cfg.report.split),
                                   variants=tuple(planner.variants(ds, report_variants(planner, ds)))))
    ids = [n.id for n in wanted]
    if targets:
        ids = graph.select(list(targets))
    return graph, ids


def report_variants(planner: Planner, ds: DatasetRef) -> list[str]:
    """The DiSCo report's rows: the student, each teacher, the fused teachers, the baselines."""
    teachers = planner.teachers(ds)
    names = ["student", *(f"rewrite:{t.name}" for t in teachers)]
    if len(teachers) > 1 and planner.cfg.distill.fusion != "per-teacher":
        names.append(FUSED_TEACHERS)
    return names + ["last_turn", "conversation"]
