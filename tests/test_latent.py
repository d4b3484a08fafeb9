"""The latent generator: labels, views, exact ground truth against closed forms, and its variants
(consistency synergy, label noise, more modalities, the mixture task)."""
import hashlib
import json

import numpy as np
import pytest
import torch

from generators.latent import Latent
from synergy_bench.data import prediction_pid
from synergy_bench.registry import UserError, make_params


def make(**kw):
    return Latent(make_params(Latent, {"n_train": 200, "n_test": 100, **kw}, "generator"), seed=3)


def atoms(pid):
    return [pid.redundancy, pid.unique1, pid.unique2, pid.synergy]


def h(p):
    """Entropy (bits) of a distribution; binary entropy for a scalar."""
    p = np.atleast_1d(np.asarray(p, dtype=float))
    p = np.append(p, 1 - p.sum()) if p.size == 1 else p
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


# ---- defaults: the numbers of the two-modality generator ---------------------------------------

def test_default_sample_is_unchanged():
    """Labels, factors and features of a default sample equal the reference values."""
    s = make().sample("train", np.random.default_rng(11))
    digest = hashlib.sha256()
    for f in sorted(s["z"]):
        digest.update(np.asarray(s["z"][f], dtype=np.int64).tobytes())
    for t in sorted(s["y"]):
        digest.update(np.asarray(s["y"][t], dtype=np.int64).tobytes())
    assert digest.hexdigest() == "0c8119bf8625ba2daeb9b780aaf63a3a3f8c59126b4abb1af22db5afac38c8c5"
    np.testing.assert_allclose(s["x"][0][0, :4], [-1.3987858, -0.65577596, -0.44706073, -0.97966093], rtol=1e-5)
    np.testing.assert_allclose(s["x"][1][-1, -4:], [1.7238011, 0.39069974, -0.81851636, -0.49816936],
                               rtol=1e-4, atol=1e-6)
    assert s["x"][0].sum(dtype=np.float64) == pytest.approx(132.46289007202722, rel=1e-4)
    assert s["x"][1].sum(dtype=np.float64) == pytest.approx(604.9478353941813, rel=1e-5)
    g = make()
    assert g.tasks == ("R", "U1", "U2", "S") and not g.biased_training and g.extra_truth() == {}
    assert [g.n_classes(t) for t in g.tasks] == [2, 2, 2, 2]


@pytest.mark.parametrize("k", [2, 3, 4, 8])
def test_ground_truth_is_log2k_where_it_belongs(k):
    truth = make(k=k).ground_truth()
    b = np.log2(k)
    expect = {"R": (b, 0, 0, 0), "U1": (0, b, 0, 0), "U2": (0, 0, b, 0), "S": (0, 0, 0, b)}
    assert set(truth) == set(expect)
    for task, want in expect.items():
        assert np.allclose(atoms(truth[task]), want, atol=1e-6), task


def test_samples_labels_and_views():
    g = make(k=3)
    s = g.sample("train", np.random.default_rng(0))
    assert [x.shape for x in s["x"]] == [(200, 64), (200, 64)]
    assert np.array_equal(s["y"]["S"], (s["z"]["s1"] + s["z"]["s2"]) % 3)
    z = {f: torch.as_tensor(v) for f, v in s["z"].items()}
    v1 = g.views(z, torch.Generator().manual_seed(0))
    v2 = g.views(z, torch.Generator().manual_seed(1))
    assert not torch.allclose(v1[0], v2[0])  # new nuisance and noise
    # same factors -> views differ far less than different samples do
    same = (v1[0] - v2[0]).norm(dim=1).mean()
    other = (v1[0] - v1[0].roll(1, 0)).norm(dim=1).mean()
    assert same < 0.9 * other


@pytest.mark.parametrize("kw", [{}, {"synergy": "consistency", "k": 4}, {"label_noise": 0.3},
                                {"n_modalities": 3}, {"mix_r": 2, "mix_s": 2}])
def test_same_seed_same_data(kw):
    a = make(**kw).sample("test", np.random.default_rng(5))
    b = make(**kw).sample("test", np.random.default_rng(5))
    assert all(np.array_equal(x, y) for x, y in zip(a["x"], b["x"]))
    assert all(np.array_equal(a["y"][t], b["y"][t]) for t in a["y"])


def test_prediction_pid_of_perfect_and_constant_predictors():
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


# ---- exact ground truth: closed forms and reduced tables --------------------------------------

