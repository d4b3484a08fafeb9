"""MAE: masked reconstruction through the fused encoder (He et al., 2022, as a multimodal baseline).

The masked-autoencoder row of the CoMM and InfMasking Trifeature tables. Here it shares CoMM's
per-modality token encoders and fusion transformer (Dufumier, Castillo-Navarro et al., 2025); the
public code of those papers holds no MAE module, so the choices below are ours:

* **What is masked.** As in InfMasking's masked views, a fraction rho of every modality's L tokens
  (keep floor(L (1 - rho))) is replaced by the fusion transformer's learnable mask token; the same
  sampler as InfMasking draws the masks, T independent masks per sample. The fused CLS vector of the
  masked token set is z_mask.
* **What is reconstructed.** Each modality's *input* x_i, flattened (inputs with more than
  ``max_target`` values are average-pooled first: images spatially, per channel), by a decoder MLP
  per modality from z_mask. No input value belongs to a masked token alone (a vector's tokens come
  from an MLP encoder of the whole vector; an image encoder's tokens pool overlapping receptive
  fields), so the masked part of a modality's input is all of it, and the loss covers every value
  of every modality:

      L = (1 / n) sum_i mean_t || D_i(z_mask,t) - norm(x_i) ||^2 / D_i

  with norm() the per-value standardisation over the batch when ``norm_target`` (the analogue of
  MAE's normalised-pixel target). Both augmentations of a batch are used as 2B samples.
* **Representation.** The fused CLS vector of the unmasked input (as CoMM, as MAE's encoder at
  test time). The decoder reads the CLS vector because the fusion transformer returns only its CLS
  output: the representation itself must hold what is reconstructed.

With rho = 0 nothing is masked and the method is a plain autoencoder through the fused encoder.
The default rho = 0.5 is lower than He et al.'s 0.75, which masks 196 image patches: with few
tokens per modality (L = 4 image cells at the CPU sizes), 0.75 keeps a single token per modality
and training starts much more slowly; raise it with n_tokens (e.g. 36 image tokens).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from synergy_bench.methods.comm import CoMM, FusionParams
from synergy_bench.methods.infmasking import InfMasking, check_keeps_a_token
from synergy_bench.nn import mlp
from synergy_bench.registry import param, register_method


@dataclass
class MAEParams(FusionParams):
    """CoMM's encoder sizes plus masking and reconstruction settings (head_hidden is the decoders'
    hidden width; embed_dim and temperature are unused)."""

    mask_ratio: float = param(0.5, "fraction rho of each modality's tokens replaced by the mask token "
                                   "(He et al.: 0.75 of 196 image patches; see the module docstring)",
                              ge=0.0, lt=1.0)
    num_masks: int = param(1, "masked views T per sample, each reconstructing the input (1 in He et al.)",
                           ge=1)
    norm_target: bool = param(True, "standardise every target value over the batch (mean 0, std 1)")
    max_target: int = param(1024, "most values reconstructed per modality; larger inputs are "
                                  "average-pooled to fit (images spatially, per channel)", ge=1)

    def __post_init__(self):
        super().__post_init__()
        if self.n_tokens:  # automatic counts are checked when the modalities' shapes are known
            check_keeps_a_token(self.n_tokens, self.mask_ratio)


def reconstruction_target(x: torch.Tensor, max_target: int) -> torch.Tensor:
    """The values of a batch (B, *shape) that MAE reconstructs, (B, D') with D' <= max_target.

    The flattened input when it has at most ``max_target`` values per sample. Else images
    (B, C, H, W) are average-pooled to (C, floor(H f), floor(W f)), f = sqrt(max_target / (C H W));
    any other shape (or an image with too many channels) is flattened and average-pooled to
    ``max_target`` values.
    """
    size = x[0].numel()
    if size <= max_target:
        return x.flatten(1)
    if x.ndim == 4:
        c, h, w = x.shape[1:]
        f = math.sqrt(max_target / size)
        out = (max(1, int(h * f)), max(1, int(w * f)))
        if c * out[0] * out[1] <= max_target:
            return F.adaptive_avg_pool2d(x, out).flatten(1)
    return F.adaptive_avg_pool1d(x.flatten(1)[:, None], max_target)[:, 0]


@register_method
class MAE(CoMM):
    """Fused encoder trained to reconstruct every modality's input from masked token sets."""

    name = "mae"
    Params = MAEParams
    sample_masks = InfMasking.sample_masks  # (T, batch, n * L) bool: keep floor(L (1 - rho)) per modality

    def __init__(self, params: MAEParams, shapes: list[tuple[int, ...]], seed: int):
        super().__init__(params, shapes, seed)
        p = params
        for count in self.token_counts:
            check_keeps_a_token(count, p.mask_ratio)
        del self.head  # no projection head: decoders instead
        sizes = [reconstruction_target(torch.zeros(1, *s), p.max_target).shape[1] for s in self.shapes]
        self.decoders = nn.ModuleList(mlp([p.d_model, p.head_hidden, d]) for d in sizes)
        self.init_weights()

    def terms(self, views1, views2, epoch: int, max_epochs: int) -> list[torch.Tensor]:
        """Reconstruction error of each modality (their unweighted mean is the loss)."""
        p = self.params
        xs = [torch.cat([a, b]) for a, b in zip(views1, views2)]  # 2B samples per modality
        tokens = self.tokens(xs)  # (2B, N, d)
        masks = self.sample_masks(tokens.shape[0], tokens.device)  # (T, 2B, N)
        fused = self.fusion(tokens, mask=masks)  # (T, 2B, d): one batched pass
        out = []
        for x, dec in zip(xs, self.decoders):
            target = reconstruction_target(x, p.max_target)  # (2B, D')
            if p.norm_target:
                target = (target - target.mean(0)) / (target.std(0, unbiased=False) + 1e-6)
            pred = dec(fused)  # (T, 2B, D')
            out.append(F.mse_loss(pred, target.expand_as(pred)))
        return out

    def loss(self, views1, views2, epoch, max_epochs, labels=None):
        return torch.stack(self.terms(views1, views2, epoch, max_epochs)).mean()
