"""Figures, built from a results table only: a small frame per figure first, drawing second.

Which figures a results table gets depends on what its grid varies, never on its name:

* ``rus``: always, one per generator label: balanced accuracy per method and task, as grouped bars
  when there are few bars, else as a heat map (methods x tasks) coloured by the accuracy's share of
  the way from chance to 1.
* ``synergy``: when the exact synergy of the S task differs across the generator grid (k, label
  noise, ...): the bits a linear probe certifies on S, and their fraction of the task's
  information, against the exact S, one line per method.
* ``masking``: when InfMasking's ``mask_ratio``, ``num_masks`` or ``mask_lambda`` vary: balanced
  accuracy over (mask ratio x number of masks) as a heat map and as curves, and against lambda.
* ``published``: on the Trifeature generator, our accuracy beside the published numbers
  (:mod:`synergy_bench.published`), for the method settings that correspond to published ones.

Every error bar is the standard error of the mean over seeds, SE = s / sqrt(n) with s the sample
standard deviation (ddof 1); a cell with one seed has no bar. Each figure says so, with n. Published
numbers carry the standard deviation their paper prints. Every figure is written as PNG and PDF.
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

MASK_KNOBS = ("mask_ratio", "num_masks", "mask_lambda")
# the generator parameter whose values run along the x axis of the synergy figure (first that varies);
# every other varying generator parameter gets its own panel
SYNERGY_X = ("k", "synergy", "label_noise")
# grouped bars while there are at most this many methods and bars; a heat map beyond
MAX_BAR_METHODS, MAX_BARS = 10, 80
# bits axes span [BITS_FLOOR, largest truth + margin]; values outside are drawn on the edge, marked
BITS_FLOOR = -0.1


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
    """Mean, standard error s / sqrt(n) (s with ddof 1; NaN for one seed) and count n of ``col``
    over the rows of each group."""
    g = df.groupby(keys, sort=False)[col]
    n = g.count()
    out = pd.DataFrame({f"{prefix}mean": g.mean(), f"{prefix}se": g.std(ddof=1) / np.sqrt(n), f"{prefix}n": n})
    return out.reset_index()


def error_note(n) -> str:
    """What the error bars of a figure are, for seed counts ``n`` (e.g. "mean ± SE over 3 seeds")."""
    n = [int(v) for v in np.ravel(n) if np.isfinite(v)]
    lo, hi = (min(n), max(n)) if n else (1, 1)
    if hi <= 1:
        return "1 seed, no error bars"
    count = f"{lo}" if lo == hi else f"{lo}–{hi}"
    return f"mean ± SE over {count} seeds" + ("; no bar where 1 seed" if lo == 1 else "")


def distinct_colors(n: int) -> list:
    """``n`` colours, no two alike: tab10 up to 10, tab20 up to 20, evenly spaced turbo beyond."""
    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    if n <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(n)]
    return [plt.get_cmap("turbo")(x) for x in np.linspace(0.05, 0.95, n)]


def _clip_marks(ax, x, y, lo: float, hi: float, color) -> np.ndarray:
    """``y`` clipped to [lo, hi]; clipped points get a triangle on the edge (down below, up above)."""
    y = np.asarray(y, float)
    x = np.asarray(x, float)
    for mask, edge, marker in ((y < lo, lo, "v"), (y > hi, hi, "^")):
        if mask.any():
            ax.plot(x[mask], np.full(mask.sum(), edge), ls="none", marker=marker, ms=7, mfc="none",
                    mec=color, mew=1.2, clip_on=False, zorder=4)
    return np.clip(y, lo, hi)


# ---------------------------------------------------------------------------- R/U/S bars
def grid_points(df: pd.DataFrame) -> list[str]:
    """Each row's generator grid point, named by the parameters that vary (e.g. ``k=4 label_noise=0.1``),
    or by its generator label where the rows come from several generators."""
    if df.generator.nunique() > 1:
        return list(df.generator_label)
    params = _parse(df.generator_params)
    keys = _varying(params)
    return [" ".join(f"{k}={p.get(k)}" for k in keys) for p in params]


def _turn_ticks(names: list, most: int) -> bool:
    """Whether x tick labels are turned: more than ``most`` of them, or any longer than 8
    characters (grid point names such as ``k=2 label_noise=0.0`` overlap when upright)."""
    return len(names) > most or max(len(str(n)) for n in names) > 8


def rus_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Balanced accuracy per (method, task) in grid and task order: ``mean``, ``se``, ``n`` over
    seeds and the task's ``chance``."""
    acc = df[df.metric == "balanced_accuracy"]
    frame = _stats(acc, ["method_label", "task"])
    frame["_m"] = frame.method_label.map({m: i for i, m in enumerate(_method_order(acc))})
    frame["_t"] = frame.task.map({t: i for i, t in enumerate(dict.fromkeys(acc.task))})
    frame = frame.sort_values(["_m", "_t"]).drop(columns=["_m", "_t"]).reset_index(drop=True)
    frame["chance"] = frame.task.map(acc.drop_duplicates("task").set_index("task").chance)
    return frame


