r"""Validation of the sample PID estimators against exact truth, as an experiment spec.

The estimators of :mod:`synergy_bench.pid.estimate` (cluster = PCA + k-means + exact BROJA,
and BATCH; Liang et al. 2023) see high-dimensional observations x1, x2 rendered from discrete
latents whose PID is exact (the generators' ``ground_truth``). A validation spec lists generator
cases, sample sizes, estimators with their options and seeds; every cell

    case x task x sample size N x estimator x seed

draws N samples of the case (``n_train = N``), estimates the PID of (x1, x2; y_task) and writes
one tidy row per atom a in {R, U1, U2, S} through :class:`synergy_bench.results.ResultsStore`:
``metric`` = a, ``value`` = the estimate :math:`\hat a`, ``truth`` = a (NaN where the generator
has no exact truth), ``abs_error`` = :math:`|\hat a - a|`, ``samples`` = N, ``train_seconds`` =
the estimator's wall time and ``needed`` = its clusters or epochs (JSON). A rerun skips the
cells already complete.

Spec (YAML)::

    kind: estimators            # required: marks an estimator-validation spec
    name: estimators
    samples: [1000, 10000]      # sizes N of every case (a case may give its own)
    estimators:                 # names or {name, options..., max_samples}
      - cluster
      - {name: batch, max_epochs: 50, max_samples: 10000}
    cases:                      # {name: generator, its params..., tasks, samples, estimators}
      - {name: latent, k: 2}
      - {name: bitwise, dist: [xor, and]}      # a list expands into one case per value
    seeds: 1                    # a count or a list
    base_seed: 0
    device: cpu                 # the batch estimator's device
    threads: 1                  # torch / BLAS threads
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import inspect
import json
import re
import textwrap
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synergy_bench.registry import UserError, get_generator, make_params, param

from .estimate import _batch, _cluster, estimate

ATOMS = ("redundancy", "unique1", "unique2", "synergy")
SYMBOLS = {"redundancy": "R", "unique1": "U1", "unique2": "U2", "synergy": "S"}
TOP_KEYS = ("kind", "name", "description", "cases", "samples", "estimators", "seeds", "base_seed",
            "device", "threads")
CASE_KEYS = ("tasks", "samples", "estimators")   # besides `name` and the generator's parameters
SIZE_PARAM = "n_train"                           # the generator parameter a cell's N sets


def _defaults(fn) -> dict[str, Any]:
    """Keyword defaults of an estimator function: the one place its option defaults live."""
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


_C, _B = _defaults(_cluster), _defaults(_batch)


class Cluster:
    """PCA + k-means per modality, exact BROJA on the counts (Liang et al. 2023, "CVX")."""

    @dataclass
    class Params:
        clusters: int = param(_C["clusters"], "k-means clusters per modality", ge=1)
        pca: int = param(_C["pca"], "principal components kept before k-means (0: all features)", ge=0)
        n_init: int = param(_C["n_init"], "k-means restarts (least inertia kept)", ge=1)
        max_samples: int = param(0, "largest sample size this estimator is run on (0: every size)", ge=0)


class Batch:
    """Classifiers + Sinkhorn-projected alignment (Liang et al. 2023, "BATCH")."""

    @dataclass
    class Params:
        hidden: int = param(_B["hidden"], "hidden width of every MLP", ge=1)
        layers: int = param(_B["layers"], "hidden layers of every MLP", ge=1)
        embed: int = param(_B["embed"], "alignment embedding width per label", ge=1)
        batch_size: int = param(_B["batch_size"], "samples per step", ge=2)
        lr: float = param(_B["lr"], "Adam learning rate", gt=0)
        max_epochs: int = param(_B["max_epochs"], "classifier epochs at most (early stopping)", ge=1)
        patience: int = param(_B["patience"], "classifier epochs without held-out progress before stopping", ge=1)
        align_epochs: int = param(_B["align_epochs"], "alignment epochs (best held-out epoch kept)", ge=0)
        holdout: float = param(_B["holdout"], "fraction of samples held out", gt=0, lt=1)
        sinkhorn_iters: int = param(_B["sinkhorn_iters"], "Sinkhorn sweeps at most", ge=1)
        max_samples: int = param(0, "largest sample size this estimator is run on (0: every size)", ge=0)


ESTIMATORS: dict[str, type] = {"cluster": Cluster, "batch": Batch}


# --------------------------------------------------------------------------- spec


def _unknown(key: str, valid: tuple[str, ...] | list[str], what: str) -> UserError:
    near = difflib.get_close_matches(key, valid, n=1)
    hint = f"did you mean {near[0]!r}? " if near else ""
    return UserError(f"unknown {what} {key!r}; {hint}valid keys: {', '.join(valid)}")


def _int_list(value: Any, where: str, low: int) -> list[int]:
    """An int or a non-empty list of ints, each >= low."""
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in items):
        raise UserError(f"{where} = {value!r} must be an integer >= {low} or a non-empty list of them")
    return list(dict.fromkeys(items))


def _estimators(items: Any, where: str) -> list[dict[str, Any]]:
    from synergy_bench.spec import _entry, _grid, label

    if not isinstance(items, list) or not items:
        raise UserError(f"{where} = {items!r} must be a non-empty list, e.g. [cluster, batch]")
    out = []
    for item in items:
        name, values = _entry(item, where)
        if name not in ESTIMATORS:
            raise UserError(f"unknown estimator {name!r} in {where}; choose one of {', '.join(ESTIMATORS)}")
        for options in _grid(ESTIMATORS[name], values, f"{where}[{name}]"):
            cap = options.pop("max_samples")
            out.append({"name": name, "options": options, "max_samples": cap,
                        "label": label(name, options, ESTIMATORS[name].Params)})
    return out


def _case(item: Any, top: dict[str, Any]) -> list[dict[str, Any]]:
    """One spec case -> resolved cases (a list parameter expands into several)."""
    from synergy_bench.spec import _entry, _grid

    gname, values = _entry(item, "cases")
    where = f"cases[{gname}]"
    gcls = get_generator(gname)
    fields = [f.name for f in dataclasses.fields(gcls.Params)]
    if SIZE_PARAM not in fields:
        raise UserError(f"generator {gname!r} has no {SIZE_PARAM} parameter, so it cannot be sampled at "
                        f"the spec's sizes; choose a generator with {SIZE_PARAM}")
    if SIZE_PARAM in values:
        raise UserError(f"{where}.{SIZE_PARAM} is set by the sample sizes; remove it and use "
                        f"`samples: [...]` in the case or at the top of the spec")
    for key in values:
        if key not in fields and key not in CASE_KEYS:
            raise _unknown(key, [*CASE_KEYS, *(f for f in fields if f != SIZE_PARAM)], f"key in {where}")
    own = {k: values.pop(k) for k in CASE_KEYS if k in values}
    samples = _int_list(own.get("samples", top["samples"]), f"{where}.samples", 2)
    estimators = _estimators(own["estimators"], f"{where}.estimators") if "estimators" in own \
        else top["estimators"]
    cases, defaults = [], dataclasses.asdict(gcls.Params())
    for params in _grid(gcls, values, where):
        params.pop(SIZE_PARAM)
        known = gcls(make_params(gcls, params, where), 0).tasks
        tasks = own.get("tasks", list(known))
        tasks = [tasks] if isinstance(tasks, str) else tasks
        if not isinstance(tasks, list) or not tasks:
            raise UserError(f"{where}.tasks = {tasks!r} must be a non-empty list of tasks from {list(known)}")
        for t in tasks:
            if t not in known:
                raise UserError(f"task {t!r} is not a task of generator {gname!r}; choose from {list(known)}")
        shown = [f"{k}={v}" for k, v in params.items() if k in values or v != defaults[k]]
        cases.append({"generator": gname, "params": params, "label": f"{gname}[{','.join(shown)}]" if shown else gname,
                      "tasks": list(tasks), "samples": samples, "estimators": estimators})
    return cases


def load_spec(spec: str | None, sets: list[str] | None = None) -> dict[str, Any]:
    """Read a validation spec (YAML path or packaged name; None -> ``estimators``), apply the
    ``--set`` overrides and resolve it."""
    from synergy_bench.spec import apply_overrides, read_spec

    return resolve(apply_overrides(read_spec(spec or "estimators"), sets or []))


def resolve(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate a raw validation spec and fill defaults; the result is stored beside the results."""
    if raw.get("kind") != "estimators":
        raise UserError(f"spec {raw.get('name')!r} has kind = {raw.get('kind')!r}, not 'estimators'; add "
                        "`kind: estimators` to an estimator-validation spec, or run an experiment spec "
                        "with `synergy-bench run`")
    for key in raw:
        if key not in TOP_KEYS:
            raise _unknown(key, TOP_KEYS, "spec key")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise UserError(f"spec name = {name!r} must be a non-empty string without '/'; add `name: estimators`")
    top = {"samples": _int_list(raw.get("samples", [1000, 10000]), "samples", 2),
           "estimators": _estimators(raw.get("estimators", list(ESTIMATORS)), "estimators")}
    items = raw.get("cases")
    if not isinstance(items, list) or not items:
        raise UserError(f"cases = {items!r} must be a non-empty list, e.g. [{{name: latent, k: 2}}]")
    cases = [c for item in items for c in _case(item, top)]
    seeds = raw.get("seeds", 1)
    seeds = list(range(seeds)) if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1 \
        else _int_list(seeds, "seeds", 0) if isinstance(seeds, list) else None
    if seeds is None:
        raise UserError(f"seeds = {raw['seeds']!r} must be a count >= 1 or a non-empty list of integers")
    base_seed, device, threads = raw.get("base_seed", 0), raw.get("device", "cpu"), raw.get("threads", 1)
    if not isinstance(base_seed, int) or isinstance(base_seed, bool):
        raise UserError(f"base_seed = {base_seed!r} must be an integer")
    if not isinstance(device, str):
        raise UserError(f"device = {device!r} must be a string: auto, cpu, cuda or cuda:N")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise UserError(f"threads = {threads!r} must be an integer >= 1")
    return {"kind": "estimators", "name": name, "description": raw.get("description", ""),
            "seeds": seeds, "base_seed": base_seed, "device": device, "threads": threads, "cases": cases}


