"""Self-contained HTML pages: one per results folder, and an index with a leaderboard across folders.

A page is one file that reads nothing from the network: its styles, its script (plain JavaScript)
and its figures (PNG as base64 data URIs) are inside it, so it opens from a disk, a mail attachment
or an artefact store alike.

* :func:`write_report` writes ``FOLDER/report.html``: the results table (each metric's mean ± SE
  over seeds, SE = s / sqrt(n) with s the sample standard deviation, and the seed count n), filters
  by method, task and every parameter the grid varies, the per-seed values on hover, a dot chart of
  the rows shown, every figure of ``FOLDER/figures``, and the folder's provenance (``meta.json``,
  ``spec.yaml``, README).
* :func:`write_index` writes ``ROOT/index.html`` for every results folder below ``ROOT`` (and their
  pages): a leaderboard of the methods on the synergy task S of every experiment.

The leaderboard measures synergy by the bits the probe certifies on S (see
:mod:`synergy_bench.probe`), as a fraction of the exact S (``truth_synergy``) and of the
supervised ceiling: the bits a ``supervised`` model, trained on the task labels in the same folder
and generator setting, certifies on S. A ceiling below ``CEILING_MIN`` of the exact S is no ceiling
(the task is beyond that model's budget) and that setting is left out of the ceiling fraction.
"""
from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synergy_bench.registry import UserError
from synergy_bench.results import load

# metrics listed first, in this order; any other metric follows in name order
METRIC_ORDER = ("balanced_accuracy", "bits")
# meta.json keys shown first, in this order; any other key follows
META_ORDER = ("command", "commit", "version", "python", "numpy", "scipy", "scikit-learn", "torch", "cpu",
              "device")
# a supervised ceiling below this fraction of the exact S counts as no ceiling
CEILING_MIN = 0.1
SYNERGY_TASK = "S"
# the two kinds of leaderboard entry (see variant_keys); the index shows the first at first
KINDS = {True: "method at its defaults", False: "setting an experiment varies"}


# ---------------------------------------------------------------------------- numbers
def _mean_se(values) -> tuple[float, float, int]:
    """Mean, standard error s / sqrt(n) (s with ddof 1; NaN for n < 2) and n of the finite values."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else math.nan, int(v.size)


def _params(col: pd.Series) -> list[dict]:
    cache = {s: json.loads(s) if isinstance(s, str) and s else {} for s in col.unique()}
    return [cache[s] for s in col]


def _varying(dicts: list[dict]) -> list[str]:
    keys = sorted({k for d in dicts for k in d})
    return [k for k in keys if len({json.dumps(d.get(k), sort_keys=True) for d in dicts}) > 1]


def _varying_within(names: pd.Series, params: list[dict]) -> list[str]:
    """Parameters that vary among the rows of one plug-in (a parameter that only tells two
    plug-ins apart is no setting of either)."""
    by_name: dict[str, list[dict]] = {}
    for name, p in zip(names, params):
        by_name.setdefault(name, []).append(p)
    return sorted({k for ps in by_name.values() for k in _varying(ps)})


def _text(v: Any) -> str:
    """A parameter value as shown and filtered on: JSON for lists and dicts, "—" when missing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else str(v)


def _metrics(df: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(df.metric))
    return [m for m in METRIC_ORDER if m in present] + sorted(m for m in present if m not in METRIC_ORDER)


def summary_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """One row per (generator setting, method setting, task [, samples]) of a results table.

    Columns: ``generator_label``, ``method``, ``method_label``, ``task``, ``chance``,
    ``truth_bits``, ``truth_synergy``; one column per generator parameter and per method parameter
    that the table varies among the rows of one generator or method (``generator:k``,
    ``method:mask_ratio``, "—" where a row's plug-in has no such parameter); for each metric m, ``m|mean``, ``m|se``, ``m|n`` over seeds and
    ``m|values``, the list of (seed, value). Rows come in grid order (generator settings as they
    first appear, methods by grid index, tasks as they first appear).

    Returns the frame and ``{"generator": [...], "method": [...]}``, the varying parameters.
    """
    df = df.reset_index(drop=True)
    gen_params, method_params = _params(df.generator_params), _params(df.method_params)
    varying = {"generator": _varying_within(df.generator, gen_params),
               "method": _varying_within(df.method, method_params)}
    keys = ["generator_label", "method_label", "task"]
    if "samples" in df.columns and df.samples.notna().any():
        keys.append("samples")
    order = {"generator_label": {g: i for i, g in enumerate(dict.fromkeys(df.generator_label))},
             "method_label": (df.groupby("method_label").grid_index.min().rank(method="first").to_dict()
                              if "grid_index" in df.columns else
                              {m: i for i, m in enumerate(dict.fromkeys(df.method_label))}),
             "task": {t: i for i, t in enumerate(dict.fromkeys(df.task))}}
    rows = []
    for key, g in df.groupby(keys, sort=False, dropna=False):
        first = g.index[0]
        row = dict(zip(keys, key))
        row["method"] = g.method.iloc[0] if "method" in g else row["method_label"]
        for col in ("chance", "truth_bits", "truth_synergy"):
            row[col] = float(g[col].iloc[0]) if col in g and pd.notna(g[col].iloc[0]) else math.nan
        for p in varying["generator"]:
            row[f"generator:{p}"] = _text(gen_params[first].get(p))
        for p in varying["method"]:
            row[f"method:{p}"] = _text(method_params[first].get(p))
        for metric, part in g.groupby("metric", sort=False):
            part = part.sort_values("seed")
            row[f"{metric}|mean"], row[f"{metric}|se"], row[f"{metric}|n"] = _mean_se(part.value)
            row[f"{metric}|values"] = list(zip(part.seed.astype(int), part.value.astype(float)))
            if "truth" in part and part.truth.notna().any():
                row[f"{metric}|truth"] = float(part.truth.dropna().iloc[0])
        row["_order"] = tuple(order[k][row[k]] for k in keys[:3])
        rows.append(row)
    frame = pd.DataFrame(rows).sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)
    return frame, varying


