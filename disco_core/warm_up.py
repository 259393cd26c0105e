"""Warm-up: teach a new SPLADE student the teacher's query vectors before DiSCo distillation.

The teacher (splade-tiny, the frozen document encoder) encodes every text once; the student is
trained so that its SPLADE weights ``w = log1p(relu(z))`` (``z``: max-pooled logits) match them:

    loss = sum_j (w_j - t_j)^2                                   MSE over the vocabulary
         + revive_weight   * sum_{j: t_j > 0}  relu(margin - z_j)  terms the teacher uses
         + suppress_weight * sum_{j: t_j = 0}  relu(z_j)           terms it does not

(means over texts). The MSE alone cannot match the sparsity pattern: a term the student has
switched off (``z <= 0``) gets no gradient through ``relu``, and a small false weight gets a
vanishing one. Measured on the embedded dataset (docs/student_capacity.md): MSE alone leaves the
student at half the teacher's non-zeros, MSE + revive at twice them; the two hinges together
balance them. Batches are drawn from a seeded plan, so a run is reproducible given its seed; a
checkpoint every ``checkpoint_every`` steps (weights, optimizer, RNG state) lets a killed run
resume and end with the same weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

import torch

from .encoder import SpladeEncoder
from .io import atomic_path
from .progress import progress as show_progress
from .vectors import load_vectors, save_vectors

log = logging.getLogger(__name__)

RESULT_FILE = "warm_up.json"


@dataclass(frozen=True)
class WarmUpSettings:
    steps: int | None = None  # total optimizer steps (None: ``epochs`` passes over the texts)
    epochs: float = 2.0
    learning_rate: float = 5e-4  # of 1e-4 and 5e-4, 5e-4 matched better in one epoch (measured)
    batch_size: int = 32
    max_length: int = 256
    seed: int = 13
    revive_weight: float = 1.0
    margin: float = 1.0
    suppress_weight: float = 1.0
    warmup_fraction: float = 0.05  # linear learning-rate warm-up, then linear decay to 0
    checkpoint_every: int = 100
    token_budget: int = 2048  # padded tokens per forward pass (bounds memory; the batch is accumulated)
    threads: int | None = None

    def total_steps(self, n_texts: int) -> int:
        return self.steps if self.steps is not None else max(1, math.ceil(self.epochs * n_texts / self.batch_size))


def matching_loss(logits: torch.Tensor, teacher: torch.Tensor, revive_weight: float = 1.0,
                  margin: float = 1.0, suppress_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """``logits``: the student's ``(batch, vocab)`` max-pooled logits; ``teacher``: SPLADE weights."""
    weights = torch.log1p(torch.relu(logits))
    active = teacher > 0
    mse = (weights - teacher).pow(2).sum(dim=-1).mean()
    revive = (torch.relu(margin - logits) * active).sum(dim=-1).mean()
    suppress = (torch.relu(logits) * ~active).sum(dim=-1).mean()
    return {"loss": mse + revive_weight * revive + suppress_weight * suppress, "mse": mse, "revive": revive,
            "suppress": suppress}


def compare_vectors(student: sp.csr_matrix, teacher: sp.csr_matrix) -> dict[str, float]:
    """Mean per-text cosine, non-zeros of each side, and the share of the teacher's terms the
    student also uses (recall) and of the student's the teacher uses (precision)."""
    s, t = sp.csr_matrix(student), sp.csr_matrix(teacher)
    dot = np.asarray(s.multiply(t).sum(axis=1)).ravel()
    norms = np.sqrt(np.asarray(s.multiply(s).sum(axis=1)).ravel() * np.asarray(t.multiply(t).sum(axis=1)).ravel())
    shared = np.asarray((s > 0).multiply(t > 0).sum(axis=1)).ravel()
    ns, nt = s.getnnz(axis=1), t.getnnz(axis=1)
    return {"cosine": float(np.mean(np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0))),
            "nnz_student": float(ns.mean()), "nnz_teacher": float(nt.mean()),
            "term_recall": float(np.mean(np.divide(shared, nt, out=np.zeros_like(dot), where=nt > 0))),
            "term_precision": float(np.mean(np.divide(shared, ns, out=np.zeros_like(dot), where=ns > 0)))}


