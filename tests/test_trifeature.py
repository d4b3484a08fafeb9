"""Bimodal Trifeature: rendering, split, pairing rules, augmentations, cache and exact ground truth."""
import math

import numpy as np
import pytest
import torch

from generators.trifeature import (
    COLOURS,
    SHAPES,
    TEXTURES,
    K,
    Trifeature,
    balanced_split,
    cache_root,
    merge_equal_sources,
    render,
    shape_templates,
    texture_mask,
)
from synergy_bench.data import prediction_pid
from synergy_bench.nn import VectorTokenizer, make_tokenizer
from synergy_bench.nn.augment import (
    Augment,
    color_jitter,
    gaussian_blur,
    grayscale,
    random_grayscale,
    random_resized_crop,
)
from synergy_bench.nn.images import ImageTokenizer
from synergy_bench.pid import broja
from synergy_bench.registry import UserError, make_params

SIZE = 16  # tiny images keep the bank (1,000 images at renders = 1) at about a second


def make(seed=0, **kw):
    values = {"image_size": SIZE, "renders": 1, "n_train": 300, "n_test": 200, **kw}
    return Trifeature(make_params(Trifeature, values, "generator"), seed)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SYNERGY_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


# ---- rendering --------------------------------------------------------------------------------

def test_rendering_is_deterministic_per_seed(one_thread):
    a, b, other = make(seed=4), make(seed=4), make(seed=5)
    rows = a.factors[::97]
    first = render(rows, SIZE, a.period, 2, np.random.default_rng(1))
    assert np.array_equal(first, render(rows, SIZE, a.period, 2, np.random.default_rng(1)))
    assert not np.array_equal(first, render(rows, SIZE, a.period, 2, np.random.default_rng(2)))
    assert np.array_equal(a.sample("test", np.random.default_rng(0))["x"][0],
                          b.sample("test", np.random.default_rng(0))["x"][0])
    assert not np.array_equal(a.factors, other.factors)  # another seed, another split


def test_shapes_textures_and_colours_are_distinct():
    masks = shape_templates(128).flatten(1).float()  # (10, T^2)
    for i in range(K):
        for j in range(i + 1, K):
            differ = (masks[i] != masks[j]).float().sum() / torch.maximum(masks[i], masks[j]).sum()
            assert differ > 0.15, (SHAPES[i], SHAPES[j])
    # textures on 4 x 4 periods, 32 samples per period, random cells drawn once
    c = (torch.arange(128, dtype=torch.float32) + 0.5) / 32
    v, u = torch.meshgrid(c, c, indexing="ij")
    gen = torch.Generator().manual_seed(0)
    tables = {"bits": torch.rand(1, 64, 64, generator=gen) < 0.5, "drop": torch.rand(1, 64, 64, generator=gen) < 0.8,
              "dx": 0.25 + 0.5 * torch.rand(1, 64, 64, generator=gen), "dy": 0.35 * torch.rand(1, 64, 64, generator=gen)}
    pats = torch.stack([texture_mask(t, u[None], v[None], tables)[0].flatten() for t in TEXTURES]).float()
    assert 0.1 < pats[1:].mean(1).min() and pats[1:].mean(1).max() < 0.7  # visible, not solid
    assert ((pats[:, None] != pats[None]).float().mean(-1) + torch.eye(K)).min() > 0.1
    rgb = torch.tensor(list(COLOURS.values()))
    assert (torch.cdist(rgb, rgb) + torch.eye(K)).min() > 0.3


def test_rendered_images_show_the_colour_inside_the_shape(one_thread):
    """Every pixel is background + alpha (colour - background), alpha the covered fraction."""
    g = make()
    img = g.images.astype(float) / 255  # (N, 3, S, S)
    bg = round(255 * 0.5) / 255
    colour = np.array(list(COLOURS.values()))[g.factors[:, 2]][:, :, None, None] - bg  # (N, 3, 1, 1)
    alpha = ((img - bg) * colour).sum(1, keepdims=True) / (colour ** 2).sum(1, keepdims=True)
    assert np.abs(img - bg - alpha * colour).max() < 0.01  # on the segment: only the image's colour
    assert alpha.min() > -0.01 and alpha.max() < 1.01
    covered = (alpha > 0.02).mean(axis=(1, 2, 3))
    assert covered.min() > 0.03 and covered.max() < 0.7  # a shape on a background, in every image
    assert alpha.max(axis=(1, 2, 3)).min() > 0.3  # some pixel is mostly covered, even at 16 px


