"""The student's trainer: a SPLADE query encoder trained on :class:`~disco_core.distill.Example` s
with the DiSCo loss (:mod:`disco_core.losses`), checkpointed each epoch, resumable, with the epoch
chosen on a dev set. The document encoder is frozen: candidate vectors are rows of the corpus matrix
built for the index (``doc_source="encode"`` re-encodes them instead, for comparison)."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch

from .distill import Example, sample_candidates
from .encoder import SpladeEncoder
from .losses import distillation_loss, flops, l1
from .models import LOADING, resolve_model
from .progress import progress as show_progress

if TYPE_CHECKING:  # the settings object only: a config edit must not retrain students
    from .config import TrainConfig

log = logging.getLogger(__name__)
TRAINING = threading.Lock()  # one training at a time per process (see Trainer.train)


def _to_torch_sparse(rows: sp.csr_matrix) -> torch.Tensor:
    coo = rows.tocoo()
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(indices, torch.from_numpy(coo.data.astype(np.float32)), coo.shape,
                                   check_invariants=False).coalesce()


class Trainer:
    """Trains a SPLADE query encoder on :class:`Example` s; checkpoints each epoch and resumes."""

    def __init__(self, model: str, settings: TrainConfig, doc_matrix: sp.csr_matrix, out_dir: str | Path,
                 device: str = "cpu", doc_source: str = "cached", doc_texts: Sequence[str] | None = None,
                 doc_max_length: int = 256, threads: int | None = None):
        self.settings, self.device = settings, torch.device(device)
        self.out_dir = Path(out_dir)
        self.student = SpladeEncoder(model, max_length=settings.max_length, device=device, threads=threads)
        self.doc_matrix = doc_matrix.tocsr()
        if doc_source not in ("cached", "encode"):
            raise ValueError("doc_source must be cached or encode")
        self.doc_source, self.doc_texts, self.doc_max_length = doc_source, doc_texts, doc_max_length
        if doc_source == "encode":
            if doc_texts is None:
                raise ValueError("doc_source='encode' needs doc_texts")
            self.doc_encoder = SpladeEncoder(model, max_length=doc_max_length, device=device)
        self.optimizer = torch.optim.AdamW(self.student.model.parameters(), lr=settings.learning_rate)
        self.step = 0
        self.history: list[dict] = []
        self.resumed_epochs = 0  # complete epochs taken from a checkpoint by the last train()

    # -------------------------------------------------------------- one step
    def document_vectors(self, positions: np.ndarray) -> torch.Tensor:
        if self.doc_source == "cached":
            return _to_torch_sparse(self.doc_matrix[positions])
        # the baseline: the frozen document encoder run on every candidate (the same code, in
        # the same token-budgeted batches, that built the corpus matrix)
        return _to_torch_sparse(self.doc_encoder.encode([self.doc_texts[i] for i in positions]))

    def batch_loss(self, batch: list[Example], rng: np.random.Generator) -> dict:
        s = self.settings
        sampled = [sample_candidates(ex, rng, s.negatives, tuple(s.negative_ranks)) for ex in batch]
        positions = np.concatenate([d for d, _ in sampled])
        teacher = torch.from_numpy(np.stack([t for _, t in sampled])).to(self.device)
        queries = self.student.forward([ex.text for ex in batch], s.max_length)  # (B, V)
        docs = self.document_vectors(positions).to(self.device)  # (B * C, V), sparse
        all_scores = torch.sparse.mm(docs, queries.T)  # (B * C, B): every candidate vs every query
        n, c = len(batch), s.negatives + 1
        per_query = all_scores.view(n, c, n)
        student = per_query.diagonal(dim1=0, dim2=2).T  # (B, C): own candidates
        in_batch = per_query[:, 0, :].T  # (B queries, B positives)
        # Without fusion a turn has one example per teacher: another example of the same turn is
        # not a negative of this one (its positive may be the very same document).
        same = np.array([[a.query_id == b.query_id for b in batch] for a in batch])
        np.fill_diagonal(same, False)
        if same.any():
            in_batch = in_batch.masked_fill(torch.from_numpy(same).to(self.device), float("-inf"))
        out = distillation_loss(student, teacher, in_batch, s.kl_weight, s.ce_weight, s.temperature)
        ramp = min(1.0, (self.step / s.reg_warmup_steps) ** 2) if s.reg_warmup_steps else 1.0
        if s.flops_weight:
            out["flops"] = flops(queries)
            out["loss"] = out["loss"] + ramp * s.flops_weight * out["flops"]
        if s.l1_weight:
            out["l1"] = l1(queries)
            out["loss"] = out["loss"] + ramp * s.l1_weight * out["l1"]
        out["query_nonzeros"] = (queries > 0).sum(dim=1).float().mean()
        return out

    # -------------------------------------------------------------- loop
    def batches(self, examples: list[Example], epoch: int) -> list[list[Example]]:
        order = np.random.default_rng([self.settings.seed, epoch]).permutation(len(examples))
        b = self.settings.batch_size
        return [[examples[i] for i in order[j : j + b]] for j in range(0, len(order) - 1, b) if len(order[j : j + b]) > 1]

    def train(self, examples: list[Example], progress: Callable[[dict], None] | None = None,
              max_steps: int | None = None, dev: Callable[[SpladeEncoder], float] | None = None) -> list[dict]:
        """Train for ``settings.epochs`` epochs (resuming after the last complete checkpoint).

        Steps show as progress (:mod:`disco_core.progress`: epoch and loss beside the counts);
        ``progress``, if given, also receives each ``log_every``-th step's record. ``dev(student) ->
        score``, when given, runs after each epoch; its score is recorded in the history (``{"epoch",
        "dev"}``) and in the checkpoint, and :meth:`best_epoch` picks by it."""
        if len(examples) < 2:
            raise ValueError(f"{len(examples)} training example(s): need at least 2 (in-batch negatives)")
        # Dropout draws from torch's one global generator: two trainings at once in one process
        # (stages run in threads) would interleave their draws and neither would be reproducible.
        with TRAINING:
            torch.manual_seed(self.settings.seed)
            start_epoch = self.resumed_epochs = self.resume()
            self.student.model.train()
            with show_progress(self._steps_left(examples, start_epoch, max_steps), "training", unit="steps") as bar:
                self._epochs(examples, start_epoch, progress, max_steps, bar, dev)
            self.student.model.eval()
        return self.history

    def _steps_left(self, examples: list[Example], start_epoch: int, max_steps: int | None) -> int:
        per_epoch = len(self.batches(examples, start_epoch))  # the same count every epoch
        total = per_epoch * (self.settings.epochs - start_epoch)
        return min(total, max(max_steps - self.step, 0)) if max_steps is not None else total

    def _epochs(self, examples: list[Example], start_epoch: int, progress: Callable[[dict], None] | None,
                max_steps: int | None, bar, dev: Callable[[SpladeEncoder], float] | None) -> None:
        s = self.settings
        for epoch in range(start_epoch, s.epochs):
            rng = np.random.default_rng([s.seed, epoch, 1])
            for i, batch in enumerate(self.batches(examples, epoch)):
                for group in _chunks(batch, math.ceil(len(batch) / s.grad_accumulation)):
                    if len(group) < 2:
                        continue
                    out = self.batch_loss(group, rng)
                    (out["loss"] * len(group) / len(batch)).backward()
                self._set_lr()
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                record = {"epoch": epoch + 1, "step": self.step,
                          **{k: round(float(v.detach()), 5) for k, v in out.items()}}
                self.history.append(record)
                bar.update(1, epoch=record["epoch"], loss=record["loss"])
                if progress and (self.step % s.log_every == 0 or i == 0):
                    progress(record)
                if max_steps is not None and self.step >= max_steps:
                    return
            if dev is not None:
                self.student.model.eval()
                record = {"epoch": epoch + 1, "step": self.step, "dev": round(float(dev(self.student)), 6)}
                self.history.append(record)
                if progress:
                    progress(record)
                self.student.model.train()
            self.save_checkpoint(epoch + 1)

    def dev_scores(self) -> dict[int, float]:
        return {r["epoch"]: r["dev"] for r in self.history if "dev" in r}

    def best_epoch(self) -> int:
        """The epoch with the best dev score (the earliest on a tie); the last without a dev set."""
        scores = self.dev_scores()
        if not scores:
            return self.settings.epochs
        return max(sorted(scores), key=lambda e: scores[e])

    def _set_lr(self) -> None:
        s = self.settings
        scale = min(1.0, (self.step + 1) / s.warmup_steps) if s.warmup_steps else 1.0
        for group in self.optimizer.param_groups:
            group["lr"] = s.learning_rate * scale

    # -------------------------------------------------------------- checkpoints
    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    def save_checkpoint(self, epoch: int) -> Path:
        """``checkpoints/epoch-N``: weights (save_pretrained), optimizer, step and history;
        written to a temporary folder and renamed, so a kill never leaves a half checkpoint."""
        final = self.checkpoint_dir / f"epoch-{epoch}"
        tmp = self.checkpoint_dir / f".epoch-{epoch}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        self.student.model.save_pretrained(tmp)
        # tensors only in the pickle (loaded with weights_only=True); the rest as JSON
        torch.save({"optimizer": self.optimizer.state_dict(), "torch_rng": torch.get_rng_state()},
                   tmp / "trainer_state.pt")
        (tmp / "trainer_state.json").write_text(json.dumps({"step": self.step, "epoch": epoch}))
        (tmp / "history.json").write_text(json.dumps(self.history))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        return final

    def resume(self) -> int:
        """Load the last complete checkpoint; return the epoch to start from."""
        if not self.checkpoint_dir.exists():
            return 0
        done = sorted((int(p.name.split("-")[1]), p) for p in self.checkpoint_dir.glob("epoch-*")
                      if (p / "trainer_state.pt").exists() and (p / "trainer_state.json").exists())
        if not done:
            return 0
        epoch, path = done[-1]
        self._load_weights(path)
        state = torch.load(path / "trainer_state.pt", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        self.step = json.loads((path / "trainer_state.json").read_text())["step"]
        self.history = json.loads((path / "history.json").read_text())
        log.info("resumed from %s (epoch %d, step %d)", path, epoch, self.step)
        return epoch

    def _load_weights(self, checkpoint: Path) -> None:
        from transformers import AutoModelForMaskedLM

        with LOADING:
            state_model = AutoModelForMaskedLM.from_pretrained(checkpoint)
        self.student.model.load_state_dict(state_model.state_dict())

    def save_final(self, folder: str | Path, epoch: int | None = None) -> Path:
        """The trained query encoder, reloadable with ``AutoModelForMaskedLM.from_pretrained``;
        ``epoch``: the weights of that epoch's checkpoint (the dev-selected one) instead of the last."""
        if epoch is not None and epoch != self.settings.epochs:
            self._load_weights(self.checkpoint_dir / f"epoch-{epoch}")
        folder = Path(folder)
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.student.model.save_pretrained(tmp)
        # the tokenizer as it was loaded: a used one serialises its last truncation and padding
        # settings into tokenizer.json, which made an identical retraining look like a new student
        from transformers import AutoTokenizer

        with LOADING:
            AutoTokenizer.from_pretrained(resolve_model(self.student.name)).save_pretrained(tmp)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        return folder


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), max(size, 1))]
