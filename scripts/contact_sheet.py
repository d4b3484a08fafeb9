"""Contact sheet of bimodal Trifeature, to check the rendering and the pairing rules by eye.

    python scripts/contact_sheet.py [--out results/figures/trifeature_contact_sheet.png]
                                    [--sizes 224 32] [--seed 0]

For each image size (224 px, the published size; 32 px, the size of the CPU profiles), rows of
ten images:

* every shape (solid texture), every texture (on a square), every colour (stripes on a circle),
  each drawn in a random layout of the renderer;
* five pairs (image 1 | image 2) each, titled with their shape / texture / colour and labels:
  protocol ru training pairs; protocol s training pairs (colour(image 2) = pi(texture(image 1)),
  so S = 1); test pairs, S = 1 then S = 0; SimCLR views and CLIP's weak views of the ru pairs.

The pairs come from a bank rendered (or read from the cache) with one render per combination.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from generators.trifeature import Trifeature
from synergy_bench.nn.augment import IMAGENET_MEAN, IMAGENET_STD
from synergy_bench.registry import make_params
from synergy_bench.trifeature.render import COLOURS, K, SHAPES, TEXTURES, Layout, render

COLOUR_NAMES = tuple(COLOURS)
PAIRS = K // 2  # pairs per row


def _describe(z: dict, side: str, k: int) -> str:
    return f"{SHAPES[z['shape' + side][k]]}/{TEXTURES[z['texture' + side][k]]}/{COLOUR_NAMES[z['colour' + side][k]]}"


def _to_image(x: np.ndarray) -> np.ndarray:
    """A normalised (3, S, S) image back to (S, S, 3) in [0, 1]."""
    x = x * np.array(IMAGENET_STD)[:, None, None] + np.array(IMAGENET_MEAN)[:, None, None]
    return np.clip(x.transpose(1, 2, 0), 0, 1)


def feature_rows(size: int, generator: Trifeature, rng: np.random.Generator) -> list[tuple[str, list, list]]:
    """(row title, images (S, S, 3), titles): every shape, every texture, every colour."""
    ten = np.arange(K)
    grid = {"shapes (solid)": np.stack([ten, 0 * ten, ten], 1),
            "textures (square, white)": np.stack([0 * ten + SHAPES.index("square"), ten, 0 * ten + K - 1], 1),
            "colours (circle, stripes)": np.stack([0 * ten + SHAPES.index("circle"), 0 * ten + 1, ten], 1)}
    rows = []
    for (title, factors), names in zip(grid.items(), (SHAPES, TEXTURES, COLOUR_NAMES)):
        images = render(factors, Layout.draw(K, size, rng), size, generator.period, generator.supersample)
        rows.append((f"{size} px: {title}", [im.transpose(1, 2, 0) / 255 for im in images], list(names)))
    return rows


def pair_rows(size: int, generator: dict[str, Trifeature], rng: np.random.Generator, seed: int) -> list:
    """(row title, images, titles) of five pairs per row (see module docstring)."""
    ru, s = generator["ru"], generator["s"]
    train = ru.sample("train", rng)
    test = s.sample("test", rng)
    pos, neg = np.flatnonzero(test["y"]["S"] == 1), np.flatnonzero(test["y"]["S"] == 0)
    z = {k: torch.as_tensor(v) for k, v in train["z"].items()}
    views = {name: [v.numpy() for v in make(z, torch.Generator().manual_seed(seed))]
             for name, make in (("SimCLR", ru.views), ("weak", ru.weak_views))}
    samples = [("ru training pairs", train, range(PAIRS)),
               ("s training pairs", s.sample("train", rng), range(PAIRS)),
               ("test pairs, S = 1 | S = 0", test, [*pos[:2], *neg[:PAIRS - 2]]),
               ("SimCLR views of the ru pairs", {**train, "x": views["SimCLR"]}, range(PAIRS)),
               ("weak views of the ru pairs", {**train, "x": views["weak"]}, range(PAIRS))]
    rows = []
    for title, sample, picks in samples:
        images, titles = [], []
        for k in picks:
            for side in ("1", "2"):
                images.append(_to_image(sample["x"][int(side) - 1][k]))
                label = f"\nR={sample['y']['R'][k]} U1={sample['y']['U1'][k]} U2={sample['y']['U2'][k]} " \
                        f"S={sample['y']['S'][k]}" if side == "1" else "\n"
                titles.append(f"X{side}: {_describe(sample['z'], side, k)}{label}")
        rows.append((f"{size} px: {title}", images, titles))
    return rows


def contact_sheet(out: Path, sizes: list[int], seed: int) -> Path:
    rows = []
    for size in sizes:
        rng = np.random.default_rng(seed)
        common = {"image_size": size, "renders": 1, "n_train": PAIRS, "n_test": 200}
        generator = {protocol: Trifeature(make_params(Trifeature, {**common, "protocol": protocol}, "generator"), seed)
                     for protocol in ("ru", "s")}
        rows += feature_rows(size, generator["ru"], rng) + pair_rows(size, generator, rng, seed)
    fig, axes = plt.subplots(len(rows), K, figsize=(1.9 * K, 2.25 * len(rows)), squeeze=False)
    for r, (title, images, titles) in enumerate(rows):
        for k, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if k < len(images):
                ax.imshow(images[k], interpolation="nearest")
                ax.set_title(titles[k], fontsize=6.5, loc="left")
        axes[r, 0].set_ylabel(title, fontsize=8)
    fig.suptitle("Bimodal Trifeature at 224 px (published) and 32 px (CPU profiles): every shape, texture and "
                 "colour; pairs image 1 | image 2 (shape/texture/colour; labels)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.99))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=72)
    plt.close(fig)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/figures/trifeature_contact_sheet.png")
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 32])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(contact_sheet(Path(args.out), args.sizes, args.seed))


if __name__ == "__main__":
    main()
