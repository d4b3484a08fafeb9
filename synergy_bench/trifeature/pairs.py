r"""The Trifeature split and the pairs of images of the two modalities.

**Split.** The 1000 (shape, texture, colour) combinations are split 800 / 200. The bank holds each
training combination ``renders`` times (published: 3, so 2,400 images), then each test
combination once. Unlike the plain random split of the CoMM code, the split is *balanced*: every
shape has 20 test combinations, two of each texture and two of each colour (two disjoint random
texture -> colour permutations per shape), so every shape has 80 x ``renders`` training images.

**Pairs.** Let G_s be the images of shape s in a split. *Unbiased* pairs are uniform over the
same-shape pairs (i, j), i = j included, as in the code. Given a permutation pi of the textures
onto the colours, *biased* pairs are uniform over the same-shape pairs with
colour(j) = pi(texture(i)). A draw of n pairs is without replacement.
"""
from __future__ import annotations

import numpy as np

from synergy_bench.trifeature.render import K

TEST_PER_SHAPE = 20  # balanced split: 2 of each texture and of each colour per shape


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


def bank_factors(test: np.ndarray, renders: int) -> np.ndarray:
    """(n_images, 3) shape, texture, colour of the bank: every training combination ``renders``
    times (in lexicographic order), then the ``test`` combinations once."""
    combos = np.stack(np.unravel_index(np.arange(K ** 3), (K,) * 3), 1)
    is_test = np.zeros(K ** 3, bool)
    is_test[np.ravel_multi_index(test.T, (K,) * 3)] = True
    return np.concatenate([np.repeat(combos[~is_test], renders, 0), test])


def max_train_pairs(protocol: str, renders: int) -> int:
    """Distinct training pairs: 10 m^2 same-shape pairs (m = 80 renders images per shape), or
    10 m q biased ones (q = 8 renders images of each colour per shape)."""
    m = (K * K - TEST_PER_SHAPE) * renders
    return K * m * m if protocol == "ru" else K * m * (m // K)


class Pairs:
    """Pair sampler over a bank whose first ``n_train`` images are the training split.

    Parameters
    ----------
    factors : ndarray, shape (n_images, 3)
        Shape, texture, colour of every bank image.
    n_train : int
        Number of training images (the rest are test images).
    pi : ndarray, shape (10,)
        Texture t goes with colour pi[t] in biased pairs.
    """

    def __init__(self, factors: np.ndarray, n_train: int, pi: np.ndarray):
        self.factors, self.n_train, self.pi = factors, n_train, pi
        bounds = {"train": (0, n_train), "test": (n_train, len(factors))}
        #: (10, m) image indices of each shape, per split
        self.by_shape = {split: lo + np.stack([np.flatnonzero(factors[lo:hi, 0] == s) for s in range(K)])
                         for split, (lo, hi) in bounds.items()}
        train = factors[:n_train]
        #: (10, 10, q) training image indices per shape and colour
        self.by_colour = np.stack([np.stack([np.flatnonzero((train[:, 0] == s) & (train[:, 2] == c))
                                             for c in range(K)]) for s in range(K)])

    def draw(self, split: str, biased: bool, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n distinct pairs of image indices of ``split`` ('train' or 'test'), uniform without
        replacement over the unbiased or biased pairs, by numbering them: pair k is
        (shape, a, b) in mixed radix (biased pairs: training split only)."""
        groups = self.by_shape[split]  # (10, m)
        m = groups.shape[1]
        if not biased:
            shape, rest = np.divmod(rng.choice(K * m * m, size=n, replace=False), m * m)
            a, b = np.divmod(rest, m)
            return groups[shape, a], groups[shape, b]
        q = self.by_colour.shape[2]
        shape, rest = np.divmod(rng.choice(K * m * q, size=n, replace=False), m * q)
        a, b = np.divmod(rest, q)
        i1 = groups[shape, a]
        return i1, self.by_colour[shape, self.pi[self.factors[i1, 1]], b]

    def all_test_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Every same-shape pair of test images once (the test distribution's support)."""
        groups = self.by_shape["test"]  # (10, m)
        m = groups.shape[1]
        return np.repeat(groups, m, axis=1).ravel(), np.tile(groups, (1, m)).ravel()
