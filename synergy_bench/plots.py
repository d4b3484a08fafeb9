"""Figures, built from a results table only: a small frame per figure first, drawing second.

Which figures a results table gets depends on what its grid varies, never on its name:

* ``rus``: always, one per generator label: balanced accuracy per method and task (grouped bars).
* ``synergy``: when the exact synergy of the S task differs across the generator grid (k, label
  noise, ...): the bits a linear probe certifies on S, and their fraction of the task's
  information, against the exact S, one line per method (mean ± std over seeds).
* ``masking``: when InfMasking's ``mask_ratio``, ``num_masks`` or ``mask_lambda`` vary: balanced
  accuracy over (mask ratio x number of masks) as a heat map and as curves, and against lambda.
* ``published``: on the Trifeature generator, our mean ± std beside the published numbers
  (:mod:`synergy_bench.published`), with the deviation in published standard deviations.

Every figure is written as PNG and PDF.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from synergy_bench.published import TRIFEATURE, TRIFEATURE_PROTOCOL, TRIFEATURE_TASKS
from synergy_bench.results import summary

MASK_KNOBS = ("mask_ratio", "num_masks", "mask_lambda")
# the generator parameter whose values run along the x axis of the synergy figure (first that varies);
# every other varying generator parameter gets its own panel
SYNERGY_X = ("k", "synergy", "label_noise")


# ---------------------------------------------------------------------------- helpers
def _save(fig, stem: Path) -> list[Path]:
    """Write ``stem``.png and ``stem``.pdf (the stem may contain dots) and close the figure."""
    with warnings.catch_warnings():  # a long outside legend may defeat tight_layout; the saved
        warnings.simplefilter("ignore", UserWarning)  # bounding box below still takes it in
        fig.tight_layout()
    paths = [stem.parent / (stem.name + s) for s in (".png", ".pdf")]
    for p in paths:
        fig.savefig(p, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return paths


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9=.-]+", "_", label).strip("_")


def _parse(col: pd.Series) -> list[dict]:
    """JSON parameter strings -> dicts (each distinct string parsed once)."""
    cache = {s: json.loads(s) for s in col.unique()}
    return [cache[s] for s in col]


def _varying(dicts: list[dict]) -> list[str]:
    """Sorted keys whose values differ between the dicts (a missing key counts as a value)."""
    keys = sorted({k for d in dicts for k in d})
    return [k for k in keys if len({json.dumps(d.get(k), sort_keys=True) for d in dicts}) > 1]


def _method_order(df: pd.DataFrame) -> list[str]:
    """Method labels in grid order."""
    return list(df.groupby("method_label").grid_index.min().sort_values().index)


def _stats(df: pd.DataFrame, keys: list[str], col: str = "value", prefix: str = "") -> pd.DataFrame:
    """Mean, std (ddof 1, NaN for one seed) and count of ``col`` over the rows of each group."""
    g = df.groupby(keys, sort=False)[col]
    out = pd.DataFrame({f"{prefix}mean": g.mean(), f"{prefix}std": g.std(ddof=1), f"{prefix}n": g.count()})
    return out.reset_index()


# ---------------------------------------------------------------------------- R/U/S bars
def grid_points(df: pd.DataFrame) -> list[str]:
    """Each row's generator grid point, named by the parameters that vary (e.g. ``k=4 label_noise=0.1``)."""
    params = _parse(df.generator_params)
    keys = _varying(params)
    return [" ".join(f"{k}={p.get(k)}" for k in keys) for p in params]


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
    fig, ax = plt.subplots(figsize=(min(18.0, 1.6 + 1.5 * len(tasks) * max(1, len(methods) / 5)), 3.6))
    colors = plt.get_cmap("tab10")
    for i, m in enumerate(methods):
        sub = frame[frame.method_label == m].set_index("task").reindex(tasks)
        x = np.arange(len(tasks)) + (i - (len(methods) - 1) / 2) * width
        ax.bar(x, sub["mean"], width, yerr=sub["std"], capsize=2, label=m, color=colors(i % 10))
    for j, t in enumerate(tasks):
        c = frame[frame.task == t].chance.iloc[0]
        ax.hlines(c, j - 0.45, j + 0.45, colors="k", linestyles="--", linewidth=1,
                  label="chance" if j == 0 else None)
    ax.set_xticks(np.arange(len(tasks)), tasks, rotation=30 if len(tasks) > 6 else 0,
                  ha="right" if len(tasks) > 6 else "center", fontsize=8 if len(tasks) > 6 else None)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("balanced accuracy (test)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="lower left", bbox_to_anchor=(1.0, 0.0))
    return _save(fig, path_stem)


# ---------------------------------------------------------------------------- synergy vs strength
def synergy_frame(df: pd.DataFrame, task: str = "S") -> pd.DataFrame:
    """Synergy captured per (generator setting, method), or an empty frame if S does not vary.

    For every generator label and method: the exact synergy ``truth_synergy`` and information
    ``truth_bits`` of ``task``; the certified bits (``bits_*``), their fraction of the task's
    information, bits / truth_bits per seed (``fraction_*``, NaN where truth_bits = 0), and the
    balanced accuracy (``acc_*``), each as mean, std over seeds and count; plus one column per
    varying generator parameter. ``attrs["varying"]`` lists those parameters. The frame is empty
    unless at least two generator settings have different, known exact synergy.
    """
    sub = df[df.task == task]
    truth = sub.groupby("generator_label", sort=False).truth_synergy.first().dropna()
    if truth.nunique() < 2:
        return pd.DataFrame()
    sub = sub[sub.generator_label.isin(truth.index)]
    keys = ["generator_label", "method_label"]
    bits = sub[sub.metric == "bits"].copy()
    bits["fraction"] = bits.value / bits.truth_bits.where(bits.truth_bits > 0)
    frame = _stats(bits, keys, prefix="bits_").merge(
        _stats(bits, keys, "fraction", "fraction_").drop(columns="fraction_n"), on=keys).merge(
        _stats(sub[sub.metric == "balanced_accuracy"], keys, prefix="acc_").drop(columns="acc_n"),
        on=keys, how="left").rename(columns={"bits_n": "n_seeds"})
    first = sub.drop_duplicates("generator_label").set_index("generator_label")
    params = dict(zip(first.index, _parse(first.generator_params)))
    varying = _varying(list(params.values()))
    for p in varying:
        frame[p] = [params[g].get(p) for g in frame.generator_label]
    frame["truth_synergy"] = frame.generator_label.map(first.truth_synergy)
    frame["truth_bits"] = frame.generator_label.map(first.truth_bits)
    frame["_order"] = frame.method_label.map({m: i for i, m in enumerate(_method_order(sub))})
    frame = frame.sort_values(["_order", "truth_synergy"], kind="stable").drop(columns="_order")
    frame = frame[keys + varying + [c for c in frame.columns if c not in keys + varying]].reset_index(drop=True)
    frame.attrs["varying"] = varying
    return frame


def draw_synergy(frame: pd.DataFrame, title: str, path_stem: Path) -> list[Path]:
    """Top: certified bits vs exact S (the diagonal is the truth); bottom: fraction of the task's
    information. One line per method with std error bars; one panel column per value of the
    varying generator parameters other than the x-axis one."""
    varying = frame.attrs.get("varying", [])
    x_param = next((p for p in SYNERGY_X if p in varying), varying[0] if varying else None)
    panel_by = [p for p in varying if p != x_param]
    panels = (list(frame.groupby(panel_by, sort=True, dropna=False)) if panel_by else [((), frame)])
    methods = list(dict.fromkeys(frame.method_label))
    colors = plt.get_cmap("tab10")
    fig, axes = plt.subplots(2, len(panels), figsize=(1.5 + 3.4 * len(panels), 6.0), squeeze=False,
                             sharex=True, sharey="row")
    lim = [frame.truth_synergy.min(), frame.truth_synergy.max()]
    for j, (key, part) in enumerate(panels):
        key = key if isinstance(key, tuple) else (key,)
        for i, m in enumerate(methods):
            line = part[part.method_label == m].sort_values("truth_synergy")
            for row, col in ((0, "bits"), (1, "fraction")):
                axes[row, j].errorbar(line.truth_synergy, line[f"{col}_mean"], yerr=line[f"{col}_std"],
                                      marker="o", ms=3, capsize=2, color=colors(i % 10), label=m)
        axes[0, j].plot(lim, lim, "k--", lw=1, label="exact S")
        axes[1, j].axhline(1.0, color="k", ls="--", lw=1)
        axes[1, j].axhline(0.0, color="grey", lw=0.5)
        axes[0, j].set_title(", ".join(f"{p}={v}" for p, v in zip(panel_by, key)) or title, fontsize=9)
        axes[1, j].set_xlabel(f"exact synergy S (bits){f', varying {x_param}' if x_param else ''}")
    axes[0, 0].set_ylabel("bits certified on S")
    axes[1, 0].set_ylabel("bits / I(X1,X2;Y)")
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if panel_by:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path_stem)