def batch_plan(lengths: Sequence[int], batch_size: int, steps: int, seed: int) -> list[np.ndarray]:
    """``steps`` batches of text indices: each epoch a seeded shuffle, cut into pools of 16
    batches sorted by length (little padding), the batches then shuffled."""
    n, plan, epoch = len(lengths), [], 0
    lengths = np.asarray(lengths)
    while len(plan) < steps:
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(n)
        batches = []
        for start in range(0, n, batch_size * 16):
            pool = order[start : start + batch_size * 16]
            pool = pool[np.argsort(-lengths[pool], kind="stable")]
            batches += [pool[i : i + batch_size] for i in range(0, len(pool), batch_size)]
        plan += [batches[i] for i in rng.permutation(len(batches))]
        epoch += 1
    return plan[:steps]


def teacher_vectors(texts: Sequence[str], teacher: str, max_length: int, cache: Path | None) -> sp.csr_matrix:
    """The teacher's SPLADE vectors of ``texts``, kept in ``cache`` (reused when the texts, the
    teacher and the length match)."""
    key = hashlib.sha256(json.dumps([teacher, max_length, list(texts)]).encode()).hexdigest()[:16]
    path = cache / f"teacher-{key}.npz" if cache else None
    if path is not None and path.exists():
        return load_vectors(path)[0]
    matrix = SpladeEncoder(teacher, max_length=max_length).encode(texts, desc="warm-up: teacher vectors")
    if path is not None:
        save_vectors(path, matrix, [str(i) for i in range(len(texts))])
    return matrix


