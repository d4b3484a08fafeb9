r"""The masked-view probe: how much of each task a fused method's embedding of a *masked* view
still holds.

InfMasking (Wen, Dai et al., 2025) trains each full fused embedding to agree with embeddings of
views in which a fraction rho of every modality's tokens is masked. Whether that term can teach
synergy depends on how much a masked view still carries: a synergistic label needs both
modalities' factors, so if masking rho of the tokens removes them, the masked view holds little
about S; if every token is computed from the whole input, a masked view is nearly the full view.
This measure embeds the probe and test samples with a fresh random mask per sample
(:meth:`synergy_bench.methods.comm.CoMM.embed_masked`, ``mask_ratio``) and scores a probe per task
on those embeddings, exactly as the ``probe`` measure does on the full ones (same rows, metrics
and diagnostics; the exact PID of the predictions is off by default).

It measures fused methods only (those with ``embed_masked``: CoMM, InfMasking and their
subclasses, and the ``random`` control); other methods get no rows.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from synergy_bench.measures.base import Context
from synergy_bench.measures.probe import Probe, ProbeParams
from synergy_bench.registry import param, register_measure


@dataclass
class MaskedProbeParams(ProbeParams):
    """The probe's parameters and the masking of the views it reads."""

    mask_ratio: float = param(0.7, "fraction of every modality's tokens masked in each sample (InfMasking's "
                                   "default 0.7)", ge=0, lt=1)
    prediction_pid: bool = param(False, "add the exact PID of the probe's predictions (pred_* rows)")


@register_measure
class MaskedProbe(Probe):
    """Probes per task on the embeddings of randomly masked views (see module docstring)."""

    name = "masked_probe"
    Params = MaskedProbeParams

    def __call__(self, ctx: Context) -> list[dict[str, Any]]:
        method = ctx.method
        if method is None or not hasattr(method, "embed_masked"):
            return []

        def masked(split: str) -> np.ndarray:
            xs = ctx.inputs(split)
            gen = torch.Generator(device=xs[0].device).manual_seed(ctx.seed("masked", split) % 2 ** 62)
            method.eval()
            out = [method.embed_masked([x[i:i + 1024] for x in xs], self.params.mask_ratio, gen)
                   for i in range(0, xs[0].shape[0], 1024)]
            return torch.cat(out).float().cpu().numpy()

        return super().__call__(dataclasses.replace(ctx, embed=masked, _cache={}))
