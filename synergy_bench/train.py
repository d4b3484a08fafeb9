"""The one training loop: every trainable method is fitted here."""
from __future__ import annotations

import math
from typing import Any

import torch

from synergy_bench.data import Generator
from synergy_bench.methods.base import Method
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


def fit(method: Method, generator: Generator, train: dict[str, Any], params: dict[str, Any],
        seed: int) -> list[float]:
    """Fit ``method`` on fresh pairs of views of the training latents.

    Each step draws a batch, renders two independent views of it with ``generator.views`` (same
    latents, new nuisance: the augmentation) and steps the optimiser on ``method.loss`` (under
    bf16 autocast when ``params["amp"]``; CUDA only). Everything stays on the method's device: the
    only host synchronisation is the epoch's mean loss.

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

    Returns
    -------
    list of float
        Mean loss of each epoch.
    """
    device = method.device
    amp = autocast(device, params["amp"])
    gen = torch.Generator(device=device).manual_seed(seed)
    opt_cls = torch.optim.AdamW if params["optimizer"] == "adamw" else torch.optim.Adam
    opt = opt_cls(method.parameters(), lr=params["lr"], weight_decay=params["weight_decay"])
    z, y = train["z"], train["y"]
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
            v1, v2 = generator.views(zb, gen), generator.views(zb, gen)
            with amp:
                loss = method.loss(v1, v2, epoch, epochs, {t: v[idx] for t, v in y.items()})
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        mean = float(total) / steps  # one host sync per epoch
        if not math.isfinite(mean):
            raise TrainingDiverged(f"loss is {mean} at epoch {epoch}; lower train.lr or check the inputs")
        history.append(mean)
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
