"""Contract checks of a plug-in: what the suite's own tests ask of every method and generator.

``synergy-bench check PLUGIN`` loads a plug-in (a ``.py`` file or a module, see
:func:`synergy_bench.registry.load_plugin`) and checks every method and generator it registers on
a tiny configuration, printing PASS or FAIL with the reason for each check. The suite's tests
build their tiny methods and batches with the helpers of this module.

A method must

* build from its ``Params`` (the encoder sizes of :data:`TINY` where it has those fields);
* lower its loss: over :data:`STEPS` Adam steps (lr 1e-3) on one fixed pair of views of a batch,
  the mean of the last five losses is below the mean of the first five by at least 10 % of its
  size (controls, ``trainable = False``, are exempt);
* embed every sample: ``embed`` of N samples is a finite (N, D) tensor, and a sample's row does
  not depend on the other samples of its batch (the runner embeds in batches);
* repeat itself: two builds with one seed have equal weights, equal losses over three training
  steps and equal embeddings (exactly on the CPU), and another seed gives other weights;
* stay on its device: after ``.to(device)`` every parameter and buffer, and every tensor that a
  torch call returns during ``loss``, its backward pass and ``embed``, lies on the device, and no
  call copies to the host (``.cpu()``, ``.numpy()``, ``.tolist()``, ``.item()``, ``bool``,
  ``int``, ``float`` or an index of a tensor, e.g. ``if loss > 0``).

A generator must build from its ``Params`` with small ``n_train`` / ``n_test``; draw sample dicts
of the promised sizes (finite float modalities, labels in ``0..n_classes - 1`` for every task, a
ground truth for every task); give the same samples and views for the same seeds; render views on
the device of the latents; and run end to end, trained with CoMM and probed on every task.

Device checks need the default device (where torch makes a tensor given no ``device=``) to differ
from the run's: on a GPU it is the CPU; for a CPU run it is made ``meta`` while the method runs, so
a tensor made without ``device=`` shows as it would on a GPU. Torch lets a 0-dim CPU tensor meet
tensors of any device, so 0-dim tensors may sit anywhere (under ``meta`` they are remade on the
CPU to compute as they would).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from synergy_bench.registry import (
    GENERATORS,
    METHODS,
    UserError,
    load_plugin,
    make_params,
)

SHAPES = [(12,), (10,)]  # per-sample shapes of the two modalities of the tiny batches
TINY = dict(n_tokens=4, d_model=16, hidden=32, head_hidden=32, embed_dim=16)
STEPS = 100  # training steps of the loss check (a masked autoencoder on one-feature tokens needs about 100)
TINY_SPLITS = dict(n_train=128, n_test=64)  # generator sizes of the checks


class CheckFailed(Exception):
    """A contract check failed; the message is the reason."""


# ---------------------------------------------------------------- tiny configuration (tests too)

def tiny_method(cls: type, seed: int = 0, shapes: list[tuple[int, ...]] = SHAPES,
                device: str = "cpu", **over: Any):
    """``cls`` built with the :data:`TINY` sizes it has fields for, ``over`` on top, on ``device``."""
    fields = {f.name for f in dataclasses.fields(cls.Params)}
    values = {**{k: v for k, v in TINY.items() if k in fields}, **over}
    return cls(make_params(cls, values, cls.name), shapes, seed).to(device)


def batch(seed: int, b: int = 16, shapes: list[tuple[int, ...]] = SHAPES, device: str = "cpu") -> list[torch.Tensor]:
    """Standard normal modalities (drawn on the CPU, then moved: the same numbers on every device)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, *s, generator=g).to(device) for s in shapes]


def views(b: int = 16, shapes: list[tuple[int, ...]] = SHAPES, device: str = "cpu"):
    """Two 'augmentations' of one batch: shared signal plus independent noise (0.3 times)."""
    x = batch(1, b, shapes, device)
    n1, n2 = batch(2, b, shapes, device), batch(3, b, shapes, device)
    return [a + 0.3 * e for a, e in zip(x, n1)], [a + 0.3 * e for a, e in zip(x, n2)]