@dataclass(frozen=True)
class Cell:
    """One estimate: a case's task at N samples, by one estimator with its options, one seed."""

    experiment: str
    generator: str
    params: dict
    case_label: str
    task: str
    samples: int
    estimator: str
    options: dict
    estimator_label: str
    seed: int
    base_seed: int
    index: int = 0  # position in the grid: orders tables and figures, not part of the id

    @property
    def canonical(self) -> str:
        """The case's label with only the parameters that differ from their defaults (seeds use it,
        so how a case is spelled in the spec changes no number)."""
        from synergy_bench.spec import label

        return label(self.generator, self.params, get_generator(self.generator).Params)

    @property
    def world_seed(self) -> int:
        """The generator's world (random maps, embeddings): shared by every size and estimator."""
        from synergy_bench.spec import derive_seed

        return derive_seed(self.base_seed, self.canonical, self.seed)

    @property
    def sample_seed(self) -> int:
        """The N samples: shared by every task and estimator of the size."""
        from synergy_bench.spec import derive_seed

        return derive_seed(self.base_seed, self.canonical, self.seed, self.samples)

    @property
    def estimator_seed(self) -> int:
        from synergy_bench.spec import derive_seed

        return derive_seed(self.base_seed, self.canonical, self.task, self.samples, self.estimator, self.seed)

    @property
    def cell_id(self) -> str:
        from synergy_bench.spec import changed

        key = [self.generator, changed(self.params, get_generator(self.generator).Params), self.task, self.samples, self.estimator, self.options,
               self.seed, self.base_seed]
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def expand(spec: dict[str, Any]) -> list[Cell]:
    """The cells of a resolved spec, in the order they run (cells sharing samples adjacent);
    an estimator skips the sizes above its ``max_samples``; repeated cells are kept once."""
    cells, seen = [], set()
    for case in spec["cases"]:
        for seed in spec["seeds"]:
            for n in case["samples"]:
                for task in case["tasks"]:
                    for est in case["estimators"]:
                        if est["max_samples"] and n > est["max_samples"]:
                            continue
                        cell = Cell(spec["name"], case["generator"], case["params"], case["label"], task, n,
                                    est["name"], est["options"], est["label"], seed, spec["base_seed"])
                        if cell.cell_id not in seen:
                            seen.add(cell.cell_id)
                            cells.append(dataclasses.replace(cell, index=len(cells)))
    return cells


