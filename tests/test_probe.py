"""Probes: certified bits are ~0 where the embedding holds nothing, ~H(Y) where it holds the label,
never far below the prior's 0, the MLP reads what the linear probe cannot, and a seed fixes all.

Tolerances are derived from the sample sizes (N test pairs, N_fit training pairs the probe
and the prior are fitted on), at a failure probability delta = 1e-6 per assertion:
- above 0 where x and y are independent: P(bits >= t) <= 2^{-N t} for any q (Markov's
  inequality, see synergy_bench.probe), so t = log2(1 / delta) / N;
- below 0: a q that ignores x loses KL(p_test || q_marginal) to the test frequencies, and
  2 ln 2 KL ~ chi2_{C-1} (1/N + 1/N_fit) in bits, so t = chi2_{C-1}(1 - delta) / (2 ln 2) (1/N + 1/N_fit).
"""
import math

import numpy as np
import pytest
from scipy.stats import chi2

from synergy_bench.probe import _calibrated, _cross_entropy, _temperature, entropy_bits, fit_probe

pytestmark = pytest.mark.usefixtures("one_thread")

DELTA = 1e-6
FAST_MLP = {"hidden": (64,), "patience": 5}


def above_zero(n_test: int) -> float:
    return math.log2(1 / DELTA) / n_test


def below_zero(n_classes: int, n_test: int, n_fit: int) -> float:
    return chi2.ppf(1 - DELTA, n_classes - 1) / (2 * math.log(2)) * (1 / n_test + 1 / n_fit)


def split(x, y, n_train):
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


@pytest.mark.parametrize("kind, n_classes, seed", [("linear", 2, 0), ("linear", 3, 1), ("linear", 5, 2),
                                                   ("mlp", 2, 3), ("mlp", 3, 4)])
def test_independent_embedding_scores_about_zero(kind, n_classes, seed):
    rng = np.random.default_rng(seed)
    n_train, n_test = 2000, 1000
    x = rng.standard_normal((n_train + n_test, 8))
    y = rng.integers(0, n_classes, n_train + n_test)
    opts = FAST_MLP if kind == "mlp" else {}
    res = fit_probe(*split(x, y, n_train), n_classes, np.random.default_rng(seed), kind=kind, **opts)
    n_fit = n_train - round(0.2 * n_train)
    assert -below_zero(n_classes, n_test, n_fit) <= res["bits"] <= above_zero(n_test)
    assert res["bits"] == 0.0 if res["prior_won"] else res["bits"] == res["bits_calibrated"]


@pytest.mark.parametrize("kind, n_classes", [("linear", 2), ("linear", 4), ("mlp", 4)])
def test_perfectly_informative_embedding_scores_the_label_entropy(kind, n_classes):
    """Well separated classes: every test label is predicted with probability 1 - eps + eps q_0(y)
    (eps = 1 / (n_hold + 2), the floor), so bits = H^(Y) - CE lies in [H^(Y) + log2(1 - eps), H^(Y)]."""
    rng = np.random.default_rng(n_classes)
    n_train, n_test = 1000, 1000
    y = rng.integers(0, n_classes, n_train + n_test)
    x = 5 * np.eye(n_classes)[y] + 0.1 * rng.standard_normal((n_train + n_test, n_classes))
    opts = FAST_MLP if kind == "mlp" else {}
    res = fit_probe(*split(x, y, n_train), n_classes, np.random.default_rng(0), kind=kind, **opts)
    h = entropy_bits(y[n_train:], n_classes)
    eps = 1 / (round(0.2 * n_train) + 2)
    assert h + math.log2(1 - eps) - 1e-9 <= res["bits"] <= h + 1e-12
    assert res["balanced_accuracy"] == 1.0 and not res["prior_won"]


