"""Contrastive losses: SimCLR NT-Xent, CoMM's terms, CLIP InfoNCE and the InfMasking mask term.

Every loss is a mean over the batch and works on any device and float dtype; nothing here draws
random numbers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised-temperature cross entropy (Chen et al., 2020), symmetric.

    The rows of ``a`` and ``b`` (N, E) are L2-normalised here. Each of the 2N embeddings
    u in {a_1..a_N, b_1..b_N} is an anchor whose positive v is its partner (a_i <-> b_i) and whose
    negatives are the 2N - 2 other embeddings of both batches:

        l(u, v) = -log[ exp(u.v / tau) / sum_{w != u} exp(u.w / tau) ]
        NT-Xent(a, b) = (1 / 2N) sum over the 2N anchors of l(u, v)

    so NT-Xent(a, b) = NT-Xent(b, a).
    """
    n = a.shape[0]
    z = F.normalize(torch.cat([a, b]), dim=-1)  # (2N, E)
    sim = z @ z.T / temperature  # (2N, 2N)
    self_pair = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_pair, float("-inf"))
    partner = torch.arange(2 * n, device=z.device).roll(n)  # a_i <-> b_i
    return F.cross_entropy(sim, partner)


def comm_terms(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """CoMM's n + 1 loss terms (Dufumier, Castillo-Navarro et al., 2025), every similarity once.

    Term i aligns view i of each augmentation with the full view of the other one:

        L_i = 1/2 [ NT-Xent(Z_i', Z'') + NT-Xent(Z_i'', Z') ]

    with :func:`nt_xent`'s anchors and negatives. NT-Xent(a, b) over 2B anchors reads three B x B
    similarity blocks: A = a a^T (a's anchors against a's negatives, diagonal excluded),
    C = a b^T (positives on the diagonal; b's anchors read its columns) and D = b b^T (diagonal
    excluded). Here a = z_i^s and b = z_full^(1-s), so with S_i^s = z_i^s z_i^s^T and
    X_i^s = z_i^s z_full^(1-s)^T,

        NT-Xent(z_i^s, z_full^(1-s)) = 1/(2B) sum_j [ lse_k(S_jk, k != j ; X_jk) - X_jj
                                                     + lse_k(X_kj ; S_full^(1-s)_jk, k != j) - X_jj ]

    (similarities divided by tau, lse the log-sum-exp over the listed entries). The 2 (n + 1)
    blocks S and the 2 (n + 1) blocks X are all that any term needs: half the matrix products of
    2 (n + 1) separate :func:`nt_xent` calls, which recompute the full views' D blocks and the
    transposed C blocks.

    Parameters
    ----------
    z : (V, 2, B, E) tensor
        V = n + 1 views of both augmentations, the full view last; L2-normalised rows (not
        re-normalised here).
    temperature : float, tau > 0.

    Returns
    -------
    (V,) tensor: L_1 .. L_n, L_full.
    """
    b = z.shape[2]
    full_other = z[-1].flip(0)  # (2, B, E): the full view of the other augmentation
    s = z @ z.transpose(-1, -2) / temperature  # (V, 2, B, B): S_i^s
    x = z @ full_other.transpose(-1, -2) / temperature  # (V, 2, B, B): X_i^s
    s = s.masked_fill(torch.eye(b, dtype=torch.bool, device=z.device), float("-inf"))
    pos = x.diagonal(dim1=-2, dim2=-1)  # (V, 2, B)
    lse_a = torch.logaddexp(s.logsumexp(-1), x.logsumexp(-1))  # (V, 2, B): anchors z_i^s
    lse_b = torch.logaddexp(x.logsumexp(-2), s[-1].flip(0).logsumexp(-1))  # anchors z_full^(1-s)
    return (lse_a + lse_b - 2 * pos).mean(-1).sum(-1) / 4  # (V,): 1/2 sum_s of 1/2 (a + b anchors)


def clip_loss(a: torch.Tensor, b: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE between two modalities (Radford et al., 2021).

    The rows of ``a`` and ``b`` (N, E) are L2-normalised here; sample i of ``a`` must pick sample i
    of ``b`` among the N rows of ``b`` and vice versa (negatives come from the other modality only):

        L = 1/2 [ CE(s a b^T, I) + CE(s b a^T, I) ]

    with the logit scale s = ``scale``: CLIP's learnt exp(w) (a 0-d tensor, gradients flow into
    it) or a fixed 1 / tau.
    """
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = scale * (a @ b.T)  # (N, N)
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def infmasking_mask_loss(anchor: torch.Tensor, masked: torch.Tensor, weight: float | torch.Tensor,
                         temperature: float) -> torch.Tensor:
    """The InfMasking mask term L_mask (Wen, Dai et al., 2025), mean over the batch.

    For anchor q = ``anchor[b]`` (E,) and its T masked embeddings z_t = ``masked[t, b]``, all
    already L2-normalised (not re-normalised here), with lambda = ``weight`` and tau = temperature:

        mu   = (1/T) sum_t z_t
        Sigma = (1/T) sum_t (z_t - mu)(z_t - mu)^T,      Sigma~ = lambda Sigma / tau
        pos  = q.mu + 1/2 q^T Sigma~ q
        L_mask(q) = -log[ e^{pos/tau} / (e^{pos/tau} + sum_{t, n != b} e^{q.z_{t,n}/tau}
                                          + sum_{n != b} e^{q.q_n/tau}) ] + 1/2 q^T Sigma~ q / tau

    the closed form of the expected InfoNCE over infinitely many masks under a Gaussian model of
    the masked embeddings. The E x E covariance is never formed: q^T Sigma q = (1/T) sum_t
    (q.z_t - q.mu)^2, and q.z_t is the diagonal of the similarities already needed for the
    negatives, so the cost is O(T B^2 E) like the negatives alone.

    Parameters
    ----------
    anchor : (B, E) tensor, L2-normalised rows (the full fused embeddings q).
    masked : (T, B, E) tensor, L2-normalised rows (the masked fused embeddings z_t).
    weight : float or 0-d tensor, lambda (the ramped mask weight lambda(e)); 0 gives InfoNCE with
        the mean of the masked views as positive.
    temperature : float, tau > 0.
    """
    t, b, _ = masked.shape
    sim = torch.einsum("be,tne->btn", anchor, masked)  # (B, T, B): q_b . z_{t,n}
    q_z = sim.diagonal(dim1=0, dim2=2)  # (T, B): q_b . z_{t,b}
    q_mu = q_z.mean(0)  # (B,): q . mu
    quad = weight * (q_z - q_mu).pow(2).mean(0) / temperature  # (B,): q^T Sigma~ q
    pos = q_mu + 0.5 * quad  # (B,)
    same_sample = torch.eye(b, dtype=torch.bool, device=anchor.device)  # (B, B): n == b
    neg_masked = sim.masked_fill(same_sample[:, None, :], float("-inf")).reshape(b, t * b)  # (B, T*B)
    neg_anchor = (anchor @ anchor.T).masked_fill(same_sample, float("-inf"))  # (B, B)
    logits = torch.cat([pos[:, None], neg_masked, neg_anchor], dim=1) / temperature  # (B, 1+(T+1)B)
    nll = torch.logsumexp(logits, dim=1) - logits[:, 0]  # (B,)
    return (nll + 0.5 * quad / temperature).mean()
