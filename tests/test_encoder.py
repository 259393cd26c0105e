"""The encoder against a SPLADE vector computed by hand from the model's weights."""

import numpy as np
import torch

from disco_core.encoder import SpladeEncoder, document_text, textbook_splade

TEXTS = ["when was the lighthouse built?", "a b", "The Varnholt bridge crosses the river Meer " * 6, "x"]


def hand_splade(encoder, text: str) -> np.ndarray:
    """w_j = max_t log(1 + relu(h_t . E_j + b_j)) with the BERT MLM head written out in numpy."""
    model = encoder.model
    ids = encoder.tokenizer(text, truncation=True, max_length=encoder.max_length, return_tensors="pt")
    with torch.no_grad():
        hidden = model.bert(**ids).last_hidden_state[0].numpy().astype(np.float64)  # tokens x H
    sd = {k: v.detach().numpy().astype(np.float64) for k, v in model.cls.state_dict().items()}
    h = hidden @ sd["predictions.transform.dense.weight"].T + sd["predictions.transform.dense.bias"]
    h = _gelu(h)
    mean, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
    h = (h - mean) / np.sqrt(var + model.config.layer_norm_eps)
    h = h * sd["predictions.transform.LayerNorm.weight"] + sd["predictions.transform.LayerNorm.bias"]
    embeddings = model.get_output_embeddings().weight.detach().numpy().astype(np.float64)
    logits = h @ embeddings.T + model.get_output_embeddings().bias.detach().numpy()
    return np.log1p(np.maximum(logits, 0)).max(axis=0)


def _gelu(x):
    from scipy.special import erf

    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def test_matches_hand_computed_vector(encoder):
    vectors = encoder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), encoder.vocab_size)
    for row, text in enumerate(TEXTS):
        expected = hand_splade(encoder, text)
        np.testing.assert_allclose(vectors[row].toarray()[0], expected, atol=2e-5)
        # sparse: the stored non-zeros are the hand vector's clearly positive entries
        assert set(np.flatnonzero(expected > 1e-4)) <= set(vectors[row].indices)
        assert set(vectors[row].indices) <= set(np.flatnonzero(expected > 0))


def test_matches_textbook_pooling_with_padding_and_any_batching(encoder):
    reference = textbook_splade(encoder.model, encoder.tokenizer, TEXTS, 128, batch_size=4)
    np.testing.assert_allclose(encoder.encode(TEXTS).toarray(), reference, atol=2e-5)
    tiny = SpladeEncoder("splade-tiny", max_length=128, batch_size=1, token_budget=1,
                         model_obj=encoder.model, tokenizer=encoder.tokenizer)
    np.testing.assert_allclose(tiny.encode(TEXTS).toarray(), reference, atol=2e-5)


def test_generic_path_for_unknown_heads(encoder):
    generic = SpladeEncoder("splade-tiny", max_length=128, model_obj=encoder.model, tokenizer=encoder.tokenizer)
    generic._split = None  # as for an architecture without a known head
    np.testing.assert_allclose(generic.encode(TEXTS).toarray(), encoder.encode(TEXTS).toarray(), atol=2e-5)


def test_batches_are_bounded_by_the_token_budget(encoder):
    e = SpladeEncoder("splade-tiny", max_length=128, batch_size=16, token_budget=300,
                      model_obj=encoder.model, tokenizer=encoder.tokenizer)
    lengths = [128, 100, 90, 10, 10, 5, 3, 128]
    batches = e.batches(lengths)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) * max(lengths[i] for i in batch) <= 300


def test_truncation_and_empty_input(encoder):
    long = " ".join(f"word{i}" for i in range(2000))
    assert encoder.encode([long]).shape[0] == 1
    assert encoder.encode([]).shape == (0, encoder.vocab_size)


def test_document_text():
    assert document_text("Title", "Body") == "Title Body"
    assert document_text("Title", "Title\nBody") == "Title\nBody"
    assert document_text(None, " Body ") == "Body"
