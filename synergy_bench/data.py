"""The contract every generator follows, and helpers for exact ground truth.

A generator knows nothing of methods. Built from its parameters and a seed (the seed fixes the
"world": random maps, embeddings), it draws samples of a split, re-renders fresh *views* of the
same samples (same discrete factors, new nuisance), and reports the exact PID of each task.

A sample dict is plain data::

    {"x": [x_1, ..., x_n],            # one float32 array per modality, (N, *shape_i)
     "y": {task: labels},             # int64 (N,) per task, symbols 0..n_classes-1
     "z": {factor: values}}           # the latent factors views are rendered from
"""
from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from synergy_bench.pid import PID, broja


class Generator:
    """Base class: subclasses set ``name``, ``Params`` and implement the methods below."""

    name: ClassVar[str] = "base"
    Params: ClassVar[type]

    def __init__(self, params, seed: int):
        self.params = params
        self.seed = int(seed)

    @property
    def tasks(self) -> tuple[str, ...]:
        """Names of the tasks whose labels ``sample`` returns."""
        raise NotImplementedError

    def n_classes(self, task: str) -> int:
        """Number of label symbols of ``task`` (chance balanced accuracy is 1 / this)."""
        raise NotImplementedError

    def sample(self, split: str, rng: np.random.Generator) -> dict[str, Any]:
        """Draw the samples of ``split`` ('train' or 'test'; sizes are parameters) as a sample dict.

        Where ``biased_training`` is True, also 'probe': training-size samples from the test
        distribution, for fitting the linear probes.
        """
        raise NotImplementedError

    @property
    def biased_training(self) -> bool:
        """True where 'train' samples come from another distribution than 'test' (then the
        probes fit on ``sample("probe", rng)``); False by default."""
        return False

    def views(self, z: dict[str, torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
        """A fresh augmented view of a batch (same latents ``z``, new nuisance), on z's device."""
        raise NotImplementedError

    def weak_views(self, z: dict[str, torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
        """The weak augmentation (CLIP's random resized crop only, where a generator has one);
        vector generators return their ordinary views (``views``)."""
        return self.views(z, gen)

    def modality_codes(self, z: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int, int] | None:
        """Flat codes of the discrete latents modality 1 and 2 see, and their numbers of values.

        Used for the PID of a model's predictions; None where the latents are not discrete.
        """
        return None

    def ground_truth(self) -> dict[str, PID | None]:
        """Exact PID (bits) of each task between the modalities' latents; None where not exact."""
        raise NotImplementedError

    def extra_truth(self) -> dict[str, dict[str, PID]]:
        """More exact decompositions worth showing beside ``ground_truth``: {title: {task: PID}}
        (e.g. other pairings of modalities); none by default."""
        return {}


class Fixed:
    """Fixed arrays of a generator's world, handed out as float32 tensors cached per device."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays
        self._cache: dict[torch.device, dict[str, torch.Tensor]] = {}

    def on(self, device: torch.device) -> dict[str, torch.Tensor]:
        if device not in self._cache:
            self._cache[device] = {k: torch.as_tensor(a, dtype=torch.float32, device=device)
                                   for k, a in self.arrays.items()}
        return self._cache[device]


class RandomMap:
    """A fixed, seeded, nonlinear map from a modality's symbol features and nuisance to features.

        x = W2 tanh(W1 [s; a c] + b1) + sigma eps,    c ~ N(0, I_m),  eps ~ N(0, I_dim)

    with W1 ~ N(0, 1/in), b1 ~ N(0, 0.1^2), W2 ~ N(0, 1/hidden) drawn once from ``rng`` (in that
    order); a call draws the nuisance c and the noise eps from ``gen``: a fresh view.
    """

    def __init__(self, symbol_dim: int, n_nuisance: int, hidden: int, dim: int, rng: np.random.Generator):
        in_dim = symbol_dim + n_nuisance
        self.n_nuisance = n_nuisance
        self.weights = Fixed({"w1": rng.standard_normal((in_dim, hidden)) / np.sqrt(in_dim),
                              "b1": 0.1 * rng.standard_normal(hidden),
                              "w2": rng.standard_normal((hidden, dim)) / np.sqrt(hidden)})

    def __call__(self, symbols: torch.Tensor, nuisance_scale: float, noise: float,
                 gen: torch.Generator) -> torch.Tensor:
        w = self.weights.on(symbols.device)
        c = nuisance_scale * torch.randn(symbols.shape[0], self.n_nuisance, generator=gen, device=symbols.device)
        x = torch.tanh(torch.cat([symbols, c], dim=1) @ w["w1"] + w["b1"]) @ w["w2"]  # (N, dim)
        return x + noise * torch.randn(x.shape, generator=gen, device=symbols.device)


def joint_table(sizes: dict[str, int], factors1: tuple[str, ...], factors2: tuple[str, ...],
                n_labels: int, label: Callable[[dict[str, int]], np.ndarray]) -> np.ndarray:
    """Joint table p(x1, x2, y) of uniform independent discrete factors and a label rule.

    Parameters
    ----------
    sizes : dict
        Every factor involved and its number of symbols; factors are uniform and independent.
    factors1, factors2 : tuple of str
        The factors modality 1 and modality 2 see (they may share factors, e.g. a redundant r).
    n_labels : int
        Number of label symbols.
    label : callable
        ``label(z)`` returns p(y | z) (length ``n_labels``) for an assignment ``z`` of all factors.

    Returns
    -------
    ndarray, shape (prod sizes[factors1], prod sizes[factors2], n_labels)
        p(x1, x2, y) = sum_z p(z) 1[x1 = z|factors1] 1[x2 = z|factors2] p(y | z), where x_i is the
        flat index of the tuple of factor values modality i sees.
    """
    names = list(sizes)
    dims1, dims2 = [sizes[f] for f in factors1], [sizes[f] for f in factors2]
    p = np.zeros((int(np.prod(dims1)), int(np.prod(dims2)), n_labels))
    for combo in itertools.product(*[range(sizes[f]) for f in names]):
        z = dict(zip(names, combo))
        i = np.ravel_multi_index([z[f] for f in factors1], dims1) if dims1 else 0
        j = np.ravel_multi_index([z[f] for f in factors2], dims2) if dims2 else 0
        p[i, j] += label(z)
    return p / p.sum()


def to_torch(sample: dict[str, Any], device: str | torch.device) -> dict[str, Any]:
    """Move a sample dict to ``device`` once (arrays -> tensors)."""
    return {
        "x": [torch.as_tensor(x, device=device) for x in sample["x"]],
        "y": {t: torch.as_tensor(y, device=device) for t, y in sample["y"].items()},
        "z": {f: torch.as_tensor(v, device=device) for f, v in sample["z"].items()},
    }


def prediction_pid(codes: tuple[np.ndarray, np.ndarray, int, int], pred: np.ndarray, n_labels: int) -> PID:
    """Exact PID of (modality-1 latents, modality-2 latents; a model's predictions).

    The empirical joint table of the test samples' latent codes and the predicted labels,
    p(c1, c2, yhat) = (1/N) sum_n 1[c1_n = c1, c2_n = c2, yhat_n = yhat], solved exactly: how
    redundant, unique or synergistic the model's *answers* are. Codes that no test sample has
    are left out of the table (values of probability 0 change no atom), so the table has at most
    N x N x n_labels cells whatever the number of possible codes.
    """
    c1, c2 = (np.unique(c, return_inverse=True)[1].ravel() for c in codes[:2])
    table = np.zeros((c1.max() + 1, c2.max() + 1, n_labels))
    np.add.at(table, (c1, c2, pred), 1.0)
    return broja(table)


def prediction_pid_bytes(codes: tuple[np.ndarray, np.ndarray, int, int], n_labels: int) -> int:
    """Memory (bytes) :func:`prediction_pid` needs on these codes, about: the dense table and its
    working copies (4 |C1| |C2| |Y| floats) and the solver's dense Newton matrix and its factor
    (2 (min(|C1|, |C2|) |Y|)^2 floats), |Ci| the number of codes that occur."""
    n1, n2 = (len(np.unique(c)) for c in codes[:2])
    return 8 * (4 * n1 * n2 * n_labels + 2 * (min(n1, n2) * n_labels) ** 2)


def physical_memory() -> int | None:
    """Bytes of memory of this machine (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def sample_bytes(cls: type, params: dict[str, Any]) -> int:
    """Bytes of the samples a run of generator ``cls`` with ``params`` draws: the training and
    test splits, and a probe split where training pairs are biased. Measured on two samples of
    a copy with ``n_train = n_test = 2``; 0 where the generator has no such sizes or the copy
    cannot be built."""
    from synergy_bench.registry import UserError, make_params

    names = {f.name for f in dataclasses.fields(cls.Params)}
    if not {"n_train", "n_test"} <= names:
        return 0
    try:
        tiny = cls(make_params(cls, {**params, "n_train": 2, "n_test": 2}, "generator"), 0)
        sample = tiny.sample("test", np.random.default_rng(0))
    except (UserError, ValueError):
        return 0
    arrays = [*sample["x"], *sample["y"].values(), *sample["z"].values()]
    per_sample = sum(np.asarray(a).nbytes for a in arrays) / len(sample["x"][0])
    n = params["n_train"] * (2 if tiny.biased_training else 1) + params["n_test"]
    return int(per_sample * n)
