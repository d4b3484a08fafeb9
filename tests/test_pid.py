"""The exact BROJA solver: reference decompositions, invariants, validation and agreement with
independent minimisations."""

import dataclasses
import math
import warnings

import numpy as np
import pytest
import scipy.optimize
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from synergy_bench.pid import (
    PID,
    broja,
    broja_optimum,
    entropy,
    mutual_information,
    source_target_informations,
)


def gate(f, n1=2, n2=2, n_y=None):
    """Uniform independent x1, x2 and y = f(x1, x2), as a (n1, n2, n_y) table."""
    rows = [(x1, x2, f(x1, x2)) for x1 in range(n1) for x2 in range(n2)]
    n_y = n_y or max(y for _, _, y in rows) + 1
    p = np.zeros((n1, n2, n_y))
    for x1, x2, y in rows:
        p[x1, x2, y] += 1.0
    return p / p.sum()


def redundant_table():
    p = np.zeros((2, 2, 2))
    p[0, 0, 0] = p[1, 1, 1] = 0.5
    return p


def redundant_bit_plus_xor():
    """X1 = (r, a), X2 = (r, b), Y = (r, a xor b) with r, a, b independent fair bits."""
    p = np.zeros((4, 4, 4))
    for r in range(2):
        for a in range(2):
            for b in range(2):
                p[2 * r + a, 2 * r + b, 2 * r + (a ^ b)] = 1.0
    return p / p.sum()


R_AND = 0.75 * math.log2(4 / 3) + 0.25 * 2 - 0.5            # H(Y) - 1/2 with P(Y=1) = 1/4

REFERENCE = {                                               # (R, U1, U2, S) in bits
    "xor": (gate(lambda a, b: a ^ b), (0, 0, 0, 1)),
    "and": (gate(lambda a, b: a & b), (R_AND, 0, 0, 0.5)),
    "or": (gate(lambda a, b: a | b), (R_AND, 0, 0, 0.5)),
    "redundant": (redundant_table(), (1, 0, 0, 0)),
    "unique": (gate(lambda a, b: a), (0, 1, 0, 0)),
    "copy": (gate(lambda a, b: 2 * a + b), (0, 1, 1, 0)),
    "sum": (gate(lambda a, b: a + b), (0.5, 0, 0, 1)),
    "redundant_bit_plus_xor": (redundant_bit_plus_xor(), (1, 0, 0, 1)),
}


def atoms(res: PID) -> np.ndarray:
    return np.array([res.redundancy, res.unique1, res.unique2, res.synergy])


def i_q(q: np.ndarray) -> float:
    """I_Q(X1,X2;Y) in bits."""
    return mutual_information(q.reshape(-1, q.shape[-1]))


@pytest.mark.parametrize("name", REFERENCE)
def test_reference_table(name):
    p, expected = REFERENCE[name]
    assert atoms(broja(p)) == pytest.approx(expected, abs=1e-9)


def test_and_redundancy_is_the_information_each_input_holds():
    """For AND, Y = 1 only when both bits are 1: each input alone tells I(Xi;Y) = H(Y) - 1/2 bits
    (P(Y=1) = 1/4; given Xi = 1, Y is a fair bit), and BROJA puts all of it in R (U1 = U2 = 0)."""
    p = gate(lambda a, b: a & b)
    h_y = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    i1 = mutual_information(p.sum(1))
    assert i1 == pytest.approx(h_y - 0.5, abs=1e-12) == pytest.approx(mutual_information(p.sum(0)), abs=1e-12)
    assert broja(p).redundancy == pytest.approx(i1, abs=1e-9)


@pytest.mark.parametrize("k", [2, 3, 4, 5, 7])
def test_kary_xor_is_pure_synergy(k):
    res = broja(gate(lambda a, b: (a + b) % k, k, k, k))
    assert atoms(res) == pytest.approx([0, 0, 0, math.log2(k)], abs=1e-9)


def test_unnormalised_counts_and_lists():
    p, expected = REFERENCE["and"]
    assert atoms(broja(1000 * p)) == pytest.approx(expected, abs=1e-9)
    assert atoms(broja((4 * p).tolist())) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("bad, match", [
    (-np.ones((2, 2, 2)), "negative"),
    (np.full((2, 2, 2), np.nan), "NaN or inf"),
    (np.full((2, 2, 2), np.inf), "NaN or inf"),
    (np.zeros((2, 0, 2)), "empty axis"),
    (np.zeros((2, 2, 2)), "all zeros"),
    (np.ones((2, 2)), "3-D"),
    (np.ones((2, 2, 2, 2)), "3-D"),
    ([["a", "b"]], "numeric"),
])
def test_invalid_tables_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        broja(bad)
    with pytest.raises(ValueError, match=match):
        broja_optimum(bad)


