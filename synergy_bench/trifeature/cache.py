"""Disk cache of rendered image banks, with an integrity check.

A bank is stored as uint8 in ``$SYNERGY_BENCH_CACHE/trifeature/<key>.npz`` (default
``~/.cache/synergy-bench``) beside the SHA-256 of its bytes. The file name hashes the caller's key
(seed, image parameters, factors), ``VERSION`` and the source of :mod:`synergy_bench.trifeature.render`,
so that a change to the rendering never serves images of the old code. A missing, unreadable,
misshapen or damaged file is made again; the new file is written atomically.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

VERSION = 2  # the published Trifeature definitions (1: the suite's own shapes and textures)


@functools.cache
def code_digest() -> str:
    """SHA-256 of the renderer's source (the package version where the source is not available)."""
    from synergy_bench.trifeature import render

    try:
        source = inspect.getsource(render)
    except (OSError, TypeError):
        from synergy_bench import __version__ as source
    return hashlib.sha256(source.encode()).hexdigest()


def cache_root() -> Path:
    """Folder of the rendered banks: ``$SYNERGY_BENCH_CACHE/trifeature`` (default ~/.cache/synergy-bench)."""
    return Path(os.environ.get("SYNERGY_BENCH_CACHE", "~/.cache/synergy-bench")).expanduser() / "trifeature"


def bank_path(key: dict[str, Any]) -> Path:
    """The cache file of a bank: a hash of ``key`` (JSON-serialisable), the version and the code."""
    full = {**key, "version": VERSION, "code": code_digest()}
    return cache_root() / (hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:20] + ".npz")


def digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def load(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached bank if the file is readable, uint8 of ``shape``, and matches its SHA-256."""
    try:
        with np.load(path, allow_pickle=False) as f:
            images, expected = f["images"], str(f["sha256"])
    except Exception:  # noqa: BLE001 - missing, truncated or damaged: make it again
        return None
    if images.shape != shape or images.dtype != np.uint8 or digest(images) != expected:
        return None
    return images


def save(path: Path, images: np.ndarray) -> None:
    """Write the bank and its SHA-256 atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, images=images, sha256=np.array(digest(images)))
    os.replace(tmp, path)


def cached(key: dict[str, Any], shape: tuple[int, ...], make: Callable[[], np.ndarray]) -> np.ndarray:
    """The bank of ``key`` from the cache, or ``make()`` saved there (it must return uint8 ``shape``)."""
    path = bank_path(key)
    images = load(path, shape)
    if images is None:
        images = make()
        save(path, images)
    return images
