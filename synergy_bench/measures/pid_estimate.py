r"""Sample PID estimators as measures: their estimate from a run's observations, next to the truth.

The estimators of :mod:`synergy_bench.pid.estimate` (``cluster``: PCA + k-means + exact BROJA;
``batch``: classifiers + Sinkhorn-projected alignment; Liang et al. 2023) read the two
modalities x1, x2 of the generator's training samples (N = the generator's ``n_train``) and a
task's labels y, and estimate the BROJA atoms of (x1, x2; y). Each is a measure that reads the
*observations*: it runs once per generator point and seed, with no method.

Rows: one per atom a in {R, U1, U2, S} and task, ``metric`` = a (``redundancy``, ``unique1``,
``unique2``, ``synergy``), ``value`` = the estimate :math:`\hat a` (bits); the row's
``truth_<a>`` holds the exact atom of the generator's latents (NaN where the generator has no
exact truth), so the error is :math:`|\hat a - a|`; ``measure_seconds`` the estimator's wall
time and ``details`` what it needed (clusters, or epochs per network).

Validating the estimators against exact truth over sample sizes is an ordinary spec
(``experiments/estimators.yaml``): generators with exact truth, a list of ``n_train`` values,
these measures, seeds.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from synergy_bench.measures.base import Context, Measure
from synergy_bench.pid.estimate import batch_splits, estimate
from synergy_bench.registry import UserError, param, register_measure

ATOMS = ("redundancy", "unique1", "unique2", "synergy")
SYMBOLS = {"redundancy": "R", "unique1": "U1", "unique2": "U2", "synergy": "S"}


class PIDEstimate(Measure):
    """Base of the sample PID estimators: ``estimator`` names the method of
    :func:`synergy_bench.pid.estimate.estimate`; :meth:`options` gives its options."""

    reads = "observations"
    estimator: ClassVar[str]

    def options(self, device: str) -> dict[str, Any]:
        return dict(vars(self.params))

    def check(self, generator, tasks: tuple[str, ...]) -> None:
        n_mod = getattr(generator.params, "n_modalities", 2)
        if n_mod != 2:
            raise UserError(f"measure {self.name} estimates the PID of two modalities but the generator has "
                            f"n_modalities = {n_mod}; set generator.n_modalities: 2")

    def prepare(self, ctx: Context) -> None:
        if len(ctx.train["x"]) != 2:
            raise UserError(f"measure {self.name} estimates the PID of two modalities but generator "
                            f"{ctx.run.generator_label} has {len(ctx.train['x'])}")

    def __call__(self, ctx: Context) -> list[dict[str, Any]]:
        x1, x2 = ctx.train["x"]
        rows = []
        for task in ctx.run.tasks:
            t0 = time.perf_counter()
            est = estimate(x1, x2, ctx.train["y"][task], self.estimator, seed=ctx.seed(task, self.name),
                           **self.options(ctx.device))
            seconds = time.perf_counter() - t0
            details = {"clusters": list(est.clusters)} if est.clusters is not None else {"epochs": est.epochs}
            rows += [{"task": task, "metric": a, "value": v, "seconds": seconds, "details": details}
                     for a, v in est.pid.as_dict().items()]
        return rows

    # ---- report -------------------------------------------------------------------------

    @classmethod
    def tables(cls, df: pd.DataFrame) -> list:
        """Where the truth is exact: mean |estimate - truth| per atom (± standard error over
        seeds) per case, task, estimator and N, then per estimator and N the mean over the
        case-tasks; where it is not: the estimated atoms."""
        from synergy_bench.tables import Table, seeds_note

        frame = cells(df)
        out = []
        exact, other = frame[frame.exact], frame[~frame.exact]
        if len(exact):
            rows = [[r.case, r.task, r.estimator, r.samples, *(r[f"err_{a}"] for a in ATOMS),
                     "/".join(f"{r[f'truth_{a}']:.2f}" for a in ATOMS), r.seconds, r.needed]
                    for _, r in exact.iterrows()]
            note = seeds_note(s.n for a in ATOMS for s in exact[f"err_{a}"])
            out.append(Table(f"|estimate - truth| per atom (bits), mean ± standard error {note}; truth: the "
                             "exact PID of the latents",
                             ["case", "task", "estimator", "N", *(SYMBOLS[a] for a in ATOMS), "truth R/U1/U2/S",
                              "seconds", "needed"], rows))
            summary = []
            for (est, n), part in exact.groupby(["estimator", "samples"], sort=False):
                summary.append([est, n, len(part), *(float(pd.Series([s.mean for s in part[f"err_{a}"]]).mean())
                                                     for a in ATOMS)])
            summary.sort(key=lambda r: (list(dict.fromkeys(exact.estimator)).index(r[0]), r[1]))
            out.append(Table("per estimator and N: mean over the case-tasks of the mean error per atom (bits)",
                             ["estimator", "N", "case-tasks", *(SYMBOLS[a] for a in ATOMS)], summary))
        if len(other):
            rows = [[r.case, r.task, r.estimator, r.samples, *(r[f"est_{a}"] for a in ATOMS), r.seconds]
                    for _, r in other.iterrows()]
            note = seeds_note(s.n for a in ATOMS for s in other[f"est_{a}"])
            out.append(Table(f"estimated atoms (bits) where the truth is not exact, mean ± standard error {note}",
                             ["case", "task", "estimator", "N", *(SYMBOLS[a] for a in ATOMS), "seconds"], rows))
        return out

    @classmethod
    def figures(cls, df: pd.DataFrame, fig_dir: Path) -> list[Path]:
        """``errors``: error per atom against N where the truth is exact; ``estimates``: the
        estimated atoms where it is not (see :mod:`synergy_bench.measures._pid_figures`)."""
        from synergy_bench.measures import _pid_figures

        return _pid_figures.figures(cells(df), str(df.experiment.iloc[0]), Path(fig_dir))


def case_label(generator: str, params: dict[str, Any], fallback: str) -> str:
    """A generator point's label without its sample size (``n_train``)."""
    from synergy_bench.registry import GENERATORS
    from synergy_bench.spec import label

    cls = GENERATORS.get(generator)
    if cls is None:
        return fallback
    return label(generator, {k: v for k, v in params.items() if k != "n_train"}, cls.Params)


