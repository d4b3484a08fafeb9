"""The one training loop: every trainable method is fitted here."""
from __future__ import annotations

from collections.abc import Callable

import math
from typing import Any

import torch

from synergy_bench.data import Generator
from synergy_bench.methods.base import VIEW_KINDS, Method
from synergy_bench.nn import decay_groups
from synergy_bench.registry import UserError


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def check_amp(device: str | torch.device, amp: bool) -> None:
    """Refuse ``train.amp`` off CUDA (bf16 autocast on CPU would only change the numbers)."""
    if amp and torch.device(device).type != "cuda":
        raise UserError(f"train.amp = true needs a CUDA device (this run is on {device}); "
                        "use --device cuda or set train.amp=false")


def autocast(device: torch.device, amp: bool) -> torch.autocast:
    """bf16 autocast on CUDA when ``amp`` (``train.amp``); refused on other devices."""
    check_amp(device, amp)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)


def draw_views(method: Method, generator: Generator, zb: dict[str, torch.Tensor],
               x: list[torch.Tensor], idx: torch.Tensor, gen: torch.Generator) -> tuple[tuple, dict]:
    """The positional view sets and keyword arguments of ``method.loss`` for one batch, as
    :attr:`Method.views <synergy_bench.methods.base.Method.views>` asks for them.

    ``strong``: two ``generator.views``; ``weak``: one ``generator.weak_views`` (views2 None);
    ``strong+weak``: two views and ``weak=`` one weak view; ``plain+strong``: the batch's own
    samples (rows ``idx`` of the training inputs ``x``, a list over modalities) and one view.
    """
    kind = method.views
    weak = generator.weak_views
    if kind == "strong":
        return (generator.views(zb, gen), generator.views(zb, gen)), {}
    if kind == "weak":
        return (weak(zb, gen), None), {}
    if kind == "strong+weak":
        return (generator.views(zb, gen), generator.views(zb, gen)), {"weak": weak(zb, gen)}
    if kind == "plain+strong":
        return ([m[idx] for m in x], generator.views(zb, gen)), {}
    raise ValueError(f"method {method.name} asks for views {kind!r}; expected one of {VIEW_KINDS}")


def make_optimizer(method: Method, params: dict[str, Any]) -> torch.optim.Optimizer:
    """The optimiser of ``method.optimizer_settings(params)``: AdamW (decoupled decay) or Adam (L2).

    Weight decay acts on weights only, not on biases, normalisation parameters or scalars
    (:func:`~synergy_bench.nn.decay_groups`, the rule of the public CoMM and InfMasking code),
    unless ``params["decay"]`` is ``all``.
    """
    settings = method.optimizer_settings(params)
    opt_cls = torch.optim.AdamW if settings["optimizer"] == "adamw" else torch.optim.Adam
    wd = settings["weight_decay"]
    groups = decay_groups(method, wd) if settings["decay"] == "weights" else method.parameters()
    return opt_cls(groups, lr=settings["lr"], weight_decay=wd)


def fit(method: Method, generator: Generator, train: dict[str, Any], params: dict[str, Any],
        seed: int, on_epoch: Callable[[int], None] | None = None) -> list[float]:
    """Fit ``method`` on fresh views of the training latents.

    Each step draws a batch, renders the views ``method.views`` asks for (:func:`draw_views`;
    by default two independent ``generator.views`` of the batch: same latents, new nuisance, the
    augmentation), steps the optimiser (:func:`make_optimizer`) on ``method.loss`` (under bf16
    autocast when ``params["amp"]``; CUDA only) and calls ``method.after_step()``. Everything
    stays on the method's device: the only host synchronisation is the epoch's mean loss.

    Parameters
    ----------
    method : Method
        Already on its device.
    generator : Generator
        Renders the views.
    train : dict
        The training sample dict as tensors on the method's device (``data.to_torch``).
    params : dict
        ``TrainParams`` as a dict.
    seed : int
        Seeds the batch order and the views.
    on_epoch : callable, optional
        Called with the epoch's index after each epoch, the method in eval mode (e.g. to probe it).

    Returns
    -------
    list of float
        Mean loss of each epoch.
    """
    device = method.device
    amp = autocast(device, params["amp"])
    gen = torch.Generator(device=device).manual_seed(seed)
    opt = make_optimizer(method, params)
    z, x, y = train["z"], train["x"], train["y"]
    n = next(iter(z.values())).shape[0]
    bs = min(params["batch_size"], n)
    epochs = params["epochs"]
    history = []
    method.prepare(train)
    method.train()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen, device=device)
        total = torch.zeros((), device=device)
        steps = n // bs  # drop the last partial batch: contrastive losses need full batches
        for step in range(steps):
            idx = order[step * bs:(step + 1) * bs]
            zb = {f: v[idx] for f, v in z.items()}
            views, extra = draw_views(method, generator, zb, x, idx, gen)
            with amp:
                loss = method.loss(*views, epoch, epochs, {t: v[idx] for t, v in y.items()}, **extra)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            method.after_step()
            total += loss.detach()
        mean = float(total) / steps  # one host sync per epoch
        if not math.isfinite(mean):
            raise TrainingDiverged(f"loss is {mean} at epoch {epoch}; lower train.lr or check the inputs")
        history.append(mean)
        if on_epoch is not None:
            method.eval()
            on_epoch(epoch)
            method.train()
    method.eval()
    return history


@torch.no_grad()
def embed(method: Method, xs: list[torch.Tensor], batch_size: int = 1024, amp: bool = False) -> torch.Tensor:
    """Embed samples in batches (eval mode, no grad, bf16 autocast if ``amp``); (N, D) float32 on the host."""
    method.eval()
    n = xs[0].shape[0]
    with autocast(xs[0].device, amp):
        out = [method.embed([x[i:i + batch_size] for x in xs]) for i in range(0, n, batch_size)]
    return torch.cat(out).float().cpu()  # one copy to the host
