"""The bitwise generator: exact PID of the classic distributions, samples, views and a tiny run."""
import numpy as np
import pandas as pd
import pytest
import torch

from generators.bitwise import DISTS, Bitwise, table
from synergy_bench.data import prediction_pid
from synergy_bench.registry import make_params

R_AND = 0.311278  # H(Y) - 1/2 with P(Y = 1) = 1/4

EXPECTED = {  # (R, U1, U2, S) in bits
    "xor": (0, 0, 0, 1),
    "and": (R_AND, 0, 0, 0.5),
    "or": (R_AND, 0, 0, 0.5),
    "unique1": (0, 1, 0, 0),
    "redundant": (1, 0, 0, 0),
    "copy": (0, 1, 1, 0),
    "sum": (0.5, 0, 0, 1),
    # Y a function of X1 = (a, b), X2 = b: S = U2 = 0, R = I(b; Y), U1 = H(Y) - I(b; Y)
    "redundant_and_unique1": (R_AND, 0.5, 0, 0),
    "redundant_or_unique1": (R_AND, 0.5, 0, 0),
    "redundant_xor_unique1": (0, 1, 0, 0),
    "redundant_xor": (1, 0, 0, 1),
}

SHAPES = {"copy": (2, 2, 4), "sum": (2, 2, 3), "redundant_xor": (4, 4, 4),
          "redundant_and_unique1": (4, 2, 2), "redundant_or_unique1": (4, 2, 2),
          "redundant_xor_unique1": (4, 2, 2)}


def make(dist, **kw):
    return Bitwise(make_params(Bitwise, {"dist": dist, "n_train": 200, "n_test": 100, **kw}, "generator"),
                   seed=3)


def atoms(pid):
    return [pid.redundancy, pid.unique1, pid.unique2, pid.synergy]


def test_every_dist_has_an_expectation():
    assert set(EXPECTED) == set(DISTS)


@pytest.mark.parametrize("dist", DISTS)
def test_ground_truth_is_the_reference_decomposition(dist):
    g = make(dist)
    assert table(dist).shape == SHAPES.get(dist, (2, 2, 2))
    assert g.n_classes("Y") == table(dist).shape[2]
    assert atoms(g.ground_truth()["Y"]) == pytest.approx(EXPECTED[dist], abs=1e-6)


@pytest.mark.parametrize("dist", ["and", "sum", "redundant_xor", "redundant_or_unique1"])
def test_samples_follow_the_table_and_the_rule(dist):
    g = make(dist, n_train=20000)
    s = g.sample("train", np.random.default_rng(0))
    assert [x.shape for x in s["x"]] == [(20000, 16), (20000, 16)]
    assert all(x.dtype == np.float32 for x in s["x"]) and s["y"]["Y"].dtype == np.int64
    assert np.array_equal(s["y"]["Y"], DISTS[dist].rule(s["z"]))
    c1, c2, n1, n2 = g.modality_codes(s["z"])
    exact = table(dist)
    empirical = np.zeros_like(exact)
    np.add.at(empirical, (c1, c2, s["y"]["Y"]), 1.0 / len(c1))
    assert (n1, n2) == exact.shape[:2]
    assert np.abs(empirical - exact).max() < 0.015
    assert not empirical[exact == 0].any()


@pytest.mark.parametrize("dist", ["xor", "copy", "redundant_xor"])
def test_prediction_pid_of_the_true_labels_is_the_ground_truth(dist):
    g = make(dist, n_test=8000)
    s = g.sample("test", np.random.default_rng(1))
    pid = prediction_pid(g.modality_codes(s["z"]), s["y"]["Y"], g.n_classes("Y"))
    assert atoms(pid) == pytest.approx(atoms(g.ground_truth()["Y"]), abs=0.02)


def test_views_redraw_nuisance_and_keep_the_sources():
    g = make("redundant_xor")
    s = g.sample("train", np.random.default_rng(0))
    z = {f: torch.as_tensor(v) for f, v in s["z"].items()}
    v1 = g.views(z, torch.Generator().manual_seed(0))
    v2 = g.views(z, torch.Generator().manual_seed(1))
    assert [v.shape for v in v1] == [(200, 16), (200, 16)]
    assert not torch.allclose(v1[0], v2[0]) and not torch.allclose(v1[1], v2[1])
    for i, codes in enumerate(g.modality_codes(s["z"])[:2]):
        # two views of one sample are closer than views of samples with another source value
        codes = torch.as_tensor(codes)
        dist = torch.cdist(v1[i], v2[i])                      # (N, N)
        other = codes[:, None] != codes[None, :]
        assert dist.diagonal().mean() < 0.9 * dist[other].mean()
    assert torch.equal(g.views(z, torch.Generator().manual_seed(0))[0], v1[0])


def test_same_seed_same_data():
    a = make("and").sample("test", np.random.default_rng(5))
    b = make("and").sample("test", np.random.default_rng(5))
    assert all(np.array_equal(x, y) for x, y in zip(a["x"], b["x"]))
    assert np.array_equal(a["y"]["Y"], b["y"]["Y"])
    c = make("and").sample("test", np.random.default_rng(6))
    assert not np.array_equal(a["x"][0], c["x"][0])


def test_tiny_run_through_the_cli(tmp_path):
    from synergy_bench.cli import main

    torch.set_num_threads(1)
    assert main(["run", "--out", str(tmp_path),
                 "--set", "generator={name: bitwise, dist: xor, n_train: 256, n_test: 128}",
                 "--set", "tasks=[Y]", "--set", "methods=[cross, comm]", "--set", "controls=[raw]",
                 "--set", "train.epochs=1", "--set", "train.batch_size=64", "--set", "seeds=1",
                 "--set", "probe.Cs=[1.0]", "--workers", "1", "--quiet"]) == 0
    df = pd.read_csv(tmp_path / "results.csv")
    assert set(df.method) == {"raw", "cross", "comm"} and set(df.task) == {"Y"}
    assert np.allclose(df.truth_synergy, 1.0) and np.allclose(df.truth_redundancy, 0.0)
    assert df[df.metric == "pred_synergy"].value.notna().all()


def test_pid_command_prints_the_atoms(capsys):
    from synergy_bench.cli import main

    assert main(["pid", "bitwise", "--set", "dist=and"]) == 0
    out = capsys.readouterr().out
    assert "0.311278" in out and "0.500000" in out
