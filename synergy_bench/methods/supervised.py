"""Supervised fused encoder: the CoMM architecture trained on the task labels (a reference row).

The same per-modality token encoders and fusion transformer as CoMM (Dufumier, Castillo-Navarro
et al., 2025); instead of CoMM's projection head and contrastive loss, one linear classifier per
task reads the fused CLS vector z and the loss is the cross-entropy averaged over the tasks and
over both augmentations of the batch:

    L = (1 / (2 T)) sum_{a in {', ''}} sum_{t=1..T} CE(W_t z^a + b_t, y_t)

The representation is z (as for CoMM). Trained with the very labels the probes read, it shows
what the fused encoder can hold at all: an upper-bound row, not a self-supervised method.

A method knows nothing of generators, so the heads are sized by bounds fixed at build time:
``max_tasks`` heads of ``max_classes`` logits (labels must lie in 0 .. max_classes - 1). The heads
are assigned to the tasks of ``tasks`` in that order, or, when ``tasks`` is empty, to the tasks of
the first batch's labels in sorted order; every later batch must carry the same tasks. Task t's
softmax runs over the classes 0 .. K_t - 1 with K_t the largest label seen so far in training plus
one (a buffer), so the head acts as one of the right size: logits of symbols that never occur do
not enter the loss (left in, pushing them down slows the escape from the plateau that XOR-like
tasks start on).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from synergy_bench.methods.comm import CoMM, FusionParams
from synergy_bench.registry import UserError, param, register_method


@dataclass
class SupervisedParams(FusionParams):
    """CoMM's encoder sizes plus the classifier heads (head_hidden, embed_dim and temperature are
    unused: the heads are linear and there is no contrastive loss)."""

    tasks: list = param([], "tasks whose labels train the encoder; [] = every task the "  # noqa: RUF009
                            "training data labels")
    max_classes: int = param(64, "logits per task head: labels must be < max_classes", ge=2)
    max_tasks: int = param(8, "number of task heads (>= the number of tasks trained on)", ge=1)

    def __post_init__(self):
        super().__post_init__()
        if (not isinstance(self.tasks, list) or not all(isinstance(t, str) for t in self.tasks)
                or len(set(self.tasks)) != len(self.tasks)):
            raise ValueError(f"tasks = {self.tasks!r} must be a list of distinct task names, e.g. [R, S]")
        if len(self.tasks) > self.max_tasks:
            raise ValueError(f"tasks = {self.tasks} lists {len(self.tasks)} tasks but max_tasks = "
                             f"{self.max_tasks}; raise max_tasks to {len(self.tasks)}")


@register_method
class Supervised(CoMM):
    """Fused encoder with linear task heads trained by cross-entropy on the labels."""

    name = "supervised"
    Params = SupervisedParams

    def __init__(self, params: SupervisedParams, shapes: list[tuple[int, ...]], seed: int):
        super().__init__(params, shapes, seed)
        p = params
        # replaces CoMM's projection head: max_tasks linear heads of max_classes logits, one matmul
        self.head = nn.Linear(p.d_model, p.max_tasks * p.max_classes)
        self.task_names_: tuple[str, ...] | None = tuple(p.tasks) or None
        self.register_buffer("n_classes_", torch.zeros(p.max_tasks, dtype=torch.long))  # K_t seen so far
        self.init_weights()

    def heads_for(self, labels: dict[str, torch.Tensor] | None) -> tuple[str, ...]:
        """The tasks trained on, in head order (fixed by ``tasks`` or by the first batch)."""
        if not labels:
            raise ValueError(f"{self.name} trains on task labels but loss() received none")
        if self.task_names_ is None:
            if len(labels) > self.params.max_tasks:
                raise UserError(f"method supervised: the data has {len(labels)} tasks "
                                f"({', '.join(sorted(labels))}) but max_tasks = {self.params.max_tasks}; "
                                f"set max_tasks >= {len(labels)} or list the tasks to train on")
            self.task_names_ = tuple(sorted(labels))
        missing = [t for t in self.task_names_ if t not in labels]
        if missing:
            raise UserError(f"method supervised: task(s) {missing} have no labels in this batch "
                            f"(labelled tasks: {', '.join(sorted(labels))}); fix method param tasks")
        return self.task_names_

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Class scores of every head, (B, max_tasks, max_classes), from fused vectors z (B, d)."""
        return self.head(z).unflatten(-1, (self.params.max_tasks, self.params.max_classes))

    def prepare(self, train: dict) -> None:
        """Fix the heads' tasks and check that every training label fits its head (one host sync
        per fit, none per step)."""
        names = self.heads_for(train.get("y"))
        lo, hi = (int(v) for v in torch.aminmax(torch.stack([train["y"][t] for t in names])))
        if lo < 0 or hi >= self.params.max_classes:
            raise UserError(f"method supervised: labels range over {lo}..{hi} but heads have "
                            f"max_classes = {self.params.max_classes} logits; set max_classes >= {hi + 1}")

    def loss(self, views1, views2, epoch, max_epochs, labels=None):
        names = self.heads_for(labels)
        y = torch.stack([labels[t] for t in names])  # (T, B), within range: checked by prepare
        k = self.n_classes_[:len(names)]
        k.copy_(torch.maximum(k, y.amax(1) + 1))  # (T,)
        unseen = torch.arange(self.params.max_classes, device=y.device) >= k[:, None]  # (T, C)
        fused = self.fusion(self.paired_tokens(views1, views2))  # (2, B, d)
        logits = self.logits(fused.flatten(0, 1))[:, :len(names)]  # (2B, T, C)
        logits = logits.masked_fill(unseen, float("-inf"))  # softmax over the classes seen so far
        target = y.repeat(1, 2).T  # (2B, T): both augmentations share the labels
        return F.cross_entropy(logits.flatten(0, 1), target.flatten())  # mean over samples and tasks