# --------------------------------------------------------------------------- running


class _Samples:
    """The generator and samples of the last (case, seed, N) drawn: cells sharing them reuse them."""

    def __init__(self):
        self.key, self.value = None, None

    def get(self, cell: Cell):
        key = (cell.generator, json.dumps(cell.params, sort_keys=True), cell.seed, cell.samples)
        if key != self.key:
            cls = get_generator(cell.generator)
            gen = cls(make_params(cls, {**cell.params, SIZE_PARAM: cell.samples}, "generator"), cell.world_seed)
            self.key, self.value = key, (gen, gen.sample("train", np.random.default_rng(cell.sample_seed)),
                                         gen.ground_truth())
        return self.value


def execute(cell: Cell, device: str, cache: _Samples | None = None) -> list[dict[str, Any]]:
    """Estimate one cell's PID; one row per atom with estimate, truth and absolute error (bits)."""
    from synergy_bench import __version__

    _, sample, truth = (cache or _Samples()).get(cell)
    if len(sample["x"]) != 2:
        raise UserError(f"case {cell.case_label} has {len(sample['x'])} modalities; the PID estimators "
                        "take two (set n_modalities: 2)")
    options = {**cell.options, **({"device": device} if cell.estimator == "batch" else {})}
    t0 = time.perf_counter()
    est = estimate(sample["x"][0], sample["x"][1], sample["y"][cell.task], cell.estimator,
                             seed=cell.estimator_seed, **options)
    seconds = time.perf_counter() - t0
    exact = truth.get(cell.task)
    true_atoms = exact.as_dict() if exact is not None else dict.fromkeys(ATOMS, float("nan"))
    needed = {"clusters": list(est.clusters)} if est.clusters is not None else {"epochs": est.epochs}
    base = {"run_id": cell.cell_id, "experiment": cell.experiment, "generator": cell.generator,
            "generator_label": cell.case_label, "generator_params": json.dumps(cell.params, sort_keys=True),
            "method": cell.estimator, "method_label": cell.estimator_label,
            "method_params": json.dumps(cell.options, sort_keys=True), "trained": cell.estimator == "batch",
            "grid_index": cell.index, "seed": cell.seed, "task": cell.task, "samples": cell.samples,
            "truth_bits": exact.total if exact is not None else float("nan"),
            **{f"truth_{a}": v for a, v in true_atoms.items()},
            "train_seconds": round(seconds, 3), "needed": json.dumps(needed, sort_keys=True),
            "device": device if cell.estimator == "batch" else "cpu", "version": __version__}
    return [{**base, "metric": a, "value": v, "truth": true_atoms[a], "abs_error": abs(v - true_atoms[a])}
            for a, v in est.pid.as_dict().items()]