def test_single_target_value_has_no_information():
    rng = np.random.default_rng(0)
    res = broja(rng.random((3, 4, 1)))
    assert atoms(res) == pytest.approx([0, 0, 0, 0], abs=1e-12)


def test_zero_cells_unused_values_change_nothing():
    """Padding every alphabet with values that never occur leaves the atoms unchanged."""
    for name in ("xor", "and", "sum", "redundant_bit_plus_xor"):
        p, expected = REFERENCE[name]
        padded = np.zeros(tuple(n + 2 for n in p.shape))
        padded[1:-1, 2:, :-2] = p
        assert atoms(broja(padded)) == pytest.approx(expected, abs=1e-9), name


def test_optimum_lies_in_delta_p_on_the_restricted_support():
    """Q* keeps both source-target marginals and puts no mass where P(x1,y) or P(x2,y) is 0."""
    for name in ("xor", "copy", "and", "sum"):
        p, _ = REFERENCE[name]
        q, gap = broja_optimum(p)
        np.testing.assert_allclose(q.sum(1), p.sum(1), atol=1e-13)
        np.testing.assert_allclose(q.sum(0), p.sum(0), atol=1e-13)
        allowed = (p.sum(1) > 0)[:, None, :] & (p.sum(0) > 0)[None, :, :]
        assert np.all(q[~allowed] == 0)
        assert 0 <= gap <= 1e-9


def test_xor_optimum_is_the_product_coupling():
    q, _ = broja_optimum(REFERENCE["xor"][0])
    np.testing.assert_allclose(q, np.full((2, 2, 2), 1 / 8), atol=1e-9)


@pytest.mark.parametrize("concentration", [1.0, 0.3, 0.1])
def test_random_tables_are_certified(concentration):
    """Dense and near-degenerate random tables all reach a tiny certified gap, silently."""
    rng = np.random.default_rng(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(30):
            shape = tuple(rng.integers(2, 7, 3))
            p = rng.dirichlet(np.full(int(np.prod(shape)), concentration)).reshape(shape)
            q, gap = broja_optimum(p)
            assert 0 <= gap <= 1e-7
            np.testing.assert_allclose(q.sum(1), p.sum(1), atol=1e-12)
            np.testing.assert_allclose(q.sum(0), p.sum(0), atol=1e-12)


def test_tables_with_slowly_fitting_marginals_are_certified():
    """Slices whose entries differ by orders of magnitude, where proportional fitting crawls."""
    p = np.array([[[1e-2, 0.0], [1e-6, 0.3]], [[0.0, 0.3], [0.0, 0.3]]])
    q = np.full((4, 2, 4), 0.01)
    q[0, 0, 2] = q[2, 0, 0] = 0.0
    q[1, 0, 2] = 1.0
    for table in (p, q):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            _, gap = broja_optimum(table)
        assert gap <= 1e-7


@pytest.mark.parametrize("sparsity", [0.0, 0.8])
def test_largest_tables(sparsity):
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(50 * 50 * 10)).reshape(50, 50, 10)
    p[rng.random(p.shape) < sparsity] = 0
    q, gap = broja_optimum(p)
    assert gap <= 1e-8
    res = broja(p)
    i1, i2, i12 = source_target_informations(p)
    assert res.total == pytest.approx(i12, abs=1e-9)
    assert min(res.as_dict().values()) >= -1e-9


