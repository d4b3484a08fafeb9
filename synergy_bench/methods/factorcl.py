"""FactorCL, self-supervised (Liang, Deng, Ma, Zou, Morency, Salakhutdinov, NeurIPS 2023).

"Factorized Contrastive Learning: Going Beyond Multi-view Redundancy". The task-relevant
information splits into a shared part S = I(X1;X2;Y) = I(X1;X2) - I(X1;X2|Y) and unique parts
U1 = I(X1;Y|X2) = I(X1;Y) - [I(X1;X2) - I(X1;X2|Y)] (U2 likewise). Each part gets an InfoNCE
lower bound on the terms it adds and an NCE-CLUB upper bound on the terms it subtracts:

    S  >= I_NCE(X1;X2) - I_CLUB(X1;X2|Y)
    Ui >= I_NCE(Xi;Y)  - I_CLUB(X1;X2) + I_NCE(X1;X2|Y)

Self-supervised, Y is replaced by augmentations (X1', X2'): I(Xi;Y) -> I(Xi;Xi') and
I(X1;X2|Y) -> I(X1;X2|X1',X2'). Each modality i has a shared encoder, Z_Si = f_Si(Xi), and a
unique encoder, Z_Ui = f_Ui(Xi). With X = ``views1`` and X' = ``views2`` (two augmentations of
one batch) and Z' the same encoder applied to X', the method maximises

    S-bound = I_NCE(Z_S1; Z_S2) - I_CLUB(Z_S1; Z_S2 | Z_S1', Z_S2')
    U-bound = I_NCE(Z_U1; Z_U1') + I_NCE(Z_U2; Z_U2') + I_NCE(Z_U1; Z_U2 | Z_U1', Z_U2')
              - I_CLUB(Z_U1; Z_U2)

so the shared features keep what X1 and X2 share and lose the shared part that is not in the
augmentations, and the unique features keep what survives augmentation while the CLUB term
removes what X1 and X2 share. The representation is [Z_S1, Z_U1, Z_S2, Z_U2], (B, 4 E).

Estimators, for a critic f(a, b) with scores F_ij = f(a_i, b_j) on a batch of B pairs:

    I_NCE(A;B)  = log B + (1/B) sum_j [ F_jj - log sum_i exp F_ij ]      (<= log B)
    I_CLUB(A;B) = (1/B) sum_i F_ii - (1/B^2) sum_ij F_ij                   (NCE-CLUB)

A conditional term conditions by concatenation, as the public code does: the critic of
I(Z1;Z2 | Z1',Z2') scores the pairs ([z1, z1'], [z2, z2']) against in-batch negatives.
Every term has its own critic. I_CLUB needs the critic f* that maximises I_NCE, so the paper
alternates an encoder step on the bounds (CLUB critics fixed) with a CLUB-critic step on -I_NCE.
The shared training loop takes one step on one scalar, so both are folded into

    loss = -(S-bound + U-bound)                      [CLUB critics' parameters detached]
           - I_NCE^{f_club_s}(Z_S1,Z_S1' ; Z_S2,Z_S2') - I_NCE^{f_club_u}(Z_U1; Z_U2)
                                                     [features detached]

whose gradient moves the encoders and InfoNCE critics exactly as the encoder step and each CLUB
critic exactly as its own step: one critic step per encoder step on the same batch, as in the
code's MultiBench scripts (its synthetic script takes 5 on fresh batches), taken together rather
than one after the other.

Where the paper and the public code (github pliang279/FactorCL) differ, and sizes:

- The code has one backbone per modality and a projection head per MI term; this module follows
  the paper: separate shared and unique encoders, every term acting on their features. (With
  per-term heads a head can shrink its own CLUB term by discarding information, and in our tests
  the head variant diverged at lr 1e-3.)
- The code counts once the two terms that U1 and U2 have in common (-I_CLUB(X1;X2) and
  +I_NCE(X1;X2|X1',X2')), and so does this module; the paper's sum U1 + U2 counts them twice.
- I_CLUB averages the scores over all B^2 pairs, diagonal included, as the code does.
- Critics are concatenation MLPs f(a, b) = MLP([a; b]) with ``critic_layers`` hidden layers of
  ``critic_hidden`` = 512 units (the paper: one hidden layer of 512; the code's helper, asked for
  one layer, builds two: set ``critic_layers=2``). They cost O(B^2 H) per term, heavy on a CPU;
  ``critic="separable"`` uses f(a, b) = g(a).h(b) with MLPs g, h of the same sizes instead
  (O(B H), a choice of this module, not of the paper).
- Encoders are MLPs with ``encoder_layers`` hidden layers of ``hidden`` = 512 units and
  ``embed_dim`` = 128 outputs, as in the paper. A vector modality (D,) feeds the MLP directly. Any
  other modality first goes through the token encoder the other methods use for its shape
  (:func:`~synergy_bench.nn.make_tokenizer`; images (C, H, W) get the small AlexNet of
  :mod:`synergy_bench.nn.images` with ``hidden`` its width scale), whose tokens (B, L, d)
  (``n_tokens`` = L, ``d_model`` = d) are flattened to (B, L d) for the MLP. The shared and the
  unique encoder of a modality have a trunk each, as the paper's separate encoders: one trunk
  with a shared and a unique MLP on top would halve the convolutional cost, but the CLUB term
  that pushes shared content out of Z_Ui would then also act on the trunk Z_Si is computed from.
- ``temperature`` and ``head_hidden`` are unused (the critics are learned). The paper trains with
  Adam at lr 1e-4; here the shared training loop's optimiser is used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from synergy_bench.methods.base import EncoderParams, Method
from synergy_bench.nn import make_tokenizer, mlp
from synergy_bench.registry import param, register_method


def infonce_bound(scores: torch.Tensor) -> torch.Tensor:
    """InfoNCE lower bound (nats) from critic scores F (B, B), F_ij = f(a_i, b_j).

    Each b_j must pick its partner a_j among the B rows a_i:

        I_NCE = log B + (1/B) sum_j [ F_jj - logsumexp_i F_ij ]  <=  log B.
    """
    return scores.diagonal().mean() - scores.logsumexp(dim=0).mean() + math.log(scores.shape[0])


def nce_club_bound(scores: torch.Tensor) -> torch.Tensor:
    """NCE-CLUB upper bound (nats) from the scores F (B, B) of an InfoNCE-trained critic.

    Mean score of the B joint pairs minus mean score of all B^2 pairs (product of marginals):

        I_CLUB = (1/B) sum_i F_ii - (1/B^2) sum_ij F_ij.
    """
    return scores.diagonal().mean() - scores.mean()


class ConcatCritic(nn.Module):
    """f(a, b) = MLP([a; b]), scored on every pair of a batch.

    The first layer W [a; b] = W_a a + W_b b is split so the (B, B, 2E) pair inputs are never
    built; the hidden activations of all pairs are (B, B, H).
    """

    def __init__(self, dim_a: int, dim_b: int, hidden: int, layers: int):
        super().__init__()
        self.dim_a = dim_a
        self.first = nn.Linear(dim_a + dim_b, hidden)
        self.rest = mlp([hidden] * layers + [1])

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Scores F (B, B) with F_ij = f(a_i, b_j)."""
        w_a, w_b = self.first.weight[:, :self.dim_a], self.first.weight[:, self.dim_a:]
        h = (a @ w_a.T)[:, None, :] + (b @ w_b.T)[None, :, :] + self.first.bias  # (B, B, H)
        return self.rest(F.relu(h)).squeeze(-1)  # (B, B)