def warm_up(student_dir: str | Path, texts: Sequence[str], out_dir: str | Path, teacher: str = "splade-tiny",
            settings: WarmUpSettings | None = None, work_dir: str | Path | None = None,
            stop_after: int | None = None, provenance: dict | None = None, **overrides) -> Path | None:
    """Train ``student_dir`` (a masked-LM folder, e.g. from :func:`~disco_core.student_init.mlm_from_encoder`)
    to match ``teacher``'s SPLADE vectors on ``texts``; write the result to ``out_dir`` (a folder
    ``AutoModelForMaskedLM`` loads, with ``warm_up.json``: settings, loss history, time) and return it.

    ``settings`` or keyword overrides (``steps``, ``epochs``, ``learning_rate``, ``batch_size``,
    ``max_length``, ``seed``, ...): see :class:`WarmUpSettings`. ``work_dir`` (default
    ``<out_dir>.warm-up``) holds the teacher's vectors and the checkpoint; a rerun resumes there,
    and it is removed once ``out_dir`` is written. ``stop_after``: run at most this many steps now
    and return None (the next call resumes). ``provenance``: recorded in ``warm_up.json`` (the data)."""
    s = settings or WarmUpSettings()
    s = WarmUpSettings(**{**asdict(s), **overrides})
    if s.threads:
        torch.set_num_threads(s.threads)
    out = Path(out_dir)
    work = Path(work_dir) if work_dir else out.with_name(out.name + ".warm-up")
    work.mkdir(parents=True, exist_ok=True)
    targets = teacher_vectors(texts, teacher, s.max_length, work)
    student = SpladeEncoder(str(student_dir), max_length=s.max_length)
    student.model.train()
    lengths = [len(x) for x in student.tokenizer(list(texts), truncation=True, max_length=s.max_length)["input_ids"]]
    total = s.total_steps(len(texts))
    plan = batch_plan(lengths, s.batch_size, total, s.seed)
    torch.manual_seed(s.seed)
    optimizer = torch.optim.AdamW(student.model.parameters(), lr=s.learning_rate, weight_decay=0.01)
    step, history, seconds = _resume(work, student.model, optimizer)
    limit = total if stop_after is None else min(total, step + stop_after)
    started = time.monotonic()
    with show_progress(total, "warm-up", unit="steps", initial=step) as bar:
        while step < limit:
            _set_lr(optimizer, s, step, total)
            record = _accumulate(student, texts, targets, plan[step], lengths, s)
            torch.nn.utils.clip_grad_norm_(student.model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            history.append({"step": step, **record})
            bar.update(1, loss=history[-1]["loss"])
            if step % s.checkpoint_every == 0 or step == total:
                _checkpoint(work, student.model, optimizer, step, history, seconds + time.monotonic() - started)
    seconds += time.monotonic() - started
    if step < total:
        _checkpoint(work, student.model, optimizer, step, history, seconds)
        return None
    return _save(out, student, work, {
        "teacher": teacher, "student": str(student_dir), "settings": asdict(s), "texts": len(texts),
        "steps": step, "seconds": round(seconds, 1), "texts_per_second": round(step * s.batch_size / max(seconds, 1e-9), 2),
        "history": history, **(provenance or {})})


def _accumulate(student: SpladeEncoder, texts: Sequence[str], targets: sp.csr_matrix, batch: np.ndarray,
                lengths: Sequence[int], s: WarmUpSettings) -> dict[str, float]:
    """Gradients of one batch, in parts of at most ``token_budget`` padded tokens (the
    ``tokens x vocab`` logits of 32 long conversations would take gigabytes); the batch's loss."""
    total: dict[str, float] = {}
    for part in micro_batches(batch, lengths, s.token_budget):
        logits = student.logits([texts[i] for i in part])
        loss = matching_loss(logits, torch.from_numpy(targets[part].toarray()), s.revive_weight, s.margin,
                             s.suppress_weight)
        share = len(part) / len(batch)
        (loss["loss"] * share).backward()
        for k, v in loss.items():
            total[k] = total.get(k, 0.0) + float(v.detach()) * share
    return {k: round(v, 5) for k, v in total.items()}


def micro_batches(batch: np.ndarray, lengths: Sequence[int], token_budget: int) -> list[np.ndarray]:
    """Consecutive parts of ``batch`` whose padded size (texts x longest) fits ``token_budget``
    (a text longer than the budget goes alone)."""
    parts, start = [], 0
    while start < len(batch):
        end, longest = start + 1, lengths[batch[start]]
        while end < len(batch) and (end - start + 1) * max(longest, lengths[batch[end]]) <= token_budget:
            longest = max(longest, lengths[batch[end]])
            end += 1
        parts.append(batch[start:end])
        start = end
    return parts


def _set_lr(optimizer, s: WarmUpSettings, step: int, total: int) -> None:
    warm = max(1, int(total * s.warmup_fraction))
    scale = (step + 1) / warm if step < warm else max(0.0, (total - step) / max(1, total - warm))
    for group in optimizer.param_groups:
        group["lr"] = s.learning_rate * scale


def _checkpoint(work: Path, model, optimizer, step: int, history: list[dict], seconds: float) -> None:
    # one file, written atomically: a kill leaves the previous checkpoint whole. Tensors and plain
    # values only, so it loads with weights_only=True.
    with atomic_path(work / "checkpoint.pt") as tmp:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "torch_rng": torch.get_rng_state(), "step": step, "history": history, "seconds": seconds}, tmp)


def _resume(work: Path, model, optimizer) -> tuple[int, list[dict], float]:
    path = work / "checkpoint.pt"
    if not path.exists():
        return 0, [], 0.0
    state = torch.load(path, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    log.info("warm-up resumed at step %d from %s", state["step"], work)
    return state["step"], state["history"], state["seconds"]


def _save(out: Path, student: SpladeEncoder, work: Path, result: dict) -> Path:
    from .student_init import INIT_FILE, publish

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    student.model.eval()
    student.model.save_pretrained(tmp)
    student.tokenizer.save_pretrained(tmp)
    init = Path(result["student"]) / INIT_FILE
    if init.exists():
        result["init"] = json.loads(init.read_text())
    (tmp / RESULT_FILE).write_text(json.dumps(result, indent=1))
    publish(tmp, out)
    shutil.rmtree(work, ignore_errors=True)
    return out
