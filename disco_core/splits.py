"""Splits: which conversations of a dataset a stage trains or evaluates on, as data.

A split is a string, parsed and checked before any work:

``all``                 every conversation;
``test``                the held-out conversations: a deterministic hash order of the conversation
                        ids (seeded), the first ``test_fraction`` of it (DiSCo's report);
``train``               every conversation not in ``test``;
``domain:a,b``          the conversations of these domains (MTRAG: ``clapnq``, ``cloud``, ``fiqa``,
                        ``govt``), e.g. train on three and test zero-shot on the fourth.

Training can set a ``dev`` part aside from its split (``train.dev_fraction``) to select the
checkpoint: the same hash order, seeded apart from the test split, so dev never overlaps test.
Both training and evaluation import this module: a change here reruns both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import ConfigError

RANDOM_SPLITS = ("test", "train")


@dataclass(frozen=True)
class Split:
    """A parsed split: ``kind`` is ``all``, ``test``, ``train`` or ``domain`` (with ``domains``)."""

    kind: str
    domains: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """A short name, safe in a folder name."""
        return "domain-" + "-".join(self.domains) if self.kind == "domain" else self.kind

    def __str__(self) -> str:
        return "domain:" + ",".join(self.domains) if self.kind == "domain" else self.kind


def parse_split(text: str, setting: str | None = None) -> Split:
    """``all``, ``test``, ``train`` or ``domain:a,b``; anything else is a :class:`ConfigError`
    (its message starts with ``setting:`` when given)."""
    where = f"{setting}: " if setting else ""
    if not isinstance(text, str):
        raise ConfigError(f"{where}a split is a string (all, test, train or domain:a,b), not {text!r}")
    text = text.strip()
    if text in ("all", *RANDOM_SPLITS):
        return Split(text)
    if text.startswith("domain:"):
        domains = tuple(sorted({d.strip() for d in text[len("domain:"):].split(",") if d.strip()}))
        if not domains:
            raise ConfigError(f"{where}{text!r} names no domain")
        return Split("domain", domains)
    raise ConfigError(f"{where}unknown split {text!r}; use all, test, train or domain:a,b")


def hash_order(ids: Iterable[str], seed: object) -> list[str]:
    """Unique ids in a deterministic pseudo-random order (a seeded hash, not Python's ``hash``)."""
    return sorted(set(ids), key=lambda c: hashlib.sha256(f"{seed}:{c}".encode()).hexdigest())


def held_out(conversation_ids: Iterable[str], test_fraction: float, seed: int) -> set[str]:
    """The ``test`` conversations: the first ``test_fraction`` of the seeded hash order (at least one)."""
    ranked = hash_order(conversation_ids, seed)
    return set(ranked[: max(1, round(len(ranked) * test_fraction))])


def select(split: Split, turns: list[dict], test_fraction: float, seed: int) -> set[str]:
    """The conversation ids of ``split`` among ``turns`` (rows with ``conversation_id``, ``domain``)."""
    conversations = {t["conversation_id"] for t in turns}
    if split.kind == "all":
        return conversations
    if split.kind == "domain":
        return {t["conversation_id"] for t in turns if t.get("domain") in split.domains}
    test = held_out(conversations, test_fraction, seed)
    return test if split.kind == "test" else conversations - test


def set_aside(conversation_ids: Iterable[str], fraction: float, seed: int) -> tuple[set[str], set[str]]:
    """``(rest, dev)``: ``fraction`` of the conversations set aside for checkpoint selection."""
    ids = set(conversation_ids)
    if fraction <= 0:
        return ids, set()
    ranked = hash_order(ids, f"dev:{seed}")
    dev = set(ranked[: max(1, round(len(ranked) * fraction))])
    return ids - dev, dev


def turns_in(turns: list[dict], conversations: set[str]) -> list[dict]:
    return [t for t in turns if t["conversation_id"] in conversations]


def overlap(a: Split, b: Split) -> bool:
    """Whether two splits of one dataset can share a conversation (``train``/``test`` never do;
    domains when they share one; a domain split and a random one may)."""
    if a.kind == "domain" and b.kind == "domain":
        return bool(set(a.domains) & set(b.domains))
    return {a.kind, b.kind} != {"train", "test"}