@pytest.mark.parametrize("n1,n2", [(6, 4), (4, 6)])
def test_newton_solvers_equal_a_dense_solve_on_sparse_tables(n1, n2):
    """Both Newton solvers (block elimination over the free variables, and the Cholesky of the
    free-by-free matrix) solve the system sum_k J_k^T h_k J_k dz = rhs written out cell by cell
    (fixed variables: identity rows), on a table whose (x, y) marginals are mostly zero."""
    from synergy_bench.pid.broja import _Dual

    rng = np.random.default_rng(3)
    m = 3
    p = rng.random((n1, n2, m)) * (rng.random((n1, n2, m)) < 0.25)
    p[0, 0, :] += 0.1  # every target value occurs
    a, b = p.sum(1), p.sum(0)
    dual = _Dual(a, b)
    z = rng.normal(size=dual.dim)
    _, soft = dual.constraints(z)
    q = rng.random((n1, n2, m)) * dual.support
    h = dual.hessian_blocks(q, soft, rng.random((n1, n2)) + 0.5)
    # the matrix from its definition: c_k(y) = alpha(x1, y) + beta(x2, y) for block k = (x1, x2)
    mat = np.zeros((dual.dim, dual.dim))
    for x1 in range(n1):
        for x2 in range(n2):
            jac = np.zeros((m, dual.dim))
            jac[np.arange(m), x1 * m + np.arange(m)] = 1.0
            jac[np.arange(m), (n1 + x2) * m + np.arange(m)] = 1.0
            mat += jac.T @ h[x1, x2] @ jac
    mat[dual.fixed] = 0.0
    mat[:, dual.fixed] = 0.0
    mat[dual.fixed, dual.fixed] = 1.0
    rhs = rng.normal(size=dual.dim)
    expected = np.linalg.solve(mat, rhs)
    assert 0 < dual.fixed.sum() < dual.dim - 2 * m
    np.testing.assert_allclose(dual.solver(h)(rhs), expected, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(dual.full_solver(h)(rhs), expected, rtol=1e-8, atol=1e-10)


def test_deterministic_targets_match_an_exhaustive_reference():
    """y = f(x1, x2) for random functions on 2 x 2 inputs, against the closed one-parameter search."""
    rng = np.random.default_rng(3)
    for _ in range(10):
        f = rng.integers(0, 3, (2, 2))
        w = rng.dirichlet(np.ones(4)).reshape(2, 2)
        p = np.zeros((2, 2, 3))
        p[np.arange(2)[:, None], np.arange(2)[None, :], f] = w
        assert i_q(broja_optimum(p)[0]) == pytest.approx(reference_i_q_2x2(p), abs=1e-8)


def reference_i_q_2x2(p: np.ndarray) -> float:
    """min over Delta_P of I_Q(X1,X2;Y) for a 2 x 2 x m table, by a bounded search.

    For each y the slice Q(., ., y) is a 2 x 2 table with fixed row and column sums, so it is
    set by t_y = Q(0, 0, y) in an interval; minimise over t with L-BFGS-B from several starts.
    """
    p = p / p.sum()
    a, b, p_y = p.sum(1), p.sum(0), p.sum((0, 1))
    lo = np.maximum(0.0, a[0] + b[0] - p_y)
    hi = np.maximum(np.minimum(a[0], b[0]), lo)

    def table(t):
        q = np.empty_like(p)
        q[0, 0], q[0, 1] = t, a[0] - t
        q[1, 0], q[1, 1] = b[0] - t, p_y - a[0] - b[0] + t
        return np.clip(q, 0.0, None)

    best = np.inf
    for frac in (0.0, 0.5, 1.0, 0.25):
        res = scipy.optimize.minimize(lambda t: i_q(table(t)), lo + frac * (hi - lo),
                                      method="L-BFGS-B", bounds=list(zip(lo, hi)),
                                      options={"ftol": 1e-15, "gtol": 1e-12})
        best = min(best, res.fun)
    return best


def test_agrees_with_bounded_search_on_2x2_tables():
    rng = np.random.default_rng(4)
    for m in (2, 3, 4):
        for _ in range(3):
            p = rng.dirichlet(np.ones(4 * m)).reshape(2, 2, m)
            ours = i_q(broja_optimum(p)[0])
            assert ours == pytest.approx(reference_i_q_2x2(p), abs=1e-7)


def conditional_neg_entropy(x: np.ndarray, shape) -> tuple[float, np.ndarray]:
    """-H_Q(Y|X1,X2) in nats and its gradient log Q(y|x1,x2), for a flat table x."""
    q = np.clip(x, 1e-300, None).reshape(shape)
    log_cond = np.log(q / q.sum(-1, keepdims=True))
    return float(np.sum(q * log_cond)), log_cond.ravel()


def test_never_worse_than_slsqp():
    """On general small tables an SLSQP minimisation over all cells can only match us."""
    rng = np.random.default_rng(5)
    for shape in ((3, 2, 3), (3, 3, 2), (2, 4, 3)):
        p = rng.dirichlet(np.ones(int(np.prod(shape)))).reshape(shape)
        n1, n2, m = shape
        sum_x2 = np.kron(np.eye(n1), np.ones((1, n2)))
        sum_x1 = np.kron(np.ones((1, n1)), np.eye(n2))
        lhs = np.vstack([np.kron(sum_x2, np.eye(m)), np.kron(sum_x1, np.eye(m))])
        rhs = np.concatenate([p.sum(1).ravel(), p.sum(0).ravel()])
        keep = np.r_[:n1 * m, (n1 + 1) * m:(n1 + n2) * m]   # Q(x2=0, y) follows from the rest
        lhs, rhs = lhs[keep], rhs[keep]
        start = np.einsum("iy,jy->ijy", p.sum(1), p.sum(0) / p.sum((0, 1))).ravel()  # in Delta_P
        res = scipy.optimize.minimize(
            conditional_neg_entropy, start, args=(shape,), jac=True, method="SLSQP",
            bounds=[(0, 1)] * p.size,
            constraints=[{"type": "eq", "fun": lambda x: lhs @ x - rhs, "jac": lambda x: lhs}],
            options={"ftol": 1e-14, "maxiter": 1000})
        assert res.success, res.message
        q_ref = np.clip(res.x, 0, None).reshape(shape)
        assert np.abs(lhs @ q_ref.ravel() - rhs).max() < 1e-8
        ours = i_q(broja_optimum(p)[0])
        assert ours <= i_q(q_ref) + 1e-9
        assert ours == pytest.approx(i_q(q_ref), abs=1e-7)


def test_agrees_with_the_conic_formulation():
    pytest.importorskip("cvxpy")
    from synergy_bench.pid.bench import conic_broja
    rng = np.random.default_rng(6)
    for shape in ((4, 5, 3), (6, 6, 2)):
        p = rng.dirichlet(np.ones(int(np.prod(shape)))).reshape(shape)
        assert atoms(broja(p)) == pytest.approx(atoms(conic_broja(p)), abs=1e-5)


tables = st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)).flatmap(
    lambda shape: arrays(np.float64, shape,
                         elements=st.sampled_from([0.0, 0.0, 1e-6, 1e-3, 0.01, 0.3, 1.0, 2.5])))


