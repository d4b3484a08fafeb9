"""The runner: one run of the grid -> result rows; executors over the grid.

It owns seeds, device, timing, the rows and the stopping of a grid; it never looks inside a
method, a generator or a measure. A run samples the generator, lets every measure check the
samples (before any training), trains the method (if any), and hands the measures a
:class:`~synergy_bench.measures.base.Context`; their rows get the run's columns.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synergy_bench import __version__
from synergy_bench.data import to_torch
from synergy_bench.registry import (
    UserError,
    get_generator,
    get_measure,
    get_method,
    load_plugin,
    load_plugins,
    make_params,
)
from synergy_bench.selection import TestSelection
from synergy_bench.spec import Run
from synergy_bench.train import embed, fit

ATOMS = ("redundancy", "unique1", "unique2", "synergy")
Outcome = tuple[Run, "list[dict[str, Any]] | None", "str | None"]  # (run, rows, error)


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
    """The run's generator: its world seeded by ``run.world_seed`` (the same at every sample size)."""
    cls = get_generator(run.generator)
    return cls(make_params(cls, run.generator_params, "generator"), run.world_seed)


def build_method(run: Run, shapes: list[tuple[int, ...]], device: str):
    """The run's method, built from its parameters and seed, on ``device``."""
    cls = get_method(run.method)
    return cls(make_params(cls, run.method_params, "method"), shapes, run.method_seed).to(device)


def build_measures(run: Run) -> list:
    out = []
    for name, params in run.measures:
        cls = get_measure(name)
        out.append(cls(make_params(cls, params, f"measures[{name}]")))
    return out


def execute(run: Run) -> list[dict[str, Any]]:
    """Sample, check, train, measure; return the run's tidy result rows.

    Torch and the BLAS under numpy / scikit-learn use ``train.threads`` threads, so parallel
    workers do not oversubscribe the cores (and numbers do not depend on the worker count).
    """
    from threadpoolctl import threadpool_limits

    from synergy_bench.measures.base import Context

    load_plugins()
    torch.set_num_threads(run.train["threads"])
    with threadpool_limits(run.train["threads"]):
        device = resolve_device(run.device)
        generator = build_generator(run)
        measures = build_measures(run)
        rng = np.random.default_rng(run.data_seed)
        train_np, test_np = generator.sample("train", rng), generator.sample("test", rng)
        # probes fit on the training samples, or on unbiased ones where training pairs are biased
        probe_np = generator.sample("probe", rng) if run.method and generator.biased_training else train_np
        ctx = Context(run, generator, train_np, test_np, probe_np, device)
        for m in measures:
            m.prepare(ctx)  # checks that need the samples, before any training
        truth = generator.ground_truth()
        history, seconds = [], 0.0
        selection = {}
        if run.method:
            history, seconds, selection = _train(run, generator, ctx, device)
        base = {"run_id": run.run_id, "experiment": run.experiment, "generator": run.generator,
                "generator_label": run.generator_label,
                "generator_params": json.dumps(run.generator_params, sort_keys=True),
                "method": run.method or "", "method_label": run.method_label,
                "method_params": json.dumps(run.method_params, sort_keys=True), "trained": run.trained,
                "grid_index": run.index, "seed": run.seed, "train_seconds": round(seconds, 3),
                "final_loss": history[-1] if history else math.nan, "device": device, "version": __version__}
        rows = []
        for i, m in enumerate(measures):
            head = {**base, "measure": m.name, "measure_label": run.measure_label(i),
                    "measure_params": json.dumps(run.measures[i][1], sort_keys=True)}
            for r in m(ctx):
                t = truth.get(r["task"])
                atoms = t.as_dict() if t is not None else dict.fromkeys(ATOMS, math.nan)
                rows.append({**head, "task": r["task"], "metric": r["metric"], "value": r["value"],
                             "chance": r["chance"] if "chance" in r else 1.0 / generator.n_classes(r["task"]),
                             "truth_bits": t.total if t is not None else math.nan,
                             **{f"truth_{a}": v for a, v in atoms.items()},
                             "measure_seconds": round(r.get("seconds", math.nan), 3),
                             "details": json.dumps({**(r.get("details") or {}), **selection}, sort_keys=True,
                                                   default=str)})
        return rows


def _train(run: Run, generator, ctx, device: str):
    """Build the run's method and fit it (if trainable), setting ``ctx.embed``, ``ctx.method`` and
    ``ctx.inputs``; its loss history, the seconds training took, and the record of the test-set
    selection (empty under ``train.select: last``)."""
    train = to_torch(ctx.train, device)
    method = build_method(run, [x.shape[1:] for x in ctx.train["x"]], device)
    labelled = {**train, "y": {t: train["y"][t] for t in run.tasks}}  # a supervised method sees the run's tasks
    splits = {"probe": train if ctx.probe is ctx.train else to_torch(ctx.probe, device),
              "test": to_torch(ctx.test, device)}

    def embedding(split: str) -> np.ndarray:
        return embed(method, splits[split]["x"], amp=run.train["amp"]).numpy()

    ctx.embed, ctx.method, ctx.inputs = embedding, method, lambda split: splits[split]["x"]
    select = TestSelection(run, ctx) if run.trained and run.train["select"] == "best_test" else None
    t0 = time.perf_counter()
    history = fit(method, generator, labelled, run.train, run.method_seed, select) if run.trained else []
    seconds = time.perf_counter() - t0
    if select is not None:
        select.restore()
        seconds -= select.seconds  # training time only, not the test-set probes
    return history, seconds, (select.record() if select else {})


