"""Figures, built from a results table only: a small frame per figure first, drawing second."""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from synergy_bench.results import summary  # noqa: E402


def rus_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Balanced accuracy per (method, task): mean, std over seeds and chance level."""
    acc = summary(df, "balanced_accuracy")
    frame = acc["mean"].stack().rename("mean").to_frame()
    frame["std"] = acc["std"].stack()
    chance = df.drop_duplicates("task").set_index("task").chance
    frame["chance"] = [chance[t] for _, t in frame.index]
    return frame.reset_index().rename(columns={"level_1": "task"})


def draw_rus(frame: pd.DataFrame, title: str, path_stem: Path) -> list[Path]:
    """Grouped bars (one group per task, one bar per method) with error bars and chance lines."""
    methods = list(dict.fromkeys(frame.method_label))
    tasks = list(dict.fromkeys(frame.task))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(tasks) * max(1, len(methods) / 5), 3.6))
    colors = plt.get_cmap("tab10")
    for i, m in enumerate(methods):
        sub = frame[frame.method_label == m].set_index("task").reindex(tasks)
        x = np.arange(len(tasks)) + (i - (len(methods) - 1) / 2) * width
        ax.bar(x, sub["mean"], width, yerr=sub["std"], capsize=2, label=m, color=colors(i % 10))
    for j, t in enumerate(tasks):
        c = frame[frame.task == t].chance.iloc[0]
        ax.hlines(c, j - 0.45, j + 0.45, colors="k", linestyles="--", linewidth=1,
                  label="chance" if j == 0 else None)
    ax.set_xticks(np.arange(len(tasks)), tasks)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("balanced accuracy (test)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="lower left", bbox_to_anchor=(1.0, 0.0))
    fig.tight_layout()
    paths = [path_stem.with_suffix(s) for s in (".png", ".pdf")]
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths


def report(df: pd.DataFrame, fig_dir: Path) -> list[Path]:
    """Build every figure that applies to a results table; returns the written paths."""
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    labels = list(dict.fromkeys(df.generator_label))
    for gen_label in labels:
        part = df[df.generator_label == gen_label]
        stem = "rus" if len(labels) == 1 else "rus_" + re.sub(r"[^A-Za-z0-9=.-]+", "_", gen_label)
        title = f"{part.experiment.iloc[0]} — {gen_label}, {part.seed.nunique()} seed(s)"
        paths += draw_rus(rus_frame(part), title, fig_dir / stem)
    return paths
