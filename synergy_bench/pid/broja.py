r"""Exact BROJA partial information decomposition of a discrete joint table.

Bertschinger, Rauh, Olbrich, Jost and Ay (2014, "Quantifying unique information", Entropy 16)
define the decomposition through the set of tables that keep both source-target marginals of P,

.. math::

    \Delta_P = \{Q \ge 0 : Q(x_1, y) = P(x_1, y),\ Q(x_2, y) = P(x_2, y)\},

and the table :math:`Q^* \in \Delta_P` with the least :math:`I_Q(X_1,X_2;Y)`, equivalently the
largest :math:`H_Q(Y \mid X_1,X_2)`, since :math:`H_Q(Y)` is fixed on :math:`\Delta_P`. Then

.. math::

    R   &= I(X_1;Y) + I(X_2;Y) - I_{Q^*}(X_1,X_2;Y), \\
    U_1 &= I_{Q^*}(X_1,X_2;Y) - I(X_2;Y), \qquad U_2 = I_{Q^*}(X_1,X_2;Y) - I(X_1;Y), \\
    S   &= I_P(X_1,X_2;Y) - I_{Q^*}(X_1,X_2;Y).

**The convex program.** Write :math:`a(x_1,y) = P(x_1,y)`, :math:`b(x_2,y) = P(x_2,y)` and
:math:`f(Q) = \sum Q(x_1,x_2,y) \log[Q(x_1,x_2,y) / Q(x_1,x_2)] = -H_Q(Y \mid X_1,X_2)` (nats).
A cell can carry mass only if both of its marginals do, so the support of Q is restricted to
:math:`S = \{(x_1,x_2,y) : a(x_1,y) > 0,\ b(x_2,y) > 0\}` (not the support of P). Since f is
positively homogeneous, its Lagrange dual over multipliers :math:`\alpha(x_1,y), \beta(x_2,y)` is

.. math::

    \max_{\alpha,\beta}\ \langle a,\alpha\rangle + \langle b,\beta\rangle
    \quad\text{s.t.}\quad
    g_k(\alpha,\beta) = \log \sum_{y:(k,y)\in S} e^{\alpha(x_1,y)+\beta(x_2,y)} \le 0
    \quad \forall k = (x_1,x_2),

a program in :math:`|X_1||Y| + |X_2||Y|` variables (Makkeh, Theis and Vicente (2018,
"BROJA-2PID", Entropy 20) solve the same problem as an exponential-cone program over the
:math:`|X_1||X_2||Y|` primal cells). At the optimum
:math:`Q^*(x_1,x_2,y) = s_k\, \mathrm{softmax}_y(\alpha(x_1,y)+\beta(x_2,y))` with block masses
:math:`s_k \ge 0` and :math:`s_k g_k = 0`: a block (x1, x2) either carries the exponential-family
conditional or vanishes entirely (the boundary optima of AND, OR, sum, ...).

**The solver.** A primal-dual interior-point method on this dual (Mehrotra's 1992
predictor-corrector; see Nocedal and Wright 2006, ch. 19, for the nonlinear setting), with
block masses :math:`s_k` as multipliers and slacks :math:`v_k = -g_k`. Its Newton matrix is
:math:`\sum_k J_k^\top [s_k(\mathrm{diag}\,p_k - p_k p_k^\top) + (s_k/v_k)\, p_k p_k^\top] J_k`
with :math:`p_k` the block softmax and :math:`J_k` the map :math:`(\alpha,\beta) \mapsto
\alpha(x_1,\cdot)+\beta(x_2,\cdot)`; its alpha-alpha and beta-beta parts are block diagonal, so
a step costs one dense Cholesky of size :math:`\min(|X_1|,|X_2|)\,|Y|` after block
elimination, and about a dozen steps reach a gap of 1e-10. The returned table is checked, not
trusted: :math:`Q = s_k p_k` is rescaled exactly onto the marginals (proportional fitting, then
Newton steps on the scalings), and the reported gap :math:`f(Q) - \text{dual value}` at a feasible dual point is a
certified bound on the error of :math:`I_{Q^*}`, hence of every atom.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from .info import entropy, source_target_informations

_LN2 = float(np.log(2.0))


@dataclass(frozen=True)
class PID:
    """The four BROJA atoms of a bivariate decomposition, in bits.

    Attributes
    ----------
    redundancy : float
        R, information about Y in X1 and in X2 alike.
    unique1 : float
        U1, information about Y only in X1.
    unique2 : float
        U2, information about Y only in X2.
    synergy : float
        S, information about Y only in (X1, X2) together.
    """

    redundancy: float
    unique1: float
    unique2: float
    synergy: float

    @property
    def total(self) -> float:
        """R + U1 + U2 + S, which equals I(X1,X2;Y)."""
        return self.redundancy + self.unique1 + self.unique2 + self.synergy

    def as_dict(self) -> dict[str, float]:
        """The atoms keyed by name."""
        return {"redundancy": self.redundancy, "unique1": self.unique1,
                "unique2": self.unique2, "synergy": self.synergy}


def check_table(p) -> np.ndarray:
    """Validate a joint table of (X1, X2, Y) and return it normalised to sum one.

    Parameters
    ----------
    p : array_like, shape (|X1|, |X2|, |Y|)
        Non-negative counts or probabilities.

    Returns
    -------
    numpy.ndarray
        Float64 copy of ``p / p.sum()``.

    Raises
    ------
    ValueError
        If the table is not 3-D, has an empty axis, holds NaN/inf or negative entries,
        or is all zero.
    """
    try:
        p = np.array(p, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"PID table must be numeric, could not convert it ({err}); "
                         "pass an array of counts or probabilities") from None
    if p.ndim != 3:
        raise ValueError(f"PID table must be 3-D with shape (|X1|, |X2|, |Y|), got shape {p.shape}; "
                         "reshape it so the axes are source 1, source 2, target")
    if p.size == 0:
        raise ValueError(f"PID table has an empty axis (shape {p.shape}); "
                         "every variable needs at least one value")
    if not np.all(np.isfinite(p)):
        raise ValueError("PID table contains NaN or inf; pass finite counts or probabilities")
    if np.any(p < 0):
        raise ValueError(f"PID table has negative entries (min {p.min():.3g}); "
                         "pass counts or probabilities >= 0")
    total = p.sum()
    if total <= 0:
        raise ValueError("PID table is all zeros; it needs at least one positive entry")
    return p / total


def _conditional_neg_entropy(q: np.ndarray) -> float:
    """f(Q) = sum Q log(Q / Q(x1,x2)) = -H_Q(Y | X1, X2), in nats."""
    q_blocks = q.sum(-1, keepdims=True)
    pos = q > 0
    return float(np.sum(q[pos] * np.log(q[pos] / np.broadcast_to(q_blocks, q.shape)[pos])))


class _Dual:
    """Structure of the dual program of one table, and the pieces a Newton step needs.

    The dual variables live in one flat vector ``z = (alpha.ravel(), beta.ravel())`` of length
    ``(n1 + n2) * m``. Entries without support (``a(x1, y) = 0`` or ``b(x2, y) = 0``) and one beta
    per target value (the gauge: shifting ``alpha(., y)`` by t and ``beta(., y)`` by -t changes
    nothing) are held at their start values.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray):
        self.a, self.b = a, b                                   # (n1, m), (n2, m)
        self.n1, self.m = a.shape
        self.n2 = b.shape[0]
        n1, n2, m = self.n1, self.n2, self.m
        A, B = a > 0, b > 0
        self.support = A[:, None, :] & B[None, :, :]            # (n1, n2, m)
        self.full = bool(self.support.all())
        self.blocks = self.support.any(-1)                      # (n1, n2)
        self.n_blocks = int(self.blocks.sum())
        B_free = B.copy()
        for y in np.flatnonzero(B.any(0)):
            B_free[np.flatnonzero(B[:, y])[0], y] = False
        self.fixed = ~np.concatenate([A.ravel(), B_free.ravel()])
        self.dim = (n1 + n2) * m
        # Each side's free variables (flat x * m + y) and, for its diagonal (m, m) blocks (one per
        # x1, resp. x2), the entries (x, y1, y2) with both variables free and their flat position
        # in a matrix over the free variables of that side alone.
        self.free_sides = [self._free_blocks(~self.fixed[:n1 * m].reshape(n1, m)),
                           self._free_blocks(~self.fixed[n1 * m:].reshape(n2, m))]
        self.target = np.concatenate([a.ravel(), b.ravel()])

    @staticmethod
    def _free_blocks(free: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flat free indices, entries of the (n, m, m) blocks with both ends free, their flat
        positions in the free-by-free matrix) of one side with free mask (n, m)."""
        n, m = free.shape
        index = np.flatnonzero(free)
        position = np.full(n * m, -1)
        position[index] = np.arange(len(index))
        pos = position.reshape(n, m)
        both = free[:, :, None] & free[:, None, :]              # (n, m, m)
        rows = np.broadcast_to(pos[:, :, None], both.shape)[both]
        cols = np.broadcast_to(pos[:, None, :], both.shape)[both]
        return index, np.flatnonzero(both), rows * len(index) + cols

    def split(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = self.n1 * self.m
        return z[:k].reshape(self.n1, self.m), z[k:].reshape(self.n2, self.m)

    def constraints(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """g_k (log-sum-exp over each block's support; -1 on empty blocks) and softmaxes p_k."""
        alpha, beta = self.split(z)
        c = alpha[:, None, :] + beta[None, :, :]                # (n1, n2, m)
        if self.full:
            top = c.max(-1)
            e = np.exp(c - top[..., None])
            se = e.sum(-1)
            return top + np.log(se), e / se[..., None]
        c = np.where(self.support, c, -np.inf)
        top = np.where(self.blocks, c.max(-1), 0.0)
        e = np.exp(c - top[..., None])
        se = np.where(self.blocks, e.sum(-1), 1.0)
        return np.where(self.blocks, top + np.log(se), -1.0), e / se[..., None]

    def marginals(self, x: np.ndarray) -> np.ndarray:
        """The adjoint of z -> c: (sum over x2, sum over x1) of a (n1, n2, m) array, flat."""
        return np.concatenate([x.sum(1).ravel(), x.sum(0).ravel()])

    def value(self, z: np.ndarray) -> float:
        """The dual objective <a, alpha> + <b, beta>."""
        return float(self.target @ z)

    def hessian_blocks(self, q: np.ndarray, p: np.ndarray, coef: np.ndarray) -> np.ndarray:
        """The (n1, n2, m, m) blocks diag(q_k) + coef_k p_k p_k^T of the Newton matrix in c."""
        m = self.m
        h = coef[..., None, None] * p[..., :, None] * p[..., None, :]
        h[..., np.arange(m), np.arange(m)] += q
        return h

    def matrix(self, h: np.ndarray) -> np.ndarray:
        """The Newton matrix sum_k J_k^T h_k J_k over the free variables (alpha's, then beta's)."""
        (index_a, entries_a, at_a), (index_b, entries_b, at_b) = self.free_sides
        alpha = np.zeros((len(index_a), len(index_a)))
        alpha.reshape(-1)[at_a] = h.sum(1).reshape(-1)[entries_a]
        beta = np.zeros((len(index_b), len(index_b)))
        beta.reshape(-1)[at_b] = h.sum(0).reshape(-1)[entries_b]
        cross = h.transpose(0, 2, 1, 3).reshape(self.n1 * self.m, -1)[np.ix_(index_a, index_b)]
        return np.block([[alpha, cross], [cross.T, beta]])

    def full_solver(self, h: np.ndarray):
        """A solver for the Newton system by a Cholesky of :meth:`matrix` (fixed variables have
        identity rows: they are returned as given)."""
        free = np.flatnonzero(~self.fixed)
        solve_free = _factor(self.matrix(h))

        def solve(rhs):
            x = rhs.copy()
            x[free] = solve_free(rhs[free])
            return x
        return solve

    def solver(self, h: np.ndarray):
        """A solver for the Newton system by block elimination.

        The alpha-alpha and beta-beta parts of the matrix are block diagonal (one (m, m) block
        per source value), so the larger side is eliminated block by block and only its Schur
        complement is factorised densely, over the free variables of the kept side alone (at
        most min(n1, n2) m, and far fewer for sparse tables: fixed variables have identity rows
        and no coupling). Falls back to a (shifted, refined) Cholesky of the whole matrix when
        rounding defeats the elimination.
        """
        n1, n2, m = self.n1, self.n2, self.m
        free_a, free_b = ~self.fixed[:n1 * m].reshape(n1, m), ~self.fixed[n1 * m:].reshape(n2, m)
        eye = np.eye(m, dtype=bool)

        def diagonal_blocks(d, free):                      # fixed variables -> identity
            return np.where(free[:, :, None] & free[:, None, :], d, 0.0) + eye * ~free[:, :, None]

        d_a, d_b = diagonal_blocks(h.sum(1), free_a), diagonal_blocks(h.sum(0), free_b)
        cross = h.transpose(0, 2, 1, 3)                    # (n1, m, n2, m)
        swap = n2 > n1                                     # eliminate the side with more blocks
        d_e, d_k = (d_b, d_a) if swap else (d_a, d_b)
        (free_e, _, _), (free_k, entries_k, at_k) = self.free_sides[::-1] if swap else self.free_sides
        cross = cross.transpose(2, 3, 0, 1) if swap else cross     # (n_e, m, n_k, m)
        n_e, n_k = d_e.shape[0], d_k.shape[0]
        try:
            inv_chol = np.linalg.inv(np.linalg.cholesky(d_e))         # (n_e, m, m)
            # only free variables couple (a fixed one has an identity row and column, which its
            # block's inverse Cholesky keeps apart): rows and columns of fixed ones are left out
            w = (inv_chol @ cross.reshape(n_e, m, n_k * m)[:, :, free_k]).reshape(n_e * m, -1)[free_e]
            schur = -(w.T @ w)                                         # (F_k, F_k)
            schur.reshape(-1)[at_k] += d_k.reshape(-1)[entries_k]
            chol_k, info = scipy.linalg.lapack.dpotrf(schur, lower=1)
            if info != 0:
                raise np.linalg.LinAlgError("Schur complement is not positive definite")
        except np.linalg.LinAlgError:
            return self.full_solver(h)

        def solve(rhs):
            r_a, r_b = rhs[:n1 * m], rhs[n1 * m:]
            r_e, r_k = (r_b, r_a) if swap else (r_a, r_b)
            u = np.einsum("eij,ej->ei", inv_chol, r_e.reshape(n_e, m)).ravel()
            x_k = r_k.copy()                               # fixed kept variables: identity rows
            if len(free_k):
                x_k[free_k] = scipy.linalg.lapack.dpotrs(chol_k, r_k[free_k] - w.T @ u[free_e], lower=1)[0]
            w_x = np.zeros(n_e * m)
            w_x[free_e] = w @ x_k[free_k]
            x_e = np.einsum("eji,ej->ei", inv_chol, (u - w_x).reshape(n_e, m)).ravel()
            return np.concatenate([x_k, x_e] if swap else [x_e, x_k])
        return solve

    def trusted_step(self, z: np.ndarray, dz: np.ndarray, t: float, nats: float = 2.0) -> float:
        """The largest of t, t/2, t/4, ... at which no g_k exceeds its linearisation at z by
        more than ``nats``. The excess is at most t max_y (dc_k(y) - E_{p_k}[dc_k]) (the upward
        spread), so steps within nats / spread are taken unevaluated; longer ones are checked on
        g itself, whose excess stays far below that bound where the fast-moving targets carry
        little of the block's softmax (blocks whose marginals span many orders of magnitude)."""
        g, p = self.constraints(z)
        d_alpha, d_beta = self.split(dz)
        dc = d_alpha[:, None, :] + d_beta[None, :, :]
        slope = np.sum(p * dc, -1)
        spread = float(np.max(dc - slope[..., None], where=self.support, initial=0.0))
        safe = nats / max(spread, 1e-300)
        if t <= safe:
            return t
        while t > safe:
            excess = self.constraints(z + t * dz)[0] - g - t * slope
            if float(np.max(excess, where=self.blocks, initial=0.0)) <= nats:
                return t
            t *= 0.5
        return safe


def _factor(mat: np.ndarray):
    """A solver for mat x = rhs: Cholesky, with a growing diagonal shift if rounding has made the
    matrix numerically singular (degenerate optima make pivots vanish), and then two steps of
    iterative refinement against the unshifted matrix."""
    scale = max(float(np.diag(mat).max()), 1.0)
    for shift in (0.0, 1e-15, 1e-12, 1e-9, 1e-6):
        try:
            fac = scipy.linalg.cho_factor(mat + shift * scale * np.eye(len(mat)), check_finite=False)
            break
        except np.linalg.LinAlgError:
            continue
    else:
        return lambda rhs: np.linalg.lstsq(mat, rhs, rcond=None)[0]

    def solve(rhs):
        x = scipy.linalg.cho_solve(fac, rhs, check_finite=False)
        for _ in range(2 if shift else 0):
            x += scipy.linalg.cho_solve(fac, rhs - mat @ x, check_finite=False)
        return x
    return solve


def _step_to_boundary(x: np.ndarray, dx: np.ndarray, mask: np.ndarray) -> float:
    """Largest t <= 1 with x + t dx >= 0 on mask."""
    neg = mask & (dx < 0)
    return min(1.0, float(np.min(-x[neg] / dx[neg]))) if neg.any() else 1.0


def _fit_marginals(q: np.ndarray, a: np.ndarray, b: np.ndarray, sweeps: int = 50,
                   newton_steps: int = 30) -> np.ndarray:
    """Rescale q(., ., y) = Q(x1, x2, y) e^{u(x1, y) + v(x2, y)} to the marginals a, b.

    A few sweeps of iterative proportional fitting, then Newton steps on the scalings (as in
    Knight and Ruiz 2013 for matrix balancing), which converge where fitting crawls (slices
    with entries of very different sizes). Rescaling keeps the support and the exponential form.
    """
    q = q.copy()
    n1, n2, m = q.shape
    for _ in range(sweeps):
        rows = q.sum(1)
        q *= np.divide(a, rows, out=np.zeros_like(rows), where=rows > 0)[:, None, :]
        cols = q.sum(0)
        q *= np.divide(b, cols, out=np.zeros_like(cols), where=cols > 0)[None, :, :]
        if np.abs(q.sum(1) - a).max() <= 1e-15:            # the columns fit exactly now
            return q
    idx = np.arange(n1 + n2)
    for _ in range(newton_steps):
        rows, cols = q.sum(1), q.sum(0)
        residual = np.concatenate([a - rows, b - cols]).T                     # (m, n1 + n2)
        if np.abs(residual).max() <= 1e-15:
            break
        jac = np.zeros((m, n1 + n2, n1 + n2))                                 # one system per y
        jac[:, :n1, n1:] = q.transpose(2, 0, 1)
        jac[:, n1:, :n1] = q.transpose(2, 1, 0)
        diag = np.concatenate([rows, cols]).T
        # Values without mass get a unit pivot; a tiny ridge fixes the gauge u + t, v - t.
        jac[:, idx, idx] = np.where(diag > 0, diag, 1.0) + 1e-14 * diag.max(1, keepdims=True)
        step = np.linalg.solve(jac, residual[..., None])[..., 0]
        step /= np.maximum(1.0, np.abs(step).max(1, keepdims=True))  # at most a factor e per step
        q *= np.exp(step[:, :n1].T[:, None, :] + step[:, n1:].T[None, :, :])
    return q


def _certify(dual: _Dual, z: np.ndarray, s: np.ndarray) -> tuple[np.ndarray | None, float]:
    """A feasible table from the iterate and its certified gap f(Q) - dual value (nats), or
    (None, inf) if the marginals cannot be fitted to rounding.

    Q = s_k p_k is fitted exactly onto the marginals (``_fit_marginals``); the dual point is
    shifted by max(g, 0) on alpha to make it feasible, which lowers the dual value by exactly
    that shift since sum(a) = 1. Weak duality then bounds f(Q) - min f by the difference.
    """
    g, p = dual.constraints(z)
    q = _fit_marginals(s[..., None] * p, dual.a, dual.b)
    residual = max(np.abs(q.sum(1) - dual.a).max(), np.abs(q.sum(0) - dual.b).max())
    if not residual <= 1e-13:                           # not feasible (or not finite): no certificate
        return None, np.inf
    shift = max(0.0, float(g[dual.blocks].max()))
    return q, _conditional_neg_entropy(q) - (dual.value(z) - shift)


def _interior_point(a: np.ndarray, b: np.ndarray, gap_tol: float, cautious: bool = False,
                    max_iter: int = 200, patience: int = 4) -> tuple[np.ndarray | None, float]:
    """Primal-dual interior-point method on the dual; returns (Q*, certified gap in nats), or
    (None, inf) if no iterate could be certified.

    Unknowns: the dual point z, block masses s_k > 0 and slacks v_k > 0. Each iteration is a
    Mehrotra predictor-corrector Newton step on the perturbed optimality conditions

        sum_k s_k grad g_k(z) = (a, b),     g_k(z) + v_k = 0,     s_k v_k = sigma mu

    (the first says that Q = s_k p_k has the marginals of P), reduced to one symmetric positive
    definite system in z. A step stops short of the boundary of s, v > 0, and is also kept
    short enough that no g_k exceeds its linear prediction by more than two nats (beyond
    that the Newton model of the nonlinear g_k is not to be trusted; see ``trusted_step``).
    The centring target is kept above a multiple of the residual so that the iterates cannot
    reach the boundary before they reach feasibility: a small multiple by default, a large one
    with ``cautious``, which also factorises the Newton matrix whole (slower, but robust on
    tables with tiny or structurally sparse marginals). Once gap and residuals are small the
    iterate is certified (see ``_certify``) until the certificate meets ``gap_tol`` or has not
    improved ``patience`` times in a row (the floating-point floor of extreme tables). Without
    ``cautious`` the run gives up early when max(residual, gap) has not halved in 8 iterations.
    """
    dual = _Dual(a, b)
    blocks, n_blocks = dual.blocks, dual.n_blocks

    def residuals(z, s, v):
        g, p = dual.constraints(z)
        q = s[..., None] * p
        r_dual = dual.marginals(q) - dual.target
        r_dual[dual.fixed] = 0.0
        return p, q, r_dual, np.where(blocks, g + v, 0.0)

    z = np.zeros(dual.dim)
    z[:dual.n1 * dual.m] = -np.log(dual.m) - 1.0         # strictly feasible: every g_k <= -1
    s = blocks / n_blocks
    v = np.where(blocks, -dual.constraints(z)[0], 1.0)
    p, q, r_dual, r_slack = residuals(z, s, v)
    mu_per_res = ((0.1 if cautious else 1e-4) / n_blocks) / max(np.abs(r_dual).max(), 1e-3)
    best_q, best_gap, stalls = None, np.inf, 0
    best_progress, since = np.inf, 0
    for _ in range(max_iter):
        mu = float(np.sum(s * v, where=blocks)) / n_blocks
        res = max(np.abs(r_dual).max(), np.abs(r_slack).max())
        if not (np.isfinite(mu) and np.isfinite(res)):
            break
        progress = max(res, n_blocks * mu)
        best_progress, since = (progress, 0) if progress < 0.5 * best_progress else (best_progress, since + 1)
        if since >= 8 and not cautious:
            break
        if n_blocks * mu <= 0.1 * gap_tol and res <= 1e-7:
            q_cert, gap = _certify(dual, z, s)
            stalls = 0 if gap < 0.5 * best_gap else stalls + 1
            if gap < best_gap:
                best_q, best_gap = q_cert, gap
            if best_gap <= gap_tol or stalls >= patience:
                break
        h = dual.hessian_blocks(q, p, s / v - s)
        solve = dual.full_solver(h) if cautious else dual.solver(h)

        def direction(r_comp):
            rhs = dual.marginals(p * ((r_comp - s * r_slack) / v)[..., None]) - r_dual
            rhs[dual.fixed] = 0.0
            dz = solve(rhs)
            d_alpha, d_beta = dual.split(dz)
            dc = d_alpha[:, None, :] + d_beta[None, :, :]
            dv = np.where(blocks, -r_slack - np.sum(p * dc, -1), 0.0)
            ds = np.where(blocks, (-r_comp - s * dv) / v, 0.0)
            return dz, dv, ds

        dz, dv, ds = direction(s * v)                                          # predictor
        t = min(_step_to_boundary(s, ds, blocks), _step_to_boundary(v, dv, blocks))
        mu_aff = float(np.sum((s + t * ds) * (v + t * dv), where=blocks)) / n_blocks
        mu_target = max((mu_aff / mu) ** 3 * mu, min(0.5 * mu, res * mu_per_res))
        dz, dv, ds = direction(s * v + ds * dv - mu_target)                   # corrector
        t = 0.99 * min(_step_to_boundary(s, ds, blocks), _step_to_boundary(v, dv, blocks))
        t = dual.trusted_step(z, dz, t)
        z, s, v = z + t * dz, s + t * ds, v + t * dv
        p, q, r_dual, r_slack = residuals(z, s, v)
    if best_q is None:
        best_q, best_gap = _certify(dual, z, s)
    return best_q, best_gap


def _one_blas_thread(width: int):
    """Run BLAS single-threaded while factorising systems of this width (if threadpoolctl is
    installed). They are at most a few hundred wide: extra BLAS threads only add
    synchronisation, which on a busy machine slows the solver down many times over."""
    if width < 128:                                        # not worth the call
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _optimum(p: np.ndarray, gap_tol: float, warn_gap: float) -> tuple[np.ndarray, float]:
    """Q* and its certified gap (nats) for a checked, normalised table."""
    a, b = p.sum(1), p.sum(0)
    support = (a > 0)[:, None, :] & (b > 0)[None, :, :]
    if min(p.shape[:2]) == 1 or np.all(support.sum(-1) <= 1):
        # One source takes a single value (the other's marginal with Y then fixes the table), or
        # every block of Delta_P has at most one target value (H_Q(Y|X1,X2) = 0 on all of it).
        return p.copy(), 0.0
    with _one_blas_thread(min(p.shape[:2]) * p.shape[2]):
        q, gap = _interior_point(a, b, gap_tol)
        if gap > 100 * gap_tol:
            q_safe, gap_safe = _interior_point(a, b, gap_tol, cautious=True)
            if gap_safe < gap:
                q, gap = q_safe, gap_safe
    if q is None:
        # No certified table (seen only on tables spanning nine or more orders of magnitude):
        # fall back on the conditionally independent coupling, which lies in Delta_P.
        q = np.einsum("iy,jy->ijy", a, np.divide(b, b.sum(0), out=np.zeros_like(b), where=b > 0))
    if not gap <= warn_gap * _LN2:
        warnings.warn(f"BROJA solver stopped with a certified optimality gap of {gap / _LN2:.2e} "
                      "bits; the atoms may be off by that much", RuntimeWarning, stacklevel=3)
    return q, gap


def broja_optimum(p, gap_tol: float = 1e-10, warn_gap: float = 1e-7) -> tuple[np.ndarray, float]:
    """The minimiser Q* of I_Q(X1,X2;Y) over Delta_P and its certified optimality gap.

    Parameters
    ----------
    p : array_like, shape (|X1|, |X2|, |Y|)
        Non-negative joint table (normalised inside).
    gap_tol : float
        Target gap in nats: the solver stops once a certified bound on
        I_Q(X1,X2;Y) - min over Delta_P is below it.
    warn_gap : float
        A ``RuntimeWarning`` is raised if the certified gap ends above this many bits (where
        rounding limits the Newton steps: not seen on 15,000 random tables of up to 4x4x4
        cells drawn from {0, 1e-6, 1e-3, 0.01, 0.3, 1, 2.5}, mostly zeros and 1e-6).

    Returns
    -------
    q : numpy.ndarray, shape (|X1|, |X2|, |Y|)
        The optimal table; its (x1, y) and (x2, y) marginals are those of P to rounding.
    gap : float
        Certified bound, in bits, on I_Q(X1,X2;Y) - min over Delta_P, hence on the error of
        every atom of ``broja(p)``.

    Raises
    ------
    ValueError
        For an invalid table (see ``check_table``).
    """
    q, gap = _optimum(check_table(p), gap_tol, warn_gap)
    return q, gap / _LN2


def broja(p) -> PID:
    """BROJA partial information decomposition of a joint table, in bits.

    Parameters
    ----------
    p : array_like, shape (|X1|, |X2|, |Y|)
        Non-negative counts or probabilities of (source 1, source 2, target); normalised inside.

    Returns
    -------
    PID
        Redundancy, the two unique informations and synergy (bits), with
        R + U1 = I(X1;Y), R + U2 = I(X2;Y) and R + U1 + U2 + S = I(X1,X2;Y).

    Raises
    ------
    ValueError
        For a table that is not 3-D, has an empty axis, NaN/inf or negative entries, or is all zero.

    Examples
    --------
    >>> import numpy as np
    >>> xor = np.zeros((2, 2, 2))
    >>> for x1 in (0, 1):
    ...     for x2 in (0, 1):
    ...         xor[x1, x2, x1 ^ x2] = 0.25
    >>> round(broja(xor).synergy, 6)
    1.0
    """
    p = check_table(p)
    i1, i2, i12 = source_target_informations(p)
    q, gap = _optimum(p, gap_tol=1e-10, warn_gap=1e-7)
    i_q = entropy(q.sum((0, 1))) + _conditional_neg_entropy(q) / _LN2
    # The minimum lies in [i_q - gap, i_q] and keeps every atom non-negative; move i_q within
    # that certified interval towards the admissible range (a no-op unless the gap is large).
    lo, hi = max(i1, i2, i_q - gap / _LN2), min(i1 + i2, i12, i_q)
    if lo <= hi:
        i_q = min(max(i_q, lo), hi)
    atoms = (i1 + i2 - i_q, i_q - i2, i_q - i1, i12 - i_q)
    return PID(*(0.0 if -1e-9 < v < 0 else float(v) for v in atoms))