def draw_rus(frame: pd.DataFrame, title: str, path_stem: Path) -> list[Path]:
    """Grouped bars (a group per task, a bar per method, SE bars, chance lines) while there are at
    most ``MAX_BAR_METHODS`` methods and ``MAX_BARS`` bars; a heat map beyond."""
    methods = list(dict.fromkeys(frame.method_label))
    if not methods:
        return []
    if len(methods) > MAX_BAR_METHODS or len(frame) > MAX_BARS:
        return _draw_rus_heat(frame, title, path_stem)
    tasks = list(dict.fromkeys(frame.task))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(min(18.0, 1.6 + 1.5 * len(tasks) * max(1, len(methods) / 5)), 3.6))
    for i, (m, color) in enumerate(zip(methods, distinct_colors(len(methods)))):
        sub = frame[frame.method_label == m].set_index("task").reindex(tasks)
        x = np.arange(len(tasks)) + (i - (len(methods) - 1) / 2) * width
        ax.bar(x, sub["mean"], width, yerr=sub["se"], capsize=2, label=m, color=color)
    for j, t in enumerate(tasks):
        c = frame[frame.task == t].chance.iloc[0]
        ax.hlines(c, j - 0.45, j + 0.45, colors="k", linestyles="--", linewidth=1,
                  label="chance" if j == 0 else None)
    rotate = _turn_ticks(tasks, most=6)
    ax.set_xticks(np.arange(len(tasks)), tasks, rotation=30 if rotate else 0,
                  ha="right" if rotate else "center", fontsize=8 if rotate else None)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"balanced accuracy (test)\n{error_note(frame.n)}", fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="lower left", bbox_to_anchor=(1.0, 0.0))
    return _save(fig, path_stem)


