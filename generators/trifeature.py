r"""Bimodal Trifeature: pairs of rendered images whose shared, unique and synergistic factors are known.

The Trifeature images of Hermann and Lampinen (2020, "What shapes feature representations?
Exploring datasets, architectures, and training"), paired into two modalities as in CoMM
(Dufumier, Castillo-Navarro, Tuia and Thiran, ICLR 2025, section 4.1 and public code).

**Images.** Each image shows one of 10 shapes, filled with one of 10 binary textures drawn in one
of 10 colours, on a grey background. At 224 px the shape fills a 128 px box, rotated by an angle
uniform in [-45, 45] degrees and placed uniformly where the rotated box fits; the texture has its
own uniform rotation in [-45, 45] degrees and random phase. A pixel shows the colour where shape
and texture overlap and the background elsewhere, anti-aliased by the fraction of
``supersample`` x ``supersample`` sub-pixel samples that overlap. Everything scales with
``image_size``, except that the texture period (10 px at 224 px) never falls below
``min_texture_period`` pixels, so that textures stay visible at CPU sizes (32 px).

Shapes and textures carry the Trifeature names, but are drawn here from their own definitions:
shapes as polygons, boxes and a disc in the unit box (the rhombus has 60 degree angles, so that no
rotation within +-45 degrees turns it into a square); textures as periodic functions of rotated
coordinates, except ``noise`` (random cells half a period wide, rather than random pixels) and
``rain`` (a random vertical streak in each of most cells half a period wide), whose random cells
are drawn per image. Angles are continuous rather than whole degrees.

**Split.** The 1000 (shape, texture, colour) combinations are split 800 / 200 from the seed.
Each training combination is rendered ``renders`` times (published: 3, so 2,400 images), each test
combination once. Unlike the plain random split of the CoMM code, the split is *balanced*: every
shape has 20 test combinations, two of each texture and two of each colour (two disjoint random
texture -> colour permutations per shape), so every shape has 80 x ``renders`` training images.

**Pairs** (image 1 is modality 1, image 2 modality 2; two copies of the image set). Let G_s be the
images of shape s in a split. *Unbiased* pairs: s uniform, then image 1 and image 2 independent and
uniform in G_s, i.e. uniform over all same-shape pairs (i, j), i = j included, as in the code.
A fixed random permutation pi of the 10 textures onto the 10 colours (the map M of CoMM) is drawn
from the seed. *Biased* pairs: uniform over the same-shape pairs with colour(j) = pi(texture(i)).

* ``protocol = ru``: training pairs unbiased (published: 10,000 drawn without replacement).
* ``protocol = s``: training pairs biased; the linear probes fit on ``sample("probe")``, n_train
  unbiased pairs of training images (``biased_training`` is True), as the CoMM code does.
* Test pairs, either protocol: unbiased pairs of test images, drawn without replacement from the
  4,000 same-shape test pairs (n_test = 4000 takes them all: the exact test distribution).

**Tasks**, on every split of both protocols (the probes always see unbiased pairs):

    R  = shape (shared by both images)              10 classes
    U1 = texture(image 1),  U2 = texture(image 2)   10 classes
    S  = 1[colour(image 2) = pi(texture(image 1))]  2 classes (balanced accuracy, chance 1/2)

Under ``ru`` the training pairs carry no trace of pi, so S is a control there: a representation
trained on them has no reason to hold the texture-colour conjunction. Under ``s`` every training
pair has S = 1, and only a model that relates the texture of image 1 to the colour of image 2
can learn the pairing.

**Ground truth** is the exact BROJA PID of each task on the test distribution, with X1 and X2 the
(shape, texture, colour) of image 1 and image 2 and the table enumerated over all same-shape test
pairs. The balanced split makes the closed forms exact: within a shape, textures and colours are
uniform and the two images independent, so the shape is a function of X1 and of X2, image 2 says
nothing about texture(image 1), and either image alone leaves P(S = 1) = 2/20 = 1/10:

    R:      R = log2 10 = 3.321928,  U1 = U2 = S = 0
    U1:     U1 = log2 10                (U2 likewise)
    S:      S = h(1/10) = 0.468996,  R = U1 = U2 = 0        (h the binary entropy)

**Views and memory.** ``z`` holds the pairs' image indices into the bank of rendered images
(``img1``, ``img2``) and their factors. ``views`` gathers the bank images of a batch on z's device
and applies the augmentation chosen by ``augment``: ``simclr``, CoMM's SimCLR set (random resized
crop of area scale [crop_min, 1], colour jitter p 0.8, grayscale p 0.2, Gaussian blur p 0.5 with
sigma [0.1, 2] px at 224 px, scaled with the image, horizontal flip; see
:mod:`synergy_bench.nn.images`); ``no_color``, the same without jitter and grayscale, so the colours
S needs survive the views; ``none``, the plain images. Views and ``x`` are normalised with the
ImageNet channel statistics; ``x`` holds the plain images, float32 (N, 3, S, S) per modality (the
CoMM code probes random crops of scale [0.5, 1]; here the probes see whole, un-augmented images): 2 N 3 S^2 4 bytes, 0.25 GB for 10,000 pairs at 32 px but 12 GB at 224 px. The bank is
(800 renders + 200, 3, S, S): 8 MB at 32 px, 0.39 GB at 224 px as uint8 on disk, four times that
as the float32 tensor each device holds.

**Cache.** The bank is rendered once per (seed, image parameters) and stored as uint8 in
``$SYNERGY_BENCH_CACHE/trifeature/<key>.npz`` (default ``~/.cache/synergy-bench``) beside the
SHA-256 of its bytes; a missing, unreadable or damaged file is rendered again (same bytes). The
key hashes the seed, the image parameters and the source of the rendering code.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synergy_bench.data import Fixed, Generator
from synergy_bench.nn.augment import Augment, normalize
from synergy_bench.pid import PID, broja
from synergy_bench.registry import param, register_generator

K = 10  # values of each factor
SHAPES = ("triangle", "square", "plus", "circle", "tee", "rhombus", "pentagon", "star", "fivesquare",
          "trapezoid")
TEXTURES = ("solid", "stripes", "grid", "hexgrid", "dots", "noise", "triangles", "zigzags", "rain", "pluses")
COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0),
           "yellow": (1.0, 1.0, 0.0), "pink": (1.0, 0.4, 1.0), "cyan": (0.0, 1.0, 1.0),
           "purple": (0.3, 0.0, 0.5), "ocean": (0.1, 0.4, 0.5), "orange": (1.0, 0.6, 0.0),
           "white": (1.0, 1.0, 1.0)}  # the RGB values of the Trifeature colours
BACKGROUND = (0.5, 0.5, 0.5)
TASKS = ("R", "U1", "U2", "S")
RENDER_SIZE, BASE_SIZE, MAX_ANGLE = 224, 128, 45.0  # published canvas, shape box, rotation (degrees)
TEST_PER_SHAPE = 20  # balanced split: 2 of each texture and of each colour per shape
TEMPLATE = 512  # texels per side of the binary shape templates over the unit box [-1, 1]^2


# ---- shapes: membership in the unit box [-1, 1]^2 (y points down) ------------------------------

def _polygon(x: torch.Tensor, y: torch.Tensor, pts: list[tuple[float, float]]) -> torch.Tensor:
    """Even-odd rule: a point is inside if a ray to +x crosses the boundary an odd number of times."""
    inside = torch.zeros_like(x, dtype=torch.bool)
    for (ax, ay), (bx, by) in zip(pts, pts[1:] + pts[:1]):
        if ay == by:
            continue
        crosses = ((ay > y) != (by > y)) & (x < (bx - ax) * (y - ay) / (by - ay) + ax)
        inside ^= crosses
    return inside


def _radial(n: int, radii: tuple[float, ...]) -> list[tuple[float, float]]:
    """n vertices at angles -90 + 360 k / n degrees (first one straight up), radii cycled."""
    return [(radii[k % len(radii)] * math.cos(math.radians(-90 + 360 * k / n)),
             radii[k % len(radii)] * math.sin(math.radians(-90 + 360 * k / n))) for k in range(n)]


def _shape_mask(name: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Boolean membership of points (x, y) of the unit box in shape ``name``."""
    ax, ay, third = x.abs(), y.abs(), 1 / 3
    box = (ax <= 1) & (ay <= 1)
    if name == "triangle":
        return _polygon(x, y, [(0.0, -1.0), (1.0, 1.0), (-1.0, 1.0)])
    if name == "square":
        return box
    if name == "plus":
        return box & ((ax < third) | (ay < third))
    if name == "circle":
        return x ** 2 + y ** 2 < 1
    if name == "tee":
        return box & ((y < -third) | (ax < third))
    if name == "rhombus":  # 60 / 120 degree angles: no rotation within +-45 makes it a square
        return _polygon(x, y, [(0.0, -1.0), (0.58, 0.0), (0.0, 1.0), (-0.58, 0.0)])
    if name == "pentagon":
        return _polygon(x, y, _radial(5, (1.0,)))
    if name == "star":
        return _polygon(x, y, _radial(10, (1.0, 0.4)))
    if name == "fivesquare":  # the four corner cells and the centre cell of a 3 x 3 grid
        return box & ((ax > third) == (ay > third))
    if name == "trapezoid":
        return _polygon(x, y, [(-1.0, -1.0), (1.0, -1.0), (0.35, 1.0), (-0.35, 1.0)])
    raise ValueError(f"unknown shape {name!r}")


