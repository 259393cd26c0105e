"""The saved student loads in sentence-transformers (and transformers) with disco's own vectors."""

import json

import numpy as np
import pytest
import torch

from disco_core.conversation import ConversationFormatter
from disco_core.encoder import SpladeEncoder
from disco_core.evaluation import evaluate
from disco_core.models import resolve_model
from disco_core.model_card import describe_teacher, render, student_provenance
from disco_core.packaging import format_conversation, format_document, publish, save_student

HISTORY = [
    {"speaker": "user", "text": "tell me about the Varnholt lighthouse"},
    {"speaker": "agent", "text": "The Varnholt lighthouse stands on the northern cape of the island. " * 8},
    {"speaker": "user", "text": "when was it built?"},
    {"speaker": "agent", "text": "It was built in 1872 by the harbour board after two shipwrecks."},
]
UTTERANCE = "who designed it?"
TITLE = "Varnholt lighthouse"
PASSAGE = "The lighthouse was designed by the engineer Margit Olsen and first lit in 1872. " * 12
Q_LEN, D_LEN = 48, 96  # both shorter than the inputs: truncation must match too


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    """A 'trained' student: splade-tiny with its vocabulary head nudged, so query and document
    encoders differ and a swapped route would show."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    base = resolve_model("splade-tiny")
    model = AutoModelForMaskedLM.from_pretrained(base)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        bias = model.get_output_embeddings().bias
        bias.add_(0.5 * torch.randn(bias.shape, generator=generator))
    out = tmp_path_factory.mktemp("student") / "model"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def provenance(student_scores):
    return {"base_model": "splade-tiny", "dataset": {"name": "embedded", "license": "CC BY 4.0"},
            "split": {"train_conversations": 8, "test_conversations": 2, "test_fraction": 0.2, "seed": 13},
            "teachers": [{"name": "human", "llm": "people (dataset rewrites)", "backend": "dataset"},
                         {"name": "smollm2", "llm": "SmolLM2-135M-Instruct", "backend": "hf"}],
            "fusion": "mean", "settings": {"learning_rate": 2e-4, "epochs": 3},
            "query_max_length": Q_LEN, "document_max_length": D_LEN, "scores": {"test": student_scores},
            "llm_calls": 0}


@pytest.fixture(scope="module")
def saved(student_dir, tmp_path_factory):
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    runs = {"student (DiSCo)": {"q1": [("d1", 3.0)], "q2": [("d9", 2.0), ("d2", 1.0)]},
            "teacher: smollm2": {"q1": [("d3", 3.0), ("d1", 2.0)], "q2": [("d2", 1.0)]}}
    ev = evaluate(qrels, runs, ["mrr@10", "ndcg@3"])
    ev.extra = {"student (DiSCo)": {"q nnz": 41.5, "LLM calls": 0}, "teacher: smollm2": {"q nnz": 12.0, "LLM calls": 1}}
    folder = tmp_path_factory.mktemp("saved") / "disco-student"
    return save_student(folder, student_dir, "splade-tiny", provenance(ev))


@pytest.mark.slow
def test_sparse_encoder_gives_disco_vectors_and_scores(saved, student_dir):
    from sentence_transformers import SparseEncoder

    model = SparseEncoder(str(saved))
    student = SpladeEncoder(str(student_dir), max_length=Q_LEN)
    documents = SpladeEncoder("splade-tiny", max_length=D_LEN)
    conversation = format_conversation(UTTERANCE, HISTORY, tokenizer=model.tokenizer, max_length=Q_LEN)
    assert conversation == ConversationFormatter(student.tokenizer, Q_LEN)(UTTERANCE, HISTORY)
    passage = format_document(TITLE, PASSAGE)
    assert passage.startswith(TITLE + " The lighthouse")

    q_ours, d_ours = student.encode([conversation]).toarray(), documents.encode([passage]).toarray()
    q_st = model.encode_query([conversation], convert_to_tensor=True).to_dense().numpy()
    d_st = model.encode_document([passage], convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(q_st, q_ours, atol=1e-5)
    np.testing.assert_allclose(d_st, d_ours, atol=1e-5)
    # the routes are the right ones: the student differs from the document encoder on the same text
    assert np.abs(documents.encode([conversation]).toarray() - q_ours).max() > 0.1
    score = float(model.similarity(model.encode_query([conversation]), model.encode_document([passage]))[0, 0])
    assert score == pytest.approx(float((q_ours @ d_ours.T)[0, 0]), rel=1e-5)


@pytest.mark.slow
def test_folder_is_also_the_masked_lm_and_stores_the_student_once(saved, student_dir):
    from transformers import AutoModelForMaskedLM

    loaded = AutoModelForMaskedLM.from_pretrained(saved)
    original = AutoModelForMaskedLM.from_pretrained(student_dir)
    for (name, a), b in zip(loaded.state_dict().items(), original.state_dict().values()):
        assert torch.equal(a, b), name
    assert not (saved / "query_0_Transformer").exists()
    assert len(list(saved.rglob("*.safetensors"))) == 2  # the student (root) and the document encoder


@pytest.mark.slow
def test_model_card_names_teachers_and_shows_the_test_table(saved):
    card = (saved / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: sentence-transformers")
    for text in ("SmolLM2-135M-Instruct", "| smollm2 |", "people (dataset rewrites)", "### test",
                 "| model | MRR@10 | nDCG@3 | LLM calls | q nnz |", "| **student (DiSCo)** | 0.7500 | 0.8155 | 0 | 41.5 |",
                 "41.5 non-zero terms per query", "LLM calls at search time: 0", "Intended use and limits",
                 "CC BY 4.0", "encode_query"):
        assert text in card, text
    provenance_file = json.loads((saved / "disco.json").read_text())
    assert provenance_file["document_model"] == "splade-tiny"
    assert provenance_file["scores"]["test"]["scores"]["student (DiSCo)"]["mrr@10"] == 0.75


@pytest.mark.slow
def test_publish_creates_the_repo_and_uploads_the_folder(saved, monkeypatch):
    from huggingface_hub import HfApi

    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id, kw)))

    def upload(self, **kw):
        calls.append(("upload", kw["repo_id"], kw))
        return "https://huggingface.co/me/disco-student/commit/abc"

    monkeypatch.setattr(HfApi, "upload_folder", upload)
    url = publish(saved, "me/disco-student", token="hf_test", private=True)
    assert url.endswith("/commit/abc")
    assert [c[:2] for c in calls] == [("create", "me/disco-student"), ("upload", "me/disco-student")]
    assert calls[0][2]["private"] is True and calls[0][2]["exist_ok"] is True
    assert calls[1][2]["folder_path"] == str(saved)
    assert 'SparseEncoder("me/disco-student")' in (saved / "README.md").read_text()


def test_provenance_from_the_pipeline_config():
    from disco_core.config_files import load_config

    cfg = load_config(overrides=["dataset.name=mtrag", "train.max_length=128", "distill.fusion=max"])
    teachers = [describe_teacher("mtrag-mixtral", "dataset", ["Mixtral-8x7B-Instruct (MTRAG official rewrite)"] * 3),
                describe_teacher("human", "dataset", [None]),
                describe_teacher("smollm2", "hf", ["smollm2-135m-instruct", None])]
    p = student_provenance(cfg, teachers, {"train_conversations": 88, "test_conversations": 22}, {})
    assert p["dataset"]["name"] == "mtrag" and p["dataset"]["license"].startswith("Apache-2.0")
    assert p["query_max_length"] == 128 and p["fusion"] == "max" and p["split"]["seed"] == 13
    assert [t["llm"] for t in p["teachers"]] == ["Mixtral-8x7B-Instruct (MTRAG official rewrite)", "people",
                                                  "smollm2-135m-instruct"]
    assert p["settings"]["negative_ranks"] == [11, 960]
    card = render(p)
    assert "| smollm2 | smollm2-135m-instruct | hf |" in card and "88 train conversations" in card
    assert "Not evaluated." in card
