"""Cross+Self: Cross plus SimCLR inside each modality.

The CrossSelf baseline of CoMM (Dufumier, Castillo-Navarro et al., 2025): a cross-modal term
between the modalities plus, for each modality, the SimCLR NT-Xent (Chen et al., 2020) between its
two augmentations, so each encoder also keeps what is unique to its modality:

    L = mean_{i<j} NT-Xent(h_i(f_i(w_i)), h_j(f_j(w_j))) + s * mean_i NT-Xent(h_i(f_i(x_i')), h_i(f_i(x_i'')))

with s = ``ssl_scale``, x' and x'' two augmented views and w one *weak* view of each modality
(``generator.weak_views``), drawn separately from the augmented ones. As in the public code
(github Duplums/CoMM, ``pl_modules/cross_self.py`` and its Trifeature data module), the cross term
is NT-Xent with the 2N - 2 negatives of both batches (temperature tau) on the heads of those
weak views, each modality has a 3-layer MLP head with batch norm (Linear-BN-ReLU-Linear-BN-ReLU-
Linear) used by both terms and applied to each view set separately, and with two modalities the
public weighting cross + s (ssl_1 + ssl_2) / 2 is recovered. The probes read the concatenated
encoder outputs (``represent: features``), as the public ``extract_features``.

This suite's earlier choice, kept as options: ``view: strong`` (the cross term on the two
augmented views, averaged) and ``cross_loss: clip`` (CLIP's InfoNCE, negatives from the other
modality only, with Cross's logit-scale settings).
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
    """Cross's choices plus the within-modality term (``scale*`` apply with ``cross_loss: clip``)."""

    represent: str = param("features", "what the probes read: features = the concatenated encoder "
                                       "outputs (published); projection = the heads' outputs",
                           choices=("projection", "features"))
    cross_loss: str = param("nt_xent", "cross-modal term: nt_xent = SimCLR's loss with 2N - 2 "
                                       "negatives at temperature tau (published); clip = CLIP's "
                                       "InfoNCE", choices=("nt_xent", "clip"))
    ssl_scale: float = param(1.0, "weight s of the mean within-modality SimCLR term", ge=0.0)


@register_method
class CrossSelf(Cross):
    """Cross-modal NT-Xent on weak views plus within-modality SimCLR on augmented views."""

    name = "cross_self"
    Params = CrossSelfParams

    @property
    def uses_clip(self) -> bool:
        return self.params.cross_loss == "clip"

    @property
    def views(self) -> str:
        return "strong+weak" if self.params.view == "weak" else "strong"

    def make_head(self, width: int) -> nn.Module:
        p = self.params
        return mlp([width, p.head_hidden, p.head_hidden, p.embed_dim], norm=True)

    def pair_term(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.uses_clip:
            return super().pair_term(a, b)
        return nt_xent(a, b, self.params.temperature)

    def loss(self, views1, views2, epoch, max_epochs, labels=None, weak=None):
        """``weak``: the weak view set of the cross term; when it is not given (e.g. a caller
        that passes two augmented views only) views1 stands in for it."""
        separate = self.params.view == "weak"
        sets = [views1, views2] + ([views1 if weak is None else weak] if separate else [])
        z = self.projections(*sets)  # per modality (2 or 3, B, E), one head call per view set
        ssl = torch.stack([nt_xent(zi[0], zi[1], self.params.temperature) for zi in z]).mean()
        cross = self.cross_loss([zi[2:] for zi in z] if separate else [zi[:2] for zi in z])
        return cross + self.params.ssl_scale * ssl
