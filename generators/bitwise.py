r"""The classic PID distributions: exact tables and samples to train on.

Every distribution is built from independent fair bits a, b, r. Each source X_i is a bit or a
tuple of bits (a tuple is one symbol, its flat index with the first bit most significant), and
the target Y is a function of the bits:

=========================  ===========  =======  ==============  =====  ==========================
dist                       X1           X2       Y               |Y|    BROJA PID (R, U1, U2, S)
=========================  ===========  =======  ==============  =====  ==========================
and                        a            b        a AND b         2      (0.311278, 0, 0, 0.5)
or                         a            b        a OR b          2      (0.311278, 0, 0, 0.5)
xor                        a            b        a XOR b         2      (0, 0, 0, 1)
unique1                    a            b        a               2      (0, 1, 0, 0)
redundant                  a            a        a               2      (1, 0, 0, 0)
copy                       a            b        (a, b)          4      (0, 1, 1, 0)
sum                        a            b        a + b           3      (0.5, 0, 0, 1)
redundant_and_unique1      (a, b)       b        a AND b         2      (0.311278, 0.5, 0, 0)
redundant_or_unique1       (a, b)       b        a OR b          2      (0.311278, 0.5, 0, 0)
redundant_xor_unique1      (a, b)       b        a XOR b         2      (0, 1, 0, 0)
redundant_xor              (r, a)       (r, b)   (r, a XOR b)    4      (1, 0, 0, 1)
=========================  ===========  =======  ==============  =====  ==========================

XOR, AND and the redundant and unique gates are those of Williams and Beer (2010); copy and sum
are the examples Bertschinger, Rauh, Olbrich, Jost and Ay (2014) use to tell BROJA from I_min
(which credits copy with R = 1, S = 1); redundant_xor is RDNXOR of Griffith and Koch (2014);
the three ``redundant_*_unique1`` composites are those of Liang et al. (2023, public code):
modality 1 sees both bits, modality 2 only b, so b is the shared ("redundant") variable and a
the one unique to modality 1. Their atoms are not what the names suggest. Since Y is a function of X1,

.. math::

    I(X_1;Y) = I(X_1,X_2;Y) = H(Y) \ge I_{Q^*}(X_1,X_2;Y) \ge I_Q(X_1;Y) = I(X_1;Y),

so :math:`I_{Q^*} = H(Y)`, S = U2 = 0, R = I(X2;Y) and U1 = H(Y) - I(X2;Y). For AND,
:math:`H(Y) = h(1/4) = 0.811278` and :math:`H(Y \mid b) = \tfrac12 h(0) + \tfrac12 h(\tfrac12) = 0.5`,
so R = 0.311278 and U1 = 0.5 (OR is AND of the complemented bits: the same atoms); for XOR,
b alone says nothing about Y, so R = 0 and U1 = 1.

Each modality i is a fixed, seeded, nonlinear random map of its source symbol and of
continuous nuisance c_i ~ N(0, I), as in the latent generator:

    h_i = tanh(W1_i [E_i[x_i]; a c_i] + b1_i)
    x_i = W2_i h_i + sigma eps,   eps ~ N(0, I)

with fixed random symbol embeddings E_i, one row per value of X_i (equidistant rows of norm
sqrt(symbol_dim)). A *view* redraws c_i and eps for the same bits. The defaults keep a source's
value readable from its modality (about 99% by a linear probe on the raw features at dim 16)
while two views of one sample still differ, so the information in the samples is close to the
exact ground truth: the BROJA PID of the table p(x1, x2, y).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from synergy_bench.data import Fixed, Generator, RandomMap, joint_table
from synergy_bench.pid import PID, broja
from synergy_bench.registry import param, register_generator


class Dist(NamedTuple):
    """Sources as tuples of bit names, the number of target symbols and the target rule."""

    sources1: tuple[str, ...]
    sources2: tuple[str, ...]
    n_labels: int
    rule: Callable[[dict[str, Any]], Any]  # bits (ints, arrays or tensors) -> target symbol


DISTS: dict[str, Dist] = {
    "and": Dist(("a",), ("b",), 2, lambda z: z["a"] & z["b"]),
    "or": Dist(("a",), ("b",), 2, lambda z: z["a"] | z["b"]),
    "xor": Dist(("a",), ("b",), 2, lambda z: z["a"] ^ z["b"]),
    "unique1": Dist(("a",), ("b",), 2, lambda z: z["a"]),
    "redundant": Dist(("a",), ("a",), 2, lambda z: z["a"]),
    "copy": Dist(("a",), ("b",), 4, lambda z: 2 * z["a"] + z["b"]),
    "sum": Dist(("a",), ("b",), 3, lambda z: z["a"] + z["b"]),
    "redundant_and_unique1": Dist(("a", "b"), ("b",), 2, lambda z: z["a"] & z["b"]),
    "redundant_or_unique1": Dist(("a", "b"), ("b",), 2, lambda z: z["a"] | z["b"]),
    "redundant_xor_unique1": Dist(("a", "b"), ("b",), 2, lambda z: z["a"] ^ z["b"]),
    "redundant_xor": Dist(("r", "a"), ("r", "b"), 4, lambda z: 2 * z["r"] + (z["a"] ^ z["b"])),
}


def bits_of(dist: str) -> tuple[str, ...]:
    """The independent fair bits ``dist`` is built from, in a fixed order."""
    d = DISTS[dist]
    return tuple(dict.fromkeys(d.sources1 + d.sources2))


def table(dist: str) -> np.ndarray:
    """Exact joint table p(x1, x2, y) of ``dist``, shape (|X1|, |X2|, |Y|).

    p(x1, x2, y) = 2^-k sum over the k bits of 1[x1 = X1(bits), x2 = X2(bits), y = Y(bits)],
    with X_i(bits) the flat index of the tuple of bits source i sees.
    """
    d = DISTS[dist]
    eye = np.eye(d.n_labels)
    return joint_table({f: 2 for f in bits_of(dist)}, d.sources1, d.sources2, d.n_labels,
                       lambda z: eye[d.rule(z)])


def symbol_embeddings(n: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """n random equidistant rows of norm sqrt(width): a random rotation of scaled basis vectors.

    Gaussian rows E ~ N(0, I) have the same mean norm, but with few symbols two of them may land
    close together by chance and a source value becomes hard to read; orthogonal rows keep every
    pair at distance sqrt(2 width). Gaussian rows where ``n > width``.
    """
    e = rng.standard_normal((n, width))
    if n > width:
        return e
    q, r = np.linalg.qr(e.T)                  # (width, n), orthonormal columns
    return np.sqrt(width) * (q * np.sign(np.diag(r))).T


@register_generator
class Bitwise(Generator):
    """Two vector modalities rendering the sources of a classic PID distribution (see module docstring)."""

    name = "bitwise"

    @dataclass
    class Params:
        dist: str = param("xor", "which distribution of sources and target", choices=tuple(DISTS))
        dim: int = param(16, "features per modality", ge=1)
        n_train: int = param(4000, "training samples", ge=2)
        n_test: int = param(2000, "test samples", ge=2)
        noise: float = param(0.3, "std of the Gaussian noise added to every feature", ge=0)
        n_nuisance: int = param(8, "continuous nuisance factors per modality", ge=0)
        nuisance_scale: float = param(1.0, "scale a of the nuisance inside the random map", ge=0)
        symbol_dim: int = param(16, "width of each source value's fixed symbol embedding", ge=1)
        hidden: int = param(64, "hidden width of the fixed random tanh map", ge=1)

    def __init__(self, params: Params, seed: int):
        super().__init__(params, seed)
        p, rng = params, np.random.default_rng(seed)
        self._dist = DISTS[p.dist]
        self._sources = (self._dist.sources1, self._dist.sources2)
        self._emb = Fixed({str(i): symbol_embeddings(2 ** len(fs), p.symbol_dim, rng)
                           for i, fs in enumerate(self._sources)})
        self._maps = [RandomMap(p.symbol_dim, p.n_nuisance, p.hidden, p.dim, rng) for _ in self._sources]

    @property
    def tasks(self) -> tuple[str, ...]:
        return ("Y",)

    def n_classes(self, task: str) -> int:
        return self._dist.n_labels

    def sample(self, split: str, rng: np.random.Generator) -> dict[str, Any]:
        """Uniform independent bits and the target they fix: samples of p(x1, x2, y) exactly."""
        n = self.params.n_train if split == "train" else self.params.n_test
        z = {f: rng.integers(0, 2, size=n) for f in bits_of(self.params.dist)}
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        x = [v.numpy() for v in self.views({f: torch.as_tensor(v) for f, v in z.items()}, gen)]
        return {"x": x, "y": {"Y": np.asarray(self._dist.rule(z), dtype=np.int64)}, "z": z}

    @staticmethod
    def _code(z: dict[str, Any], sources: tuple[str, ...]) -> Any:
        """Flat index of the tuple of bits a source sees (first bit most significant)."""
        code = 0
        for f in sources:
            code = 2 * code + z[f]
        return code

    def views(self, z: dict[str, torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
        p = self.params
        emb = self._emb.on(next(iter(z.values())).device)
        return [m(emb[str(i)][self._code(z, sources)], p.nuisance_scale, p.noise, gen)
                for i, (sources, m) in enumerate(zip(self._sources, self._maps))]

    def modality_codes(self, z: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int, int]:
        c1, c2 = (np.asarray(self._code(z, fs), dtype=np.int64) for fs in self._sources)
        return c1, c2, 2 ** len(self._sources[0]), 2 ** len(self._sources[1])

    def ground_truth(self) -> dict[str, PID]:
        """Exact BROJA PID (bits) of the table p(x1, x2, y) of the chosen distribution."""
        return {"Y": broja(table(self.params.dist))}
