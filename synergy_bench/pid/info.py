"""Entropies and mutual informations of discrete tables, in bits.

All functions take non-negative arrays that need not sum to one (they are normalised inside) and
use the convention 0 log 0 = 0.
"""

from __future__ import annotations

import numpy as np


def entropy(p: np.ndarray) -> float:
    r"""Shannon entropy of a (joint) table, in bits.

    .. math:: H(P) = -\sum_i P_i \log_2 P_i, \qquad P = p / \textstyle\sum p .

    Parameters
    ----------
    p : array_like
        Non-negative table of any shape; every cell is one outcome.

    Returns
    -------
    float
        The entropy in bits.
    """
    p = np.asarray(p, dtype=float).ravel()
    p = p[p > 0] / p.sum()
    return float(-np.sum(p * np.log2(p)))


def mutual_information(p_xy: np.ndarray) -> float:
    r"""Mutual information between the two axes of a 2-D joint table, in bits.

    .. math:: I(X;Y) = H(X) + H(Y) - H(X,Y).

    Parameters
    ----------
    p_xy : array_like, shape (|X|, |Y|)
        Non-negative joint table of X (rows) and Y (columns).

    Returns
    -------
    float
        I(X;Y) in bits, clipped at 0 against rounding.
    """
    p_xy = np.asarray(p_xy, dtype=float)
    if p_xy.ndim != 2:
        raise ValueError(f"mutual_information needs a 2-D joint table, got shape {p_xy.shape}; "
                         "sum out the other axes first")
    mi = entropy(p_xy.sum(1)) + entropy(p_xy.sum(0)) - entropy(p_xy)
    return max(mi, 0.0)


def source_target_informations(p: np.ndarray) -> tuple[float, float, float]:
    r"""The three informations a bivariate PID splits, in bits.

    Parameters
    ----------
    p : array_like, shape (|X1|, |X2|, |Y|)
        Non-negative joint table of two sources and a target.

    Returns
    -------
    (float, float, float)
        :math:`I(X_1;Y)`, :math:`I(X_2;Y)` and :math:`I(X_1,X_2;Y)`.
    """
    p = np.asarray(p, dtype=float)
    i1 = mutual_information(p.sum(1))
    i2 = mutual_information(p.sum(0))
    i12 = mutual_information(p.reshape(-1, p.shape[-1]))
    return i1, i2, i12
