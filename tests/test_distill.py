"""DiSCo training pieces: the loss by hand, negative sampling, fusion rules, resume."""

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pytest
import scipy.sparse as sp
import torch

from disco_core import schemas
from disco_core.config import TrainConfig
from disco_core.distill import Example, build_examples, sample_candidates
from disco_core.losses import distillation_loss, flops, l1
from disco_core.trainer import Trainer
from disco_core.teachers import fuse, target_lists


def test_loss_against_hand_computation():
    student = torch.tensor([[2.0, 1.0, 0.0], [0.5, 0.5, 3.0]])
    teacher = torch.tensor([[3.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    in_batch = torch.tensor([[4.0, 1.0], [2.0, 2.0]])
    out = distillation_loss(student, teacher, in_batch, 0.99, 0.01, 1.0)

    def softmax(x):
        e = [math.exp(v) for v in x]
        return [v / sum(e) for v in e]

    kl = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        p, q = softmax(t_row), softmax(s_row)
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    kl /= 2  # batch mean
    ce = (-math.log(softmax([4.0, 1.0])[0]) - math.log(softmax([2.0, 2.0])[1])) / 2
    assert out["kl"].item() == pytest.approx(kl, rel=1e-5)
    assert out["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert out["loss"].item() == pytest.approx(0.99 * kl + 0.01 * ce, rel=1e-5)
    hot = distillation_loss(student, teacher, in_batch, 1.0, 0.0, temperature=2.0)["kl"].item()
    assert hot != pytest.approx(kl)  # temperature divides both score sets


def test_regularizers():
    q = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]])
    assert flops(q).item() == pytest.approx((2.0 ** 2) + 0 + (1.0 ** 2))  # (mean |w_j|)^2 summed
    assert l1(q).item() == pytest.approx((3.0 + 3.0) / 2)


def make_example(n_candidates=1000, positives=(5, 40)):
    rng = np.random.default_rng(0)
    others = np.setdiff1d(rng.permutation(5000), positives)
    # the first positive is the teacher's top document; the others are missing from its list
    candidates = np.concatenate([[positives[0]], rng.permutation(others)[: n_candidates - 1]])
    scores = np.sort(rng.random(n_candidates).astype(np.float32) * 30)[::-1]
    return Example("q", "text", np.asarray(positives), candidates, scores)


def test_negatives_come_from_teacher_ranks_11_to_960():
    ex = make_example()
    rng = np.random.default_rng(1)
    rank_of = {d: r + 1 for r, d in enumerate(ex.candidates)}
    seen_ranks = set()
    for _ in range(300):
        docs, scores = sample_candidates(ex, rng, 16, (11, 960))
        assert len(docs) == 17 and docs[0] in ex.positives
        negatives = docs[1:]
        assert not set(negatives) & set(ex.positives)
        ranks = [rank_of[d] for d in negatives]
        assert min(ranks) >= 11 and max(ranks) <= 960 and len(set(negatives)) == 16
        seen_ranks.update(ranks)
        np.testing.assert_array_equal(scores[1:], [ex.scores[rank_of[d] - 1] for d in negatives])
        # positive 5 is rank 1; positive 40 is not in the teacher list: top teacher score
        assert scores[0] == (ex.scores[0] if docs[0] == 5 else ex.scores.max())
    assert min(seen_ranks) < 20 and max(seen_ranks) > 940  # the whole range is used


def test_short_teacher_lists_fall_back_and_empty_ones_fail():
    ex = make_example(n_candidates=8, positives=(5,))
    docs, _ = sample_candidates(ex, np.random.default_rng(0), 16, (11, 960))
    assert len(docs) == 17 and 5 not in docs[1:]  # sampled with replacement from ranks 2-8
    lonely = Example("q", "t", np.asarray([5]), np.asarray([5]), np.asarray([1.0], dtype=np.float32))
    with pytest.raises(ValueError, match="no negative"):
        sample_candidates(lonely, np.random.default_rng(0), 16, (11, 960))


def test_build_examples_skips_turns_without_positive_or_targets():
    targets = {"a": [(["d1", "d2"], [2.0, 1.0])], "b": [(["d2"], [1.0])]}
    qrels = {"a": {"d2": 1, "zz": 1}, "b": {"d1": 0}, "c": {"d1": 1}}
    out = build_examples(["a", "b", "c"], ["ta", "tb", "tc"], targets, qrels, {"d1": 0, "d2": 1})
    assert [e.query_id for e in out] == ["a"] and out[0].positives.tolist() == [1]


def test_per_teacher_targets_give_one_example_per_teacher():
    rows = {"query_id": ["a", "a", "a", "b"], "source": ["t2", "t1", "t1", "t1"], "doc_id": ["d1", "d2", "d1", "d1"],
            "rank": [1, 2, 1, 1], "score": [5.0, 1.0, 3.0, 2.0]}
    targets = target_lists(schemas.to_table("targets", rows))
    # per query, one list per source (in name order), each by rank
    assert targets == {"a": [(["d1", "d2"], [3.0, 1.0]), (["d1"], [5.0])], "b": [(["d1"], [2.0])]}
    out = build_examples(["a", "b"], ["ta", "tb"], targets, {"a": {"d2": 1}, "b": {"d1": 1}}, {"d1": 0, "d2": 1})
    assert [(e.query_id, e.candidates.tolist(), e.scores.tolist()) for e in out] == [
        ("a", [0, 1], [3.0, 1.0]), ("a", [0], [5.0]), ("b", [0], [2.0])]


# ------------------------------------------------------------------ fusion
def test_fusion_rules_use_exact_scores_on_the_union():
    docs = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=np.float32))
    doc_ids = ["d0", "d1", "d2", "d3"]
    qa = sp.csr_matrix(np.array([[2, 0, 0]], dtype=np.float32))  # teacher A: d0, d3
    qb = sp.csr_matrix(np.array([[0, 0, 4]], dtype=np.float32))  # teacher B: d2
    scores = schemas.to_table("teacher_scores", {
        "query_id": ["q", "q", "q"], "doc_id": ["d0", "d3", "d2"], "teacher": ["A", "A", "B"],
        "rank": [1, 2, 1], "score": [2.0, 2.0, 4.0]})
    vectors = {"A": (qa, ["q"]), "B": (qb, ["q"])}
    mean = fuse(scores, vectors, docs, doc_ids, "mean").to_pydict()
    # union {d0, d2, d3}; A scores (2, 0, 2), B scores (0, 4, 0)
    assert list(zip(mean["doc_id"], mean["score"])) == [("d2", 2.0), ("d0", 1.0), ("d3", 1.0)]
    assert set(mean["source"]) == {"fused:mean"} and mean["rank"] == [1, 2, 3]
    top = fuse(scores, vectors, docs, doc_ids, "max").to_pydict()
    assert list(zip(top["doc_id"], top["score"])) == [("d2", 4.0), ("d0", 2.0), ("d3", 2.0)]
    per = fuse(scores, vectors, docs, doc_ids, "per-teacher").to_pydict()
    assert sorted(set(per["source"])) == ["A", "B"] and len(per["doc_id"]) == 3
    with pytest.raises(ValueError):
        fuse(scores, vectors, docs, doc_ids, "median")