@pytest.mark.parametrize("kw", [
    {"k": 2, "label_noise": 0.3, "mix_r": 2, "mix_u": 2, "mix_s": 2},
    {"k": 3, "synergy": "consistency", "label_noise": 0.2},
    {"k": 2, "n_modalities": 3, "mix_r": 2, "mix_s": 2, "label_noise": 0.1},
    {"k": 2, "n_modalities": 3, "synergy": "consistency"},
])
def test_reduced_tables_equal_full_tables(kw):
    """The reduced tables (sums of s-factors, coarsened factors) give the atoms of the tables
    over every factor of every modality, labelled by ``labels``, for every pairing."""
    g = make(**kw)
    n = g.params.n_modalities
    reduced, full = g.ground_truth(), g.ground_truth(full=True)
    for task in g.tasks:
        assert np.allclose(atoms(reduced[task]), atoms(full[task]), atol=1e-6), task
    if n > 2:
        for s1, s2 in [((1,), (2,)), ((2,), (3,)), ((3,), (1, 2))]:
            for task in g.tasks:
                assert np.allclose(atoms(g.pid(task, s1, s2)), atoms(g.pid(task, s1, s2, full=True)),
                                   atol=1e-6), (task, s1, s2)


@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_consistency_synergy_is_binary_entropy_of_one_over_k(k):
    g = make(k=k, synergy="consistency")
    assert g.n_classes("S") == 2 and g.biased_training
    t = g.ground_truth()["S"]
    assert np.allclose(atoms(t), (0, 0, 0, h(1 / k)), atol=1e-6)
    assert np.allclose(atoms(g.ground_truth()["R"]), (np.log2(k), 0, 0, 0), atol=1e-6)


@pytest.mark.parametrize("k,eps", [(2, 0.1), (3, 0.25), (4, 0.2), (8, 0.5)])
def test_label_noise_xor_closed_form(k, eps):
    t = make(k=k, label_noise=eps).ground_truth()
    mixture = [1 - eps + eps / k] + [eps / k] * (k - 1)
    assert np.allclose(atoms(t["S"]), (0, 0, 0, np.log2(k) - h(mixture)), atol=1e-6)
    assert np.allclose(atoms(t["U1"]), (0, np.log2(k), 0, 0), atol=1e-6)  # noise on S only


@pytest.mark.parametrize("k,eps", [(2, 0.2), (4, 0.3)])
def test_label_noise_consistency_closed_form(k, eps):
    t = make(k=k, label_noise=eps, synergy="consistency").ground_truth()["S"]
    q = (1 - eps) / k + eps / 2
    want = h(q) - (h(1 - eps / 2) / k + (1 - 1 / k) * h(eps / 2))
    assert np.allclose(atoms(t), (0, 0, 0, want), atol=1e-6)


@pytest.mark.parametrize("k,n", [(2, 3), (3, 3), (8, 3), (2, 4)])
def test_more_modalities_one_against_the_rest_and_pairs(k, n):
    g = make(k=k, n_modalities=n)
    b = np.log2(k)
    assert g.tasks == ("R", *(f"U{i}" for i in range(1, n + 1)), "S")
    truth = g.ground_truth()
    assert np.allclose(atoms(truth["U1"]), (0, b, 0, 0), atol=1e-6)
    for i in range(2, n + 1):
        assert np.allclose(atoms(truth[f"U{i}"]), (0, 0, b, 0), atol=1e-6)
    assert np.allclose(atoms(truth["S"]), (0, 0, 0, b), atol=1e-6)
    pairs = g.pairwise_truth()
    assert len(pairs) == n * (n - 1) // 2 + n
    assert all(np.allclose(atoms(pairs[f"1;{'+'.join(map(str, range(2, n + 1)))}"][t]), atoms(truth[t]))
               for t in g.tasks)
    # a pair sees R and its own two u's; S needs every modality, so a pair gets nothing of it
    p23 = pairs["2;3"]
    assert np.allclose(atoms(p23["R"]), (b, 0, 0, 0), atol=1e-6)
    assert np.allclose(atoms(p23["U2"]), (0, b, 0, 0), atol=1e-6)
    assert np.allclose(atoms(p23["U3"]), (0, 0, b, 0), atol=1e-6)
    assert p23["U1"].total == pytest.approx(0, abs=1e-6) and p23["S"].total == pytest.approx(0, abs=1e-6)
    assert np.allclose(atoms(pairs["2;" + "+".join(str(i) for i in range(1, n + 1) if i != 2)]["U2"]),
                       (0, b, 0, 0), atol=1e-6)
    assert len(g.extra_truth()) == len(pairs)


