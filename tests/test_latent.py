"""The latent generator: labels, views and exact ground truth."""
import numpy as np
import pytest
import torch

from generators.latent import Latent
from synergy_bench.registry import make_params


def make(**kw):
    return Latent(make_params(Latent, {"n_train": 200, "n_test": 100, **kw}, "generator"), seed=3)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_ground_truth_is_log2k_where_it_belongs(k):
    truth = make(k=k).ground_truth()
    b = np.log2(k)
    expect = {"R": (b, 0, 0, 0), "U1": (0, b, 0, 0), "U2": (0, 0, b, 0), "S": (0, 0, 0, b)}
    for task, atoms in expect.items():
        t = truth[task]
        assert np.allclose([t.redundancy, t.unique1, t.unique2, t.synergy], atoms, atol=1e-6), task


def test_reduced_table_equals_full_table():
    g = make(k=2)
    reduced, full = g.ground_truth(), g.ground_truth(full=True)
    for task in g.tasks:
        assert np.allclose(list(reduced[task].as_dict().values()), list(full[task].as_dict().values()), atol=1e-6)


def test_samples_labels_and_views():
    g = make(k=3)
    s = g.sample("train", np.random.default_rng(0))
    assert [x.shape for x in s["x"]] == [(200, 32), (200, 32)]
    assert np.array_equal(s["y"]["S"], (s["z"]["s1"] + s["z"]["s2"]) % 3)
    z = {f: torch.as_tensor(v) for f, v in s["z"].items()}
    v1 = g.views(z, torch.Generator().manual_seed(0))
    v2 = g.views(z, torch.Generator().manual_seed(1))
    assert not torch.allclose(v1[0], v2[0])  # new nuisance and noise
    # same factors -> views differ far less than different samples do
    same = (v1[0] - v2[0]).norm(dim=1).mean()
    other = (v1[0] - v1[0].roll(1, 0)).norm(dim=1).mean()
    assert same < 0.9 * other


def test_same_seed_same_data():
    a = make().sample("test", np.random.default_rng(5))
    b = make().sample("test", np.random.default_rng(5))
    assert all(np.array_equal(x, y) for x, y in zip(a["x"], b["x"]))


def test_prediction_pid_of_perfect_and_constant_predictors():
    from synergy_bench.data import prediction_pid

    g = make(k=2, n_test=4000)
    s = g.sample("test", np.random.default_rng(1))
    codes = g.modality_codes(s["z"])
    perfect = prediction_pid(codes, s["y"]["S"], 2)
    assert perfect.synergy == pytest.approx(1.0, abs=0.02)
    assert perfect.redundancy + perfect.unique1 + perfect.unique2 < 0.02
    redundant = prediction_pid(codes, s["y"]["R"], 2)
    assert redundant.redundancy == pytest.approx(1.0, abs=0.02)
    constant = prediction_pid(codes, np.zeros(4000, dtype=int), 2)
    assert constant.total == pytest.approx(0.0, abs=1e-9)