# ---------------------------------------------------------------------------- leaderboard
def _defaults(method: str) -> dict | None:
    """The registered method's parameter defaults, or None for a method not registered here."""
    from synergy_bench.registry import get_method, param_fields

    try:
        return {name: default for name, default, _ in param_fields(get_method(method))}
    except UserError:
        return None


def variant_keys(df: pd.DataFrame) -> dict[str, tuple[str, bool]]:
    """Method label -> (the name it carries across folders, whether it is the method at its defaults).

    A method's rows in a folder that differ only in parameters fixed for the whole folder (sizes,
    budget) are the same entry everywhere: its registry name. Where a folder varies some of the
    method's parameters, the setting with every varied parameter at its registered default keeps
    the name, and any other setting is named by the varied parameters off their defaults, e.g.
    ``infmasking[masked_from=other]``. A method not registered here keeps its label.
    """
    first = df.drop_duplicates("method_label")
    out = {}
    for method, part in first.groupby("method", sort=False):
        params = _params(part.method_params)
        varied, defaults = _varying(params), _defaults(method)
        for label, p in zip(part.method_label, params):
            if defaults is None:
                out[label] = (label, True)
                continue
            off = [k for k in varied if p.get(k) != defaults.get(k)]
            out[label] = (method + (f"[{','.join(f'{k}={_text(p.get(k))}' for k in off)}]" if off else ""), not off)
    return out


def _folder_mean(per_setting: list[tuple[float, float]]) -> tuple[float, float]:
    """Mean over settings of their means, and its SE sqrt(sum SE_s^2) / S (seeds independent)."""
    means = np.array([m for m, _ in per_setting], float)
    ses = np.array([s for _, s in per_setting], float)
    if means.size == 0:
        return math.nan, math.nan
    return float(means.mean()), float(np.sqrt((ses ** 2).sum()) / means.size)


def leaderboard(df: pd.DataFrame, task: str = SYNERGY_TASK) -> pd.DataFrame:
    """Each method's synergy on ``task`` in one results folder, best first; empty without it.

    Per generator setting with an exact synergy S > 0 and per method setting, over seeds: the
    balanced accuracy, the certified bits of the linear probe (the measure labelled ``probe``,
    else the folder's first measure), bits / S (``exact``) and bits / ceiling (``ceiling``),
    the ceiling being the mean bits of the folder's ``supervised`` method (its setting at the
    registered defaults) in the same generator setting, where it reaches ``CEILING_MIN`` x S. Each
    is then averaged over the folder's generator settings (``*_mean``; ``*_se`` combines the
    settings' SEs; the ceiling's own SE is not propagated). Columns: ``entry`` (see
    :func:`variant_keys`), ``method_label``, ``acc_*``, ``bits_*``, ``exact_*``, ``ceiling_*``,
    ``settings`` (generator settings), ``ceiling_settings`` (those with a ceiling), ``seeds``
    (largest seed count), ``at_defaults`` (the entry is a method at its defaults, not a setting
    the folder varies), ``rank`` (by ``exact_mean`` among all entries, 1 = most of the exact S)
    and ``rank_defaults`` (among the entries at their defaults; any other entry gets the rank it
    would take among them).
    """
    sub = df[(df.task == task) & (df.truth_synergy > 0)]
    if "measure_label" in sub.columns and sub.measure_label.notna().any():
        probes = [m for m in dict.fromkeys(sub.measure_label) if m == "probe"]  # the linear probe
        sub = sub[sub.measure_label == (probes[0] if probes else sub.measure_label.iloc[0])]
    bits = sub[sub.metric == "bits"]
    if bits.empty:
        return pd.DataFrame()
    keys = variant_keys(df)
    acc = sub[sub.metric == "balanced_accuracy"]
    ceilings = {}
    supervised = [label for label, key in keys.items() if key == ("supervised", True)]
    if supervised:
        sup = bits[bits.method_label == supervised[0]]
        for gen, g in sup.groupby("generator_label"):
            s = g.truth_synergy.iloc[0]
            if g.value.mean() >= CEILING_MIN * s:
                ceilings[gen] = g.value.mean()
    rows = []
    for label, part in bits.groupby("method_label", sort=False):
        per = {"acc": [], "bits": [], "exact": [], "ceiling": []}
        seeds = 0
        for gen, g in part.groupby("generator_label", sort=False):
            s = g.truth_synergy.iloc[0]
            a = acc[(acc.method_label == label) & (acc.generator_label == gen)].value
            per["acc"].append(_mean_se(a)[:2])
            per["bits"].append(_mean_se(g.value)[:2])
            per["exact"].append(_mean_se(g.value / s)[:2])
            if gen in ceilings:
                per["ceiling"].append(_mean_se(g.value / ceilings[gen])[:2])
            seeds = max(seeds, g.seed.nunique())
        row = {"entry": keys[label][0], "method_label": label, "at_defaults": keys[label][1],
               "settings": len(per["bits"]),
               "ceiling_settings": len(per["ceiling"]), "seeds": seeds}
        for name, values in per.items():
            row[f"{name}_mean"], row[f"{name}_se"] = _folder_mean([v for v in values if np.isfinite(v[0])])
        rows.append(row)
    frame = pd.DataFrame(rows).sort_values("exact_mean", ascending=False, kind="stable").reset_index(drop=True)
    frame["rank"] = frame.exact_mean.rank(ascending=False, method="min")
    defaults = frame.exact_mean[frame.at_defaults].to_numpy()
    frame["rank_defaults"] = [1 + int(np.sum(defaults > v)) for v in frame.exact_mean]
    return frame


