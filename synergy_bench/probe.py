r"""Probes: how much of a task a representation holds, as accuracy and as certified bits.

A probe reads a task's label y from an embedding x. Two kinds:

* ``linear``: multinomial logistic regression (L-BFGS) on standardised embeddings, the probe of
  the published protocols (CoMM, InfMasking). Its inverse regularisation C is chosen by balanced
  accuracy on a hold-out split of the *training* set.
* ``mlp``: a ReLU network (two hidden layers of 256 by default) on standardised embeddings,
  trained with Adam on cross-entropy and stopped early on the hold-out cross-entropy. It tells
  "not linearly readable" apart from "absent".

The test set never chooses anything; it is scored once.

**Accuracy.** Balanced accuracy of the probe's most probable label on the test set. The linear
probe is refit on the whole training set with the chosen C (the published protocol); the MLP is
the early-stopped network, trained on the fit part.

**Certified bits.** Let ``fit`` and ``hold`` be the two parts of the training set (n_hold
samples in ``hold``), z(x) the logits of the probe trained on ``fit`` (for the linear probe:
the one of the chosen C) and q_0(y) the label prior, the Krichevsky-Trofimov estimate
(count + 1/2) / (N + C / 2) from the ``fit`` labels.

1. *Calibration*: temperature scaling (Guo, Pleiss, Sun and Weinberger 2017) of a floored
   predictive distribution,

   .. math::

       q_T(y \mid x) = (1 - \epsilon)\, \mathrm{softmax}(z(x) / T)_y + \epsilon\, q_0(y),
       \qquad \epsilon = 1 / (n_{hold} + 2),

   with T minimising the cross-entropy on ``hold``. The floor is Laplace's rule of succession:
   a hold-out with no error cannot vouch for an error rate below 1 / (n_hold + 2), so a test
   error costs at most log2(1 / (epsilon q_0(y))) bits instead of an unbounded amount; it costs
   at most -log2(1 - epsilon) ~ 1.44 / n_hold bits where the probe is always right.
2. *Prior or probe*: q_0 and q_T compete on ``hold``; the one with the lower hold-out
   cross-entropy wins. Since T is fitted on ``hold``, q_T's cross-entropy there is cross-fitted
   for this choice (T fitted on one half of ``hold`` and scored on the other, both ways), so the
   prior and the probe are compared out of sample.
3. On the N test pairs (x_n, y_n), with :math:`\hat p` the test label frequencies,

   .. math::

       \text{bits} = \hat H(Y) - \mathrm{CE}(q_T), \qquad
       \hat H(Y) = -\sum_y \hat p(y) \log_2 \hat p(y), \qquad
       \mathrm{CE}(q) = -\frac1N \sum_n \log_2 q(y_n \mid x_n)

   if q_T won, and bits = 0 if the prior won (a predictor that ignores x certifies nothing;
   scoring q_0 itself would give :math:`-\mathrm{KL}(\hat p \,\|\, q_0) < 0`, the sampling
   error of the training labels' frequencies, about -(C - 1) / (2 N ln 2) bits).

*Guarantee.* Everything that picks q (C, the early stop, T, prior or probe) sees training data
only, so given the training set q is a fixed distribution and the test pairs are fresh draws of
p(x, y). For any fixed q, :math:`E[\mathrm{CE}(q)] = H(Y \mid X) + E_x \mathrm{KL}(p(\cdot \mid x)
\,\|\, q(\cdot \mid x)) \ge H(Y \mid X)`; the plug-in entropy is biased downwards,
:math:`E[\hat H(Y)] \le H(Y)` (concavity). Given the training set, bits is either 0 or
:math:`\hat H(Y) - \mathrm{CE}(q_T)` for a fixed q_T; either way :math:`E[\text{bits}] \le I(X; Y)`, and
:math:`I(X;Y)` of the embedding is at most the information the inputs hold on the task (data
processing): a lower bound in expectation, with no assumption on the data. It is tight when q_T
is close to p(y | x); step 1 removes the over- and under-confidence that made an uncalibrated
probe score far below zero, and step 2 makes a representation that holds nothing score 0.

*Sampling error.* One test set gives bits within a few standard errors of their expectation.
The standard error is reported as ``bits_se`` = std_n(v_n) / sqrt(N), with
:math:`v_n = \log_2 q_T(y_n \mid x_n) - \log_2 \hat p(y_n)` the influence of sample n on
bits (delta method; bits is the mean of v_n); it is 0 when the prior won. Where x and y are
independent, bits exceed t with probability at most 2^{-N t} whatever q is (Markov's
inequality on :math:`\prod_n q(y_n \mid x_n) / p(y_n)`, whose expectation is 1, and
:math:`\hat H(Y) \le \mathrm{CE}(p)`); the choice of q_T over the prior on ``hold`` keeps
bits above zero up to the hold-out's own sampling error. The diagnostics also give
``bits_calibrated`` (the calibrated probe's bits, even where the prior won) and
``bits_uncalibrated`` (H^(Y) - CE of the untempered probe that gives the accuracy).
"""
from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.preprocessing import StandardScaler
from torch import nn

