"""The runner: one run of the grid -> result rows; executors over the grid.

It owns seeds, device, timing and the rows; it never looks inside a method or a generator.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from synergy_bench import __version__
from synergy_bench.data import prediction_pid, to_torch
from synergy_bench.probe import linear_probe
from synergy_bench.registry import (
    UserError,
    get_generator,
    get_method,
    load_plugins,
    make_params,
)
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


def build_method(run: Run, shapes: list[tuple[int, ...]], device: str):
    """The run's method, built from its parameters and seed, on ``device``."""
    cls = get_method(run.method)
    return cls(make_params(cls, run.method_params, "method"), shapes, run.method_seed).to(device)


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
    method = build_method(run, [x.shape[1:] for x in train_np["x"]], device)
    t0 = time.perf_counter()
    labelled = {**train, "y": {t: train["y"][t] for t in run.tasks}}  # a supervised method sees the run's tasks
    history = fit(method, generator, labelled, run.train, run.method_seed) if mcls.trainable else []
    train_seconds = time.perf_counter() - t0
    amp = run.train["amp"]
    # probes fit on the training samples, or on unbiased ones where training pairs are biased
    probe_np = generator.sample("probe", rng) if generator.biased_training else train_np
    probe = to_torch(probe_np, device) if generator.biased_training else train
    emb_train, emb_test = (embed(method, split["x"], amp=amp).numpy() for split in (probe, test))
    truth = generator.ground_truth()
    base = {"run_id": run.run_id, "experiment": run.experiment, "generator": run.generator,
            "generator_label": run.generator_label,
            "generator_params": json.dumps(run.generator_params, sort_keys=True),
            "method": run.method, "method_label": run.method_label,
            "method_params": json.dumps(run.method_params, sort_keys=True),
            "trained": mcls.trainable, "grid_index": run.index, "seed": run.seed, "train_seconds": round(train_seconds, 3),
            "final_loss": history[-1] if history else float("nan"),
            "device": device, "version": __version__}
    codes = generator.modality_codes(test_np["z"]) if run.probe["prediction_pid"] else None
    rows = []
    for task in run.tasks:
        k = generator.n_classes(task)
        probe_rng = np.random.default_rng(derive_seed(run.data_seed, run.method, task))
        res = linear_probe(emb_train, probe_np["y"][task], emb_test, test_np["y"][task], k, probe_rng,
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


def get_executor(name: str, address: str | None = None) -> Callable[[list[Run], int], Iterator]:
    """The executor ``name`` with its options, checked before anything runs or is written."""
    if name not in EXECUTORS:
        raise UserError(f"executor {name!r} is unknown; choose one of {', '.join(EXECUTORS)}")
    if name == "ray":
        _import_ray()
        return functools.partial(run_ray, address=address)
    if address is not None:
        raise UserError(f"--address {address} applies to --executor ray; add --executor ray or drop it")
    return EXECUTORS[name]


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray; install it with `pip install -e \".[ray]\"` "
                        "(or `pip install 'ray>=2.9'`)") from None
    return ray


def connect_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to the Ray cluster at ``address``, or start a local instance with ``num_cpus`` CPUs.

    Nothing happens if this process is already connected. The workers import this package and
    the plug-ins from copies of the driver's ``synergy_bench/`` and ``generators/`` folders (Ray's
    ``py_modules``), so every node runs the driver's code; the other dependencies (torch, numpy,
    ...) must be installed on the nodes. Returns True if a connection was made here (and should
    be closed with ``ray.shutdown()``).
    """
    ray = _import_ray()
    if ray.is_initialized():
        return False
    import generators
    import synergy_bench

    env = {"py_modules": [synergy_bench, generators]}
    try:
        if address is not None:
            ray.init(address=address, runtime_env=env, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=num_cpus, runtime_env=env, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
    except ConnectionError as err:
        raise UserError(f"cannot connect to the Ray cluster at --address {address}: "
                        f"{str(err).splitlines()[0]}; start it with `ray start --head` or fix the address") from None
    return True


def _ray_resources(run: Run, cluster: dict[str, float]) -> tuple[Run, dict[str, float]]:
    """A run's Ray resources (train.threads CPUs, one GPU on a CUDA device) and the run to send.

    A CUDA run becomes device ``cuda``: Ray gives each task its own GPU as the only visible one.
    ``auto`` asks for a GPU when the cluster has any.
    """
    wants_gpu = run.device.startswith("cuda") or run.device == "auto" and cluster.get("GPU", 0) > 0
    need = {"num_cpus": run.train["threads"], "num_gpus": 1 if wants_gpu else 0}
    if need["num_cpus"] > cluster.get("CPU", 0):
        raise UserError(f"train.threads = {need['num_cpus']} but the Ray cluster has "
                        f"{cluster.get('CPU', 0):g} CPUs; lower train.threads")
    if need["num_gpus"] > cluster.get("GPU", 0):
        raise UserError(f"device {run.device!r} needs a GPU but the Ray cluster has none; "
                        "use --device cpu or auto, or a cluster with GPUs")
    return (dataclasses.replace(run, device="cuda") if wants_gpu else run), need


def run_ray(runs: list[Run], workers: int, address: str | None = None
            ) -> Iterator[tuple[Run, list | None, str | None]]:
    """Yield (run, rows, error) as Ray tasks finish: one task per run.

    Connects to ``address`` (or starts a local instance with ``workers`` CPUs, shut down after);
    each task asks for ``train.threads`` CPUs, and one GPU on a CUDA device. The numbers equal
    the local executor's: a task calls the same :func:`safe_execute`.
    """
    if not runs:
        return
    started = connect_ray(address, max([workers] + [r.train["threads"] for r in runs]))
    import ray

    try:
        cluster = ray.cluster_resources()
        task = ray.remote(safe_execute)
        pending = {}
        for run in runs:
            sent, need = _ray_resources(run, cluster)
            pending[task.options(**need).remote(sent)] = run
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            run = pending.pop(done[0])
            try:
                _, rows, error = ray.get(done[0])
            except ray.exceptions.RayTaskError as err:
                if isinstance(err.cause, UserError):
                    raise err.cause from None
                rows, error = None, str(err)
            except ray.exceptions.RayError as err:  # a lost worker or node: record, go on
                rows, error = None, f"{type(err).__name__}: {err}"
            yield run, rows, error
    finally:
        for ref in pending:
            ray.cancel(ref)
        if started:
            ray.shutdown()


EXECUTORS: dict[str, Callable[..., Iterator]] = {"local": run_local, "ray": run_ray}
