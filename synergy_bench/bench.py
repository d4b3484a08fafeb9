r"""Speed benchmarks: the InfMasking mask term and training step against plain references.

``synergy-bench bench loss|train|pid|all`` times each comparison in one process, after a warm-up,
as the median of ``repeats`` calls, and writes one CSV per comparison with the machine it ran on.

* **loss** — :func:`~synergy_bench.losses.infmasking_mask_loss` (Wen, Dai et al., 2025), which
  reads :math:`q^\top\Sigma q = \frac1T\sum_t (q\cdot z_t - q\cdot\mu)^2` off the similarities it
  needs anyway, against :func:`mask_loss_covariance`, the same formula with the covariance
  :math:`\Sigma` formed per sample as an E x E matrix (everything else vectorised the same way),
  forward + backward. Peak memory of both at a larger E: on CUDA the allocator's
  ``max_memory_allocated``; on CPU, where torch's allocations are invisible to ``tracemalloc``,
  the growth of the peak resident set of a fresh process (Linux ``/proc/self/status`` VmHWM, reset
  to the current resident set just before the call) — an upper bound on the tensors' bytes (it
  includes allocator slack).
* **train** — one InfMasking training step (forward + backward + optimiser step) as implemented
  (all 2 (n + 1 + T) views through the fusion transformer in one batched call) against the same
  model with every view a separate fusion call (:class:`PerViewFusion`), in two versions: each
  call through the general transformer layer (``forward_layers``: what one writes without
  batching views), and each call through the one-layer kernel (``forward_one_layer``: the
  batched path's own arithmetic, so only the sharing across views differs). All start from the
  same weights and masks, so their losses must agree. Also one epoch of the ``quick`` spec's
  InfMasking run through the one training loop, all three ways.
* **pid** — :mod:`synergy_bench.pid.bench`: the exact BROJA solver against the conic formulation.
"""
from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synergy_bench.timing import machine, median_times, torch_threads

BENCHMARKS = ("loss", "train", "pid")


# --- shared helpers ---------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _row(what: str, case: str, measure: str, ours: float, reference: float, diff: float | None,
         repeats: int, how: str = "", cpu: tuple[float, float] | None = None) -> dict[str, Any]:
    def ratio(a: float, b: float) -> float:
        return b / a if a > 0 else float("nan")

    return {"benchmark": what, "case": case, "measure": measure, "ours": ours, "reference": reference,
            "ratio": ratio(ours, reference), "ours_cpu_s": cpu and cpu[0], "reference_cpu_s": cpu and cpu[1],
            "cpu_ratio": cpu and ratio(*cpu), "max_abs_diff": diff, "repeats": repeats, "how": how}


# --- loss -------------------------------------------------------------------------------------

def mask_loss_covariance(anchor: torch.Tensor, masked: torch.Tensor, weight: float | torch.Tensor,
                         temperature: float) -> torch.Tensor:
    r"""The InfMasking mask term with the covariance formed per sample (the reference).

    The formula of :func:`~synergy_bench.losses.infmasking_mask_loss`, term by term:
    :math:`\mu = \frac1T\sum_t z_t`, :math:`\Sigma = \frac1T\sum_t (z_t-\mu)(z_t-\mu)^\top` as a
    (B, E, E) tensor, :math:`\tilde\Sigma = \lambda\Sigma/\tau`, then
    :math:`\mathrm{pos} = q\cdot\mu + \frac12 q^\top\tilde\Sigma q` and the same negatives. Memory
    O(B E^2) against O(T B^2 + T B E) for the loss as implemented.
    """
    t, b, _ = masked.shape
    mu = masked.mean(0)  # (B, E)
    centred = masked - mu  # (T, B, E)
    sigma = torch.einsum("tbe,tbf->bef", centred, centred) / t  # (B, E, E)
    quad = weight / temperature * torch.einsum("be,bef,bf->b", anchor, sigma, anchor)  # (B,)
    pos = (anchor * mu).sum(-1) + 0.5 * quad  # (B,)
    same_sample = torch.eye(b, dtype=torch.bool, device=anchor.device)  # (B, B): n == b, not a negative
    neg_masked = torch.einsum("be,tne->btn", anchor, masked).masked_fill(same_sample[:, None], float("-inf"))
    neg_anchor = (anchor @ anchor.T).masked_fill(same_sample, float("-inf"))  # (B, B)
    logits = torch.cat([pos[:, None], neg_masked.reshape(b, t * b), neg_anchor], 1) / temperature
    return (torch.logsumexp(logits, 1) - logits[:, 0] + 0.5 * quad / temperature).mean()