from synergy_bench.nn import mlp, seeded_init

KINDS = ("linear", "mlp")
_LOG2 = math.log(2.0)


def entropy_bits(y: np.ndarray, n_classes: int) -> float:
    """Plug-in entropy (bits) of integer labels."""
    p = np.bincount(y, minlength=n_classes) / len(y)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def fit_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
              n_classes: int, rng: np.random.Generator, *, kind: str = "linear",
              Cs: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0), holdout: float = 0.2, max_iter: int = 500,
              **options) -> dict:
    """Fit a probe on train (choices on a hold-out of train), score it once on test.

    Parameters
    ----------
    train_x, test_x : ndarray, shape (N, D)
        Embeddings.
    train_y, test_y : ndarray of int, shape (N,)
        Labels in 0 .. n_classes - 1.
    n_classes : int
        Number of label symbols.
    rng : numpy.random.Generator
        Draws the hold-out split and (``mlp``) the seed of the network's initialisation and batches.
    kind : {'linear', 'mlp'}
        Probe; see the module docstring.
    Cs : sequence of float
        Inverse regularisation strengths tried by the linear probe.
    holdout : float
        Fraction of the training set held out (0 < holdout < 1).
    max_iter : int
        L-BFGS iterations of the linear probe.
    **options
        For ``mlp``: ``hidden`` ((256, 256)), ``lr`` (1e-3), ``weight_decay`` (0), ``batch_size``
        (256), ``max_epochs`` (200), ``patience`` (10), ``device`` ('cpu').

    Returns
    -------
    dict
        ``balanced_accuracy`` (0-1, test), ``bits`` (certified bits, module docstring),
        ``pred`` (test predictions, int array) and the diagnostics ``bits_se``,
        ``bits_calibrated``, ``bits_uncalibrated``, ``prior_won`` (bool), ``temperature`` (T; None
        where no probe was fit), ``C`` (linear: chosen; mlp: None) and ``epochs`` (mlp: epoch
        kept; linear: 0).

    Raises
    ------
    ValueError
        For an unknown kind, a hold-out fraction outside (0, 1) or labels outside 0 .. n_classes - 1.
    TypeError
        For an option the kind does not take.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown probe kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "linear" and options:
        raise TypeError(f"the linear probe takes no option {', '.join(map(repr, options))}")
    if not 0 < holdout < 1:
        raise ValueError(f"holdout = {holdout} must lie strictly between 0 and 1")
    for name, y in (("train_y", train_y), ("test_y", test_y)):
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"{name} holds labels outside 0..{n_classes - 1}")
    scaler = StandardScaler().fit(train_x)
    xtr, xte = scaler.transform(train_x), scaler.transform(test_x)
    order = rng.permutation(len(xtr))
    n_hold = min(len(xtr) - 1, max(1, int(round(holdout * len(xtr)))))
    hold, fit = order[:n_hold], order[n_hold:]
    counts = np.bincount(train_y[fit], minlength=n_classes)
    log_prior = np.log((counts + 0.5) / (counts.sum() + 0.5 * n_classes))       # (C,)
    h_test = entropy_bits(test_y, n_classes)

    if len(np.unique(train_y[fit])) < 2:  # nothing to learn: predict the most frequent class
        pred = np.full(len(test_y), np.argmax(np.bincount(train_y, minlength=n_classes)))
        bits_prior = h_test + _mean_log2(log_prior[None], test_y)
        return {"balanced_accuracy": float(balanced_accuracy_score(test_y, pred)), "bits": 0.0,
                "pred": pred, "bits_se": 0.0, "bits_calibrated": bits_prior,
                "bits_uncalibrated": bits_prior, "prior_won": True, "temperature": None,
                "C": None, "epochs": 0}

    reader = _linear if kind == "linear" else _mlp
    out = reader(xtr, train_y, xte, fit, hold, n_classes, rng, Cs=Cs, max_iter=max_iter, **options)
    z_hold, z_test, z_acc = (out.pop(k) for k in ("logits_hold", "logits_test", "logits_accuracy"))
    floor = 1.0 / (n_hold + 2)
    temperature = _temperature(z_hold, train_y[hold], floor, log_prior)
    log_q = _calibrated(z_test, temperature, floor, log_prior)                   # (N, C)
    prior_won = (_cross_entropy(log_prior[None], train_y[hold])
                 <= _cross_fitted(z_hold, train_y[hold], floor, log_prior))
    p_test = np.bincount(test_y, minlength=n_classes) / len(test_y)
    v = (log_q[np.arange(len(test_y)), test_y] - np.log(p_test[test_y])) / _LOG2  # (N,)
    proba = np.clip(np.exp(log_softmax(z_acc, axis=1)), 1e-12, None)             # the former bits
    pred = np.argmax(z_acc, 1)
    return {"balanced_accuracy": float(balanced_accuracy_score(test_y, pred)),
            "bits": 0.0 if prior_won else float(v.mean()), "pred": pred,
            "bits_se": 0.0 if prior_won else float(v.std() / math.sqrt(len(v))),
            "bits_calibrated": float(v.mean()),
            "bits_uncalibrated": h_test + _mean_log2(np.log(proba / proba.sum(1, keepdims=True)), test_y),
            "prior_won": prior_won, "temperature": float(temperature), **out}


# --------------------------------------------------------------------------- calibration


def _cross_entropy(log_q: np.ndarray, y: np.ndarray) -> float:
    """-mean_n log q(y_n | x_n) in nats, for log-probabilities (N, C) or (1, C)."""
    return float(-np.mean(np.broadcast_to(log_q, (len(y), log_q.shape[1]))[np.arange(len(y)), y]))


def _mean_log2(log_q: np.ndarray, y: np.ndarray) -> float:
    return -_cross_entropy(log_q, y) / _LOG2


def _calibrated(logits: np.ndarray, temperature: float, floor: float, log_prior: np.ndarray) -> np.ndarray:
    """log[(1 - floor) softmax(logits / T) + floor q_0], shape (N, C)."""
    return np.logaddexp(math.log1p(-floor) + log_softmax(logits / temperature, axis=1),
                        math.log(floor) + log_prior[None])


def _temperature(logits: np.ndarray, y: np.ndarray, floor: float, log_prior: np.ndarray,
                 log_range: float = 12.0) -> float:
    """T minimising the cross-entropy of the calibrated q on (logits, y) over log T in
    [-log_range, log_range]: a bounded scalar search, checked on a grid of step 1/4.

    The floor makes the loss flat where q is very sharp (a wrong label costs about
    -log(floor q_0) whatever T) or very soft, so it need not have one minimum: with noisy labels
    the search can stop on the sharp plateau (T near 0.002) far above the best T. Where a grid
    point beats the search's T, the search is rerun between that point's neighbours; elsewhere
    its T is kept as found."""
    def nll(log_t: float) -> float:
        return _cross_entropy(_calibrated(logits, math.exp(log_t), floor, log_prior), y)

    def search(lo: float, hi: float) -> float:
        return minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-4}).x

    best = search(-log_range, log_range)
    grid = np.linspace(-log_range, log_range, int(8 * log_range) + 1)
    values = np.array([nll(g) for g in grid])
    i = int(np.argmin(values))
    if values[i] < nll(best) - 1e-6:
        best = search(grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)])
    return math.exp(best)


def _cross_fitted(logits: np.ndarray, y: np.ndarray, floor: float, log_prior: np.ndarray) -> float:
    """Out-of-sample cross-entropy (nats) of the calibrated q on (logits, y): T fitted on one
    half and scored on the other, both ways (in-sample for fewer than 2 samples)."""
    halves = (slice(0, None, 2), slice(1, None, 2))
    pairs = zip(halves, halves[::-1]) if len(y) >= 2 else [(slice(None), slice(None))]
    total = 0.0
    for a, b in pairs:
        t = _temperature(logits[a], y[a], floor, log_prior)
        total += len(y[b]) * _cross_entropy(_calibrated(logits[b], t, floor, log_prior), y[b])
    return total / len(y)


# --------------------------------------------------------------------------- linear


def _fit_logistic(x: np.ndarray, y: np.ndarray, C: float, max_iter: int) -> LogisticRegression:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(C=C, max_iter=max_iter).fit(x, y)


def _logits(clf: LogisticRegression, x: np.ndarray, n_classes: int) -> np.ndarray:
    """Logits over all n_classes; a class the fit never saw gets probability ~0 (logit -30 below)."""
    d = clf.decision_function(x)
    d = np.stack([np.zeros_like(d), d], 1) if d.ndim == 1 else d              # (N, classes seen)
    z = np.repeat(d.min(1, keepdims=True) - 30.0, n_classes, axis=1)
    z[:, clf.classes_] = d
    return z


def _linear(xtr, ytr, xte, fit, hold, n_classes, rng, *, Cs, max_iter) -> dict:
    models, scores = [], []
    for C in Cs:
        models.append(_fit_logistic(xtr[fit], ytr[fit], C, max_iter))
        scores.append(balanced_accuracy_score(ytr[hold], models[-1].predict(xtr[hold])))
    best = int(np.argmax(scores))
    full = _fit_logistic(xtr, ytr, Cs[best], max_iter)                          # the published protocol
    return {"logits_hold": _logits(models[best], xtr[hold], n_classes),
            "logits_test": _logits(models[best], xte, n_classes),
            "logits_accuracy": _logits(full, xte, n_classes), "C": float(Cs[best]), "epochs": 0}


# --------------------------------------------------------------------------- mlp


def train_classifier(net: nn.Module, x: torch.Tensor, y: torch.Tensor, fit: torch.Tensor,
                     held: torch.Tensor, gen: torch.Generator, *, batch_size: int = 256,
                     lr: float = 1e-3, weight_decay: float = 0.0, max_epochs: int = 200,
                     patience: int = 10, min_delta: float = 1e-3) -> tuple[nn.Module, int]:
    """Cross-entropy training of ``net`` on x[fit], stopped early on the loss on x[held].

    Adam (decoupled weight decay where ``weight_decay`` > 0) on shuffled batches drawn from
    ``gen``; training stops once ``patience`` epochs pass without the held-out loss falling
    ``min_delta`` nats below its best. Returns the network in its best state (eval mode) and
    that state's epoch (0: the initial network).
    """
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    best, best_state, best_epoch = math.inf, copy.deepcopy(net.state_dict()), 0
    for epoch in range(1, max_epochs + 1):
        net.train()
        order = fit[torch.randperm(len(fit), generator=gen).to(fit.device)]
        for idx in order.tensor_split(max(1, math.ceil(len(fit) / batch_size))):
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            held_loss = float(nn.functional.cross_entropy(net(x[held]), y[held]))
        if held_loss < best - min_delta:
            best, best_state, best_epoch = held_loss, copy.deepcopy(net.state_dict()), epoch
        elif epoch - best_epoch >= patience:
            break
    net.load_state_dict(best_state)
    return net.eval(), best_epoch


def _mlp(xtr, ytr, xte, fit, hold, n_classes, rng, *, Cs, max_iter, hidden=(256, 256), lr=1e-3,
         weight_decay=0.0, batch_size=256, max_epochs=200, patience=10, device="cpu") -> dict:
    gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
    net = seeded_init(mlp([xtr.shape[1], *hidden, n_classes]), gen).to(device)
    x = torch.as_tensor(xtr, dtype=torch.float32, device=device)
    net, epoch = train_classifier(net, x, torch.as_tensor(ytr, device=device),
                                  torch.as_tensor(fit, device=device), torch.as_tensor(hold, device=device),
                                  gen, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                  max_epochs=max_epochs, patience=patience)
    with torch.no_grad():
        z_hold = net(x[torch.as_tensor(hold, device=device)]).double().cpu().numpy()
        z_test = net(torch.as_tensor(xte, dtype=torch.float32, device=device)).double().cpu().numpy()
    return {"logits_hold": z_hold, "logits_test": z_test, "logits_accuracy": z_test,
            "C": None, "epochs": epoch}
