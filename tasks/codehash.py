"""The code part of a stage's cache key: computed from the build function, never listed by hand.

A stage depends on
- the source of its build function and of the functions of its own module that it calls, and
- every project module (``disco_core``, ``tasks``, ``flows``) those functions use, closed over the
  imports of each module (module-level and inside functions, relative or absolute).
So an edit to ``disco_core/splits.py`` reruns exactly the stages whose code reaches it, however
indirectly, and an edit to one stage's build function in a shared ``tasks`` module reruns that
stage alone. Modules are read from disk as bytes (not ``inspect``'s line cache), so an edit to a
library module made while a process runs is seen by its next stage; build functions are hashed as
they were loaded.
"""

from __future__ import annotations

import ast
import dis
import functools
import hashlib
import importlib.util
import inspect
import sys
import threading
import types
from collections.abc import Callable, Iterable
from pathlib import Path

PROJECT = ("disco_core", "tasks", "flows")
# CPython 3.11's ast.parse is not thread-safe (gh-106905: "AST constructor recursion depth
# mismatch" when stages hash their code in two threads at once; seen in a test run here).
_PARSE = threading.Lock()


def _in_project(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in PROJECT


def _module_file(name: str) -> Path | None:
    module = sys.modules.get(name)
    origin = getattr(module, "__file__", None)
    if origin is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, AttributeError, ValueError):  # ``pkg.module.Attribute``: not a module
            return None
        origin = spec.origin if spec else None
    return Path(origin) if origin and origin.endswith(".py") else None


@functools.lru_cache(maxsize=None)
def _parsed_imports(name: str, source: bytes) -> tuple[str, ...]:
    """Project modules a module's source imports anywhere (cached per source version): ``import
    a.b``, ``from a import b`` (the submodule ``a.b``, or ``a`` itself when ``b`` is a name in it)."""
    path = _module_file(name)
    package = name if path and path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    with _PARSE:
        tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if _module_file(f"{base}.{alias.name}") else base)
    return tuple(sorted(m for m in found if _in_project(m) and _module_file(m)))


def _parents(name: str) -> list[str]:
    """A module's packages: importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def module_closure(roots: Iterable[str]) -> dict[str, bytes]:
    """Every project module reachable from ``roots`` through imports: name -> source bytes.

    A package's ``__init__`` that is only passed through (``from pkg import module``) counts by its
    own text, not by everything it imports: ``disco_core.datasets`` imports every dataset module,
    yet a stage that uses the registry alone does not depend on them."""
    seen: dict[str, bytes] = {}
    todo = [m for m in roots if _in_project(m)]
    passed: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            continue
        seen[name] = path.read_bytes()
        todo += [m for m in _parsed_imports(name, seen[name]) if m not in seen]
        passed.update(p for p in _parents(name) if p not in seen)
    for name in passed - set(seen):
        path = _module_file(name)
        if path is not None:
            seen[name] = path.read_bytes()
    return seen


def _referenced(fn: Callable) -> tuple[list[Callable], set[str]]:
    """The pipeline functions ``fn`` calls (``tasks``/``flows``, transitively, itself included),
    and the library modules their code names (modules, or the modules of the classes and
    functions it uses). A pipeline module is followed function by function, so a stage does not
    depend on the other stages declared beside it."""
    functions: list[Callable] = []
    modules: set[str] = set()
    todo = [fn]
    while todo:
        f = inspect.unwrap(todo.pop())
        f = getattr(f, "fn", f)  # a Prefect task: its function
        if f in functions or not isinstance(f, types.FunctionType):
            continue
        functions.append(f)
        for name in _globals(f.__code__):
            value = f.__globals__.get(name)
            module = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
            if isinstance(value, types.FunctionType) and _pipeline(module):
                todo.append(value)
            elif _in_project(module) and not _pipeline(module):
                modules.add(module)
    return functions, modules


def _pipeline(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in ("tasks", "flows")


def _globals(code: types.CodeType) -> set[str]:
    """Global names a function's code loads (not attribute names, which share ``co_names``)."""
    names = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _globals(const)
    return names


def code_digest(fn: Callable, extra_modules: Iterable[str] = ()) -> tuple[str, list[str]]:
    """``(digest, modules)`` for a build function: its source, the same-module functions it calls,
    and the closure of the project modules they use (plus ``extra_modules``)."""
    functions, modules = _referenced(fn)
    closure = module_closure([*modules, *extra_modules])
    digest = hashlib.sha256()
    for f in sorted(functions, key=lambda f: f.__qualname__):
        digest.update(f"{f.__module__}.{f.__qualname__}\0".encode() + inspect.getsource(f).encode())
    for name in sorted(closure):
        digest.update(f"\0{name}\0".encode() + closure[name])
    return digest.hexdigest(), sorted(closure)
