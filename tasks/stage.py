"""A stage is one declaration; the DAG, cache keys, folders, CLI and flows are derived from it.

    @stage("retrieve", needs=("index", "encode_queries"), result=Retrieved, keys=("retrieval.k",),
           outputs={"run": "run.parquet", "trec": "run.trec"})
    def retrieve(ctx: Context) -> Retrieved: ...          # the build function

    @retrieve.wire                                        # which upstream instances it reads
    def _(plan, ds, variant):
        return {"index": plan.node("index", ds=ds), "queries": plan.node("encode_queries", ds=ds, variant=variant)}

A stage runs as *instances*, one per parameter set (a dataset, a teacher, a query variant, ...):
``retrieve[embedded/last_turn]``. An instance's folder is named by its parameters and a hash of its
settings and upstream folders, so the settings a sweep varies never share a folder, while a code
or data change rebuilds in place. Its cache key (see :mod:`tasks.cache`) is computed: settings from
``keys`` (performance-only fields dropped), models by fingerprint, inputs by content, and the code
its build function reaches (:mod:`tasks.codehash`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from disco_core.config import Config, is_perf
from disco_core.errors import DiscoError

from . import cache

if TYPE_CHECKING:  # annotations only: execute imports this module
    from .execute import Context, Node

STAGES: dict[str, Stage] = {}  # declaration order is the pipeline's order


class Stage:
    """One declaration: name, needs, outputs, keyed settings, build function and typed result."""

    def __init__(self, name: str, build: Callable[[Context], BaseModel], result: type[BaseModel],
                 needs: tuple[str, ...] = (), outputs: dict[str, str] | Callable[..., dict[str, str]] = (),
                 keys: tuple[str, ...] = (), retries: int = 0, measured_inputs: bool = False,
                 description: str | None = None):
        self.name, self.build, self.result, self.needs = name, build, result, tuple(needs)
        self._outputs, self.keys, self.retries = outputs, tuple(keys), retries
        # a stage that shows its inputs' timings (the report) keys on them too
        self.measured_inputs = measured_inputs
        self.description = description or (build.__doc__ or "").strip().splitlines()[0]
        self._wire: Callable[..., dict] = lambda plan, **params: {}
        self._settings: Callable[..., dict] = lambda cfg, **params: {}
        self._models: Callable[..., list] = lambda cfg, **params: []
        self._sources: Callable[..., list] = lambda cfg, **params: []
        self._scope: Callable[..., str] = lambda cfg, **params: params["ds"].scope
        self._label: Callable[..., str] = lambda cfg, **params: "/".join(
            str(v) for k, v in params.items() if k != "ds")
        self._folder: Callable[..., str] | None = None  # a fixed folder (a named artifact) instead
        self.after: Callable[[Config, cache.StageResult], None] | None = None
        self.tracked: Callable[[Node, cache.StageResult], None] | None = None

    # hooks, used as decorators on the declaration
    def wire(self, fn):
        """``fn(plan, **params) -> {name: Node | [Node]}``: the upstream instances it reads."""
        self._wire = fn
        return fn

    def settings(self, fn):
        """``fn(cfg, **params) -> dict``: keyed settings that depend on the parameters."""
        self._settings = fn
        return fn

    def models(self, fn):
        """``fn(cfg, **params) -> [(name, local path or None)]``: models fingerprinted into the key."""
        self._models = fn
        return fn

    def sources(self, fn):
        """``fn(cfg, **params) -> [Path]``: files outside the work dir that it reads."""
        self._sources = fn
        return fn

    def scope(self, fn):
        self._scope = fn
        return fn

    def label(self, fn):
        self._label = fn
        return fn

    def folder(self, fn):
        """``fn(cfg, **params) -> str``: the folder under the work dir, for instances that are named
        artifacts (a student); other instances get ``<scope>/<stage>/<label>-<settings hash>``."""
        self._folder = fn
        return fn

    def publish(self, fn):
        """``fn(cfg, result)``: after the instance (hit or not), e.g. a Prefect artifact."""
        self.after = fn
        return fn

    def track(self, fn):
        """``fn(node, result)``: after the instance built (not on a hit), with ``tracking.enabled``:
        what it logs to the experiment tracker."""
        self.tracked = fn
        return fn

    def outputs(self, cfg: Config, **params) -> dict[str, str]:
        return self._outputs(cfg, **params) if callable(self._outputs) else dict(self._outputs)

    def __repr__(self) -> str:
        return f"Stage({self.name!r})"

    def __reduce__(self):
        # sent by name (to a Dask worker, say): its functions are module code, found again there
        return declared, (self.name,)


def declared(name: str) -> Stage:
    """The declared stage ``name`` (importing ``tasks`` declares them all)."""
    import tasks  # noqa: F401

    return STAGES[name]


def stage(name: str, **declaration: Any) -> Callable[[Callable], Stage]:
    """Declare a stage from its build function (see the module docstring)."""

    def declare(build: Callable) -> Stage:
        if name in STAGES:
            raise ValueError(f"stage {name!r} is declared twice")
        STAGES[name] = Stage(name, build, **declaration)
        return STAGES[name]

    return declare


def measured(default: Any = None, **kwargs: Any) -> Any:
    """A result field that is a measurement (a timing): downstream keys ignore it, except those of
    stages that show it (``measured_inputs``)."""
    return Field(default, json_schema_extra={"measured": True}, **kwargs)


# ------------------------------------------------------------------ settings slices
def plain(value: Any) -> Any:
    """A config value as JSON data for a key: sections without their performance-only fields."""
    if isinstance(value, BaseModel):
        return {k: plain(getattr(value, k)) for k in type(value).model_fields if not is_perf(type(value), k)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def config_value(cfg: Config, dotted: str) -> Any:
    value: Any = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def keyed_settings(cfg: Config, keys: tuple[str, ...]) -> dict:
    return {k: plain(config_value(cfg, k)) for k in keys}


class PlanError(DiscoError):
    """A plan that cannot be built (an unknown stage, a cycle)."""