def test_teacher_weights_and_zscore_change_who_has_the_say():
    """A and B disagree; B's scores are twice as large. The raw mean follows B; weights can turn it
    to A; z-scores cancel the scale, so two opposite teachers tie (at their mean centre)."""
    docs = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=np.float32))
    doc_ids = ["d0", "d1", "d2", "d3"]
    scores = schemas.to_table("teacher_scores", {
        "query_id": ["q", "q", "q"], "doc_id": ["d0", "d3", "d2"], "teacher": ["A", "A", "B"],
        "rank": [1, 2, 1], "score": [2.0, 2.0, 4.0]})
    vectors = {"A": (sp.csr_matrix(np.array([[2, 0, 0]], dtype=np.float32)), ["q"]),
               "B": (sp.csr_matrix(np.array([[0, 0, 4]], dtype=np.float32)), ["q"])}
    weighted = fuse(scores, vectors, docs, doc_ids, "mean", weights={"A": 3.0}).to_pydict()
    assert list(zip(weighted["doc_id"], weighted["score"])) == [("d0", 1.5), ("d3", 1.5), ("d2", 1.0)]
    z = fuse(scores, vectors, docs, doc_ids, "mean", normalise="zscore").to_pydict()
    assert z["score"] == pytest.approx([4 / 3] * 3)
    alone = {"A": vectors["A"]}
    only_a = scores.filter(pa.compute.equal(scores["teacher"], "A"))
    assert fuse(only_a, alone, docs, doc_ids, normalise="zscore").to_pydict()["score"] == \
        pytest.approx(fuse(only_a, alone, docs, doc_ids).to_pydict()["score"])  # one teacher: unchanged
    with pytest.raises(ValueError, match="unknown normalisation"):
        fuse(scores, vectors, docs, doc_ids, normalise="rank")


