"""A student people can load: one folder for sentence-transformers, transformers and the hub.

:func:`save_student` writes::

    folder/
      config.json, model.safetensors, tokenizer*  the student (query encoder): AutoModelForMaskedLM loads it
      sentence_bert_config.json                   ... and it is also the query route's Transformer
      modules.json, router_config.json            sentence-transformers' Router: query -> the root,
      document_0_Transformer/                     document -> the frozen document encoder
      query_1_SpladePooling/, document_1_SpladePooling/   max pooling of log(1 + relu(logits))
      config_sentence_transformers.json           SparseEncoder, dot-product similarity
      README.md                                   the model card (disco_core.model_card)
      disco.json                                  the provenance the card was written from

so ``SparseEncoder(folder).encode_query(conversations)`` runs the student and ``encode_document``
the document encoder, with disco's own vectors (same tokenizer, truncation and pooling; checked to
1e-5 by tests/test_ecosystem_packaging.py). The student's weights are stored once: the query route
points at the root folder.

Inputs: a query is the formatted conversation (:func:`format_conversation`, the
:class:`~disco_core.conversation.ConversationFormatter` used in training); a passage is
``format_document(title, text)`` (``title + " " + text``, as the corpus was encoded).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from . import model_card
from .conversation import ConversationFormatter
from .encoder import document_text
from .errors import ConfigError, DataError
from .io import write_text_atomic
from .models import resolve_model

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PROVENANCE_FILE = "disco.json"
QUERY_MODULE = "query_0_Transformer"  # the id sentence-transformers gives the query route's encoder


def format_conversation(utterance: str, history: Sequence[dict], tokenizer=None, max_length: int | None = None,
                        answers: str = "last") -> str:
    """The student's input for a turn: ``history`` is the earlier messages, oldest first, each
    ``{"speaker": "user"|"agent", "text": ...}``. Give the student's tokenizer and max length to
    drop old turns exactly as in training (``SparseEncoder(...).tokenizer`` works)."""
    return ConversationFormatter(tokenizer, max_length, answers)(utterance, history)


def format_document(title: str | None, text: str) -> str:
    """A passage as the document encoder saw it: the title, a space, the text."""
    return document_text(title, text)


def _sparse_encoder(query_dir: str, document_dir: str, query_max_length: int, document_max_length: int):
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import Router, SpladePooling, Transformer

    query = Transformer(query_dir, transformer_task="fill-mask", max_seq_length=query_max_length)
    document = Transformer(document_dir, transformer_task="fill-mask", max_seq_length=document_max_length)
    sizes = {len(m.tokenizer) for m in (query, document)}
    if len(sizes) != 1 or query.tokenizer.get_vocab() != document.tokenizer.get_vocab():
        raise ConfigError(f"the student ({query_dir}) and the document encoder ({document_dir}) have different "
                          "vocabularies: their sparse vectors cannot be compared")
    dims = query.auto_model.get_output_embeddings().weight.shape[0]

    def pooling():
        return SpladePooling(pooling_strategy="max", activation_function="relu", embedding_dimension=dims)

    router = Router.for_query_document([query, pooling()], [document, pooling()])
    return SparseEncoder(modules=[router], similarity_fn_name="dot")


def _query_route_at_root(folder: Path) -> None:
    """Move the query encoder's files to the root (the masked-LM folder) and point the router there."""
    for item in (folder / QUERY_MODULE).iterdir():
        os.replace(item, folder / item.name)
    (folder / QUERY_MODULE).rmdir()
    config_path = folder / "router_config.json"
    config = json.loads(config_path.read_text())
    config["types"] = {("" if k == QUERY_MODULE else k): v for k, v in config["types"].items()}
    config["structure"] = {route: ["" if m == QUERY_MODULE else m for m in modules]
                           for route, modules in config["structure"].items()}
    config_path.write_text(json.dumps(config, indent=4))


def _readable(folder: Path) -> None:
    """Files as a shared model folder should be (some writers leave 0600 temporary-file modes)."""
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(0o644)


def save_student(folder: str | Path, student_model_dir: str | Path, document_model: str, provenance: dict,
                 query_max_length: int | None = None, document_max_length: int | None = None) -> Path:
    """Write the loadable student folder (see the module docstring) and return it.

    ``student_model_dir``: the trained query encoder (``Trainer.save_final``'s folder);
    ``document_model``: the frozen document encoder (alias, hub id or folder: the corpus encoder);
    ``provenance``: what the card reports (see :mod:`disco_core.model_card`); the max lengths default
    to ``provenance["query_max_length"]`` / ``["document_max_length"]``, else 256. Written to a
    temporary folder and renamed: a failure leaves any earlier folder as it was."""
    folder, student = Path(folder), Path(student_model_dir)
    if not (student / "config.json").exists():
        raise DataError(student, "not a saved model folder (no config.json)")
    query_max_length = query_max_length or provenance.get("query_max_length") or 256
    document_max_length = document_max_length or provenance.get("document_max_length") or 256
    provenance = {**provenance, "document_model": provenance.get("document_model", document_model),
                  "query_max_length": query_max_length, "document_max_length": document_max_length,
                  "scores": {k: model_card.as_dict(v) for k, v in (provenance.get("scores") or {}).items()},
                  "format": {"query": "format_conversation(utterance, history)",
                             "document": "format_document(title, text)"}}
    model = _sparse_encoder(str(student), resolve_model(document_model), query_max_length, document_max_length)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(str(tmp), create_model_card=False)
    _query_route_at_root(tmp)
    (tmp / "README.md").write_text(model_card.render(provenance), encoding="utf-8")
    (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, default=str), encoding="utf-8")
    _readable(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def load_student(folder: str | Path, device: str | None = None):
    """``SparseEncoder(folder)`` (sentence-transformers imported only here)."""
    from sentence_transformers import SparseEncoder

    return SparseEncoder(str(folder), device=device)


def publish(folder: str | Path, repo_id: str, token: str | None = None, private: bool = False,
            commit_message: str = "Upload DiSCo student") -> str:
    """Push a saved student folder to the Hugging Face hub (created if missing); returns the commit
    URL. ``token`` defaults to huggingface_hub's (``HF_TOKEN`` or ``hf auth login``). The card's usage
    example is rewritten to name ``repo_id``."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    missing = [f for f in ("modules.json", "config.json", "README.md") if not (folder / f).exists()]
    if missing:
        raise DataError(folder, f"not a saved student (missing {', '.join(missing)}): run save_student first")
    provenance_path = folder / PROVENANCE_FILE
    if provenance_path.exists():
        card = model_card.render(json.loads(provenance_path.read_text()), repo_id=repo_id)
        write_text_atomic(folder / "README.md", card)
        _readable(folder)
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                               commit_message=commit_message)
    return str(getattr(commit, "commit_url", commit))
