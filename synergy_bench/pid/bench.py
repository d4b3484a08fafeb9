r"""Speed and agreement of the exact BROJA solver against the plain conic formulation.

The reference is the textbook convex program handed to a general conic solver: cvxpy (Diamond
and Boyd 2016) with Clarabel (Goulart and Chen 2024),

.. math::

    \min_{Q \ge 0} \sum_{x_1,x_2,y} \mathrm{rel\_entr}\big(Q(x_1,x_2,y), \textstyle\sum_{y'} Q(x_1,x_2,y')\big)
    \quad\text{s.t.}\quad Q(x_1,y) = P(x_1,y),\ Q(x_2,y) = P(x_2,y),

whose value is :math:`-H_Q(Y \mid X_1,X_2)` in nats. cvxpy is optional (``pip install cvxpy``).

Run ``python -m synergy_bench.pid.bench`` for the table.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from synergy_bench.timing import median_time

from .broja import PID, broja, check_table
from .info import entropy, source_target_informations

#: Shapes (|X1|, |X2|, |Y|) compared against the conic formulation.
BENCH_SHAPES = ((20, 20, 4), (30, 30, 6), (12, 12, 12))
#: The largest shape the solver is timed on.
LARGE_SHAPE = (50, 50, 10)
#: (|X1|, |X2|, |Y|, samples) of a sparse empirical table timed too: the prediction PID of a
#: k = 8 latent run (512 codes per modality, 8 labels, 1,000 test samples).
SAMPLED_SHAPE = (512, 512, 8, 1000)


def conic_broja(p) -> PID:
    """BROJA atoms (bits) from the plain conic formulation, solved by cvxpy + Clarabel.

    Parameters
    ----------
    p : array_like, shape (|X1|, |X2|, |Y|)
        Non-negative joint table (normalised inside).

    Returns
    -------
    PID
        The four atoms, computed from the solver's optimal value.

    Raises
    ------
    ImportError
        If cvxpy is not installed.
    """
    try:
        import cvxpy as cp
    except ImportError as err:
        raise ImportError("the conic reference needs cvxpy; install it with `pip install cvxpy` "
                          "(or `pip install synergy-bench[bench]`)") from err
    p = check_table(p)
    n1, n2, m = p.shape
    q = cp.Variable((n1 * n2, m), nonneg=True)                  # row x1 * n2 + x2
    block = cp.sum(q, axis=1, keepdims=True) @ np.ones((1, m))
    sum_x2 = np.kron(np.eye(n1), np.ones((1, n2)))              # (n1, n1 n2)
    sum_x1 = np.kron(np.ones((1, n1)), np.eye(n2))              # (n2, n1 n2)
    problem = cp.Problem(cp.Minimize(cp.sum(cp.rel_entr(q, block))),
                         [sum_x2 @ q == p.sum(1), sum_x1 @ q == p.sum(0)])
    problem.solve(solver=cp.CLARABEL)
    i1, i2, i12 = source_target_informations(p)
    i_q = entropy(p.sum((0, 1))) + problem.value / math.log(2.0)
    return PID(i1 + i2 - i_q, i_q - i2, i_q - i1, i12 - i_q)


def random_table(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """A joint table drawn uniformly from the simplex (Dirichlet with all concentrations 1)."""
    return rng.dirichlet(np.ones(int(np.prod(shape)))).reshape(shape)


def sampled_table(shape: tuple[int, int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Counts of n samples (x1, x2 uniform; y = (x1 + x2) mod |Y|, replaced by a uniform label
    with probability 0.3) in a (|X1|, |X2|, |Y|) table: sparse, like the tables of predictions."""
    n1, n2, m, n = shape
    x1, x2 = rng.integers(0, n1, n), rng.integers(0, n2, n)
    y = np.where(rng.random(n) < 0.3, rng.integers(0, m, n), (x1 + x2) % m)
    table = np.zeros((n1, n2, m))
    np.add.at(table, (x1, x2, y), 1.0)
    return table