def safe_execute(run: Run) -> Outcome:
    """``execute`` that turns a failure into an error record instead of raising (a UserError,
    a mistake in the spec, still raises: it stops the grid)."""
    try:
        return run, execute(run), None
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 — a failed run must not sink the grid
        return run, None, f"{type(err).__name__}: {err}\n{traceback.format_exc()}"


# ---------------------------------------------------------------------------- stopping
class Interrupted(BaseException):
    """SIGINT (Ctrl-C) or SIGTERM arrived: the grid stops. ``signum`` is the signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the block runs (in the main thread), the first SIGINT or SIGTERM raises
    :class:`Interrupted`; any later one is ignored from then on (the process is on its way out:
    it ends the workers, saves, says so and exits)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum, frame):
        for s in _SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        fired.append(signum)
        raise Interrupted(signum)

    before = {s: signal.getsignal(s) for s in _SIGNALS}
    for s in _SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        if not fired:
            for s, h in before.items():
                signal.signal(s, h)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs (a run's rows are written whole); a signal
    that arrives meanwhile is delivered after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)


# ---------------------------------------------------------------------------- plug-ins in workers
def plugin_sources(refs: list[str]) -> list[tuple[str, str | None]]:
    """(reference, source text) of each loaded plug-in: a file's text travels with the runs, so a
    worker on another machine loads the same code; a module (None) must be installed there."""
    return [(ref, Path(ref).read_text() if Path(ref).is_file() else None) for ref in refs]


def load_worker_plugins(plugins: list[tuple[str, str | None]]) -> None:
    """Register the driver's plug-ins in a worker: each file from its path where it holds the
    same text, else from a copy of the text in a temporary folder; each module by name."""
    for ref, source in plugins:
        path = Path(ref)
        if source is not None and not (path.is_file() and path.read_text() == source):
            folder = Path(tempfile.mkdtemp(prefix="synergy_bench_plugin_"))
            path = folder / Path(ref).name
            path.write_text(source)
        load_plugin(str(path) if source is not None else ref)


def _init_worker(plugins: list[tuple[str, str | None]]) -> None:
    """A pool worker: Ctrl-C in the terminal is the driver's to handle (it ends the workers); on
    Linux the worker is ended when the driver dies; the driver's plug-ins are registered."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    load_plugins()
    load_worker_plugins(plugins)


def _end(pool) -> None:
    """Cancel the queued runs of a process pool and end its workers now."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        with contextlib.suppress(Exception):
            p.terminate()
    deadline = time.monotonic() + 5
    for p in processes:
        with contextlib.suppress(Exception):
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(1)


# ---------------------------------------------------------------------------- executors
def run_local(runs: list[Run], workers: int, plugins: list[tuple[str, str | None]] = ()) -> Iterator[Outcome]:
    """Yield (run, rows, error) as runs finish: in this process for 1 worker, else a process pool.

    Leaving the loop early (a UserError from a run, an interruption) cancels the queued runs and
    ends the workers.
    """
    if workers <= 1 or len(runs) <= 1:
        for run in runs:
            yield safe_execute(run)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(max_workers=min(workers, len(runs)), mp_context=mp.get_context("spawn"),
                               initializer=_init_worker, initargs=(list(plugins),))
    try:
        futures = {pool.submit(safe_execute, run): run for run in runs}
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except BrokenProcessPool:
                yield futures[fut], None, ("BrokenProcessPool: a worker process died (killed, or out of "
                                           "memory) while this run was queued or running")
    finally:
        _end(pool)


def get_executor(name: str, address: str | None = None) -> Callable[..., Iterator[Outcome]]:
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
    the built-in plug-ins from copies of the driver's ``synergy_bench/`` and ``generators/``
    folders (Ray's ``py_modules``), so every node runs the driver's code; user plug-in files
    travel with the runs (:func:`plugin_sources`); the other dependencies (torch, numpy, ...)
    must be installed on the nodes. Returns True if a connection was made here (and should be
    closed with ``ray.shutdown()``).
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


def _ray_task(run: Run, plugins: list[tuple[str, str | None]]) -> Outcome:
    """A Ray task: the driver's plug-ins, then :func:`safe_execute`."""
    load_plugins()
    load_worker_plugins(plugins)
    return safe_execute(run)


def run_ray(runs: list[Run], workers: int, plugins: list[tuple[str, str | None]] = (),
            address: str | None = None) -> Iterator[Outcome]:
    """Yield (run, rows, error) as Ray tasks finish: one task per run.

    Connects to ``address`` (or starts a local instance with ``workers`` CPUs, shut down after);
    each task asks for ``train.threads`` CPUs, and one GPU on a CUDA device. The numbers equal
    the local executor's: a task calls the same :func:`safe_execute`. Leaving the loop early
    cancels the pending tasks (forcefully: running ones are ended).
    """
    if not runs:
        return
    started = connect_ray(address, max([workers] + [r.train["threads"] for r in runs]))
    import ray

    pending = {}
    try:
        cluster = ray.cluster_resources()
        task = ray.remote(_ray_task)
        shipped = ray.put(list(plugins))
        for run in runs:
            sent, need = _ray_resources(run, cluster)
            pending[task.options(**need).remote(sent, shipped)] = run
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
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


EXECUTORS: dict[str, Callable[..., Iterator[Outcome]]] = {"local": run_local, "ray": run_ray}