# ---------------------------------------------------------------------------- page pieces
def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(mean: float, se: float = math.nan, digits: int = 3) -> str:
    if not np.isfinite(mean):
        return "—"
    return f"{mean:.{digits}f}" + (f" ± {se:.{digits}f}" if np.isfinite(se) else "")


def _num(x: float) -> str:
    """A sort key for a cell (empty where missing)."""
    return f"{x:.6g}" if np.isfinite(x) else ""


def _page(title: str, body: str, data: dict | None = None) -> str:
    payload = json.dumps(data or {}).replace("</", "<\\/")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e(title)}</title>\n<style>{CSS}</style></head>\n<body>\n{body}\n"
            f'<div id="tip" hidden></div>\n'
            f'<script type="application/json" id="page-data">{payload}</script>\n'
            f"<script>{SCRIPT}</script>\n</body></html>\n")


def _filters(table_id: str, dims: list[tuple[str, list[str], set[str]]]) -> str:
    """Checkbox groups filtering the rows of ``table_id``: (name, values, values unchecked at first)."""
    parts = [f'<div class="filters" data-table="{_e(table_id)}">']
    for i, (name, values, off) in enumerate(dims):
        boxes = "".join(f'<label><input type="checkbox" value="{_e(v)}"{"" if v in off else " checked"}> {_e(v)}</label>'
                        for v in values)
        parts.append(f'<fieldset data-dim="{i}"><legend>{_e(name)} <button type="button" data-set="all">all</button>'
                     f'<button type="button" data-set="none">none</button></legend>{boxes}</fieldset>')
    parts.append(f'<p class="count" id="{_e(table_id)}-count"></p></div>')
    return "".join(parts)


def _seed_tip(row: dict, metric: str) -> str:
    values = row.get(f"{metric}|values") or []
    lines = [f"{metric}: {_fmt(row[f'{metric}|mean'], row[f'{metric}|se'], 4)} (n = {row[f'{metric}|n']})"]
    lines += [f"seed {s}: {v:.4f}" for s, v in values]
    if np.isfinite(row.get(f"{metric}|truth", math.nan)):
        lines.append(f"truth: {row[f'{metric}|truth']:.4f}")
    return "\n".join(lines)