def labels(b: int = 16, seed: int = 9, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Task labels of a batch, for the methods that train on them: 'A' binary, 'B' with 5 classes."""
    g = torch.Generator().manual_seed(seed)
    y = {"A": torch.randint(0, 2, (b,), generator=g), "B": torch.randint(0, 5, (b,), generator=g)}
    return {t: v.to(device) for t, v in y.items()}


def train_steps(method, steps: int, lr: float = 1e-3) -> list[float]:
    """Adam steps on one fixed pair of :func:`views` (on the method's device); the losses."""
    dev = str(method.device)
    v1, v2 = views(device=dev)
    y = labels(device=dev)
    method.prepare({"x": v1, "y": y, "z": {}})
    method.train()
    opt = torch.optim.Adam(method.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = method.loss(v1, v2, 0, 1, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


# ------------------------------------------------------------------------------ device guard

def _on(t: torch.Tensor, device: torch.device) -> bool:
    return t.device.type == device.type and (device.index is None or t.device.index == device.index)


_HOST_COPIES = ("cpu", "numpy", "tolist", "item", "__bool__", "__int__", "__float__", "__index__")
_CONVERSIONS = {"__bool__": "bool", "__int__": "int", "__float__": "float", "__index__": "an index from"}


class DeviceGuard(TorchFunctionMode):
    """Records the torch calls that return a tensor (of one dimension or more) off ``device`` or
    copy to the host, with the caller's file and line; see the module docstring."""

    def __init__(self, device: str | torch.device):
        super().__init__()
        self.device = torch.device(device)
        self.strays: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", repr(func))
        if name in _HOST_COPIES and args and isinstance(args[0], torch.Tensor):
            call = f"{_CONVERSIONS[name]}(tensor)" if name in _CONVERSIONS else f"Tensor.{name}()"
            self._record(call, "copies to the host")
        out = func(*args, **kwargs)
        if (isinstance(out, torch.Tensor) and out.ndim == 0 and out.device.type == "meta"
                and self.device.type == "cpu" and "device" not in kwargs):
            with contextlib.suppress(TypeError, RuntimeError):
                out = func(*args, **kwargs, device=self.device)
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.ndim > 0 and not _on(t, self.device):
                where = "the default device" if t.device.type == "meta" else t.device
                self._record(f"{name}()", f"made a tensor on {where}, not on {self.device}")
        return out

    def _record(self, call: str, what: str) -> None:
        torch_dir, here = str(Path(torch.__file__).parent), str(Path(__file__))
        for frame in reversed(traceback.extract_stack()[:-2]):
            if not frame.filename.startswith(torch_dir) and frame.filename != here:
                call += f" at {frame.filename}:{frame.lineno}"
                break
        self.strays.append(f"{call} {what}")

    def raise_strays(self, err: BaseException | None = None) -> None:
        if self.strays:
            raise CheckFailed(f"{self.strays[0]}; make every tensor on the inputs' device "
                              "(device=x.device) and keep the results there")
        if err is not None:
            raise err


@contextlib.contextmanager
def on_device_only(device: str) -> Iterator[DeviceGuard]:
    """Run the body with a :class:`DeviceGuard` and a default device other than ``device``;
    raises CheckFailed naming the first stray tensor (also when it made the body fail)."""
    trap = torch.device("meta") if torch.device(device).type == "cpu" else contextlib.nullcontext()
    guard = DeviceGuard(device)
    try:
        with trap, guard:
            yield guard
    except CheckFailed:
        raise
    except Exception as err:  # noqa: BLE001 — a stray tensor often makes a later call fail
        guard.raise_strays(err)
    guard.raise_strays()


# ---------------------------------------------------------------------------- method checks

def _same(a: torch.Tensor, b: torch.Tensor, exact: bool) -> bool:
    return torch.equal(a, b) if exact else torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def method_checks(cls: type, device: str) -> list[tuple[str, Callable[[], str]]]:
    """(title, check) pairs for method ``cls``; a check returns a detail or raises the reason."""

    def builds() -> str:
        m = tiny_method(cls, device=device)
        fields = {f.name for f in dataclasses.fields(cls.Params)}
        sizes = ", ".join(f"{k}={v}" for k, v in TINY.items() if k in fields) or "its defaults"
        return f"{sum(p.numel() for p in m.parameters())} parameters ({sizes})"

    def lowers() -> str:
        if not cls.trainable:
            return "a control (trainable = False): probed untrained, not trained"
        losses = train_steps(tiny_method(cls, device=device), STEPS)
        bad = [i for i, v in enumerate(losses) if not math.isfinite(v)]
        if bad:
            raise CheckFailed(f"the loss is {losses[bad[0]]} at step {bad[0]}")
        first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
        if not last < first - 0.1 * abs(first):
            raise CheckFailed(f"the loss went from {first:.4g} to {last:.4g} (means of the first and last "
                              f"5 of {STEPS} Adam steps, lr 1e-3, on one batch); it must drop by 10 %")
        return f"{first:.4g} -> {last:.4g} over {STEPS} Adam steps"

    def embeds() -> str:
        m, n = tiny_method(cls, device=device).eval(), 13
        x = batch(4, n, device=device)
        with torch.no_grad():
            z = m.embed(x)
            if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[0] != n:
                got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
                raise CheckFailed(f"embed of {n} samples gave {got}; it must be an ({n}, D) tensor")
            if not torch.isfinite(z).all():
                raise CheckFailed(f"embed gave {int((~torch.isfinite(z)).sum())} non-finite values")
            parts = torch.cat([m.embed([v[:5] for v in x]), m.embed([v[5:] for v in x])])
        gap = (parts - z).abs().max().item()
        if gap > 1e-5 + 1e-4 * z.abs().max().item():
            raise CheckFailed(f"a sample's embedding depends on its batch (differs by {gap:.3g} when "
                              "embedded in two halves); in eval mode rows must be independent")
        return f"{n} samples -> {tuple(z.shape)}, finite, independent of the batch"

    def repeats() -> str:
        exact = torch.device(device).type == "cpu"
        a, b = tiny_method(cls, 5, device=device), tiny_method(cls, 5, device=device)
        sa, sb = a.state_dict(), b.state_dict()
        diff = [k for k in sa if not torch.equal(sa[k], sb[k])]
        if diff:
            raise CheckFailed(f"two builds with seed 5 differ in {diff[0]}; initialise every weight from "
                              "the seed (call self.init_weights() at the end of __init__)")
        done = "weights"
        if any(p.numel() for p in a.parameters()):
            other = tiny_method(cls, 6, device=device).state_dict()
            if all(torch.equal(sa[k], other[k]) for k in sa):
                raise CheckFailed("seeds 5 and 6 give the same weights; initialise them from self.seed")
            done = "weights (seed 6: others)"
        if cls.trainable:
            la, lb = train_steps(a, 3), train_steps(b, 3)
            if not np.allclose(la, lb, rtol=0 if exact else 1e-5, atol=0):
                la, lb = (", ".join(f"{v:.6g}" for v in losses) for losses in (la, lb))
                raise CheckFailed(f"the same seed gave losses {la} and {lb} in 3 steps; draw random numbers "
                                  "from self.rng (or a generator seeded from self.seed), never the global one")
            done += ", 3 training steps"
        a.eval(), b.eval()
        x = batch(4, device=device)
        with torch.no_grad():
            if not _same(a.embed(x), b.embed(x), exact):
                raise CheckFailed("the same seed and weights gave different embeddings; embed must "
                                  "not draw random numbers in eval mode")
        return f"{done} and embeddings repeat {'exactly' if exact else 'to 1e-5'}"

    def stays() -> str:
        dev = torch.device(device)
        m = tiny_method(cls, device=device)
        for what, named in (("parameter", m.named_parameters()), ("buffer", m.named_buffers())):
            for key, t in named:
                if not _on(t, dev):
                    raise CheckFailed(f"{what} {key} is on {t.device} after .to({device!r}); register "
                                      "tensors as parameters or buffers so that .to() moves them")
        v1, v2 = views(device=device)
        y = labels(device=device)
        m.prepare({"x": v1, "y": y, "z": {}})
        outputs = []
        with on_device_only(device):
            if cls.trainable:
                m.train()
                loss = m.loss(v1, v2, 0, 10, y)
                loss.backward()
                outputs.append(("loss", loss))
            m.eval()
            with torch.no_grad():
                outputs.append(("embed", m.embed(v1)))
        for what, t in outputs:
            if not _on(t, dev):
                raise CheckFailed(f"{what} returned a tensor on {t.device}, not {device}")
        grads = [k for k, p in m.named_parameters() if p.grad is not None and not _on(p.grad, dev)]
        if grads:
            raise CheckFailed(f"the gradient of {grads[0]} is not on {device}")
        seen = ", ".join(["parameters, buffers"] + [w for w, _ in outputs] + ["gradients"] * cls.trainable)
        return f"{seen} on {device}; nothing made elsewhere or copied to the host"

    return [("builds from its Params", builds), ("training lowers the loss", lowers),
            ("embeds every sample", embeds), ("same seed, same numbers", repeats),
            (f"stays on {device}", stays)]


# ------------------------------------------------------------------------- generator checks

def tiny_generator(cls: type, seed: int = 0):
    """``cls`` built with the :data:`TINY_SPLITS` sizes."""
    fields = {f.name for f in dataclasses.fields(cls.Params)}
    if not set(TINY_SPLITS) <= fields:
        raise CheckFailed(f"Params has no {' / '.join(sorted(set(TINY_SPLITS) - fields))}; generators "
                          "size their splits with n_train and n_test")
    return cls(make_params(cls, TINY_SPLITS, f"generator[{cls.name}]"), seed)


def check_sample(gen, split: str, sample: dict[str, Any], n: int) -> None:
    """Raise CheckFailed unless ``sample`` is a sample dict of ``n`` rows (see ``synergy_bench.data``)."""
    if not isinstance(sample, dict) or not {"x", "y", "z"} <= set(sample):
        raise CheckFailed(f"sample({split!r}) must return a dict with keys x, y, z")
    for i, x in enumerate(sample["x"]):
        x = np.asarray(x)
        if x.shape[:1] != (n,) or x.dtype.kind != "f" or not np.isfinite(x).all():
            raise CheckFailed(f"sample({split!r}) modality {i}: {x.shape} {x.dtype}; it must be "
                              f"finite floats with {n} rows")
    if set(sample["y"]) != set(gen.tasks):
        raise CheckFailed(f"sample({split!r}) labels tasks {sorted(sample['y'])}, tasks are {list(gen.tasks)}")
    for t, y in sample["y"].items():
        y, k = np.asarray(y), gen.n_classes(t)
        if y.shape != (n,) or y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= k:
            raise CheckFailed(f"sample({split!r}) labels of task {t}: shape {y.shape}, {y.dtype}, values "
                              f"{y.min()}..{y.max()}; they must be {n} integers in 0..{k - 1}")
    for f, v in sample["z"].items():
        if np.asarray(v).shape[:1] != (n,):
            raise CheckFailed(f"sample({split!r}) latent {f} has shape {np.shape(v)}; it needs {n} rows")


def generator_checks(cls: type, device: str) -> list[tuple[str, Callable[[], str]]]:
    """(title, check) pairs for generator ``cls``; a check returns a detail or raises the reason."""
    from synergy_bench.data import to_torch

    n_train, n_test = TINY_SPLITS["n_train"], TINY_SPLITS["n_test"]

    def builds() -> str:
        return f"tasks {', '.join(tiny_generator(cls).tasks)} with {TINY_SPLITS}"

    def samples() -> str:
        gen = tiny_generator(cls)
        rng = np.random.default_rng(0)
        splits = [("train", n_train), ("test", n_test)] + [("probe", n_train)] * gen.biased_training
        for split, n in splits:
            check_sample(gen, split, gen.sample(split, rng), n)
        truth = gen.ground_truth()
        if set(truth) != set(gen.tasks):
            raise CheckFailed(f"ground_truth() covers {sorted(truth)}, tasks are {list(gen.tasks)}")
        return f"{', '.join(s for s, _ in splits)} of the promised sizes, labels in range, a truth per task"

    def repeats() -> str:
        a, b = tiny_generator(cls, 3), tiny_generator(cls, 3)
        sa, sb = a.sample("train", np.random.default_rng(7)), b.sample("train", np.random.default_rng(7))
        flat = lambda s: [*s["x"], *s["y"].values(), *s["z"].values()]  # noqa: E731
        if not all(np.array_equal(np.asarray(u), np.asarray(v)) for u, v in zip(flat(sa), flat(sb))):
            raise CheckFailed("the same seeds gave different samples; draw from the rng passed to "
                              "sample() and the generator's seed only")
        za, zb = to_torch(sa, device)["z"], to_torch(sb, device)["z"]
        va = a.views(za, torch.Generator(device=device).manual_seed(1))
        vb = b.views(zb, torch.Generator(device=device).manual_seed(1))
        if not all(torch.equal(u, v) for u, v in zip(va, vb)):
            raise CheckFailed("the same seeds gave different views; draw from the torch.Generator "
                              "passed to views()")
        return "samples and views repeat exactly"

    def stays() -> str:
        gen = tiny_generator(cls)
        sample = gen.sample("train", np.random.default_rng(0))
        z = to_torch(sample, device)["z"]
        with on_device_only(device):
            out = gen.views(z, torch.Generator(device=device).manual_seed(0))
        for i, (v, x) in enumerate(zip(out, sample["x"])):
            if not _on(v, torch.device(device)) or tuple(v.shape) != np.shape(x) or not torch.isfinite(v).all():
                raise CheckFailed(f"view of modality {i}: {tuple(v.shape)} on {v.device}; it must be "
                                  f"finite, shaped like the samples {np.shape(x)}, on {device}")
        return f"{len(out)} views on {device}, shaped like the samples"

    def runs() -> str:
        from synergy_bench.runner import execute
        from synergy_bench.spec import expand, resolve

        spec = resolve({"name": "check", "generator": {"name": cls.name, **TINY_SPLITS},
                        "methods": [{"name": "comm", **TINY}], "controls": [], "seeds": 1,
                        "device": device, "train": {"epochs": 2, "batch_size": 64},
                        "probe": {"Cs": [1.0]}})
        with warnings.catch_warnings():  # tiny probes warn of classes missing from a split
            warnings.simplefilter("ignore")
            rows = [r for run in expand(spec) for r in execute(run)]
        acc = {r["task"]: r["value"] for r in rows if r["metric"] == "balanced_accuracy"}
        if set(acc) != set(tiny_generator(cls).tasks) or not all(0 <= a <= 1 for a in acc.values()):
            raise CheckFailed(f"probes gave balanced accuracies {acc}")
        if not all(math.isfinite(r["value"]) for r in rows):
            raise CheckFailed("a result row holds a non-finite value")
        return f"CoMM trained 2 epochs; probed {', '.join(acc)}"

    return [("builds from its Params", builds), ("samples every split", samples),
            ("same seed, same numbers", repeats), (f"views stay on {device}", stays),
            ("runs end to end with comm", runs)]


# ------------------------------------------------------------------------------------ driver

def _reason(err: BaseException) -> str:
    if isinstance(err, (CheckFailed, UserError)):
        return str(err)
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def run_checks(checks: list[tuple[str, Callable[[], str]]], out=print) -> tuple[int, int]:
    """Run the checks in order, printing one line each; (passed, failed). After a failed first
    check (the build) the others are skipped."""
    passed = failed = 0
    for i, (title, check) in enumerate(checks):
        try:
            detail = check()
        except Exception as err:  # noqa: BLE001 — every failure is reported, none stops the rest
            failed += 1
            out(f"  FAIL  {title}: {_reason(err)}")
            if i == 0:
                out(f"  SKIP  the other {len(checks) - 1} checks: it does not build")
                break
        else:
            passed += 1
            out(f"  PASS  {title}: {detail}")
    return passed, failed


def main(ref: str, device: str = "auto", base: str | Path | None = None, out=print) -> int:
    """Check every method and generator that plug-in ``ref`` registers; 0 if all checks pass, else 1.

    Parameters
    ----------
    ref : str
        A ``.py`` file or a module name (see :func:`~synergy_bench.registry.load_plugin`).
    device : str
        Device of the checks: 'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:N'.
    base : path, optional
        Folder a relative ``ref`` starts from.
    out : callable
        Prints one line.
    """
    from synergy_bench.runner import resolve_device

    device = resolve_device(device)
    try:
        classes = load_plugin(ref, base)
    except UserError as err:
        out(f"FAIL  loads: {err}")
        return 1
    kinds = [(kind, cls) for cls in classes for kind, table in (("method", METHODS), ("generator", GENERATORS))
             if table.get(cls.name) is cls]
    if not kinds:
        out(f"FAIL  plug-in {ref} registers no method and no generator")
        return 1
    passed = failed = total = 0
    for kind, cls in kinds:
        out(f"{kind} {cls.name} ({cls.__module__}.{cls.__qualname__}) on {device}")
        checks = method_checks(cls, device) if kind == "method" else generator_checks(cls, device)
        p, f = run_checks(checks, out)
        passed, failed, total = passed + p, failed + f, total + len(checks)
    skipped = total - passed - failed
    out(f"{passed} of {total} checks passed" + (f", {failed} failed" if failed else "")
        + (f", {skipped} skipped" if skipped else ""))
    return int(failed > 0)


if __name__ == "__main__":  # python -m synergy_bench.check PLUGIN [DEVICE]
    sys.exit(main(*sys.argv[1:3]))
