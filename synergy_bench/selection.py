"""The published selection protocol as an option (``train.select: best_test``): measure the
weights of the epoch whose linear probes score best on the test set.

The default, ``last``, measures the weights at the end of training and never looks at the test
set. The difference between the two is the optimism of test-set selection.
"""
from __future__ import annotations

import math
import time

import numpy as np

from synergy_bench.probe import fit_probe
from synergy_bench.spec import Run


class TestSelection:
    """The published selection protocol (``train.select: best_test``): every ``train.eval_every``
    epochs and after the last, a linear probe per task (:func:`synergy_bench.probe.fit_probe`, its
    defaults) is fit on the probe samples and scored on the *test* samples; the weights of the
    epoch with the best mean balanced accuracy over the run's tasks are kept and measured. Its
    numbers are optimistic by construction (the test set chooses the epoch); :attr:`record` goes
    into every row's ``details``. CoMM's code probes the test pairs every epoch (Dufumier et al.
    2025); InfMasking's Trifeature numbers stop early on test probe accuracy."""

    def __init__(self, run: Run, ctx):
        self.run, self.ctx, self.method, self.embedding = run, ctx, ctx.method, ctx.embed
        self.best, self.epoch, self.state, self.scores, self.seconds = -math.inf, -1, None, [], 0.0

    def __call__(self, epoch: int) -> None:
        every, last = self.run.train["eval_every"], self.run.train["epochs"] - 1
        if (epoch + 1) % every and epoch != last:
            return
        t0 = time.perf_counter()
        x_fit, x_test = self.embedding("probe"), self.embedding("test")
        accs = [fit_probe(x_fit, self.ctx.probe["y"][t], x_test, self.ctx.test["y"][t], self.ctx.generator.n_classes(t),
                          np.random.default_rng(self.ctx.seed("select", t, epoch)))["balanced_accuracy"]
                for t in self.run.tasks]
        score = float(np.mean(accs))
        self.scores.append((epoch, round(score, 6)))
        if score > self.best:
            self.best, self.epoch = score, epoch
            self.state = {k: v.detach().clone() for k, v in self.method.state_dict().items()}
        self.seconds += time.perf_counter() - t0

    def restore(self) -> None:
        if self.state is not None:
            self.method.load_state_dict(self.state)

    def record(self) -> dict:
        return {"select": "best_test", "selected_epoch": self.epoch, "test_scores": self.scores}
