"""The layers, as the developers' notes state them: ``disco_core`` is a plain library (no Prefect
import, no import cycle); ``tasks`` holds no module over about 250 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_imports(path: Path, package: str) -> set[str]:
    """Modules a file imports at module level (what runs on import), absolute names."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                names.add(sub if module_path(sub) else base)
    return names


def module_path(name: str) -> Path | None:
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def library_modules() -> dict[str, Path]:
    out = {}
    for path in (ROOT / "disco_core").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def test_the_library_never_imports_prefect():
    for name, path in library_modules().items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(m == "prefect" or m.startswith("prefect.") for m in mods), f"{path} imports Prefect"


def test_no_import_cycle_in_the_library():
    modules = library_modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = {m for m in module_imports(path, package) if m in modules and m != name}
    # a package's __init__ importing its submodules is not a cycle of theirs: drop package -> child edges
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_pipeline_modules_stay_short():
    long = {p.name: n for p in (ROOT / "tasks").glob("*.py") if (n := len(p.read_text().splitlines())) > 260}
    assert not long, long
