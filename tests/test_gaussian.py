"""The continuous-latent generators: the PID paper's Gaussian settings and FactorCL's synthetic data."""
import numpy as np
import pytest
import torch

from generators.factorcl import AUGMENTATIONS, FactorCLSynthetic
from generators.gaussian import SETTINGS, Gaussian
from synergy_bench.registry import UserError, make_params

LATENTS = ("1", "2", "12")
# floor(r * 5) dims of latents '1', '2', '12' in the label, from the published mix ratios
COUNTS = {"redundancy": (0, 0, 5), "uniqueness0": (5, 0, 0), "uniqueness1": (0, 5, 0), "synergy": (5, 5, 0),
          "mix1": (2, 2, 2), "mix2": (5, 2, 2), "mix3": (5, 5, 2), "mix4": (2, 2, 5), "mix5": (0, 2, 2),
          "mix6": (0, 2, 5)}


def gaussian(**kw):
    return Gaussian(make_params(Gaussian, {"n_train": 2000, "n_test": 500, **kw}, "generator"), seed=3)


def factorcl(**kw):
    return FactorCLSynthetic(make_params(FactorCLSynthetic, {"n_train": 2000, "n_test": 500, **kw},
                                         "generator"), seed=3)


def torch_z(z):
    return {f: torch.as_tensor(v) for f, v in z.items()}


def sigmoid(t):
    return 1.0 / (1.0 + np.exp(-t))


def test_every_setting_is_covered():
    assert set(COUNTS) == set(SETTINGS)


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_gaussian_shapes_and_label_dims(setting):
    g = gaussian(setting=setting)
    s = g.sample("train", np.random.default_rng(0))
    assert [x.shape for x in s["x"]] == [(2000, 64), (2000, 64)]
    assert all(x.dtype == np.float32 for x in s["x"]) and s["y"]["Y"].dtype == np.int64
    assert all(s["z"][a].shape == (2000, 5) for a in LATENTS)
    blocks = np.split(s["z"]["label_dims"], 3, axis=1)
    for block, count in zip(blocks, COUNTS[setting]):
        assert (block.sum(axis=1) == count).all()           # the setting's dims of each latent, every row
        if 0 < count < 5:                                     # a random subset, drawn anew per sample
            assert len(np.unique(block, axis=0)) > 1
    assert abs(s["z"]["label_keep"].mean() - 0.8) < 0.01      # dropout 0.2


@pytest.mark.parametrize("setting", ["redundancy", "synergy", "mix1", "mix5"])
def test_gaussian_label_is_the_binned_sigmoid_of_the_dropout_mean(setting):
    s = gaussian(setting=setting).sample("train", np.random.default_rng(1))
    z = s["z"]
    values = np.concatenate([z[a] for a in LATENTS], axis=1).astype(np.float64)
    chosen = z["label_dims"]
    mean = (values * z["label_keep"] / 0.8 * chosen).sum(axis=1) / chosen.sum(axis=1)  # dropout(v)/mean
    assert np.array_equal(s["y"]["Y"], (sigmoid(mean) >= 0.5).astype(np.int64))   # two classes: the median


def test_gaussian_classes_have_equal_mass():
    y = gaussian(setting="mix5", n_classes=4, n_train=40000).sample("train", np.random.default_rng(2))["y"]["Y"]
    assert set(np.unique(y)) == {0, 1, 2, 3}
    assert np.abs(np.bincount(y) / len(y) - 0.25).max() < 0.015


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_gaussian_label_depends_on_the_settings_latents_only(setting):
    g = gaussian(setting=setting)
    s = g.sample("test", np.random.default_rng(3))
    rng = np.random.default_rng(4)
    for a, count in zip(LATENTS, COUNTS[setting]):
        other = {**s["z"], a: rng.normal(0, np.sqrt(1.5), s["z"][a].shape).astype(np.float32)}
        changed = (g.labels(other) != s["y"]["Y"]).mean()
        assert (changed > 0.1) if count else (changed == 0), (a, changed)


def test_gaussian_modalities_render_their_latents_through_uniform_maps():
    g = gaussian(setting="mix1")
    s = g.sample("train", np.random.default_rng(5))
    x1, x2 = s["x"]
    assert np.array_equal(x1[:, 32:], x2[:, 32:])              # both render z_12 with the same map
    for x, a in ((x1[:, :32], "1"), (x2[:, :32], "2"), (x1[:, 32:], "12")):
        t, res, *_ = np.linalg.lstsq(s["z"][a].astype(np.float64), x.astype(np.float64), rcond=None)
        assert t.shape == (5, 32) and res.max() < 1e-6 * len(x)  # exactly linear in the latent
        assert t.min() > -1e-4 and t.max() < 1 + 1e-4 and abs(t.mean() - 0.5) < 0.1


def test_same_seed_same_data():
    for make in (gaussian, factorcl):
        a, b = (make().sample("test", np.random.default_rng(7)) for _ in range(2))
        assert all(np.array_equal(x, y) for x, y in zip(a["x"], b["x"]))
        assert np.array_equal(a["y"]["Y"], b["y"]["Y"])
        c = make().sample("test", np.random.default_rng(8))
        assert not np.array_equal(a["x"][0], c["x"][0])
        other_world = type(make())(make().params, seed=4).sample("test", np.random.default_rng(7))
        assert not np.array_equal(a["x"][0], other_world["x"][0])  # same latents, other maps


