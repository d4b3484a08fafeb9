"""Bimodal Trifeature: rendering, split, pairing rules, augmentations, cache and exact ground truth."""
import math

import numpy as np
import pytest
import torch

from generators.trifeature import Trifeature
from synergy_bench.data import prediction_pid
from synergy_bench.nn import make_tokenizer
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
from synergy_bench.trifeature.cache import bank_path, cache_root
from synergy_bench.trifeature.pairs import balanced_split
from synergy_bench.trifeature.render import (
    COLOURS,
    SHAPES,
    TEXTURES,
    K,
    Layout,
    random_field,
    render,
    shape_samples,
    shape_templates,
    texture_on,
    texture_samples,
)
from synergy_bench.trifeature.truth import merge_equal_sources

SIZE = 16  # tiny images keep the bank (1,000 images at renders = 1) at about a second


def make(seed=0, **kw):
    values = {"image_size": SIZE, "renders": 1, "n_train": 300, "n_test": 200, **kw}
    return Trifeature(make_params(Trifeature, values, "generator"), seed)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SYNERGY_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def layout(n=1, shape_angle=0, centre=(112.0, 112.0), texture_angle=0, offset=(0, 0), seed=0):
    """A hand-set layout of n identical images (224 px coordinates by default)."""
    return Layout(np.full(n, shape_angle), np.tile(centre, (n, 1)), np.full(n, texture_angle),
                  np.tile(offset, (n, 1)), np.arange(seed, seed + n))


def texture_at_224(name, angle=0, n=1, seed=0):
    """(n, 224, 224) float texture ``name`` at the published size, one sample per pixel."""
    lay = layout(n, texture_angle=angle, seed=seed)
    return texture_samples(TEXTURES.index(name), lay, 224, 1.0, 1).float()


def peak_frequency(img, pad=5):
    """(|f|, direction in degrees in [0, 180)) of the strongest non-zero spatial frequency of a
    square image, in cycles per pixel; the direction is that of (f_col, -f_row): 90 = vertical.
    A Hann window and zero padding to ``pad`` times the side resolve 1 / (pad side) px^-1."""
    side = img.shape[-1]
    window = torch.hann_window(side, periodic=False, dtype=torch.float64)
    power = torch.fft.fft2((img - img.mean()) * window[:, None] * window[None], s=(pad * side,) * 2).abs()
    row, col = np.unravel_index(int(power.argmax()), power.shape)
    f_row, f_col = np.fft.fftfreq(pad * side)[row], np.fft.fftfreq(pad * side)[col]
    return math.hypot(f_row, f_col), math.degrees(math.atan2(-f_row, f_col)) % 180


# ---- rendering --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["stripes", "grid", "dots", "triangles", "zigzags", "pluses"])
def test_texture_period_is_10_px_at_224(name):
    """The published period: the dominant spatial frequency of the periodic textures at 224 px is
    1/10 px^-1 (the padded spectrum has a bin at 0.1 exactly)."""
    f, _ = peak_frequency(texture_at_224(name)[0].double())
    assert f == pytest.approx(0.1, abs=1e-9)


@pytest.mark.parametrize("angle", [0, 30, -40])
def test_stripes_are_horizontal_and_zigzags_vertical_before_the_turn(angle):
    """Stripes are horizontal lines (frequency along the columns' direction, 90 degrees) and
    zigzags run vertically (frequency horizontal, 0 degrees); the texture angle turns both
    counter-clockwise. Tolerance: one bin of the padded spectrum, 1/1120 px^-1 (0.5 degrees)."""
    for name, rest in (("stripes", 90), ("zigzags", 0)):
        f, direction = peak_frequency(texture_at_224(name, angle)[0].double())
        assert f == pytest.approx(0.1, abs=1 / 1120)
        assert abs((direction - rest - angle + 90) % 180 - 90) < 0.6, (name, direction)


