"""Cross+Self: Cross plus SimCLR inside each modality.

The CrossSelf baseline of CoMM (Dufumier, Castillo-Navarro et al., 2025): Cross's InfoNCE between
modalities plus, for each modality, the SimCLR NT-Xent (Chen et al., 2020) between its two
augmentations, so each encoder also keeps what is unique to its modality:

    L = L_cross + s * mean_i NT-Xent(h_i(f_i(x_i')), h_i(f_i(x_i'')))

with s = ``ssl_scale``. As in the public code (github Duplums/CoMM), each modality has a 3-layer
MLP head with batch norm (Linear-BN-ReLU-Linear-BN-ReLU-Linear) used by both terms; with two
modalities the public weighting cross + s (ssl_1 + ssl_2) / 2 is recovered. The representation is
the concatenation of the unimodal features, as for Cross.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from synergy_bench.losses import nt_xent
from synergy_bench.methods.cross import Cross, CrossParams
from synergy_bench.nn import mlp
from synergy_bench.registry import param, register_method


@dataclass
class CrossSelfParams(CrossParams):
    """Cross's sizes plus the weight of the within-modality term."""

    ssl_scale: float = param(1.0, "weight s of the mean within-modality SimCLR term", ge=0.0)


@register_method
class CrossSelf(Cross):
    """Cross-modal InfoNCE plus within-modality SimCLR."""

    name = "cross_self"
    Params = CrossSelfParams

    def make_head(self, width: int) -> nn.Module:
        p = self.params
        return mlp([width, p.head_hidden, p.head_hidden, p.embed_dim], norm=True)

    def loss(self, views1, views2, epoch, max_epochs, labels=None):
        z = self.projections(views1, views2)
        ssl = torch.stack([nt_xent(zi[0], zi[1], self.params.temperature) for zi in z]).mean()
        return self.cross_loss(z) + self.params.ssl_scale * ssl
