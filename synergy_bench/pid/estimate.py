r"""BROJA PID estimated from samples of continuous sources, in bits.

Both estimators follow Liang, Cheng, Fan, Ling, Nie, Chen, Deng, Allen, Salakhutdinov and
Morency (2023, "Quantifying & modeling multimodal interactions: an information decomposition
framework", NeurIPS). Given samples :math:`(x_1^n, x_2^n, y^n)_{n=1}^N` with discrete labels y,
they estimate the BROJA atoms (Bertschinger, Rauh, Olbrich, Jost and Ay 2014)

.. math::

    R = I(X_1;Y) + I(X_2;Y) - I_{Q^*}, \quad U_1 = I_{Q^*} - I(X_2;Y), \quad
    U_2 = I_{Q^*} - I(X_1;Y), \quad S = I(X_1,X_2;Y) - I_{Q^*},

with :math:`I_{Q^*} = \min_{Q \in \Delta_P} I_Q(X_1,X_2;Y)` over the tables that keep both
source-label marginals of P.

**cluster** (their "CVX" estimator). Each modality is standardised, projected on its first
principal components and cut into k-means clusters (Lloyd 1982, k-means++ seeding of Arthur and
Vassilvitskii 2007); the counts :math:`\hat P(c_1, c_2, y)` of cluster pairs and labels are
decomposed exactly by :func:`synergy_bench.pid.broja`. The atoms are those of the discretised
sources, so information lost by the clustering is missing and the plug-in counts are biased
upwards in :math:`I(X_1,X_2;Y)` when cells outnumber samples (spurious synergy).

**batch** (their "BATCH" estimator). Classifiers give :math:`p(y \mid x_1)`, :math:`p(y \mid x_2)`
and :math:`p(y \mid x_1, x_2)`, and plug-in informations
:math:`\hat I(X;Y) = \frac1N \sum_n \mathrm{KL}(p(\cdot \mid x^n) \,\|\, \hat p(y))`.
On a batch of B samples, read as a uniform distribution over its :math:`x_1^a` and its
:math:`x_2^b`, a candidate Q is built from per-label embeddings
:math:`f_1(x_1)_y, f_2(x_2)_y \in \mathbb{R}^E` (each standardised over its E entries):

.. math::

    A[a,b,y] = \exp\big(\langle f_1(x_1^a)_y, f_2(x_2^b)_y \rangle / \sqrt{E}\big),

projected by Sinkhorn iterations (Sinkhorn 1964; Cuturi 2013) so that for every label
:math:`\sum_b Q[a,b,y] = p(y \mid x_1^a)` and :math:`\sum_a Q[a,b,y] \propto p(y \mid x_2^b)`,
i.e. :math:`Q(x_1, y) = P(x_1, y)` and :math:`Q(x_2, y) = P(x_2, y)` on the batch. With
:math:`q(b \mid a, y) = Q[a,b,y] / p(y \mid x_1^a)`,

.. math::

    I_Q(X_1,X_2;Y) = \hat I(X_1;Y) + \frac1B \sum_{a,b,y} p(y \mid x_1^a)\, q(b \mid a,y)
    \log \frac{q(b \mid a,y)}{\sum_{y'} p(y' \mid x_1^a)\, q(b \mid a,y')},

the second term being :math:`I_Q(X_2;Y \mid X_1)`, which the embeddings are trained to minimise
(batches of 256, Adam with learning rate 1e-3, as in the paper). The samples are split at
random into three parts: the networks train on the *fit* part (whose mean and standard
deviation standardise every feature); the *selection* part chooses
(the classifiers stop early on its cross-entropy, the alignment keeps the epoch with the least
:math:`I_Q(X_2;Y \mid X_1)` on it); the *evaluation* part, seen by no choice, gives the atoms
with the formulas above (the :math:`I_Q` term averaged over its batches), clipped at 0 and
converted to bits. The published code trains for fixed epochs (40 for the classifiers, 10 for
the alignment) and reads the atoms on a test set; early stopping and epoch choice on a separate
selection split are our options.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from synergy_bench.nn import mlp, seeded_init
from synergy_bench.probe import train_classifier

from .broja import PID, broja

_LN2 = math.log(2.0)
METHODS = ("cluster", "batch")


@dataclass(frozen=True)
class Estimate:
    """A PID estimated from samples, and what the estimate needed.

    Attributes
    ----------
    pid : PID
        The four atoms, in bits.
    method : str
        'cluster' or 'batch'.
    n_samples : int
        Samples the estimate used.
    seed : int
        Seed of every random choice (k-means starts, initialisations, batches, split).
    clusters : (int, int) or None
        Clusters of modality 1 and 2 ('cluster'); None for 'batch'.
    epochs : dict or None
        Epochs each network trained for, keyed 'x1', 'x2', 'x12' (classifiers of
        p(y|x1), p(y|x2), p(y|x1,x2)) and 'align' ('batch'); None for 'cluster'.
    """

    pid: PID
    method: str
    n_samples: int
    seed: int
    clusters: tuple[int, int] | None = None
    epochs: dict[str, int] | None = field(default=None, hash=False)


def estimate(x1, x2, y, method: str = "cluster", *, seed: int = 0, **options) -> Estimate:
    """Estimate the BROJA PID of (X1, X2; Y) from samples, in bits.

    Parameters
    ----------
    x1, x2 : array_like, shape (N, ...)
        The two sources, one row per sample (trailing axes are flattened).
    y : array_like, shape (N,)
        Discrete labels (any values; relabelled 0..C-1 in sorted order).
    method : {'cluster', 'batch'}
        Estimator; see the module docstring.
    seed : int
        Seed of every random choice; the same seed gives the same estimate.
    **options
        For 'cluster': ``clusters`` (20), ``pca`` (5; None keeps all features), ``n_init`` (10).
        For 'batch': ``hidden`` (32), ``layers`` (4), ``embed`` (10), ``batch_size`` (256),
        ``lr`` (1e-3), ``max_epochs`` (200), ``patience`` (10), ``align_epochs`` (10),
        ``holdout`` (0.2: fraction of the samples in the selection split), ``evaluation``
        (0.2: fraction in the evaluation split), ``sinkhorn_iters`` (100), ``device`` ('cpu').

    Returns
    -------
    Estimate

    Raises
    ------
    ValueError
        For an unknown method or mismatched, non-finite or too few samples.
    TypeError
        For an option the method does not take.
    """
    if method not in METHODS:
        raise ValueError(f"unknown PID estimator {method!r}; choose one of {', '.join(METHODS)}")
    x1, x2 = (_features(x, name) for x, name in ((x1, "x1"), (x2, "x2")))
    y = np.asarray(y).ravel()
    if not len(x1) == len(x2) == len(y):
        raise ValueError(f"x1, x2 and y need one row per sample, got {len(x1)}, {len(x2)} and {len(y)} rows")
    if len(y) < 2:
        raise ValueError(f"a PID estimate needs at least 2 samples, got {len(y)}")
    _, y = np.unique(y, return_inverse=True)
    fit = _cluster if method == "cluster" else _batch
    return fit(x1, x2, y.astype(np.int64), int(seed), **options)


def _features(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x.reshape(len(x), -1) if x.ndim != 1 else x[:, None]      # (N, D)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf; pass finite features")
    return x


def _child_seed(seed: int, *path: int) -> int:
    """An independent 31-bit seed for one random choice (numpy SeedSequence of seed and path)."""
    return int(np.random.SeedSequence([seed, *path]).generate_state(1)[0] >> 1)


# --------------------------------------------------------------------------- cluster


def discretise(x: np.ndarray, clusters: int = 20, pca: int | None = 5, n_init: int = 10,
               seed: int = 0) -> tuple[np.ndarray, int]:
    """Cluster index of every sample: standardise, PCA, k-means.

    Parameters
    ----------
    x : ndarray, shape (N, D)
    clusters : int
        Number of k-means clusters; data with at most this many distinct rows keeps one
        cluster per distinct row (an exact discretisation, no k-means).
    pca : int or None
        Principal components kept after standardising (None or 0: all features).
    n_init : int
        k-means restarts; the run with the least inertia is kept.
    seed : int
        ``random_state`` of PCA and k-means.

    Returns
    -------
    labels : ndarray of int, shape (N,)
    n_clusters : int
        Clusters used.
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    if clusters < 1:
        raise ValueError(f"clusters = {clusters} must be >= 1")
    distinct, labels = np.unique(x, axis=0, return_inverse=True)
    if len(distinct) <= clusters:
        return labels.ravel(), len(distinct)
    z = StandardScaler().fit_transform(x)
    if pca:
        z = PCA(n_components=min(pca, *z.shape), random_state=seed).fit_transform(z)
    km = KMeans(n_clusters=clusters, n_init=n_init, random_state=seed).fit(z)
    return km.labels_, clusters


