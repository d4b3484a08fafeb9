"""Figures of the sample PID estimators (:mod:`synergy_bench.measures.pid_estimate`), drawn from
the per-cell frame of :func:`~synergy_bench.measures.pid_estimate.cells` alone."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

ATOMS = ("redundancy", "unique1", "unique2", "synergy")
SYMBOLS = {"redundancy": "R", "unique1": "U1", "unique2": "U2", "synergy": "S"}
COLORS = {"redundancy": "#1b9e77", "unique1": "#d95f02", "unique2": "#7570b3", "synergy": "#e7298a"}


def _save(fig, stem: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = [stem.with_suffix(s) for s in (".png", ".pdf")]
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_errors(frame: pd.DataFrame, title: str, stem: Path) -> list[Path]:
    """One panel per estimator: mean |error| over seeds per atom against N (log x). Thin lines:
    each case-task; thick: their mean at the sizes every case-task of the estimator has."""
    plt = _pyplot()
    estimators = list(dict.fromkeys(frame.estimator))
    fig, axes = plt.subplots(1, len(estimators), figsize=(4.2 * len(estimators), 3.6), sharey=True, squeeze=False)
    for ax, est in zip(axes[0], estimators):
        part = frame[frame.estimator == est]
        groups = part.groupby(["case", "task"], sort=False)
        common = set.intersection(*(set(p.samples) for _, p in groups))
        for atom in ATOMS:
            err = part.assign(err=[s.mean for s in part[f"err_{atom}"]])
            for _, p in err.groupby(["case", "task"], sort=False):
                line = p.sort_values("samples")
                ax.plot(line.samples, line.err, color=COLORS[atom], alpha=0.25, linewidth=0.8)
            mean = err[err.samples.isin(common)].groupby("samples").err.mean()
            ax.plot(mean.index, mean.values, "o-", color=COLORS[atom], linewidth=2.2, label=SYMBOLS[atom])
        ax.set_xscale("log")
        ax.set_xlabel("samples N")
        ax.set_title(textwrap.fill(f"{est} ({groups.ngroups} case-tasks)", 48), fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("|estimate - truth| (bits), mean over seeds")
    axes[0][-1].legend(fontsize=8, title="atom (thick: mean)", title_fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, stem)


def _names(labels: list[str], tasks: list[str]) -> tuple[list[str], str]:
    """Short bar names for case labels (and tasks, where several), and the x-axis title:
    ``gaussian[setting=mix1]`` -> ``mix1`` under ``gaussian setting`` when every case differs in
    that one parameter only; else the label without its generator name."""
    parts = [re.fullmatch(r"([^[]*)\[([^=,\]]+)=([^,\]]*)\]", c) for c in labels]
    one = all(parts) and len({(m[1], m[2]) for m in parts}) == 1
    names = [m[3] for m in parts] if one else [re.sub(r"^[^[]*\[(.*)\]$", r"\1", c) for c in labels]
    if len(set(tasks)) > 1:
        names = [f"{n} {t}" for n, t in zip(names, tasks)]
    return names, f"{parts[0][1]} {parts[0][2]}" if one else "case"


def draw_estimates(frame: pd.DataFrame, title: str, stem: Path) -> list[Path]:
    """One panel per estimator: grouped bars of the estimated atoms of every case-task at its
    largest N (mean over seeds; error bars: standard error over seeds, where there are several)."""
    plt = _pyplot()
    largest = frame.groupby(["estimator", "case", "task"], sort=False).samples.transform("max")
    frame = frame[frame.samples == largest]
    short, xlabel = _names(list(frame.case), list(frame.task))
    frame = frame.assign(name=short)
    names = list(dict.fromkeys(frame.name))
    estimators = list(dict.fromkeys(frame.estimator))
    width = 0.8 / len(ATOMS)
    fig, axes = plt.subplots(len(estimators), 1, figsize=(max(5.0, 1.6 + 0.75 * len(names)), 2.9 * len(estimators)),
                             sharey=True, squeeze=False)
    for ax, est in zip(axes[:, 0], estimators):
        part = frame[frame.estimator == est].set_index("name").reindex(names)
        for i, atom in enumerate(ATOMS):
            stats = [s if hasattr(s, "mean") else None for s in part[f"est_{atom}"]]  # NaN: no such cell
            mean = np.array([s.mean if s else np.nan for s in stats])
            se = np.array([s.se if s and s.n > 1 else np.nan for s in stats])
            x = np.arange(len(names)) + (i - (len(ATOMS) - 1) / 2) * width
            ax.bar(x, mean, width, yerr=se if np.isfinite(se).any() else None, capsize=1.5,
                   color=COLORS[atom], label=SYMBOLS[atom])
        sizes = sorted({int(n) for n in frame[frame.estimator == est].samples})
        ax.set_title(textwrap.fill(f"{est}, N = {', '.join(map(str, sizes))}", 100), fontsize=9)
        ax.set_xticks(np.arange(len(names)), names, rotation=30 if len(names) > 4 else 0,
                      ha="right" if len(names) > 4 else "center", fontsize=8)
        ax.set_ylabel("estimate (bits)")
        ax.grid(axis="y", alpha=0.3)
    axes[-1][0].set_xlabel(xlabel + "   (error bars: standard error over seeds)")
    axes[0][0].legend(fontsize=8, ncol=4, loc="upper right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, stem)


def figures(frame: pd.DataFrame, experiment: str, fig_dir: Path) -> list[Path]:
    """Every figure that applies to the per-cell frame; the written paths."""
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    if frame.empty:
        return paths
    if frame.exact.any():
        paths += draw_errors(frame[frame.exact], f"{experiment}: estimator error against the exact PID",
                             fig_dir / "errors")
    if (~frame.exact).any():
        paths += draw_estimates(frame[~frame.exact], f"{experiment}: estimated PID where the truth is not exact",
                                fig_dir / "estimates")
    return paths