def shape_templates(size: int = TEMPLATE) -> torch.Tensor:
    """(10, size, size) bool: each shape sampled at the texel centres of the unit box."""
    c = (torch.arange(size, dtype=torch.float32) + 0.5) * 2 / size - 1
    y, x = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([_shape_mask(s, x, y) for s in SHAPES])


# ---- textures: binary patterns of texture coordinates (u, v), one period = 1 -------------------

def _frac(t: torch.Tensor) -> torch.Tensor:
    return t - t.floor()


def texture_mask(name: str, u: torch.Tensor, v: torch.Tensor, tables: dict[str, torch.Tensor]) -> torch.Tensor:
    """Boolean pattern ``name`` at texture coordinates (u, v) of shape (n, ...).

    ``tables`` holds per-image random cells (n, C, C) for the random textures, indexed modulo C:
    ``bits`` (noise, on half-period cells), and ``drop``, ``dx``, ``dy`` (rain: whether a cell,
    half a period wide and one tall, has a streak, its horizontal centre and its top).
    """
    fu, fv = _frac(u), _frac(v)
    if name == "solid":
        return torch.ones_like(u, dtype=torch.bool)
    if name == "stripes":
        return fv < 1 / 3
    if name == "grid":
        return (fu < 0.25) | (fv < 0.25)
    if name == "hexgrid":  # three families of lines 60 degrees apart
        r3 = math.sqrt(3) / 2
        return (fv < 0.18) | (_frac(v / 2 + r3 * u) < 0.18) | (_frac(v / 2 - r3 * u) < 0.18)
    if name == "dots":
        return (fu - 0.5) ** 2 + (fv - 0.5) ** 2 < 0.3 ** 2
    if name == "triangles":  # one upward triangle per cell
        return (fu - 0.5).abs() < 0.45 * fv
    if name == "zigzags":  # stripes displaced by a triangle wave
        return _frac(v - 0.5 * (2 * fu - 1).abs()) < 1 / 3
    if name == "pluses":
        cu, cv = (fu - 0.5).abs(), (fv - 0.5).abs()
        return ((cu < 0.12) & (cv < 0.38)) | ((cv < 0.12) & (cu < 0.38))
    n, cells = u.shape[0], next(iter(tables.values())).shape[-1]

    def flat(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Flat index of cell (floor a, floor b), modulo ``cells``, into each image's table."""
        image = torch.arange(n).view(-1, *[1] * (u.dim() - 1))
        return image * cells ** 2 + (a.floor().long() % cells) * cells + b.floor().long() % cells

    if name == "noise":
        return tables["bits"].flatten()[flat(2 * u, 2 * v)]
    if name == "rain":  # short vertical streaks in random cells half a period wide, one period tall
        cell = flat(2 * u, v)
        dx, dy = tables["dx"].flatten()[cell], tables["dy"].flatten()[cell]
        return tables["drop"].flatten()[cell] & ((_frac(2 * u) - dx).abs() < 0.2) & (fv >= dy) & (fv < dy + 0.65)
    raise ValueError(f"unknown texture {name!r}")


def _tables(texture: str, seed: int, cells: int) -> dict[str, torch.Tensor]:
    """Random cells (cells x cells) of one image's noise or rain texture."""
    rng = np.random.default_rng(seed)
    shape = (cells, cells)
    if texture == "noise":
        return {"bits": torch.as_tensor(rng.random(shape) < 0.5)}
    return {"drop": torch.as_tensor(rng.random(shape) < 0.8),
            "dx": torch.as_tensor(rng.uniform(0.25, 0.75, shape), dtype=torch.float32),
            "dy": torch.as_tensor(rng.uniform(0.0, 0.35, shape), dtype=torch.float32)}


def render(factors: np.ndarray, image_size: int, period: float, supersample: int,
           rng: np.random.Generator, chunk_points: int = 1 << 18) -> np.ndarray:
    """Render images of (shape, texture, colour) rows; returns uint8 (N, 3, S, S).

    Per image, from ``rng`` in this order (vectorised over images): shape angle theta ~ U(-45, 45)
    degrees, centre position (two uniforms), texture angle phi ~ U(-45, 45) degrees, texture phase
    (two uniforms), seed of the random texture cells. With the half box b = 64 S / 224 px and the
    rotated box's half extent e = b (|cos theta| + |sin theta|), the centre c is uniform in
    [e, S - e]^2. A sub-pixel sample at pixel position p is in the shape if the template holds
    R(theta)^T (p - c) / b, and in the texture if the pattern holds R(phi)^T p / period + phase.
    """
    n, s = len(factors), image_size
    theta = np.radians(rng.uniform(-MAX_ANGLE, MAX_ANGLE, n))
    centre = rng.random((n, 2))
    phi = np.radians(rng.uniform(-MAX_ANGLE, MAX_ANGLE, n))
    phase = rng.random((n, 2))
    table_seeds = rng.integers(2 ** 63, size=n)
    half = BASE_SIZE / 2 * s / RENDER_SIZE
    extent = half * (np.abs(np.cos(theta)) + np.abs(np.sin(theta)))
    centre = extent[:, None] + centre * (s - 2 * extent[:, None])
    templates = shape_templates().flatten()
    # texture coordinates lie in [-sqrt 2 S / period, sqrt 2 S / period + 1]: ``cells`` exceeds the
    # number of half-period cells they span, so indices taken modulo ``cells`` never repeat a cell
    cells = 4 * math.ceil(math.sqrt(2) * s / period + 2)
    side = s * supersample
    grid = (torch.arange(side, dtype=torch.float32) + 0.5) / supersample
    py, px = grid.view(1, side, 1), grid.view(1, 1, side)
    colours = np.array(list(COLOURS.values()))
    out = np.empty((n, 3, s, s), dtype=np.uint8)
    step = max(1, chunk_points // side ** 2)
    for tex in range(K):  # one texture at a time: each chunk evaluates a single pattern
        members = np.flatnonzero(factors[:, 1] == tex)
        for start in range(0, len(members), step):
            idx = members[start:start + step]

            def col(a: np.ndarray, idx: np.ndarray = idx) -> torch.Tensor:
                return torch.as_tensor(a[idx], dtype=torch.float32).view(-1, 1, 1)  # (n, 1, 1)

            ct, st, cp, sp = col(np.cos(theta)), col(np.sin(theta)), col(np.cos(phi)), col(np.sin(phi))
            dx, dy = px - col(centre[:, 0]), py - col(centre[:, 1])
            lx, ly = (ct * dx + st * dy) / half, (-st * dx + ct * dy) / half  # unit-box coordinates
            ix, iy = ((lx + 1) * TEMPLATE / 2).floor().long(), ((ly + 1) * TEMPLATE / 2).floor().long()
            inbox = (ix >= 0) & (ix < TEMPLATE) & (iy >= 0) & (iy < TEMPLATE)
            which = torch.as_tensor(factors[idx, 0]).view(-1, 1, 1) * TEMPLATE ** 2
            shape = inbox & templates[which + iy.clamp(0, TEMPLATE - 1) * TEMPLATE + ix.clamp(0, TEMPLATE - 1)]
            u = (cp * px + sp * py) / period + col(phase[:, 0])
            v = (-sp * px + cp * py) / period + col(phase[:, 1])
            tables = {}
            if TEXTURES[tex] in ("noise", "rain"):
                per_image = [_tables(TEXTURES[tex], int(table_seeds[i]), cells) for i in idx]
                tables = {k: torch.stack([t[k] for t in per_image]) for k in per_image[0]}
            on = (shape & texture_mask(TEXTURES[tex], u, v, tables)).to(torch.float32)
            alpha = on.view(len(idx), s, supersample, s, supersample).mean((2, 4)).numpy()[:, None]
            rgb = alpha * colours[factors[idx, 2]][:, :, None, None] + (1 - alpha) * np.array(BACKGROUND)[:, None, None]
            out[idx] = np.round(255 * rgb).astype(np.uint8)
    return out


def balanced_split(rng: np.random.Generator) -> np.ndarray:
    """The 200 test combinations (shape, texture, colour), sorted: per shape, two disjoint random
    permutations texture -> colour, so each texture and each colour appears twice per shape."""
    rows = []
    for s in range(K):
        first = rng.permutation(K)
        second = rng.permutation(K)
        while np.any(second == first):
            second = rng.permutation(K)
        rows += [(s, t, c) for t in range(K) for c in (first[t], second[t])]
    return np.array(sorted(rows), dtype=np.int64)


def merge_equal_sources(p: np.ndarray) -> np.ndarray:
    r"""Merge the values of each source whose conditional table is the same; the PID is unchanged.

    If x1 and x1' have p(x2, y | x1) = p(x2, y | x1'), let A be X1 with such values merged. Then
    X1 is independent of (X2, Y) given A, and every BROJA atom of (A, X2; Y) equals that of
    (X1, X2; Y): I(X1;Y) = I(A;Y); any Q in Delta_P marginalises to a feasible Q(a, x2, y) with
    no larger I_Q(.;Y), and Q(a, x2, y) P(x1 | a) lifts a feasible reduced table back with equal
    value, so the minima agree. Values that never occur are dropped. Likewise for X2. Conditional
    tables are compared to 12 decimals (merging tables closer than that moves an atom by less).
    """
    for axis in (0, 1):
        q = np.moveaxis(p, axis, 0)
        rest = q.shape[1:]
        q = q.reshape(q.shape[0], -1)
        q = q[q.sum(1) > 0]
        _, cls = np.unique(np.round(q / q.sum(1, keepdims=True), 12), axis=0, return_inverse=True)
        merged = np.zeros((cls.max() + 1, q.shape[1]))
        np.add.at(merged, cls.ravel(), q)
        p = np.moveaxis(merged.reshape(-1, *rest), 0, axis)
    return p


@functools.cache
def render_digest() -> str:
    """SHA-256 of the source of the rendering functions: part of the cache key, so that a change
    to the rendering never serves images of the old code (the package version where the source
    is not available)."""
    try:
        source = "".join(inspect.getsource(f) for f in (_polygon, _radial, _shape_mask, shape_templates,
                                                          _frac, texture_mask, _tables, render))
    except (OSError, TypeError):
        from synergy_bench import __version__ as source
    return hashlib.sha256(source.encode()).hexdigest()


def cache_root() -> Path:
    """Folder of the rendered banks: ``$SYNERGY_BENCH_CACHE/trifeature`` (default ~/.cache/synergy-bench)."""
    return Path(os.environ.get("SYNERGY_BENCH_CACHE", "~/.cache/synergy-bench")).expanduser() / "trifeature"


@register_generator
class Trifeature(Generator):
    """Pairs of Trifeature images sharing their shape (see module docstring)."""

    name = "trifeature"

    @dataclass
    class Params:
        protocol: str = param("ru", "training pairs: ru = unbiased same-shape pairs (R/U experiment), s = "
                                    "only pairs with colour(image 2) = pi(texture(image 1)) (S experiment)",
                              choices=("ru", "s"))
        image_size: int = param(32, "image side in pixels (published 224)", ge=16, le=512)
        n_train: int = param(10000, "training pairs (published 10,000)", ge=2)
        n_test: int = param(4000, "test pairs; 4000 = all same-shape pairs of the 200 test images", ge=2, le=4000)
        renders: int = param(3, "images rendered per training combination (published 3)", ge=1, le=20)
        augment: str = param("simclr", "views: simclr = CoMM's SimCLR set, no_color = without colour "
                                       "jitter and grayscale, none = plain images",
                             choices=("simclr", "no_color", "none"))
        crop_min: float = param(0.08, "smallest area fraction of the random resized crop (SimCLR 0.08)", gt=0, le=1)
        texture_period: float = param(10.0, "texture period in pixels at 224 px (published 10)", gt=0)
        min_texture_period: float = param(4.0, "smallest texture period in pixels at image_size", gt=0)
        supersample: int = param(4, "sub-pixel samples per pixel side (anti-aliasing)", ge=1, le=16)

        def __post_init__(self):
            limit = max_train_pairs(self.protocol, self.renders)
            if self.n_train > limit:
                raise ValueError(f"n_train = {self.n_train} exceeds the {limit} distinct training pairs of "
                                 f"protocol {self.protocol} with renders = {self.renders}; lower n_train or "
                                 f"raise renders")

    def __init__(self, params: Params, seed: int):
        super().__init__(params, seed)
        p, rng = params, np.random.default_rng(seed)
        test = balanced_split(rng)
        self.pi = rng.permutation(K)  # the map M: texture t goes with colour pi[t]
        self._render_seed = int(rng.integers(2 ** 63))
        combos = np.stack(np.unravel_index(np.arange(K ** 3), (K,) * 3), 1)
        is_test = np.zeros(K ** 3, bool)
        is_test[np.ravel_multi_index(test.T, (K,) * 3)] = True
        self.n_train_images = int((~is_test).sum()) * p.renders
        #: (n_images, 3) shape, texture, colour of every bank image: training renders, then test
        self.factors = np.concatenate([np.repeat(combos[~is_test], p.renders, 0), test])
        first = {"train": 0, "test": self.n_train_images}
        count = {"train": self.n_train_images, "test": len(test)}
        # (10, m) image indices per shape of each split, and (10, 10, q) per shape and colour
        self._by_shape = {split: first[split] + np.stack(
            [np.flatnonzero(self.factors[first[split]:first[split] + count[split], 0] == s) for s in range(K)])
            for split in first}
        train = self.factors[:self.n_train_images]
        self._by_colour = np.stack([np.stack([np.flatnonzero((train[:, 0] == s) & (train[:, 2] == c))
                                              for c in range(K)]) for s in range(K)])
        self._images: np.ndarray | None = None
        self._fixed: Fixed | None = None
        if p.augment == "none":
            self._augment = None
        else:
            scale = p.image_size / RENDER_SIZE
            colour = p.augment == "simclr"
            self._augment = Augment(crop_scale=(p.crop_min, 1.0), jitter_p=0.8 if colour else 0.0,
                                    gray_p=0.2 if colour else 0.0, blur_sigma=(0.1 * scale, 2.0 * scale))

    # ---- the plug-in contract --------------------------------------------------------------

    @property
    def tasks(self) -> tuple[str, ...]:
        return TASKS

    def n_classes(self, task: str) -> int:
        return 2 if task == "S" else K

    @property
    def biased_training(self) -> bool:
        """True under protocol s: training pairs are biased, probes fit on ``sample("probe")``."""
        return self.params.protocol == "s"

    def labels(self, z: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Task labels from the pairs' factors."""
        return {"R": z["shape1"], "U1": z["texture1"], "U2": z["texture2"],
                "S": (z["colour2"] == self.pi[z["texture1"]]).astype(np.int64)}

    def sample(self, split: str, rng: np.random.Generator) -> dict[str, Any]:
        """'train' (biased under protocol s), 'test', or 'probe' (n_train unbiased training pairs)."""
        if split not in ("train", "test", "probe"):
            raise ValueError(f"split {split!r} is not one of train, test, probe")
        n = self.params.n_test if split == "test" else self.params.n_train
        biased = split == "train" and self.biased_training
        i1, i2 = self.pairs("test" if split == "test" else "train", biased, n, rng)
        z = {"img1": i1, "img2": i2}
        for side, i in (("1", i1), ("2", i2)):
            z.update({f"{f}{side}": self.factors[i, k] for k, f in enumerate(("shape", "texture", "colour"))})
        return {"x": [self.plain_images(i) for i in (i1, i2)], "y": self.labels(z), "z": z}

    def views(self, z: dict[str, torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
        bank = self._bank().on(z["img1"].device)["images"]  # (n_images, 3, S, S), 0..255
        out = []
        for key in ("img1", "img2"):
            x = bank[z[key]] / 255  # (B, 3, S, S) in [0, 1]
            out.append(normalize(x if self._augment is None else self._augment(x, gen)))
        return out

    def modality_codes(self, z: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Codes of the (shape, texture, colour) of image 1 and image 2, numbered over the
        combinations that occur in ``z`` (a relabelling that leaves any PID unchanged)."""
        out = []
        for side in ("1", "2"):
            flat = np.ravel_multi_index([z[f"{f}{side}"] for f in ("shape", "texture", "colour")], (K,) * 3)
            values, codes = np.unique(flat, return_inverse=True)
            out += [codes.ravel(), len(values)]
        return out[0], out[2], out[1], out[3]

    def ground_truth(self) -> dict[str, PID]:
        """Exact BROJA PID of each task on the test distribution (see module docstring).

        The table p(x1, x2, y) enumerates the same-shape pairs of test images with their
        probabilities (shape uniform, images uniform within it); image values with equal
        conditional tables are merged first (``merge_equal_sources``), which leaves every atom as
        it is and makes the tables small (10 x 10 x 10 for R, 100 x 100 x 2 for S).
        """
        groups = self._by_shape["test"] - self.n_train_images  # (10, 20)
        n_img, m = len(self.factors) - self.n_train_images, groups.shape[1]
        i1 = np.repeat(groups, m, axis=1).ravel()
        i2 = np.tile(groups, (1, m)).ravel()
        test = self.factors[self.n_train_images:]
        z = {f"{f}{side}": test[i, k] for side, i in (("1", i1), ("2", i2))
             for k, f in enumerate(("shape", "texture", "colour"))}
        out = {}
        for task, y in self.labels(z).items():
            table = np.zeros((n_img, n_img, self.n_classes(task)))
            np.add.at(table, (i1, i2, y), 1.0 / (K * m * m))
            out[task] = broja(merge_equal_sources(table))
        return out

    # ---- pairs and images ------------------------------------------------------------------

    def pairs(self, split: str, biased: bool, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n distinct pairs of image indices of ``split`` ('train' or 'test'), drawn uniformly
        without replacement from the unbiased (same shape) or biased (same shape and
        colour2 = pi(texture1)) pairs, by numbering them: pair k is (shape, a, b) in mixed radix."""
        groups = self._by_shape[split]  # (10, m)
        m = groups.shape[1]
        if not biased:
            shape, rest = np.divmod(rng.choice(K * m * m, size=n, replace=False), m * m)
            a, b = np.divmod(rest, m)
            return groups[shape, a], groups[shape, b]
        q = self._by_colour.shape[2]
        shape, rest = np.divmod(rng.choice(K * m * q, size=n, replace=False), m * q)
        a, b = np.divmod(rest, q)
        i1 = groups[shape, a]
        return i1, self._by_colour[shape, self.pi[self.factors[i1, 1]], b]

    def plain_images(self, idx: np.ndarray) -> np.ndarray:
        """Normalised float32 images (N, 3, S, S) of bank indices ``idx``, un-augmented."""
        return normalize(torch.from_numpy(self.images[idx]).float().div_(255)).numpy()

    @property
    def period(self) -> float:
        """Texture period in pixels of the rendered images."""
        p = self.params
        return max(p.texture_period * p.image_size / RENDER_SIZE, p.min_texture_period)

    @property
    def cache_path(self) -> Path:
        p = self.params
        key = {"code": render_digest(), "seed": self._render_seed, "factors":
               hashlib.sha256(self.factors.tobytes()).hexdigest(), "image_size": p.image_size,
               "period": self.period, "supersample": p.supersample}
        return cache_root() / (hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20] + ".npz")

    @property
    def images(self) -> np.ndarray:
        """The bank: uint8 (n_images, 3, S, S), loaded from the cache or rendered (and cached)."""
        if self._images is None:
            path = self.cache_path
            self._images = _load(path, (len(self.factors), 3, self.params.image_size, self.params.image_size))
            if self._images is None:
                p = self.params
                self._images = render(self.factors, p.image_size, self.period, p.supersample,
                                      np.random.default_rng(self._render_seed))
                _save(path, self._images)
        return self._images

    def _bank(self) -> Fixed:
        if self._fixed is None:
            self._fixed = Fixed({"images": self.images})
        return self._fixed


def max_train_pairs(protocol: str, renders: int) -> int:
    """Distinct training pairs: 10 m^2 same-shape pairs (m = 80 renders images per shape), or
    10 m q biased ones (q = 8 renders images of each colour per shape)."""
    m = (K * K - TEST_PER_SHAPE) * renders
    return K * m * m if protocol == "ru" else K * m * (m // K)


def _digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def _load(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached bank if the file is readable, of the expected shape and matches its SHA-256."""
    try:
        with np.load(path, allow_pickle=False) as f:
            images, digest = f["images"], str(f["sha256"])
    except Exception:  # noqa: BLE001 — missing, truncated or damaged: render again
        return None
    if images.shape != shape or images.dtype != np.uint8 or _digest(images) != digest:
        return None
    return images


def _save(path: Path, images: np.ndarray) -> None:
    """Write the bank and its SHA-256 atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, images=images, sha256=np.array(_digest(images)))
    os.replace(tmp, path)