def test_teacher_weights_name_configured_teachers(tmp_path):
    from disco_core.config_files import validate
    from disco_core.errors import ConfigError
    from tasks.graph import plan

    cfg = validate({"work_dir": str(tmp_path), "distill": {"weights": {"dataset": 2.0, "gemma3": 0.5}}}, "")
    plan(cfg)  # the dataset's own rewrites by their alias, an LLM teacher by its name
    with pytest.raises(ConfigError, match="distill.weights: no teacher 'nobody'; the teachers are human, smollm2"):
        plan(validate({"work_dir": str(tmp_path), "distill": {"weights": {"nobody": 2.0}}}, ""))
    with pytest.raises(ConfigError, match="name one teacher twice"):
        plan(validate({"work_dir": str(tmp_path), "distill": {"weights": {"dataset": 2.0, "human": 1.0}}}, ""))
    with pytest.raises(ConfigError, match="weights weigh the mean fusion"):
        validate({"distill": {"fusion": "max", "weights": {"human": 2.0}}}, "")
    with pytest.raises(ConfigError, match="positive and finite"):
        validate({"distill": {"weights": {"human": float("inf")}}}, "")


def test_the_question_teacher_is_the_turn_as_written():
    from disco_core.config import TeacherConfig
    from disco_core.rewriters import make_rewriter

    rewriter = make_rewriter(TeacherConfig(name="asked", backend="question"), "human")
    rows = []
    rewriter.rewrite([{"query_id": "c_2", "utterance": "and its height?"}], rows.append)
    assert rows == [{"query_id": "c_2", "text": "and its height?", "status": "as-written"}]
    assert rewriter.llm_calls_per_turn == 0 and not rewriter.generates


def test_teacher_without_a_rewrite_is_left_out_of_the_mean():
    docs = sp.csr_matrix(np.eye(2, dtype=np.float32))
    scores = schemas.to_table("teacher_scores", {"query_id": ["q"], "doc_id": ["d0"], "teacher": ["A"],
                                                 "rank": [1], "score": [3.0]})
    vectors = {"A": (sp.csr_matrix(np.array([[3, 0]], dtype=np.float32)), ["q"]),
               "B": (sp.csr_matrix((0, 2), dtype=np.float32), [])}
    out = fuse(scores, vectors, docs, ["d0", "d1"], "mean").to_pydict()
    assert out["score"] == [3.0]


# ------------------------------------------------------------------ training and resume
@pytest.fixture(scope="module")
def tiny_task(encoder):
    rng = np.random.default_rng(0)
    words = ["bridge", "castle", "river", "tower", "harbour", "railway", "museum", "island"]
    doc_texts = [f"the {a} near the {b} was built in {1800 + i}" for i, (a, b) in
                 enumerate(zip(rng.choice(words, 40), rng.choice(words, 40)))]
    doc_matrix = encoder.encode(doc_texts)
    examples = []
    for i in range(12):
        scores = np.sort(rng.random(40).astype(np.float32) * 20)[::-1]
        examples.append(Example(f"q{i}", f"when was the {words[i % 8]} built? [SEP] tell me about it",
                                np.asarray([i]), rng.permutation(40), scores))
    return doc_matrix, doc_texts, examples


def settings(**kw):
    base = dict(seed=3, batch_size=4, epochs=2, negatives=4, negative_ranks=[2, 30], max_length=32,
                learning_rate=1e-3, log_every=1)
    return TrainConfig(**{**base, **kw})


def test_training_resumes_after_a_kill(tiny_task, tmp_path):
    doc_matrix, _, examples = tiny_task
    straight = Trainer("splade-tiny", settings(), doc_matrix, tmp_path / "straight")
    history = straight.train(examples)
    assert [h["epoch"] for h in history] == [1, 1, 1, 2, 2, 2]
    # "killed" after epoch 1: a trainer that stops there, then a fresh one picking up its checkpoint
    first = Trainer("splade-tiny", settings(epochs=1), doc_matrix, tmp_path / "resumed")
    first.train(examples)
    second = Trainer("splade-tiny", settings(), doc_matrix, tmp_path / "resumed")
    resumed = second.train(examples)
    assert second.step == 6 and [h["step"] for h in resumed] == [1, 2, 3, 4, 5, 6]
    assert first.resumed_epochs == 0 and second.resumed_epochs == 1
    for a, b in zip(straight.student.model.parameters(), second.student.model.parameters()):
        torch.testing.assert_close(a, b)
    assert (tmp_path / "resumed" / "checkpoints" / "epoch-2" / "trainer_state.pt").exists()


