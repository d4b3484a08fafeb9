"""Image augmentations in batched torch ops (SimCLR style) and the ImageNet normalisation.

Augmentations (Chen, Kornblith, Norouzi and Hinton, 2020, "A simple framework for contrastive
learning of visual representations"), with the settings CoMM uses on Trifeature (Dufumier,
Castillo-Navarro et al., 2025, public code): random resized crop of area scale [0.08, 1] and
aspect ratio [3/4, 4/3]; colour jitter (brightness 0.4, contrast 0.4, saturation 0.4, hue 0.1)
with probability 0.8; grayscale with probability 0.2; Gaussian blur with sigma in [0.1, 2] px (at
224 px) with probability 0.5; horizontal flip with probability 0.5. Each op acts on a batch
(B, C, H, W) of images in [0, 1], draws every random number from the ``torch.Generator`` it is
given on the images' device, and differs from torchvision only where said:

* the crop's width and height fractions are clipped to 1 (torchvision retries ten times and then
  falls back on a centre crop); the crop and the flip are one bilinear ``grid_sample``;
* the four jitter ops run in a fixed order (brightness, contrast, saturation, hue) instead of a
  random one;
* hue is shifted by rotating the chroma plane of YIQ by 2 pi h (h in [-0.1, 0.1]), a linear
  approximation of torchvision's HSV hue shift that keeps the luma;
* the blur is an exact separable Gaussian with reflected borders (PIL approximates it with box
  blurs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# ImageNet channel statistics, the normalisation of the CoMM code.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


def normalize(x: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std per channel with the ImageNet statistics; x (B, 3, H, W) in [0, 1]."""
    mean = x.new_tensor(IMAGENET_MEAN)[:, None, None]
    std = x.new_tensor(IMAGENET_STD)[:, None, None]
    return (x - mean) / std


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, device=device)


def _per_sample(v: torch.Tensor) -> torch.Tensor:
    return v[:, None, None, None]  # (B,) -> (B, 1, 1, 1)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma Y = 0.299 R + 0.587 G + 0.114 B, (B, 1, H, W)."""
    return torch.einsum("bchw,c->bhw", x, x.new_tensor(_LUMA))[:, None]