def run_validation(spec: dict[str, Any], out: str | Path, *, force: bool = False, quiet: bool = False,
                   command: str = "") -> tuple[pd.DataFrame, int]:
    """Run every cell not yet complete in ``out``; return the spec's rows and the failures.

    Torch and the BLAS under numpy / scikit-learn use ``spec['threads']`` threads.
    """
    import sys

    import torch
    from threadpoolctl import threadpool_limits
    from tqdm import tqdm

    from synergy_bench import results
    from synergy_bench.runner import resolve_device

    device = resolve_device(spec["device"])
    cells = expand(spec)
    store = results.ResultsStore(out, spec, force=force)
    store.write_meta(device=device, command=command)
    failed, threads = 0, torch.get_num_threads()
    try:
        todo = [c for c in cells if c.cell_id not in store.completed]
        print(f"{spec['name']}: {len(cells)} cells ({len(cells) - len(todo)} already in {out}), "
              f"batch device {device}", flush=True)
        torch.set_num_threads(spec["threads"])
        cache = _Samples()
        with threadpool_limits(spec["threads"]), tqdm(total=len(todo), unit="cell", file=sys.stderr,
                                                      disable=quiet) as bar:
            for cell in todo:
                name = (f"{cell.estimator_label} on {cell.case_label} task {cell.task}, "
                        f"{cell.samples} samples, seed {cell.seed}")
                try:
                    store.add(cell.cell_id, execute(cell, device, cache))
                except UserError:
                    raise
                except Exception as err:  # noqa: BLE001 — one failed cell must not sink the grid
                    failed += 1
                    store.fail(cell.cell_id, name, f"{type(err).__name__}: {err}\n{traceback.format_exc()}")
                    tqdm.write(f"cell failed: {name}: {type(err).__name__}: {err}", file=sys.stderr)
                bar.update(1)
    finally:
        torch.set_num_threads(threads)
        store.close()
    df = results.load(out)
    return df[df.run_id.isin({c.cell_id for c in cells})], failed