class SeparableCritic(nn.Module):
    """f(a, b) = g(a) . h(b) with MLPs g, h (hidden layers of ``hidden``, ``out`` outputs)."""

    def __init__(self, dim_a: int, dim_b: int, hidden: int, layers: int, out: int):
        super().__init__()
        self.g = mlp([dim_a] + [hidden] * layers + [out])
        self.h = mlp([dim_b] + [hidden] * layers + [out])

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Scores F (B, B) with F_ij = f(a_i, b_j)."""
        return self.g(a) @ self.h(b).T  # (B, B)


def frozen(critic: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Scores of ``critic`` with its parameters held constant (no gradient reaches them)."""
    return functional_call(critic, {k: v.detach() for k, v in critic.named_parameters()}, (a, b))


@dataclass
class FactorCLParams(EncoderParams):
    """Encoder and critic sizes (paper: 512-unit MLPs, 128-d features, 512-unit critics)."""

    hidden: int = param(512, "hidden width of the shared and unique encoder MLPs (and, for image "
                        "modalities, the width scale of their AlexNet trunks)", ge=1)
    encoder_layers: int = param(2, "hidden layers of each encoder MLP", ge=1)
    critic: str = param("concat", "critic form: MLP([a; b]) (paper, code) or g(a).h(b) (fast)",
                        choices=("concat", "separable"))
    critic_hidden: int = param(512, "hidden width of each critic MLP", ge=1)
    critic_layers: int = param(1, "hidden layers of each critic MLP", ge=1)