# ---------------------------------------------------------------------------- masking ablation
def masking_frame(df: pd.DataFrame, method: str = "infmasking") -> pd.DataFrame:
    """Balanced accuracy per (generator, task, method setting), or empty if no mask knob varies.

    Rows of ``method`` carry its knobs ``mask_ratio``, ``num_masks``, ``mask_lambda`` and
    ``config`` (its other parameters, as JSON); rows of the other methods on the same tasks are
    references (``reference`` True, knobs NaN). ``mean``, ``std``, ``n``: over seeds; ``chance``:
    the task's chance level.
    """
    acc = df[df.metric == "balanced_accuracy"]
    own = acc[acc.method == method]
    if own.empty:
        return pd.DataFrame()
    params = _parse(own.method_params)
    if not any(k in _varying(params) for k in MASK_KNOBS):
        return pd.DataFrame()
    keys = ["generator_label", "task", "method_label"]
    frame = _stats(acc[acc.task.isin(own.task.unique())], keys)
    first = dict(zip(own.method_label, params))
    frame["reference"] = ~frame.method_label.isin(first)
    frame["chance"] = frame.task.map(acc.drop_duplicates("task").set_index("task").chance)
    for k in MASK_KNOBS:
        frame[k] = [first[m].get(k) if m in first else np.nan for m in frame.method_label]
    frame["config"] = [json.dumps({k: v for k, v in first[m].items() if k not in MASK_KNOBS}, sort_keys=True)
                       if m in first else "" for m in frame.method_label]
    return frame


