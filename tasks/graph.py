"""Plans: the stage instances a configuration (or a sweep of them) needs, derived from the stages'
declarations, deduplicated by folder, in an order where every instance follows what it reads.

``Graph`` holds instances across configurations (a sweep's cells share their datasets' stages);
``Planner`` adds one configuration's instances to it. Planning does no work and reads no data, but
it checks names against what exists: datasets, splits, variants, teachers, trained students.
"""

from __future__ import annotations

from pathlib import Path

from disco_core import splits
from disco_core.config import Config
from disco_core.errors import ConfigError
from disco_core.io import short_hash

from .execute import Node
from .planner import Planner, report_variants, slug
from .stage import STAGES, PlanError, keyed_settings


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

    def by_depth(self, nodes: list[Node]) -> list[Node]:
        """``nodes`` (upstream first) re-ordered by depth, stably: what can start at once comes
        before anything that waits. Why: a submitted task waits for its inputs inside a runner
        thread; in insertion order the waiting spine stages held the threads while the second LLM
        teacher queued behind them (a fresh default run rewrote with one teacher at a time)."""
        depth: dict[str, int] = {}
        for node in nodes:  # upstream first, so every need's depth is known (or outside: 0)
            depth[node.id] = 1 + max((depth.get(i, 0) for i in _ids(node.needs)), default=0)
        return sorted(nodes, key=lambda n: depth[n.id])

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


