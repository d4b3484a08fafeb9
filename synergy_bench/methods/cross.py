"""Cross: CLIP-style alignment of the modalities (Radford et al., 2021).

One encoder per modality (the same token encoder as the fused methods, its L tokens flattened into
one feature vector) and a linear, bias-free projection to the contrastive space, as in the CLIP
baseline of the public CoMM code (github Duplums/CoMM). The loss is CLIP's symmetric InfoNCE between
modality i and modality j of the same sample, averaged over all pairs i < j and over the two
augmentations. Only what the modalities share can align, so Cross captures redundancy only.
The temperature is the fixed tau of the parameters (not CLIP's learnt logit scale).

The representation is the concatenation of the unimodal features, taken before the projection
(a linear probe on a linear map of the features can do no better than on the features).
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import torch
from torch import nn

from synergy_bench.losses import clip_loss
from synergy_bench.methods.base import EncoderParams, Method
from synergy_bench.nn import make_tokenizer
from synergy_bench.registry import register_method


@dataclass
class CrossParams(EncoderParams):
    """Encoder sizes only (``head_hidden`` is unused: the projection is linear)."""


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
        self.encoders = nn.ModuleList(
            make_tokenizer(s, p.hidden, p.n_tokens, p.d_model) for s in self.shapes)
        self.heads = nn.ModuleList(self.make_head(p.n_tokens * p.d_model) for _ in self.shapes)
        self.init_weights()

    def make_head(self, width: int) -> nn.Module:
        """Projection from a modality's features (width) to the contrastive space."""
        return nn.Linear(width, self.params.embed_dim, bias=False)

    def features(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-modality features, each (B, L * d)."""
        return [enc(x).flatten(1) for enc, x in zip(self.encoders, xs)]

    def projections(self, views1, views2) -> list[torch.Tensor]:
        """Per-modality projections of both augmentations, each (2, B, E); one head call per
        augmentation (batch-norm statistics per view where a head has them)."""
        feats = self.features([torch.cat([a, b]) for a, b in zip(views1, views2)])
        return [torch.stack([head(f) for f in feat.chunk(2)]) for head, feat in zip(self.heads, feats)]

    def cross_loss(self, z: list[torch.Tensor]) -> torch.Tensor:
        """Mean over modality pairs and augmentations of clip_loss(z_i, z_j)."""
        t = self.params.temperature
        terms = [clip_loss(z[i][a], z[j][a], t)
                 for i, j in combinations(range(len(z)), 2) for a in range(2)]
        return torch.stack(terms).mean()

    def loss(self, views1, views2, epoch, max_epochs, labels=None):
        return self.cross_loss(self.projections(views1, views2))

    def embed(self, xs):
        return torch.cat(self.features(xs), dim=1)  # (B, n * L * d)
