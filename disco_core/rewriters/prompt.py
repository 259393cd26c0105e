"""The rewriting prompt, shared by every generating backend, and the cleaning of what comes back.

The prompt (hashed into ``prompt_hash``): a system instruction, three few-shot conversations written
for this project, then the conversation to rewrite (its last ``history_turns`` turns, answers cut to
``answer_chars`` characters) and its last question. Instruction-tuned models get it as chat messages
(rendered by the model's chat template); base models as one plain-text continuation
(:func:`completion_prompt`). Either way everything before the conversation to rewrite is the same for
every turn, which is what lets the engines compute it once (prefix / KV caching).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..io import short_hash

SYSTEM_PROMPT = (
    "You rewrite the last question of a conversation so that it can be understood on its own. "
    "Replace pronouns and vague references with the names they refer to, keep the user's intent and "
    "wording, and do not answer the question. Reply with the rewritten question only, on one line."
)
FEW_SHOT = [
    (
        [("user", "What is the Meridian Tunnel?"),
         ("agent", "The Meridian Tunnel is a rail tunnel under the Kessel Strait, opened in 1931.")],
        "how long is it?",
        "How long is the Meridian Tunnel under the Kessel Strait?",
    ),
    (
        [("user", "Who wrote the novel Grey Harbour?"), ("agent", "Grey Harbour was written by Ilse Marten."),
         ("user", "What else did she write?"), ("agent", "She also wrote The Salt Road and Winter Mill.")],
        "was the second one adapted for film?",
        "Was Ilse Marten's novel Winter Mill adapted for film?",
    ),
    (
        [("user", "Can I deduct home office costs from my taxes?"),
         ("agent", "Yes, if the office is used regularly and exclusively for work.")],
        "and internet bills?",
        "Can I deduct internet bills from my taxes as home office costs?",
    ),
]
PROMPT_VERSION = 1


def render_conversation(history: Sequence, question: str, history_turns: int = 3, answer_chars: int = 400) -> str:
    """The conversation as the LLM sees it: the last ``history_turns`` user turns with answers."""
    pairs = [(m[0], m[1]) if isinstance(m, tuple) else (m["speaker"], m["text"]) for m in history]
    starts = [i for i, (speaker, _) in enumerate(pairs) if speaker == "user"]
    if len(starts) > history_turns:
        pairs = pairs[starts[-history_turns]:]
    lines = []
    for speaker, text in pairs:
        text = " ".join(text.split())
        if speaker == "agent" and len(text) > answer_chars:
            text = text[:answer_chars].rsplit(" ", 1)[0] + " ..."
        lines.append(f"{'User' if speaker == 'user' else 'Assistant'}: {text}")
    lines.append(f"User: {' '.join(question.split())}")
    return "Conversation:\n" + "\n".join(lines) + "\n\nRewrite the last user question:"


def chat_messages(history: Sequence, question: str, history_turns: int = 3, answer_chars: int = 400) -> list[dict]:
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for shot_history, shot_question, shot_rewrite in FEW_SHOT:
        messages.append({"role": "user", "content": render_conversation(shot_history, shot_question)})
        messages.append({"role": "assistant", "content": shot_rewrite})
    messages.append({"role": "user", "content": render_conversation(history, question, history_turns, answer_chars)})
    return messages


def completion_prompt(history: Sequence, question: str, history_turns: int = 3, answer_chars: int = 400) -> str:
    """For base (not instruction-tuned) models: the same few shots as a plain text continuation."""
    parts = [SYSTEM_PROMPT, ""]
    for shot_history, shot_question, shot_rewrite in FEW_SHOT:
        parts += [render_conversation(shot_history, shot_question), shot_rewrite, ""]
    parts.append(render_conversation(history, question, history_turns, answer_chars))
    return "\n".join(parts)


_PREFIX = re.compile(r"^\s*(rewritten question|rewritten|rewrite|question|standalone question)\s*:\s*", re.I)


def clean_rewrite(raw: str, utterance: str) -> tuple[str, str]:
    """``(text, status)``: first non-empty line, without a label prefix or surrounding quotes."""
    lines = [line.strip() for line in (raw or "").strip().splitlines() if line.strip()]
    if not lines:
        return utterance, "empty"
    status = "multiline" if len(lines) > 1 else "ok"
    text = _PREFIX.sub("", lines[0])
    text = text.strip().strip('"“”\'`').strip()
    if text != lines[0] and status == "ok":
        status = "cleaned"
    if not text:
        return utterance, "empty"
    return text, status


def answer_is_settled(raw: str) -> bool:
    """True once more output cannot change :func:`clean_rewrite`: a first non-empty line has ended
    and a second one has begun (the rewrite is that first line, its status ``multiline``).

    Generating backends stop a sequence there: the same rewrite and status for fewer tokens (a base
    model would go on writing the next few-shot conversation). A trailing U+FFFD (half of a
    multi-byte character) does not count as a character yet."""
    return sum(1 for line in raw.rstrip("\ufffd").splitlines() if line.strip()) >= 2


def prompt_hash(**generation: object) -> str:
    payload = {"system": SYSTEM_PROMPT, "few_shot": FEW_SHOT, "version": PROMPT_VERSION, **generation}
    return short_hash(payload)