def _results_table(frame: pd.DataFrame, varying: dict[str, list[str]], metrics: list[str]) -> tuple[str, list]:
    """The table's HTML and the chart's data (one entry per row)."""
    gen_cols = [f"generator:{p}" for p in varying["generator"]]
    method_cols = [f"method:{p}" for p in varying["method"]]
    dims = ["method_label", "task", *gen_cols, *method_cols]
    extra = [c for c in ("samples",) if c in frame.columns]
    head = ([f'<th data-sort="text">{_e(c.split(":", 1)[1])}</th>' for c in gen_cols]
            + ['<th data-sort="text">method</th>']
            + [f'<th data-sort="text">{_e(c.split(":", 1)[1])}</th>' for c in method_cols]
            + ['<th data-sort="text">task</th>'] + [f'<th data-sort="num">{c}</th>' for c in extra]
            + ['<th data-sort="num" title="chance level of the balanced accuracy">chance</th>',
               '<th data-sort="num" title="I(X1,X2;Y): the exact information of the task (bits)">I (bits)</th>']
            + [f'<th data-sort="num">{_e(m)}</th>' for m in metrics] + ['<th data-sort="num">n</th>'])
    body, chart = [], []
    for i, row in frame.iterrows():
        attrs = " ".join(f'data-d{j}="{_e(row[d])}"' for j, d in enumerate(dims))
        cells = ([f"<td>{_e(row[c])}</td>" for c in gen_cols]
                 + [f'<td class="method" title="{_e(row.generator_label)}">{_e(row.method_label)}</td>']
                 + [f"<td>{_e(row[c])}</td>" for c in method_cols]
                 + [f"<td>{_e(row.task)}</td>"]
                 + [f'<td data-v="{_num(float(row[c]))}">{_e(_text(row[c]))}</td>' for c in extra]
                 + [f'<td data-v="{_num(row.chance)}">{_fmt(row.chance, digits=2)}</td>',
                    f'<td data-v="{_num(row.truth_bits)}">{_fmt(row.truth_bits)}</td>'])
        n, point = 0, {"id": f"r{i}", "label": f"{row.method_label} · {row.task}"
                       + "".join(f" · {c.split(':', 1)[1]}={row[c]}" for c in gen_cols),
                       "chance": _num(row.chance), "truth": _num(row.truth_bits), "m": {}}
        for m in metrics:
            mean, se = row.get(f"{m}|mean", math.nan), row.get(f"{m}|se", math.nan)
            if isinstance(mean, float) and np.isfinite(mean):
                cells.append(f'<td class="num" data-v="{_num(mean)}" data-tip="{_e(_seed_tip(row, m))}">{_fmt(mean, se)}</td>')
                point["m"][m] = [mean, se if np.isfinite(se) else None, int(row[f"{m}|n"])]
                n = max(n, int(row[f"{m}|n"]))
            else:
                cells.append('<td data-v="">—</td>')
        cells.append(f'<td data-v="{n}">{n}</td>')
        body.append(f'<tr id="r{i}" {attrs}>{"".join(cells)}</tr>')
        chart.append(point)
    table = (f'<div class="wide"><table id="results" class="sortable"><thead><tr>{"".join(head)}</tr></thead>'
             f'<tbody>{"".join(body)}</tbody></table></div>')
    return table, chart


def _figure_order(path: Path) -> tuple:
    """Figures in the order of :mod:`synergy_bench.plots` (one measure's folder after another;
    within it bars, synergy, masking, published, any other), each image before its text table."""
    kinds = ("rus", "synergy", "masking", "published")
    kind = next((i for i, k in enumerate(kinds) if path.stem.startswith(k)), len(kinds))
    return path.parent.as_posix(), kind, path.stem, path.suffix != ".png"


def _figures(folder: Path) -> str:
    """Every figure under ``folder/figures``, measures' subfolders included, inline."""
    fig_dir = folder / "figures"
    files = sorted(fig_dir.rglob("*"), key=_figure_order) if fig_dir.is_dir() else []
    parts = []
    for f in files:
        name = _e(f.relative_to(fig_dir).as_posix())
        if f.suffix == ".png":
            data = base64.b64encode(f.read_bytes()).decode()
            parts.append(f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
                         f"<figcaption>figures/{name}</figcaption></figure>")
        elif f.suffix == ".svg":
            parts.append(f"<figure>{f.read_text()}<figcaption>figures/{name}</figcaption></figure>")
        elif f.suffix == ".txt":
            parts.append(f"<figure><pre>{_e(f.read_text())}</pre><figcaption>figures/{name}</figcaption></figure>")
    return "".join(parts) or "<p>No figures in this folder (<code>synergy-bench report DIR</code> draws them).</p>"


def _value_html(v: Any) -> str:
    if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
        cols = list(dict.fromkeys(k for x in v for k in x))
        head = "".join(f"<th>{_e(c)}</th>" for c in cols)
        rows = "".join("<tr>" + "".join(f"<td><code>{_e(_text(x.get(c)))}</code></td>" for c in cols) + "</tr>" for x in v)
        return f'<table class="small"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
    return f"<code>{_e(_text(v))}</code>"


def _provenance(folder: Path, df: pd.DataFrame) -> str:
    meta: dict = {}
    note = ""
    path = folder / "meta.json"
    if path.is_file():
        try:
            meta = json.loads(path.read_text())
            meta = meta if isinstance(meta, dict) else {"meta.json": meta}
        except json.JSONDecodeError as err:
            note = f"<p class=\"warn\">meta.json is not valid JSON ({_e(err)}).</p>"
    else:
        note = '<p class="warn">This folder has no meta.json: its command, commit and versions are unknown.</p>'
    keys = [k for k in META_ORDER if k in meta] + [k for k in meta if k not in META_ORDER]
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_value_html(meta[k])}</dd>" for k in keys)
    missing = [k for k in ("command", "commit") if k not in meta]
    if meta and missing:
        note += f'<p class="warn">meta.json does not name: {_e(", ".join(missing))}.</p>'
    for col in ("commit", "version"):
        if col in df.columns and df[col].nunique() > 1:
            note += (f'<p class="warn">The runs come from {df[col].nunique()} different {col}s: '
                     f'{_e(", ".join(map(str, df[col].dropna().unique())))}.</p>')
    extra = []
    for name in ("spec.yaml", "README.md"):
        if (folder / name).is_file():
            extra.append(f"<details><summary>{name}</summary><pre>{_e((folder / name).read_text())}</pre></details>")
    fails = folder / "failures.jsonl"
    if fails.is_file() and fails.read_text().strip():
        n = len(fails.read_text().strip().splitlines())
        extra.append(f'<p class="warn">{n} run(s) failed; see failures.jsonl.</p>')
    return f"{note}<dl>{items}</dl>{''.join(extra)}"


