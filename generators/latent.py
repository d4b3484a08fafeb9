r"""The controlled latent generator: known redundant, unique and synergistic factors.

Discrete factors, uniform and independent over ``k`` symbols, for ``n`` modalities (default 2):

    r            in every modality        -> task R:  y = r                       (R = log2 k)
    u_i          only in modality i       -> task Ui: y = u_i                     (Ui = log2 k)
    s_1 .. s_n   s_i in modality i        -> task S:  y = (s_1 + ... + s_n) mod k (S = log2 k;
                                                                                  XOR at k=2)

Each modality i is a fixed, seeded, nonlinear random map of its factors (r, u_i, s_i) and of
continuous nuisance c_i ~ N(0, I):

    h_i = tanh(W1_i [E_r[r]; E_ui[u_i]; E_si[s_i]; a c_i] + b1_i)
    x_i = W2_i h_i + sigma eps,   eps ~ N(0, I)

with fixed symbol embeddings E: k equidistant rows of norm sqrt(symbol_dim) per factor (a random
rotation of scaled basis vectors, as in the bitwise generator; Gaussian rows N(0, I) where
k > symbol_dim), so no two symbols of a factor land close together by chance. A *view* redraws
c_i and eps for the same factors: the augmentation the contrastive methods train on. Every
factor is in the views, so view-invariance alone does not favour any kind of information.

**Readable factors.** The exact atoms below describe the factors; the methods see x_i. The
defaults (dim 64, hidden 128, noise 0.1, nuisance scale 2) are chosen so that the observations
carry the factors: a large-sample classifier (:func:`synergy_bench.measures.readability.readability`,
an MLP of 256 x 256 trained on 30,000 samples) reads every factor from its modality at >= 99.5 %
balanced accuracy for k = 2 .. 8, while the nuisance still outweighs each factor inside the
tanh map (pre-activation variance a^2 n_nuisance = 32 against symbol_dim = 8 per factor).

**Consistency synergy** (``synergy=consistency``): the synergy experiment of CoMM (Dufumier,
Castillo-Navarro, Tuia and Thiran, 2025) on bimodal Trifeature images (Hermann and Lampinen,
2020), in vector form. A fixed random permutation pi of the k symbols is drawn from the
generator seed; the *training* tuples are all consistent, s_n = pi((s_1 + ... + s_{n-1}) mod k)
(s2 = pi(s1) for two modalities), while test tuples are unbiased (all s_i independent and
uniform), and

    S: y = 1[s_n = pi((s_1 + ... + s_{n-1}) mod k)]     (2 classes, chance 1/2).

That design fits its linear probes on unbiased pairs: ``sample("probe", rng)`` draws n_train
of them (``biased_training`` is True). Ground truth is that of the test distribution: each
source alone leaves P(y = 1) = 1/k, so R = U1 = U2 = 0 and S = H(Y) = h(1/k) bits, with h the
binary entropy.

**Label noise** (``label_noise`` = eps, task S only): each S label is replaced, with probability
eps and independently per sample, by a uniform symbol of its L label symbols (L = k for xor,
2 for consistency), so p(y | z) = (1 - eps) 1[y = f(z)] + eps / L. Each source alone still says
nothing about y, so the atoms stay pure synergy, S = I(X1,X2;Y):

    xor:          S = log2 k - H(1 - eps + eps/k, eps/k, ..., eps/k)
    consistency:  S = h(q) - [h(1 - eps/2) / k + (1 - 1/k) h(eps/2)],  q = (1 - eps)/k + eps/2

**More modalities** (``n_modalities`` = n > 2): tasks R, U1 .. Un, S (S needs all n s_i). The
PID is bivariate, so ``ground_truth`` reports each task's PID of (modality 1; modalities 2..n
together): one modality against the rest (then Uj for j >= 2 is the U2 atom, and S = log2 k is
synergy). ``pairwise_truth`` adds the PID for every pair (i; j) with the other modalities
marginalised out (S then carries no information: a missing s_m makes the sum uniform) and for
every modality against the rest.

**Mixture task M** (present when any of ``mix_r``, ``mix_u``, ``mix_s`` exceeds 1; xor only):
one label holding a chosen number of symbols of each kind,

    y_M = (r mod a_R, u_1 mod a_U, S mod a_S)  as one symbol,  a_R a_U a_S classes,

with a_R, a_U, a_S = mix_r, mix_u, mix_s, each a divisor of k (so each part is uniform and
independent of the others). Its exact atoms (modality 1 against the rest) are

    R = log2 a_R,  U1 = log2 a_U,  U2 = 0,  S = log2 a_S,

the sums of the atoms of its three independent parts (checked against the solver in the
tests): the three knobs set how much of the label is redundant, unique and synergistic.

**Exact ground truth.** Every atom comes from the exact BROJA solver on a joint table
p(x1, x2, y) over uniform factors. The tables are reduced without changing any atom: (i) a
factor independent of the label and of every other factor is dropped (any Q in Delta_P
marginalises to a feasible Q on the reduced table with no larger I_Q(X1,X2;Y), and
Q(x1,x2,y) p(n) lifts it back with equal value; this holds for a factor on one side or on both);
(ii) the s-factors one side (or the marginalised modalities) holds enter every label only
through their sum mod k (under consistency, s_n on its own and the others through their sum),
and (s_a, s_b) -> ((s_a + s_b) mod k, s_b) is a one-to-one relabelling after which s_b is such
an independent factor, so each side keeps one summed factor; (iii) for task M,
r = a_R q + (r mod a_R) with q independent of everything else (a_R divides k), and likewise
for u_1 and each s_i. ``ground_truth(full=True)`` solves the unreduced tables instead.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from generators.bitwise import symbol_embeddings
from synergy_bench.data import Fixed, Generator, RandomMap, joint_table
from synergy_bench.pid import PID, broja
from synergy_bench.registry import UserError, param, register_generator

MAX_MIX_CELLS = 2 ** 16  # largest task-M table (a_R^3 a_U^2 a_S^3 cells) solved exactly (~1 s)


def divisors(k: int) -> list[int]:
    return [d for d in range(1, k + 1) if k % d == 0]


@register_generator
class Latent(Generator):
    """Vector modalities over discrete redundant, unique and synergistic factors (see module docstring)."""

    name = "latent"

    @dataclass
    class Params:
        k: int = param(2, "symbols per discrete factor (log2 k bits in each atom)", ge=2, le=64)
        dim: int = param(64, "features per modality", ge=1)
        n_train: int = param(4000, "training samples", ge=2)
        n_test: int = param(2000, "test samples", ge=2)
        noise: float = param(0.1, "std of the Gaussian noise added to every feature", ge=0)
        n_nuisance: int = param(8, "continuous nuisance factors per modality", ge=0)
        nuisance_scale: float = param(2.0, "scale a of the nuisance inside the random map", ge=0)
        symbol_dim: int = param(8, "width of each factor's fixed symbol embedding", ge=1)
        hidden: int = param(128, "hidden width of the fixed random tanh map", ge=1)
        n_modalities: int = param(2, "modalities n; modality i sees r, u_i and s_i", ge=2, le=8)
        synergy: str = param("xor", "task S: xor = sum of the s_i mod k; consistency = "
                             "1[s_n = pi(s_1+..+s_n-1 mod k)], consistent training tuples only",
                             choices=("xor", "consistency"))
        label_noise: float = param(0.0, "probability eps that an S label is replaced by a "
                                   "uniform symbol (task S only)", ge=0, lt=1)
        mix_r: int = param(1, "symbols of r in the mixture task M (divisor of k; 1: none)", ge=1)
        mix_u: int = param(1, "symbols of u_1 in the mixture task M (divisor of k; 1: none)", ge=1)
        mix_s: int = param(1, "symbols of S in the mixture task M (divisor of k; 1: none; "
                           "task M exists when any mix_* > 1)", ge=1)

    def __init__(self, params: Params, seed: int):
        super().__init__(params, seed)
        p, rng = params, np.random.default_rng(seed)
        n = p.n_modalities
        mix = {"mix_r": p.mix_r, "mix_u": p.mix_u, "mix_s": p.mix_s}
        for key, a in mix.items():
            if p.k % a:
                raise UserError(f"generator[latent].{key} = {a} does not divide k = {p.k}; "
                                f"choose one of {divisors(p.k)}")
        self.has_mixture = max(mix.values()) > 1
        if self.has_mixture and p.synergy != "xor":
            raise UserError(f"generator[latent] task M (mix_* > 1) needs synergy = 'xor', not "
                            f"{p.synergy!r}; set synergy=xor or every mix_* to 1")
        cells = p.mix_r ** 3 * p.mix_u ** 2 * p.mix_s ** 3
        if cells > MAX_MIX_CELLS:
            raise UserError(f"generator[latent] task M with mix_r={p.mix_r}, mix_u={p.mix_u}, "
                            f"mix_s={p.mix_s} needs a {cells}-cell exact table (mix_r^3 mix_u^2 "
                            f"mix_s^3), above {MAX_MIX_CELLS}; lower mix_r, mix_u or mix_s")
        # factors seen by each modality, in the order they enter the map
        self.modality_factors = tuple(("r", f"u{i}", f"s{i}") for i in range(1, n + 1))
        names = ["r"] + [f"u{i}" for i in range(1, n + 1)] + [f"s{i}" for i in range(1, n + 1)]
        self._names = tuple(names)
        self._emb = Fixed({f: symbol_embeddings(p.k, p.symbol_dim, rng) for f in names})
        self._maps = [RandomMap(3 * p.symbol_dim, p.n_nuisance, p.hidden, p.dim, rng) for _ in self.modality_factors]
        self.pi = rng.permutation(p.k)  # the consistent pairing of synergy=consistency

    @property
    def biased_training(self) -> bool:
        """True where training tuples are all consistent; probes then fit on ``sample("probe")``."""
        return self.params.synergy == "consistency"

    @property
    def tasks(self) -> tuple[str, ...]:
        n = self.params.n_modalities
        return ("R", *(f"U{i}" for i in range(1, n + 1)), "S") + (("M",) if self.has_mixture else ())

    def n_classes(self, task: str) -> int:
        p = self.params
        if task == "S" and p.synergy == "consistency":
            return 2
        if task == "M":
            return p.mix_r * p.mix_u * p.mix_s
        return p.k

    def _synergy_label(self, s: list) -> Any:
        """Clean S label from the s-factors (numpy arrays or ints), in modality order."""
        k = self.params.k
        if self.params.synergy == "consistency":
            return (s[-1] == self.pi[sum(s[:-1]) % k]).astype(np.int64)
        return sum(s) % k

    def labels(self, z: dict[str, Any]) -> dict[str, Any]:
        """Clean task labels (no label noise) from the factors (numpy arrays or ints)."""
        p, n = self.params, self.params.n_modalities
        y = {"R": z["r"], **{f"U{i}": z[f"u{i}"] for i in range(1, n + 1)},
             "S": self._synergy_label([z[f"s{i}"] for i in range(1, n + 1)])}
        if self.has_mixture:
            total = sum(z[f"s{i}"] for i in range(1, n + 1)) % p.k
            y["M"] = np.ravel_multi_index((z["r"] % p.mix_r, z["u1"] % p.mix_u, total % p.mix_s),
                                          (p.mix_r, p.mix_u, p.mix_s))
        return y

    def sample(self, split: str, rng: np.random.Generator) -> dict[str, Any]:
        """'train' (consistent s-tuples under synergy=consistency), 'test', or 'probe' (n_train
        unbiased tuples for the linear probes; the train distribution under synergy=xor)."""
        p = self.params
        n = p.n_test if split == "test" else p.n_train
        z = {f: rng.integers(0, p.k, size=n) for f in self._names}
        if split == "train" and self.biased_training:
            last = f"s{p.n_modalities}"
            z[last] = self.pi[sum(z[f"s{i}"] for i in range(1, p.n_modalities)) % p.k]
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        x = [v.numpy() for v in self.views({f: torch.as_tensor(v) for f, v in z.items()}, gen)]
        y = self.labels(z)
        if p.label_noise > 0:  # drawn after the views: the features do not depend on eps
            flip = rng.random(n) < p.label_noise
            y["S"] = np.where(flip, rng.integers(0, self.n_classes("S"), size=n), y["S"])
        return {"x": x, "y": y, "z": z}

    def views(self, z: dict[str, torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
        p = self.params
        emb = self._emb.on(z["r"].device)
        return [m(torch.cat([emb[f][z[f]] for f in factors], dim=1), p.nuisance_scale, p.noise, gen)
                for factors, m in zip(self.modality_factors, self._maps)]

    def modality_codes(self, z: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Flat codes of modality 1's factors and of the other modalities' factors together.

        With more than two modalities the second code numbers the tuples of the rest that occur
        in ``z`` (a relabelling of the rest's factor tuples that leaves any PID unchanged).
        """
        k = self.params.k
        c1 = np.ravel_multi_index([z[f] for f in self.modality_factors[0]], (k,) * 3)
        if self.params.n_modalities == 2:
            return c1, np.ravel_multi_index([z[f] for f in self.modality_factors[1]], (k,) * 3), k ** 3, k ** 3
        rest = list(dict.fromkeys(itertools.chain(*self.modality_factors[1:])))
        values, c2 = np.unique(np.stack([z[f] for f in rest], axis=1), axis=0, return_inverse=True)
        return c1, c2.ravel(), k ** 3, len(values)

    # ---- exact ground truth -------------------------------------------------------------

    def _noisy(self, task: str, y: int, n_labels: int) -> np.ndarray:
        """p(y | z) of a clean label symbol: label noise on task S only."""
        eps = self.params.label_noise if task == "S" else 0.0
        return (1 - eps) * np.eye(n_labels)[y] + eps / n_labels

    def _reduced_table(self, task: str, side1: tuple[int, ...], side2: tuple[int, ...]) -> np.ndarray:
        """Reduced joint table of ``task``: X1 = modalities side1, X2 = side2, the rest hidden.

        Factors: ``r`` (shared), ``u`` (the task's u), and per group g (1, 2, or 0 = hidden) the
        sum ``a<g>`` of the group's s-factors that enter the label through a sum; under
        consistency ``t`` is s_n, which enters on its own (see module docstring).
        """
        p, n = self.params, self.params.n_modalities
        group = {i: "1" if i in side1 else "2" if i in side2 else "0" for i in range(1, n + 1)}
        sizes: dict[str, int] = {}
        seen: dict[str, list[str]] = {"1": [], "2": [], "0": []}

        def add(name: str, size: int, groups: set[str]) -> None:
            sizes[name] = size
            for g in sorted(groups):
                seen[g].append(name)

        def add_sums(members: range, size: int) -> list[str]:
            names = []
            for g in ("1", "2", "0"):
                if any(group[i] == g for i in members):
                    add(f"a{g}", size, {g})
                    names.append(f"a{g}")
            return names

        sides = {g for g in ("1", "2") if any(group[i] == g for i in group)}
        if task == "R":
            add("r", p.k, sides)
            n_labels, rule = p.k, lambda z: z["r"]
        elif task.startswith("U"):
            add("u", p.k, {group[int(task[1:])]})
            n_labels, rule = p.k, lambda z: z["u"]
        elif task == "S" and p.synergy == "xor":
            sums = add_sums(range(1, n + 1), p.k)
            n_labels, rule = p.k, lambda z: sum(z[a] for a in sums) % p.k
        elif task == "S":
            sums = add_sums(range(1, n), p.k)
            add("t", p.k, {group[n]})
            n_labels, rule = 2, lambda z: int(z["t"] == self.pi[sum(z[a] for a in sums) % p.k])
        elif task == "M":
            add("r", p.mix_r, sides)
            add("u", p.mix_u, {group[1]})
            sums = add_sums(range(1, n + 1), p.mix_s)
            n_labels = p.mix_r * p.mix_u * p.mix_s
            rule = lambda z: np.ravel_multi_index(
                (z["r"], z["u"], sum(z[a] for a in sums) % p.mix_s), (p.mix_r, p.mix_u, p.mix_s))
        else:
            raise KeyError(task)
        return joint_table(sizes, tuple(seen["1"]), tuple(seen["2"]), n_labels,
                           lambda z: self._noisy(task, rule(z), n_labels))

    def _full_table(self, task: str, side1: tuple[int, ...], side2: tuple[int, ...]) -> np.ndarray:
        """Unreduced joint table: every factor of every modality, labels from ``labels``."""
        f1 = tuple(dict.fromkeys(itertools.chain(*(self.modality_factors[i - 1] for i in side1))))
        f2 = tuple(dict.fromkeys(itertools.chain(*(self.modality_factors[i - 1] for i in side2))))
        n_labels = self.n_classes(task)
        return joint_table({f: self.params.k for f in self._names}, f1, f2, n_labels,
                           lambda z: self._noisy(task, int(self.labels(z)[task]), n_labels))

    def pid(self, task: str, side1: tuple[int, ...], side2: tuple[int, ...], full: bool = False) -> PID:
        """Exact PID of ``task`` between modalities ``side1`` (X1) and ``side2`` (X2), 1-based,
        any other modality marginalised out."""
        table = self._full_table if full else self._reduced_table
        return broja(table(task, tuple(side1), tuple(side2)))

    def ground_truth(self, full: bool = False) -> dict[str, PID]:
        """Exact PID of each task between modality 1 and the other modalities together.

        By default on the reduced tables (module docstring); ``full=True`` uses all factors.
        """
        rest = tuple(range(2, self.params.n_modalities + 1))
        return {task: self.pid(task, (1,), rest, full) for task in self.tasks}

    def _splits(self) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """(X1 modalities, X2 modalities): every pair, then every modality against the rest."""
        n = self.params.n_modalities
        pairs = [((i,), (j,)) for i, j in itertools.combinations(range(1, n + 1), 2)]
        rests = [((i,), tuple(j for j in range(1, n + 1) if j != i)) for i in range(1, n + 1)]
        return list(dict.fromkeys(pairs + rests))

    def pairwise_truth(self) -> dict[str, dict[str, PID]]:
        """Exact PID of each task for every pair of modalities and every modality against the rest.

        Keys ``"i;j"`` (X1 = modality i, X2 = modality j, the others marginalised out) and
        ``"i;j+l+..."`` (X1 = modality i, X2 = all the others); for two modalities ``"1;2"`` and
        ``"2;1"``.
        """
        return {f"{s1[0]};{'+'.join(map(str, s2))}": {task: self.pid(task, s1, s2) for task in self.tasks}
                for s1, s2 in self._splits()}

    def extra_truth(self) -> dict[str, dict[str, PID]]:
        """With more than two modalities, ``pairwise_truth`` under readable titles."""
        n = self.params.n_modalities
        if n == 2:
            return {}

        def names(ms: list[int]) -> str:
            return ("modality " if len(ms) == 1 else "modalities ") + "+".join(map(str, ms))

        out = {}
        for (s1, s2), truth in zip(self._splits(), self.pairwise_truth().values()):
            hidden = [m for m in range(1, n + 1) if m not in s1 + s2]
            title = f"X1 = {names(list(s1))}, X2 = {names(list(s2))}"
            out[title + (f" ({names(hidden)} marginalised out)" if hidden else "")] = truth
        return out