def _cluster(x1, x2, y, seed, *, clusters: int = 20, pca: int | None = 5, n_init: int = 10) -> Estimate:
    (c1, k1), (c2, k2) = (discretise(x, clusters, pca, n_init, _child_seed(seed, i))
                          for i, x in enumerate((x1, x2)))
    counts = np.zeros((k1, k2, y.max() + 1))                 # (k1, k2, C)
    np.add.at(counts, (c1, c2, y), 1.0)
    return Estimate(broja(counts), "cluster", len(y), seed, clusters=(k1, k2))


# --------------------------------------------------------------------------- batch


def sinkhorn(logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, iters: int = 100,
             tol: float = 1e-4) -> torch.Tensor:
    r"""Log of the matrix scaling of ``exp(logits)`` onto given row and column sums, per label.

    Alternately rescales columns and rows (Sinkhorn 1964) in the log domain,

    .. math::

        L \leftarrow L - \mathrm{lse}_a L + \log c, \qquad
        L \leftarrow L - \mathrm{lse}_b L + \log r,

    ending on rows, so the row sums hold exactly and the column sums to ``tol``.

    Parameters
    ----------
    logits : Tensor, shape (B1, B2, C)
    rows : Tensor, shape (B1, C)
        Positive target row sums.
    cols : Tensor, shape (B2, C)
        Positive target column sums; rescaled per label to the total of ``rows`` (the two
        batch estimates of p(y) differ slightly, and scaling needs equal totals).
    iters, tol : int, float
        At most ``iters`` sweeps; stop once every column sum is within ``tol``.

    Returns
    -------
    Tensor, shape (B1, B2, C)
        Log of the scaled matrix.
    """
    cols = cols * (rows.sum(0) / cols.sum(0))                # (B2, C)
    log_r, log_c = rows.log(), cols.log()
    for _ in range(iters):
        logits = logits - logits.logsumexp(0, keepdim=True) + log_c[None]
        logits = logits - logits.logsumexp(1, keepdim=True) + log_r[:, None]
        with torch.no_grad():
            if (logits.logsumexp(0).exp() - cols).abs().max() < tol:
                break
    return logits


