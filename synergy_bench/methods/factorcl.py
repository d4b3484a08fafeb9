"""FactorCL, self-supervised (Liang, Deng, Ma, Zou, Morency, Salakhutdinov, NeurIPS 2023).

"Factorized Contrastive Learning: Going Beyond Multi-view Redundancy". Task-relevant information
splits into a shared part S = I(X1;X2;Y) = I(X1;X2) - I(X1;X2|Y) and unique parts
U1 = I(X1;Y|X2) = I(X1;Y) - [I(X1;X2) - I(X1;X2|Y)] (U2 likewise). Each part is bounded with a
lower bound (InfoNCE) on the terms it adds and an upper bound (NCE-CLUB) on the terms it removes:

    S  >= I_NCE(X1;X2) - I_CLUB(X1;X2|Y)
    Ui >= I_NCE(Xi;Y)  - I_CLUB(X1;X2) + I_NCE(X1;X2|Y)

Self-supervised, Y is replaced by the augmentations (X1', X2'): I(Xi;Y) -> I(Xi;Xi') and
I(X1;X2|Y) -> I(X1;X2|X1',X2'). Per modality i a shared encoder gives Z_Si = f_Si(Xi) and a
unique encoder Z_Ui = f_Ui(Xi); with X = ``views1`` and X' = ``views2`` (two augmentations of one
batch) the method maximises

    S-bound = I_NCE(Z_S1; Z_S2) - I_CLUB(Z_S1; Z_S2 | Z_S1', Z_S2')
    U-bound = I_NCE(Z_U1; Z_U1') + I_NCE(Z_U2; Z_U2') + I_NCE(Z_U1; Z_U2 | Z_U1', Z_U2')
              - I_CLUB(Z_U1; Z_U2)

(Z' the same encoder applied to X'), i.e. the encoder loss is L_enc = -(S-bound + U-bound). The
representation is [Z_S1, Z_U1, Z_S2, Z_U2] (B, 4 E).

Estimators, for a critic f(a, b) and a batch of B pairs (a_i, b_i), with scores
F_ij = f(a_i, b_j):

    I_NCE(A;B)  = log B + (1/B) sum_j [ F_jj - log sum_i exp F_ij ]        (<= log B)
    I_CLUB(A;B) = (1/B) sum_i F_ii - (1/B^2) sum_ij F_ij                     (NCE-CLUB)

I_CLUB uses the critic f* that maximises I_NCE: the CLUB critics are trained on their own
objective -I_NCE (the paper alternates a critic step with each encoder step). Here both live in
one scalar,

    loss = L_enc [CLUB critics frozen] + sum over CLUB critics of -I_NCE [features detached]

so one optimiser step over all parameters moves the encoders (and InfoNCE critics) on L_enc and
each CLUB critic on its own InfoNCE fit, exactly the gradients of the alternating scheme with one
critic step per encoder step on the same batch (taken simultaneously rather than in sequence).
A conditional term conditions by concatenation, as the public code does: the critic of
I(Z1;Z2|Z1',Z2') scores ([z1, z1'], [z2, z2']) with in-batch negatives.

Choices where paper and public code (github pliang279/FactorCL) differ, and sizes:

- The code uses one backbone per modality with a projection head per MI term; the paper (and
  this module) uses separate shared and unique encoders, each term acting on their features.
- The code counts the two terms shared by U1 and U2 (-I_CLUB(X1;X2), +I_NCE(X1;X2|.)) once; so
  does this module (the paper's sum U1 + U2 would count them twice).
- I_CLUB averages the scores over all B^2 pairs, diagonal included, as the code does.
- Critics are concatenation MLPs f(a, b) = MLP([a; b]) with ``critic_layers`` hidden layers of
  ``critic_hidden`` = 512 units (paper: one hidden layer of 512; the code's helper, called with
  one layer, builds two). Encoders are MLPs with ``encoder_layers`` hidden layers of ``hidden``
  = 512 units and E = ``embed_dim`` = 128 outputs, as in the paper. ``temperature``, ``n_tokens``,
  ``d_model`` and ``head_hidden`` are not used (the critics are learned).
- The paper trains with Adam, lr 1e-4; here the shared training loop's optimiser is used.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from synergy_bench.methods.base import EncoderParams, Method
from synergy_bench.nn import mlp
from synergy_bench.registry import param, register_method


def infonce_bound(scores: torch.Tensor) -> torch.Tensor:
    """InfoNCE lower bound (nats) from critic scores F (B, B), F_ij = f(a_i, b_j).

    Each b_j must pick its partner a_j among the B rows a_i:

        I_NCE = log B + (1/B) sum_j [ F_jj - logsumexp_i F_ij ]  <=  log B.
    """
    b = scores.shape[0]
    return scores.diagonal().mean() - scores.logsumexp(dim=0).mean() + torch.log(
        torch.tensor(float(b), dtype=scores.dtype, device=scores.device))


def nce_club_bound(scores: torch.Tensor) -> torch.Tensor:
    """NCE-CLUB upper bound (nats) from the scores of an InfoNCE-trained critic, F (B, B).

    Mean score on the B joint pairs minus mean score on all B^2 pairs (the product of marginals):

        I_CLUB = (1/B) sum_i F_ii - (1/B^2) sum_ij F_ij.
    """
    return scores.diagonal().mean() - scores.mean()


class ConcatCritic(nn.Module):
    """Critic f(a, b) = MLP([a; b]) evaluated on every pair of a batch.

    The first layer W [a; b] = W_a a + W_b b is split so the (B, B, 2E) pair tensor never
    exists; the hidden activations of all pairs are (B, B, H).
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


