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
"""
from __future__ import annotations

import numpy as np

from synergy_bench.data import Generator
from synergy_bench.probe import entropy_bits, fit_probe


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
        order; by default ``generator.factors``.
    hidden : tuple of int
        Hidden widths of the MLP.
    device : str
        Torch device of the MLP.
    **options
        Further options of the MLP probe (``lr``, ``batch_size``, ``max_epochs``, ``patience``, ...).

    Returns
    -------
    dict
        ``"<factor>@x<i>"`` (modality i, 1-based) -> ``{"accuracy", "bits", "bits_se", "entropy"}``,
        with ``entropy`` the plug-in H(F) of the test samples (bits).

    Raises
    ------
    ValueError
        For n or n_test below 2, or a generator that names no factors per modality.
    """
    if n < 2 or n_test < 2:
        raise ValueError(f"readability needs n >= 2 and n_test >= 2 samples, got n = {n}, n_test = {n_test}")
    factors = factors if factors is not None else getattr(generator, "factors", None)
    if not factors:
        raise ValueError(f"generator {generator.name!r} names no discrete factors per modality; "
                         f"pass factors=((names of modality 1), (names of modality 2), ...)")
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
                                    "bits_se": res["bits_se"], "entropy": entropy_bits(y[n:], k)}
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