def _draw_rus_heat(frame: pd.DataFrame, title: str, path_stem: Path) -> list[Path]:
    """Methods (rows) x tasks or grid points (columns): each cell's colour is (mean - chance) /
    (1 - chance), its text the mean accuracy and, below it, the SE."""
    methods, tasks = list(dict.fromkeys(frame.method_label)), list(dict.fromkeys(frame.task))
    mean = frame.pivot(index="method_label", columns="task", values="mean").reindex(index=methods, columns=tasks)
    se = frame.pivot(index="method_label", columns="task", values="se").reindex(index=methods, columns=tasks)
    chance = frame.drop_duplicates("task").set_index("task").chance.reindex(tasks).to_numpy()
    share = (mean.to_numpy() - chance) / (1.0 - chance)
    rotate = _turn_ticks(tasks, most=4)
    label_width = 0.055 * max(len(m) for m in methods)                      # inches of tick text
    label_height = 0.045 * max(len(str(t)) for t in tasks) if rotate else 0.2
    fig, ax = plt.subplots(figsize=(1.8 + label_width + 0.62 * len(tasks), 1.1 + label_height + 0.36 * len(methods)))
    im = ax.imshow(share, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    for (a, b), v in np.ndenumerate(mean.to_numpy()):
        if np.isfinite(v):
            s = se.iat[a, b]
            text = f"{v:.2f}" + (f"\n±{s:.2f}" if np.isfinite(s) else "")
            ax.text(b, a, text, ha="center", va="center", fontsize=7 if len(tasks) <= 8 else 5.5, linespacing=0.9,
                    color="k" if share[a, b] > 0.6 else "w")
    ax.set_xticks(range(len(tasks)), tasks, rotation=35 if rotate else 0, ha="right" if rotate else "center",
                  fontsize=7)
    ax.set_yticks(range(len(methods)), methods, fontsize=7)
    ax.set_title(f"{title}\nbalanced accuracy (test), {error_note(frame.n)}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02).set_label("(accuracy − chance) / (1 − chance)", fontsize=7)
    return _save(fig, path_stem)


# ---------------------------------------------------------------------------- synergy vs strength
def synergy_frame(df: pd.DataFrame, task: str = "S") -> pd.DataFrame:
    """Synergy captured per (generator setting, method), or an empty frame if S does not vary.

    For every generator label and method: the exact synergy ``truth_synergy`` and information
    ``truth_bits`` of ``task``; the certified bits (``bits_*``), their fraction of the task's
    information, bits / truth_bits per seed (``fraction_*``, NaN where truth_bits = 0), and the
    balanced accuracy (``acc_*``), each as mean and standard error over seeds, and the seed count
    ``n_seeds``; plus one column per varying generator parameter. ``attrs["varying"]`` lists those
    parameters. Only generators with at least two settings of different, known exact synergy
    take part; the frame is empty if there is none.
    """
    sub = df[df.task == task]
    points = sub.groupby("generator_label", sort=False)[["generator", "truth_synergy"]].first().dropna()
    truth = points.truth_synergy[points.groupby("generator").truth_synergy.transform("nunique") >= 2]
    if truth.empty:
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
    information. One line per method with SE bars; one panel column per value of the varying
    generator parameters other than the x-axis one.

    The bits axis spans [``BITS_FLOOR``, the panel's largest truth + 10 %] and the fraction axis
    [``BITS_FLOOR``, 1.1]: a probe far below zero says how badly it is calibrated, not how much
    synergy there is, and must not squash the rest. Points beyond an edge are drawn on it as
    hollow triangles, and the panel names how many and the most extreme value.
    """
    varying = frame.attrs.get("varying", [])
    x_param = next((p for p in SYNERGY_X if p in varying), varying[0] if varying else None)
    panel_by = [p for p in varying if p != x_param]
    panels = (list(frame.groupby(panel_by, sort=True, dropna=False)) if panel_by else [((), frame)])
    methods = list(dict.fromkeys(frame.method_label))
    colors = dict(zip(methods, distinct_colors(len(methods))))
    fig, axes = plt.subplots(2, len(panels), figsize=(1.5 + 3.4 * len(panels), 6.2), squeeze=False,
                             sharex="col")
    for j, (key, part) in enumerate(panels):
        key = key if isinstance(key, tuple) else (key,)
        lim = [part.truth_synergy.min(), part.truth_synergy.max()]
        limits = {"bits": (BITS_FLOOR, 1.1 * max(part.truth_bits.max(), lim[1])), "fraction": (BITS_FLOOR, 1.1)}
        for row, col in ((0, "bits"), (1, "fraction")):
            ax, (lo, hi) = axes[row, j], limits[col]
            for m in methods:
                line = part[part.method_label == m].sort_values("truth_synergy")
                y = _clip_marks(ax, line.truth_synergy, line[f"{col}_mean"], lo, hi, colors[m])
                inside = (line[f"{col}_mean"] >= lo) & (line[f"{col}_mean"] <= hi)
                ax.errorbar(line.truth_synergy, y, yerr=line[f"{col}_se"].where(inside), marker="o",
                            ms=3, capsize=2, color=colors[m], label=m, markevery=list(np.flatnonzero(inside)))
            out = part[(part[f"{col}_mean"] < lo) | (part[f"{col}_mean"] > hi)][f"{col}_mean"]
            if len(out):
                worst = out.iloc[np.argmax(np.abs(out.to_numpy()))]
                ax.text(0.02, 0.98, f"{len(out)} beyond the axis (▼▲), most extreme {worst:.2f}",
                        transform=ax.transAxes, va="top", fontsize=6)
            ax.set_ylim(lo, hi)
        axes[0, j].plot(lim, lim, "k--", lw=1, label="exact S")
        axes[1, j].axhline(1.0, color="k", ls="--", lw=1)
        axes[1, j].axhline(0.0, color="grey", lw=0.5)
        axes[0, j].axhline(0.0, color="grey", lw=0.5)
        axes[0, j].set_title(", ".join(f"{p}={v}" for p, v in zip(panel_by, key)) or title, fontsize=9)
        axes[1, j].set_xlabel(f"exact synergy S (bits){f', varying {x_param}' if x_param else ''}")
    axes[0, 0].set_ylabel("bits certified on S")
    axes[1, 0].set_ylabel("bits / I(X1,X2;Y)")
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                       title=error_note(frame.n_seeds), title_fontsize=7)
    if panel_by:
        fig.suptitle(f"{title} ({error_note(frame.n_seeds)})", fontsize=10)
    return _save(fig, path_stem)


# ---------------------------------------------------------------------------- masking ablation
def masking_frame(df: pd.DataFrame, method: str = "infmasking") -> pd.DataFrame:
    """Balanced accuracy per (generator, task, method setting), or empty if no mask knob varies.

    Rows of ``method`` carry its knobs ``mask_ratio``, ``num_masks``, ``mask_lambda`` and
    ``config`` (its other parameters, as JSON); rows of the other methods on the same tasks are
    references (``reference`` True, knobs NaN). ``mean``, ``se``, ``n``: over seeds; ``chance``:
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
    values = sorted(data[by].unique())
    cmap = plt.get_cmap("viridis")  # ordered values, ordered colours; the pale top end left out
    for i, v in enumerate(values):
        line = data[data[by] == v].sort_values(x)
        ax.errorbar(line[x], line["mean"], yerr=line["se"], marker="o", ms=3, capsize=2,
                    color=cmap(0.85 * i / max(1, len(values) - 1)), label=f"{by}={v:g}")
    _references(ax, refs, chance)
    ax.set_xlabel(x)


def _references(ax, refs: pd.DataFrame, chance: float) -> None:
    for r, color in zip(refs.itertuples(), distinct_colors(len(refs) + 1)[1:]):
        ax.axhline(r.mean, color=color, ls="--", lw=1, label=r.method_label)
    ax.axhline(chance, color="k", ls=":", lw=1, label="chance")
    ax.set_ylim(chance - 0.02, 1.01)  # the full range above chance: noise there stays flat
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)


def draw_masking(frame: pd.DataFrame, title: str, path_stem: Path) -> list[Path]:
    """One row per task: heat map over (mask_ratio x num_masks), curves against each, and against
    lambda, as far as the data holds them; other methods as dashed reference lines, chance dotted,
    legends under the panels. The heat map's colours span chance to 1, so noise at chance stays
    one colour."""
    tasks = list(dict.fromkeys(frame.task))
    rows = [masking_panels(frame[frame.task == t]) for t in tasks]
    kinds = [k for k in ("heat", "ratio", "masks", "lambda") if any(k in r for r in rows)]
    if not kinds:
        return []
    fig, axes = plt.subplots(len(tasks), len(kinds), figsize=(0.8 + 3.8 * len(kinds), 4.4 * len(tasks)),
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
                        ax.text(b, a, f"{v:.2f}", ha="center", va="center", fontsize=6,
                                color="k" if v > chance + 0.6 * (1 - chance) else "w")
                ax.set_xlabel("num_masks T")
                ax.set_ylabel("mask_ratio rho")
                fig.colorbar(im, ax=ax, fraction=0.046)
            elif kind == "ratio":
                _curves(ax, panels["ratio"], "mask_ratio", "num_masks", refs, chance)
            elif kind == "masks":
                _curves(ax, panels["masks"], "num_masks", "mask_ratio", refs, chance)
            else:
                line = panels["lambda"]
                ax.errorbar(line.mask_lambda, line["mean"], yerr=line["se"], marker="o", ms=3, capsize=2,
                            color="k", label=f"rho={line.mask_ratio.iloc[0]:g}, T={line.num_masks.iloc[0]:g}")
                _references(ax, refs, chance)
                ax.set_xlabel("mask_lambda")
            ax.set_title(f"{task}: balanced accuracy" + (" (mean)" if kind == "heat" else ""), fontsize=9)
    fig.suptitle(f"{title}\n{error_note(frame.n)}", fontsize=10)
    return _save(fig, path_stem)


# ---------------------------------------------------------------------------- ours vs published
#: the Trifeature data of the published tables (CoMM and InfMasking): a comparison needs them
PUBLISHED_DATA = {"image_size": 224, "n_train": 10000}


def published_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Our Trifeature balanced accuracy (%) beside the published numbers; empty if none correspond.

    One row per (generator label, method label, task, published row of that method) where our run
    corresponds to the published one: the method's parameters equal the published ``setting``
    (:class:`~synergy_bench.published.PublishedRow`), and, where the generator has a ``protocol``
    parameter, R and U come from the R/U protocol and S from the S protocol, and the data are the
    published ones (:data:`PUBLISHED_DATA`: 224 px images, 10,000 training pairs). Columns
    ``ours_mean``, ``ours_se`` (over seeds, NaN for one seed), ``n_seeds``, ``published_mean``,
    ``published_std`` (NaN where the paper gives none), ``deviation`` = (ours_mean -
    published_mean) / published_std, ``chance``, ``source``.
    """
    sub = df[(df.generator == "trifeature") & (df.metric == "balanced_accuracy")
             & df.task.isin(list(TRIFEATURE_TASKS))]
    if sub.empty:
        return pd.DataFrame()
    gen_params = pd.Series(_parse(sub.generator_params), index=sub.index)
    sub = sub[[all(p.get(k) == v for k, v in PUBLISHED_DATA.items()) for p in gen_params]]
    if sub.empty:
        return pd.DataFrame()
    protocol = gen_params[sub.index].map(lambda p: p.get("protocol"))
    method_params = pd.Series(_parse(sub.method_params), index=sub.index)
    order = {m: i for i, m in enumerate(_method_order(df))}
    rows = []
    for (gen, label, task), g in sub.groupby(["generator_label", "method_label", "task"], sort=False):
        col = TRIFEATURE_TASKS[task]
        proto = protocol[g.index[0]]
        if proto is not None and proto != TRIFEATURE_PROTOCOL[col]:
            continue
        ours = 100.0 * g.value
        for pub in TRIFEATURE:
            if pub.method != g.method.iloc[0] or col not in pub.scores or not pub.matches(method_params[g.index[0]]):
                continue
            mean, std = pub.scores[col]
            std = np.nan if std is None else std
            rows.append({"generator_label": gen, "method_label": label, "method": pub.method,
                         "published": pub.name, "task": task, "published_task": col,
                         "ours_mean": ours.mean(), "ours_se": ours.std(ddof=1) / np.sqrt(ours.size),
                         "n_seeds": ours.size, "published_mean": mean, "published_std": std,
                         "deviation": (ours.mean() - mean) / std if std and np.isfinite(std) else np.nan,
                         "chance": 100.0 * g.chance.iloc[0], "source": pub.source,
                         "_order": (order[label], list(TRIFEATURE_TASKS).index(task), gen)})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows).sort_values("_order", kind="stable").drop(columns="_order")
    return frame.reset_index(drop=True)


def _pm(mean: float, spread: float) -> str:
    return f"{mean:.1f}" + (f" ± {spread:.1f}" if np.isfinite(spread) else "")


def format_published(frame: pd.DataFrame) -> str:
    """Plain-text side-by-side table of a :func:`published_frame`."""
    if frame.empty:
        return ""
    width = max(len(m) for m in [*frame.method_label, "method"]) + 2
    pub_w = max(len(p) for p in [*frame.published, "published"]) + 2
    lines = [("Trifeature, ours vs published: linear-probe accuracy (%); ours mean ± SE over seeds, "
              "published mean ± std as printed; dev = (ours - published) / published std")]
    for gen, part in frame.groupby("generator_label", sort=False):
        lines.append(f"{gen} ({part.n_seeds.max()} seed(s))")
        lines.append(f"{'method':<{width}}{'published':<{pub_w}}{'task':<7}{'ours':>14}{'published':>14}"
                     f"{'dev':>8}   source")
        for r in part.itertuples():
            dev = f"{round(r.deviation, 1) + 0.0:+.1f}" if np.isfinite(r.deviation) else "-"
            lines.append(f"{r.method_label:<{width}}{r.published:<{pub_w}}{r.task + ' (' + r.published_task + ')':<7}"
                         f"{_pm(r.ours_mean, r.ours_se):>14}{_pm(r.published_mean, r.published_std):>14}"
                         f"{dev:>8}   {r.source}")
    return "\n".join(lines)


def draw_published(frame: pd.DataFrame, title: str, path_stem: Path) -> list[Path]:
    """One panel per published column (R, U, S), one line per compared pair: ours (filled, mean ±
    SE) and published (hollow, mean ± its std), the deviation in published stds at the right and
    the chance level dotted."""
    cols = list(dict.fromkeys(frame.published_task))
    sizes = [int((frame.published_task == c).sum()) for c in cols]
    many = frame.generator_label.nunique() > 1
    fig, axes = plt.subplots(len(cols), 1, figsize=(7.5, 1.2 + 0.42 * sum(sizes) + 0.5 * len(cols)), sharex=True,
                             squeeze=False, gridspec_kw={"height_ratios": [s + 0.8 for s in sizes]})
    for ax, col in zip(axes[:, 0], cols):
        part = frame[frame.published_task == col].reset_index(drop=True)
        y = np.arange(len(part))[::-1].astype(float)
        ax.errorbar(part.ours_mean, y + 0.13, xerr=part.ours_se, fmt="o", color="C0", ms=5, capsize=2,
                    label=f"ours ({error_note(part.n_seeds)})")
        ax.errorbar(part.published_mean, y - 0.13, xerr=part.published_std, fmt="s", mfc="none", color="0.3",
                    ms=5, capsize=2, label="published (mean ± std as printed)")
        ax.axvline(part.chance.iloc[0], color="k", ls=":", lw=1, label="chance")
        for yi, r in zip(y, part.itertuples()):
            if np.isfinite(r.deviation):
                ax.text(1.01, yi, f"{round(r.deviation, 1) + 0.0:+.1f} σ", transform=ax.get_yaxis_transform(),
                        va="center", fontsize=7)
        names = [f"{r.published}\nours: {r.method_label}" + (f"\n{r.generator_label}" if many else "")
                 for r in part.itertuples()]
        ax.set_yticks(y, names, fontsize=7)
        ax.set_ylim(-0.6, len(part) - 0.4)
        ax.set_title(f"{col}: our task {part.task.iloc[0]}", fontsize=9, loc="left")
        ax.grid(axis="x", color="0.9", lw=0.5)
    axes[-1, 0].set_xlim(0, 102)
    axes[-1, 0].set_xlabel("linear-probe accuracy (%)   (σ: (ours − published) / published std)")
    axes[0, 0].legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.12), ncol=3, frameon=False)
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
                          f"{experiment} — task {df.task.iloc[0]}", fig_dir / "rus")
        labels = []
    for gen_label in labels:
        part = df[df.generator_label == gen_label]
        stem = "rus" if len(labels) == 1 else "rus_" + _safe(gen_label)
        paths += draw_rus(rus_frame(part), f"{experiment} — {gen_label}", fig_dir / stem)
    syn = synergy_frame(df)
    if not syn.empty:
        paths += draw_synergy(syn, f"{experiment} — synergy captured", fig_dir / "synergy")
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
