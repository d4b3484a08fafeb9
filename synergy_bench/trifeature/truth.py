r"""Trifeature tasks and their exact partial information decomposition.

**Tasks** of a pair (image 1, image 2), pi the permutation of textures onto colours:

    R  = shape (shared by both images)              10 classes
    U1 = texture(image 1),  U2 = texture(image 2)   10 classes
    S  = 1[colour(image 2) = pi(texture(image 1))]  2 classes

**Ground truth** is the exact BROJA PID (Bertschinger, Rauh, Olbrich, Jost and Ay, 2014) of each
task, with X1 and X2 the images of a pair drawn uniformly from a list of pairs (the test
distribution: every same-shape pair of test images). The table p(x1, x2, y) is made small first by
merging image values with equal conditional tables (:func:`merge_equal_sources`), which leaves
every atom as it is.
"""
from __future__ import annotations

import numpy as np

from synergy_bench.pid import PID, broja
from synergy_bench.trifeature.render import K

TASKS = ("R", "U1", "U2", "S")


def n_classes(task: str) -> int:
    return 2 if task == "S" else K


def labels(z: dict[str, np.ndarray], pi: np.ndarray) -> dict[str, np.ndarray]:
    """Task labels from the pairs' factors ``shape1``, ``texture1``, ``texture2``, ``colour2``."""
    return {"R": z["shape1"], "U1": z["texture1"], "U2": z["texture2"],
            "S": (z["colour2"] == pi[z["texture1"]]).astype(np.int64)}


def pair_factors(factors: np.ndarray, i1: np.ndarray, i2: np.ndarray) -> dict[str, np.ndarray]:
    """``shape1``, ``texture1``, ``colour1``, ``shape2``, ... of the pairs (i1, i2) of bank images."""
    return {f"{f}{side}": factors[i, k] for side, i in (("1", i1), ("2", i2))
            for k, f in enumerate(("shape", "texture", "colour"))}


def merge_equal_sources(p: np.ndarray) -> np.ndarray:
    r"""Merge the values of each source whose conditional table is the same; the PID is unchanged.

    If x1 and x1' have p(x2, y | x1) = p(x2, y | x1'), let A be X1 with such values merged. Then
    X1 is independent of (X2, Y) given A, and every BROJA atom of (A, X2; Y) equals that of
    (X1, X2; Y): I(X1;Y) = I(A;Y); any Q in Delta_P marginalises to a feasible Q(a, x2, y) with
    no larger I_Q(.;Y), and Q(a, x2, y) P(x1 | a) lifts a feasible reduced table back with equal
    value, so the minima agree. Values that never occur are dropped. Likewise for X2. Conditional
    tables are compared to 12 decimals (merging tables closer than that moves an atom by less).
    """
    for axis in (0, 1):
        q = np.moveaxis(p, axis, 0)
        rest = q.shape[1:]
        q = q.reshape(q.shape[0], -1)
        q = q[q.sum(1) > 0]
        _, cls = np.unique(np.round(q / q.sum(1, keepdims=True), 12), axis=0, return_inverse=True)
        merged = np.zeros((cls.max() + 1, q.shape[1]))
        np.add.at(merged, cls.ravel(), q)
        p = np.moveaxis(merged.reshape(-1, *rest), 0, axis)
    return p


def exact_pid(factors: np.ndarray, i1: np.ndarray, i2: np.ndarray, pi: np.ndarray) -> dict[str, PID]:
    """Exact BROJA PID of each task for pairs uniform over the list (i1, i2) of bank images.

    p(x1, x2, y) = (1 / n) #{k : i1_k = x1, i2_k = x2, y_k = y}, with images as the values of
    X1 and X2, merged by :func:`merge_equal_sources` before the optimisation.
    """
    images, codes = np.unique(np.concatenate([i1, i2]), return_inverse=True)
    c1, c2 = codes[:len(i1)], codes[len(i1):]
    out = {}
    for task, y in labels(pair_factors(factors, i1, i2), pi).items():
        table = np.zeros((len(images), len(images), n_classes(task)))
        np.add.at(table, (c1, c2, y), 1.0 / len(i1))
        out[task] = broja(merge_equal_sources(table))
    return out
