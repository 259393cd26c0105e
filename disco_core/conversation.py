"""The student's input: the conversation, newest first, joined by the tokenizer's separator.

``q_n [SEP] a_{n-1} [SEP] q_{n-1} [SEP] q_{n-2} ... q_1`` (DiSCo, ``answers="last"``): the current
user turn, the previous agent answer, then the earlier user turns from newest to oldest.
``answers="all"`` keeps every answer after its question's successor (``q_n a_{n-1} q_{n-1}
a_{n-2} q_{n-2} ...``); ``answers="none"`` keeps user turns only.

Truncation to ``max_length`` tokens drops the oldest turns first, so the recent context survives;
if the current turn, the previous answer and the previous question still do not fit, the previous
answer is cut at a token boundary, and then the previous turn is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Segment:
    text: str
    age: int  # 0 = current turn, 1 = previous turn, ...
    speaker: str


def conversation_segments(utterance: str, history: Sequence[dict], answers: str = "last") -> list[Segment]:
    """Segments newest first. ``history`` is oldest first: ``[{"speaker", "text"}, ...]``."""
    if answers not in ("last", "all", "none"):
        raise ValueError(f"answers must be last, all or none, not {answers!r}")
    # Group the history into turns: each user message opens a turn, agent messages attach to it.
    turns: list[tuple[str | None, list[str]]] = []
    for message in history:
        if message["speaker"] == "user":
            turns.append((message["text"], []))
        elif turns:
            turns[-1][1].append(message["text"])
        else:  # an agent message before any user message (a greeting): its own turn
            turns.append((None, [message["text"]]))
    segments = [Segment(utterance, 0, "user")]
    for age, (question, replies) in enumerate(reversed(turns), start=1):
        if replies and (answers == "all" or (answers == "last" and age == 1)):
            segments.append(Segment(" ".join(r.strip() for r in replies), age, "agent"))
        if question is not None:
            segments.append(Segment(question, age, "user"))
    return [s for s in segments if s.text.strip()]


class ConversationFormatter:
    """Format turns for a given tokenizer and length (``tokenizer=None``: no truncation, ``[SEP]``)."""

    def __init__(self, tokenizer=None, max_length: int | None = None, answers: str = "last"):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.answers = answers
        self.sep = f" {tokenizer.sep_token} " if tokenizer is not None and tokenizer.sep_token else " [SEP] "

    def __call__(self, utterance: str, history: Sequence[dict]) -> str:
        segments = conversation_segments(utterance, history, self.answers)
        if self.tokenizer is not None and self.max_length is not None:
            segments = self._fit(segments)
        return self.sep.join(s.text.strip() for s in segments)

    def format_many(self, rows: Iterable[dict]) -> list[str]:
        return [self(row["utterance"], row["history"]) for row in rows]

    def _lengths(self, segments: list[Segment]) -> list[int]:
        encoded = self.tokenizer([s.text.strip() for s in segments], add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def _fit(self, segments: list[Segment]) -> list[Segment]:
        sep_len = len(self.tokenizer(self.sep.strip(), add_special_tokens=False)["input_ids"])
        budget = self.max_length - self.tokenizer.num_special_tokens_to_add(pair=False)
        lengths = self._lengths(segments)

        def size(n: int) -> int:  # tokens used by the first n segments
            return sum(lengths[:n]) + sep_len * (n - 1)

        keep = len(segments)
        # 1. Drop whole turns, oldest first, down to the current and the previous turn.
        while keep > 1 and size(keep) > budget and segments[keep - 1].age > 1:
            oldest = segments[keep - 1].age
            while keep > 1 and segments[keep - 1].age == oldest:
                keep -= 1
        segments, lengths = segments[:keep], lengths[:keep]
        if size(keep) <= budget:
            return segments
        # 2. Cut the previous answer at a token boundary to make room.
        for i, seg in enumerate(segments):
            if seg.age == 1 and seg.speaker == "agent":
                room = lengths[i] - (size(keep) - budget)
                if room > 0:
                    enc = self.tokenizer(seg.text.strip(), add_special_tokens=False, return_offsets_mapping=True)
                    end = enc["offset_mapping"][room - 1][1]
                    segments[i] = Segment(seg.text.strip()[:end], seg.age, seg.speaker)
                    return segments
        # 3. Only the current turn is left; the encoder's truncation cuts it if it is still too long.
        return [s for s in segments if s.age == 0]
