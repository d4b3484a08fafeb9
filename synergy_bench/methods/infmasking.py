"""InfMasking: CoMM plus infinitely many masked views in closed form (Wen, Dai et al., 2025).

On top of CoMM's n + 1 terms, each full fused embedding q (of X' and of X'') is contrasted with T
masked fused views of the same sample: in each masked view a fraction rho of every modality's
tokens is replaced by a learnable mask token before fusion, keeping floor(L (1 - rho)) tokens per
modality. The term :func:`~synergy_bench.losses.infmasking_mask_loss` is the Gaussian closed form
of the expectation over masks, weighted by the linear ramp lambda(e) = lambda (e + 1) / E_max. The
loss is the unweighted mean of {L_mask(Z'), L_mask(Z'')} and the n + 1 CoMM terms.

Choices settled from the public InfMasking code (github brightest66/InfMasking, files
``models/inffusion.py``, ``losses/infmasking_loss.py``, ``pl_modules/infmasking.py``):

* The masked views of an anchor come from the same augmentation (q = Z' with masks of X' tokens,
  q = Z'' with masks of X''): the code's default ``cross=False``. ``masked_from="other"`` pairs
  Z' with masks of X'' and Z'' with masks of X' instead.
* Masks act on the encoders' tokens, which are computed once per augmentation and shared with the
  unmasked views; the masked token sets go through the same fusion transformer (CLS token and
  final LayerNorm included) and then through the same projection head with batch-norm statistics
  per masked view (as separate head calls would give), before L2 normalisation. Gradients flow through the masked views and through Sigma.
* Each masked view, sample and modality gets its own uniformly random subset of kept tokens
  (a random permutation per row, keep the first floor(L (1 - rho))); the T views are independent.
  Masks are drawn from ``self.rng``. The count is floored after a 1e-9 guard so that float
  round-off cannot drop a token (10 (1 - 0.9) = 0.999... keeps 1, not 0).
* The mask token replaces the whole token, position/type embedding included (see
  :class:`~synergy_bench.nn.fusion.FusionTransformer`).
* Masked views are drawn only for the full input (the code draws them for every CoMM view but
  reads only the full one).

Here all 2 (n + 1 + T) views of a batch pass through the fusion transformer in one batched call.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from synergy_bench.losses import infmasking_mask_loss
from synergy_bench.methods.comm import CoMM, FusionParams, random_token_masks
from synergy_bench.registry import param, register_method


def check_keeps_a_token(n_tokens: int, mask_ratio: float) -> None:
    """Masking keeps int(L (1 - rho)) tokens of each modality; refuse settings that keep none."""
    if int(n_tokens * (1.0 - mask_ratio) + 1e-9) < 1:
        raise ValueError(f"mask_ratio = {mask_ratio} with n_tokens = {n_tokens} keeps no token of a "
                         f"modality; lower mask_ratio below {1 - 1 / n_tokens:.3g} or raise n_tokens")


@dataclass
class InfMaskingParams(FusionParams):
    """CoMM's parameters plus the masking ones (defaults: the paper's Trifeature settings)."""

    mask_ratio: float = param(0.7, "fraction rho of each modality's tokens masked per view",
                              ge=0.0, lt=1.0)
    num_masks: int = param(6, "number T of masked views per sample", ge=1)
    mask_lambda: float = param(1.0, "lambda, final weight of the covariance term (ramped linearly "
                                    "over epochs)", ge=0.0)
    masked_from: str = param("same", "augmentation the masked views of an anchor come from: the "
                                     "anchor's own (public code) or the other one", choices=("same", "other"))

    def __post_init__(self):
        super().__post_init__()
        if self.n_tokens:  # automatic counts are checked when the modalities' shapes are known
            check_keeps_a_token(self.n_tokens, self.mask_ratio)


@register_method
class InfMasking(CoMM):
    """CoMM with the closed-form infinite-masking term."""

    name = "infmasking"
    Params = InfMaskingParams
    trains_mask_token = True

    def __init__(self, params: InfMaskingParams, shapes: list[tuple[int, ...]], seed: int):
        super().__init__(params, shapes, seed)
        for count in self.token_counts:
            check_keeps_a_token(count, params.mask_ratio)

    def sample_masks(self, batch: int, device: torch.device) -> torch.Tensor:
        """(T, batch, N) bool, True = token replaced by the mask token; each modality i keeps
        floor(L_i (1 - rho)) of its L_i tokens."""
        return random_token_masks(self.token_counts, self.params.mask_ratio, self.params.num_masks, batch,
                                  self.rng, device)

    def terms(self, views1, views2, epoch, max_epochs):
        p, n = self.params, len(self.shapes)
        tokens = self.paired_tokens(views1, views2)  # (2, B, N, d)
        b, dev = tokens.shape[1], tokens.device
        drop = self.fusion.modality_views(dev)  # (n+1, N)
        masks = self.sample_masks(2 * b, dev).unflatten(1, (2, b))  # (T, 2, B, N)
        v = n + 1 + p.num_masks
        pad = torch.cat([drop, drop.new_zeros(p.num_masks, drop.shape[1])])[:, None, None]
        mask = torch.cat([masks.new_zeros(n + 1, 2, b, masks.shape[-1]), masks])  # (V, 2, B, N)
        fused = self.fusion(tokens, pad=pad, mask=mask)  # (V, 2, B, d): one batched pass
        z = self.project(fused.flatten(0, 1)).unflatten(0, (v, 2))  # (V, 2, B, E)
        weight = p.mask_lambda * (epoch + 1) / max_epochs
        comm, masked = z.split([n + 1, p.num_masks])  # (n+1, 2, B, E), (T, 2, B, E)
        src = (0, 1) if p.masked_from == "same" else (1, 0)
        mask_terms = [infmasking_mask_loss(comm[n, a], masked[:, src[a]], weight, p.temperature)
                      for a in range(2)]
        return self.comm_terms(comm) + mask_terms