def test_texture_fill_fractions_are_the_published_ones():
    """Fraction of texels on, from each pattern's definition: stripes 3/10, grid 1 - (7/10)^2,
    dots 45 lattice points of the disc r^2 < 16 per 100, triangles 2 (1 + 3 + 5 + 7) / 100,
    zigzags 4/10, pluses (51 + 42) / 200 (even and odd rows of cells), noise 1/2,
    rain 1 - 0.95^7 (a streak of 7 starts above with probability 0.05 each)."""
    expected = {"solid": 1.0, "stripes": 0.3, "grid": 0.51, "dots": 0.45, "triangles": 0.32,
                "zigzags": 0.4, "pluses": 0.465, "noise": 0.5, "rain": 1 - 0.95 ** 7}
    for name, fill in expected.items():
        got = texture_at_224(name, angle=17, n=4).mean().item()
        assert got == pytest.approx(fill, abs=0.004 if name in ("noise", "rain") else 0.002), name
    # hexgrid: horizontal lines 2 of 10, and two line families at +-30 degrees with a period of
    # 10 px along the rows, so 5 px apart (fill of each family alone 2/10)
    f, direction = peak_frequency(texture_at_224("hexgrid")[0].double())
    assert f == pytest.approx(0.1) and direction == pytest.approx(90)
    y, x = torch.meshgrid(torch.arange(1000), torch.arange(1000), indexing="ij")
    family = ((x + 173 * y // 100) % 10 < 2).float()
    assert (texture_on(TEXTURES.index("hexgrid"), y[None], x[None])[0].float() >= family).all()


def test_noise_and_rain_are_random_per_texel():
    """Noise: independent texels (neighbours agree half the time); rain: vertical streaks, so a
    texel below an on texel is on with probability 6/7 + (1/7) (1 - 0.95^7) (inside or at the end
    of a streak), while the texel beside it is on with the plain fill 1 - 0.95^7."""
    side = 400
    noise, rain = (random_field(TEXTURES.index(t), np.array([3]), side)[0, 10:, 10:].float() for t in ("noise", "rain"))
    assert (noise[:, 1:] == noise[:, :-1]).float().mean().item() == pytest.approx(0.5, abs=0.01)
    fill = 1 - 0.95 ** 7
    below = (rain[1:] * rain[:-1]).sum() / rain[:-1].sum()
    beside = (rain[:, 1:] * rain[:, :-1]).sum() / rain[:, :-1].sum()
    assert below.item() == pytest.approx(6 / 7 + fill / 7, abs=0.02)
    assert beside.item() == pytest.approx(fill, abs=0.02)
    assert not torch.equal(random_field(TEXTURES.index("noise"), np.array([4]), side)[0, 10:, 10:].float(), noise)


def _rows(mask):
    """(first column, width) of each non-empty row of a template, asserting one run per row."""
    out = []
    for i, row in enumerate(mask):
        cols = np.flatnonzero(row)
        if len(cols):
            assert cols[-1] - cols[0] + 1 == len(cols), f"row {i} is not one run"
            out.append((i, cols[0], len(cols)))
    return np.array(out)


def test_shape_geometry():
    """Areas against the closed forms of the shapes on the 128 texel box, and the published oddities:
    the rhombus is a parallelogram (rows of equal width c = 64 texels, sliding left 1/2 texel per
    row: opposite sides parallel, not a rhombus of equal diagonals), the pentagon is house-shaped
    (a roof rising from its widest row at 0.4 of the height to an apex, walls narrowing to 1 - 2/3.1
    of the width at the bottom, mirror-symmetric)."""
    t = shape_templates()
    n = t.shape[-1]
    area = dict(zip(SHAPES, t.reshape(K, -1).mean(1)))
    closed = {"triangle": 1 / 2, "square": 1, "plus": 5 / 9, "circle": math.pi / 4, "tee": 5 / 9,
              "rhombus": 1 / 2, "fivesquare": 5 / 9, "trapezoid": (2 - 2 / 3.1) / 2,
              "pentagon": 0.4 / 2 + 0.6 * (2 - 0.6 * 2 / 3.1) / 2}
    for name, a in closed.items():
        assert area[name] == pytest.approx(a, abs=0.015), name
    rhombus = _rows(t[SHAPES.index("rhombus")])
    assert len(rhombus) == n and np.all(np.abs(rhombus[:, 2] - (n // 2 - 1)) <= 1)
    slope = np.polyfit(rhombus[:, 0], rhombus[:, 1], 1)[0]
    assert slope == pytest.approx(-0.5, abs=0.01)
    house = _rows(t[SHAPES.index("pentagon")])
    widest = house[np.argmax(house[:, 2]), 0]
    assert widest == pytest.approx(0.4 * n, abs=2) and house[0, 2] <= 3  # eaves, apex
    assert np.all(np.diff(house[house[:, 0] < widest, 2]) >= 0)  # roof widens downward
    assert np.all(np.diff(house[house[:, 0] > widest, 2]) <= 0)  # walls narrow downward
    assert house[-1, 2] == pytest.approx(n * (1 - 2 * 0.6 / 3.1), abs=2)
    mirrored = t[SHAPES.index("pentagon"), :, 1:][:, ::-1]  # j -> n - j about the centre column
    assert np.array_equal(mirrored, t[SHAPES.index("pentagon"), :, 1:])
    assert _rows(t[SHAPES.index("triangle")])[0, 2] < 3  # apex up
    trapezoid = _rows(t[SHAPES.index("trapezoid")])
    assert trapezoid[0, 2] > trapezoid[-1, 2]  # narrowing downward


def test_shapes_are_placed_scaled_and_turned():
    """At 224 px an unturned square fills exactly its 128 px box about the centre; a turn keeps the
    area; positive angles turn counter-clockwise: the triangle's centroid (below its box centre,
    apex up) moves to the right of it at +90 degrees; at 32 px the box is 128 32 / 224 px."""
    square = shape_samples(np.array([SHAPES.index("square")]), layout(), 224, 1)[0]
    box = torch.zeros(224, 224)
    box[48:176, 48:176] = 1
    assert torch.equal(square, box)
    tri = SHAPES.index("triangle")
    for angle, (down, right) in ((0, (1, 0)), (90, (0, 1)), (-90, (0, -1))):
        a = shape_samples(np.array([tri]), layout(shape_angle=angle), 224, 1)[0]
        assert a.sum().item() == pytest.approx(128 ** 2 / 2, rel=0.01)
        g = torch.arange(224) + 0.5 - 112
        centroid = ((a.sum(1) * g).sum() / a.sum(), (a.sum(0) * g).sum() / a.sum())
        assert [round(c.item() / 21.3) for c in centroid] == [down, right]  # 128 / 6: a third of half the height
    small = shape_samples(np.array([SHAPES.index("square")]), layout(centre=(16.0, 16.0)), 32, 8)[0]
    assert small.sum().item() / 8 ** 2 == pytest.approx((128 * 32 / 224) ** 2, rel=0.01)  # samples / pixel


def test_layout_keeps_the_turned_shape_inside_the_image():
    lay = Layout.draw(500, 224, np.random.default_rng(0))
    assert lay.shape_angle.min() >= -45 and lay.shape_angle.max() <= 44
    assert np.all(lay.shape_angle == np.round(lay.shape_angle))
    assert set(np.unique(lay.texture_offset)) == set(range(10))
    alpha = shape_samples(np.full(500, SHAPES.index("square")), lay, 224, 1)
    assert alpha.sum((1, 2)).min().item() == pytest.approx(128 ** 2, rel=0.01)  # never cut off


def test_rendering_is_deterministic_per_seed(one_thread):
    a, b, other = make(seed=4), make(seed=4), make(seed=5)
    rows = a.factors[::97]
    lay = Layout.draw(len(rows), SIZE, np.random.default_rng(1))
    first = render(rows, lay, SIZE, a.period, 2)
    assert np.array_equal(first, render(rows, Layout.draw(len(rows), SIZE, np.random.default_rng(1)), SIZE, a.period, 2))
    assert not np.array_equal(first, render(rows, Layout.draw(len(rows), SIZE, np.random.default_rng(2)), SIZE, a.period, 2))
    assert np.array_equal(a.sample("test", np.random.default_rng(0))["x"][0],
                          b.sample("test", np.random.default_rng(0))["x"][0])
    assert not np.array_equal(a.factors, other.factors)  # another seed, another split


def test_period_and_supersampling_follow_the_image_size():
    """Published 224 px: period 10 px, one sample per pixel; 32 px: the 4 px floor, texels of
    0.4 px sampled 5 times per pixel side."""
    big, small = make(image_size=224), make(image_size=32)
    assert (big.period, big.supersample) == (10.0, 1)
    assert (small.period, small.supersample) == (4.0, 5)
    assert make(image_size=32, supersample=3).supersample == 3


def test_shapes_textures_and_colours_are_distinct():
    masks = torch.from_numpy(shape_templates()).flatten(1).float()  # (10, T^2)
    for i in range(K):
        for j in range(i + 1, K):
            differ = (masks[i] != masks[j]).float().sum() / torch.maximum(masks[i], masks[j]).sum()
            assert differ > 0.15, (SHAPES[i], SHAPES[j])
    pats = torch.stack([texture_at_224(t)[0].flatten() for t in TEXTURES])
    assert ((pats[:, None] != pats[None]).float().mean(-1) + torch.eye(K)).min() > 0.1
    rgb = torch.tensor(list(COLOURS.values()))
    assert (torch.cdist(rgb, rgb) + torch.eye(K)).min() > 0.3


def test_rendered_images_show_the_colour_inside_the_shape(one_thread):
    """Every pixel is background + alpha (colour - background), alpha the covered fraction, in 8
    bits by truncation (background 127)."""
    g = make()
    img = g.images.astype(float) / 255  # (N, 3, S, S)
    bg = 127 / 255
    assert np.all(g.images[:, :, 0, 0] == 127)  # a corner never holds the shape
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
    accuracy = (probe.predict(scale.transform(feats[n:])) == texture[n:]).mean()  # 0.925 measured
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



def test_weak_views_are_crops_only(one_thread):
    """CLIP's weak views (CoMM code: random resized crop of area scale [0.5, 1], nothing else):
    seeded; colours untouched (each pixel stays on its image's grey-to-colour segment, up to the
    8-bit steps); never flipped, and magnified at most 1 / sqrt(0.5 * 3/4): a horizontal ramp
    from 0 to 1 comes out rising from one side to the other by w = sqrt(area * ratio) in [0.61, 1]."""
    g = make(image_size=32)
    s = g.sample("train", np.random.default_rng(0))
    z = {k: torch.as_tensor(v[:16]) for k, v in s["z"].items()}
    a = g.weak_views(z, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, g.weak_views(z, torch.Generator().manual_seed(3))))
    assert not torch.equal(a[0], torch.as_tensor(s["x"][0][:16]))
    std, mean = torch.tensor([0.229, 0.224, 0.225])[:, None, None], torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    img = a[0] * std + mean - 127 / 255  # (B, 3, S, S) minus the background
    colour = torch.tensor(list(COLOURS.values()))[z["colour1"]][:, :, None, None] - 127 / 255
    alpha = (img * colour).sum(1, keepdim=True) / (colour ** 2).sum(1, keepdim=True)
    assert (img - alpha * colour).abs().max() < 0.01
    ramp = torch.linspace(0, 1, 64).expand(256, 3, 64, 64).contiguous()
    slope = Augment.weak()(ramp, torch.Generator().manual_seed(0))[..., 32:48].diff(dim=-1).mean((1, 2, 3)) * 63
    assert slope.min() >= math.sqrt(0.5 * 3 / 4) - 1e-4 and slope.max() <= 1 + 1e-4  # > 0: no flip
    assert slope.min() < 0.7  # some crops do magnify


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
    path = bank_path(g.cache_key)
    assert path.is_file() and path.parent == cache_root()
    assert bank_path({**g.cache_key, "seed": 0}) != path
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
