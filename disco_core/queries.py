"""Query variants: which text stands for a turn when it is searched.

``last_turn``      the user's utterance alone;
``conversation``   the whole conversation, formatted for the student (:mod:`disco_core.conversation`);
``rewrite``        the dataset's default rewrite teacher (``human`` where people wrote rewrites);
``rewrite:<name>`` the rewrites of teacher ``<name>``.
A turn without a rewrite from the teacher asked for is absent from that variant (it then scores 0
if it is judged; the report counts such turns).
"""

from __future__ import annotations

import pyarrow as pa

from . import schemas
from .conversation import ConversationFormatter
from .errors import ConfigError

BASE_VARIANTS = ("last_turn", "conversation")


def resolve_variant(variant: str, default_teacher: str) -> str:
    if variant in BASE_VARIANTS or variant.startswith("rewrite:"):
        return variant
    if variant == "rewrite":
        return f"rewrite:{default_teacher}"
    raise ConfigError(f"unknown query variant {variant!r}: use last_turn, conversation, rewrite or rewrite:<teacher>")


def build_queries(turns: pa.Table, rewrites: pa.Table, variants: list[str],
                  formatter: ConversationFormatter) -> pa.Table:
    """The ``queries`` table for resolved variant names."""
    rows: list[dict] = []
    turn_rows = turns.to_pylist()
    for variant in variants:
        if variant == "last_turn":
            rows += [{"variant": variant, "query_id": t["query_id"], "text": t["utterance"]} for t in turn_rows]
        elif variant == "conversation":
            texts = formatter.format_many(turn_rows)
            rows += [{"variant": variant, "query_id": t["query_id"], "text": x} for t, x in zip(turn_rows, texts)]
        else:
            teacher = variant.split(":", 1)[1]
            table = rewrites.filter(pa.compute.equal(rewrites["teacher"], teacher))
            if table.num_rows == 0:
                known = sorted(set(rewrites["teacher"].to_pylist()))
                raise ConfigError(f"no rewrites from teacher {teacher!r}; available: {known}")
            by_query = dict(zip(table["query_id"].to_pylist(), table["text"].to_pylist()))
            rows += [{"variant": variant, "query_id": t["query_id"], "text": by_query[t["query_id"]]}
                     for t in turn_rows if t["query_id"] in by_query]
    return schemas.to_table("queries", rows)
