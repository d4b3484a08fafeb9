r"""Bimodal Trifeature: pairs of rendered images whose shared, unique and synergistic factors are known.

The Trifeature images of Hermann and Lampinen (2020), paired into two modalities as in CoMM
(Dufumier, Castillo-Navarro, Tuia and Thiran, ICLR 2025, section 4.1 and public code). Each image
shows one of 10 shapes, filled with one of 10 binary textures drawn in one of 10 colours, on a
grey background, drawn to the published definitions (:mod:`synergy_bench.trifeature.render`): at
224 px the shape fills a 128 px box turned within +-45 degrees, the texture has a 10 px period.
Everything scales with ``image_size``, except that the texture period never falls below
``min_texture_period`` pixels, so that textures stay visible at CPU sizes (32 px: 4 px).

The split is 800 / 200 combinations, balanced per shape; training pairs share their shape
(:mod:`synergy_bench.trifeature.pairs`). A fixed random permutation pi of the 10 textures onto
the 10 colours (the map M of CoMM) is drawn from the seed.

* ``protocol = ru``: training pairs unbiased (published: 10,000 drawn without replacement).
* ``protocol = s``: training pairs biased, colour(image 2) = pi(texture(image 1)); the linear
  probes fit on ``sample("probe")``, n_train unbiased pairs of training images
  (``biased_training`` is True), as the CoMM code does.
* Test pairs, either protocol: unbiased pairs of test images, drawn without replacement from the
  4,000 same-shape test pairs (n_test = 4000 takes them all: the exact test distribution).

**Tasks** (:mod:`synergy_bench.trifeature.truth`): R = shape, U1 = texture(image 1),
U2 = texture(image 2), S = 1[colour(image 2) = pi(texture(image 1))] (balanced accuracy, chance
1/2). Under ``ru`` the training pairs carry no trace of pi, so S is a control there. The ground
truth is the exact BROJA PID on the test distribution; the balanced split makes it closed-form
(within a shape, textures and colours are uniform and the images independent; either image alone
leaves P(S = 1) = 2/20):

    R:      R = log2 10 = 3.321928,  U1 = U2 = S = 0
    U1:     U1 = log2 10                (U2 likewise)
    S:      S = h(1/10) = 0.468996,  R = U1 = U2 = 0        (h the binary entropy)

**Views and memory.** ``z`` holds the pairs' image indices into the bank of rendered images
(``img1``, ``img2``) and their factors. ``views`` gathers the bank images of a batch on z's device
and applies the augmentation chosen by ``augment``: ``simclr``, CoMM's SimCLR set (random resized
crop of area scale [crop_min, 1], colour jitter p 0.8, grayscale p 0.2, Gaussian blur p 0.5 with
sigma [0.1, 2] px at 224 px, scaled with the image, horizontal flip; see
:mod:`synergy_bench.nn.augment`); ``no_color``, the same without jitter and grayscale, so the
colours S needs survive the views; ``none``, the plain images. ``weak_views`` gives CLIP's weak
view of the CoMM code (random resized crop of area scale [0.5, 1], nothing else). Views and ``x``
are normalised with the ImageNet channel statistics; ``x`` holds the plain images, float32
(N, 3, S, S) per modality (the CoMM code probes random crops of scale [0.5, 1]; here the probes see
whole, un-augmented images): 2 N 3 S^2 4 bytes, 0.25 GB for 10,000 pairs at 32 px but 12 GB at
224 px. The bank is (800 renders + 200, 3, S, S): 8 MB at 32 px, 0.39 GB at 224 px as uint8 on
disk (:mod:`synergy_bench.trifeature.cache`), four times that as the float32 tensor each device
holds.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from synergy_bench.data import Fixed, Generator
from synergy_bench.nn.augment import Augment, normalize
from synergy_bench.pid import PID
from synergy_bench.registry import param, register_generator
from synergy_bench.trifeature import cache, truth
from synergy_bench.trifeature.pairs import Pairs, balanced_split, bank_factors, max_train_pairs
from synergy_bench.trifeature.render import K, PERIOD, RENDER_SIZE, Layout, render


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
        supersample: int = param(0, "sub-pixel samples per pixel side; 0 = auto: 1 where a texel (a tenth "
                                    "of the period) is at least a pixel, as published at 224 px, else "
                                    "ceil(2 / texel)", ge=0, le=16)

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
        #: (n_images, 3) shape, texture, colour of every bank image: training renders, then test
        self.factors = bank_factors(test, p.renders)
        self.n_train_images = len(self.factors) - len(test)
        self._pairs = Pairs(self.factors, self.n_train_images, self.pi)
        self._images: np.ndarray | None = None
        self._fixed: Fixed | None = None
        if p.augment == "none":
            self._augment = None
        else:
            scale = p.image_size / RENDER_SIZE
            colour = p.augment == "simclr"
            self._augment = Augment(crop_scale=(p.crop_min, 1.0), jitter_p=0.8 if colour else 0.0,
                                    gray_p=0.2 if colour else 0.0, blur_sigma=(0.1 * scale, 2.0 * scale))
        self._weak = Augment.weak()

    # ---- the plug-in contract --------------------------------------------------------------

    @property
    def tasks(self) -> tuple[str, ...]:
        return truth.TASKS

    def n_classes(self, task: str) -> int:
        return truth.n_classes(task)

    @property
    def biased_training(self) -> bool:
        """True under protocol s: training pairs are biased, probes fit on ``sample("probe")``."""
        return self.params.protocol == "s"

    def labels(self, z: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Task labels from the pairs' factors."""
        return truth.labels(z, self.pi)

    def sample(self, split: str, rng: np.random.Generator) -> dict[str, Any]:
        """'train' (biased under protocol s), 'test', or 'probe' (n_train unbiased training pairs)."""
        if split not in ("train", "test", "probe"):
            raise ValueError(f"split {split!r} is not one of train, test, probe")
        n = self.params.n_test if split == "test" else self.params.n_train
        biased = split == "train" and self.biased_training
        i1, i2 = self._pairs.draw("test" if split == "test" else "train", biased, n, rng)
        z = {"img1": i1, "img2": i2, **truth.pair_factors(self.factors, i1, i2)}
        return {"x": [self.plain_images(i) for i in (i1, i2)], "y": self.labels(z), "z": z}

    def views(self, z: dict[str, torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
        """Augmented views (``augment``) of the bank images of a batch, on z's device."""
        return self._gather(z, self._augment, gen)

    def weak_views(self, z: dict[str, torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
        """CLIP's weak views of the CoMM code: a random resized crop of area scale [0.5, 1] only."""
        return self._gather(z, self._weak, gen)

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
        """Exact BROJA PID of each task on the test distribution (every same-shape test pair)."""
        return truth.exact_pid(self.factors, *self._pairs.all_test_pairs(), self.pi)

    # ---- images ----------------------------------------------------------------------------

    def pairs(self, split: str, biased: bool, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n distinct pairs of image indices (see :meth:`synergy_bench.trifeature.pairs.Pairs.draw`)."""
        return self._pairs.draw(split, biased, n, rng)

    def plain_images(self, idx: np.ndarray) -> np.ndarray:
        """Normalised float32 images (N, 3, S, S) of bank indices ``idx``, un-augmented."""
        return normalize(torch.from_numpy(self.images[idx]).float().div_(255)).numpy()

    @property
    def period(self) -> float:
        """Texture period in pixels of the rendered images."""
        p = self.params
        return max(p.texture_period * p.image_size / RENDER_SIZE, p.min_texture_period)

    @property
    def supersample(self) -> int:
        """Sub-pixel samples per pixel side (``supersample``, or its automatic value)."""
        texel = self.period / PERIOD
        if self.params.supersample:
            return self.params.supersample
        return 1 if texel >= 1 else math.ceil(2 / texel)

    @property
    def cache_key(self) -> dict[str, Any]:
        p = self.params
        return {"seed": self._render_seed, "factors": hashlib.sha256(self.factors.tobytes()).hexdigest(),
                "image_size": p.image_size, "period": self.period, "supersample": self.supersample}

    @property
    def images(self) -> np.ndarray:
        """The bank: uint8 (n_images, 3, S, S), loaded from the cache or rendered (and cached)."""
        if self._images is None:
            s, n = self.params.image_size, len(self.factors)
            self._images = cache.cached(self.cache_key, (n, 3, s, s), lambda: render(
                self.factors, Layout.draw(n, s, np.random.default_rng(self._render_seed)), s, self.period,
                self.supersample))
        return self._images

    def _gather(self, z: dict[str, torch.Tensor], augment: Augment | None, gen: torch.Generator) -> list[torch.Tensor]:
        if self._fixed is None:
            self._fixed = Fixed({"images": self.images})
        bank = self._fixed.on(z["img1"].device)["images"]  # (n_images, 3, S, S), 0..255
        out = []
        for key in ("img1", "img2"):
            x = bank[z[key]] / 255  # (B, 3, S, S) in [0, 1]
            out.append(normalize(x if augment is None else augment(x, gen)))
        return out
