"""The DiSCo loss, in parts: KL to the teacher over the candidates, in-batch cross-entropy, and the
optional FLOPS / L1 sparsity regularizers (as sentence-transformers composes its SPLADE losses)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, in_batch: torch.Tensor,
                      kl_weight: float = 0.99, ce_weight: float = 0.01, temperature: float = 1.0) -> dict:
    """``student``/``teacher``: ``(batch, candidates)`` scores, positive first; ``in_batch``:
    ``(batch, batch)`` scores of each query against every query's positive (diagonal = own)."""
    kl = F.kl_div(F.log_softmax(student / temperature, dim=-1), F.log_softmax(teacher / temperature, dim=-1),
                  log_target=True, reduction="batchmean")
    ce = F.cross_entropy(in_batch, torch.arange(in_batch.shape[0], device=in_batch.device))
    return {"loss": kl_weight * kl + ce_weight * ce, "kl": kl, "ce": ce}


def flops(q: torch.Tensor) -> torch.Tensor:
    return (q.abs().mean(dim=0) ** 2).sum()


def l1(q: torch.Tensor) -> torch.Tensor:
    return q.abs().sum(dim=1).mean()