def two_views(g):
    """A training sample, its latents as tensors and two views (seeds 0 and 1) of them; the views
    must leave the latents untouched."""
    s = g.sample("train", np.random.default_rng(0))
    z = torch_z(s["z"])
    before = {f: v.clone() for f, v in z.items()}
    v1, v2 = g.views(z, torch.Generator().manual_seed(0)), g.views(z, torch.Generator().manual_seed(1))
    assert all(torch.equal(z[f], before[f]) for f in z)
    return s, z, v1, v2


def test_gaussian_views_add_fresh_noise_to_fixed_latents():
    g = gaussian(view_noise=0.1)
    s, z, v1, v2 = two_views(g)
    for i in range(2):
        clean = torch.as_tensor(s["x"][i])
        assert v1[i].shape == clean.shape and not torch.allclose(v1[i], v2[i])
        assert abs(float((v1[i] - clean).std()) - 0.1) < 0.005
    assert torch.equal(g.views(z, torch.Generator().manual_seed(0))[0], v1[0])


def test_factorcl_shapes_and_label_rule():
    g = factorcl()
    s = g.sample("train", np.random.default_rng(0))
    z = s["z"]
    assert [x.shape for x in s["x"]] == [(2000, 100), (2000, 100)]
    assert all(x.dtype == np.float32 for x in s["x"]) and s["y"]["Y"].dtype == np.int64
    assert (z["ws"].shape, z["w1"].shape, z["w2"].shape) == ((2000, 10), (2000, 6), (2000, 6))
    assert abs(z["ws"].var() - 0.5) < 0.03
    mean = np.concatenate([z["ws"][:, :10], z["w1"][:, :6], z["w2"][:, :6]], axis=1).mean(axis=1)
    assert np.array_equal(s["y"]["Y"], (sigmoid(mean) >= 0.5).astype(np.int64))
    assert 0.45 < s["y"]["Y"].mean() < 0.55
    for i, w in enumerate(("w1", "w2")):                      # x_i = [w_s, w_i] T_i, T_i uniform(0, 1)
        lat = np.concatenate([z["ws"], z[w]], axis=1).astype(np.float64)
        t, res, *_ = np.linalg.lstsq(lat, s["x"][i].astype(np.float64), rcond=None)
        assert res.max() < 1e-6 * len(lat) and t.min() > -1e-4 and t.max() < 1 + 1e-4


def test_factorcl_shared_unique_ratio_chooses_the_label_dims():
    shared = factorcl(label_shared=4, label_unique1=0, label_unique2=0)
    s = shared.sample("train", np.random.default_rng(1))
    assert np.array_equal(s["y"]["Y"], (s["z"]["ws"][:, :4].sum(axis=1) >= 0).astype(np.int64))
    unique = factorcl(label_shared=0, label_unique1=3, label_unique2=0)
    s = unique.sample("train", np.random.default_rng(1))
    assert np.array_equal(s["y"]["Y"], (s["z"]["w1"][:, :3].sum(axis=1) >= 0).astype(np.int64))


def test_factorcl_views_are_its_augmentations_of_fixed_latents():
    g = factorcl(n_train=4000)
    s, _, v1, v2 = two_views(g)
    for i in range(2):
        x = torch.as_tensor(s["x"][i])
        assert not torch.equal(v1[i], v2[i])
        kind = torch.stack([
            (v1[i] == torch.cat([x[:, 50:], x[:, :50]], 1)).all(1),  # swap
            ((v1[i] - x).abs().max(1).values < 0.06) & ((v1[i] != x).sum(1) > 90),              # noise
            ((v1[i] == 0).sum(1) == 10) & ((v1[i] == x) | (v1[i] == 0)).all(1),                 # drop
            (v1[i] == x).all(1)])                                                               # identity
        assert (kind.sum(0) == 1).all()                       # every row is exactly one augmentation
        assert (kind.float().mean(1) - 0.25).abs().max() < 0.04  # drawn uniformly
    only_swap = factorcl(augmentations=["swap"])
    s = only_swap.sample("test", np.random.default_rng(2))
    x = torch.as_tensor(s["x"][1])
    view = only_swap.views(torch_z(s["z"]), torch.Generator().manual_seed(0))[1]
    assert torch.equal(view, torch.cat([x[:, 50:], x[:, :50]], 1))


def test_ground_truth_is_not_exact():
    assert gaussian().ground_truth() == {"Y": None}
    assert factorcl().ground_truth() == {"Y": None}
    assert gaussian().modality_codes({}) is None and factorcl().modality_codes({}) is None


def test_bad_parameters_name_the_fix():
    with pytest.raises(UserError, match="setting"):
        make_params(Gaussian, {"setting": "mix7"}, "generator")
    with pytest.raises(UserError, match="latent_dim >= 2"):
        make_params(Gaussian, {"setting": "mix5", "latent_dim": 1}, "generator")
    with pytest.raises(UserError, match="augmentations"):
        make_params(FactorCLSynthetic, {"augmentations": ["swap", "blur"]}, "generator")
    with pytest.raises(UserError, match="label_shared = 11 exceeds shared_dim = 10"):
        make_params(FactorCLSynthetic, {"label_shared": 11}, "generator")
    assert set(FactorCLSynthetic.Params().augmentations) == set(AUGMENTATIONS)


def test_cli_reports_not_exact_and_writes_samples(tmp_path, capsys):
    from synergy_bench.cli import main

    assert main(["pid", "gaussian", "--set", "setting=mix1"]) == 0
    assert "not exact" in capsys.readouterr().out
    out = tmp_path / "f.npz"
    assert main(["generate", "factorcl", "--set", "n_train=64", "--set", "n_test=32", "--out", str(out)]) == 0
    data = np.load(out)
    assert data["train/x1"].shape == (64, 100) and data["test/z_ws"].shape == (32, 10)
