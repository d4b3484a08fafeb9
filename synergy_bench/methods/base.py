"""The contract every method follows.

A method knows nothing of generators. It is built from its parameters, the per-sample shapes of
the modalities and an integer seed; the one training loop (``synergy_bench.train``) feeds it the
views of a batch that :attr:`Method.views` asks for (by default two augmented views) and steps
its optimiser on :meth:`Method.loss`; afterwards :meth:`Method.embed` turns samples into the
representation that the probes judge.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from synergy_bench.nn import seeded_init
from synergy_bench.registry import param


VIEW_KINDS = ("strong", "weak", "strong+weak", "plain+strong")


@dataclass
class EncoderParams:
    """Encoder sizes shared by every method (override per method in a spec)."""

    hidden: int = param(256, "hidden width of the per-modality MLP encoders (images: the AlexNet width scale, 256 = AlexNet)", ge=1)
    head_hidden: int = param(256, "hidden width of the projection head (512 in the CoMM and InfMasking papers)", ge=1)
    embed_dim: int = param(128, "output size of the projection head (the contrastive space)", ge=1)
    temperature: float = param(0.1, "softmax temperature tau of the contrastive losses", gt=0)


class Method(nn.Module):
    """Base class: subclasses set ``name`` and ``Params`` and implement ``loss`` and ``embed``.

    Parameters
    ----------
    params : Params
        The method's parameter dataclass.
    shapes : list of tuple
        Per-sample shape of each modality, e.g. ``[(32,), (32,)]``.
    seed : int
        Seeds the initial weights (now) and the method's own sampling (``self.rng``).
    """

    name: ClassVar[str] = "base"
    Params: ClassVar[type] = EncoderParams
    trainable: ClassVar[bool] = True  # False for control rows that are probed untrained
    views: ClassVar[str] = "strong"
    """What the training loop passes to :meth:`loss` (one of :data:`VIEW_KINDS`):

    * ``strong``: views1, views2 = two augmented views (``generator.views``);
    * ``weak``: views1 = one weak view (``generator.weak_views``), views2 = None;
    * ``strong+weak``: two augmented views and ``weak=`` one weak view;
    * ``plain+strong``: views1 = the training samples themselves (un-augmented), views2 = one
      augmented view.

    A subclass may make it a property of its parameters."""

    def __init__(self, params, shapes: list[tuple[int, ...]], seed: int):
        super().__init__()
        self.params = params
        self.shapes = [tuple(s) for s in shapes]
        self.seed = int(seed)
        self._rng: torch.Generator | None = None

    def init_weights(self) -> Method:
        """Call at the end of a subclass ``__init__``: seeds every weight from ``self.seed``."""
        return seeded_init(self, torch.Generator().manual_seed(self.seed))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def rng(self) -> torch.Generator:
        """A generator on the model's device for sampling inside ``loss`` (masks, noise)."""
        if self._rng is None or self._rng.device != self.device:
            self._rng = torch.Generator(device=self.device).manual_seed(self.seed + 1)
        return self._rng

    def prepare(self, train: dict) -> None:
        """Called once by the training loop before the first step with the whole training sample
        (tensors on the method's device): checks that read all labels belong here, not in
        :meth:`loss`, which should never wait for the device. Default: nothing."""

    def loss(self, views1: list[torch.Tensor], views2: list[torch.Tensor] | None, epoch: int,
             max_epochs: int, labels: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Scalar training loss for the views of one batch (lists over modalities) that
        :attr:`views` asks for. Any method must also accept two augmented views (the contract
        check calls ``loss(views1, views2, ...)``)."""
        raise NotImplementedError

    def optimizer_settings(self, train: dict) -> dict:
        """The optimiser settings (``optimizer``, ``lr``, ``weight_decay``) this method trains
        with; by default the spec's ``train`` block. A method whose published code fixes its own
        optimiser returns those settings instead (named in its parameters)."""
        return train

    def after_step(self) -> None:
        """Called by the training loop after every optimiser step (e.g. to clip a parameter).
        Default: nothing."""

    def embed(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """Representation (B, D) of a batch of samples; called in eval mode under no_grad."""
        raise NotImplementedError
