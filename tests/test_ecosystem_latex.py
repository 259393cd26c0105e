"""Paper tables: significance letters and win/tie/loss as ranx computes them, valid booktabs rows."""

import re

import pytest

from disco_core.evaluation import evaluate
from disco_core.latex import escape, evaluation_latex, leaderboard_latex, win_tie_loss

QUERIES = [f"q{i}" for i in range(30)]
QRELS = {q: {f"{q}-rel": 1} for q in QUERIES}


def ranked(rank_of_relevant):
    """A run whose relevant document sits at the given rank (per query: a function of its index)."""
    run = {}
    for i, q in enumerate(QUERIES):
        docs = [f"{q}-other{j}" for j in range(5)]
        docs.insert(rank_of_relevant(i) - 1, f"{q}-rel")
        run[q] = [(d, 10.0 - r) for r, d in enumerate(docs)]
    return run


@pytest.fixture(scope="module")
def ev():
    runs = {"student (DiSCo)": ranked(lambda i: 1 if i % 5 else 2),  # mostly first
            "teacher: my_llm": ranked(lambda i: 3),                   # always third
            "last turn": ranked(lambda i: 1 if i % 2 else 3)}
    out = evaluate(QRELS, runs, ["mrr@10", "ndcg@3"])
    out.extra = {"student (DiSCo)": {"q nnz": 41.25, "LLM calls": 0},
                 "teacher: my_llm": {"q nnz": 12.0, "LLM calls": 1}, "last turn": {"q nnz": 8.0, "LLM calls": 0}}
    return out


def body_rows(latex):
    inside = latex.split("\\midrule\n")[1].split("\\bottomrule")[0]
    return [r.rstrip(" \\") for r in inside.strip().split("\n")]


def test_evaluation_table_marks_significance_best_and_win_tie_loss(ev):
    import ranx

    latex = evaluation_latex(ev, baseline="teacher: my_llm", caption="MTRAG test", label="tab:mtrag")
    assert latex.startswith("% needs \\usepackage{booktabs}\n\\begin{table}[t]")
    assert "\\caption{MTRAG test 30 queries." in latex and "\\label{tab:mtrag}" in latex
    rows = body_rows(latex)
    assert len(rows) == 3 and all(r.count(" & ") == 6 for r in rows)  # #, model, 2 metrics, 2 extra, W/T/L
    student, teacher, last = rows
    # the student beats the teacher and the last turn significantly on MRR@10: letters b and c, in bold
    assert student.startswith("a & student (DiSCo) & \\textbf{0.900}$^{bc}$")
    assert teacher.startswith("b & teacher: my\\_llm & 0.333 & ")  # beats nobody: no superscript
    assert "$^{b}$" in last.split(" & ")[2]  # the last turn beats the teacher
    # W/T/L against the teacher on MRR@10, as ranx's compare counts them
    report = ranx.compare(ranx.Qrels(QRELS), [ranx.Run({q: dict(h) for q, h in run.items()}, name=name)
                                             for name, run in _runs(ev).items()], ["mrr@10"], make_comparable=True)
    wtl = report.win_tie_loss[("student (DiSCo)", "teacher: my_llm")]["mrr@10"]
    assert win_tie_loss(ev, "student (DiSCo)", "teacher: my_llm", "mrr@10") == (wtl["W"], wtl["T"], wtl["L"])
    assert student.endswith(f"{wtl['W']}/{wtl['T']}/{wtl['L']}") and teacher.endswith("--")
    assert " & 41.2 & " in student or " & 41.3 & " in student  # extra columns, one decimal


def _runs(ev):
    # the runs behind the fixture, rebuilt (the Evaluation keeps per-query scores, not runs)
    return {"student (DiSCo)": ranked(lambda i: 1 if i % 5 else 2), "teacher: my_llm": ranked(lambda i: 3),
            "last turn": ranked(lambda i: 1 if i % 2 else 3)}


def test_leaderboard_bolds_the_best_and_keeps_markers():
    rows = [{"name": "lr=2e-4_b16", "mrr@10": 0.41, "q nnz": 50.0, "steps": 300},
            {"name": "lr=1e-4_b16", "mrr@10": (0.45, "$^\\dagger$"), "q nnz": 35.5, "steps": 300},
            {"name": "lr=5e-5 & more", "mrr@10": None, "q nnz": 80.0, "steps": 150}]
    latex = leaderboard_latex(rows, ["mrr@10", "q nnz", "steps"], lower_is_better=["q nnz"], caption="Sweep 50%")
    body = body_rows(latex)
    assert "MRR@10" in latex and "\\caption{Sweep 50\\%}" in latex
    assert body[0] == "lr=2e-4\\_b16 & 0.410 & 50.000 & \\textbf{300}"
    assert body[1] == "lr=1e-4\\_b16 & \\textbf{0.450}$^\\dagger$ & \\textbf{35.500} & \\textbf{300}"
    assert body[2] == "lr=5e-5 \\& more & -- & 80.000 & 150"


def test_escape_covers_latex_specials():
    assert escape("a_b & c% $5 #1 {x} ~^\\") == (
        "a\\_b \\& c\\% \\$5 \\#1 \\{x\\} \\textasciitilde{}\\textasciicircum{}\\textbackslash{}")
    assert not re.search(r"(?<!\\)[&%$#_]", escape("100% of a_b & c"))
