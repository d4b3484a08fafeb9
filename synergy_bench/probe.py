"""Linear probes and the information about a task they certify.

A probe is multinomial logistic regression (L-BFGS) on standardised embeddings. Its inverse
regularisation C is chosen on a hold-out split of the *training* set; the probe is then refit on
the whole training set and scored once on the test set. The test set never chooses anything.

Certified bits: for test pairs (x, y) and the probe's predictive q(y | x),

    bits = H(Y) - CE,    CE = -(1/N) sum_n log2 q(y_n | x_n),

with H(Y) the entropy of the test labels. Since CE >= H(Y | X) for any q, ``bits`` is a lower bound
on I(X; Y) up to sampling error (it may be negative for a badly calibrated probe).
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.preprocessing import StandardScaler


def entropy_bits(y: np.ndarray, n_classes: int) -> float:
    """Plug-in entropy (bits) of integer labels."""
    p = np.bincount(y, minlength=n_classes) / len(y)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def _fit(x: np.ndarray, y: np.ndarray, C: float, max_iter: int) -> LogisticRegression:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(C=C, max_iter=max_iter).fit(x, y)


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 n_classes: int, rng: np.random.Generator, Cs: list[float] = (0.01, 0.1, 1.0, 10.0),
                 holdout: float = 0.2, max_iter: int = 500) -> dict:
    """Fit a linear probe on train, choose C on a hold-out of train, score on test.

    Returns
    -------
    dict
        ``balanced_accuracy`` (0-1), ``bits`` (H(Y) - CE on test), ``C`` (chosen), ``pred`` (test
        predictions, int array).
    """
    scaler = StandardScaler().fit(train_x)
    xtr, xte = scaler.transform(train_x), scaler.transform(test_x)
    if len(np.unique(train_y)) < 2:  # nothing to learn: predict the only class
        pred = np.full(len(test_y), train_y[0])
        q = np.where(test_y == train_y[0], 1.0, 1e-12)
        return {"balanced_accuracy": float(balanced_accuracy_score(test_y, pred)),
                "bits": entropy_bits(test_y, n_classes) + float(np.mean(np.log2(q))),
                "C": float("nan"), "pred": pred}
    order = rng.permutation(len(xtr))
    n_hold = max(1, int(round(holdout * len(xtr))))
    hold, fit = order[:n_hold], order[n_hold:]
    scores = []
    for C in Cs:
        clf = _fit(xtr[fit], train_y[fit], C, max_iter)
        scores.append(balanced_accuracy_score(train_y[hold], clf.predict(xtr[hold])))
    best = float(Cs[int(np.argmax(scores))])
    clf = _fit(xtr, train_y, best, max_iter)
    proba = np.full((len(xte), n_classes), 1e-12)
    proba[:, clf.classes_] = np.clip(clf.predict_proba(xte), 1e-12, None)
    proba /= proba.sum(1, keepdims=True)
    ce = -np.mean(np.log2(proba[np.arange(len(test_y)), test_y]))
    pred = clf.classes_[np.argmax(clf.predict_proba(xte), 1)]
    return {"balanced_accuracy": float(balanced_accuracy_score(test_y, pred)),
            "bits": entropy_bits(test_y, n_classes) - float(ce), "C": best, "pred": pred}
