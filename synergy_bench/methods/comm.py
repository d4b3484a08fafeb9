"""CoMM: contrastive multimodal learning in one fused space (Dufumier, Castillo-Navarro et al., 2025).

Each modality is encoded into L tokens; the tokens of all modalities are fused by a small
transformer with a CLS token (:class:`~synergy_bench.nn.fusion.FusionTransformer`), and a 3-layer
MLP head maps the fused vector to the contrastive space. With two augmentations X', X'' of a batch,
Z' and Z'' are the heads' outputs on the full inputs and Z_i', Z_i'' those with every modality but
i dropped. The loss is the mean over the n + 1 terms i in {1..n, all} of

    1/2 [ NT-Xent(Z_i', Z'') + NT-Xent(Z_i'', Z') ]

so the fused space aligns each modality alone, and the full input, with the other augmentation of
the full input. The representation is the fused CLS output of the full input (before the head).

Choices taken from the public CoMM code (github Duplums/CoMM), the defaults here: the head is
Linear-BN-ReLU-Linear-BN-ReLU-Linear and is applied to each view separately (batch-norm statistics
per view and per augmentation); the fusion block is pre-norm with QuickGELU and a final LayerNorm
on the CLS output, initialised as published; vector modalities are tokenized one token per
feature and image modalities as AlexNet's feature-map cells with a fixed 2-D sin-cos position
embedding (see :mod:`synergy_bench.nn`). This suite's earlier choices stay as options:
``tokenizer: mlp``, ``position: learned``, ``activation: gelu``, ``init: pytorch``. Here all
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
from synergy_bench.nn import VECTOR_TOKENIZERS, make_tokenizer, mlp, n_tokens_for
from synergy_bench.nn.fusion import ACTIVATIONS, FusionTransformer, head_per_view
from synergy_bench.registry import param, register_method


@dataclass
class FusionParams(EncoderParams):
    """Tokenizers and the fusion transformer's shape, on top of the shared encoder sizes."""

    n_tokens: int = param(0, "tokens per modality (L); 0 = one per input feature for vectors under "
                             "tokenizer features, 4 otherwise (images: a grid of AlexNet cells, 36 = "
                             "its 6x6 map at 224 px)", ge=0)
    d_model: int = param(64, "width of a token (the fusion transformer's width)", ge=8)
    tokenizer: str = param("features", "vector modalities: features = one token per encoder output "
                                        "feature, f_j W_j + b_j (published); mlp = L full-width tokens "
                                        "from an MLP", choices=VECTOR_TOKENIZERS)
    position: str = param("published", "position embedding: published = the tokenizers' own (sin-cos "
                                        "for image cells, b_j for features); learned = one learnable "
                                        "vector per modality and slot", choices=("published", "learned"))
    activation: str = param("quick_gelu", "feed-forward activation of the fusion block (published: "
                                          "quick_gelu)", choices=tuple(ACTIVATIONS))
    init: str = param("published", "fusion block initialisation: published (CLIP's scheme, CLS ~ "
                                   "N(0, 1)) or pytorch (Linear default, CLS ~ N(0, 0.02^2))",
                      choices=("published", "pytorch"))
    n_heads: int = param(8, "attention heads of the fusion transformer (must divide d_model)", ge=1)
    n_layers: int = param(1, "layers of the fusion transformer", ge=1)

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model = {self.d_model} is not divisible by n_heads = "
                             f"{self.n_heads}; choose d_model as a multiple of n_heads")

    def token_counts(self, shapes: list[tuple[int, ...]]) -> list[int]:
        """Tokens of each modality (``n_tokens``, or its automatic value where 0)."""
        return [n_tokens_for(s, self.n_tokens, self.tokenizer) for s in shapes]


@register_method
class CoMM(Method):
    """Fused encoder trained so that every single-modality view and the full view align."""

    name = "comm"
    Params = FusionParams
    trains_mask_token = False  # its views drop whole modalities from attention

    def __init__(self, params: FusionParams, shapes: list[tuple[int, ...]], seed: int):
        super().__init__(params, shapes, seed)
        p = params
        self.token_counts = p.token_counts(self.shapes)
        self.tokenizers = nn.ModuleList(
            make_tokenizer(s, p.hidden, n, p.d_model, p.tokenizer, p.position)
            for s, n in zip(self.shapes, self.token_counts))
        self.fusion = FusionTransformer(len(self.shapes), self.token_counts, p.d_model, p.n_heads,
                                        p.n_layers, p.activation, learned_positions=p.position == "learned",
                                        published_init=p.init == "published")
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

    @torch.no_grad()
    def embed_masked(self, xs: list[torch.Tensor], mask_ratio: float, gen: torch.Generator) -> torch.Tensor:
        """The fused embedding of a masked view (B, d): in each sample a random fraction
        ``mask_ratio`` of every modality's tokens is replaced by the mask token, keeping
        floor(L_i (1 - ratio)) of its L_i tokens (InfMasking's masked views). A method that does not
        train its mask token (CoMM, ``trains_mask_token`` False) drops the masked tokens from
        attention instead, as its own modality views do."""
        tokens = self.tokens(xs)
        masks = random_token_masks(self.token_counts, mask_ratio, 1, tokens.shape[0], gen, tokens.device)[0]
        if self.trains_mask_token:
            return self.fusion(tokens, mask=masks)
        return self.fusion(tokens, pad=masks)


def random_token_masks(token_counts: list[int], mask_ratio: float, views: int, batch: int,
                       gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """(views, batch, N) bool, True = token masked: each view, sample and modality i keeps a
    uniformly random subset of floor(L_i (1 - mask_ratio)) of its L_i tokens (a random permutation
    per row; the count floored after a 1e-9 guard so that round-off cannot drop a token)."""
    out = []
    for count in token_counts:
        keep = int(count * (1.0 - mask_ratio) + 1e-9)
        noise = torch.rand(views, batch, count, generator=gen, device=device)
        rank = noise.argsort(dim=-1).argsort(dim=-1)  # (views, batch, L_i): a random permutation
        out.append(rank >= keep)
    return torch.cat(out, dim=-1)