@pytest.mark.parametrize("k,mix,n", [(2, (2, 2, 2), 2), (4, (2, 1, 4), 2), (4, (4, 2, 1), 3),
                                     (8, (2, 8, 2), 2), (6, (3, 2, 6), 2), (4, (4, 4, 4), 2)])
def test_mixture_atoms_are_the_log_sizes_of_its_parts(k, mix, n):
    a_r, a_u, a_s = mix
    g = make(k=k, mix_r=a_r, mix_u=a_u, mix_s=a_s, n_modalities=n)
    assert g.tasks[-1] == "M" and g.n_classes("M") == a_r * a_u * a_s
    want = (np.log2(a_r), np.log2(a_u), 0, np.log2(a_s))
    assert np.allclose(atoms(g.ground_truth()["M"]), want, atol=1e-6)


def test_mixture_labels_hold_each_part():
    g = make(k=4, mix_r=2, mix_u=4, mix_s=2)
    s = g.sample("train", np.random.default_rng(2))
    z, y = s["z"], s["y"]
    r, u, syn = np.unravel_index(y["M"], (2, 4, 2))
    assert np.array_equal(r, z["r"] % 2) and np.array_equal(u, z["u1"] % 4)
    assert np.array_equal(syn, y["S"] % 2)
    assert make(k=4).tasks == ("R", "U1", "U2", "S")


# ---- sampling of the variants -----------------------------------------------------------------

@pytest.mark.parametrize("n", [2, 3])
def test_consistency_training_tuples_are_consistent_and_test_tuples_unbiased(n):
    k = 5
    g = make(k=k, synergy="consistency", n_modalities=n, n_train=2000, n_test=2000)
    assert sorted(g.pi) == list(range(k))
    rng = np.random.default_rng(0)
    train, test, probe = (g.sample(split, rng) for split in ("train", "test", "probe"))

    def consistent(z):
        return z[f"s{n}"] == g.pi[sum(z[f"s{i}"] for i in range(1, n)) % k]

    assert consistent(train["z"]).all() and (train["y"]["S"] == 1).all()
    for split in (test, probe):
        hit = consistent(split["z"])
        assert abs(hit.mean() - 1 / k) < 0.03
        assert np.array_equal(split["y"]["S"], hit.astype(np.int64))
        assert np.bincount(split["z"][f"s{n}"], minlength=k).min() > 300  # s_n uniform again
    assert len(probe["z"]["r"]) == g.params.n_train
    # the consistent pairing is part of the world: fixed by the seed
    assert np.array_equal(make(k=k, synergy="consistency").pi, make(k=k, synergy="consistency").pi)


def test_label_noise_replaces_s_labels_only():
    eps, k = 0.4, 3
    clean = make(k=k, n_train=3000).sample("train", np.random.default_rng(4))
    noisy = make(k=k, n_train=3000, label_noise=eps).sample("train", np.random.default_rng(4))
    assert all(np.array_equal(a, b) for a, b in zip(clean["x"], noisy["x"]))  # same features
    for t in ("R", "U1", "U2"):
        assert np.array_equal(clean["y"][t], noisy["y"][t])
    changed = (clean["y"]["S"] != noisy["y"]["S"]).mean()
    assert changed == pytest.approx(eps * (1 - 1 / k), abs=0.03)
    assert set(np.unique(noisy["y"]["S"])) == set(range(k))


def test_bad_settings_name_the_fix():
    with pytest.raises(UserError, match=r"mix_r = 3 does not divide k = 4; choose one of \[1, 2, 4\]"):
        make(k=4, mix_r=3)
    with pytest.raises(UserError, match="needs synergy = 'xor'"):
        make(k=2, mix_s=2, synergy="consistency")
    with pytest.raises(UserError, match="exact table"):
        make(k=8, mix_r=8, mix_s=8)
    with pytest.raises(UserError, match="n_modalities = 1 is out of range"):
        make(n_modalities=1)
    with pytest.raises(UserError, match="label_noise = 1.0 is out of range"):
        make(label_noise=1.0)
    with pytest.raises(UserError, match="not allowed"):
        make(synergy="and")


# ---- more modalities end to end ----------------------------------------------------------------

