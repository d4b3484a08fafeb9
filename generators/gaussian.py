r"""The Gaussian latent generator of the PID paper (Liang, Cheng, Fan, Ling, Nie, Chen, Deng, Allen,
Auerbach, Mahmood, Salakhutdinov and Morency, 2023: "Quantifying & modeling multimodal interactions:
an information decomposition framework"), rebuilt from its description and public code.

Three independent latents of d = ``latent_dim`` dimensions (the names say which modalities hold them):

.. math::

    z_1, z_2, z_{12} \sim \mathcal N(0, v I_d), \qquad v = 1.5.

Each latent a has a fixed map :math:`T_a \in \mathbb R^{d \times D}` with uniform(0, 1) entries
(D = ``dim`` = 32), drawn from the generator seed; a modality concatenates the maps of the latents
it contains, so each has 2 D features and no noise:

.. math::

    x_1 = [z_1 T_1,\; z_{12} T_{12}], \qquad x_2 = [z_2 T_2,\; z_{12} T_{12}].

**Label.** A setting fixes the fractions :math:`(r_1, r_2, r_{12})` of each latent's dims the label
uses. Every sample draws a random subset :math:`S_a` of :math:`\lfloor r_a d \rfloor` dims of each
latent (anew for every sample, as the public code does; fractions 0 and 1 make the subset fixed),
so the label uses :math:`m = \sum_a \lfloor r_a d \rfloor` values. Dropout with rate p = 0.2 keeps
each of them with probability q = 1 - p and scales the survivors by 1/q:

.. math::

    t = \frac{1}{m} \sum_a \sum_{j \in S_a} \frac{b_{aj}\, z_{aj}}{q}, \quad b_{aj} \sim
    \mathrm{Bernoulli}(q), \qquad y = \#\{c : \sigma(t) \ge \sigma(t_c)\} = \#\{c : t \ge t_c\},

with :math:`t_1 < \dots < t_{K-1}` the c/K quantiles of t: K equal-mass classes of the sigmoid of
the mean. Given k survivors t is :math:`\mathcal N(0, v k / (q m)^2)`, and k is Binomial(m, q), so

.. math::

    F(t) = \sum_{k=0}^{m} \binom{m}{k} q^k p^{m-k}\, \Phi\!\left(\frac{q m\, t}{\sqrt{v k}}\right)

(the k = 0 term a step at 0) and the thresholds are :math:`t_c = F^{-1}(c / K)`, solved once per
generator. The public code bins the sigmoids of its 20,000 samples by their sample quantiles before
splitting; the population quantiles here give train and test one rule. Classes have equal mass up
to the atom t = 0 (every chosen value dropped, probability :math:`p^m \le 0.2^4`), which falls in
the class above 0. For K = 2, :math:`y = 1[t \ge 0] = 1[\sigma(t) \ge 1/2]`.

=============  =========  =========  ==========  ======
setting        r_1        r_2        r_12        m, d=5
=============  =========  =========  ==========  ======
redundancy     0          0          1           5
uniqueness0    1          0          0           5
uniqueness1    0          1          0           5
synergy        1          1          0           10
mix1           .5         .5         .5          6
mix2           1          .5         .5          9
mix3           1          1          .5          12
mix4           .5         .5         1           9
mix5           0          .5         .5          4
mix6           0          .5         1           7
=============  =========  =========  ==========  ======

("uniqueness0" is the paper's modality 0, our modality 1: the label depends on :math:`z_1` only.)

**Paper settings.** 20,000 samples split 70/15/15 into train, validation and test: the defaults
n_train = 14,000 and n_test = 3,000. The public generator's default is K = 32 classes; the paper's
models are trained on K = 2 (every training script of the public code), the default here. Those
scripts also read 200 features per modality (D = 100), while the generator's default is D = 32.

**Views.** The paper trains no contrastive method on these data and defines no augmentation. A
view here adds fresh Gaussian noise of std ``view_noise`` to every feature of the noiseless
rendering, :math:`x_i + \sigma \epsilon`, :math:`\epsilon \sim \mathcal N(0, I)`, so contrastive
methods have two views of a sample to train on; samples (what the probe sees) stay noiseless.

**Ground truth.** The PID of continuous latents and this label has no closed form: not exact.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.stats import binom, norm

from synergy_bench.data import Fixed, Generator
from synergy_bench.registry import param, register_generator

LATENTS = ("1", "2", "12")
MODALITY_LATENTS = (("1", "12"), ("2", "12"))  # latents each modality's features render

# fractions (r_1, r_2, r_12) of each latent's dims in the label, the public code's settings
SETTINGS: dict[str, tuple[float, float, float]] = {
    "redundancy": (0, 0, 1), "uniqueness0": (1, 0, 0), "uniqueness1": (0, 1, 0), "synergy": (1, 1, 0),
    "mix1": (0.5, 0.5, 0.5), "mix2": (1, 0.5, 0.5), "mix3": (1, 1, 0.5),
    "mix4": (0.5, 0.5, 1), "mix5": (0, 0.5, 0.5), "mix6": (0, 0.5, 1),
}


def label_counts(setting: str, latent_dim: int) -> tuple[int, ...]:
    """floor(r_a d): how many dims of each latent ('1', '2', '12') the label uses."""
    return tuple(int(r * latent_dim) for r in SETTINGS[setting])


def class_edges(m: int, keep: float, var: float, n_classes: int) -> np.ndarray:
    """Thresholds t_c = F^{-1}(c / K), c = 1..K-1, of the label statistic t (module docstring).

    Parameters
    ----------
    m : int
        Number of latent values the label averages.
    keep : float
        Dropout keep probability q.
    var : float
        Variance v of each latent value.
    n_classes : int
        K.

    Returns
    -------
    ndarray, shape (K - 1,)
        Increasing thresholds; the one at the median is exactly 0 (F jumps there by p^m).
    """
    k = np.arange(m + 1)
    weight = binom.pmf(k, m, keep)                         # P(k survivors)
    scale = np.sqrt(var * k[1:]) / (keep * m)              # std of t given k >= 1 survivors
    atom = weight[0]                                       # P(t = 0): every value dropped

    def cdf(t: float) -> float:
        return atom * (t >= 0) + float(weight[1:] @ norm.cdf(t / scale))

    hi = 40.0 * scale.max()
    edges = []
    for c in range(1, n_classes):
        u = c / n_classes
        # F(0-) = 1/2 - atom/2 <= u <= F(0) = 1/2 + atom/2: the quantile is the jump at 0
        edges.append(0.0 if abs(u - 0.5) <= atom / 2 else brentq(lambda t, u=u: cdf(t) - u, -hi, hi, xtol=1e-14))
    return np.asarray(edges)


def pick_dims(rng: np.random.Generator, n: int, d: int, count: int) -> np.ndarray:
    """(n, d) bool: ``count`` dims drawn uniformly without replacement, anew for every row."""
    ranks = rng.random((n, d)).argsort(axis=1).argsort(axis=1)  # a uniform random permutation per row
    return ranks < count


@register_generator
class Gaussian(Generator):
    """Gaussian latents '1', '2', '12' through fixed uniform maps (PID paper, Liang et al. 2023)."""

    name = "gaussian"

    @dataclass
    class Params:
        setting: str = param("redundancy", "which latent dims the label uses (see the module docstring)",
                             choices=tuple(SETTINGS))
        n_classes: int = param(2, "equal-mass label classes K (2 in the paper's experiments)", ge=2)
        latent_dim: int = param(5, "dims d of each latent '1', '2', '12'", ge=1)
        latent_var: float = param(1.5, "variance v of each latent dim", gt=0)
        dim: int = param(32, "features D of each latent's uniform map (a modality has 2 D)", ge=1)
        label_dropout: float = param(0.2, "dropout rate p on the label's latent values", ge=0, lt=1)
        view_noise: float = param(0.1, "std of the fresh Gaussian noise a view adds to each feature", ge=0)
        n_train: int = param(14000, "training samples (paper: 70% of 20,000)", ge=2)
        n_test: int = param(3000, "test samples (paper: 15% of 20,000)", ge=2)

        def __post_init__(self):
            if self.setting in SETTINGS and sum(label_counts(self.setting, self.latent_dim)) == 0:
                raise ValueError(f"setting {self.setting!r} uses no latent dim at latent_dim="
                                 f"{self.latent_dim}; use latent_dim >= 2")

    def __init__(self, params: Params, seed: int):
        super().__init__(params, seed)
        p, rng = params, np.random.default_rng(seed)
        self._maps = Fixed({a: rng.uniform(0.0, 1.0, (p.latent_dim, p.dim)) for a in LATENTS})
        self.counts = label_counts(p.setting, p.latent_dim)
        self.edges = class_edges(sum(self.counts), 1.0 - p.label_dropout, p.latent_var, p.n_classes)

    @property
    def tasks(self) -> tuple[str, ...]:
        return ("Y",)

    def n_classes(self, task: str) -> int:
        return self.params.n_classes

    def statistic(self, z: dict[str, np.ndarray]) -> np.ndarray:
        """t per sample: the dropout-scaled mean of the chosen latent values, (N,)."""
        values = np.concatenate([z[a] for a in LATENTS], axis=1).astype(np.float64)   # (N, 3d)
        kept = values * z["label_dims"] * z["label_keep"]
        return kept.sum(axis=1) / ((1.0 - self.params.label_dropout) * sum(self.counts))

    def labels(self, z: dict[str, np.ndarray]) -> np.ndarray:
        """y = #{c : t >= t_c}, int64 (N,)."""
        return np.searchsorted(self.edges, self.statistic(z), side="right").astype(np.int64)

    def sample(self, split: str, rng: np.random.Generator) -> dict[str, Any]:
        """Latents, the label's random dims and dropout mask (in z), noiseless features, labels."""
        p = self.params
        n, d = (p.n_train if split == "train" else p.n_test), p.latent_dim
        z = {a: rng.normal(0.0, np.sqrt(p.latent_var), (n, d)).astype(np.float32) for a in LATENTS}
        z["label_dims"] = np.concatenate([pick_dims(rng, n, d, c) for c in self.counts], axis=1)  # (N, 3d)
        z["label_keep"] = rng.random((n, 3 * d)) >= p.label_dropout                            # (N, 3d)
        x = [v.numpy() for v in self.render({a: torch.as_tensor(z[a]) for a in LATENTS})]
        return {"x": x, "y": {"Y": self.labels(z)}, "z": z}

    def render(self, z: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Noiseless features x_i = [z_a T_a for the latents a of modality i], each (N, 2 D)."""
        maps = self._maps.on(z["12"].device)
        return [torch.cat([z[a] @ maps[a] for a in lats], dim=1) for lats in MODALITY_LATENTS]

    def views(self, z: dict[str, torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
        """x_i + sigma eps with fresh eps ~ N(0, I) per call: the same latents, new noise."""
        sigma = self.params.view_noise
        return [x + sigma * torch.randn(x.shape, generator=gen, device=x.device) for x in self.render(z)]

    def ground_truth(self) -> dict[str, None]:
        """Not known in closed form for continuous latents: None (reported as not exact)."""
        return {"Y": None}
