"""The rewriter interface every backend implements, and its error."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from ..errors import DiscoError

Row = dict  # {"query_id", "text", "status"}
FIRST_TURN = "first-turn"  # the status of a first turn kept as the user wrote it (no LLM call)


class RewriterError(DiscoError):
    """A rewriter backend failed (server unreachable, model missing); finished rewrites are kept."""


class Rewriter(ABC):
    """``rewrite(turns, on_result)``: call ``on_result({"query_id", "text", "status"})`` per turn.

    A backend calls ``on_result`` as each rewrite is finished (from any thread), so the caller can
    journal it at once; a failure raises :class:`RewriterError` after every finished turn was
    handed over."""

    teacher: str
    model: str | None = None
    prompt_hash: str | None = None
    llm_calls_per_turn: int = 1
    generates = True  # writes its rewrites now (worth journaling), rather than reading them
    # a generating backend's first turns (no conversation before them): "as-written" keeps the
    # user's words with no LLM call, there being nothing to resolve; "rewrite" asks the LLM too
    first_turns: str = "rewrite"

    @abstractmethod
    def rewrite(self, turns: Sequence[dict], on_result: Callable[[Row], None]) -> None: ...

    def prepare(self) -> None:
        """Load what the first rewrite needs (kept out of the measured rewriting time)."""

    def close(self) -> None:
        """Free what ``prepare`` took (an engine's memory, a server process). Idempotent."""

    def settings(self) -> dict:
        """What identifies this teacher's outputs (for cache keys)."""
        return {"teacher": self.teacher, "model": self.model, "prompt_hash": self.prompt_hash}