@register_method
class FactorCL(Method):
    """Shared and unique encoders per modality trained on FactorCL's self-supervised bounds."""

    name = "factorcl"
    Params = FactorCLParams

    def __init__(self, params: FactorCLParams, shapes: list[tuple[int, ...]], seed: int):
        super().__init__(params, shapes, seed)
        if len(self.shapes) != 2:
            raise ValueError(f"factorcl needs exactly 2 modalities, got {len(self.shapes)}: its "
                             "bounds are defined for a pair (X1, X2)")
        p, e = params, params.embed_dim

        def encoder(shape: tuple[int, ...]) -> nn.Module:
            if len(shape) == 1:  # (D,) -> MLP -> (E,)
                return mlp([shape[0]] + [p.hidden] * p.encoder_layers + [e])
            # (C, H, W) -> tokens (L, d) -> (L d,) -> MLP -> (E,)
            return nn.Sequential(make_tokenizer(shape, p.hidden, p.n_tokens, p.d_model),
                                 nn.Flatten(1),
                                 mlp([p.n_tokens * p.d_model] + [p.hidden] * p.encoder_layers + [e]))

        def critic(d: int) -> nn.Module:
            if p.critic == "separable":
                return SeparableCritic(d, d, p.critic_hidden, p.critic_layers, e)
            return ConcatCritic(d, d, p.critic_hidden, p.critic_layers)

        self.shared = nn.ModuleList(encoder(s) for s in self.shapes)
        self.unique = nn.ModuleList(encoder(s) for s in self.shapes)
        self.nce_s = critic(e)        # I_NCE(Z_S1; Z_S2)
        self.club_s = critic(2 * e)   # I_CLUB(Z_S1; Z_S2 | Z_S1', Z_S2')
        self.nce_u1 = critic(e)       # I_NCE(Z_U1; Z_U1')
        self.nce_u2 = critic(e)       # I_NCE(Z_U2; Z_U2')
        self.nce_u = critic(2 * e)    # I_NCE(Z_U1; Z_U2 | Z_U1', Z_U2')
        self.club_u = critic(e)       # I_CLUB(Z_U1; Z_U2)
        self.init_weights()

    def features(self, xs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Shared [Z_S1, Z_S2] and unique [Z_U1, Z_U2] features, each (B, E)."""
        return [f(x) for f, x in zip(self.shared, xs)], [f(x) for f, x in zip(self.unique, xs)]

    def bounds(self, views1: list[torch.Tensor],
               views2: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every MI estimate (nats) in the loss.

        ``nce_s``, ``club_s``, ``nce_u1``, ``nce_u2``, ``nce_u``, ``club_u``: the terms of the S-
        and U-bounds (CLUB critics' parameters detached). ``fit_club_s``, ``fit_club_u``: I_NCE
        of the two CLUB critics on detached features, which those critics maximise.
        """
        b = views1[0].shape[0]
        s, u = self.features([torch.cat([x, x2]) for x, x2 in zip(views1, views2)])
        (s1, s1a), (s2, s2a) = (z.split(b) for z in s)  # Z_Si, Z_Si' (B, E)
        (u1, u1a), (u2, u2a) = (z.split(b) for z in u)  # Z_Ui, Z_Ui' (B, E)
        s1c, s2c = torch.cat([s1, s1a], 1), torch.cat([s2, s2a], 1)  # (B, 2E)
        u1c, u2c = torch.cat([u1, u1a], 1), torch.cat([u2, u2a], 1)  # (B, 2E)
        return {
            "nce_s": infonce_bound(self.nce_s(s1, s2)),
            "club_s": nce_club_bound(frozen(self.club_s, s1c, s2c)),
            "nce_u1": infonce_bound(self.nce_u1(u1, u1a)),
            "nce_u2": infonce_bound(self.nce_u2(u2, u2a)),
            "nce_u": infonce_bound(self.nce_u(u1c, u2c)),
            "club_u": nce_club_bound(frozen(self.club_u, u1, u2)),
            "fit_club_s": infonce_bound(self.club_s(s1c.detach(), s2c.detach())),
            "fit_club_u": infonce_bound(self.club_u(u1.detach(), u2.detach())),
        }

    def loss(self, views1, views2, epoch, max_epochs, labels=None):
        m = self.bounds(views1, views2)
        s_bound = m["nce_s"] - m["club_s"]
        u_bound = m["nce_u1"] + m["nce_u2"] + m["nce_u"] - m["club_u"]
        return -(s_bound + u_bound) - (m["fit_club_s"] + m["fit_club_u"])

    def embed(self, xs):
        s, u = self.features(xs)
        return torch.cat([s[0], u[0], s[1], u[1]], dim=1)  # (B, 4E)
