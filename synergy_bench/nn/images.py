"""Image encoder: a small AlexNet whose feature maps are read as tokens.

The encoder follows AlexNet (Krizhevsky, Sutskever and Hinton, 2012), the "small AlexNet" of the
Trifeature experiments: five 3x3..11x11 conv + ReLU layers of widths ``width`` x (1/4, 3/4, 3/2,
1, 1) (width 256 gives AlexNet's 64, 192, 384, 256, 256) with 3x3 stride-2 max-pooling after the
first, second and fifth. Its first conv adapts to the image size so that one design serves 16 px
to 224 px: 11x11 stride 4 from 128 px (AlexNet exactly: 224 -> 6x6 feature maps), 5x5 stride 2
from 64 px, 3x3 stride 1 below (32 -> 3x3 feature maps).
"""
from __future__ import annotations

import math

import torch
from torch import nn


class AlexNetFeatures(nn.Module):
    """AlexNet's convolutional trunk at width scale ``width`` (see module docstring).

    x (B, C, H, W) -> feature maps (B, width, h, w); h = w = 6 at 224 px, 3 at 32 px.
    """

    RATIOS = (1 / 4, 3 / 4, 3 / 2, 1, 1)  # AlexNet's 64, 192, 384, 256, 256 over 256

    def __init__(self, in_channels: int, image_size: int, width: int):
        super().__init__()
        w1, w2, w3, w4, w5 = (max(1, round(width * r)) for r in self.RATIOS)
        kernel, stride, pad = (11, 4, 2) if image_size >= 128 else (5, 2, 2) if image_size >= 64 else (3, 1, 1)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, w1, kernel, stride, pad), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(w1, w2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(w2, w3, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w3, w4, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w4, w5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
        self.out_channels = w5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def token_grid(n_tokens: int) -> tuple[int, int]:
    """(rows, cols) with rows * cols = n_tokens, as square as possible (4 -> 2x2, 6 -> 2x3)."""
    rows = max(d for d in range(1, math.isqrt(n_tokens) + 1) if n_tokens % d == 0)
    return rows, n_tokens // rows


def sincos_2d(rows: int, cols: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding, (rows * cols, dim), cells in row-major order.

    The embedding of MoCo v3 (Chen, Xie and He, 2021) that the published patch adapter uses: with
    q = dim / 4 and omega_k = 10000^(-k / q), k = 0..q-1, the cell (r, c) gets

        [sin(r omega), cos(r omega), sin(c omega), cos(c omega)]   (each block q wide).
    """
    if dim % 4:
        raise ValueError(f"d_model = {dim} must be a multiple of 4 for the 2-D sin-cos position "
                         "embedding; choose another d_model or position: learned")
    q = dim // 4
    omega = 10000.0 ** (-torch.arange(q, dtype=torch.float64) / q)  # (q,)
    r = torch.arange(rows, dtype=torch.float64).repeat_interleave(cols)[:, None] * omega  # (R C, q)
    c = torch.arange(cols, dtype=torch.float64).repeat(rows)[:, None] * omega  # (R C, q)
    return torch.cat([r.sin(), r.cos(), c.sin(), c.cos()], dim=1).float()


class ImageTokenizer(nn.Module):
    """Small AlexNet whose feature maps are read as ``n_tokens`` tokens of width ``d_model``.

    x (B, C, H, W) -> AlexNetFeatures -> adaptive average pooling to a rows x cols grid
    (rows cols = n_tokens) -> one linear map per cell (shared) -> tokens (B, n_tokens, d_model),
    in row-major order, plus the fixed :func:`sincos_2d` embedding of the cell when ``sincos``.
    Each token sees one region of the image. At 224 px with n_tokens = 36 the pooling is the
    identity on AlexNet's 6 x 6 maps and this is the published ``PatchedInputAdapter`` (1 x 1
    convolution to the token width, sin-cos position embedding) over the AlexNet trunk.
    """

    def __init__(self, shape: tuple[int, int, int], width: int, n_tokens: int, d_model: int,
                 sincos: bool = True):
        super().__init__()
        channels, height, wide = shape
        grid = token_grid(n_tokens)
        self.features = AlexNetFeatures(channels, min(height, wide), width)
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.proj = nn.Linear(self.features.out_channels, d_model)
        self.register_buffer("pos", sincos_2d(*grid, d_model) if sincos else None, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.pool(self.features(x))  # (B, width, rows, cols)
        tokens = self.proj(f.flatten(2).transpose(1, 2))  # (B, L, d)
        return tokens if self.pos is None else tokens + self.pos


class AlexNetEncoder(nn.Module):
    """The published ``AlexNetEncoder`` with global pooling: one feature vector per image.

    x (B, C, H, W) -> AlexNetFeatures (width scale ``width``) -> adaptive average pooling to
    6 x 6 (torchvision's AlexNet; the identity at 224 px, an upsampling of smaller maps) ->
    flatten -> Linear(6 * 6 * width', out_dim), width' the trunk's last width.
    """

    GRID = 6

    def __init__(self, shape: tuple[int, int, int], width: int, out_dim: int):
        super().__init__()
        channels, height, wide = shape
        self.features = AlexNetFeatures(channels, min(height, wide), width)
        self.pool = nn.AdaptiveAvgPool2d(self.GRID)
        self.fc = nn.Linear(self.features.out_channels * self.GRID ** 2, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))  # (B, out_dim)