def shown_labels(df: pd.DataFrame) -> pd.DataFrame:
    """The table with ``method_label`` as the page shows it: the method setting, the measure's label
    after it where a folder holds more than one measure, and the measure alone for rows that measure
    the observations (no method)."""
    if "measure_label" not in df.columns:
        return df
    method = df.method_label.fillna("").astype(str)
    measure = df.measure_label.fillna("").astype(str)
    label = method + " · " + measure if measure[method != ""].nunique() > 1 else method
    return df.assign(method_label=label.where(method != "", measure))


def write_report(folder: Path) -> Path:
    """Write ``folder/report.html``, one self-contained page of the folder's results; its path.

    Raises UserError (from :func:`synergy_bench.results.load`) when the folder holds no readable
    ``results.csv``.
    """
    folder = Path(folder)
    df = shown_labels(load(folder))
    frame, varying = summary_rows(df)
    metrics = _metrics(df)
    table, chart = _results_table(frame, varying, metrics)
    experiment = str(df.experiment.iloc[0]) if "experiment" in df.columns and len(df) else folder.name
    seeds = df.seed.nunique() if len(df) else 0
    gen_cols = [f"generator:{p}" for p in varying["generator"]]
    method_cols = [f"method:{p}" for p in varying["method"]]
    dims = ([("method", list(dict.fromkeys(frame.method_label)), set()),
             ("task", list(dict.fromkeys(frame.task)), set())]
            + [(f"generator: {c.split(':', 1)[1]}", list(dict.fromkeys(frame[c])), set()) for c in gen_cols]
            + [(f"method: {c.split(':', 1)[1]}", list(dict.fromkeys(frame[c])), set()) for c in method_cols])
    options = "".join(f'<option value="{_e(m)}">{_e(m)}</option>' for m in metrics)
    body = f"""<header><h1>{_e(experiment)}</h1>
<p>Results folder <code>{_e(folder.name)}</code>: {len(df.run_id.unique()) if "run_id" in df else "?"} runs,
{frame.method_label.nunique()} method settings, {df.generator_label.nunique()} generator setting(s),
{seeds} seed(s).</p></header>
<section><h2>Results</h2>
<p>Each cell: mean ± standard error over seeds (SE = s / √n, s the sample standard deviation; no SE
with one seed); <b>n</b> is the number of seeds. Hover a cell for the per-seed values; click a
column header to sort.</p>
{_filters("results", dims)}
{table}
</section>
<section><h2>Chart of the rows shown</h2>
<p><label>metric <select id="chart-metric">{options}</select></label> Dots: mean; whiskers: ± SE;
grey tick: chance (balanced accuracy) or the task's information I (bits). Hover a dot for its values.</p>
<div id="chart"></div></section>
<section><h2>Figures</h2>{_figures(folder)}</section>
<section><h2>Provenance</h2>{_provenance(folder, df)}</section>"""
    out = folder / "report.html"
    out.write_text(_page(f"{experiment} — synergy-bench report", body, {"chart": chart}))
    return out


def _result_folders(root: Path) -> list[Path]:
    found = {p.parent for p in root.rglob("results.csv")
             if not any(part.startswith(".") for part in p.relative_to(root).parts)}
    return sorted(found)


def _cell(mean: float, se: float, tip: str, frac: bool = False) -> str:
    cls = ' class="num"'
    style = ""
    if frac and np.isfinite(mean):
        share = min(max(mean, 0.0), 1.0)
        style = f' style="background: rgba(46, 125, 50, {0.1 + 0.5 * share:.2f})"'
    return f'<td{cls}{style} data-v="{_num(mean)}" data-tip="{_e(tip)}">{_fmt(mean, se)}</td>'