def test_three_modality_codes_give_the_prediction_pid_of_modality_one_against_the_rest():
    g = make(k=2, n_modalities=3, n_test=4000)
    s = g.sample("test", np.random.default_rng(1))
    c1, c2, n1, n2 = g.modality_codes(s["z"])
    assert n1 == 8 and n2 == len(np.unique(c2)) <= 2 ** 5 and c2.shape == (4000,)
    perfect = prediction_pid((c1, c2, n1, n2), s["y"]["S"], 2)
    assert perfect.synergy == pytest.approx(1.0, abs=0.03)
    assert perfect.redundancy + perfect.unique1 + perfect.unique2 < 0.03
    u3 = prediction_pid((c1, c2, n1, n2), s["y"]["U3"], 2)
    assert u3.unique2 == pytest.approx(1.0, abs=0.03)


@pytest.mark.usefixtures("one_thread")
def test_three_modalities_run_end_to_end():
    from synergy_bench.runner import execute
    from synergy_bench.spec import expand, resolve

    spec = resolve({"name": "tiny3", "generator": {"name": "latent", "n_modalities": 3, "n_train": 128,
                                                    "n_test": 64, "dim": 8},
                    "methods": ["comm", "infmasking"], "controls": [], "seeds": 1,
                    "train": {"epochs": 1, "batch_size": 64}, "probe": {"Cs": [1.0]}})
    runs = expand(spec)
    assert [r.method for r in runs] == ["comm", "infmasking"]
    for run in runs:
        rows = execute(run)
        assert {r["task"] for r in rows} == {"R", "U1", "U2", "U3", "S"}
        acc = [r["value"] for r in rows if r["metric"] == "balanced_accuracy"]
        assert len(acc) == 5 and all(0 <= a <= 1 for a in acc)
        assert all(np.isfinite(r["value"]) for r in rows)
        s = next(r for r in rows if r["task"] == "S")
        assert s["truth_synergy"] == pytest.approx(1.0, abs=1e-6)


def test_cli_prints_pairwise_truth(capsys):
    from synergy_bench.cli import main

    assert main(["pid", "latent", "--set", "n_modalities=3", "--set", "k=4"]) == 0
    out = capsys.readouterr().out
    assert "X1 = modality 2, X2 = modality 3 (modality 1 marginalised out)" in out
    assert "X1 = modality 1, X2 = modalities 2+3" in out
    assert main(["pid", "latent", "--set", "n_modalities=3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["S"]["synergy"] == pytest.approx(1.0, abs=1e-6)
    assert data["extra"]["X1 = modality 1, X2 = modality 2 (modality 3 marginalised out)"]["S"]["synergy"] \
        == pytest.approx(0.0, abs=1e-6)
    assert main(["pid", "latent", "--set", "synergy=consistency", "--set", "k=4"]) == 0
    assert f"{h(0.25):.6f}" in capsys.readouterr().out
    assert main(["pid", "latent"]) == 0
    assert "X1 =" not in capsys.readouterr().out  # two modalities: the per-task rows only


# ---- readability: the observations carry the factors --------------------------------------------

FACTOR_KEYS = {"r@x1", "u1@x1", "s1@x1", "r@x2", "u2@x2", "s2@x2"}


@pytest.mark.usefixtures("one_thread")
def test_every_factor_is_readable_from_its_modality_at_small_n():
    """With the defaults even a small classifier on 1000 samples reads each factor at >= 99 % and
    certifies >= 0.95 of its bit (never more than the bit, up to the Markov tolerance of
    synergy_bench.probe); the same seed reads the same numbers."""
    from synergy_bench.measures.readability import readability

    g, small = make(), {"n": 1000, "n_test": 1000, "hidden": (32,), "patience": 3}
    read = readability(g, **small)
    assert set(read) == FACTOR_KEYS
    for key, r in read.items():
        assert r["accuracy"] >= 0.99, key
        assert 0.95 <= r["bits"] <= r["entropy"] + np.log2(1e6) / 1000, key
    assert readability(g, **small, factors=(("r",),)) == {"r@x1": read["r@x1"]}


def test_readability_needs_named_factors():
    from synergy_bench.measures.readability import readability

    class NoFactors:
        name = "plain"

    with pytest.raises(ValueError, match="generator 'plain' names no discrete factors"):
        readability(NoFactors())
    with pytest.raises(ValueError, match="n >= 2"):
        readability(make(), n=1)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("k", [2, 8])
def test_defaults_make_every_factor_readable(k):
    """The promise of the defaults: a 256 x 256 MLP on 30,000 samples reads every factor from its
    modality at >= 99.5 % (about 30 s at k = 2 and 50 s at k = 8 on one CPU thread)."""
    from synergy_bench.measures.readability import readability

    read = readability(make(k=k))
    assert set(read) == FACTOR_KEYS
    assert min(r["accuracy"] for r in read.values()) >= 0.995, read
