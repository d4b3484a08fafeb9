"""The contract every measure follows: what is computed on the data of one run.

A run is generator point x (method or none) x seed; its measures are what the runner computes
once the method is trained (like benchopt's Objective, the runner itself names no metric). A
measure is a registered plug-in (:func:`synergy_bench.registry.register_measure`) with a
``name`` and a ``Params`` dataclass; a spec lists it under ``measures:`` with its parameters,
which are validated when the spec is resolved.

It reads either the *representation* a method (or a control) gives the samples (``reads =
"representation"``, e.g. the probes), or the generator's *observations* themselves (``reads =
"observations"``, e.g. the sample PID estimators, which need each modality separately). The
second kind runs once per generator point and seed, with no method.

It returns tidy rows ``{"task", "metric", "value"}`` (optionally ``"seconds"``, a ``"details"``
dict of diagnostics, and ``"chance"`` for a row whose ``task`` is not one of the generator's); the runner adds the run's columns (run id, generator, method, measure,
seed, the task's exact PID, ...). For the report a measure gives its tables and figures, built
from the rows of the results table alone.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from synergy_bench.spec import derive_seed

READS = ("representation", "observations")


@dataclass
class Context:
    """What a measure sees of one run (plain data and two callables).

    Attributes
    ----------
    run : synergy_bench.spec.Run
        The run: its generator, method, tasks, seeds, device.
    generator : synergy_bench.data.Generator
        The generator (tasks, ``n_classes``, ``ground_truth``, ``modality_codes``).
    train, test : dict
        Sample dicts (numpy) the method was trained on and the test samples.
    probe : dict
        Training-size samples from the test distribution (the training samples themselves
        unless the generator's training pairs are biased): what a probe is fit on.
    device : str
        The run's torch device.
    embed : callable or None
        ``embed(split)`` -> (N, D) float32 array: the representation of the ``"probe"`` or
        ``"test"`` samples (computed once per split); None for a run without a method.
    method : Method or None
        The trained method (in eval mode), for measures that look inside it; None without one.
    inputs : callable or None
        ``inputs(split)`` -> the ``"probe"`` or ``"test"`` inputs as tensors on the device (a list
        over modalities); None for a run without a method.
    """

    run: Any
    generator: Any
    train: dict
    test: dict
    probe: dict
    device: str
    embed: Callable[[str], np.ndarray] | None = None
    method: Any = None
    inputs: Callable[[str], list] | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def embedding(self, split: str) -> np.ndarray:
        """The representation of the ``split`` samples ('probe' or 'test'), cached."""
        if self.embed is None:
            raise TypeError("this run has no method: its measures read the observations")
        if split not in self._cache:
            self._cache[split] = self.embed(split)
        return self._cache[split]

    def seed(self, *parts: Any) -> int:
        """A seed derived from the run's data seed, its method and ``parts`` (e.g. the task):
        the same for every measure of the run that passes the same parts."""
        return derive_seed(self.run.data_seed, self.run.method, *parts)


class Measure:
    """Base class: subclasses set ``name``, ``Params`` and implement :meth:`__call__`.

    Parameters
    ----------
    params : Params
        The measure's parameter dataclass.
    """

    name: ClassVar[str] = "base"
    Params: ClassVar[type]
    reads: ClassVar[str] = "representation"  # one of READS

    def __init__(self, params):
        self.params = params

    def check(self, generator, tasks: tuple[str, ...]) -> None:
        """Refuse settings that cannot work on this generator point (a one-line
        :class:`~synergy_bench.registry.UserError`), before any run starts.

        ``generator`` is built with the point's parameters (sizes included); nothing is drawn.
        """

    def prepare(self, ctx: Context) -> None:
        """Refuse (UserError) what only the samples show, e.g. a size that cannot fit in memory;
        called once per run after sampling, before any training."""

    def __call__(self, ctx: Context) -> list[dict[str, Any]]:
        """Rows ``{"task", "metric", "value"[, "seconds", "details", "chance"]}`` of one run."""
        raise NotImplementedError

    # ---- report -------------------------------------------------------------------------

    @classmethod
    def tables(cls, df: pd.DataFrame) -> list:
        """Tables (:class:`synergy_bench.tables.Table`) of this measure's rows ``df``: by
        default, per generator point, measure and metric, the mean ± standard error over seeds
        per method (rows) and task (columns)."""
        from synergy_bench.tables import metric_tables

        return metric_tables(df)

    @classmethod
    def figures(cls, df: pd.DataFrame, fig_dir: Path) -> list[Path]:
        """Write the figures of this measure's rows into ``fig_dir``; their paths (none by default)."""
        return []


@functools.cache
def report_group(cls: type) -> Callable:
    """Measures whose tables are made by one function (a base class and the subclasses that keep
    its ``tables``) are reported together."""
    return cls.tables.__func__
