"""A method of one's own, defined outside the package: CoMM with a heavier full-view term.

CoMM's loss is the plain mean of n + 1 alignment terms, one per modality alone and one for the
fused view of all modalities. Synergy is visible only in the fused view, so this variant weights
that term by w:  L = (sum_i L_i + w L_all) / (n + w);  w = 1 is CoMM.

    synergy-bench run quick --plugin examples/my_method.py --set "methods=[comm,infmasking,my_method]"
    synergy-bench check examples/my_method.py
"""
from dataclasses import dataclass

import torch

import synergy_bench as sb

CoMM = sb.get_method("comm")


@dataclass
class Params(CoMM.Params):
    fused_weight: float = sb.param(3.0, "weight w of the full-view term (1 = CoMM)", ge=0.0)


@sb.register_method
class FusedWeightedCoMM(CoMM):
    """CoMM with the full-view alignment term weighted by w."""

    name = "my_method"
    Params = Params

    def loss(self, views1, views2, epoch, max_epochs, labels=None):
        *unimodal, fused = self.terms(views1, views2, epoch, max_epochs)
        w = self.params.fused_weight
        return (torch.stack(unimodal).sum() + w * fused) / (len(unimodal) + w)
