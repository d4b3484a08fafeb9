r"""Trifeature images: one of 10 shapes, filled with one of 10 binary textures, in one of 10 colours.

The images of Hermann and Lampinen (2020, "What shapes feature representations? Exploring
datasets, architectures, and training"), drawn to the definitions of the bimodal Trifeature code
of CoMM (Dufumier, Castillo-Navarro, Tuia and Thiran, ICLR 2025; ``dataset/trifeatures.py``).
Everything below is stated at the published 224 px and scales with the image side S.

**Shapes** are binary templates on a 128 x 128 texel grid (row i, column j, n = 128; c = n/2):

    triangle    |j - c| - floor(i/2) < 1                       apex up, base the bottom row
    square      every texel
    plus        |j - c| <= floor(n/6)  or  |i - c| <= floor(n/6)
    circle      (i + 1/2 - c)^2 + (j + 1/2 - c)^2 < c^2
    tee         |j - c| <= floor(n/6)  or  i < floor(n/3)
    rhombus     0 < j - c + floor(i/2) < c                     a parallelogram: rows c wide,
                                                               shifted left 1/2 texel per row
    pentagon    house-shaped: a roof |j - c| - 1.25 i < 1 above the eaves m = floor(0.4 n),
                below them walls floor((i - m)/3.1) < j < n - floor((i - m)/3.1)
    star        a spike |j - c| - floor(i/4) < 1 above l = floor(0.4 n); arms
                2.4 (i - l) < j < n - 2.4 (i - l) for l <= i < l + floor(0.2 n); legs from
                l' = l + floor(0.15 n): a < j < b or a < n - j < b, a = 0.33 n - 0.43 (i - l'),
                b = 0.62 n - 1.05 (i - l')
    fivesquare  the four corner cells and the centre cell of the 3 x 3 grid cut at floor(n/3),
                floor(2n/3)
    trapezoid   floor(i/3.1) < j < n - floor(i/3.1)                 narrowing downward

A shape is scaled from 128 texels to the box of B = 128 S / 224 px, turned by an angle a, a whole
number of degrees uniform in [-45, 44] (positive: counter-clockwise on screen), and placed with
its centre uniform where the turned box, of half side e = B (|cos a| + |sin a|) / 2, fits in the
S x S image. It is sampled bilinearly (the published rotation interpolates the template linearly,
then pastes it at a whole-pixel offset; here the centre is continuous).

**Textures** are binary patterns on a lattice of texels of side t = P / 10 px, P the texture
period (10 px at 224 px: t = 1 px, one texel per pixel as published). On texel (y, x), y the
row, with a = y mod 10 and b = x mod 10:

    solid       every texel
    stripes     a < 3                                           horizontal lines 3 of 10 wide
    grid        a < 3  or  b < 3
    hexgrid     a < 2  or  (x + h) mod 10 < 2  or  (x - h) mod 10 < 2,   h = floor(1.73 y)
                (horizontal lines and two families at +-30 degrees from them)
    dots        (a - 5)^2 + (b - 5)^2 < 16                      discs of radius 4 per cell
    noise       each texel on with probability 1/2, independently  (per-pixel noise at 224 px)
    triangles   floor(a/2) > |b - 5|                            upward triangles
    zigzags     floor(a/2) < b' < floor(a/2) + 5, b' = b on even rows of cells (floor(y/10)
                even), 9 - b on odd ones: vertical lines 4 texels wide, slanting 1/2 texel per
                row and turning back every 10 rows
    rain        each texel starts a streak with probability 0.05; a streak covers its texel and
                the 6 below (7 = 10 - floor(10/3) tall, one texel wide)
    pluses      even rows of cells: |b - 5| <= 1 or |a - 5| <= 1; odd rows of cells: b <= 1 or
                b = 9 or (|a - 5| <= 1 and |b - 5| >= 2)

The lattice is turned by its own whole-degree angle uniform in [-45, 44] about the image centre
and shifted by a whole number of texels uniform in [0, 9] along each axis; a point takes the
value of the texel it falls in (the published nearest-neighbour rotation). Texture coordinates
are nonnegative (the lattice origin lies ``_margin`` texels outside the image's disc), as the
published 448 x 448 texture canvas has them.

**Image.** A sub-pixel sample at p is in the stimulus with weight shape(p) texture(p); a pixel's
alpha averages its ``supersample`` x ``supersample`` samples, and its colour is
alpha colour + (1 - alpha) grey 0.5, stored as 8 bits by truncation (as the published code).
With ``supersample = 1`` and t = 1 (224 px) this is the published rendering; at smaller sizes
sub-pixel samples anti-alias the texels, which are then smaller than a pixel.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

K = 10  # values of each factor
SHAPES = ("triangle", "square", "plus", "circle", "tee", "rhombus", "pentagon", "star", "fivesquare",
          "trapezoid")
TEXTURES = ("solid", "stripes", "grid", "hexgrid", "dots", "noise", "triangles", "zigzags", "rain", "pluses")
COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0),
           "yellow": (1.0, 1.0, 0.0), "pink": (1.0, 0.4, 1.0), "cyan": (0.0, 1.0, 1.0),
           "purple": (0.3, 0.0, 0.5), "ocean": (0.1, 0.4, 0.5), "orange": (1.0, 0.6, 0.0),
           "white": (1.0, 1.0, 1.0)}  # the RGB values of the Trifeature colours
BACKGROUND = (0.5, 0.5, 0.5)
RENDER_SIZE, BASE_SIZE, MAX_ANGLE = 224, 128, 45  # published canvas, shape box, angles in [-45, 45)
PERIOD = 10  # texels per texture period
TEMPLATE = 128  # texels per side of the shape templates
NOISE_P, RAIN_P, RAIN_HEIGHT = 0.5, 0.05, PERIOD - PERIOD // 3


@functools.cache
def shape_templates(n: int = TEMPLATE) -> np.ndarray:
    """(10, n, n) bool: the shape templates of the module docstring, in ``SHAPES`` order."""
    i, j = np.mgrid[:n, :n]
    c, sixth, third = n // 2, n // 6, n // 3
    dx = np.abs(j - c)
    bar_v, bar_h = dx <= sixth, np.abs(i - c) <= sixth
    eaves, spike = int(0.4 * n), int(0.4 * n)
    walls = (i - eaves) // 3.1
    arms = 2.4 * (i - spike)
    legs_top = spike + int(0.15 * n)
    lo, hi = 0.33 * n - 0.43 * (i - legs_top), 0.62 * n - 1.05 * (i - legs_top)
    middle_i, middle_j = (third <= i) & (i < 2 * n // 3), (third <= j) & (j < 2 * n // 3)
    slope = i // 3.1
    masks = {
        "triangle": dx - i // 2 < 1,
        "square": np.ones((n, n), bool),
        "plus": bar_v | bar_h,
        "circle": (i + 0.5 - c) ** 2 + (j + 0.5 - c) ** 2 < c ** 2,
        "tee": bar_v | (i < third),
        "rhombus": (0 < j - c + i // 2) & (j - c + i // 2 < c),
        "pentagon": np.where(i < eaves, dx - 1.25 * i < 1, (walls < j) & (j < n - walls)),
        "star": ((i < spike) & (dx - i // 4 < 1))
                | ((spike <= i) & (i < spike + int(0.2 * n)) & (arms < j) & (j < n - arms))
                | ((i >= legs_top) & (((lo < j) & (j < hi)) | ((lo < n - j) & (n - j < hi)))),
        "fivesquare": middle_i == middle_j,
        "trapezoid": (slope < j) & (j < n - slope),
    }
    return np.stack([masks[s] for s in SHAPES])


def texture_on(texture: int, y: torch.Tensor, x: torch.Tensor, field: torch.Tensor | None = None) -> torch.Tensor:
    """Texture ``TEXTURES[texture]`` at texels (y, x) (nonnegative int64, shape (N, ...)).

    ``field`` (N, L, L) bool holds each image's random texels for ``noise`` and ``rain``
    (see :func:`random_field`); the other textures are periodic and ignore it.
    """
    a, b = y % PERIOD, x % PERIOD
    odd = (y // PERIOD) % 2 == 1  # odd rows of cells (zigzags, pluses)
    name = TEXTURES[texture]
    if name == "solid":
        return torch.ones_like(y, dtype=torch.bool)
    if name == "stripes":
        return a < 3
    if name == "grid":
        return (a < 3) | (b < 3)
    if name == "hexgrid":
        h = 173 * y // 100  # floor(1.73 y), exactly
        return (a < 2) | ((x + h) % PERIOD < 2) | ((x - h) % PERIOD < 2)
    if name == "dots":
        return (a - 5) ** 2 + (b - 5) ** 2 < 16
    if name == "triangles":
        return a // 2 > (b - 5).abs()
    if name == "zigzags":
        flipped = torch.where(odd, PERIOD - 1 - b, b)
        return (a // 2 < flipped) & (flipped < a // 2 + 5)
    if name == "pluses":
        near_a, near_b = (a - 5).abs() <= 1, (b - 5).abs() <= 1
        return torch.where(odd, (b <= 1) | (b == PERIOD - 1) | (near_a & ~near_b), near_a | near_b)
    if name in ("noise", "rain"):
        n, side = field.shape[0], field.shape[-1]
        image = torch.arange(n).view(-1, *[1] * (y.dim() - 1))
        return field.flatten()[(image * side + y) * side + x]
    raise ValueError(f"unknown texture {texture!r}")


def random_field(texture: int, seeds: np.ndarray, side: int) -> torch.Tensor | None:
    """(N, side, side) bool random texels of each image (``seeds`` (N,)), or None for a periodic
    texture: noise texels on with probability 1/2; rain texels on where a streak, started with
    probability 0.05 at any texel, covers them (its texel and the RAIN_HEIGHT - 1 below)."""
    name = TEXTURES[texture]
    if name not in ("noise", "rain"):
        return None
    out = np.empty((len(seeds), side, side), bool)
    for k, seed in enumerate(seeds):
        u = np.random.default_rng(int(seed)).random((side, side))
        if name == "noise":
            out[k] = u < NOISE_P
            continue
        starts = u < RAIN_P
        out[k] = starts
        for d in range(1, RAIN_HEIGHT):
            out[k, d:] |= starts[:-d]
    return torch.from_numpy(out)


@dataclass(frozen=True)
class Layout:
    """Per-image nuisance of the rendering: angles in degrees, the shape's centre (row, column) in
    pixels of the image, the texture's offset in texels, the seed of its random texels."""

    shape_angle: np.ndarray  # (N,)
    centre: np.ndarray  # (N, 2)
    texture_angle: np.ndarray  # (N,)
    texture_offset: np.ndarray  # (N, 2) int
    field_seed: np.ndarray  # (N,) int

    @classmethod
    def draw(cls, n: int, image_size: int, rng: np.random.Generator) -> "Layout":
        """Draw from ``rng`` in this order: shape angles, centres (two uniforms each), texture
        angles, texture offsets, seeds (see the module docstring for the laws)."""
        shape_angle = rng.integers(-MAX_ANGLE, MAX_ANGLE, n)
        u = rng.random((n, 2))
        texture_angle = rng.integers(-MAX_ANGLE, MAX_ANGLE, n)
        offset = rng.integers(0, PERIOD, (n, 2))
        seed = rng.integers(2 ** 63, size=n)
        a = np.radians(shape_angle)
        half = BASE_SIZE * image_size / RENDER_SIZE * (np.abs(np.cos(a)) + np.abs(np.sin(a))) / 2  # e
        return cls(shape_angle, half[:, None] + u * (image_size - 2 * half[:, None]), texture_angle, offset, seed)

    def take(self, idx: np.ndarray) -> "Layout":
        return Layout(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


def _unrotate(angle_deg: np.ndarray, dy: torch.Tensor, dx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Displacements (dy down, dx right) turned back by ``angle`` (counter-clockwise on screen)."""
    a = torch.as_tensor(np.radians(angle_deg), dtype=torch.float64).view(-1, 1, 1)
    c, s = a.cos(), a.sin()
    return dy * c + dx * s, dx * c - dy * s


def _sample_grid(image_size: int, supersample: int) -> torch.Tensor:
    """Sub-pixel sample positions along a side, in pixels: k + (m + 1/2) / n."""
    return (torch.arange(image_size * supersample, dtype=torch.float64) + 0.5) / supersample


def _margin(image_size: int, texel: float) -> int:
    """Texels from the lattice origin to the image centre: beyond the image's half diagonal, plus
    a period (offsets) and a streak (rain looks up to RAIN_HEIGHT - 1 texels above)."""
    return math.ceil(image_size / (math.sqrt(2) * texel)) + PERIOD + RAIN_HEIGHT


def shape_samples(shapes: np.ndarray, layout: Layout, image_size: int, supersample: int) -> torch.Tensor:
    """(N, S n, S n) float32: each image's shape sampled bilinearly at the sub-pixel samples."""
    g = _sample_grid(image_size, supersample)
    dy = g.view(1, -1, 1) - torch.as_tensor(layout.centre[:, 0]).view(-1, 1, 1)
    dx = g.view(1, 1, -1) - torch.as_tensor(layout.centre[:, 1]).view(-1, 1, 1)
    qy, qx = _unrotate(layout.shape_angle, dy, dx)
    scale = 2 / (BASE_SIZE * image_size / RENDER_SIZE)  # pixels -> [-1, 1] over the box
    grid = torch.stack([qx * scale, qy * scale], -1).to(torch.float32)  # (N, H, W, 2), (x, y) order
    templates = torch.from_numpy(shape_templates()).to(torch.float32)[torch.as_tensor(shapes)][:, None]
    return F.grid_sample(templates, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]


def texture_samples(texture: int, layout: Layout, image_size: int, texel: float, supersample: int) -> torch.Tensor:
    """(N, S n, S n) bool: texture ``texture`` of every image at the sub-pixel samples."""
    g = _sample_grid(image_size, supersample) - image_size / 2
    vy, vx = _unrotate(layout.texture_angle, g.view(1, -1, 1), g.view(1, 1, -1))
    origin = _margin(image_size, texel)
    off = torch.as_tensor(layout.texture_offset)
    y = (vy / texel).floor().long() + origin + off[:, 0].view(-1, 1, 1)
    x = (vx / texel).floor().long() + origin + off[:, 1].view(-1, 1, 1)
    field = random_field(texture, layout.field_seed, 2 * origin + PERIOD)
    return texture_on(texture, y, x, field)


def render(factors: np.ndarray, layout: Layout, image_size: int, period: float, supersample: int,
           chunk_samples: int = 1 << 21) -> np.ndarray:
    """uint8 (N, 3, S, S) images of (shape, texture, colour) rows ``factors`` in ``layout``.

    ``period`` is the texture period in pixels of these images (texel = period / 10).
    """
    n, s = len(factors), image_size
    colours = np.array(list(COLOURS.values()), np.float32)
    background = np.array(BACKGROUND, np.float32)[:, None, None]
    out = np.empty((n, 3, s, s), np.uint8)
    step = max(1, chunk_samples // (s * supersample) ** 2)
    for tex in range(K):  # one texture per chunk: each chunk evaluates a single pattern
        members = np.flatnonzero(factors[:, 1] == tex)
        for start in range(0, len(members), step):
            idx = members[start:start + step]
            part = layout.take(idx)
            on = shape_samples(factors[idx, 0], part, s, supersample) * texture_samples(
                tex, part, s, period / PERIOD, supersample)
            alpha = F.avg_pool2d(on[:, None], supersample).numpy()  # (n, 1, S, S)
            rgb = alpha * colours[factors[idx, 2]][:, :, None, None] + (1 - alpha) * background
            out[idx] = (rgb * np.float32(255)).astype(np.uint8)
    return out