nonzero_tables = tables.filter(lambda p: p.sum() > 0)  # an all-zero table is refused (test_invalid_tables_raise)


def _sparse_table(shape, cells):
    p = np.zeros(shape)
    for index, value in cells.items():
        p[index] = value
    return p


# tables whose tiny marginals once stalled the solver's steps short of a certificate
STALLED = [_sparse_table((3, 4, 4), {(0, 0, 0): 1e-6, (0, 3, 2): 0.3, (1, 1, 0): 1e-6, (1, 1, 2): 1e-6,
                                     (2, 1, 1): 1e-6, (2, 3, 2): 1e-6}),
           _sparse_table((2, 2, 4), {(0, 0, 0): 0.01, (0, 0, 2): 0.01, (0, 0, 3): 0.01, (0, 1, 1): 1e-6,
                                     (0, 1, 3): 2.5, (1, 0, 0): 1e-6, (1, 0, 1): 1e-6, (1, 0, 2): 0.3,
                                     (1, 1, 0): 1e-6, (1, 1, 1): 1e-6})]


@settings(max_examples=120, deadline=None)
@given(nonzero_tables)
@example(STALLED[0])
@example(STALLED[1])
def test_decomposition_identities(p):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)          # every table gets certified
        res = broja(p)
    i1, i2, i12 = source_target_informations(p)
    a = atoms(res)
    assert np.all(a >= -1e-9)
    assert res.redundancy + res.unique1 == pytest.approx(i1, abs=1e-7)
    assert res.redundancy + res.unique2 == pytest.approx(i2, abs=1e-7)
    assert res.total == pytest.approx(i12, abs=1e-7)
    swapped = broja(p.transpose(1, 0, 2))
    assert atoms(swapped) == pytest.approx(a[[0, 2, 1, 3]], abs=1e-7)


@settings(max_examples=40, deadline=None)
@given(nonzero_tables, st.randoms(use_true_random=False))
def test_relabelling_values_changes_nothing(p, rnd):
    perms = [rnd.sample(range(n), n) for n in p.shape]
    relabelled = p[np.ix_(*perms)]
    assert atoms(broja(relabelled)) == pytest.approx(atoms(broja(p)), abs=1e-7)


def test_pid_record():
    res = PID(0.1, 0.2, 0.3, 0.4)
    assert res.total == pytest.approx(1.0)
    assert res.as_dict() == {"redundancy": 0.1, "unique1": 0.2, "unique2": 0.3, "synergy": 0.4}
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.synergy = 0.0


def test_information_helpers():
    assert entropy(np.ones(8)) == pytest.approx(3.0)
    assert entropy([0.5, 0.5, 0.0]) == pytest.approx(1.0)
    assert mutual_information(np.eye(4)) == pytest.approx(2.0)
    assert mutual_information(np.ones((3, 5))) == pytest.approx(0.0, abs=1e-12)
    i1, i2, i12 = source_target_informations(REFERENCE["xor"][0])
    assert (i1, i2, i12) == pytest.approx((0.0, 0.0, 1.0), abs=1e-12)