class _Alignment(nn.Module):
    """Per-label embeddings of each modality and their batch similarity (log A[a, b, y])."""

    def __init__(self, d1: int, d2: int, n_labels: int, hidden: int, layers: int, embed: int):
        super().__init__()
        self.shape = (n_labels, embed)
        self.f1 = mlp([d1, *[hidden] * layers, n_labels * embed])
        self.f2 = mlp([d2, *[hidden] * layers, n_labels * embed])

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        e1, e2 = (_standardise(f(x).view(-1, *self.shape)) for f, x in ((self.f1, x1), (self.f2, x2)))
        return torch.einsum("ayk,byk->aby", e1, e2) / math.sqrt(self.shape[1])   # (B1, B2, C)


def _standardise(e: torch.Tensor) -> torch.Tensor:
    return (e - e.mean(-1, keepdim=True)) / (e.var(-1, keepdim=True) + 1e-8).sqrt()


def conditional_information_q(log_a: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor,
                              iters: int = 100) -> torch.Tensor:
    r"""I_Q(X2;Y|X1) in nats of the batch table Q that Sinkhorn makes from similarities A.

    Parameters
    ----------
    log_a : Tensor, shape (B, B, C)
        log A[a, b, y], similarities of sample a's x1 and sample b's x2 under label y.
    p1, p2 : Tensor, shape (B, C)
        p(y | x1^a) and p(y | x2^b).
    iters : int
        Sinkhorn sweeps at most.

    Returns
    -------
    Tensor, scalar
        :math:`\frac1B \sum_{a,b,y} p_1(y|a)\, q(b|a,y)\,
        \log[q(b|a,y) / \sum_{y'} p_1(y'|a)\, q(b|a,y')]`.
    """
    log_q = sinkhorn(log_a, p1, p2, iters).log_softmax(1)              # log q(b | a, y)   (B, B, C)
    log_joint = log_q + p1.log()[:, None]                              # log p1(y|a) q(b|a,y)
    log_mix = log_joint.logsumexp(-1, keepdim=True)                    # log Q(b | a)      (B, B, 1)
    return (log_joint.exp() * (log_q - log_mix)).sum((1, 2)).mean()