def random_resized_crop(x: torch.Tensor, gen: torch.Generator, scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), flip_p: float = 0.5) -> torch.Tensor:
    """Crop a random box of area fraction a ~ U(scale) and aspect r ~ logU(ratio), resize it back
    to (H, W), and mirror it horizontally with probability ``flip_p``.

    Box width w = min(1, sqrt(a r)) and height h = min(1, sqrt(a / r)) (fractions of the sides),
    centre uniform over the positions that keep the box inside; the output samples the input at
    u' = s w u + c_x, v' = h v + c_y (normalised coordinates, s = -1 when flipped), bilinearly.
    """
    b, dev = x.shape[0], x.device
    area = _uniform(b, *scale, gen, dev)
    log_r = _uniform(b, math.log(ratio[0]), math.log(ratio[1]), gen, dev)
    w = torch.sqrt(area * log_r.exp()).clamp(max=1.0)
    h = torch.sqrt(area / log_r.exp()).clamp(max=1.0)
    cx = (1 - w) * (2 * torch.rand(b, generator=gen, device=dev) - 1)  # centre in [-(1-w), 1-w]
    cy = (1 - h) * (2 * torch.rand(b, generator=gen, device=dev) - 1)
    sign = torch.where(torch.rand(b, generator=gen, device=dev) < flip_p, -1.0, 1.0)
    zero = torch.zeros_like(w)
    theta = torch.stack([torch.stack([sign * w, zero, cx], 1), torch.stack([zero, h, cy], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _hue_rotation(angle: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) RGB -> RGB maps that rotate the (I, Q) chroma plane of YIQ by ``angle``."""
    yiq = angle.new_tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    c, s = angle.cos(), angle.sin()
    rot = torch.zeros(angle.shape[0], 3, 3, dtype=angle.dtype, device=angle.device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = c, -s, s, c
    return torch.linalg.inv(yiq) @ rot @ yiq


def color_jitter(x: torch.Tensor, gen: torch.Generator, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.4, hue: float = 0.1, p: float = 0.8) -> torch.Tensor:
    """With probability p per image, in this order (each result clipped to [0, 1]):

    brightness  x <- b x,                          b ~ U(1 - brightness, 1 + brightness)
    contrast    x <- c x + (1 - c) mean(Y(x)),     c ~ U(1 - contrast, 1 + contrast)
    saturation  x <- s x + (1 - s) Y(x),           s ~ U(1 - saturation, 1 + saturation)
    hue         chroma rotation by 2 pi h,         h ~ U(-hue, hue)

    with Y the luma. Images not selected get the identity factors (1, 1, 1, 0).
    """
    bsz, dev = x.shape[0], x.device
    on = torch.rand(bsz, generator=gen, device=dev) < p
    factors = [_uniform(bsz, 1 - brightness, 1 + brightness, gen, dev),
               _uniform(bsz, 1 - contrast, 1 + contrast, gen, dev),
               _uniform(bsz, 1 - saturation, 1 + saturation, gen, dev)]
    b, c, s = (_per_sample(torch.where(on, f, torch.ones_like(f)).to(x.dtype)) for f in factors)
    h = torch.where(on, _uniform(bsz, -hue, hue, gen, dev), torch.zeros(bsz, device=dev))
    x = (b * x).clamp(0, 1)
    x = (c * x + (1 - c) * grayscale(x).mean((1, 2, 3), keepdim=True)).clamp(0, 1)
    x = (s * x + (1 - s) * grayscale(x)).clamp(0, 1)
    rgb = _hue_rotation(2 * math.pi * h.double()).to(x.dtype)  # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", rgb, x).clamp(0, 1)


def random_grayscale(x: torch.Tensor, gen: torch.Generator, p: float = 0.2) -> torch.Tensor:
    """Replace each image by its luma on every channel with probability p."""
    on = torch.rand(x.shape[0], generator=gen, device=x.device) < p
    return torch.where(_per_sample(on), grayscale(x).expand_as(x), x)


def gaussian_blur(x: torch.Tensor, gen: torch.Generator, sigma: tuple[float, float] = (0.1, 2.0),
                  p: float = 0.5) -> torch.Tensor:
    """Blur each image with probability p by a Gaussian of std ~ U(sigma) pixels.

    Separable kernel k(t) ∝ exp(-t^2 / (2 std^2)) on t = -r..r, r = ceil(3 max(sigma)) (at least 1,
    at most H - 1 and W - 1), reflected borders; images not selected get the unit impulse.
    """
    bsz, ch, hgt, wid = x.shape
    dev = x.device
    on = torch.rand(bsz, generator=gen, device=dev) < p
    std = _uniform(bsz, *sigma, gen, dev).clamp(min=1e-3)
    r = max(1, min(math.ceil(3 * sigma[1]), hgt - 1, wid - 1))
    t = torch.arange(-r, r + 1, device=dev, dtype=x.dtype)
    k = torch.exp(-t ** 2 / (2 * std[:, None].to(x.dtype) ** 2))  # (B, 2r+1)
    k = torch.where(on[:, None], k / k.sum(1, keepdim=True), (t == 0).to(x.dtype))
    k = k.repeat_interleave(ch, 0)  # (B C, 2r+1): one kernel per image and channel
    y = F.pad(x.reshape(1, bsz * ch, hgt, wid), (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k[:, None, None, :], groups=bsz * ch)  # rows
    y = F.conv2d(y, k[:, None, :, None], groups=bsz * ch)  # columns
    return y.reshape(bsz, ch, hgt, wid)


@dataclass(frozen=True)
class Augment:
    """A SimCLR augmentation pipeline; the defaults are CoMM's for Trifeature at 224 px.

    ``blur_sigma`` is in pixels of the images it is applied to. A probability of 0 switches an op
    off (``jitter_p = gray_p = 0`` keeps the colours); ``crop = False`` skips crop and flip.
    """

    crop: bool = True
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_p: float = 0.5

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Augmented copy of a batch x (B, C, H, W) in [0, 1]: crop + flip, jitter, grayscale, blur."""
        if self.crop:
            x = random_resized_crop(x, gen, self.crop_scale, self.crop_ratio, self.flip_p)
        if self.jitter_p > 0:
            x = color_jitter(x, gen, *self.jitter, p=self.jitter_p)
        if self.gray_p > 0:
            x = random_grayscale(x, gen, self.gray_p)
        if self.blur_p > 0:
            x = gaussian_blur(x, gen, self.blur_sigma, self.blur_p)
        return x

    @classmethod
    def weak(cls) -> "Augment":
        """CLIP's weak view of the CoMM Trifeature code (Cross, and Cross+Self's un-augmented
        images): a random resized crop of area scale [0.5, 1] and aspect ratio [3/4, 4/3] only,
        with no flip, colour or blur."""
        return cls(crop_scale=(0.5, 1.0), flip_p=0.0, jitter_p=0.0, gray_p=0.0, blur_p=0.0)
