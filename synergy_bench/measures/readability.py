r"""How much of each latent factor a generator's observations carry.

The exact PID atoms of a generator describe its discrete latent factors; the methods see
observations rendered from them with nuisance and noise, which may hide part of a factor. The
readability of factor f from modality i is measured with a large-sample classifier: an MLP
probe (:func:`synergy_bench.probe.fit_probe`, ``kind='mlp'``, two hidden layers of 256, early
stopped on a hold-out) trained on n samples to read f from x_i and scored on n_test fresh ones,

    accuracy = balanced accuracy on the test samples,
    bits     = certified bits, a lower bound in expectation on I(X_i; F) <= H(F).

When the accuracy is near 1 and bits near H(F) (log2 k for a uniform factor of k symbols), the
observations carry the factor and the exact atoms are exact for what the methods see. Samples
come from the generator's 'test' split (the distribution the probes are scored on).

As a measure (``measures: [probe, readability]`` in a spec) it reads the observations: it runs
once per generator point and seed, with no method, and writes rows with ``task`` =
``"<factor>@x<i>"``, ``metric`` ``balanced_accuracy`` or ``bits``, ``chance`` 1/k, and in
``details`` H(F) and the SE of the bits. A generator takes part by naming the discrete factors
each modality holds in ``modality_factors`` (the latent generator does); on any other generator
the measure writes no rows.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from synergy_bench.data import Generator
from synergy_bench.measures.base import Context, Measure
from synergy_bench.probe import entropy_bits, fit_probe
from synergy_bench.registry import param, register_measure


def readability(generator: Generator, n: int = 30000, n_test: int = 10000, seed: int = 0, *,
                factors: tuple[tuple[str, ...], ...] | None = None, hidden: tuple[int, ...] = (256, 256),
                device: str = "cpu", **options) -> dict[str, dict[str, float]]:
    """Read every factor from each modality that holds it with an MLP probe.

    Parameters
    ----------
    generator : Generator
        Draws the samples (``sample('test', rng)`` until n + n_test are drawn).
    n, n_test : int
        Training samples of each classifier (a fifth held out to stop it early and calibrate it)
        and test samples it is scored on.
    seed : int
        Seed of the samples, the hold-out splits and the networks; the same seed gives the same
        numbers.
    factors : tuple of tuple of str, optional
        Names of the discrete factors of ``sample(...)["z"]`` each modality holds, in modality
        order; by default ``generator.modality_factors``.
    hidden : tuple of int
        Hidden widths of the MLP.
    device : str
        Torch device of the MLP.
    **options
        Further options of the MLP probe (``lr``, ``batch_size``, ``max_epochs``, ``patience``, ...).

    Returns
    -------
    dict
        ``"<factor>@x<i>"`` (modality i, 1-based) -> ``{"accuracy", "bits", "bits_se", "entropy",
        "classes"}``, with ``entropy`` the plug-in H(F) of the test samples (bits) and ``classes``
        the factor's number of symbols.

    Raises
    ------
    ValueError
        For n or n_test below 2, or a generator that names no factors per modality.
    """
    if n < 2 or n_test < 2:
        raise ValueError(f"readability needs n >= 2 and n_test >= 2 samples, got n = {n}, n_test = {n_test}")
    factors = factors if factors is not None else getattr(generator, "modality_factors", None)
    if not factors:
        raise ValueError(f"generator {generator.name!r} names no discrete factors per modality "
                         f"(modality_factors); pass factors=((names of modality 1), (names of modality 2), ...)")
    rng = np.random.default_rng(seed)
    xs, zs = _draw(generator, n + n_test, rng)
    out = {}
    for i, names in enumerate(factors):
        for j, f in enumerate(names):
            y = zs[f]
            k = int(y.max()) + 1
            res = fit_probe(xs[i][:n], y[:n], xs[i][n:], y[n:], k, np.random.default_rng([seed, i, j]),
                            kind="mlp", hidden=hidden, device=device, **options)
            out[f"{f}@x{i + 1}"] = {"accuracy": res["balanced_accuracy"], "bits": res["bits"],
                                    "bits_se": res["bits_se"], "entropy": entropy_bits(y[n:], k), "classes": k}
    return out


def _draw(generator: Generator, n: int, rng: np.random.Generator) -> tuple[list, dict]:
    """n test-split samples: flattened features per modality (N, D_i) and the factors (N,)."""
    xs: list[list[np.ndarray]] = []
    zs: dict[str, list[np.ndarray]] = {}
    drawn = 0
    while drawn < n:
        s = generator.sample("test", rng)
        xs.append([np.asarray(x).reshape(len(x), -1) for x in s["x"]])
        for f, v in s["z"].items():
            zs.setdefault(f, []).append(np.asarray(v))
        drawn += len(s["x"][0])
    return ([np.concatenate(m)[:n] for m in zip(*xs)], {f: np.concatenate(v)[:n] for f, v in zs.items()})


@dataclass
class ReadabilityParams:
    """The large-sample classifier of :func:`readability`."""

    n: int = param(30000, "training samples of each classifier (a fifth held out)", ge=10)
    n_test: int = param(10000, "test samples each classifier is scored on", ge=10)
    hidden: list = param([256, 256], "hidden widths of the MLP")
    patience: int = param(10, "epochs without hold-out progress before stopping", ge=1)

    def __post_init__(self):
        if not isinstance(self.hidden, list) or not self.hidden or not all(
                isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in self.hidden):
            raise ValueError(f"hidden = {self.hidden!r} must be a non-empty list of widths >= 1, e.g. [256, 256]")


@register_measure
class Readability(Measure):
    """How much of each discrete factor each modality's observations carry (see module docstring)."""

    name = "readability"
    Params = ReadabilityParams
    reads = "observations"

    def __call__(self, ctx: Context) -> list[dict[str, Any]]:
        p = self.params
        if not getattr(ctx.generator, "modality_factors", None):
            return []  # a generator that names no factors per modality (the measure of a spec run on another)
        t0 = time.perf_counter()
        read = readability(ctx.generator, p.n, p.n_test, ctx.seed("readability"), hidden=tuple(p.hidden),
                           patience=p.patience, device=ctx.device)
        seconds = (time.perf_counter() - t0) / max(len(read), 1)
        rows = []
        for key, r in read.items():
            details = {"entropy": r["entropy"], "bits_se": r["bits_se"]}
            rows += [{"task": key, "metric": m, "value": r[v], "seconds": seconds, "details": details,
                      "chance": 1.0 / r["classes"]}
                     for m, v in (("balanced_accuracy", "accuracy"), ("bits", "bits"))]
        return rows
