"""The probe measure: how much of each task a representation holds, and how its answers combine
the modalities.

For every task a probe (:func:`synergy_bench.probe.fit_probe`: linear, or an MLP) is fit on the
representation of the training-size probe samples and scored once on the test samples:

* ``balanced_accuracy``: balanced accuracy of its predictions on the test set;
* ``bits``: the certified bits, a lower bound in expectation on I(representation; task) (the
  calibrated probe or the label prior, chosen on the hold-out; see :mod:`synergy_bench.probe`);
* ``pred_redundancy``, ``pred_unique1``, ``pred_unique2``, ``pred_synergy`` (where
  ``prediction_pid`` and the generator's latents are discrete): the exact PID of (modality-1
  latents, modality-2 latents; the probe's test predictions), :func:`synergy_bench.data.prediction_pid`.

Each row's ``details`` hold the probe's diagnostics (``bits_se``, ``bits_calibrated``,
``bits_uncalibrated``, ``prior_won``, ``temperature``, ``C``, ``epochs``).
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synergy_bench.data import physical_memory, prediction_pid, prediction_pid_bytes
from synergy_bench.measures.base import Context, Measure
from synergy_bench.probe import KINDS, fit_probe
from synergy_bench.registry import UserError, param, register_measure

#: fewest samples per label class (on average) each part of the probe's training set (fit, hold-out) needs:
#: the least a split can hold of every class
MIN_PER_CLASS = 2
DIAGNOSTICS = ("bits_se", "bits_calibrated", "bits_uncalibrated", "prior_won", "temperature", "C", "epochs")


@dataclass
class ProbeParams:
    """A probe per task: linear (the published protocol) or an MLP; defaults of ``fit_probe``."""

    kind: str = param("linear", "linear: logistic regression (L-BFGS); mlp: ReLU network stopped early "
                                "on the hold-out", choices=KINDS)
    holdout: float = param(0.2, "fraction of the training set held out to choose and calibrate the probe",
                           gt=0, lt=1)
    Cs: list = param([0.01, 0.1, 1.0, 10.0], "linear: inverse regularisation strengths tried (each > 0)")
    max_iter: int = param(500, "linear: L-BFGS iterations", ge=1)
    hidden: list = param([256, 256], "mlp: hidden widths")
    lr: float = param(1e-3, "mlp: Adam learning rate", gt=0)
    batch_size: int = param(256, "mlp: samples per step", ge=1)
    max_epochs: int = param(200, "mlp: epochs at most (early stopping on the hold-out)", ge=1)
    patience: int = param(10, "mlp: epochs without hold-out progress before stopping", ge=1)
    prediction_pid: bool = param(True, "add the exact PID of the probe's predictions (pred_* rows; "
                                       "seconds per task where the latents take hundreds of values)")

    def __post_init__(self):
        if not isinstance(self.Cs, list) or not self.Cs or not all(
                isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0 for c in self.Cs):
            raise ValueError(f"Cs = {self.Cs!r} must be a non-empty list of numbers > 0, e.g. [0.1, 1.0]")
        if not isinstance(self.hidden, list) or not self.hidden or not all(
                isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in self.hidden):
            raise ValueError(f"hidden = {self.hidden!r} must be a non-empty list of widths >= 1, e.g. [256, 256]")


@register_measure
class Probe(Measure):
    """Probes per task: balanced accuracy, certified bits, PID of the predictions."""

    name = "probe"
    Params = ProbeParams
    reads = "representation"

    def check(self, generator, tasks: tuple[str, ...]) -> None:
        """The probe's training set (n_train samples) split into a fit and a hold-out part must
        leave :data:`MIN_PER_CLASS` samples per class of the largest task in each."""
        n = getattr(generator.params, "n_train", None)
        if n is None:
            return
        h = self.params.holdout
        k = max(generator.n_classes(t) for t in tasks)
        n_hold = min(n - 1, max(1, round(h * n)))
        need = MIN_PER_CLASS * k
        if min(n_hold, n - n_hold) < need:
            least = math.ceil(need / min(h, 1 - h)) + 1
            raise UserError(f"probe.holdout = {h} with generator.n_train = {n} leaves {n - n_hold} samples to fit "
                            f"the probe and {n_hold} to choose and calibrate it; a {k}-class task needs at least "
                            f"{need} in each: raise generator.n_train to {least} or more, or move probe.holdout "
                            "towards 0.5")

    def prepare(self, ctx: Context) -> None:
        """Before training: refuse a prediction PID whose exact solve cannot fit in memory."""
        if not self.params.prediction_pid:
            return
        codes = ctx.generator.modality_codes(ctx.test["z"])
        if codes is None:
            return
        k = max(ctx.generator.n_classes(t) for t in ctx.run.tasks)
        need, memory = prediction_pid_bytes(codes, k), physical_memory()
        if memory and need > memory:
            from synergy_bench.spec import format_bytes

            raise UserError(f"the exact PID of the probe's predictions ({len(np.unique(codes[0]))} x "
                            f"{len(np.unique(codes[1]))} latent codes x {k} labels) needs about "
                            f"{format_bytes(need)}, more than this machine's {format_bytes(memory)}; set "
                            "probe.prediction_pid: false or lower the generator's k")

    def options(self, device: str) -> dict[str, Any]:
        p = self.params
        if p.kind == "linear":
            return {"Cs": tuple(p.Cs), "holdout": p.holdout, "max_iter": p.max_iter}
        return {"holdout": p.holdout, "hidden": tuple(p.hidden), "lr": p.lr, "batch_size": p.batch_size,
                "max_epochs": p.max_epochs, "patience": p.patience, "device": device}

    def __call__(self, ctx: Context) -> list[dict[str, Any]]:
        x_fit, x_test = ctx.embedding("probe"), ctx.embedding("test")
        codes = ctx.generator.modality_codes(ctx.test["z"]) if self.params.prediction_pid else None
        rows = []
        for task in ctx.run.tasks:
            k = ctx.generator.n_classes(task)
            t0 = time.perf_counter()
            res = fit_probe(x_fit, ctx.probe["y"][task], x_test, ctx.test["y"][task], k,
                            np.random.default_rng(ctx.seed(task)), kind=self.params.kind,
                            **self.options(ctx.device))
            metrics = {"balanced_accuracy": res["balanced_accuracy"], "bits": res["bits"]}
            if codes is not None:
                metrics.update({f"pred_{a}": v for a, v in prediction_pid(codes, res["pred"], k).as_dict().items()})
            seconds = time.perf_counter() - t0
            details = {d: res[d] for d in DIAGNOSTICS}
            rows += [{"task": task, "metric": m, "value": v, "seconds": seconds, "details": details}
                     for m, v in metrics.items()]
        return rows

    # ---- report -------------------------------------------------------------------------

    @classmethod
    def tables(cls, df: pd.DataFrame) -> list:
        """Per generator point and probe: balanced accuracy and certified bits per method (rows)
        and task, mean ± standard error over seeds; the last row gives chance and the task's
        exact information."""
        from synergy_bench.tables import Stat, Table, grid_order, seeds_note

        out = []
        for (gen, measure), part in df.groupby(["generator_label", "measure_label"], sort=False):
            tasks = list(dict.fromkeys(part.task))
            stats = {k: Stat.of(g.value) for k, g in
                     part[part.metric.isin(["balanced_accuracy", "bits"])].groupby(["method_label", "task", "metric"])}
            if not stats:
                continue
            first = part.drop_duplicates("task").set_index("task")
            rows = [[m, *(stats.get((m, t, metric), Stat.of([])) for metric in ("balanced_accuracy", "bits")
                          for t in tasks)] for m in grid_order(part, "method_label")]
            rows.append(["chance | exact bits", *(first.chance[t] for t in tasks), *(first.truth_bits[t] for t in tasks)])
            note = seeds_note(s.n for s in stats.values())
            out.append(Table(f"{gen} - {measure}: balanced accuracy | certified bits per task, "
                             f"mean ± standard error {note}",
                             ["method", *(f"{t} acc" for t in tasks), *(f"{t} bits" for t in tasks)], rows))
        return out

    @classmethod
    def figures(cls, df: pd.DataFrame, fig_dir: Path) -> list[Path]:
        """The figures of :func:`synergy_bench.plots.report`: in ``fig_dir`` where the folder has
        one probe, else per probe in a subfolder named by its label."""
        from synergy_bench import plots

        labels = list(dict.fromkeys(df.measure_label))
        if len(labels) == 1:
            return plots.report(df, Path(fig_dir))
        return [p for measure in labels for p in
                plots.report(df[df.measure_label == measure], Path(fig_dir) / re.sub(r"[^\w.=-]+", "_", measure))]
