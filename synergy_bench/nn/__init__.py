"""Neural building blocks shared by the methods: seeded initialisation, MLPs, token encoders."""
from __future__ import annotations

import math

import torch
from torch import nn


def seeded_init(module: nn.Module, gen: torch.Generator) -> nn.Module:
    """Re-initialise every parameter of ``module`` from ``gen`` (no global RNG).

    Matrices (ndim >= 2) get PyTorch's default Linear scheme, U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    (kaiming_uniform with a = sqrt(5)); vectors named ``bias`` get zeros, LayerNorm-style ``weight``
    vectors ones; free tokens (CLS, mask) ~ N(0, 0.02^2). Parameters are visited in a fixed order,
    so the same generator state gives the same model.
    """
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if p.ndim >= 2 and "token" not in leaf:
                nn.init.kaiming_uniform_(p, a=math.sqrt(5), generator=gen)
            elif "token" in leaf:
                nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04, generator=gen)
            elif leaf == "weight" or leaf.endswith("_weight"):
                nn.init.ones_(p)
            else:
                nn.init.zeros_(p)
    return module


def mlp(sizes: list[int], act: type[nn.Module] = nn.ReLU, norm: bool = False) -> nn.Sequential:
    """Linear layers of the given sizes with ``act`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            if norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(act())
    return nn.Sequential(*layers)


class VectorTokenizer(nn.Module):
    """MLP encoder for a vector modality whose output is read as ``n_tokens`` tokens.

    x (B, D) -> MLP(D, hidden, n_tokens * d_model) -> tokens (B, n_tokens, d_model).
    Reading the output as tokens lets masking remove a fraction of a modality's content.
    """

    def __init__(self, in_dim: int, hidden: int, n_tokens: int, d_model: int):
        super().__init__()
        self.n_tokens, self.d_model = n_tokens, d_model
        self.net = mlp([in_dim, hidden, hidden, n_tokens * d_model])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(x.shape[0], self.n_tokens, self.d_model)  # (B, L, d)


def make_tokenizer(shape: tuple[int, ...], hidden: int, n_tokens: int, d_model: int) -> nn.Module:
    """The token encoder for a modality of per-sample ``shape``: vectors (D,) get an MLP, images
    (C, H, W) a small AlexNet (:class:`~synergy_bench.nn.images.ImageTokenizer`, ``hidden`` its
    width scale: 256 gives AlexNet's widths)."""
    if len(shape) == 1:
        return VectorTokenizer(shape[0], hidden, n_tokens, d_model)
    if len(shape) == 3:
        from synergy_bench.nn.images import ImageTokenizer

        return ImageTokenizer(shape, hidden, n_tokens, d_model)
    raise ValueError(f"no encoder for modality shape {shape}: only vectors (D,) and images (C, H, W) "
                     "are supported")
