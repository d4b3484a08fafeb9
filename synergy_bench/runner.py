"""The runner: one run of the grid -> result rows; executors over the grid.

It owns seeds, device, timing and the rows; it never looks inside a method or a generator.
"""
from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from synergy_bench import __version__
from synergy_bench.data import prediction_pid, to_torch
from synergy_bench.probe import linear_probe
from synergy_bench.registry import UserError, get_generator, get_method, load_plugins, make_params
from synergy_bench.spec import Run, derive_seed
from synergy_bench.train import embed, fit


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when available else 'cpu'; checks that an explicit device exists."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        index = device.partition(":")[2] or "0"
        count = torch.cuda.device_count()
        if not index.isdigit() or int(index) >= count:
            raise UserError(f"device {device!r} is not available (this machine has {count} CUDA "
                            f"device(s)); use --device cpu or auto")
        return device
    raise UserError(f"device {device!r} is not valid; use auto, cpu, cuda or cuda:N")


def build_generator(run: Run):
    cls = get_generator(run.generator)
    return cls(make_params(cls, run.generator_params, "generator"), run.data_seed)


def execute(run: Run) -> list[dict[str, Any]]:
    """Generate data, fit the method, probe every task; return tidy result rows.

    Torch and the BLAS under numpy / scikit-learn use ``train.threads`` threads, so parallel
    workers do not oversubscribe the cores (and numbers do not depend on the worker count).
    """
    from threadpoolctl import threadpool_limits

    load_plugins()
    torch.set_num_threads(run.train["threads"])
    with threadpool_limits(run.train["threads"]):
        return _execute(run)


def _execute(run: Run) -> list[dict[str, Any]]:
    device = resolve_device(run.device)
    generator = build_generator(run)
    rng = np.random.default_rng(run.data_seed)
    train_np, test_np = generator.sample("train", rng), generator.sample("test", rng)
    train, test = to_torch(train_np, device), to_torch(test_np, device)
    mcls = get_method(run.method)
    method = mcls(make_params(mcls, run.method_params, "method"), [x.shape[1:] for x in train_np["x"]],
                  run.method_seed).to(device)
    t0 = time.perf_counter()
    history = fit(method, generator, train, run.train, run.method_seed) if mcls.trainable else []
    train_seconds = time.perf_counter() - t0
    emb_train, emb_test = embed(method, train["x"]).numpy(), embed(method, test["x"]).numpy()
    truth = generator.ground_truth()
    base = {"run_id": run.run_id, "experiment": run.experiment, "generator": run.generator,
            "generator_label": run.generator_label,
            "generator_params": json.dumps(run.generator_params, sort_keys=True),
            "method": run.method, "method_label": run.method_label,
            "method_params": json.dumps(run.method_params, sort_keys=True),
            "trained": mcls.trainable, "grid_index": run.index, "seed": run.seed, "train_seconds": round(train_seconds, 3),
            "final_loss": history[-1] if history else float("nan"),
            "device": device, "version": __version__}
    codes = generator.modality_codes(test_np["z"])
    rows = []
    for task in run.tasks:
        k = generator.n_classes(task)
        probe_rng = np.random.default_rng(derive_seed(run.data_seed, run.method, task))
        res = linear_probe(emb_train, train_np["y"][task], emb_test, test_np["y"][task], k, probe_rng,
                           run.probe["Cs"], run.probe["holdout"], run.probe["max_iter"])
        t = truth.get(task)
        atoms = t.as_dict() if t is not None else {}
        metrics = {m: res[m] for m in ("balanced_accuracy", "bits")}
        if codes is not None:
            metrics.update({f"pred_{a}": v for a, v in prediction_pid(codes, res["pred"], k).as_dict().items()})
        for metric, value in metrics.items():
            rows.append({**base, "task": task, "metric": metric, "value": value,
                         "chance": 1.0 / k, "truth_bits": t.total if t is not None else float("nan"),
                         **{f"truth_{a}": v for a, v in atoms.items()}})
    return rows


def safe_execute(run: Run) -> tuple[Run, list[dict[str, Any]] | None, str | None]:
    """``execute`` that turns a failure into an error record instead of raising."""
    try:
        return run, execute(run), None
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 — a failed run must not sink the grid
        return run, None, f"{type(err).__name__}: {err}\n{traceback.format_exc()}"


def run_local(runs: list[Run], workers: int) -> Iterator[tuple[Run, list | None, str | None]]:
    """Yield (run, rows, error) as runs finish: in-process for 1 worker, else a process pool."""
    if workers <= 1 or len(runs) <= 1:
        for run in runs:
            yield safe_execute(run)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(safe_execute, run) for run in runs]
        for fut in as_completed(futures):
            yield fut.result()


EXECUTORS: dict[str, Callable[..., Iterator]] = {"local": run_local}
