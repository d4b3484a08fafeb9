"""Contact sheet of bimodal Trifeature pairs, to check the rendering and the pairing rules by eye.

    python scripts/contact_sheet.py [--out results/figures/trifeature_contact_sheet.png]
                                    [--sizes 64 224] [--pairs 4] [--seed 0]

For each image size, four rows of pairs (image 1 | image 2), each image titled with its shape,
texture and colour and each pair with its labels R, U1, U2, S:

* protocol ru, training pairs (same shape; texture and colour independent);
* protocol s, training pairs (same shape and colour(image 2) = pi(texture(image 1)), so S = 1);
* protocol s, test pairs, half with S = 1 and half with S = 0;
* two SimCLR views (augment = simclr) of the ru pairs of the first row.

The banks are rendered (or read from the cache) at the default parameters of each size.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from generators.trifeature import COLOURS, SHAPES, TEXTURES, Trifeature
from synergy_bench.nn.augment import IMAGENET_MEAN, IMAGENET_STD

COLOUR_NAMES = tuple(COLOURS)


def _describe(z: dict, side: str, k: int) -> str:
    return (f"{SHAPES[z['shape' + side][k]]} / {TEXTURES[z['texture' + side][k]]} / "
            f"{COLOUR_NAMES[z['colour' + side][k]]}")


def _labels(y: dict, k: int) -> str:
    return (f"R={SHAPES[y['R'][k]]}  U1={TEXTURES[y['U1'][k]]}  U2={TEXTURES[y['U2'][k]]}  S={y['S'][k]}")


def _to_image(x: np.ndarray) -> np.ndarray:
    """A normalised (3, S, S) image back to (S, S, 3) in [0, 1]."""
    x = x * np.array(IMAGENET_STD)[:, None, None] + np.array(IMAGENET_MEAN)[:, None, None]
    return np.clip(x.transpose(1, 2, 0), 0, 1)


def rows_for(size: int, n_pairs: int, seed: int) -> list[tuple[str, list, list, list]]:
    """(row title, images 1, images 2, per-pair captions) for one image size."""
    rng = np.random.default_rng(seed)
    ru = Trifeature(Trifeature.Params(image_size=size, n_train=n_pairs, n_test=2), seed)
    s = Trifeature(Trifeature.Params(image_size=size, protocol="s", n_train=n_pairs, n_test=200), seed)
    rows = []
    train = ru.sample("train", rng)
    rows.append((f"{size} px, protocol ru, training pairs", train, list(range(n_pairs))))
    rows.append((f"{size} px, protocol s, training pairs (colour2 = pi(texture1))", s.sample("train", rng),
                 list(range(n_pairs))))
    test = s.sample("test", rng)
    pos, neg = np.flatnonzero(test["y"]["S"] == 1), np.flatnonzero(test["y"]["S"] == 0)
    rows.append((f"{size} px, test pairs (S = 1 and S = 0)", test,
                 list(pos[:n_pairs // 2]) + list(neg[:n_pairs - n_pairs // 2])))
    z = {k: torch.as_tensor(v) for k, v in train["z"].items()}
    views = [v.numpy() for v in ru.views(z, torch.Generator().manual_seed(seed))]
    rows.append((f"{size} px, SimCLR views of the ru pairs above", {**train, "x": views}, list(range(n_pairs))))
    out = []
    for title, sample, picks in rows:
        out.append((title, [sample["x"][0][k] for k in picks], [sample["x"][1][k] for k in picks],
                    [(_describe(sample["z"], "1", k), _describe(sample["z"], "2", k), _labels(sample["y"], k))
                     for k in picks]))
    return out


def contact_sheet(out: Path, sizes: list[int], n_pairs: int, seed: int) -> Path:
    rows = [row for size in sizes for row in rows_for(size, n_pairs, seed)]
    fig, axes = plt.subplots(len(rows), 2 * n_pairs, figsize=(2.6 * 2 * n_pairs, 3.1 * len(rows)),
                             squeeze=False)
    for r, (title, left, right, captions) in enumerate(rows):
        for k, (a, b, (d1, d2, lab)) in enumerate(zip(left, right, captions)):
            for j, (img, desc) in enumerate(((a, d1), (b, d2))):
                ax = axes[r, 2 * k + j]
                ax.imshow(_to_image(img), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"X{j + 1}: {desc}" + (f"\n{lab}" if j == 0 else "\n"), fontsize=7, loc="left")
        axes[r, 0].set_ylabel(title, fontsize=8)
    fig.suptitle("Bimodal Trifeature: pairs of image 1 | image 2 (titles: shape / texture / colour; labels)",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/figures/trifeature_contact_sheet.png")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(contact_sheet(Path(args.out), args.sizes, args.pairs, args.seed))


if __name__ == "__main__":
    main()
