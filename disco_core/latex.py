"""Paper tables: an :class:`~disco_core.evaluation.Evaluation` or a leaderboard as LaTeX (booktabs).

The significance markers follow ranx's ``Report.to_latex``: every row gets a letter (a, b, c, ...)
and a score carries, as a superscript, the letters of the rows it is significantly better than
(the paired test and p threshold of the evaluation, p-values from ranx). The best score of each
column is bold. With a ``baseline``, a W/T/L column counts the queries on which each row beats,
ties or loses to the baseline on the first metric (ranx's win/tie/loss, from the per-query scores).

ranx's own ``to_latex`` is not used as is: it prints preamble notes around the table, has no
win/tie/loss column and no room for the report's extra columns (query non-zeros, LLM calls).
Output: a ``table`` environment to paste; it needs ``\\usepackage{booktabs}``.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence

from .evaluation import Evaluation, label as metric_label

STAT_TESTS = {"student": "paired Student's t-test", "fisher": "Fisher's randomization test",
              "tukey": "Tukey's HSD test"}
_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
             "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def escape(text: str) -> str:
    """Plain text safe inside a LaTeX table cell."""
    return "".join(_SPECIALS.get(c, c) for c in str(text))


def win_tie_loss(ev: Evaluation, variant: str, baseline: str, metric: str) -> tuple[int, int, int]:
    """Queries on which ``variant`` scores above, equal to, below ``baseline`` on ``metric``."""
    mine, theirs = ev.per_query[variant][metric], ev.per_query[baseline][metric]
    queries = set(mine) | set(theirs)
    wins = sum(mine.get(q, 0.0) > theirs.get(q, 0.0) for q in queries)
    losses = sum(mine.get(q, 0.0) < theirs.get(q, 0.0) for q in queries)
    return wins, len(queries) - wins - losses, losses


def _letters(n: int) -> list[str]:
    return [string.ascii_lowercase[i] if i < 26 else f"z{i - 25}" for i in range(n)]


def _table(header: list[str], body: list[list[str]], caption: str, label: str, align: str) -> str:
    lines = ["% needs \\usepackage{booktabs}", "\\begin{table}[t]", "\\centering",
             f"\\caption{{{caption}}}", f"\\label{{{label}}}", f"\\begin{{tabular}}{{{align}}}", "\\toprule",
             " & ".join(header) + " \\\\", "\\midrule"]
    lines += [" & ".join(row) + " \\\\" for row in body]
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def _number(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "--"
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def evaluation_latex(ev: Evaluation, baseline: str | None = None, caption: str | None = None,
                     label: str = "tab:disco", digits: int = 3, metrics: Sequence[str] | None = None,
                     extra: bool = True) -> str:
    """The evaluation as a LaTeX table: rows = variants (in the evaluation's order), columns = the
    metrics (with significance letters), the extra columns (``q nnz``, ``LLM calls``, ...) and, with
    ``baseline``, W/T/L against it on the first metric."""
    metrics = list(metrics or ev.metrics)
    variants = list(ev.scores)
    letters = dict(zip(variants, _letters(len(variants))))
    best = {m: max(round(ev.scores[v][m], digits) for v in variants) for m in metrics}
    extra_cols = sorted({c for v in ev.extra.values() for c in v}) if extra else []
    header = ["", "Model"] + [f"\\textbf{{{escape(metric_label(m))}}}" for m in metrics]
    header += [escape(c) for c in extra_cols]
    if baseline:
        header.append(f"W/T/L ({escape(metric_label(metrics[0]))})")
    body = []
    for v in variants:
        row = [letters[v], escape(v)]
        for m in metrics:
            score = _number(ev.scores[v][m], digits)
            if round(ev.scores[v][m], digits) == best[m]:
                score = f"\\textbf{{{score}}}"
            marks = "".join(letters[o] for o in variants if o != v and ev.significant(v, o, m))
            row.append(f"{score}$^{{{marks}}}$" if marks else score)
        row += [_number(ev.extra.get(v, {}).get(c), 1) for c in extra_cols]
        if baseline:
            row.append("--" if v == baseline else "/".join(map(str, win_tie_loss(ev, v, baseline, metrics[0]))))
        body.append(row)
    test = STAT_TESTS.get(ev.stat_test, ev.stat_test)
    note = (f"{ev.n_queries} queries. Superscripts: significantly better than the row with that letter "
            f"({test}, $p < {ev.max_p}$, ranx). Best in bold.")
    if baseline:
        note += f" W/T/L: queries won, tied, lost against {escape(baseline)}."
    caption = f"{escape(caption)} {note}" if caption else note
    align = "cl" + "c" * len(metrics) + "r" * len(extra_cols) + ("c" if baseline else "")
    return _table(header, body, caption, label, align)


def leaderboard_latex(rows: Sequence[Mapping], columns: Sequence[str], name: str = "name",
                      caption: str | None = None, label: str = "tab:leaderboard", digits: int = 3,
                      lower_is_better: Sequence[str] = (), headers: Mapping[str, str] | None = None) -> str:
    """Rows of a sweep leaderboard (dicts) as LaTeX; the best value of each numeric column is bold.

    A cell may be a number, a string, or ``(number, marker)`` to print a marker after the number
    (e.g. ``"$^\\dagger$"`` for a significant difference computed elsewhere). ``headers`` renames
    columns (default: metric labels, ``mrr@10`` -> ``MRR@10``)."""
    headers = dict(headers or {})

    def value(cell):
        return cell[0] if isinstance(cell, tuple) else cell

    best = {}
    for c in columns:
        numbers = [round(value(r[c]), digits) for r in rows
                   if isinstance(value(r.get(c)), (int, float)) and not math.isnan(value(r[c]))]
        if numbers:
            best[c] = min(numbers) if c in lower_is_better else max(numbers)
    body = []
    for r in rows:
        cells = [escape(r[name])]
        for c in columns:
            cell = r.get(c)
            v, marker = (cell if isinstance(cell, tuple) else (cell, ""))
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                text = _number(v, digits)
                if c in best and round(v, digits) == best[c]:
                    text = f"\\textbf{{{text}}}"
            else:
                text = "--" if v is None else escape(v)
            cells.append(text + marker)
        body.append(cells)
    header = [escape(headers.get(name, name))] + [escape(headers.get(c, metric_label(c))) for c in columns]
    return _table(header, body, escape(caption) if caption else "Leaderboard. Best in bold.", label,
                  "l" + "c" * len(columns))