def _needed(text: str) -> str:
    try:
        needed = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return ""
    if "clusters" in needed:
        return "x".join(map(str, needed["clusters"])) + " clusters"
    if "epochs" in needed:
        return "epochs " + " ".join(f"{k}={v}" for k, v in needed["epochs"].items())
    return ""


def cells(df: pd.DataFrame) -> pd.DataFrame:
    """Per (case, task, estimator, N), in grid order: the estimate and error of each atom over
    seeds (``est_<atom>``, ``err_<atom>``: :class:`~synergy_bench.tables.Stat`), the truth, the
    mean seconds, the first seed's needs, and whether the truth is exact."""
    from synergy_bench.tables import Stat

    params = df.generator_params.map(lambda s: json.loads(s) if isinstance(s, str) and s else {})
    df = df.assign(samples=params.map(lambda p: p.get("n_train")),
                   case=[case_label(g, p, lab) for g, p, lab in zip(df.generator, params, df.generator_label)])
    truth = np.select([df.metric == a for a in ATOMS], [df[f"truth_{a}"] for a in ATOMS], np.nan)
    df = df.assign(error=(df.value - truth).abs())
    rows = []
    keys = ["case", "task", "measure_label", "samples"]
    for (case, task, est, n), part in df.groupby(keys, sort=False, dropna=False):
        first = part.sort_values("seed", kind="stable").iloc[0]
        row = {"case": case, "task": task, "estimator": est, "samples": n, "order": part.grid_index.min(),
               "seconds": part.groupby("seed").measure_seconds.first().mean(), "needed": _needed(first.details)}
        exact = True
        for a in ATOMS:
            sub = part[part.metric == a]
            row[f"est_{a}"] = Stat.of(sub.value)
            row[f"err_{a}"] = Stat.of(sub.error)
            row[f"truth_{a}"] = sub[f"truth_{a}"].iloc[0] if len(sub) else math.nan
            exact = exact and not math.isnan(row[f"truth_{a}"])
        rows.append({**row, "exact": exact})
    out = pd.DataFrame(rows)
    return out.sort_values("order", kind="stable").reset_index(drop=True) if len(out) else out


@dataclass
class ClusterParams:
    """PCA + k-means per modality (defaults of the published recipe)."""

    clusters: int = param(20, "k-means clusters per modality", ge=1)
    pca: int = param(5, "principal components kept before k-means (0: all features)", ge=0)
    n_init: int = param(10, "k-means restarts (least inertia kept)", ge=1)


@register_measure
class PIDCluster(PIDEstimate):
    """PID estimated by PCA + k-means per modality and exact BROJA on the counts (Liang et al.
    2023, "CVX")."""

    name = "pid_cluster"
    Params = ClusterParams
    estimator = "cluster"

    def options(self, device: str) -> dict[str, Any]:
        return {**vars(self.params), "pca": self.params.pca or None}


@dataclass
class BatchParams:
    """Classifiers and a Sinkhorn-projected alignment (defaults of :func:`~synergy_bench.pid.estimate.estimate`)."""

    hidden: int = param(32, "hidden width of every MLP", ge=1)
    layers: int = param(4, "hidden layers of every MLP", ge=1)
    embed: int = param(10, "alignment embedding width per label", ge=1)
    batch_size: int = param(256, "samples per step", ge=2)
    lr: float = param(1e-3, "Adam learning rate", gt=0)
    max_epochs: int = param(200, "classifier epochs at most (early stopping on the selection split)", ge=1)
    patience: int = param(10, "classifier epochs without selection-split progress before stopping", ge=1)
    align_epochs: int = param(10, "alignment epochs (the best on the selection split kept)", ge=0)
    holdout: float = param(0.2, "fraction of the samples in the selection split", gt=0, lt=1)
    evaluation: float = param(0.2, "fraction of the samples in the evaluation split (the atoms are read there)",
                              gt=0, lt=1)
    sinkhorn_iters: int = param(100, "Sinkhorn sweeps at most", ge=1)


@register_measure
class PIDBatch(PIDEstimate):
    """PID estimated by classifiers and a Sinkhorn-projected alignment (Liang et al. 2023, "BATCH")."""

    name = "pid_batch"
    Params = BatchParams
    estimator = "batch"

    def check(self, generator, tasks: tuple[str, ...]) -> None:
        super().check(generator, tasks)
        n = getattr(generator.params, "n_train", None)
        if n is not None:
            try:
                batch_splits(n, 0, self.params.holdout, self.params.evaluation)
            except ValueError as err:
                raise UserError(f"measure pid_batch with generator.n_train = {n}: {err}; raise n_train") from None

    def options(self, device: str) -> dict[str, Any]:
        return {**vars(self.params), "device": device}