def _plugin_information(p: torch.Tensor, p_y: torch.Tensor) -> float:
    """mean_n KL(p(.|x^n) || p(y)) in nats, for p of shape (N, C)."""
    return float((p * (p.clamp_min(1e-12).log() - p_y.log())).sum(-1).mean())


def _batches(n: int, size: int, gen: torch.Generator | None) -> list[torch.Tensor]:
    """Indices of ceil(n / size) batches of near-equal size, shuffled by gen (None: in order)."""
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    return list(order.tensor_split(max(1, math.ceil(n / size))))


def _split_iq(align: _Alignment, x1, x2, p1, p2, split: torch.Tensor, batch_size: int,
              iters: int) -> float:
    """I_Q(X2;Y|X1) in nats on the samples of ``split``, averaged over its batches weighted by size."""
    total = 0.0
    with torch.no_grad():
        for idx in _batches(len(split), batch_size, None):
            b = split[idx.to(split.device)]
            total += len(b) * float(conditional_information_q(align(x1[b], x2[b]), p1[b], p2[b], iters))
    return total / len(split)


def _train_alignment(align: _Alignment, x1, x2, p1, p2, held: torch.Tensor, fit: torch.Tensor,
                     gen: torch.Generator, *, batch_size: int, lr: float, epochs: int,
                     iters: int) -> int:
    """Minimise I_Q(X2;Y|X1) over the embeddings on the ``fit`` batches; keep the epoch with the
    least value on the ``held`` samples and return it (0: the initial embeddings)."""
    opt = torch.optim.Adam(align.parameters(), lr=lr)
    best, best_state, best_epoch = _split_iq(align, x1, x2, p1, p2, held, batch_size, iters), None, 0
    for epoch in range(1, epochs + 1):
        for idx in _batches(len(fit), batch_size, gen):
            b = fit[idx.to(fit.device)]
            loss = conditional_information_q(align(x1[b], x2[b]), p1[b], p2[b], iters)
            opt.zero_grad()
            loss.backward()
            opt.step()
        value = _split_iq(align, x1, x2, p1, p2, held, batch_size, iters)
        if value < best:
            best, best_state, best_epoch = value, copy.deepcopy(align.state_dict()), epoch
    if best_state is not None:
        align.load_state_dict(best_state)
    return best_epoch


