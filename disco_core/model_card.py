"""The student's model card (``README.md`` with Hugging Face metadata), written from its provenance.

``provenance`` is a plain dict (saved beside the card as ``disco.json``); every key is optional
except ``base_model``:

name            a title (default ``DiSCo student (<base model>, <dataset>)``)
base_model      the student's initial checkpoint (alias, hub id or folder)
document_model  the frozen document encoder (``save_student`` fills it in)
dataset         ``{"name", "license", "source"}`` or a name
split           ``{"train_conversations", "test_conversations", "train_turns", "test_turns",
                "examples", "test_fraction", "seed"}``: how training and test data were separated
teachers        ``[{"name", "llm", "backend"}, ...]``: each teacher and the LLM (or people) behind it
fusion          how teachers' scores were combined (``mean``, ``max``, ``per-teacher``)
conversation    ``{"answers": "last", ...}``: how the student's input was formatted
settings        training settings (``TrainConfig.model_dump()``)
query_max_length, document_max_length   tokens kept per query / passage
scores          ``{"dev": evaluation, "test": evaluation}``: an Evaluation or its ``to_dict()``
student         the name of the student's row in ``scores`` (default: the first row named ``student...``)
query_nonzeros  the student's mean query non-zeros (default: its ``q nnz`` column in ``scores``)
llm_calls       LLM calls per turn at search time (the student: 0)
license, language   of the model card (default ``apache-2.0``, ``en``)
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from .evaluation import label as metric_label

CITATION = """@inproceedings{lupart2025disco,
  title={DiSCo: LLM Knowledge Distillation for Efficient Sparse Retrieval in Conversational Search},
  author={Lupart, Simon and Aliannejadi, Mohammad and Kanoulas, Evangelos},
  booktitle={Proceedings of the 48th International ACM SIGIR Conference on Research and Development in Information Retrieval},
  year={2025}
}"""


def describe_teacher(name: str, backend: str, models: list[str | None] = ()) -> dict:
    """A ``teachers`` entry: ``models`` is the ``model`` column of the teacher's rewrites table
    (the LLM that wrote them; null for people's rewrites and files without that record)."""
    named = sorted({m for m in models if m})
    llm = ", ".join(named) if named else ("people" if name == "human" else "unknown")
    return {"name": name, "backend": backend, "llm": llm}


def student_provenance(cfg, teachers: list[dict], split: dict, scores: dict, **more) -> dict:
    """The provenance of a pipeline run's student from its :class:`~disco_core.config.Config`.

    ``teachers``: :func:`describe_teacher` entries; ``split``: counts of train/test conversations
    and turns and training examples; ``scores``: ``{"test": Evaluation, ...}``; ``more``: any other
    key (``student``, ``query_nonzeros``, ``name``, ``license``)."""
    from .datasets import registry

    spec = registry.REGISTRY.get(cfg.dataset.name)
    dataset = {"name": cfg.dataset.name, **({"license": spec.license, "source": spec.source} if spec else {})}
    return {"base_model": cfg.encoder.model, "document_model": cfg.encoder.model, "dataset": dataset,
            "split": {"test_fraction": cfg.split.test_fraction, "seed": cfg.split.seed, **split},
            "teachers": teachers, "fusion": cfg.distill.fusion, "conversation": {"answers": cfg.conversation.answers},
            "settings": cfg.train.model_dump(mode="json"), "query_max_length": cfg.train.max_length,
            "document_max_length": cfg.encoder.doc_max_length, "scores": scores, "llm_calls": 0, **more}


def as_dict(evaluation) -> dict:
    """An Evaluation (or its dict) as a JSON-able dict."""
    return evaluation.to_dict() if hasattr(evaluation, "to_dict") else dict(evaluation)


def student_row(scores: dict, provenance: dict) -> str | None:
    named = provenance.get("student")
    if named:
        return named
    return next((row for row in scores.get("scores", {}) if row.lower().startswith("student")), None)


def _cell(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def scores_table(evaluation: dict, student: str | None = None) -> str:
    """A Markdown table of every row's metrics and extra columns (the student's row in bold)."""
    metrics = evaluation["metrics"]
    extra_cols = sorted({c for v in evaluation.get("extra", {}).values() for c in v})
    lines = ["| model | " + " | ".join([metric_label(m) for m in metrics] + extra_cols) + " |",
             "|---|" + "---:|" * (len(metrics) + len(extra_cols))]
    for row, values in evaluation["scores"].items():
        cells = [_cell(values.get(m), 4) for m in metrics]
        cells += [_cell(evaluation.get("extra", {}).get(row, {}).get(c), 1) for c in extra_cols]
        name = f"**{row}**" if row == student else row
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _front_matter(p: dict) -> str:
    lines = ["---", "library_name: sentence-transformers", "pipeline_tag: feature-extraction",
             f"license: {p.get('license', 'apache-2.0')}", f"language: {p.get('language', 'en')}", "tags:"]
    lines += [f"- {t}" for t in ("sentence-transformers", "sparse-encoder", "sparse", "splade", "asymmetric",
                                 "conversational-search", "knowledge-distillation", "disco")]
    base = str(p.get("base_model", ""))
    if base.count("/") == 1 and not base.startswith((".", "/", "~")):  # a hub id, not a local folder
        lines.append(f"base_model: {base}")
    return "\n".join(lines + ["---", ""])


def _teachers(p: dict) -> list[str]:
    teachers = p.get("teachers") or []
    if not teachers:
        return []
    lines = ["| teacher | LLM (or people) | backend |", "|---|---|---|"]
    for t in teachers:
        t = t if isinstance(t, dict) else {"name": str(t)}
        lines.append(f"| {t.get('name', '')} | {t.get('llm') or t.get('model') or ''} | {t.get('backend', '')} |")
    return lines


def _settings(p: dict) -> list[str]:
    settings = p.get("settings") or {}
    if not settings:
        return []
    return ["| setting | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in settings.items()]


def _split(p: dict) -> str:
    s = p.get("split") or {}
    parts = [f"{s[k]} {k.replace('_', ' ')}" for k in ("train_conversations", "train_turns", "examples",
                                                        "test_conversations", "test_turns") if k in s]
    if "test_fraction" in s:
        parts.append(f"test fraction {s['test_fraction']} of the conversations (seed {s.get('seed', '?')})")
    return "; ".join(parts) + "." if parts else "not recorded."


def _evaluation(p: dict) -> tuple[list[str], float | None]:
    lines, nnz = [], p.get("query_nonzeros")
    for split, evaluation in (p.get("scores") or {}).items():
        ev = as_dict(evaluation)
        student = student_row(ev, p)
        lines += [f"### {split}", "", f"{ev.get('n_queries', '?')} queries with a relevant judgment.", "",
                  scores_table(ev, student), ""]
        if nnz is None and student:
            nnz = ev.get("extra", {}).get(student, {}).get("q nnz")
    return lines, nnz


def render(provenance: dict, repo_id: str | None = None) -> str:
    """The model card's Markdown (with the YAML front matter the hub reads)."""
    p = provenance
    dataset = p.get("dataset") or {}
    dataset = dataset if isinstance(dataset, dict) else {"name": str(dataset)}
    name = p.get("name") or f"DiSCo student ({p.get('base_model', '?')}, {dataset.get('name', '?')})"
    where = repo_id or "path/to/this/folder"
    evaluation, nnz = _evaluation(p)
    conv = p.get("conversation") or {}
    lines = [
        _front_matter(p), f"# {name}", "",
        "A SPLADE **query encoder for conversational search**, trained with DiSCo (Lupart, Aliannejadi, "
        "Kanoulas, SIGIR 2025): it reads the whole conversation and was distilled from the query-document "
        "scores of teachers (SPLADE on standalone rewrites written by LLMs or people), so at search time it "
        "needs **no LLM call**. Documents are encoded by the frozen document encoder "
        f"`{p.get('document_model', '?')}`; the two share a vocabulary and score by dot product.", "",
        "## Usage (sentence-transformers)", "", "```python", "from sentence_transformers import SparseEncoder", "",
        f'model = SparseEncoder("{where}")',
        "# the query is the formatted conversation: current question, previous answer, earlier questions (newest first)",
        'query = "what about its price? [SEP] The iPhone 15 is a smartphone by Apple. [SEP] tell me about the iPhone 15"',
        '# a passage is its title, a space, then its text (the title once, if the text starts with it)',
        'documents = ["iPhone 15 The iPhone 15 launched at $799."]',
        "q = model.encode_query([query])          # the student",
        "d = model.encode_document(documents)     # the frozen document encoder",
        "print(model.similarity(q, d))", "```", "",
        f"`encode_query` expects the formatted conversation: `q_n [SEP] a_(n-1) [SEP] q_(n-1) [SEP] q_(n-2) ...` "
        f"(answers: `{conv.get('answers', 'last')}`; older turns are dropped first when it exceeds "
        f"{p.get('query_max_length', '?')} tokens). With disco installed, "
        "`disco_core.packaging.format_conversation(utterance, history, tokenizer=model.tokenizer, "
        "max_length=...)` builds it exactly as in training, and `format_document(title, text)` a passage.", "",
        "## Usage (transformers)", "",
        "The folder is also a plain masked-LM checkpoint of the query encoder: "
        "`AutoModelForMaskedLM.from_pretrained(...)`; a vector is `max over tokens of log(1 + relu(logits))`.", "",
        "## Training", "", f"- base model (student initialisation): `{p.get('base_model', '?')}`",
        f"- training data: {dataset.get('name', '?')}" + (f" ({dataset['license']})" if dataset.get("license") else ""),
        f"- split: {_split(p)}", f"- teacher fusion: {p.get('fusion', '?')}",
        "- loss: KL divergence to the teachers' scores over 1 positive + sampled negatives, plus in-batch "
        "cross-entropy; document encoder frozen", "", *_teachers(p), "", *_settings(p), "",
        "## Evaluation", "", *(evaluation or ["Not evaluated.", ""]),
        "## Efficiency", "",
        f"- query sparsity: {_cell(nnz, 1) or '?'} non-zero terms per query (mean, test queries)",
        f"- LLM calls at search time: {p.get('llm_calls', 0)} per turn (the teachers' rewriting needs one per turn)", "",
        "## Intended use and limits", "",
        "- First-stage sparse retrieval of passages for a conversation, with an inverted index built by the "
        "document encoder above; not a document encoder itself, not a generator.",
        "- Trained on one dataset's conversations: expect lower effectiveness on other domains, languages or "
        "conversation styles; evaluate on your data before relying on it.",
        "- The student imitates its teachers, including their mistakes and biases, and inherits the licences "
        "and biases of its base model and training data.",
        "- Inputs longer than the maximum length lose their oldest turns; very long answers are cut.", "",
        "## Citation", "", "```bibtex", CITATION, "```", "",
        f"Generated by disco on {datetime.now(timezone.utc).strftime('%Y-%m-%d')}.", ""]
    return "\n".join(lines)