def _single_blas_thread():
    """Limit BLAS to one thread if threadpoolctl is present (the conic solver is single-threaded,
    and small dense factorisations only lose from threads on a busy machine)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def run_pid_bench(repeats: int = 3, seed: int = 0, shapes=BENCH_SHAPES,
                  large_shape=LARGE_SHAPE, conic_on_large: bool = False,
                  sampled_shape=SAMPLED_SHAPE) -> list[dict]:
    """Time ``broja`` against the conic formulation on random tables.

    Parameters
    ----------
    repeats : int
        Tables per shape; each solver's time is the median over them.
    seed : int
        Seed of ``numpy.random.default_rng`` that draws all tables.
    shapes : sequence of (int, int, int)
        Shapes compared against the conic formulation.
    large_shape : (int, int, int) or None
        Shape on which ``broja`` alone is timed (None to skip).
    conic_on_large : bool
        Also run the conic formulation on ``large_shape`` (slow).
    sampled_shape : (int, int, int, int) or None
        (|X1|, |X2|, |Y|, samples) of the :func:`sampled_table` tables on which ``broja`` alone is timed
        (None to skip).

    Returns
    -------
    list of dict
        One row per shape: ``shape``, ``repeats``, ``broja_s`` and ``conic_s`` (median seconds;
        ``conic_s`` is None where not run), ``speedup`` (``conic_s / broja_s``) and
        ``max_abs_diff_bits`` (largest atom difference over the tables).

    Raises
    ------
    ImportError
        If cvxpy is not installed.
    """
    conic_broja(np.ones((2, 2, 2)))                          # fails early without cvxpy; warms up
    broja(np.ones((2, 2, 2)))
    rng = np.random.default_rng(seed)
    jobs = [(tuple(shape), True) for shape in shapes]
    if large_shape is not None:
        jobs.append((tuple(large_shape), conic_on_large))
    if sampled_shape is not None:
        jobs.append((tuple(sampled_shape), False))
    rows = []
    with _single_blas_thread():
        for shape, with_conic in jobs:
            draw = random_table if len(shape) == 3 else sampled_table
            tables = [draw(shape, rng) for _ in range(repeats)]
            t_ours, ours = median_time(broja, [(t,) for t in tables])
            label = "x".join(map(str, shape[:3])) + (f" ({shape[3]} samples)" if len(shape) == 4 else "")
            row = {"shape": label, "repeats": repeats, "broja_s": t_ours,
                   "conic_s": None, "speedup": None, "max_abs_diff_bits": None}
            if with_conic:
                t_conic, theirs = median_time(conic_broja, [(t,) for t in tables])
                diff = max(abs(x - y) for a, b in zip(ours, theirs)
                           for x, y in zip(a.as_dict().values(), b.as_dict().values()))
                row.update(conic_s=t_conic, speedup=t_conic / t_ours, max_abs_diff_bits=float(diff))
            rows.append(row)
    return rows


def geometric_mean_speedup(rows: list[dict]) -> float:
    """Geometric mean of the ``speedup`` column over the rows that have one."""
    ratios = [row["speedup"] for row in rows if row["speedup"] is not None]
    return float(np.exp(np.mean(np.log(ratios))))


def _fmt(v, spec: str, width: int) -> str:
    return f"{v:{width}{spec}}" if v is not None else f"{'-':>{width}}"


def format_table(rows: list[dict]) -> str:
    """The rows of :func:`run_pid_bench` as a plain-text table, with the geometric mean speedup."""
    lines = [f"{'shape':>24} {'broja s':>9} {'conic s':>9} {'speedup':>8} {'max |diff| bits':>16}   "
             f"(medians over {rows[0]['repeats']} random tables)"]
    lines += [f"{r['shape']:>24} {r['broja_s']:9.4f} {_fmt(r['conic_s'], '.3f', 9)} "
              f"{_fmt(r['speedup'], '.1f', 8)} {_fmt(r['max_abs_diff_bits'], '.1e', 16)}" for r in rows]
    lines.append(f"geometric mean speedup: {geometric_mean_speedup(rows):.1f}x")
    return "\n".join(lines)


def main() -> None:
    """Print the benchmark as a table (``synergy-bench bench pid`` also writes it with the machine)."""
    print(format_table(run_pid_bench()))


if __name__ == "__main__":
    main()