def test_calibration_rescues_an_overconfident_probe():
    """A weakly regularised probe on few samples in many dimensions fits noise with confidence:
    its uncalibrated bits fall far below 0, the calibrated ones stay within the tolerance of the
    prior's 0, on noise and on a weak signal alike; on the signal they are positive."""
    rng = np.random.default_rng(5)
    n_train, n_test, d = 400, 2000, 200
    x = rng.standard_normal((n_train + n_test, d))
    n_fit = n_train - round(0.2 * n_train)
    signal = (x[:, 0] + 0.5 * rng.standard_normal(n_train + n_test) > 0).astype(int)
    for y in (rng.integers(0, 2, n_train + n_test), signal):
        res = fit_probe(*split(x, y, n_train), 2, np.random.default_rng(0), Cs=(10.0,))
        assert res["bits_uncalibrated"] < -0.5
        assert res["bits"] >= -below_zero(2, n_test, n_fit)
    assert res["bits"] > 0.1 and res["bits_se"] > 0


def test_temperature_is_the_best_on_the_hold_out_with_noisy_labels():
    """Confident logits and 5-30 % of the labels redrawn: the floored loss has a plateau at very
    small T besides its minimum near the noise level. The chosen T's hold-out loss is the least
    on a fine grid of log T (a search alone stops on the plateau in about a third of such cases)."""
    rng = np.random.default_rng(0)
    n, c = 400, 4
    floor, log_prior = 1 / (n + 2), np.log(np.full(c, 1 / c))
    for _ in range(15):
        truth = rng.integers(0, c, n)
        logits = rng.normal(0, 1, (n, c))
        logits[np.arange(n), truth] += rng.uniform(2, 30)
        y = np.where(rng.random(n) < rng.uniform(0.05, 0.3), rng.integers(0, c, n), truth)

        def nll(t):
            return _cross_entropy(_calibrated(logits, t, floor, log_prior), y)
        best_on_grid = min(nll(math.exp(g)) for g in np.linspace(-12, 12, 481))
        assert nll(_temperature(logits, y, floor, log_prior)) <= best_on_grid + 1e-6


def test_mlp_reads_xor_that_the_linear_probe_cannot():
    rng = np.random.default_rng(7)
    n_train, n_test = 3000, 1000
    bits = rng.integers(0, 2, (n_train + n_test, 2))
    x = np.concatenate([2 * bits - 1 + 0.2 * rng.standard_normal(bits.shape),
                        rng.standard_normal((n_train + n_test, 4))], axis=1)
    y = bits[:, 0] ^ bits[:, 1]
    data = split(x, y, n_train)
    lin = fit_probe(*data, 2, np.random.default_rng(0))
    net = fit_probe(*data, 2, np.random.default_rng(0), kind="mlp", **FAST_MLP)
    assert lin["balanced_accuracy"] < 0.56 and lin["bits"] <= above_zero(n_test)
    assert net["balanced_accuracy"] > 0.95 and net["bits"] > 0.8 and net["epochs"] > 0


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_same_seed_same_result(kind):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((600, 5))
    y = (x[:, 0] + x[:, 1] ** 2 > 1).astype(int)
    opts = FAST_MLP if kind == "mlp" else {}
    first, second = (fit_probe(*split(x, y, 400), 2, np.random.default_rng(3), kind=kind, **opts)
                     for _ in range(2))
    assert np.array_equal(first.pop("pred"), second.pop("pred"))
    assert first == second


def test_single_class_training_set_predicts_it_and_certifies_nothing():
    x = np.random.default_rng(0).standard_normal((30, 2))
    y = np.zeros(30, dtype=np.int64)
    y[25:] = 1                                                   # test labels hold two classes
    res = fit_probe(*split(x, y, 20), 3, np.random.default_rng(0))
    assert res["bits"] == 0.0 and res["prior_won"] and np.all(res["pred"] == 0)
    assert res["balanced_accuracy"] == 0.5


def test_bad_arguments_are_named():
    x, y = np.zeros((10, 2)), np.zeros(10, dtype=np.int64)
    with pytest.raises(ValueError, match="unknown probe kind 'svm'"):
        fit_probe(x, y, x, y, 2, np.random.default_rng(0), kind="svm")
    with pytest.raises(TypeError, match="'hidden'"):
        fit_probe(x, y, x, y, 2, np.random.default_rng(0), hidden=(8,))
    with pytest.raises(ValueError, match="holdout = 1.5"):
        fit_probe(x, y, x, y, 2, np.random.default_rng(0), holdout=1.5)
    with pytest.raises(ValueError, match="outside 0..1"):
        fit_probe(x, y + 2, x, y, 2, np.random.default_rng(0))
