"""FactorCL, self-supervised (Liang, Deng, Ma, Zou, Morency, Salakhutdinov, NeurIPS 2023).

"Factorized Contrastive Learning: Going Beyond Multi-view Redundancy". The task-relevant
information splits into a shared part S = I(X1;X2;Y) = I(X1;X2) - I(X1;X2|Y) and unique parts
U1 = I(X1;Y|X2) = I(X1;Y) - [I(X1;X2) - I(X1;X2|Y)] (U2 likewise). Each part gets an InfoNCE
lower bound on the terms it adds and an NCE-CLUB upper bound on the terms it subtracts:

    S  >= I_NCE(X1;X2) - I_CLUB(X1;X2|Y)
    Ui >= I_NCE(Xi;Y)  - I_CLUB(X1;X2) + I_NCE(X1;X2|Y)

Self-supervised, Y is replaced by augmentations (X1', X2'): I(Xi;Y) -> I(Xi;Xi') and
I(X1;X2|Y) -> I(X1;X2|X1',X2'). In the paper each modality i has a shared encoder,
Z_Si = f_Si(Xi), and a unique encoder, Z_Ui = f_Ui(Xi). With X = ``views1`` and X' = ``views2``
(the sample and an augmentation of it) and Z' the same encoder applied to X', the method maximises

    S-bound = I_NCE(Z_S1; Z_S2) - I_CLUB(Z_S1; Z_S2 | Z_S1', Z_S2')
    U-bound = I_NCE(Z_U1; Z_U1') + I_NCE(Z_U2; Z_U2') + I_NCE(Z_U1; Z_U2 | Z_U1', Z_U2')
              - I_CLUB(Z_U1; Z_U2)

so the shared features keep what X1 and X2 share and lose the shared part that is not in the
augmentations, and the unique features keep what survives augmentation while the CLUB term
removes what X1 and X2 share.

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
critic exactly as its own step: one critic step per encoder step, as the code's synthetic notebook
runs it (``num_club_iter=1``; there on a fresh batch, here on the same one), taken together rather
than one after the other.

Two structures (``structure``):

- ``code`` (default), the public code's (github pliang279/FactorCL, ``synthetic_model.py``,
  ``FactorCLSSL``): one backbone per modality, h_i = g_i(X_i), and a small projection head per MI
  term (two per two-sided term), each an MLP E -> E -> E -> E; every estimate reads its heads'
  outputs of the backbone features. The augmented view feeds the terms with Y:
  I_NCE(H(h_i); H(h_i')) and I_NCE([H1(h1), H1(h1')]; [H2(h2), H2(h2')]). The conditional CLUB
  term concatenates each head's output of the *un-augmented* features with itself,
  I_CLUB([C1(h1), C1(h1)]; [C2(h2), C2(h2)]), as the code does. The representation is
  [h_1, h_2], (B, 2 E): the code's ``get_embedding``.
- ``paper``: separate shared and unique encoders per modality, every term acting on their
  features, as described above; the representation is [Z_S1, Z_U1, Z_S2, Z_U2], (B, 4 E). (With
  per-term heads a head can shrink its own CLUB term by discarding information.)

Other choices, with the public code as default:

- The *anchor* X is the un-augmented sample and X' one augmentation of it (``anchor: plain``:
  the training loop passes the samples themselves and one view); ``anchor: augmented`` uses two
  augmented views.
- The two terms that U1 and U2 have in common (-I_CLUB(X1;X2) and +I_NCE(X1;X2|X1',X2')) count
  once; the paper's sum U1 + U2 counts them twice.
- I_CLUB averages the scores over all B^2 pairs, diagonal included, as the code does.
- Critics are concatenation MLPs f(a, b) = MLP([a; b]) with ``critic_layers`` = 2 hidden layers
  of ``critic_hidden`` = 512 units (the code's helper, asked for one layer, builds two; the
  paper says one). They cost O(B^2 H) per term, heavy on a CPU; ``critic="separable"`` uses
  f(a, b) = g(a).h(b) with MLPs g, h of the same sizes instead (O(B H), a choice of this module).
- Backbones: for a vector modality (D,) an MLP with ``encoder_layers`` = 3 hidden layers of
  ``hidden`` = 512 units and ``embed_dim`` = 128 outputs (the code's ``mlp(D, 512, 128, 2)``);
  for an image modality (C, H, W) the published ``AlexNetEncoder`` with ``hidden`` its width
  scale and ``embed_dim`` outputs (:func:`~synergy_bench.nn.make_encoder`).
- Optimiser: Adam at ``lr`` = 1e-4 without weight decay, the code's (``optimizer: own``);
  ``optimizer: train`` uses the spec's train settings.
- ``temperature`` and ``head_hidden`` are unused (the critics are learned).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from synergy_bench.methods.base import EncoderParams, Method
from synergy_bench.nn import make_encoder, mlp
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
    """Backbone, head and critic sizes and the choices above (defaults: the public code's)."""

    hidden: int = param(512, "hidden width of the backbone MLPs (image modalities: the width scale of "
                        "their AlexNet encoders)", ge=1)
    encoder_layers: int = param(3, "hidden layers of each backbone MLP (code: 3)", ge=1)
    structure: str = param("code", "code = one backbone per modality and a head per MI term; paper = "
                                   "separate shared and unique encoders", choices=("code", "paper"))
    anchor: str = param("plain", "X in the bounds: plain = the un-augmented sample (code); augmented "
                                 "= a second augmented view", choices=("plain", "augmented"))
    critic: str = param("concat", "critic form: MLP([a; b]) (paper, code) or g(a).h(b) (fast)",
                        choices=("concat", "separable"))
    critic_hidden: int = param(512, "hidden width of each critic MLP", ge=1)
    critic_layers: int = param(2, "hidden layers of each critic MLP (code: 2)", ge=1)
    optimizer: str = param("own", "own = Adam at lr, no weight decay (code); train = the spec's "
                                  "train settings", choices=("own", "train"))
    lr: float = param(1e-4, "learning rate with optimizer: own (code: 1e-4)", gt=0)


# the MI terms: name -> (conditional, CLUB)
TERMS = {"nce_s": (False, False), "club_s": (True, True), "nce_u1": (False, False),
         "nce_u2": (False, False), "nce_u": (True, False), "club_u": (False, True)}


@register_method
class FactorCL(Method):
    """FactorCL's self-supervised bounds, with the public code's or the paper's structure."""

    name = "factorcl"
    Params = FactorCLParams

    def __init__(self, params: FactorCLParams, shapes: list[tuple[int, ...]], seed: int):
        super().__init__(params, shapes, seed)
        if len(self.shapes) != 2:
            raise ValueError(f"factorcl needs exactly 2 modalities, got {len(self.shapes)}: its "
                             "bounds are defined for a pair (X1, X2)")
        p, e = params, params.embed_dim

        def encoder(shape: tuple[int, ...]) -> nn.Module:
            return make_encoder(shape, p.hidden, e, p.encoder_layers)

        def critic(d: int) -> nn.Module:
            if p.critic == "separable":
                return SeparableCritic(d, d, p.critic_hidden, p.critic_layers, e)
            return ConcatCritic(d, d, p.critic_hidden, p.critic_layers)

        if p.structure == "code":
            self.backbones = nn.ModuleList(encoder(s) for s in self.shapes)
            # one head per side of each two-sided term; I(X_i; X_i') uses one head on both sides
            self.heads = nn.ModuleDict(
                {t: nn.ModuleList(mlp([e] * 4) for _ in range(1 if t in ("nce_u1", "nce_u2") else 2))
                 for t in TERMS})
        else:
            self.shared = nn.ModuleList(encoder(s) for s in self.shapes)
            self.unique = nn.ModuleList(encoder(s) for s in self.shapes)
        self.critics = nn.ModuleDict({t: critic(2 * e if cond else e) for t, (cond, _) in TERMS.items()})
        self.init_weights()

    @property
    def views(self) -> str:
        return "plain+strong" if self.params.anchor == "plain" else "strong"

    def optimizer_settings(self, train: dict) -> dict:
        if self.params.optimizer == "train":
            return train
        return {**train, "optimizer": "adam", "lr": self.params.lr, "weight_decay": 0.0}

    def pairs(self, views1: list[torch.Tensor], views2: list[torch.Tensor]) -> dict:
        """The (a, b) batches each critic scores, by term: (B, E) or, conditional, (B, 2E)."""
        b = views1[0].shape[0]
        xs = [torch.cat([x, x2]) for x, x2 in zip(views1, views2)]
        if self.params.structure == "code":
            h = [g(x) for g, x in zip(self.backbones, xs)]  # h_i and h_i' stacked, (2B, E) each
            other = {0: "nce_u2", 1: "nce_u1"}  # I(X_i; X_i') reads modality i only
            heads = {(t, i): hs[min(i, len(hs) - 1)](h[i]) for t, hs in self.heads.items()
                     for i in range(2) if t != other[i]}  # (2B, E) each

            def side(term: str, i: int, aug: bool = False) -> torch.Tensor:
                return heads[term, i][b:] if aug else heads[term, i][:b]

            return {
                "nce_s": (side("nce_s", 0), side("nce_s", 1)),
                "club_s": tuple(torch.cat([side("club_s", i)] * 2, 1) for i in range(2)),
                "nce_u1": (side("nce_u1", 0), side("nce_u1", 0, True)),
                "nce_u2": (side("nce_u2", 1), side("nce_u2", 1, True)),
                "nce_u": tuple(torch.cat([side("nce_u", i), side("nce_u", i, True)], 1) for i in range(2)),
                "club_u": (side("club_u", 0), side("club_u", 1)),
            }
        (s1, s1a), (s2, s2a) = (f(x).split(b) for f, x in zip(self.shared, xs))  # Z_Si, Z_Si'
        (u1, u1a), (u2, u2a) = (f(x).split(b) for f, x in zip(self.unique, xs))  # Z_Ui, Z_Ui'
        return {"nce_s": (s1, s2), "club_s": (torch.cat([s1, s1a], 1), torch.cat([s2, s2a], 1)),
                "nce_u1": (u1, u1a), "nce_u2": (u2, u2a),
                "nce_u": (torch.cat([u1, u1a], 1), torch.cat([u2, u2a], 1)), "club_u": (u1, u2)}

    def bounds(self, views1: list[torch.Tensor],
               views2: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every MI estimate (nats) in the loss.

        ``nce_s``, ``club_s``, ``nce_u1``, ``nce_u2``, ``nce_u``, ``club_u``: the terms of the S-
        and U-bounds (CLUB critics' parameters detached). ``fit_club_s``, ``fit_club_u``: I_NCE
        of the two CLUB critics on detached features, which those critics maximise.
        """
        pairs, out = self.pairs(views1, views2), {}
        for t, (_, club) in TERMS.items():
            a, b = pairs[t]
            if club:
                out[t] = nce_club_bound(frozen(self.critics[t], a, b))
                out["fit_" + t] = infonce_bound(self.critics[t](a.detach(), b.detach()))
            else:
                out[t] = infonce_bound(self.critics[t](a, b))
        return out

    def loss(self, views1, views2, epoch, max_epochs, labels=None):
        m = self.bounds(views1, views2)
        s_bound = m["nce_s"] - m["club_s"]
        u_bound = m["nce_u1"] + m["nce_u2"] + m["nce_u"] - m["club_u"]
        return -(s_bound + u_bound) - (m["fit_club_s"] + m["fit_club_u"])

    def embed(self, xs):
        if self.params.structure == "code":
            return torch.cat([g(x) for g, x in zip(self.backbones, xs)], dim=1)  # (B, 2E)
        s, u = [f(x) for f, x in zip(self.shared, xs)], [f(x) for f, x in zip(self.unique, xs)]
        return torch.cat([s[0], u[0], s[1], u[1]], dim=1)  # (B, 4E)
