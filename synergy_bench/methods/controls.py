"""Untrained control rows: what a probe reads without any representation learning.

* ``raw``: the inputs themselves, each modality flattened and concatenated. It has no parameters
  (and no buffers); it records the device it is moved to so that ``.to(device)``, ``device`` and
  ``rng`` behave as for any method.
* ``random``: the CoMM fused encoder at its seeded initialisation, never trained; the
  representation is its CLS output. With the same seed it is exactly CoMM before training.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from synergy_bench.methods.base import EncoderParams, Method
from synergy_bench.methods.comm import CoMM
from synergy_bench.registry import register_method


@dataclass
class RawParams(EncoderParams):
    """No parameters of its own; the encoder sizes are ignored."""


@register_method
class Raw(Method):
    """Representation = concatenation of the flattened raw modalities."""

    name = "raw"
    Params = RawParams
    trainable = False

    def __init__(self, params: RawParams, shapes: list[tuple[int, ...]], seed: int):
        super().__init__(params, shapes, seed)
        self._device = torch.device("cpu")
        self.init_weights()

    def _apply(self, fn, recurse=True):
        # .to / .cuda / .cpu act on tensors only: follow them on an empty probe tensor.
        self._device = fn(torch.empty(0, device=self._device)).device
        return super()._apply(fn, recurse)

    @property
    def device(self) -> torch.device:
        return self._device

    def loss(self, views1, views2, epoch, max_epochs, labels=None):
        raise TypeError(f"{self.name} is a control with nothing to train (trainable = False)")

    def embed(self, xs):
        return torch.cat([x.flatten(1) for x in xs], dim=1)  # (B, sum of input sizes)


@register_method
class RandomInit(CoMM):
    """Representation = CLS output of the untrained CoMM fused encoder."""

    name = "random"
    trainable = False

    def loss(self, views1, views2, epoch, max_epochs, labels=None):
        raise TypeError(f"{self.name} is a control with nothing to train (trainable = False)")