def _standardised(x: np.ndarray, fit: torch.Tensor, device: str) -> torch.Tensor:
    """x standardised with the mean and std of its ``fit`` rows."""
    ref = x[fit.numpy()]
    return torch.as_tensor((x - ref.mean(0)) / (ref.std(0) + 1e-8), dtype=torch.float32, device=device)


def batch_splits(n: int, seed: int, holdout: float = 0.2,
                 evaluation: float = 0.2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices of the fit, selection and evaluation splits of n samples (seeded, disjoint).

    The selection split holds round(n holdout) samples, the evaluation split round(n evaluation),
    the fit split the rest; each needs at least 2.
    """
    n_select, n_eval = round(n * holdout), round(n * evaluation)
    if not (0 < holdout < 1 and 0 < evaluation < 1) or min(n_select, n_eval, n - n_select - n_eval) < 2:
        raise ValueError(f"holdout = {holdout} and evaluation = {evaluation} must leave at least 2 of "
                         f"the {n} samples in each of the fit, selection and evaluation splits")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(_child_seed(seed, 2)))
    return perm[n_select + n_eval:], perm[:n_select], perm[n_select:n_select + n_eval]


def _batch(x1, x2, y, seed, *, hidden: int = 32, layers: int = 4, embed: int = 10,
           batch_size: int = 256, lr: float = 1e-3, max_epochs: int = 200, patience: int = 10,
           align_epochs: int = 10, holdout: float = 0.2, evaluation: float = 0.2,
           sinkhorn_iters: int = 100, device: str = "cpu") -> Estimate:
    n, n_labels = len(y), int(y.max()) + 1
    splits = batch_splits(n, seed, holdout, evaluation)
    x1, x2 = _standardised(x1, splits[0], device), _standardised(x2, splits[0], device)  # (N, D1), (N, D2)
    fit, select, evaluate = (idx.to(device) for idx in splits)
    gen = torch.Generator().manual_seed(seed)
    y_t = torch.as_tensor(y, device=device)                                   # (N,)
    p_y = torch.as_tensor(np.bincount(y, minlength=n_labels) / n, dtype=torch.float32, device=device)
    train = dict(batch_size=batch_size, lr=lr, max_epochs=max_epochs, patience=patience)

    probs, epochs = {}, {}                                                    # p(y | .) (N, C)
    for name, xs in (("x1", [x1]), ("x2", [x2]), ("x12", [x1, x2])):
        x = torch.cat(xs, 1)
        net = seeded_init(mlp([x.shape[1], *[hidden] * layers, n_labels]), gen).to(device)
        net, epochs[name] = train_classifier(net, x, y_t, fit, select, gen, **train)
        with torch.no_grad():
            probs[name] = net(x).softmax(-1).clamp_min(1e-8)
    if n_labels == 1:
        return Estimate(PID(0.0, 0.0, 0.0, 0.0), "batch", n, seed, epochs={**epochs, "align": 0})

    align = seeded_init(_Alignment(x1.shape[1], x2.shape[1], n_labels, hidden, layers, embed), gen).to(device)
    epochs["align"] = _train_alignment(align, x1, x2, probs["x1"], probs["x2"], select, fit, gen,
                                       batch_size=batch_size, lr=lr, epochs=align_epochs,
                                       iters=sinkhorn_iters)
    iq_cond = _split_iq(align, x1, x2, probs["x1"], probs["x2"], evaluate, batch_size, sinkhorn_iters)
    i1, i2, i12 = (_plugin_information(probs[k][evaluate], p_y) for k in ("x1", "x2", "x12"))
    i_q = i1 + iq_cond
    atoms = (i1 + i2 - i_q, i_q - i2, i_q - i1, i12 - i_q)
    return Estimate(PID(*(max(v, 0.0) / _LN2 for v in atoms)), "batch", n, seed, epochs=epochs)