def masking_panels(part: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The drawable pieces of one (generator, task) of a masking frame.

    The base setting is the most frequent (config, mask_lambda) among the method's rows:

    * ``heat``: mean accuracy of the base setting, rows mask_ratio x columns num_masks (when both
      take >= 2 values);
    * ``ratio`` / ``masks``: the base setting's rows (when mask_ratio / num_masks take >= 2 values);
    * ``lambda``: rows of the base config at the (mask_ratio, num_masks) with the most lambdas
      (when there are >= 2);
    * ``reference``: the other methods' rows.
    """
    own = part[~part.reference]
    out = {"reference": part[part.reference]}
    if own.empty:
        return out
    base = own.groupby(["config", "mask_lambda"], sort=False).size().idxmax()
    grid = own[(own.config == base[0]) & (own.mask_lambda == base[1])]
    n_ratio, n_masks = grid.mask_ratio.nunique(), grid.num_masks.nunique()
    if n_ratio >= 2 and n_masks >= 2:
        out["heat"] = grid.pivot_table(index="mask_ratio", columns="num_masks", values="mean")
    if n_ratio >= 2:
        out["ratio"] = grid
    if n_masks >= 2:
        out["masks"] = grid
    same = own[own.config == base[0]]
    counts = same.groupby(["mask_ratio", "num_masks"]).mask_lambda.nunique()
    if len(counts) and counts.max() >= 2:
        ratio, masks = counts.idxmax()
        out["lambda"] = same[(same.mask_ratio == ratio) & (same.num_masks == masks)].sort_values("mask_lambda")
    return out


def _curves(ax, data: pd.DataFrame, x: str, by: str, refs: pd.DataFrame, chance: float) -> None:
    cmap = plt.get_cmap("viridis")
    values = sorted(data[by].unique())
    for i, v in enumerate(values):
        line = data[data[by] == v].sort_values(x)
        ax.errorbar(line[x], line["mean"], yerr=line["std"], marker="o", ms=3, capsize=2,
                    color=cmap(i / max(1, len(values) - 1)), label=f"{by}={v:g}")
    _references(ax, refs, chance)
    ax.set_xlabel(x)
    ax.legend(fontsize=6)


def _references(ax, refs: pd.DataFrame, chance: float) -> None:
    for i, r in enumerate(refs.itertuples()):
        ax.axhline(r.mean, color=plt.get_cmap("tab10")(i % 10), ls="--", lw=1, label=r.method_label)
    ax.axhline(chance, color="k", ls=":", lw=1, label="chance")
    ax.set_ylim(chance - 0.02, 1.01)  # the full range above chance: noise there stays flat


def draw_masking(frame: pd.DataFrame, title: str, path_stem: Path) -> list[Path]:
    """One row per task: heat map over (mask_ratio x num_masks), curves against each, and against
    lambda, as far as the data holds them; other methods as dashed reference lines, chance dotted.
    The heat map's colours span chance to 1, so noise at chance stays one colour."""
    tasks = list(dict.fromkeys(frame.task))
    rows = [masking_panels(frame[frame.task == t]) for t in tasks]
    kinds = [k for k in ("heat", "ratio", "masks", "lambda") if any(k in r for r in rows)]
    if not kinds:
        return []
    fig, axes = plt.subplots(len(tasks), len(kinds), figsize=(0.8 + 3.8 * len(kinds), 3.3 * len(tasks)),
                             squeeze=False)
    for i, (task, panels) in enumerate(zip(tasks, rows)):
        refs, chance = panels["reference"], float(frame[frame.task == task].chance.iloc[0])
        for j, kind in enumerate(kinds):
            ax = axes[i, j]
            if kind not in panels:
                ax.axis("off")
                continue
            if kind == "heat":
                heat = panels["heat"]
                im = ax.imshow(heat.values, origin="lower", aspect="auto", cmap="viridis", vmin=chance,
                               vmax=1.0)
                ax.set_xticks(range(heat.shape[1]), [f"{v:g}" for v in heat.columns])
                ax.set_yticks(range(heat.shape[0]), [f"{v:g}" for v in heat.index])
                for (a, b), v in np.ndenumerate(heat.values):
                    if np.isfinite(v):
                        ax.text(b, a, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w")
                ax.set_xlabel("num_masks T")
                ax.set_ylabel("mask_ratio rho")
                fig.colorbar(im, ax=ax, fraction=0.046)
            elif kind == "ratio":
                _curves(ax, panels["ratio"], "mask_ratio", "num_masks", refs, chance)
            elif kind == "masks":
                _curves(ax, panels["masks"], "num_masks", "mask_ratio", refs, chance)
            else:
                line = panels["lambda"]
                ax.errorbar(line.mask_lambda, line["mean"], yerr=line["std"], marker="o", ms=3, capsize=2,
                            color="k", label=f"rho={line.mask_ratio.iloc[0]:g}, T={line.num_masks.iloc[0]:g}")
                _references(ax, refs, chance)
                ax.set_xlabel("mask_lambda")
                ax.legend(fontsize=6)
            ax.set_title(f"{task}: balanced accuracy" + (" (mean)" if kind == "heat" else ""), fontsize=9)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path_stem)


# ---------------------------------------------------------------------------- ours vs published
def published_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Our Trifeature balanced accuracy (%) beside the published numbers; empty if not Trifeature.

    One row per (generator label, method label, task, published row of that method):
    ``ours_mean``, ``ours_std`` (over seeds, NaN for one seed), ``n_seeds``, ``published_mean``,
    ``published_std`` (NaN where the paper gives none), ``deviation`` = (ours_mean -
    published_mean) / published_std, ``source``. Where the generator has a ``protocol``
    parameter, R and U are compared on the R/U protocol only and S on the S protocol only.
    """
    sub = df[(df.generator == "trifeature") & (df.metric == "balanced_accuracy")
             & df.task.isin(list(TRIFEATURE_TASKS))]
    if sub.empty:
        return pd.DataFrame()
    protocol = pd.Series([p.get("protocol") for p in _parse(sub.generator_params)], index=sub.index)
    order = {m: i for i, m in enumerate(_method_order(df))}
    rows = []
    for (gen, label, task), g in sub.groupby(["generator_label", "method_label", "task"], sort=False):
        col = TRIFEATURE_TASKS[task]
        proto = protocol[g.index[0]]
        if proto is not None and proto != TRIFEATURE_PROTOCOL[col]:
            continue
        ours = 100.0 * g.value
        for pub in TRIFEATURE:
            if pub.method != g.method.iloc[0] or col not in pub.scores:
                continue
            mean, std = pub.scores[col]
            std = np.nan if std is None else std
            rows.append({"generator_label": gen, "method_label": label, "method": pub.method,
                         "published": pub.name, "task": task, "published_task": col,
                         "ours_mean": ours.mean(), "ours_std": ours.std(ddof=1), "n_seeds": ours.size,
                         "published_mean": mean, "published_std": std,
                         "deviation": (ours.mean() - mean) / std if std and np.isfinite(std) else np.nan,
                         "chance": 100.0 * g.chance.iloc[0], "source": pub.source,
                         "_order": (order[label], list(TRIFEATURE_TASKS).index(task), gen)})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows).sort_values("_order", kind="stable").drop(columns="_order")
    return frame.reset_index(drop=True)


def _pm(mean: float, std: float) -> str:
    return f"{mean:.1f}" + (f" ± {std:.1f}" if np.isfinite(std) else "")


def format_published(frame: pd.DataFrame) -> str:
    """Plain-text side-by-side table of a :func:`published_frame`."""
    if frame.empty:
        return ""
    width = max(len(m) for m in [*frame.method_label, "method"]) + 2
    pub_w = max(len(p) for p in [*frame.published, "published"]) + 2
    lines = [("Trifeature, ours vs published: linear-probe accuracy (%), mean ± std over seeds; "
              "dev = (ours - published) / published std")]
    for gen, part in frame.groupby("generator_label", sort=False):
        lines.append(f"{gen} ({part.n_seeds.max()} seed(s))")
        lines.append(f"{'method':<{width}}{'published':<{pub_w}}{'task':<7}{'ours':>14}{'published':>14}"
                     f"{'dev':>8}   source")
        for r in part.itertuples():
            dev = f"{round(r.deviation, 1) + 0.0:+.1f}" if np.isfinite(r.deviation) else "-"
            lines.append(f"{r.method_label:<{width}}{r.published:<{pub_w}}{r.task + ' (' + r.published_task + ')':<7}"
                         f"{_pm(r.ours_mean, r.ours_std):>14}{_pm(r.published_mean, r.published_std):>14}"
                         f"{dev:>8}   {r.source}")
    return "\n".join(lines)


def draw_published(frame: pd.DataFrame, title: str, path_stem: Path) -> list[Path]:
    """One panel per published column (R, U, S): ours and published bars per compared row, with
    std error bars, the deviation in published stds above, and the chance level."""
    cols = list(dict.fromkeys(frame.published_task))
    fig, axes = plt.subplots(1, len(cols), figsize=(0.8 + max(3.0, 0.75 * len(frame) / len(cols)) * len(cols), 4.2),
                             squeeze=False)
    for ax, col in zip(axes[0], cols):
        part = frame[frame.published_task == col].reset_index(drop=True)
        many = part.generator_label.nunique() > 1
        x = np.arange(len(part))
        ax.bar(x - 0.2, part.ours_mean, 0.4, yerr=part.ours_std.fillna(0), capsize=2, label="ours", color="C0")
        ax.bar(x + 0.2, part.published_mean, 0.4, yerr=part.published_std.fillna(0), capsize=2,
               label="published", color="0.6")
        for i, r in part.iterrows():
            if np.isfinite(r.deviation):
                top = max(r.ours_mean + np.nan_to_num(r.ours_std), r.published_mean + np.nan_to_num(r.published_std))
                ax.text(i, top + 1.5, f"{round(r.deviation, 1) + 0.0:+.1f}σ", ha="center", fontsize=6)
        ax.axhline(part.chance.iloc[0], color="k", ls="--", lw=1, label="chance")
        names = [f"{r.method_label}\nvs {r.published}" + (f"\n{r.generator_label}" if many else "")
                 for r in part.itertuples()]
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=6)
        ax.set_ylim(0, 110)
        ax.set_title(f"{col} ({part.task.iloc[0]})", fontsize=9)
    axes[0, 0].set_ylabel("linear-probe accuracy (%)")
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(title, fontsize=10)
    return _save(fig, path_stem)


# ---------------------------------------------------------------------------- report
def report(df: pd.DataFrame, fig_dir: Path) -> list[Path]:
    """Build every figure that applies to a results table; returns the written paths."""
    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    experiment = df.experiment.iloc[0]
    labels = list(dict.fromkeys(df.generator_label))
    if len(labels) > 1 and df.task.nunique() == 1:  # one task over a grid: one figure, a group per point
        paths += draw_rus(rus_frame(df.assign(task=grid_points(df))),
                          f"{experiment} — task {df.task.iloc[0]}, {df.seed.nunique()} seed(s)", fig_dir / "rus")
        labels = []
    for gen_label in labels:
        part = df[df.generator_label == gen_label]
        stem = "rus" if len(labels) == 1 else "rus_" + _safe(gen_label)
        title = f"{experiment} — {gen_label}, {part.seed.nunique()} seed(s)"
        paths += draw_rus(rus_frame(part), title, fig_dir / stem)
    syn = synergy_frame(df)
    if not syn.empty:
        paths += draw_synergy(syn, f"{experiment} — synergy captured, {df.seed.nunique()} seed(s)",
                              fig_dir / "synergy")
    mask = masking_frame(df)
    mask_labels = list(dict.fromkeys(mask.generator_label)) if not mask.empty else []
    for gen_label in mask_labels:
        stem = "masking" if len(mask_labels) == 1 else "masking_" + _safe(gen_label)
        paths += draw_masking(mask[mask.generator_label == gen_label],
                              f"{experiment} — {gen_label}: masking ablation", fig_dir / stem)
    pub = published_frame(df)
    if not pub.empty:
        text = fig_dir / "published.txt"
        text.write_text(format_published(pub) + "\n")
        paths += [text] + draw_published(pub, f"{experiment} — ours vs published (Trifeature)",
                                         fig_dir / "published")
    return paths
