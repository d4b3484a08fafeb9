"""PID estimators from samples: the dominant atom of known cases, determinism, their pieces
against naive formulas, and the `pid` and `bench` commands.

Tolerances come from five seeds each (worlds and samples 0..4):
- cluster on `latent` (k=2, 3000 samples, nuisance_scale=0.5, 20 clusters): the dominant atom
  was >= 0.99 bits and every other atom <= 0.01, asserted > 0.95 and < 0.03 in world 0. (At
  the default nuisance scale 2 the clusters follow the nuisance: dominant atoms 0.08-0.74.)
- batch on noisy one-hot bits (1024 samples, noise 0.3; 614 fit, 205 selection, 205 evaluation):
  the bits are recovered with error ~0.9 %, so the true atom is ~0.93 bits (redundant) and
  ~0.87 bits (XOR); the estimates were 0.89-0.94 with every other atom <= 0.057, asserted > 0.75
  and < 0.1.
"""
import math
from functools import partial

import numpy as np
import pytest
import torch

from synergy_bench.cli import main
from synergy_bench.pid import PID, Estimate, broja, estimate, source_target_informations
from synergy_bench.pid.estimate import batch_splits, conditional_information_q, discretise, sinkhorn
from synergy_bench.registry import get_generator, load_plugins, make_params

DOMINANT = {"R": "redundancy", "U1": "unique1", "U2": "unique2", "S": "synergy"}


pytestmark = pytest.mark.usefixtures("one_thread")


def others(pid: PID, atom: str) -> float:
    return max(v for k, v in pid.as_dict().items() if k != atom)


def noisy_bits(bits: np.ndarray, rng: np.random.Generator, noise: float = 0.3) -> np.ndarray:
    """One-hot codes of fair bits plus Gaussian noise, (N,) -> (N, 2)."""
    return np.eye(2)[bits] + noise * rng.standard_normal((len(bits), 2))


@pytest.fixture(scope="module")
def latent_sample():
    load_plugins()
    cls = get_generator("latent")
    gen = cls(make_params(cls, {"k": 2, "n_train": 3000, "nuisance_scale": 0.5}, "generator"), 0)
    return gen, gen.sample("train", np.random.default_rng(0))


@pytest.mark.parametrize("task", list(DOMINANT))
def test_cluster_recovers_dominant_atom_of_latent(latent_sample, task):
    gen, s = latent_sample
    assert gen.ground_truth()[task].as_dict()[DOMINANT[task]] == pytest.approx(1.0, abs=1e-6)
    est = estimate(s["x"][0], s["x"][1], s["y"][task], "cluster", seed=0)
    assert isinstance(est, Estimate) and est.method == "cluster" and est.n_samples == 3000
    assert est.clusters == (20, 20) and est.epochs is None
    assert getattr(est.pid, DOMINANT[task]) > 0.95
    assert others(est.pid, DOMINANT[task]) < 0.03


def test_cluster_on_discrete_sources_is_the_plugin_table():
    """With no more distinct rows than clusters, each row is a cluster: the estimate is exactly
    the BROJA PID of the empirical table."""
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 3, (2, 500))
    y = (a + b) % 3
    counts = np.zeros((3, 3, 3))
    np.add.at(counts, (a, b, y), 1.0)
    est = estimate(np.eye(3)[a], 5.0 * b, y + 10, "cluster", clusters=4)
    assert est.clusters == (3, 3)
    assert est.pid.as_dict() == pytest.approx(broja(counts).as_dict(), abs=1e-9)
    labels, k = discretise(np.eye(3)[a], clusters=2)          # more distinct rows: k-means
    assert k == 2 and set(np.unique(labels)) == {0, 1}


@pytest.fixture(scope="module")
def bit_cases():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, (2, 1024))
    return {"xor": (noisy_bits(a, rng), noisy_bits(b, rng), a ^ b),
            "redundant": (noisy_bits(a, rng), noisy_bits(a, rng), a)}


@pytest.fixture(scope="module")
def batch_estimates(bit_cases):
    return {name: estimate(*case, "batch", seed=0) for name, case in bit_cases.items()}


@pytest.mark.parametrize("case, atom", [("xor", "synergy"), ("redundant", "redundancy")])
def test_batch_finds_dominant_atom_of_bits(batch_estimates, case, atom):
    est = batch_estimates[case]
    assert est.method == "batch" and est.n_samples == 1024 and est.clusters is None
    assert set(est.epochs) == {"x1", "x2", "x12", "align"}
    assert getattr(est.pid, atom) > 0.75
    assert others(est.pid, atom) < 0.1


@pytest.mark.parametrize("method", ["cluster", "batch"])
def test_same_seed_same_estimate(bit_cases, batch_estimates, method):
    x1, x2, y = bit_cases["xor"]
    first = batch_estimates["xor"] if method == "batch" else estimate(x1, x2, y, method, seed=0)
    assert estimate(x1, x2, y, method, seed=0) == first


