"""Persistence of finished rewrites, and the loop every generating backend runs under.

Generating backends hand each finished rewrite to a callback as it arrives; :func:`run_rewriter`
appends it to a :class:`RewriteJournal` (fsync'd JSONL), so a failure or a kill loses nothing and a
rerun resumes with the turns still missing. The same loop serves every backend: the resume and
retry behaviour does not depend on which engine writes the rewrites.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from ..io import short_hash
from .base import FIRST_TURN, Rewriter, Row


class RewriteJournal:
    """Finished rewrites, one JSON line each, flushed and fsync'd as they arrive.

    A kill can at worst leave a torn last line, which ``load`` ignores (that turn is redone)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def load(self) -> dict[str, Row]:
        done: dict[str, Row] = {}
        if not self.path.exists():
            return done
        self._drop_torn_tail()
        with self.path.open("r", encoding="utf-8") as handle:
            for line in handle:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn write from a kill
                done[row["query_id"]] = row
        return done

    def _drop_torn_tail(self) -> None:
        """Cut a torn last line (no newline: a kill mid-write), so the next append starts a line."""
        with self.path.open("rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if not size:
                return
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return
            keep = size
            while keep > 0:  # back to the last newline, a block at a time
                start = max(0, keep - 65536)
                handle.seek(start)
                block = handle.read(keep - start)
                cut = block.rfind(b"\n")
                if cut >= 0:
                    keep = start + cut + 1
                    break
                keep = start
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())

    def append(self, row: Row) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)


def run_rewriter(rewriter: Rewriter, turns: Sequence[dict], journal: RewriteJournal | None = None) -> list[Row]:
    """Rewrite the turns the journal lacks, journaling each as it arrives; return all rows.

    A journaled row counts for its turn only while the turn reads the same (``input``: a hash of
    the utterance and history); each keeps ``seconds``, the wall time since the previous arrival
    (model loading excluded), so the time per turn survives a resume. Without a journal (rewrites
    read, not written: dataset and file teachers) the rows are just collected. A generating
    backend with ``first_turns = "as-written"`` gets no first turn: those keep the user's words,
    status ``first-turn``, ``seconds`` None."""
    inputs = {t["query_id"]: short_hash([t["utterance"], t["history"]]) for t in turns}
    done = {q: r for q, r in (journal.load() if journal else {}).items() if r.get("input") == inputs.get(q)}
    if rewriter.generates and rewriter.first_turns == "as-written":
        done.update({t["query_id"]: {"query_id": t["query_id"], "text": t["utterance"], "status": FIRST_TURN,
                                     "input": inputs[t["query_id"]], "seconds": None}
                     for t in turns if not t["history"]})
    todo = [t for t in turns if t["query_id"] not in done]
    if not todo:
        return [done[t["query_id"]] for t in turns]
    lock = threading.Lock()
    rewriter.prepare()
    last = [time.perf_counter()]

    def keep(row: Row) -> None:
        with lock:
            now = time.perf_counter()
            row = {**row, "input": inputs[row["query_id"]], "seconds": round(now - last[0], 6)}
            last[0] = now
            if journal:
                journal.append(row)
            done[row["query_id"]] = row

    rewriter.rewrite(todo, keep)
    return [done[t["query_id"]] for t in turns if t["query_id"] in done]