def frozen(critic: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Scores of ``critic`` with its parameters treated as constants (no gradient reaches them)."""
    params = {k: v.detach() for k, v in critic.named_parameters()}
    return functional_call(critic, params, (a, b))


@dataclass
class FactorCLParams(EncoderParams):
    """Encoder and critic sizes of FactorCL (paper: 512-unit MLPs, 128-d features)."""

    hidden: int = param(512, "hidden width of the shared and unique encoder MLPs", ge=1)
    encoder_layers: int = param(2, "hidden layers of each encoder MLP", ge=1)
    critic_hidden: int = param(512, "hidden width of each critic MLP", ge=1)
    critic_layers: int = param(1, "hidden layers of each critic MLP", ge=1)
    heads: bool = param(False, "per-term projection heads (public code) instead of direct features")


@register_method
class FactorCL(Method):
    """Shared and unique encoders per modality trained on FactorCL's self-supervised bounds."""

    name = "factorcl"
    Params = FactorCLParams

    def __init__(self, params: FactorCLParams, shapes: list[tuple[int, ...]], seed: int):
        super().__init__(params, shapes, seed)
        if len(self.shapes) != 2:
            raise ValueError(f"factorcl needs exactly 2 modalities, got {len(self.shapes)}; "
                             "its bounds are defined for a pair (X1, X2)")
        for s in self.shapes:
            if len(s) != 1:
                raise ValueError(f"factorcl encodes vector modalities (D,), got shape {s}")
        p, e = params, params.embed_dim

        def encoder(d: int) -> nn.Module:
            return mlp([d] + [p.hidden] * p.encoder_layers + [e])

        def critic(da: int, db: int) -> ConcatCritic:
            return ConcatCritic(da, db, p.critic_hidden, p.critic_layers)

        self.shared = nn.ModuleList(encoder(s[0]) for s in self.shapes)
        self.unique = nn.ModuleList(encoder(s[0]) for s in self.shapes)
        terms = ("nce_s", "club_s", "nce_u1", "nce_u2", "nce_u", "club_u")
        self.heads = nn.ModuleDict(
            {t: nn.ModuleList(mlp([e, e, e]) if p.heads else nn.Identity() for _ in range(2))
             for t in terms})
        # S-bound: I_NCE(Z_S1; Z_S2) - I_CLUB(Z_S1; Z_S2 | Z_S1', Z_S2')
        self.nce_s = critic(e, e)
        self.club_s = critic(2 * e, 2 * e)
        # U-bound: I_NCE(Z_Ui; Z_Ui') + I_NCE(Z_U1; Z_U2 | Z_U1', Z_U2') - I_CLUB(Z_U1; Z_U2)
        self.nce_u1 = critic(e, e)
        self.nce_u2 = critic(e, e)
        self.nce_u = critic(2 * e, 2 * e)
        self.club_u = critic(e, e)
        self.init_weights()

    def features(self, xs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Shared and unique features [Z_S1, Z_S2], [Z_U1, Z_U2], each (B, E)."""
        return ([f(x) for f, x in zip(self.shared, xs)], [f(x) for f, x in zip(self.unique, xs)])

    def bounds(self, views1: list[torch.Tensor], views2: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every MI estimate (nats) of the objective, plus the CLUB critics' fits.

        Keys: ``nce_s``, ``club_s``, ``nce_u1``, ``nce_u2``, ``nce_u``, ``club_u`` (the terms of
        the S- and U-bounds; CLUB critics frozen) and ``fit_club_s``, ``fit_club_u`` (I_NCE of the
        CLUB critics on detached features, the quantity those critics maximise).
        """
        b = views1[0].shape[0]
        s, u = self.features([torch.cat([x, x2]) for x, x2 in zip(views1, views2)])
        s = [z.split(b) for z in s]  # [(Z_S1, Z_S1'), (Z_S2, Z_S2')], each (B, E)
        u = [z.split(b) for z in u]
        h = self.heads

        def head(term: str, i: int, z: torch.Tensor) -> torch.Tensor:
            return h[term][i](z)

        # conditioning by concatenation: [z_i, z_i'] (B, 2E)
        s_cond = [torch.cat([head("club_s", i, z), head("club_s", i, z2)], dim=1)
                  for i, (z, z2) in enumerate(s)]
        u_cond = [torch.cat([head("nce_u", i, z), head("nce_u", i, z2)], dim=1)
                  for i, (z, z2) in enumerate(u)]
        u_club = [head("club_u", i, u[i][0]) for i in range(2)]
        return {
            "nce_s": infonce_bound(self.nce_s(head("nce_s", 0, s[0][0]), head("nce_s", 1, s[1][0]))),
            "club_s": nce_club_bound(frozen(self.club_s, *s_cond)),
            "nce_u1": infonce_bound(self.nce_u1(head("nce_u1", 0, u[0][0]), head("nce_u1", 0, u[0][1]))),
            "nce_u2": infonce_bound(self.nce_u2(head("nce_u2", 1, u[1][0]), head("nce_u2", 1, u[1][1]))),
            "nce_u": infonce_bound(self.nce_u(*u_cond)),
            "club_u": nce_club_bound(frozen(self.club_u, *u_club)),
            "fit_club_s": infonce_bound(self.club_s(*(z.detach() for z in s_cond))),
            "fit_club_u": infonce_bound(self.club_u(*(z.detach() for z in u_club))),
        }

    def loss(self, views1, views2, epoch, max_epochs, labels=None):
        m = self.bounds(views1, views2)
        s_bound = m["nce_s"] - m["club_s"]
        u_bound = m["nce_u1"] + m["nce_u2"] + m["nce_u"] - m["club_u"]
        return -(s_bound + u_bound) - (m["fit_club_s"] + m["fit_club_u"])

    def embed(self, xs):
        s, u = self.features(xs)
        return torch.cat([s[0], u[0], s[1], u[1]], dim=1)  # (B, 4E)
