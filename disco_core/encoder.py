"""SPLADE encoding: any masked-LM checkpoint into sparse vocabulary vectors.

``w_j = max_t log(1 + relu(logit_{t,j}))`` over the non-padding tokens ``t`` of a text. Because
``log1p(relu(.))`` is monotone, the max is taken first on the raw logits and the activation applied
to one vector per text, not to every token (identical result, far less work). Further savings,
each exact:

- texts are tokenized once and batched by length (longest first) within windows of
  ``sort_window`` consecutive texts, so padding is small. A batch never straddles a window, so a
  text's vector depends only on its window: encoding a corpus in shards whose boundaries are
  multiples of ``sort_window`` gives bit-identical vectors to encoding it in one call (a batch's
  floating-point results depend on its padded shape, hence on its neighbours);
- for heads we know (BERT's ``cls``, RoBERTa-style ``lm_head``) the vocabulary projection runs on
  the non-padding tokens only; other architectures fall back to the full logits, masked;
- a batch is capped by ``token_budget`` non-padding tokens, which bounds the ``tokens x vocab``
  logits tensor whatever the documents' length (``max_length`` truncates them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from .models import LOADING, load_error, resolve_model
from .progress import progress as show_progress

log = logging.getLogger(__name__)

_HEAD_ATTRIBUTES = ("cls", "lm_head")  # BERT family / RoBERTa, XLM-R, ModernBERT-style heads


def document_text(title: str | None, text: str) -> str:
    """The text a passage is encoded from: its title, then its body (title once, if it repeats)."""
    title, text = (title or "").strip(), text.strip()
    if not title or text.startswith(title):
        return text
    return f"{title} {text}"


class SpladeEncoder:
    """One encoder interface over any masked LM: ``encode(texts) -> scipy.sparse.csr_matrix``."""

    def __init__(
        self,
        model: str = "splade-tiny",
        max_length: int = 256,
        batch_size: int = 32,
        token_budget: int = 4096,
        device: str = "cpu",
        threads: int | None = None,
        model_obj: torch.nn.Module | None = None,
        tokenizer=None,
        sort_window: int = 1000,
    ):
        if threads:
            torch.set_num_threads(threads)
        self.name = model
        path = resolve_model(model)
        with LOADING:
            try:
                self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
                self.model = model_obj if model_obj is not None else AutoModelForMaskedLM.from_pretrained(path)
            except (OSError, ValueError) as exc:  # no such hub id offline, a folder without weights
                raise load_error(model, exc) from None
        self.model.eval().to(device)
        self.device = torch.device(device)
        self.max_length = max_length
        self.batch_size = batch_size
        self.token_budget = max(token_budget, max_length)
        self.sort_window = max(1, int(sort_window))
        self._split = _split_masked_lm(self.model)

    @property
    def vocab_size(self) -> int:
        return self.model.get_output_embeddings().weight.shape[0]

    def vocabulary(self) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens(list(range(self.vocab_size)))

    def batches(self, lengths: Sequence[int]) -> list[np.ndarray]:
        """Indices of texts per forward pass: window by window (``sort_window`` texts), longest
        first, at most batch_size texts and token_budget padded tokens each."""
        lengths = np.asarray(lengths)
        out = []
        for lo in range(0, len(lengths), self.sort_window):
            order = lo + np.argsort(-lengths[lo : lo + self.sort_window], kind="stable")
            start = 0
            while start < len(order):
                longest = int(lengths[order[start]])
                size = max(1, min(self.batch_size, self.token_budget // max(longest, 1)))
                out.append(order[start : start + size])
                start += size
        return out

    def encode(
        self,
        texts: Sequence[str],
        max_length: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        desc: str = "encoding",
    ) -> sp.csr_matrix:
        """Encode texts into a ``len(texts) x vocab`` CSR matrix (float32), rows in input order.

        A long call shows progress (:mod:`disco_core.progress`, titled ``desc``); ``progress``, if
        given, is also called with ``(done, total)`` every 10 seconds and at the end."""
        max_length = max_length or self.max_length
        n = len(texts)
        if n == 0:
            return sp.csr_matrix((0, self.vocab_size), dtype=np.float32)
        ids = self.tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
        lengths = [len(x) for x in ids]
        rows: list[sp.csr_matrix] = []
        order: list[np.ndarray] = []
        done, last_report = 0, time.monotonic()
        pad = self.tokenizer.pad_token_id or 0
        with torch.inference_mode(), show_progress(n, desc, unit="texts") as bar:
            for batch in self.batches(lengths):
                longest = lengths[batch[0]]
                input_ids = torch.full((len(batch), longest), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), longest), dtype=torch.long)
                for row, i in enumerate(batch):
                    input_ids[row, : lengths[i]] = torch.tensor(ids[i])
                    mask[row, : lengths[i]] = 1
                weights = self._forward(input_ids.to(self.device), mask.to(self.device), [lengths[i] for i in batch])
                rows.append(sp.csr_matrix(weights.float().cpu().numpy()))
                order.append(batch)
                done += len(batch)
                bar.update(len(batch))
                if progress and (time.monotonic() - last_report > 10 or done == n):
                    progress(done, n)
                    last_report = time.monotonic()
        matrix = sp.vstack(rows, format="csr")
        inverse = np.empty(n, dtype=np.int64)
        inverse[np.concatenate(order)] = np.arange(n)
        out = matrix[inverse]
        out.sort_indices()
        return out.astype(np.float32)

    def _forward(self, input_ids: torch.Tensor, mask: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        return splade_forward(self.model, self._split, input_ids, mask, lengths)

    def forward(self, texts: Sequence[str], max_length: int | None = None) -> torch.Tensor:
        """``(batch, vocab)`` SPLADE weights of one batch, with gradients (the trainer's student)."""
        return self._forward(*self.tokenize(texts, max_length))

    def logits(self, texts: Sequence[str], max_length: int | None = None) -> torch.Tensor:
        """``(batch, vocab)`` max-pooled raw logits of one batch, with gradients (``forward`` is
        ``log1p(relu(.))`` of them)."""
        return max_pooled_logits(self.model, self._split, *self.tokenize(texts, max_length))

    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Padded ``(input_ids, attention_mask, lengths)`` for one batch (training uses this)."""
        enc = self.tokenizer(list(texts), truncation=True, max_length=max_length or self.max_length,
                             padding=True, return_tensors="pt")
        mask = enc["attention_mask"]
        return enc["input_ids"].to(self.device), mask.to(self.device), mask.sum(dim=1).tolist()


def splade_forward(model, split, input_ids: torch.Tensor, mask: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """``(batch, vocab)`` SPLADE weights; differentiable (the trainer calls it with gradients on).

    ``split`` is ``_split_masked_lm(model)``: with it, the vocabulary head runs on the non-padding
    tokens only. Padding must be on the right (the tokenizers' default for these models)."""
    return torch.log1p(torch.relu(max_pooled_logits(model, split, input_ids, mask, lengths)))


def max_pooled_logits(model, split, input_ids: torch.Tensor, mask: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """``(batch, vocab)`` raw logits max-pooled over the non-padding tokens (before ``log1p(relu)``:
    a loss can then reach terms whose weight is 0, where the activation has no gradient)."""
    if split is not None:
        base, head = split
        hidden = base(input_ids=input_ids, attention_mask=mask).last_hidden_state
        logits = head(hidden[mask.bool()])  # (non-padding tokens, vocab)
        pooled = torch.stack([seg.amax(dim=0) for seg in logits.split(lengths)])
    else:
        logits = model(input_ids=input_ids, attention_mask=mask).logits
        pooled = logits.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).amax(dim=1)
    return pooled


def _split_masked_lm(model: torch.nn.Module):
    """(encoder body, vocabulary head) when the head maps hidden states to logits by itself."""
    base = getattr(model, "base_model", None)
    if base is None or base is model:
        return None
    for name in _HEAD_ATTRIBUTES:
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Module):
            return base, head
    return None


def textbook_splade(model, tokenizer, texts: Sequence[str], max_length: int, batch_size: int) -> np.ndarray:
    """The usual SPLADE pooling, for reference and benchmarks: full logits, activation on every
    token, masked max, batches in input order. Returns a dense ``len(texts) x vocab`` array."""
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start : start + batch_size]), truncation=True, max_length=max_length,
                              padding=True, return_tensors="pt")
            logits = model(**batch).logits
            weights = torch.log1p(torch.relu(logits)) * batch["attention_mask"].unsqueeze(-1)
            out.append(weights.max(dim=1).values.numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.vocab_size), dtype=np.float32)
