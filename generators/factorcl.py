r"""FactorCL's synthetic generator (Liang, Deng, Ma, Zou, Morency and Salakhutdinov, 2023:
"Factorized contrastive learning: going beyond multi-view redundancy"), rebuilt from its
description and public code.

Independent latents: a shared :math:`w_s \in \mathbb R^{d_s}` in both modalities and unique
:math:`w_1, w_2 \in \mathbb R^{d_u}`, each :math:`\mathcal N(0, v I)` with v = 0.5. Each modality
maps its latents through one fixed matrix :math:`T_i \in \mathbb R^{(d_s + d_u) \times D}` with
uniform(0, 1) entries (D = ``dim`` = 100), drawn from the generator seed:

.. math::

    x_1 = [w_s, w_1]\, T_1, \qquad x_2 = [w_s, w_2]\, T_2.

The label uses the first :math:`l_s` dims of :math:`w_s` and the first :math:`l_1`, :math:`l_2` of
:math:`w_1`, :math:`w_2`:

.. math::

    y = 1\!\left[\sigma\big(\operatorname{mean}(w_{s,1..l_s}, w_{1,1..l_1}, w_{2,1..l_2})\big)
    \ge \tfrac12\right] = 1\!\left[\textstyle\sum_{j \le l_s} w_{s,j} + \sum_{j \le l_1} w_{1,j}
    + \sum_{j \le l_2} w_{2,j} \ge 0\right],

a deterministic, balanced binary label. The shared/unique ratio of the task is
:math:`l_s : (l_1 + l_2)` (``label_shared``, ``label_unique1``, ``label_unique2``); the public
example uses :math:`d_s = l_s = 10`, :math:`d_u = l_1 = l_2 = 6`, and 30,000 samples split 80/20
(the defaults n_train = 24,000, n_test = 6,000).

**Views** are FactorCL's vector augmentations: for every sample and modality a view applies one
augmentation drawn uniformly from ``augmentations`` to the noiseless :math:`x_i \in \mathbb R^D`:

* ``swap``: exchange the halves, :math:`[x_{h+1..D}, x_{1..h}]` with :math:`h = \lfloor D/2 \rfloor`;
* ``noise``: :math:`x + 0.01\, \epsilon`, :math:`\epsilon \sim \mathcal N(0, I)` (``noise_std``);
* ``drop``: set :math:`\lfloor 0.1 D \rfloor` features drawn without replacement to 0 (``drop_fraction``);
* ``identity``: x unchanged.

The public FactorCL-SSL code pairs x with one such view; here each of the two views of a training
step draws its own augmentation (identity included), from the ``torch.Generator`` passed in.

**Ground truth.** The PID of the continuous latents and this label has no closed form: not exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from synergy_bench.data import Fixed, Generator
from synergy_bench.registry import param, register_generator

AUGMENTATIONS = ("swap", "noise", "drop", "identity")
UNIQUE = ("w1", "w2")  # the unique latent of modality 1 and of modality 2


@register_generator
class FactorCLSynthetic(Generator):
    """Shared and unique Gaussian latents through uniform maps (FactorCL, Liang et al. 2023)."""

    name = "factorcl"

    @dataclass
    class Params:
        shared_dim: int = param(10, "dims d_s of the shared latent w_s", ge=1)
        unique_dim: int = param(6, "dims d_u of each unique latent w_1, w_2", ge=1)
        label_shared: int = param(10, "leading dims l_s of w_s in the label", ge=0)
        label_unique1: int = param(6, "leading dims l_1 of w_1 in the label", ge=0)
        label_unique2: int = param(6, "leading dims l_2 of w_2 in the label", ge=0)
        latent_var: float = param(0.5, "variance v of each latent dim", gt=0)
        dim: int = param(100, "features D of each modality", ge=2)
        # a list field (not a grid axis in specs); param hands lists out through a default_factory
        augmentations: list = param(list(AUGMENTATIONS), "augmentations a view draws one of, per "  # noqa: RUF009
                                    f"sample and modality (distinct names from {', '.join(AUGMENTATIONS)})")
        noise_std: float = param(0.01, "std of the 'noise' augmentation", ge=0)
        drop_fraction: float = param(0.1, "fraction of features the 'drop' augmentation zeroes", ge=0, le=1)
        n_train: int = param(24000, "training samples (paper: 80% of 30,000)", ge=2)
        n_test: int = param(6000, "test samples (paper: 20% of 30,000)", ge=2)

        def __post_init__(self):
            if self.label_shared > self.shared_dim:
                raise ValueError(f"label_shared = {self.label_shared} exceeds shared_dim = {self.shared_dim}; "
                                 "lower it or raise shared_dim")
            for name in ("label_unique1", "label_unique2"):
                if getattr(self, name) > self.unique_dim:
                    raise ValueError(f"{name} = {getattr(self, name)} exceeds unique_dim = {self.unique_dim}; "
                                     "lower it or raise unique_dim")
            if self.label_shared + self.label_unique1 + self.label_unique2 == 0:
                raise ValueError("the label uses no latent dim; set label_shared, label_unique1 or "
                                 "label_unique2 >= 1")
            augs = list(self.augmentations) if isinstance(self.augmentations, (list, tuple)) else []
            if not augs or len(set(augs)) != len(augs) or not set(augs) <= set(AUGMENTATIONS):
                raise ValueError(f"augmentations = {self.augmentations!r} must be a non-empty list of distinct "
                                 f"names from {list(AUGMENTATIONS)}")

    def __init__(self, params: Params, seed: int):
        super().__init__(params, seed)
        p, rng = params, np.random.default_rng(seed)
        self._maps = Fixed({w: rng.uniform(0.0, 1.0, (p.shared_dim + p.unique_dim, p.dim)) for w in UNIQUE})

    @property
    def tasks(self) -> tuple[str, ...]:
        return ("Y",)

    def n_classes(self, task: str) -> int:
        return 2

    def labels(self, z: dict[str, np.ndarray]) -> np.ndarray:
        """y = 1[sum of the label's latent dims >= 0], int64 (N,)."""
        p = self.params
        total = (z["ws"][:, :p.label_shared].sum(axis=1, dtype=np.float64)
                 + z["w1"][:, :p.label_unique1].sum(axis=1, dtype=np.float64)
                 + z["w2"][:, :p.label_unique2].sum(axis=1, dtype=np.float64))
        return (total >= 0).astype(np.int64)

    def sample(self, split: str, rng: np.random.Generator) -> dict[str, Any]:
        p = self.params
        n = p.n_train if split == "train" else p.n_test
        sd = np.sqrt(p.latent_var)
        z = {w: rng.normal(0.0, sd, (n, k)).astype(np.float32)
             for w, k in (("ws", p.shared_dim), ("w1", p.unique_dim), ("w2", p.unique_dim))}
        x = [v.numpy() for v in self.render({w: torch.as_tensor(v) for w, v in z.items()})]
        return {"x": x, "y": {"Y": self.labels(z)}, "z": z}

    def render(self, z: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Noiseless features x_i = [w_s, w_i] T_i, each (N, D)."""
        maps = self._maps.on(z["ws"].device)
        return [torch.cat([z["ws"], z[w]], dim=1) @ maps[w] for w in UNIQUE]

    def augment(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One augmentation per row of x (N, D), drawn uniformly from the chosen ones."""
        p = self.params
        n, d = x.shape
        augs = list(p.augmentations)
        pick = torch.randint(len(augs), (n, 1), generator=gen, device=x.device)    # (N, 1)
        out = x
        for i, name in enumerate(augs):
            if name == "swap":
                y = torch.cat([x[:, d // 2:], x[:, :d // 2]], dim=1)
            elif name == "noise":
                y = x + p.noise_std * torch.randn(x.shape, generator=gen, device=x.device)
            elif name == "drop":
                k = math.floor(p.drop_fraction * d + 1e-9)
                order = torch.rand(x.shape, generator=gen, device=x.device).argsort(dim=1)  # (N, D)
                keep = torch.ones_like(x).scatter_(1, order[:, :k], 0.0)
                y = x * keep
            else:
                y = x
            out = torch.where(pick == i, y, out)
        return out

    def views(self, z: dict[str, torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
        """A fresh augmentation of each modality's noiseless features, per sample."""
        return [self.augment(x, gen) for x in self.render(z)]

    def ground_truth(self) -> dict[str, None]:
        """Not known in closed form for continuous latents: None (reported as not exact)."""
        return {"Y": None}
