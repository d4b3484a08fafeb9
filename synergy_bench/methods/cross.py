"""Cross: CLIP-style alignment of the modalities (Radford et al., 2021).

One encoder per modality and a linear, bias-free projection to the contrastive space, as in the
CLIP baseline of the public CoMM code (github Duplums/CoMM). The loss is CLIP's symmetric InfoNCE
between modality i and modality j of the same sample, averaged over all pairs i < j:

    L = 1/2 [ CE(s z_i z_j^T, I) + CE(s z_j z_i^T, I) ],   z L2-normalised,

with CLIP's learnable logit scale s = exp(w): w starts at log(1/0.07) and is clipped to
[0, log 100] after every optimiser step, as the public code does. Only what the modalities share
can align, so Cross captures redundancy only.

Published choices, the defaults here (this suite's earlier choice in brackets, kept as an option):

* the logit scale is learnt (``scale: fixed``: s = 1 / temperature);
* each step sees one *weak* view of each modality (``generator.weak_views``; on Trifeature a
  random resized crop of scale 0.5-1) (``view: strong``: the loss on each of the two augmented
  views, averaged);
* images are encoded by the published ``AlexNetEncoder`` (trunk, 6 x 6 pooling, one linear map to
  ``latent_dim`` = 256 features), vectors by an MLP; the projection is initialised N(0, 1/latent_dim);
* the probes read the concatenated projected embeddings, CLIP's ``encode_image`` (``represent:
  features``: the encoder outputs before the projection).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import torch
from torch import nn

from synergy_bench.losses import clip_loss
from synergy_bench.methods.base import EncoderParams, Method
from synergy_bench.nn import make_encoder
from synergy_bench.registry import param, register_method


@dataclass
class UnimodalParams(EncoderParams):
    """Sizes and choices shared by the unimodal methods (one encoder per modality)."""

    latent_dim: int = param(256, "features each modality's encoder outputs (published: 256)", ge=1)
    view: str = param("weak", "views of the cross-modal term: weak = one weak view per modality and "
                              "step (published); strong = the two augmented views", choices=("weak", "strong"))
    represent: str = param("projection", "what the probes read: projection = the concatenated "
                                         "projected embeddings (published CLIP); features = the "
                                         "concatenated encoder outputs", choices=("projection", "features"))


@dataclass
class CrossParams(UnimodalParams):
    """The unimodal choices plus CLIP's logit scale (``head_hidden`` is unused: the projection is
    linear; ``temperature`` only with ``scale: fixed``)."""

    scale: str = param("learned", "logit scale s: learned = CLIP's exp(w), clipped at scale_max "
                                  "(published); fixed = 1 / temperature", choices=("learned", "fixed"))
    scale_init: float = param(1 / 0.07, "initial learned logit scale (CLIP: 1 / 0.07)", gt=0)
    scale_max: float = param(100.0, "cap of the learned logit scale (CLIP: 100)", ge=1)

    def __post_init__(self):
        if self.scale_init > self.scale_max:
            raise ValueError(f"scale_init = {self.scale_init} exceeds scale_max = {self.scale_max}; "
                             "lower scale_init or raise scale_max")


@register_method
class Cross(Method):
    """One encoder per modality, aligned across modalities by InfoNCE."""

    name = "cross"
    Params = CrossParams

    def __init__(self, params: CrossParams, shapes: list[tuple[int, ...]], seed: int):
        super().__init__(params, shapes, seed)
        if len(self.shapes) < 2:
            raise ValueError(f"{self.name} needs at least 2 modalities, got {len(self.shapes)}")
        p = params
        self.encoders = nn.ModuleList(make_encoder(s, p.hidden, p.latent_dim) for s in self.shapes)
        self.heads = nn.ModuleList(self.make_head(p.latent_dim) for _ in self.shapes)
        learned = p.scale == "learned" and self.uses_clip
        self.logit_scale = nn.Parameter(torch.zeros(())) if learned else None
        self.init_weights()

    @property
    def uses_clip(self) -> bool:
        """Whether the cross-modal term is :func:`~synergy_bench.losses.clip_loss`."""
        return True

    @property
    def views(self) -> str:
        return "weak" if self.params.view == "weak" else "strong"

    def make_head(self, width: int) -> nn.Module:
        """Projection from a modality's features (width) to the contrastive space."""
        return nn.Linear(width, self.params.embed_dim, bias=False)

    def seeded_reset(self, gen: torch.Generator) -> None:
        """CLIP's initialisation (called by ``seeded_init``): linear projections ~ N(0, 1/width),
        the logit scale at log(scale_init)."""
        with torch.no_grad():
            for head in self.heads:
                if isinstance(head, nn.Linear):
                    head.weight.normal_(0.0, head.in_features ** -0.5, generator=gen)
            if self.logit_scale is not None:
                self.logit_scale.fill_(math.log(self.params.scale_init))

    def after_step(self) -> None:
        """Clip the learned logit scale to [1, scale_max] (w to [0, log scale_max])."""
        if self.logit_scale is not None:
            with torch.no_grad():
                self.logit_scale.clamp_(0.0, math.log(self.params.scale_max))

    def scale_value(self) -> torch.Tensor | float:
        """The logit scale s: exp(w) if learned, else 1 / temperature."""
        return self.logit_scale.exp() if self.logit_scale is not None else 1.0 / self.params.temperature

    def features(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-modality encoder outputs, each (B, latent_dim)."""
        return [enc(x) for enc, x in zip(self.encoders, xs)]

    def projections(self, *view_sets: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-modality projections of every view set, each (V, B, E); the encoders run once on
        all sets, the heads once per set (batch-norm statistics per view where a head has them)."""
        feats = self.features([torch.cat(xs) for xs in zip(*view_sets)])
        v = len(view_sets)
        return [torch.stack([head(f) for f in feat.chunk(v)]) for head, feat in zip(self.heads, feats)]

    def pair_term(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The cross-modal loss of one pair of projected batches (B, E)."""
        return clip_loss(a, b, self.scale_value())

    def cross_loss(self, z: list[torch.Tensor]) -> torch.Tensor:
        """Mean over modality pairs i < j and view sets a of pair_term(z_i[a], z_j[a])."""
        terms = [self.pair_term(z[i][a], z[j][a])
                 for i, j in combinations(range(len(z)), 2) for a in range(z[0].shape[0])]
        return torch.stack(terms).mean()

    def cross_views(self, views1, views2) -> list[list[torch.Tensor]]:
        """The view sets of the cross-modal term: the one weak view, or both augmented views."""
        return [views1] if self.params.view == "weak" or views2 is None else [views1, views2]

    def loss(self, views1, views2, epoch, max_epochs, labels=None):
        return self.cross_loss(self.projections(*self.cross_views(views1, views2)))

    def embed(self, xs):
        feats = self.features(xs)
        if self.params.represent == "projection":
            feats = [head(f) for head, f in zip(self.heads, feats)]
        return torch.cat(feats, dim=1)  # (B, n * latent_dim) or (B, n * E)