def test_batch_selects_on_one_split_and_evaluates_on_another(bit_cases, batch_estimates):
    """The three splits partition the samples, and the evaluation split reaches no choice: blanking
    its x1 (every row set to their mean) leaves every classifier's and the alignment's epoch as it
    was and moves only the atoms (with x1 unread, the XOR bit is gone from the evaluation split)."""
    fit, select, evaluate = batch_splits(1024, seed=0)
    assert (len(select), len(evaluate)) == (205, 205)
    assert torch.equal(torch.cat([fit, select, evaluate]).sort().values, torch.arange(1024))
    x1, x2, y = bit_cases["xor"]
    x1 = x1.copy()
    x1[evaluate.numpy()] = x1[evaluate.numpy()].mean(0)
    blanked = estimate(x1, x2, y, "batch", seed=0)
    assert blanked.epochs == batch_estimates["xor"].epochs
    assert blanked.pid.synergy < batch_estimates["xor"].pid.synergy - 0.5


def test_sinkhorn_meets_both_marginals():
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(6, 5, 2, generator=gen, dtype=torch.float64)
    rows = torch.rand(6, 2, generator=gen, dtype=torch.float64) + 0.1
    cols = torch.rand(5, 2, generator=gen, dtype=torch.float64) + 0.1
    q = sinkhorn(logits, rows, cols, iters=500, tol=1e-10).exp()
    assert torch.allclose(q.sum(1), rows, atol=1e-12)
    assert torch.allclose(q.sum(0), cols * rows.sum(0) / cols.sum(0), atol=1e-9)


def test_conditional_information_is_that_of_the_batch_table():
    """I_Q(X2;Y|X1) = I_Q(X1,X2;Y) - I(X1;Y) on the explicit table Q[a, b, y] / B."""
    gen = torch.Generator().manual_seed(1)
    B, C = 7, 3
    log_a = torch.randn(B, B, C, generator=gen, dtype=torch.float64)
    p1, p2 = (torch.rand(B, C, generator=gen, dtype=torch.float64).softmax(-1) for _ in range(2))
    ours = float(conditional_information_q(log_a, p1, p2, iters=1000)) / math.log(2)
    q = sinkhorn(log_a, p1, p2, iters=1000).exp().numpy()           # (B, B, C), rows sum to p1
    i1, _, i12 = source_target_informations(q)
    assert ours == pytest.approx(i12 - i1, abs=1e-9)


def test_bad_inputs_are_named():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="unknown PID estimator 'knn'"):
        estimate(x, x, np.zeros(10), "knn")
    with pytest.raises(ValueError, match="one row per sample"):
        estimate(x, x[:9], np.zeros(10))
    with pytest.raises(ValueError, match="x2 contains NaN"):
        estimate(x, np.full((10, 2), np.nan), np.zeros(10))
    with pytest.raises(TypeError):
        estimate(x, x, np.zeros(10), "cluster", epochs=3)
    with pytest.raises(ValueError, match="at least 2 of the 10 samples in each"):
        estimate(x, x, np.arange(10) % 2, "batch", evaluation=0.05)


def test_cli_pid_estimate_and_table(tmp_path, capsys):
    assert main(["pid", "latent", "--estimator", "cluster", "--samples", "2000"]) == 0
    out = capsys.readouterr().out
    assert "cluster estimate from 2000 samples" in out and out.count("20x20 clusters") == 4
    table = np.zeros((2, 2, 2))
    for x1 in (0, 1):
        for x2 in (0, 1):
            table[x1, x2, x1 ^ x2] = 1.0
    path = tmp_path / "xor.npy"
    np.save(path, table)
    assert main(["pid", "--table", str(path)]) == 0
    assert "1.000000" in capsys.readouterr().out
    np.save(tmp_path / "flat.npy", np.ones((2, 2)))
    for argv, message in ((["pid", "--table", str(tmp_path / "none.npy")], "no such file"),
                          (["pid", "--table", str(tmp_path / "flat.npy")], "must be 3-D"),
                          (["pid"], "give a generator NAME")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_cli_bench_pid_writes_csv(tmp_path, capsys, monkeypatch):
    pytest.importorskip("cvxpy")
    from synergy_bench.pid import bench as pid_bench

    monkeypatch.setattr(pid_bench, "run_pid_bench", partial(pid_bench.run_pid_bench, sampled_shape=(40, 30, 4, 200)))
    out = tmp_path / "bench" / "pid.csv"
    assert main(["bench", "pid", "--repeats", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "geometric mean speedup" in text and f"wrote {out}" in text and "40x30x4 (200 samples)" in text
    lines = out.read_text().splitlines()
    assert lines[0].startswith("shape,repeats,broja_s,conic_s,speedup,max_abs_diff_bits,") and len(lines) == 6