# --------------------------------------------------------------------------- tables


def _per_cell(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (case, task, estimator, N), in grid order: the mean estimate, truth and error of each
    atom over seeds (columns (stat, atom)), and the mean seconds and first seed's needs."""
    keys = ["generator_label", "task", "method_label", "samples"]
    atoms = df.groupby(keys + ["metric"], sort=False).agg(
        estimate=("value", "mean"), truth=("truth", "first"), abs_error=("abs_error", "mean"),
        order=("grid_index", "min")).unstack("metric")
    atoms = atoms.loc[atoms["order"].min(axis=1).sort_values().index]
    extra = df.sort_values("seed", kind="stable").groupby(keys, sort=False).agg(
        seconds=("train_seconds", "mean"), needed=("needed", "first"))
    return atoms, extra.loc[atoms.index]


def _needed(text: str) -> str:
    needed = json.loads(text)
    if "clusters" in needed:
        return "x".join(map(str, needed["clusters"])) + " clusters"
    return "epochs " + " ".join(f"{k}={v}" for k, v in needed["epochs"].items())


def format_table(df: pd.DataFrame) -> str:
    """Plain-text tables of a validation's rows.

    Cases with exact truth: mean |estimate - truth| (bits) per atom, case, task, estimator and N,
    then per estimator and N the mean of those errors over the case-tasks. Cases without exact
    truth: the mean estimated atoms.
    """
    atoms, extra = _per_cell(df)
    exact = atoms["truth"].notna().all(axis=1)
    cw, ew = (max(len(s) for s in atoms.index.get_level_values(level)) + 2 for level in (0, 2))
    head = (f"{'case':<{cw}}{'task':<6}{'estimator':<{ew}}{'samples':>8}"
            + "".join(f"{SYMBOLS[a]:>9}" for a in ATOMS))
    seeds, lines = df.seed.nunique(), []
    if exact.any():
        lines += [f"mean |estimate - truth| per atom (bits) over {seeds} seed(s); truth: the exact PID of the latents",
                  head + f"{'truth R/U1/U2/S':>22}{'seconds':>9}   needed"]
        for (case, task, est, n), row in atoms[exact].iterrows():
            truth = "/".join(f"{row[('truth', a)]:.2f}" for a in ATOMS)
            lines.append(f"{case:<{cw}}{task:<6}{est:<{ew}}{n:>8}"
                         + "".join(f"{row[('abs_error', a)]:>9.3f}" for a in ATOMS)
                         + f"{truth:>22}{extra.at[(case, task, est, n), 'seconds']:>9.1f}   "
                         + _needed(extra.at[(case, task, est, n), "needed"]))
        err = atoms.loc[exact, "abs_error"]
        order = list(dict.fromkeys(err.index.get_level_values("method_label")))
        groups = sorted(err.groupby(level=["method_label", "samples"], sort=False),
                        key=lambda kv: (order.index(kv[0][0]), kv[0][1]))
        lines += ["", "per estimator and N: mean over the case-tasks of the error per atom (bits)",
                  f"{'estimator':<{ew}}{'samples':>8}{'case-tasks':>11}" + "".join(f"{SYMBOLS[a]:>9}" for a in ATOMS)]
        for (est, n), part in groups:
            lines.append(f"{est:<{ew}}{n:>8}{len(part):>11}" + "".join(f"{part[a].mean():>9.3f}" for a in ATOMS))
    if not exact.all():
        lines += ([""] if lines else []) + [
            f"estimated atoms (bits) where the truth is not exact, mean over {seeds} seed(s)",
            head + f"{'total':>9}{'seconds':>9}"]
        for (case, task, est, n), row in atoms[~exact].iterrows():
            values = [row[("estimate", a)] for a in ATOMS]
            lines.append(f"{case:<{cw}}{task:<6}{est:<{ew}}{n:>8}" + "".join(f"{v:>9.3f}" for v in values)
                         + f"{sum(values):>9.3f}{extra.at[(case, task, est, n), 'seconds']:>9.1f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures


def error_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Mean absolute error over seeds per (estimator, case, task, N, atom), cases with exact truth."""
    sub = df[df.truth.notna()]
    frame = sub.groupby(["method_label", "generator_label", "task", "samples", "metric"], sort=False) \
        .abs_error.mean().rename("abs_error").reset_index()
    return frame


def estimates_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of each estimated atom where the truth is not exact, at the largest
    N each (case, task, estimator) was run at."""
    sub = df[df.truth.isna()]
    largest = sub.groupby(["method_label", "generator_label", "task"], sort=False).samples.transform("max")
    sub = sub[sub.samples == largest]
    g = sub.groupby(["method_label", "generator_label", "task", "samples", "metric"], sort=False).value
    return pd.concat([g.mean().rename("mean"), g.std(ddof=1).fillna(0.0).rename("std")], axis=1).reset_index()


def _save(fig, stem: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = [stem.with_suffix(s) for s in (".png", ".pdf")]
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths


def draw_errors(frame: pd.DataFrame, title: str, stem: Path) -> list[Path]:
    """One panel per estimator: |error| per atom vs N (log x). Thin lines: each case-task; thick:
    their mean at the sizes every case-task of the estimator was run at."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    estimators = list(dict.fromkeys(frame.method_label))
    colors = dict(zip(ATOMS, plt.get_cmap("tab10").colors))
    fig, axes = plt.subplots(1, len(estimators), figsize=(4.2 * len(estimators), 3.6), sharey=True, squeeze=False)
    for ax, est in zip(axes[0], estimators):
        part = frame[frame.method_label == est]
        tasks = part.groupby(["generator_label", "task"], sort=False)
        common = set.intersection(*(set(p.samples) for _, p in tasks))
        for atom in ATOMS:
            for _, p in tasks:
                line = p[p.metric == atom].sort_values("samples")
                ax.plot(line.samples, line.abs_error, color=colors[atom], alpha=0.25, linewidth=0.8)
            mean = part[(part.metric == atom) & part.samples.isin(common)].groupby("samples").abs_error.mean()
            ax.plot(mean.index, mean.values, "o-", color=colors[atom], linewidth=2.2, label=SYMBOLS[atom])
        ax.set_xscale("log")
        ax.set_xlabel("samples N")
        ax.set_title(textwrap.fill(f"{est} ({tasks.ngroups} case-tasks)", 48), fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("|estimate - truth| (bits)")
    axes[0][-1].legend(fontsize=8, title="atom (thick: mean)", title_fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, stem)


def _names(labels: list[str], tasks: list[str]) -> tuple[list[str], str]:
    """Short bar names for case labels (and tasks, where several), and the x-axis title.

    ``gaussian[setting=mix1]`` -> ``mix1`` under the title ``gaussian setting`` when every case
    differs in that one parameter only; else the label without its generator name."""
    parts = [re.fullmatch(r"([^[]*)\[([^=,\]]+)=([^,\]]*)\]", c) for c in labels]
    one = all(parts) and len({(m[1], m[2]) for m in parts}) == 1
    names = [m[3] for m in parts] if one else [re.sub(r"^[^[]*\[(.*)\]$", r"\1", c) for c in labels]
    if len(set(tasks)) > 1:
        names = [f"{n} {t}" for n, t in zip(names, tasks)]
    return names, f"{parts[0][1]} {parts[0][2]}" if one else "case"


def draw_estimates(frame: pd.DataFrame, title: str, stem: Path) -> list[Path]:
    """One panel per estimator: grouped bars of the estimated atoms of every case-task (mean over
    seeds, std as error bars where there are several)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    estimators = list(dict.fromkeys(frame.method_label))
    short, xlabel = _names(list(frame.generator_label), list(frame.task))
    frame = frame.assign(name=short)
    names = list(dict.fromkeys(frame.name))
    colors = dict(zip(ATOMS, plt.get_cmap("tab10").colors))
    width = 0.8 / len(ATOMS)
    fig, axes = plt.subplots(len(estimators), 1, figsize=(max(5.0, 1.6 + 0.75 * len(names)), 2.9 * len(estimators)),
                             sharey=True, squeeze=False)
    for ax, est in zip(axes[:, 0], estimators):
        part = frame[frame.method_label == est]
        for i, atom in enumerate(ATOMS):
            bars = part[part.metric == atom].set_index("name").reindex(names)
            x = np.arange(len(names)) + (i - (len(ATOMS) - 1) / 2) * width
            ax.bar(x, bars["mean"], width, yerr=bars["std"] if (bars["std"] > 0).any() else None,
                   capsize=1.5, color=colors[atom], label=SYMBOLS[atom])
        sizes = sorted(set(part.samples))
        ax.set_title(textwrap.fill(f"{est}, N = {', '.join(map(str, sizes))}", 100), fontsize=9)
        ax.set_xticks(np.arange(len(names)), names, rotation=30 if len(names) > 4 else 0,
                      ha="right" if len(names) > 4 else "center", fontsize=8)
        ax.set_ylabel("estimate (bits)")
        ax.grid(axis="y", alpha=0.3)
    axes[-1][0].set_xlabel(xlabel)
    axes[0][0].legend(fontsize=8, ncol=4, loc="upper right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, stem)


def figures(df: pd.DataFrame, fig_dir: str | Path) -> list[Path]:
    """Every figure that applies to a validation's rows; returns the written paths.

    ``errors``: error per atom vs N where the truth is exact; ``estimates``: the estimated atoms
    where it is not (e.g. the Gaussian settings of Liang et al. 2023).
    """
    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    name, paths = df.experiment.iloc[0], []
    errors = error_frame(df)
    if len(errors):
        paths += draw_errors(errors, f"{name}: estimator error against the exact PID", fig_dir / "errors")
    estimates = estimates_frame(df)
    if len(estimates):
        paths += draw_estimates(estimates, f"{name}: estimated PID where the truth is not exact",
                                fig_dir / "estimates")
    return paths
