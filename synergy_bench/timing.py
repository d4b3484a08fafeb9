"""Timing helpers of the speed benchmarks: medians over interleaved calls, and the machine."""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from synergy_bench.provenance import cpu_model


def machine(device: str = "cpu") -> dict[str, Any]:
    """What a timing was measured on: CPU model, cores, torch threads and version, device."""
    name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu"
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "device": name}


def median_times(fns: Sequence[Callable], calls: Sequence[tuple], warmup: int = 0
                 ) -> list[tuple[float, float, list]]:
    """Median wall-clock and CPU seconds of each ``fn(*args)`` over ``calls``, and its outputs.

    The functions take turns call by call, so a load change on a shared machine hits them alike;
    ``warmup`` untimed rounds with the first arguments come first. CPU seconds
    (``time.process_time``, all threads of this process) hardly grow when other processes compete
    for the cores; wall seconds do. A function must wait for its own device work
    (``torch.cuda.synchronize``) before returning.
    """
    for _ in range(warmup):
        for fn in fns:
            fn(*calls[0])
    walls: list[list[float]] = [[] for _ in fns]
    cpus: list[list[float]] = [[] for _ in fns]
    outs: list[list] = [[] for _ in fns]
    for args in calls:
        for fn, wall, cpu, out in zip(fns, walls, cpus, outs):
            start, start_cpu = time.perf_counter(), time.process_time()
            out.append(fn(*args))
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return [(float(np.median(w)), float(np.median(c)), o) for w, c, o in zip(walls, cpus, outs)]


def median_time(fn: Callable, calls: Sequence[tuple], warmup: int = 0) -> tuple[float, list]:
    """Median wall-clock seconds of one function (:func:`median_times`), and its outputs."""
    wall, _, outs = median_times([fn], calls, warmup)[0]
    return wall, outs


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch CPU threads (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