def _unit(shape: tuple[int, ...], gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return F.normalize(torch.randn(shape, generator=gen, device=device), dim=-1).requires_grad_()


def _loss_inputs(b: int, e: int, t: int, seed: int, device: torch.device):
    gen = torch.Generator(device=device).manual_seed(seed)
    return _unit((b, e), gen, device), _unit((t, b, e), gen, device)


def _forward_backward(fn: Callable, anchor: torch.Tensor, masked: torch.Tensor, weight: float,
                      temperature: float):
    anchor.grad = masked.grad = None
    loss = fn(anchor, masked, weight, temperature)
    loss.backward()
    _sync(anchor.device)
    return loss.detach(), anchor.grad, masked.grad


def _loss_fn(kind: str) -> Callable:
    from synergy_bench.losses import infmasking_mask_loss

    return infmasking_mask_loss if kind == "ours" else mask_loss_covariance


def _status_bytes(key: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (Linux) in bytes."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def _peak_rss_growth(kind: str, b: int, e: int, t: int, seed: int, threads: int) -> int:
    """Bytes the peak resident set of this (fresh) process grows by during one forward + backward.

    The high-water mark ``VmHWM`` is reset to the current resident set first (``clear_refs``), so
    the imports and the inputs do not count.
    """
    torch.set_num_threads(threads)
    _forward_backward(_loss_fn(kind), *_loss_inputs(2, 2, 2, seed, torch.device("cpu")), 1.0, 0.1)  # warm-up
    anchor, masked = _loss_inputs(b, e, t, seed, torch.device("cpu"))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS to the current RSS
    before = _status_bytes("VmRSS")
    _forward_backward(_loss_fn(kind), anchor, masked, 1.0, 0.1)
    return max(0, _status_bytes("VmHWM") - before)


def peak_memory(kind: str, b: int, e: int, t: int, seed: int, device: torch.device,
                threads: int) -> tuple[int, str]:
    """Peak bytes of one forward + backward of the ``kind`` ('ours' or 'reference') mask loss."""
    if device.type == "cuda":
        anchor, masked = _loss_inputs(b, e, t, seed, device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        _forward_backward(_loss_fn(kind), anchor, masked, 1.0, 0.1)
        return torch.cuda.max_memory_allocated(device) - start, "cuda max_memory_allocated growth"
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        growth = pool.submit(_peak_rss_growth, kind, b, e, t, seed, threads).result()
    return growth, "peak RSS growth (Linux VmHWM) of a fresh process, an upper bound"


def bench_loss(repeats: int = 3, seed: int = 0, device: str = "cpu", batch: int = 256,
               embed_dim: int = 256, num_masks: int = 6, memory_embed_dim: int | None = 1024,
               threads: int = 1) -> list[dict[str, Any]]:
    """Time the mask term against :func:`mask_loss_covariance`; peak memory at ``memory_embed_dim``.

    Returns
    -------
    list of dict
        A ``seconds`` row (median forward + backward; ``max_abs_diff`` over the loss and both
        gradients) and, unless ``memory_embed_dim`` is None, a ``peak_bytes`` row.
    """
    dev = torch.device(device)
    weight, tau = 1.0, 0.1
    with torch_threads(threads):
        anchor, masked = _loss_inputs(batch, embed_dim, num_masks, seed, dev)
        calls = [(anchor, masked, weight, tau)] * repeats
        case = f"B={batch} E={embed_dim} T={num_masks}"
        (t_ours, c_ours, outs), (t_ref, c_ref, refs) = median_times(
            [partial(_forward_backward, _loss_fn(k)) for k in ("ours", "reference")], calls, warmup=1)
        diff = max(float((x - y).abs().max()) for x, y in zip(outs[-1], refs[-1]))
        rows = [_row("loss", case, "seconds forward+backward", t_ours, t_ref, diff, repeats,
                     "median after one warm-up call", cpu=(c_ours, c_ref))]
        if memory_embed_dim is not None:
            mem = [peak_memory(k, batch, memory_embed_dim, num_masks, seed, dev, threads)
                   for k in ("ours", "reference")]
            rows.append(_row("loss", f"B={batch} E={memory_embed_dim} T={num_masks}",
                             "peak bytes forward+backward", mem[0][0], mem[1][0], None, 1, mem[0][1]))
        return [{**r, **machine(device)} for r in rows]


# --- train ------------------------------------------------------------------------------------

class PerViewFusion(nn.Module):
    """The fusion transformer called once per view (the reference for the batched call).

    Wraps a :class:`~synergy_bench.nn.fusion.FusionTransformer` (same weights): a call whose
    tokens, ``pad`` and ``mask`` broadcast to leading shape (*views, B) runs the transformer on
    each (B, N, d) slice separately and stacks the results — the same numbers as one batched call,
    with one call per view. ``general`` sends every call through ``forward_layers`` (the general
    pre-norm layer) instead of the one-layer kernel.
    """

    def __init__(self, fusion: nn.Module, general: bool = False):
        super().__init__()
        self.inner, self.general = fusion, general

    def modality_views(self, device=None) -> torch.Tensor:
        return self.inner.modality_views(device)

    def forward(self, tokens: torch.Tensor, pad: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        d = tokens.shape[-1]
        given = [m for m in (pad, mask) if m is not None]
        lead = torch.broadcast_shapes(tokens.shape[:-2], *(m.shape[:-1] for m in given))
        call = self.inner.forward_layers if self.general else self.inner
        if len(lead) <= 1:
            return call(tokens, pad, mask)
        out = [call(_at(tokens, i, lead, 2), _at(pad, i, lead, 1), _at(mask, i, lead, 1))
               for i in itertools.product(*map(range, lead[:-1]))]  # one call per view: (B, d)
        return torch.stack(out).reshape(*lead, d)


def _at(x: torch.Tensor | None, index: tuple[int, ...], lead: torch.Size, tail: int) -> torch.Tensor | None:
    """The slice of ``x`` (leading dims broadcastable to ``lead``, then ``tail`` dims) at ``index``
    over ``lead[:-1]``, without materialising the broadcast."""
    if x is None:
        return None
    x = x.reshape((1,) * (len(lead) + tail - x.ndim) + x.shape)
    for i in index:
        x = x[i if x.shape[0] > 1 else 0]
    return x


def per_view(method: nn.Module, general: bool = False) -> nn.Module:
    """The same method (same weights, same mask generator) with its fusion called per view."""
    method.fusion = PerViewFusion(method.fusion, general)
    return method


# the references of the train benchmark: (label, wrapper of a freshly built method)
REFERENCES = (("per view, general layer", partial(per_view, general=True)),
              ("per view, one-layer kernel", per_view))
WRAPPERS = (lambda m: m, *(w for _, w in REFERENCES))  # ours (as built) first


def _infmasking(params: dict[str, Any], shapes: list[tuple[int, ...]], seed: int, device: torch.device):
    from synergy_bench.registry import get_method, make_params

    cls = get_method("infmasking")
    return cls(make_params(cls, params, "methods[infmasking]"), shapes, seed).to(device)


def _step_times(params: dict[str, Any], batch: int, seed: int, device: torch.device, repeats: int,
                lr: float) -> list[tuple[float, float, float]]:
    """(median wall s, median CPU s, |loss difference from ours| at step 1) of one training step,
    for each of :data:`WRAPPERS`: the batched model, then each reference."""
    from synergy_bench.registry import get_generator, make_params

    gcls = get_generator("latent")
    generator = gcls(make_params(gcls, {}, "generator[latent]"), seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    k = generator.params.k
    z = {f: torch.randint(0, k, (batch,), generator=gen, device=device) for f in ("r", "u1", "u2", "s1", "s2")}
    v1, v2 = generator.views(z, gen), generator.views(z, gen)
    shapes = [tuple(x.shape[1:]) for x in v1]
    steps = []
    for wrap in WRAPPERS:
        model = wrap(_infmasking(params, shapes, seed, device)).train()
        steps.append(partial(_step, model, torch.optim.AdamW(model.parameters(), lr=lr), v1, v2))
    first = [step() for step in steps]  # the warm-up step, from the shared initial weights and masks
    return [(wall, cpu, float((loss - first[0]).abs()))
            for (wall, cpu, _), loss in zip(median_times(steps, [()] * repeats), first)]


def _step(model: nn.Module, opt: torch.optim.Optimizer, v1: list[torch.Tensor],
          v2: list[torch.Tensor]) -> torch.Tensor:
    """One training step (forward, backward, optimiser step); the loss."""
    loss = model.loss(v1, v2, 0, 1)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    _sync(loss.device)
    return loss.detach()


def _quick_infmasking_run(device: str, sets: Sequence[str] = ()):
    """The first InfMasking run of the ``quick`` spec (with ``--set`` style overrides)."""
    from synergy_bench.spec import expand, load, resolve

    runs = [r for r in expand(resolve({**load("quick", list(sets)), "device": device})) if r.method == "infmasking"]
    return runs[0]


def _epoch_times(device: str, repeats: int, sets: Sequence[str] = ()) -> tuple[list, str]:
    """:func:`_step_times` for one epoch of the quick spec's InfMasking run (the difference is
    that of the epoch's mean loss), and a description of the run."""
    from synergy_bench.data import to_torch
    from synergy_bench.runner import build_generator, build_method
    from synergy_bench.train import fit

    run = _quick_infmasking_run(device, sets)
    generator = build_generator(run)
    sample = generator.sample("train", np.random.default_rng(run.data_seed))
    train = to_torch(sample, device)
    shapes = [x.shape[1:] for x in sample["x"]]
    params = {**run.train, "epochs": 1}

    def epoch(wrap: Callable) -> float:
        return fit(wrap(build_method(run, shapes, device)), generator, train, params, run.method_seed)[0]

    epochs = [partial(epoch, w) for w in WRAPPERS]
    times = median_times(epochs, [()] * repeats, warmup=1)
    case = (f"quick spec {run.method_label}: {sample['x'][0].shape[0]} samples, "
            f"batch {run.train['batch_size']}")
    return [(wall, cpu, abs(out[0] - times[0][2][0])) for wall, cpu, out in times], case


def bench_train(repeats: int = 3, seed: int = 0, device: str = "cpu", sizes: Sequence[tuple] | None = None,
                epoch: bool = True, epoch_sets: Sequence[str] = (), threads: int = 1) -> list[dict[str, Any]]:
    """Time InfMasking's batched views against one fusion call per view (each of :data:`REFERENCES`).

    Parameters
    ----------
    sizes : sequence of (label, batch, method params)
        Step configurations; default the quick sizes (batch 128, default encoder) and
        embed_dim 256, T = 6, batch 256.
    epoch : bool
        Also time one epoch of the quick spec's InfMasking run.
    epoch_sets : sequence of str
        ``key=value`` overrides of the quick spec for that run.

    Returns
    -------
    list of dict
        One ``seconds`` row per configuration and reference (``max_abs_diff``: |loss difference|
        of the first step, or of the epoch's mean loss).
    """
    from synergy_bench.methods.infmasking import InfMaskingParams

    if sizes is None:
        sizes = (("quick sizes", 128, {}), ("large", 256, {"embed_dim": 256, "num_masks": 6}))
    dev = torch.device(device)
    rows = []
    with torch_threads(threads):
        def add(case: str, measure: str, times: list, how: str) -> None:
            (ours, ours_cpu, _), *refs = times
            for (name, _), (ref, ref_cpu, diff) in zip(REFERENCES, refs):
                rows.append(_row("train", f"{case}; reference: {name}", measure, ours, ref, diff,
                                 repeats, how, cpu=(ours_cpu, ref_cpu)))

        for label, batch, params in sizes:
            full = {**{f.name: f.default for f in dataclasses.fields(InfMaskingParams)}, **params}
            case = (f"{label}: step, B={batch} E={full['embed_dim']} d={full['d_model']} "
                    f"T={full['num_masks']}")
            add(case, "seconds per step", _step_times(params, batch, seed, dev, repeats, lr=1e-3),
                "median after one warm-up step")
        if epoch:
            times, case = _epoch_times(device, repeats, epoch_sets)
            add(case, "seconds per epoch", times,
                "median after one warm-up epoch; includes building the model")
        return [{**r, **machine(device)} for r in rows]


# --- all --------------------------------------------------------------------------------------

def bench_pid(repeats: int = 3, seed: int = 0, **_: Any) -> list[dict[str, Any]]:
    """The PID solver benchmark (:func:`synergy_bench.pid.bench.run_pid_bench`), machine added."""
    from synergy_bench.pid.bench import run_pid_bench

    with torch_threads(1):
        return [{**r, **machine("cpu")} for r in run_pid_bench(repeats=repeats, seed=seed)]


RUNNERS: dict[str, Callable[..., list[dict[str, Any]]]] = {"loss": bench_loss, "train": bench_train,
                                                           "pid": bench_pid}


def _fmt(v: Any, spec: str, width: int) -> str:
    return f"{v:{width}{spec}}" if v is not None else f"{'-':>{width}}"


def format_rows(what: str, rows: list[dict[str, Any]]) -> str:
    """The rows of one benchmark as a plain-text table, with the machine below."""
    if what == "pid":
        from synergy_bench.pid.bench import format_table

        lines = format_table(rows).splitlines()
    else:
        ours, ref = ("batched", "per view") if what == "train" else ("ours", "covariance")
        lines = [f"{'case':<58} {'measure':<26} {ours:>10} {ref:>10} {'ratio':>7} {'CPU ratio':>10} {'max |diff|':>10}"]
        for r in rows:
            num = ".3e" if "bytes" in r["measure"] else ".4f"
            cpu = f"{r['cpu_ratio']:>9.1f}x" if r["cpu_ratio"] is not None else f"{'-':>10}"
            lines.append(f"{r['case']:<58} {r['measure']:<26} {r['ours']:>10{num}} {r['reference']:>10{num}} "
                         f"{r['ratio']:>6.1f}x {cpu} {_fmt(r['max_abs_diff'], '.1e', 10)}")
        lines += [f"  {r['case']}: {r['how']}" for r in rows if "bytes" in r["measure"]]
    m = rows[0]
    lines.append(f"machine: {m['cpu']}, {m['cores']} cores, {m['threads']} torch thread(s), "
                 f"torch {m['torch']}, device {m['device']}")
    return "\n".join(lines)
