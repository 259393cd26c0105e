"""Sweeps: a grid of pipeline configurations ("cells") and the leaderboard of their evaluations.

A sweep file (YAML)::

    name: mtrag-lodo
    config: data/configs/mtrag.yaml        # the base configuration (optional)
    set: {teachers: [{backend: dataset}]}  # overrides for every cell (dotted keys)
    axes:                                  # the cells: the product of the axes
      fold:                                # a named axis: each value is a set of overrides
        govt: {train.data: [{dataset: mtrag, split: "domain:clapnq,cloud,fiqa"}], evaluation.split: "domain:govt"}
        fiqa: {...}
      train.seed: [1, 2, 3]                # a setting axis: its values
    variants: [last_turn, rewrite, student, rrf]   # evaluated in every cell (evaluation.variants)
    fusions: [{name: rrf, method: rrf, variants: [student, rewrite]}]
    baseline: last_turn                    # significance is against this variant, cell by cell
    seeds: train.seed                      # averaged over (mean and std); default: train.seed if an axis
    compare: fold                          # or {axis: fold, reference: govt}: compare-fold.md, each value
                                           # against the reference (default: the first) on dev, paired
                                           # over the other axes (disco_core/sweep_analysis.py)

Every cell is an ordinary cached pipeline, so a repeated sweep runs nothing and a new axis value runs
only its new cells. Leaderboard rows are (axes, variant) with each metric's mean and standard
deviation over the seeds, and a paired t-test against the baseline on the seed-mean per-query scores.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from .config import Config
from .config_files import apply_override, read_yaml, validate
from .errors import ConfigError

SPEC_KEYS = {"name", "config", "set", "axes", "variants", "fusions", "baseline", "seeds", "metrics", "report",
             "compare"}
STUDENTS_ALL = "students:*"  # a variant entry: every student trained in the work dir


@dataclass
class Cell:
    """One configuration of the grid: its axis values and its resolved config."""

    labels: dict[str, str]
    config: Config

    @property
    def name(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.labels.items()) or "default"


@dataclass
class SweepSpec:
    name: str
    path: Path
    base: dict
    axes: dict[str, dict[str, dict]]  # axis -> value label -> overrides
    variants: list[str]
    baseline: str
    seeds: str | None
    metrics: list[str] | None = None
    compare: dict | None = None  # {"axis": ..., "reference": ... or None}
    extra: dict = field(default_factory=dict)


def _set(data: dict, dotted: str, value: Any, where: str) -> None:
    """``data[a][b] = value`` for ``a.b`` (a value, not YAML text)."""
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: {dotted!r}: {key!r} is not a section")
    node[keys[-1]] = copy.deepcopy(value)


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def load_spec(path: str | Path, overrides: list[str] = ()) -> SweepSpec:
    """Read and check a sweep file (``overrides``: ``--set`` for every cell)."""
    path = Path(path)
    raw = read_yaml(path)
    unknown = sorted(set(raw) - SPEC_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; a sweep has {', '.join(sorted(SPEC_KEYS))}")
    base: dict = {}
    if raw.get("config"):
        config = Path(raw["config"])
        config = config if config.exists() or config.is_absolute() else path.parent / config
        base = read_yaml(config)
    for dotted, value in _mapping(raw.get("set"), f"{path}: set").items():
        _set(base, dotted, value, f"{path}: set")
    for assignment in overrides:
        apply_override(base, assignment)
    axes = {}
    for axis, values in _mapping(raw.get("axes"), f"{path}: axes").items():
        if isinstance(values, dict):
            axes[axis] = {str(k): _mapping(v, f"{path}: axes.{axis}.{k}") for k, v in values.items()}
        elif isinstance(values, list):
            axes[axis] = {_label(v): {axis: v} for v in values}
        else:
            raise ConfigError(f"{path}: axes.{axis}: a list of values or a mapping of named override sets")
        if not axes[axis]:
            raise ConfigError(f"{path}: axes.{axis} is empty: the grid has no cell")
    variants = raw.get("variants") or base.get("evaluation", {}).get("variants") or ["last_turn"]
    if not isinstance(variants, list) or not all(isinstance(v, str) for v in variants):
        raise ConfigError(f"{path}: variants must be a list of names")
    seeds = raw.get("seeds", "train.seed" if "train.seed" in axes else None)
    if seeds is not None and seeds not in axes:
        raise ConfigError(f"{path}: seeds: {seeds!r} is not an axis ({', '.join(axes) or 'none'})")
    baseline = raw.get("baseline", variants[0])
    if baseline not in variants:
        raise ConfigError(f"{path}: baseline {baseline!r} is not among the variants {variants}")
    if raw.get("fusions") is not None:
        _set(base, "evaluation.fusions", raw["fusions"], f"{path}: fusions")
    if raw.get("metrics") is not None:
        _set(base, "evaluation.metrics", raw["metrics"], f"{path}: metrics")
    _set(base, "report.enabled", bool(raw.get("report", False)), str(path))
    return SweepSpec(str(raw.get("name") or path.stem), path, base, axes, variants, baseline, seeds,
                     raw.get("metrics"), _compare(raw.get("compare"), axes, path))


def _compare(value: Any, axes: dict, path: Path) -> dict | None:
    """``compare: axis`` or ``{axis: ..., reference: ...}``, checked against the axes."""
    if value is None:
        return None
    compare = {"axis": value, "reference": None} if isinstance(value, str) else _mapping(value, f"{path}: compare")
    unknown = sorted(set(compare) - {"axis", "reference"})
    if unknown or not isinstance(compare.get("axis"), str) or compare["axis"] not in axes:
        raise ConfigError(f"{path}: compare: expected an axis ({', '.join(axes)}) or {{axis: ..., reference: ...}}"
                          f"{f'; unknown key(s) {unknown}' if unknown else ''}")
    reference = compare.get("reference")
    reference = None if reference is None else _label(reference)  # as the axis labels its values
    if reference is not None and reference not in axes[compare["axis"]]:
        raise ConfigError(f"{path}: compare.reference: {reference!r} is not a value of axis {compare['axis']} "
                          f"({', '.join(axes[compare['axis']])})")
    return {"axis": compare["axis"], "reference": reference}


def _label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def expand(spec: SweepSpec, students: list[dict] = ()) -> list[Cell]:
    """Every cell of the grid, validated (a bad value fails here, naming the cell). ``students``:
    provenance of the students ``students:*`` stands for; each cell evaluates those that did not
    train on its evaluation turns."""
    cells = []
    names, choices = list(spec.axes), [list(spec.axes[a].items()) for a in spec.axes]
    for combo in itertools.product(*choices):
        data = copy.deepcopy(spec.base)
        _set(data, "evaluation.variants", spec.variants, str(spec.path))  # a cell may still set its own
        labels = {}
        for axis, (label, overrides) in zip(names, combo):
            labels[axis] = label
            for dotted, value in overrides.items():
                _set(data, dotted, value, f"{spec.path}: axes.{axis}.{label}")
        where = f"{spec.path}: cell {','.join(f'{k}={v}' for k, v in labels.items()) or 'default'}: "
        config = validate(data, where)
        if STUDENTS_ALL in config.evaluation.variants:
            config = _with_students(config, students, where)
        cells.append(Cell(labels, config))
    return cells


def _with_students(config: Config, students: list[dict], where: str) -> Config:
    """``students:*`` replaced by the trained students that may be evaluated on this cell (none: the
    cell evaluates its other variants)."""
    from .students import overlaps

    e = config.evaluation
    usable = [f"student:{p['name']}" for p in students if not overlaps(p, config.dataset.name, e.split)]
    variants = [s for v in e.variants for s in (usable if v == STUDENTS_ALL else [v])]
    return config.model_copy(update={"evaluation": e.model_copy(update={"variants": variants})})
