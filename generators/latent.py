"""The controlled latent generator: known redundant, unique and synergistic factors.

Discrete factors, uniform and independent over ``k`` symbols:

    r        in every modality          -> task R:  y = r                (R = log2 k bits)
    u1, u2   only in modality 1 / 2     -> task U1: y = u1, U2: y = u2   (U1 / U2 = log2 k)
    s1, s2   s1 in modality 1, s2 in 2  -> task S:  y = (s1 + s2) mod k  (S = log2 k; XOR at k=2)

Each modality i is a fixed, seeded, nonlinear random map of its factors and of continuous
nuisance c_i ~ N(0, I):

    h_i = tanh(W1_i [E_r[r]; E_ui[u_i]; E_si[s_i]; a c_i] + b1_i)
    x_i = W2_i h_i + sigma eps,   eps ~ N(0, I)

with fixed symbol embeddings E ~ N(0, I). A *view* redraws c_i and eps for the same factors:
the augmentation the contrastive methods train on. Every factor is in the views, so
view-invariance alone does not favour any kind of information.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from synergy_bench.data import Fixed, Generator, RandomMap, joint_table
from synergy_bench.pid import PID, broja
from synergy_bench.registry import param, register_generator

TASKS = ("R", "U1", "U2", "S")


@register_generator
class Latent(Generator):
    """Two vector modalities over discrete factors r, u1, u2, s1, s2 (see module docstring)."""

    name = "latent"

    @dataclass
    class Params:
        k: int = param(2, "symbols per discrete factor (log2 k bits in each atom)", ge=2, le=64)
        dim: int = param(32, "features per modality", ge=1)
        n_train: int = param(4000, "training samples", ge=2)
        n_test: int = param(2000, "test samples", ge=2)
        noise: float = param(0.3, "std of the Gaussian noise added to every feature", ge=0)
        n_nuisance: int = param(8, "continuous nuisance factors per modality", ge=0)
        nuisance_scale: float = param(2.0, "scale a of the nuisance inside the random map", ge=0)
        symbol_dim: int = param(8, "width of each factor's fixed symbol embedding", ge=1)
        hidden: int = param(64, "hidden width of the fixed random tanh map", ge=1)

    # factors seen by each modality, in the order they enter the map
    FACTORS = (("r", "u1", "s1"), ("r", "u2", "s2"))

    def __init__(self, params: Params, seed: int):
        super().__init__(params, seed)
        p, rng = params, np.random.default_rng(seed)
        self._emb = Fixed({f: rng.standard_normal((p.k, p.symbol_dim)) for f in ("r", "u1", "u2", "s1", "s2")})
        self._maps = [RandomMap(3 * p.symbol_dim, p.n_nuisance, p.hidden, p.dim, rng) for _ in self.FACTORS]

    @property
    def tasks(self) -> tuple[str, ...]:
        return TASKS

    def n_classes(self, task: str) -> int:
        return self.params.k

    def labels(self, z: dict[str, Any]) -> dict[str, Any]:
        """Task labels from the factors (numpy arrays or tensors)."""
        return {"R": z["r"], "U1": z["u1"], "U2": z["u2"], "S": (z["s1"] + z["s2"]) % self.params.k}

    def sample(self, split: str, rng: np.random.Generator) -> dict[str, Any]:
        n = self.params.n_train if split == "train" else self.params.n_test
        z = {f: rng.integers(0, self.params.k, size=n) for f in ("r", "u1", "u2", "s1", "s2")}
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        x = [v.numpy() for v in self.views({f: torch.as_tensor(v) for f, v in z.items()}, gen)]
        return {"x": x, "y": self.labels(z), "z": z}

    def views(self, z: dict[str, torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
        p = self.params
        emb = self._emb.on(z["r"].device)
        return [m(torch.cat([emb[f][z[f]] for f in factors], dim=1), p.nuisance_scale, p.noise, gen)
                for factors, m in zip(self.FACTORS, self._maps)]

    def modality_codes(self, z: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int, int]:
        k = self.params.k
        c1, c2 = (np.ravel_multi_index([z[f] for f in fs], (k,) * len(fs)) for fs in self.FACTORS)
        return c1, c2, k ** 3, k ** 3

    def ground_truth(self, full: bool = False) -> dict[str, PID]:
        """Exact PID of each task on the joint table of (modality-1 factors, modality-2 factors, y).

        By default each modality keeps only the factors the label depends on: a factor that is
        independent of the label and of everything else in the table changes no atom of the
        BROJA PID (any Q in Delta_P marginalises to a feasible Q on the reduced table with no
        larger I_Q(X1,X2;Y), and Q(x1,x2,y) p(n) lifts it back with equal value), so the
        reduced table gives the same atoms with far fewer cells. ``full=True`` uses all factors.
        """
        k = self.params.k
        needs = {"R": (("r",), ("r",)), "U1": (("u1",), ()), "U2": ((), ("u2",)),
                 "S": (("s1",), ("s2",))}
        out = {}
        for task in TASKS:
            f1, f2 = self.FACTORS if full else needs[task]
            sizes = {f: k for f in dict.fromkeys(f1 + f2)}
            rule = lambda z, task=task: np.eye(k)[self.labels(  # noqa: E731
                {f: z.get(f, 0) for f in ("r", "u1", "u2", "s1", "s2")})[task]]
            out[task] = broja(joint_table(sizes, f1, f2, k, rule))
        return out
