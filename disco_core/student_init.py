"""A larger student: any BERT encoder in the document encoder's vocabulary, given a SPLADE head.

The student only has to share the frozen document encoder's vocabulary (its vectors are scored
against the document index term by term), not its architecture. A sentence encoder such as
all-MiniLM-L6-v2 (6 layers, 384-d, BERT uncased vocabulary, no MLM head) becomes a masked LM here:

- the body's weights as they are;
- a BERT MLM head whose decoder is tied to the body's word embeddings, so each term's output
  vector starts as its input embedding: ``logit_j = e_j . LayerNorm(gelu(W h + c)) + b_j``;
- ``W = I``, ``c = 0`` and a unit LayerNorm: the head starts by asking which word embeddings the
  contextual state points to (on MiniLM a token's own term ranks first, then related ones: measured,
  see docs/student_capacity.md);
- ``b_j = bias`` for every term: logits of that head are about N(0, 1) with ~18 for a token's own
  term, so a bias of -5 leaves ~10-40 positive terms per query, splade-tiny's range. Without it
  every term is active and the first warm-up steps only fight density.

Then :func:`disco_core.warm_up.warm_up` teaches it splade-tiny's query vectors before DiSCo.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .models import LOADING, load_error, resolve_model

INIT_FILE = "student_init.json"
DEFAULT_BIAS = -5.0

# Texts the two tokenizers must split identically (case, accents, punctuation, digits, CJK, an
# unknown character, the special tokens), beside an equal vocabulary and equal special tokens.
PROBES = (
    "Héllo WORLD, what's IBM Cloud's price for 3.5TB? naïve café",
    "東京 [SEP] the U.S. Fed's rate-hike (0.25%) — don't!",
    "unbelievably tokenizations ⚙ [MASK] [UNK] [CLS]",
)
_SPECIAL = ("cls_token", "sep_token", "pad_token", "mask_token", "unk_token")


def _tokenizer(name: str):
    from transformers import AutoTokenizer

    with LOADING:
        try:
            return AutoTokenizer.from_pretrained(resolve_model(name))
        except (OSError, ValueError) as exc:
            raise load_error(name, exc) from None


def vocabulary_difference(tokenizer, reference) -> str | None:
    """Why ``tokenizer`` would not produce the ids ``reference`` does (None: they agree)."""
    vocab, ref = tokenizer.get_vocab(), reference.get_vocab()
    if vocab != ref:
        only = sorted(set(vocab) - set(ref))[:3]
        moved = sorted(t for t in set(vocab) & set(ref) if vocab[t] != ref[t])[:3]
        return (f"vocabularies differ: {len(vocab)} vs {len(ref)} terms"
                + (f", only in the encoder: {only}" if only else "") + (f", other ids: {moved}" if moved else ""))
    for name in _SPECIAL:
        if getattr(tokenizer, name, None) != getattr(reference, name, None):
            return f"{name} differs: {getattr(tokenizer, name, None)!r} vs {getattr(reference, name, None)!r}"
    for text in PROBES:
        a, b = tokenizer(text)["input_ids"], reference(text)["input_ids"]
        if a != b:
            return f"{text!r} tokenizes differently: {tokenizer.convert_ids_to_tokens(a)} vs " \
                   f"{reference.convert_ids_to_tokens(b)}"
    return None


def check_vocabulary(encoder: str, reference: str = "splade-tiny") -> None:
    """ConfigError unless ``encoder``'s tokenizer gives exactly ``reference``'s ids."""
    why = vocabulary_difference(_tokenizer(encoder), _tokenizer(reference))
    if why:
        raise ConfigError(f"student encoder {encoder!r} cannot be scored against {reference!r}'s documents: {why}")


def mlm_from_encoder(encoder_dir: str, out_dir: str | Path, reference: str = "splade-tiny",
                     bias: float = DEFAULT_BIAS) -> Path:
    """Write ``out_dir``: a BertForMaskedLM folder (``AutoModelForMaskedLM`` and
    :class:`~disco_core.encoder.SpladeEncoder` load it) made of ``encoder_dir``'s BERT body and a
    new MLM head tied to its word embeddings, with ``reference``'s tokenizer. ``encoder_dir``: a
    folder, hub id or alias (``all-minilm-l6-v2``). Deterministic: no random weights."""
    from transformers import AutoConfig, AutoModel, BertForMaskedLM

    check_vocabulary(encoder_dir, reference)
    path = resolve_model(encoder_dir)
    with LOADING:
        try:
            config = AutoConfig.from_pretrained(path)
            body = AutoModel.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise load_error(encoder_dir, exc) from None
    if config.model_type != "bert":
        raise ConfigError(f"student encoder {encoder_dir!r} is a {config.model_type!r} model; "
                          "mlm_from_encoder builds BERT masked LMs only")
    config.architectures = ["BertForMaskedLM"]
    config.tie_word_embeddings = True
    model = BertForMaskedLM(config)
    state = {k: v for k, v in body.state_dict().items() if not k.startswith("pooler.")}
    missing, unexpected = model.bert.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(f"student encoder {encoder_dir!r}: weights do not fit a BERT body "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    _init_head(model, bias)
    model.tie_weights()
    if not tied(model):
        raise RuntimeError("the MLM decoder is not tied to the word embeddings")
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    _tokenizer(reference).save_pretrained(tmp)
    (tmp / INIT_FILE).write_text(json.dumps({
        "encoder": encoder_dir, "reference": reference, "head": "BERT MLM head, decoder tied to word embeddings",
        "transform": "identity dense, unit LayerNorm", "bias": bias, "parameters": parameters(model)}, indent=1))
    publish(tmp, out)
    return out


def publish(tmp: Path, out: Path) -> None:
    """Move a finished model folder into place, its files readable by all (a shared model folder;
    safetensors writes 0600)."""
    for path in tmp.iterdir():
        path.chmod(0o644)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def _init_head(model, bias: float) -> None:
    import torch

    head = model.cls.predictions
    with torch.no_grad():
        head.transform.dense.weight.copy_(torch.eye(head.transform.dense.weight.shape[0]))
        head.transform.dense.bias.zero_()
        head.transform.LayerNorm.weight.fill_(1.0)
        head.transform.LayerNorm.bias.zero_()
        head.bias.fill_(bias)


def tied(model) -> bool:
    """The MLM decoder shares its weight tensor with the input word embeddings."""
    out, inp = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    return out is inp or out.data_ptr() == inp.data_ptr()


def parameters(model) -> int:
    """Distinct parameters (a tied matrix counted once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel()
    return total


# ------------------------------------------------------------------ warm-up texts
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def sentences(text: str, min_words: int = 4, max_words: int = 60) -> list[str]:
    """A passage's sentences: split after ``.``/``!``/``?`` before a capital or digit; fragments
    under ``min_words`` words are dropped, runs over ``max_words`` cut into pieces."""
    out = []
    for part in _SENTENCE_END.split(" ".join(text.split())):
        words = part.split()
        for start in range(0, len(words), max_words):
            piece = words[start : start + max_words]
            if len(piece) >= min_words:
                out.append(" ".join(piece))
    return out


def warm_up_texts(tables, conversation_ids: Iterable[str] | None = None, max_sentences: int | None = None,
                  seed: int = 13, tokenizer=None, max_length: int | None = 256, answers: str = "last",
                  ) -> tuple[list[str], list[str]]:
    """``(conversations, sentences)``: the formatted turns of ``conversation_ids`` (all when None;
    the student's input, ``q_n [SEP] a_{n-1} [SEP] q_{n-1} ...``) and the corpus's sentences, a
    seeded sample of ``max_sentences`` of them when given (no duplicates)."""
    from .conversation import ConversationFormatter
    from .encoder import document_text

    turns = tables.turns.to_pylist()
    if conversation_ids is not None:
        keep = set(conversation_ids)
        turns = [t for t in turns if t["conversation_id"] in keep]
    formatter = ConversationFormatter(tokenizer, max_length if tokenizer is not None else None, answers)
    conversations = formatter.format_many(turns)
    corpus = tables.corpus
    pool = _unique(s for title, text in zip(corpus["title"].to_pylist(), corpus["text"].to_pylist())
                   for s in sentences(document_text(title, text)))
    if max_sentences is not None and max_sentences < len(pool):
        chosen = np.random.default_rng(seed).choice(len(pool), size=max_sentences, replace=False)
        pool = [pool[i] for i in sorted(chosen)]
    return conversations, pool


def _unique(texts: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(texts))


def split_texts(texts: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """``(train, held out)``: a seeded ``fraction`` of ``texts`` set aside to measure the match."""
    order = np.random.default_rng(seed).permutation(len(texts))
    cut = int(round(len(texts) * fraction))
    held = set(order[:cut].tolist())
    return [t for i, t in enumerate(texts) if i not in held], [t for i, t in enumerate(texts) if i in held]


def build_student(out_dir: str | Path, dataset: str = "mtrag", encoder: str = "all-minilm-l6-v2",
                  teacher: str = "splade-tiny", test_fraction: float = 0.2, split_seed: int = 13,
                  sentences_per_conversation: float | None = 4.0, **settings) -> Path:
    """The whole recipe: ``encoder`` + a tied MLM head (``<out_dir>.init``), warmed up on ``dataset``'s
    training conversations (the ``test`` split, ``test_fraction`` of the conversations hashed with
    ``split_seed`` as in :mod:`disco_core.splits`, is left out) and a seeded sample of its corpus's
    sentences, ``sentences_per_conversation`` per conversation text (None: every sentence).
    ``settings``: :class:`~disco_core.warm_up.WarmUpSettings`. The defaults take ~3 minutes on the
    embedded dataset and ~12 on MTRAG (2 cores)."""
    from . import datasets, splits
    from .warm_up import WarmUpSettings, warm_up

    out = Path(out_dir)
    tables = datasets.load(dataset)
    conversations = set(tables.turns["conversation_id"].to_pylist())
    train = conversations - splits.held_out(conversations, test_fraction, split_seed) if test_fraction else conversations
    s = WarmUpSettings(**settings)
    init = out.with_name(out.name + ".init")
    if not (init / INIT_FILE).exists():
        mlm_from_encoder(encoder, init, reference=teacher)
    turns = splits.turns_in(tables.turns.to_pylist(), train)
    ratio = sentences_per_conversation
    max_sentences = None if ratio is None else int(round(ratio * len(turns)))
    convs, pool = warm_up_texts(tables, train, max_sentences, s.seed, _tokenizer(teacher), s.max_length)
    data = {"dataset": dataset, "split": "train", "test_fraction": test_fraction, "split_seed": split_seed,
            "conversations": len(convs), "sentences": len(pool), "sentences_per_conversation": ratio}
    return warm_up(init, convs + pool, out, teacher=teacher, settings=s, provenance={"data": data})