def test_final_model_reloads_with_automodel(tiny_task, tmp_path):
    from transformers import AutoModelForMaskedLM

    doc_matrix, _, examples = tiny_task
    trainer = Trainer("splade-tiny", settings(epochs=1, flops_weight=1e-3, reg_warmup_steps=2), doc_matrix,
                      tmp_path / "t")
    history = trainer.train(examples)
    assert all("flops" in h for h in history)
    folder = trainer.save_final(tmp_path / "model")
    reloaded = AutoModelForMaskedLM.from_pretrained(folder)
    for a, b in zip(trainer.student.model.state_dict().values(), reloaded.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_cached_document_vectors_match_reencoding(tiny_task, tmp_path):
    """The frozen encoder's vectors from the index equal a fresh forward pass: same first losses."""
    doc_matrix, doc_texts, examples = tiny_task
    losses = {}
    for source in ("cached", "encode"):
        trainer = Trainer("splade-tiny", settings(epochs=1, max_length=32), doc_matrix, tmp_path / source,
                          doc_source=source, doc_texts=doc_texts, doc_max_length=128)
        trainer.student.model.eval()  # no dropout: compare the same computation
        out = trainer.batch_loss(examples[:4], np.random.default_rng(0))
        losses[source] = out["loss"].item()
    assert losses["cached"] == pytest.approx(losses["encode"], rel=1e-4)


def test_another_example_of_the_same_turn_is_no_in_batch_negative(tiny_task, tmp_path):
    """Without fusion a turn has an example per teacher; in one batch they must not be each other's
    negatives: with two copies of one turn only its own positive is left, so the CE is 0."""
    doc_matrix, _, examples = tiny_task
    trainer = Trainer("splade-tiny", settings(), doc_matrix, tmp_path / "t")
    twice = trainer.batch_loss([examples[0], examples[0]], np.random.default_rng(0))
    assert twice["ce"].item() == pytest.approx(0.0, abs=1e-6)
    distinct = trainer.batch_loss(examples[:2], np.random.default_rng(0))
    assert distinct["ce"].item() > 0


def test_checkpoint_selection_on_a_dev_set(tiny_task, tmp_path):
    """With a dev set the trainer scores each epoch (real MRR@10 over an index) and keeps the best
    epoch's weights; resumed from a checkpoint, the dev history comes back too."""
    from transformers import AutoModelForMaskedLM

    from disco_core.distill import DevSet, dev_evaluator
    from disco_core.index import InvertedIndex

    doc_matrix, _, examples = tiny_task
    doc_ids = [f"d{i}" for i in range(doc_matrix.shape[0])]
    index = InvertedIndex.build(doc_matrix, doc_ids)
    dev = DevSet([e.query_id for e in examples[:6]], [e.text for e in examples[:6]],
                 {e.query_id: {doc_ids[int(e.positives[0])]: 1} for e in examples[:6]}, index)
    trainer = Trainer("splade-tiny", settings(epochs=3), doc_matrix, tmp_path / "t")
    history = trainer.train(examples[6:], dev=dev_evaluator([dev]))
    scores = trainer.dev_scores()
    assert sorted(scores) == [1, 2, 3] and all(0 <= v <= 1 for v in scores.values())
    assert [h["epoch"] for h in history if "dev" in h] == [1, 2, 3]
    best = trainer.best_epoch()
    assert scores[best] == max(scores.values())
    folder = trainer.save_final(tmp_path / "model", best)
    kept = AutoModelForMaskedLM.from_pretrained(folder).state_dict()
    checkpoint = AutoModelForMaskedLM.from_pretrained(tmp_path / "t" / "checkpoints" / f"epoch-{best}").state_dict()
    for name in kept:
        torch.testing.assert_close(kept[name], checkpoint[name])
    again = Trainer("splade-tiny", settings(epochs=3), doc_matrix, tmp_path / "t")
    again.train(examples[6:], dev=dev_evaluator([dev]))
    assert again.resumed_epochs == 3 and again.dev_scores() == scores


def test_checkpoint_state_loads_with_weights_only(tiny_task, tmp_path):
    """Checkpoints hold tensors only in the pickle (torch.load(weights_only=True)), the rest as JSON."""
    import json

    doc_matrix, _, examples = tiny_task
    Trainer("splade-tiny", settings(epochs=1), doc_matrix, tmp_path / "t").train(examples)
    folder = tmp_path / "t" / "checkpoints" / "epoch-1"
    state = torch.load(folder / "trainer_state.pt", weights_only=True)
    assert set(state) == {"optimizer", "torch_rng"}
    assert json.loads((folder / "trainer_state.json").read_text()) == {"step": 3, "epoch": 1}


def test_unjudged_turns_train_with_the_teachers_top_document():
    targets = {"a": [(["d2", "d0", "d1"], [3.0, 2.0, 1.0])], "b": [(["d1", "d2"], [2.0, 1.0])]}
    position = {"d0": 0, "d1": 1, "d2": 2}
    judged = build_examples(["a", "b"], ["ta", "tb"], targets, {"a": {"d0": 1}}, position)
    assert [e.query_id for e in judged] == ["a"] and judged[0].positives.tolist() == [0]
    both = build_examples(["a", "b"], ["ta", "tb"], targets, {"a": {"d0": 1}}, position, unjudged=True)
    assert [e.query_id for e in both] == ["a", "b"] and both[1].positives.tolist() == [1]  # b's top: d1