def write_index(root: Path) -> Path:
    """Write ``root/index.html`` and the ``report.html`` of every results folder below ``root``.

    The index ranks the methods across the folders with a synergy task S (:func:`leaderboard`),
    lists each folder's leaderboard, and links every folder's page. Returns the index's path.
    """
    root = Path(root)
    folders = _result_folders(root)
    if not folders:
        raise UserError(f"no results.csv below {root}; give a results folder or a folder of them")
    boards, others = {}, []
    for folder in folders:
        rel = folder.relative_to(root).as_posix()
        rel = "." if rel == "" else rel
        try:
            write_report(folder)
            board = leaderboard(load(folder))
        except UserError as err:
            others.append((rel, f"unreadable: {err}"))
            continue
        if board.empty:
            others.append((rel, "no bits on a synergy task S with an exact S > 0"))
        else:
            boards[rel] = board
    entries = list(dict.fromkeys(e for b in boards.values() for e in b.entry))
    cross = []
    for entry in entries:
        found = {rel: b[b.entry == entry].iloc[0] for rel, b in boards.items() if (b.entry == entry).any()}
        exact = [r.exact_mean for r in found.values() if np.isfinite(r.exact_mean)]
        ceiling = [r.ceiling_mean for r in found.values() if np.isfinite(r.ceiling_mean)]
        cross.append({"entry": entry, "found": found, "n": len(found),
                      "exact": float(np.mean(exact)) if exact else math.nan,
                      "ceiling": float(np.mean(ceiling)) if ceiling else math.nan,
                      "rank": float(np.mean([r.rank_defaults for r in found.values()])),
                      "kind": KINDS[bool(next(iter(found.values())).at_defaults)]})
    cross.sort(key=lambda c: (c["rank"], -c["exact"] if np.isfinite(c["exact"]) else math.inf, c["entry"]))
    head = ('<th data-sort="text">method</th><th data-sort="num" title="experiments with this method">experiments</th>'
            '<th data-sort="num" title="mean over experiments of bits on S / exact S">mean bits / S</th>'
            '<th data-sort="num" title="mean over experiments of bits on S / supervised ceiling">mean bits / ceiling</th>'
            '<th data-sort="num" title="mean over experiments of the rank by bits / S among the methods at their defaults (1 = best)">mean rank</th>'
            + "".join(f'<th data-sort="num"><a href="{_e(rel)}/report.html">{_e(rel)}</a></th>' for rel in boards))
    rows = []
    for c in cross:
        cells = [f'<td class="method">{_e(c["entry"])}</td>', f'<td data-v="{c["n"]}">{c["n"]}</td>',
                 _cell(c["exact"], math.nan, "mean over experiments of bits on S / exact S", True),
                 _cell(c["ceiling"], math.nan, "mean over experiments of bits on S / supervised ceiling"),
                 f'<td data-v="{c["rank"]:.3f}">{c["rank"]:.1f}</td>']
        for rel in boards:
            r = c["found"].get(rel)
            if r is None:
                cells.append('<td data-v="">·</td>')
                continue
            tip = (f"{rel}: {r.method_label}\nbalanced accuracy on S: {_fmt(r.acc_mean, r.acc_se)}\n"
                   f"bits on S: {_fmt(r.bits_mean, r.bits_se)}\nbits / exact S: {_fmt(r.exact_mean, r.exact_se)}\n"
                   f"bits / supervised ceiling: {_fmt(r.ceiling_mean, r.ceiling_se)} "
                   f"({r.ceiling_settings} of {r.settings} setting(s) with a ceiling)\n"
                   f"rank {r.rank_defaults} among the {int(boards[rel].at_defaults.sum())} methods at their defaults; "
                   f"{r.seeds} seed(s)")
            cells.append(_cell(r.exact_mean, r.exact_se, tip, True))
        rows.append(f'<tr data-d0="{_e(c["entry"])}" data-d1="{_e(c["kind"])}">{"".join(cells)}</tr>')
    listed = sorted(cross, key=lambda c: (c["kind"] != KINDS[True], c["entry"]))
    dims = [("method", [c["entry"] for c in listed], set()), ("entry", list(KINDS.values()), {KINDS[False]})]
    sections = []
    for rel, b in boards.items():
        trs = "".join(
            f'<tr><td data-v="{int(r["rank"])}">{int(r["rank"])}</td><td class="method">{_e(r.entry)}</td>'
            f"<td>{_e(r.method_label)}</td>"
            f'{_cell(r.acc_mean, r.acc_se, "balanced accuracy on S, mean over settings")}'
            f'{_cell(r.bits_mean, r.bits_se, "bits certified on S, mean over settings")}'
            f'{_cell(r.exact_mean, r.exact_se, "bits on S / exact S", True)}'
            f'{_cell(r.ceiling_mean, r.ceiling_se, f"bits on S / supervised ceiling, {r.ceiling_settings} of {r.settings} setting(s)")}'
            f'<td data-v="{r.settings}">{r.settings}</td><td data-v="{r.seeds}">{r.seeds}</td></tr>'
            for _, r in b.iterrows())
        sections.append(
            f'<section><h3><a href="{_e(rel)}/report.html">{_e(rel)}</a></h3>'
            f'<table class="sortable"><thead><tr><th data-sort="num">rank</th><th data-sort="text">entry</th>'
            f'<th data-sort="text">method setting</th><th data-sort="num">balanced accuracy</th>'
            f'<th data-sort="num">bits</th><th data-sort="num">bits / exact S</th>'
            f'<th data-sort="num">bits / ceiling</th><th data-sort="num">settings</th>'
            f'<th data-sort="num">seeds</th></tr></thead><tbody>{trs}</tbody></table></section>')
    other = "".join(f'<li><a href="{_e(rel)}/report.html">{_e(rel)}</a>: {_e(why)}</li>' for rel, why in others)
    body = f"""<header><h1>synergy-bench: results across experiments</h1>
<p>{len(folders)} results folder(s) below <code>{_e(root.name or root)}</code>; each name links to its page.</p></header>
<section><h2>Leaderboard: synergy captured on the task S</h2>
<p>Each cell: the bits the probe certifies on S as a fraction of the exact S, mean ± SE over seeds,
averaged over the experiment's generator settings; hover it for the balanced accuracy, the bits and
the fraction of the supervised ceiling (the bits a supervised model trained on the task labels
certifies on S in the same setting; settings where it reaches less than {CEILING_MIN:g} of S have no
ceiling). Methods are named by their registry name; a setting that an experiment varies away from
the method's defaults is a separate entry, hidden at first. Sorted by the mean rank over the
experiments (within each, by bits / S among the methods at their defaults); the experiments differ
in which methods they hold, so compare means over the same columns. Click a header to sort.</p>
{_filters("leaderboard", dims)}
<div class="wide"><table id="leaderboard" class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>
</section>
<section><h2>Per experiment</h2>{"".join(sections)}</section>
<section><h2>Folders without a synergy leaderboard</h2><ul>{other or "<li>none</li>"}</ul></section>"""
    out = root / "index.html"
    out.write_text(_page("synergy-bench results", body))
    return out


CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1500px;
       padding: 0 1.2em 3em; color: #1b1b1b; }
h1 { font-size: 1.5em; margin: 0.8em 0 0.2em; } h2 { font-size: 1.2em; margin-top: 1.6em;
     border-bottom: 1px solid #ddd; } h3 { font-size: 1.05em; }
code, pre { font: 12px/1.35 ui-monospace, "DejaVu Sans Mono", monospace; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5em 0; }
.wide { overflow-x: auto; max-width: 100%; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; position: sticky; top: 0; }
th[data-sort] { cursor: pointer; } th.asc::after { content: " ▲"; } th.desc::after { content: " ▼"; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
table.small td, table.small th { font-size: 12px; }
tr[hidden] { display: none; }
.filters { display: flex; flex-wrap: wrap; gap: 0.5em; align-items: flex-start; }
fieldset { border: 1px solid #ccc; max-height: 16em; overflow-y: auto; padding: 0.2em 0.6em; }
fieldset label { display: block; white-space: nowrap; font-size: 13px; }
legend button { font-size: 11px; margin-left: 0.3em; }
.count { width: 100%; margin: 0.2em 0; color: #555; }
.warn { background: #fff4e5; border-left: 4px solid #f0a020; padding: 0.3em 0.6em; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.2em 1em; } dt { font-weight: 600; }
dd { margin: 0; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 12px; }
#tip { position: absolute; background: #222; color: #fff; padding: 0.4em 0.6em; border-radius: 4px;
       font: 12px/1.35 ui-monospace, monospace; white-space: pre; pointer-events: none; z-index: 10; }
#chart svg text { font-size: 11px; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("page-data").textContent);
  var tip = document.getElementById("tip");

  // values on hover: any element with data-tip
  document.addEventListener("mouseover", function (e) {
    var t = e.target.closest ? e.target.closest("[data-tip]") : null;
    if (!t) { tip.hidden = true; return; }
    tip.textContent = t.getAttribute("data-tip");
    tip.hidden = false;
  });
  document.addEventListener("mousemove", function (e) {
    if (!tip.hidden) { tip.style.left = (e.pageX + 14) + "px"; tip.style.top = (e.pageY + 14) + "px"; }
  });

  // filters: a row is shown when its value of every dimension is checked
  function applyFilters(box) {
    var table = document.getElementById(box.getAttribute("data-table"));
    var sets = [];
    box.querySelectorAll("fieldset").forEach(function (fs) {
      var on = new Set();
      fs.querySelectorAll("input:checked").forEach(function (i) { on.add(i.value); });
      sets.push([fs.getAttribute("data-dim"), on]);
    });
    var rows = table.tBodies[0].rows, shown = 0;
    for (var r = 0; r < rows.length; r++) {
      var ok = sets.every(function (s) { return s[1].has(rows[r].getAttribute("data-d" + s[0])); });
      rows[r].hidden = !ok;
      if (ok) { shown++; }
    }
    document.getElementById(table.id + "-count").textContent = shown + " of " + rows.length + " rows shown";
    table.dispatchEvent(new Event("filtered"));
  }
  document.querySelectorAll(".filters").forEach(function (box) {
    box.addEventListener("change", function () { applyFilters(box); });
    box.addEventListener("click", function (e) {
      var b = e.target.closest ? e.target.closest("button[data-set]") : null;
      if (!b) { return; }
      var on = b.getAttribute("data-set") === "all";
      b.closest("fieldset").querySelectorAll("input").forEach(function (i) { i.checked = on; });
      applyFilters(box);
    });
    applyFilters(box);
  });

  // sorting: click a header; numbers by data-v, text otherwise; missing values last
  document.querySelectorAll("table.sortable th[data-sort]").forEach(function (th) {
    th.addEventListener("click", function (e) {
      if (e.target.tagName === "A") { return; }
      var table = th.closest("table"), col = th.cellIndex, num = th.getAttribute("data-sort") === "num";
      var asc = !th.classList.contains("asc");
      table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
      th.classList.add(asc ? "asc" : "desc");
      var rows = Array.prototype.slice.call(table.tBodies[0].rows);
      function key(row) {
        var c = row.cells[col];
        if (!num) { return c.textContent; }
        var v = c.getAttribute("data-v");
        return v === null || v === "" ? null : parseFloat(v);
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) { return (x === null) - (y === null); }
        var d = num ? x - y : String(x).localeCompare(String(y));
        return asc ? d : -d;
      });
      rows.forEach(function (row) { table.tBodies[0].appendChild(row); });
    });
  });

  // chart of the rows shown: one dot (mean) with whiskers (± SE) per row for the chosen metric
  var chart = document.getElementById("chart"), select = document.getElementById("chart-metric");
  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) { return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]; });
  }
  function drawChart() {
    var metric = select.value, byId = {};
    (DATA.chart || []).forEach(function (p) { byId[p.id] = p; });
    var order = Array.prototype.slice.call(document.getElementById("results").tBodies[0].rows);
    var pts = order.filter(function (tr) { return !tr.hidden && byId[tr.id] && byId[tr.id].m[metric]; })
                   .map(function (tr) { return byId[tr.id]; });
    if (!pts.length) { chart.innerHTML = "<p>No row shown has this metric.</p>"; return; }
    var lo = 0, hi = 1;
    pts.forEach(function (p) {
      var v = p.m[metric], se = v[1] || 0;
      lo = Math.min(lo, v[0] - se); hi = Math.max(hi, v[0] + se);
      var ref = metric === "balanced_accuracy" ? p.chance : (metric === "bits" ? p.truth : "");
      if (ref !== "") { hi = Math.max(hi, parseFloat(ref)); }
    });
    var longest = Math.min(64, Math.max.apply(null, pts.map(function (p) { return p.label.length; })));
    var left = 16 + 6.4 * longest, width = 560, rowH = 16, top = 24, H = top + rowH * pts.length + 10;
    function x(v) { return left + (v - lo) / (hi - lo) * width; }
    var s = ['<svg width="' + (left + width + 30) + '" height="' + H + '">'];
    for (var t = 0; t <= 4; t++) {
      var v = lo + (hi - lo) * t / 4;
      s.push('<line x1="' + x(v) + '" x2="' + x(v) + '" y1="' + (top - 4) + '" y2="' + H + '" stroke="#eee"/>');
      s.push('<text x="' + x(v) + '" y="' + (top - 8) + '" text-anchor="middle">' + v.toFixed(2) + "</text>");
    }
    pts.forEach(function (p, i) {
      var v = p.m[metric], y = top + rowH * i + rowH / 2, se = v[1];
      var ref = metric === "balanced_accuracy" ? p.chance : (metric === "bits" ? p.truth : "");
      var label = p.label.length > 64 ? p.label.slice(0, 63) + "…" : p.label;
      s.push('<text x="' + (left - 8) + '" y="' + (y + 4) + '" text-anchor="end">' + esc(label) + "</text>");
      if (ref !== "") {
        s.push('<line x1="' + x(+ref) + '" x2="' + x(+ref) + '" y1="' + (y - 6) + '" y2="' + (y + 6) + '" stroke="#999" stroke-width="2"/>');
      }
      if (se !== null) {
        s.push('<line x1="' + x(v[0] - se) + '" x2="' + x(v[0] + se) + '" y1="' + y + '" y2="' + y + '" stroke="#1f77b4"/>');
      }
      var tipText = p.label + "\n" + metric + ": " + v[0].toFixed(4) + (se !== null ? " ± " + se.toFixed(4) + " (SE)" : "") +
                    "\nn = " + v[2] + " seed(s)" + (ref !== "" ? "\n" + (metric === "bits" ? "I" : "chance") + ": " + (+ref).toFixed(4) : "");
      s.push('<circle class="dot" cx="' + x(v[0]) + '" cy="' + y + '" r="4" fill="#1f77b4" data-tip="' + esc(tipText) + '"/>');
    });
    s.push("</svg>");
    chart.innerHTML = s.join("");
  }
  if (chart && select) {
    select.addEventListener("change", drawChart);
    var results = document.getElementById("results");
    results.addEventListener("filtered", drawChart);
    results.querySelectorAll("th").forEach(function (th) { th.addEventListener("click", drawChart); });
    drawChart();
  }
})();
"""
