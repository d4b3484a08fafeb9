r"""Tables of a results folder: mean ± standard error over seeds, as text, Markdown, LaTeX or CSV.

Every number of a table is a mean over the seeds of a cell (generator point, method, measure,
task, metric) with its standard error :math:`s / \sqrt{n}` (s the sample standard deviation of
the n seed values); a cell of one seed shows its value alone. Each table says so in its title
and gives the seed count. :func:`compare` pairs the seeds that two folders share.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

FORMATS = ("text", "markdown", "latex", "csv")
#: what identifies a cell of a results table (a seed's value in it is one row)
CELL = ["generator_label", "method_label", "measure_label", "task", "metric"]


@dataclass(frozen=True)
class Stat:
    """Mean, standard error and count of a cell's seed values."""

    mean: float
    se: float
    n: int

    @classmethod
    def of(cls, values) -> Stat:
        v = np.asarray(values, dtype=float)
        v = v[~np.isnan(v)]
        if not len(v):
            return cls(math.nan, math.nan, 0)
        return cls(float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan, len(v))

    def text(self, digits: int = 3, pm: str = "±") -> str:
        if self.n == 0:
            return "-"
        if math.isnan(self.se):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} {pm} {self.se:.{digits}f}"


@dataclass
class Table:
    """A table to print or export: a title, column names and rows of cells (str, number, Stat)."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    digits: int = 3


def seeds_note(counts) -> str:
    """'over n seeds' (or 'over 2-5 seeds' where cells differ) for a title."""
    counts = sorted({int(c) for c in counts if c})
    if not counts:
        return "no seeds"
    if len(counts) == 1:
        n = counts[0]
        return f"over {n} seed{'s' if n > 1 else ''}" + ("" if n > 1 else " (no standard error)")
    return f"over {counts[0]}-{counts[-1]} seeds"


def _cell(value: Any, digits: int, pm: str = "±") -> str:
    if isinstance(value, Stat):
        return value.text(digits, pm)
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return "" if value is None else str(value)


def _text(table: Table) -> str:
    cells = [[_cell(v, table.digits) for v in row] for row in table.rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(table.columns)]
    numeric = [i > 0 and all(re.match(r"^-?[\d.]|^-$|^$", r[i]) for r in cells) for i in range(len(widths))]

    def line(items):
        return "  ".join(s.rjust(w) if num else s.ljust(w) for s, w, num in zip(items, widths, numeric)).rstrip()

    return "\n".join([table.title, line(table.columns), *(line(r) for r in cells)])


def _markdown(table: Table) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    head = "| " + " | ".join(esc(c) for c in table.columns) + " |"
    rule = "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(table.columns))) + "|"
    body = ["| " + " | ".join(esc(_cell(v, table.digits)) for v in row) + " |" for row in table.rows]
    return "\n".join([f"**{esc(table.title)}**", "", head, rule, *body])


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(s: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in s)


def _latex(table: Table) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, Stat) and v.n:
            return "$" + v.text(table.digits, r"\pm") + "$"
        return latex_escape(_cell(v, table.digits))

    spec = "l" + "r" * (len(table.columns) - 1)
    body = [" & ".join(cell(v) for v in row) + r" \\" for row in table.rows]
    return "\n".join([r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(table.title)}}}",
                      rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
                      " & ".join(latex_escape(c) for c in table.columns) + r" \\", r"\midrule", *body,
                      r"\bottomrule", r"\end{tabular}", r"\end{table}"])


def render(tables: list[Table], fmt: str = "text") -> str:
    """Tables as one text in ``fmt`` (text, markdown or latex), separated by blank lines."""
    draw = {"text": _text, "markdown": _markdown, "latex": _latex}[fmt]
    return "\n\n".join(draw(t) for t in tables)


# ---------------------------------------------------------------------------- summaries
def grid_order(df: pd.DataFrame, col: str) -> list:
    """The values of ``col`` in the order of the grid (their first grid index)."""
    if "grid_index" in df.columns and len(df):
        return list(df.groupby(col, sort=False).grid_index.min().sort_values(kind="stable").index)
    return list(dict.fromkeys(df[col]))


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (:data:`CELL`): mean, standard error and number of seeds, in grid order."""
    rows = []
    for key, part in df.groupby(CELL, sort=False, dropna=False):
        s = Stat.of(part.value)
        rows.append({**dict(zip(CELL, key)), "mean": s.mean, "se": s.se, "n": s.n,
                     "order": part.grid_index.min() if "grid_index" in part else 0})
    out = pd.DataFrame(rows, columns=[*CELL, "mean", "se", "n", "order"])
    return out.sort_values("order", kind="stable").drop(columns="order").reset_index(drop=True)


def metric_tables(df: pd.DataFrame, metrics: list[str] | None = None) -> list[Table]:
    """Per generator point, measure and metric: methods (rows, grid order) x tasks (columns)."""
    tables = []
    for (gen, measure), part in df.groupby(["generator_label", "measure_label"], sort=False):
        tasks = list(dict.fromkeys(part.task))
        methods = grid_order(part, "method_label")
        for metric in metrics or list(dict.fromkeys(part.metric)):
            sub = part[part.metric == metric]
            if sub.empty:
                continue
            stats = {k: Stat.of(g.value) for k, g in sub.groupby(["method_label", "task"], sort=False)}
            rows = [[m or "(observations)", *(stats.get((m, t), Stat.of([])) for t in tasks)]
                    for m in methods if any((m, t) in stats for t in tasks)]
            note = seeds_note(s.n for s in stats.values())
            tables.append(Table(f"{gen} - {measure}: {metric}, mean ± standard error {note}",
                                ["method", *tasks], rows))
    return tables


def compare(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    """Paired differences B - A over the cells and seeds two results tables share.

    Returns
    -------
    frame : DataFrame
        Per shared cell: the mean of A and of B, the mean difference, its standard error over
        the shared seeds and their number n.
    only_a, only_b : int
        Rows (cell x seed) that only A or only B holds (not compared).
    """
    keys = [*CELL, "seed"]
    left, right = (d[keys + ["value", "grid_index"]].drop_duplicates(keys) for d in (a, b))
    merged = left.merge(right, on=keys, suffixes=("_a", "_b"))
    merged["diff"] = merged.value_b - merged.value_a
    rows = []
    for key, part in merged.groupby(CELL, sort=False):
        d = Stat.of(part["diff"])
        rows.append({**dict(zip(CELL, key)), "mean_a": part.value_a.mean(), "mean_b": part.value_b.mean(),
                     "diff": d.mean, "se": d.se, "n": d.n, "order": part.grid_index_a.min()})
    frame = pd.DataFrame(rows, columns=[*CELL, "mean_a", "mean_b", "diff", "se", "n", "order"])
    frame = frame.sort_values("order", kind="stable").drop(columns="order").reset_index(drop=True)
    return frame, len(left) - len(merged), len(right) - len(merged)


def compare_table(frame: pd.DataFrame, name_a: str, name_b: str) -> Table:
    """The table of :func:`compare`: B - A as mean ± standard error over the paired seeds."""
    rows = [[r.generator_label, r.method_label or "(observations)", r.measure_label, r.task, r.metric,
             r.mean_a, r.mean_b, Stat(r["diff"], r.se, r.n), r.n] for _, r in frame.iterrows()]
    title = (f"B - A, paired over the seeds both hold: mean ± standard error {seeds_note(frame.n)} "
             f"(A = {name_a}, B = {name_b})")
    return Table(title, ["generator", "method", "measure", "task", "metric", "A", "B", "B - A", "n"], rows)
