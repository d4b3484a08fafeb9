"""CoMM: contrastive multimodal learning in one fused space (Dufumier, Castillo-Navarro et al., 2025).

Each modality is encoded into L tokens; the tokens of all modalities are fused by a small
transformer with a CLS token (:class:`~synergy_bench.nn.fusion.FusionTransformer`), and a 3-layer
MLP head maps the fused vector to the contrastive space. With two augmentations X', X'' of a batch,
Z' and Z'' are the heads' outputs on the full inputs and Z_i', Z_i'' those with every modality but
i dropped. The loss is the mean over the n + 1 terms i in {1..n, all} of

    1/2 [ NT-Xent(Z_i', Z'') + NT-Xent(Z_i'', Z') ]

so the fused space aligns each modality alone, and the full input, with the other augmentation of
the full input. The representation is the fused CLS output of the full input (before the head).

Choices taken from the public CoMM code (github Duplums/CoMM): the head is Linear-BN-ReLU-Linear-
BN-ReLU-Linear and is applied to each view separately (batch-norm statistics per view and per
augmentation); the fusion block is pre-norm with a final LayerNorm on the CLS output. Here all
2 (n + 1) views go through the encoders and the fusion transformer in one batched call, the
dropped modalities being removed by key padding (equal to running on the kept tokens alone).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from synergy_bench.losses import comm_terms
from synergy_bench.methods.base import EncoderParams, Method
from synergy_bench.nn import make_tokenizer, mlp
from synergy_bench.nn.fusion import FusionTransformer, head_per_view
from synergy_bench.registry import param, register_method


@dataclass
class FusionParams(EncoderParams):
    """Encoder sizes plus the fusion transformer's shape."""

    n_heads: int = param(8, "attention heads of the fusion transformer (must divide d_model)", ge=1)
    n_layers: int = param(1, "layers of the fusion transformer", ge=1)

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model = {self.d_model} is not divisible by n_heads = "
                             f"{self.n_heads}; choose d_model as a multiple of n_heads")


@register_method
class CoMM(Method):
    """Fused encoder trained so that every single-modality view and the full view align."""

    name = "comm"
    Params = FusionParams

    def __init__(self, params: FusionParams, shapes: list[tuple[int, ...]], seed: int):
        super().__init__(params, shapes, seed)
        p = params
        self.tokenizers = nn.ModuleList(
            make_tokenizer(s, p.hidden, p.n_tokens, p.d_model) for s in self.shapes)
        self.fusion = FusionTransformer(len(self.shapes), p.n_tokens, p.d_model, p.n_heads,
                                        p.n_layers)
        self.head = mlp([p.d_model, p.head_hidden, p.head_hidden, p.embed_dim], norm=True)
        self.init_weights()

    def tokens(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """Concatenated tokens of all modalities, (B, n * L, d)."""
        return torch.cat([tok(x) for tok, x in zip(self.tokenizers, xs)], dim=1)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """Head + L2 normalisation of a stack of views (V, B, d) -> (V, B, E), the head applied to
        each view separately (batch-norm statistics per view) in one batched call."""
        return F.normalize(head_per_view(self.head, z), dim=-1)

    def paired_tokens(self, views1: list[torch.Tensor], views2: list[torch.Tensor]) -> torch.Tensor:
        """Tokens of both augmentations in one encoder pass, (2, B, N, d)."""
        xs = [torch.cat([a, b]) for a, b in zip(views1, views2)]
        return self.tokens(xs).unflatten(0, (2, -1))

    def comm_terms(self, z: torch.Tensor) -> list[torch.Tensor]:
        """The n + 1 CoMM terms from projected views z (n+1, 2, B, E), full view last."""
        return list(comm_terms(z, self.params.temperature).unbind())

    def terms(self, views1, views2, epoch: int, max_epochs: int) -> list[torch.Tensor]:
        """The loss terms whose unweighted mean is the loss."""
        tokens = self.paired_tokens(views1, views2)  # (2, B, N, d)
        drop = self.fusion.modality_views(tokens.device)[:, None, None, :]  # (n+1, 1, 1, N)
        fused = self.fusion(tokens, pad=drop)  # (n+1, 2, B, d)
        z = self.project(fused.flatten(0, 1)).unflatten(0, fused.shape[:2])  # (n+1, 2, B, E)
        return self.comm_terms(z)

    def loss(self, views1, views2, epoch, max_epochs, labels=None):
        return torch.stack(self.terms(views1, views2, epoch, max_epochs)).mean()

    def embed(self, xs):
        return self.fusion(self.tokens(xs))  # (B, d)