def test_textures_are_readable_at_32_px(one_thread):
    """At the CPU profiles' 32 px the ten textures stay resolvable: a linear probe on a rotation-
    and shift-invariant feature (the radially averaged power spectrum of the grey image) reads the
    texture of held-out combinations far above chance (0.1), so a weak texture score of a learned
    encoder at this size is the encoder's, not the renderer's."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    g = make(image_size=32)
    grey = g.images.astype(np.float32).mean(1)  # (N, S, S)
    power = np.abs(np.fft.fftshift(np.fft.fft2(grey - grey.mean((1, 2), keepdims=True)), axes=(1, 2)))
    yy, xx = np.mgrid[:32, :32] - 16
    ring = np.hypot(yy, xx).astype(int)
    feats = np.log1p(np.stack([power[:, ring == r].mean(1) for r in range(16)], 1))  # (N, 16)
    texture, n = g.factors[:, 1], g.n_train_images
    scale = StandardScaler().fit(feats[:n])
    probe = LogisticRegression(max_iter=2000).fit(scale.transform(feats[:n]), texture[:n])
    accuracy = (probe.predict(scale.transform(feats[n:])) == texture[n:]).mean()  # 0.97 measured
    assert accuracy > 0.7


# ---- split and pairs --------------------------------------------------------------------------

def test_split_is_800_200_balanced_and_renders_each_training_combination():
    g = make(renders=3)
    test = balanced_split(np.random.default_rng(0))
    assert test.shape == (200, 3) and len(np.unique(test @ [100, 10, 1])) == 200
    for s in range(K):
        rows = test[test[:, 0] == s]
        assert len(rows) == 20
        assert np.all(np.bincount(rows[:, 1], minlength=K) == 2) and np.all(np.bincount(rows[:, 2], minlength=K) == 2)
    codes = g.factors @ [100, 10, 1]
    train, held = codes[:g.n_train_images], codes[g.n_train_images:]
    assert g.n_train_images == 2400 and len(held) == 200
    assert np.all(np.bincount(train, minlength=1000)[np.unique(train)] == 3) and len(np.unique(train)) == 800
    assert set(train).isdisjoint(held) and len(set(train) | set(held)) == 1000


def test_ru_pairs_share_shape_and_are_distinct():
    g = make()
    assert not g.biased_training
    for split in ("train", "test"):
        s = g.sample(split, np.random.default_rng(1))
        z, n = s["z"], (300 if split == "train" else 200)
        assert np.array_equal(z["shape1"], z["shape2"]) and np.array_equal(s["y"]["R"], z["shape1"])
        assert np.array_equal(s["y"]["U1"], z["texture1"]) and np.array_equal(s["y"]["U2"], z["texture2"])
        assert len(np.unique(z["img1"] * 10_000 + z["img2"])) == n
        from_test = (z["img1"] >= g.n_train_images) & (z["img2"] >= g.n_train_images)
        assert np.all(from_test) if split == "test" else not np.any(from_test)
        assert [x.shape for x in s["x"]] == [(n, 3, SIZE, SIZE)] * 2 and s["x"][0].dtype == np.float32
    # unbiased: colour 2 is independent of texture 1 (chi-square of the 10 x 10 counts), unlike
    # under protocol s, where colour 2 = pi(texture 1)
    for protocol, low in (("ru", True), ("s", False)):
        z = make(protocol=protocol, n_train=4000).sample("train", np.random.default_rng(2))["z"]
        counts = np.zeros((K, K))
        np.add.at(counts, (z["texture1"], z["colour2"]), 1)
        expected = counts.sum(1, keepdims=True) * counts.sum(0, keepdims=True) / counts.sum()
        assert (((counts - expected) ** 2 / expected).sum() < 137) == low  # chi2(81): 99.99% below 137


def test_s_protocol_biases_training_pairs_only():
    g = make(protocol="s", n_test=4000)
    assert g.biased_training
    rng = np.random.default_rng(3)
    train, probe, test = (g.sample(split, rng) for split in ("train", "probe", "test"))
    z = train["z"]
    assert np.all(z["colour2"] == g.pi[z["texture1"]]) and np.all(train["y"]["S"] == 1)
    assert np.array_equal(z["shape1"], z["shape2"])
    assert sorted(g.pi) == list(range(K))
    for s in (probe, test):
        assert np.array_equal(s["z"]["shape1"], s["z"]["shape2"])
    assert 0.04 < probe["y"]["S"].mean() < 0.17 and np.all(probe["z"]["img1"] < g.n_train_images)
    # n_test = 4000 is every same-shape test pair once: the exact test distribution
    pairs = test["z"]["img1"] * 10_000 + test["z"]["img2"]
    assert len(np.unique(pairs)) == 4000 and test["y"]["S"].mean() == pytest.approx(0.1)
    assert np.all(np.bincount(test["z"]["shape1"]) == 400)


def test_too_many_pairs_is_a_user_error():
    with pytest.raises(UserError, match="n_train = 60000 exceeds the 57600"):
        make_params(Trifeature, {"protocol": "s", "n_train": 60000}, "generator")
    with pytest.raises(UserError, match="n_test"):
        make_params(Trifeature, {"n_test": 4001}, "generator")


# ---- views and augmentations ------------------------------------------------------------------

def test_views_are_seeded_and_none_gives_the_plain_images(one_thread):
    g, plain = make(), make(augment="none")
    s = g.sample("train", np.random.default_rng(0))
    z = {k: torch.as_tensor(v[:32]) for k, v in s["z"].items()}
    a = g.views(z, torch.Generator().manual_seed(7))
    assert [v.shape for v in a] == [(32, 3, SIZE, SIZE)] * 2 and a[0].dtype == torch.float32
    assert all(torch.equal(x, y) for x, y in zip(a, g.views(z, torch.Generator().manual_seed(7))))
    assert not torch.equal(a[0], g.views(z, torch.Generator().manual_seed(8))[0])
    same = plain.views(z, torch.Generator().manual_seed(7))
    assert all(torch.allclose(v, torch.as_tensor(x[:32]), atol=1e-6) for v, x in zip(same, s["x"]))


def _batch(b=6, c=3, s=20, seed=0):
    return torch.rand(b, c, s, s, generator=torch.Generator().manual_seed(seed))


def test_augment_keeps_shape_dtype_range_and_is_seeded():
    x = _batch()
    aug = Augment(blur_sigma=(0.5, 1.5))
    y = aug(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert 0 <= y.min() and y.max() <= 1
    assert torch.equal(y, aug(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(y, aug(x, torch.Generator().manual_seed(2)))
    assert not torch.equal(x, y)


def test_each_augmentation_does_what_it_says():
    x, gen = _batch(), torch.Generator().manual_seed(0)
    whole = random_resized_crop(x, gen, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0)
    assert torch.allclose(whole, x, atol=1e-5)
    assert torch.allclose(random_resized_crop(x, gen, (1.0, 1.0), (1.0, 1.0), flip_p=1.0), x.flip(-1), atol=1e-5)
    # a quarter-area crop magnifies: a constant image stays constant, a ramp gets steeper
    ramp = torch.linspace(0, 1, 20).expand(1, 3, 20, 20).contiguous()
    crop = random_resized_crop(ramp, gen, (0.25, 0.25), (1.0, 1.0), flip_p=0.0)
    assert (crop[..., -1] - crop[..., 0]).mean() == pytest.approx(0.5, abs=0.02)
    gray = random_grayscale(x, gen, p=1.0)
    assert torch.allclose(gray, grayscale(x).expand_as(x))
    assert torch.equal(color_jitter(x, gen, p=0.0), x) and torch.equal(gaussian_blur(x, gen, p=0.0), x)
    # hue alone keeps the luma; blur keeps a constant image and smooths noise
    hued = color_jitter(x * 0.5 + 0.25, gen, 0, 0, 0, 0.1, p=1.0)
    assert torch.allclose(grayscale(hued), grayscale(x * 0.5 + 0.25), atol=1e-5)
    assert not torch.allclose(hued, x * 0.5 + 0.25, atol=1e-3)
    const = torch.full((2, 3, 12, 12), 0.3)
    assert torch.allclose(gaussian_blur(const, gen, (1.0, 2.0), p=1.0), const, atol=1e-6)
    assert gaussian_blur(x, gen, (1.0, 2.0), p=1.0).std() < x.std()


def test_brightness_scales_each_image_by_one_factor():
    x = _batch() * 0.5  # stays below 1 after a factor <= 1.4: no clipping
    y = color_jitter(x, torch.Generator().manual_seed(0), 0.4, 0.0, 0.0, 0.0, p=1.0)
    ratio = (y / x).flatten(1)
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-5)
    assert ((0.6 <= ratio) & (ratio <= 1.4)).all() and ratio[:, 0].std() > 0


# ---- encoder ----------------------------------------------------------------------------------

@pytest.mark.parametrize("size,n_tokens", [(16, 4), (32, 6), (64, 4), (128, 36)])
def test_image_tokenizer_shapes(size, n_tokens):
    tok = make_tokenizer((3, size, size), 16, n_tokens, 8)
    assert isinstance(tok, ImageTokenizer)
    assert tok(torch.zeros(2, 3, size, size)).shape == (2, n_tokens, 8)
    assert isinstance(make_tokenizer((5,), 16, 4, 8), VectorTokenizer)


def test_alexnet_widths_and_feature_maps_at_224():
    tok = ImageTokenizer((3, 224, 224), 256, 36, 8)
    convs = [m for m in tok.features.net if isinstance(m, torch.nn.Conv2d)]
    assert [m.out_channels for m in convs] == [64, 192, 384, 256, 256]
    assert convs[0].kernel_size == (11, 11) and convs[0].stride == (4, 4)
    small = ImageTokenizer((3, 224, 224), 8, 36, 8)
    assert small.features(torch.zeros(1, 3, 224, 224)).shape[-2:] == (6, 6)


# ---- cache ------------------------------------------------------------------------------------

def test_damaged_cache_is_rendered_again_identically(one_thread):
    g = make(seed=11)
    original = g.images.copy()
    path = g.cache_path
    assert path.is_file() and path.parent == cache_root()
    data = bytearray(path.read_bytes())
    for k in range(len(data) // 3, len(data) // 3 + 64):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))
    again = make(seed=11)
    assert np.array_equal(again.images, original)
    assert np.array_equal(make(seed=11).images, original)  # the repaired file now loads
    path.unlink()
    assert np.array_equal(make(seed=11).images, original) and path.is_file()


# ---- ground truth -----------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["ru", "s"])
def test_ground_truth_closed_forms(protocol):
    truth = make(protocol=protocol).ground_truth()
    b, h = math.log2(10), -(0.1 * math.log2(0.1) + 0.9 * math.log2(0.9))
    expect = {"R": (b, 0, 0, 0), "U1": (0, b, 0, 0), "U2": (0, 0, b, 0), "S": (0, 0, 0, h)}
    for task, atoms in expect.items():
        t = truth[task]
        assert np.allclose([t.redundancy, t.unique1, t.unique2, t.synergy], atoms, atol=1e-6), (task, t)


def test_merging_equal_sources_keeps_the_pid():
    rng = np.random.default_rng(0)
    for _ in range(5):
        p = rng.random((3, 4, 3)) * (rng.random((3, 4, 3)) < 0.7) + 1e-3
        # split value 0 of X1 into two values with proportional tables, and add an empty value
        w = rng.random()
        q = np.concatenate([w * p[:1], (1 - w) * p[:1], p[1:], np.zeros((1, 4, 3))])
        q = np.concatenate([q[:, :2], 0.5 * q[:, 2:3], 0.5 * q[:, 2:3], q[:, 3:]], axis=1)
        merged = merge_equal_sources(q)
        assert merged.shape == p.shape
        a, c = broja(p), broja(merged)
        assert np.allclose(list(a.as_dict().values()), list(c.as_dict().values()), atol=1e-7)


def test_modality_codes_of_all_test_pairs_give_the_exact_pid():
    g = make(protocol="s", n_test=4000)
    test = g.sample("test", np.random.default_rng(0))
    codes = g.modality_codes(test["z"])
    assert codes[2] == codes[3] == 200
    exact = g.ground_truth()["S"]
    empirical = prediction_pid(codes, test["y"]["S"], 2)  # the labels as a perfect predictor
    assert np.allclose(list(empirical.as_dict().values()), list(exact.as_dict().values()), atol=1e-6)
