"""The losses equal their naive, loop-based formulas (and have the right gradients)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from synergy_bench.losses import clip_loss, comm_terms, infmasking_mask_loss, nt_xent


def _randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _unit(*shape, seed=0, dtype=torch.float64):
    return F.normalize(_randn(*shape, seed=seed, dtype=dtype), dim=-1)


def nt_xent_naive(a, b, tau):
    """SimCLR NT-Xent written anchor by anchor: positive = partner, 2N - 2 negatives."""
    z = torch.cat([F.normalize(a, dim=-1), F.normalize(b, dim=-1)])
    n2, n = len(z), len(a)
    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        den = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n2) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[j]) / tau) / den)
    return total / n2


def clip_naive(a, b, scale):
    """CLIP's loss anchor by anchor: logits s a_i.b_k, negatives from the other modality only."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    n, total = len(a), 0.0
    for x, y in ((a, b), (b, a)):
        for i in range(n):
            den = sum(math.exp(scale * float(x[i] @ y[k])) for k in range(n))
            total += -math.log(math.exp(scale * float(x[i] @ y[i])) / den)
    return total / (2 * n)


def infmasking_mask_loss_naive(anchor, masked, weight, tau):
    """The literal L_mask: a full E x E covariance per sample, negatives summed one by one."""
    t_, b_, _ = masked.shape
    losses = []
    for b in range(b_):
        q, z = anchor[b], masked[:, b]  # (E,), (T, E)
        mu = z.mean(0)
        sigma = (z - mu).T @ (z - mu) / t_  # (E, E)
        sigma_t = weight * sigma / tau
        quad = q @ sigma_t @ q
        pos = q @ mu + 0.5 * quad
        neg = sum(torch.exp(q @ masked[t, n] / tau) for t in range(t_) for n in range(b_) if n != b)
        neg = neg + sum(torch.exp(q @ anchor[n] / tau) for n in range(b_) if n != b)
        e_pos = torch.exp(pos / tau)
        losses.append(-torch.log(e_pos / (e_pos + neg)) + 0.5 * quad / tau)
    return torch.stack(losses).mean()


def infonce_mean_naive(anchor, masked, tau):
    """L_mask at weight 0: InfoNCE whose positive is the mean masked embedding."""
    t_, b_, _ = masked.shape
    total = 0.0
    for b in range(b_):
        q = anchor[b]
        pos = math.exp(float(q @ masked[:, b].mean(0)) / tau)
        neg = sum(math.exp(float(q @ masked[t, n]) / tau) for t in range(t_) for n in range(b_) if n != b)
        neg += sum(math.exp(float(q @ anchor[n]) / tau) for n in range(b_) if n != b)
        total += -math.log(pos / (pos + neg))
    return total / b_


@pytest.mark.parametrize("n,e,tau", [(1, 3, 0.5), (5, 7, 0.1), (8, 4, 1.0)])
def test_nt_xent_matches_naive(n, e, tau):
    a, b = _randn(n, e, seed=1), _randn(n, e, seed=2)
    assert float(nt_xent(a, b, tau)) == pytest.approx(nt_xent_naive(a, b, tau), rel=1e-10)
    assert float(nt_xent(b, a, tau)) == pytest.approx(float(nt_xent(a, b, tau)), rel=1e-12)
    assert float(nt_xent(3 * a, 0.5 * b, tau)) == pytest.approx(float(nt_xent(a, b, tau)), rel=1e-12)


@pytest.mark.parametrize("v,b,e,tau", [(3, 5, 7, 0.1), (2, 1, 3, 0.5), (4, 6, 4, 1.0)])
def test_comm_terms_equal_separate_nt_xent_calls(v, b, e, tau):
    """Values and gradients equal 1/2 [NT-Xent(z_i', z_full'') + NT-Xent(z_i'', z_full')] (the
    gradients taken before the L2 normalisation that both sides see)."""
    w = _randn(v, 2, b, e, seed=11).requires_grad_()
    z, scale = F.normalize(w, dim=-1), torch.arange(1.0, v + 1, dtype=w.dtype)
    fused = comm_terms(z, tau)
    (g_fused,) = torch.autograd.grad((fused * scale).sum(), w, retain_graph=True)
    ref = torch.stack([0.5 * (nt_xent(z[i, 0], z[-1, 1], tau) + nt_xent(z[i, 1], z[-1, 0], tau))
                       for i in range(v)])
    (g_ref,) = torch.autograd.grad((ref * scale).sum(), w)
    torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_fused, g_ref, rtol=1e-10, atol=1e-12)
    z = z.detach()
    assert float(ref[0].detach()) == pytest.approx(0.5 * (nt_xent_naive(z[0, 0], z[-1, 1], tau)
                                                          + nt_xent_naive(z[0, 1], z[-1, 0], tau)), rel=1e-10)


@pytest.mark.parametrize("n,e,scale", [(1, 3, 2.0), (6, 5, 10.0), (5, 4, 1 / 0.07)])
def test_clip_loss_matches_naive(n, e, scale):
    a, b = _randn(n, e, seed=3), _randn(n, e, seed=4)
    assert float(clip_loss(a, b, scale)) == pytest.approx(clip_naive(a, b, scale), rel=1e-10)
    assert float(clip_loss(b, a, scale)) == pytest.approx(float(clip_loss(a, b, scale)), rel=1e-12)


def test_clip_loss_with_a_learnable_scale():
    """A 0-d tensor s = exp(w): the value of the naive formula at s, and dL/dw by central differences."""
    a, b = _randn(6, 5, seed=7), _randn(6, 5, seed=8)
    w = torch.tensor(math.log(1 / 0.07), dtype=torch.float64, requires_grad=True)
    loss = clip_loss(a, b, w.exp())
    loss.backward()
    s, h = 1 / 0.07, 1e-6
    assert float(loss.detach()) == pytest.approx(clip_naive(a, b, s), rel=1e-10)
    numeric = (clip_naive(a, b, math.exp(math.log(s) + h)) - clip_naive(a, b, math.exp(math.log(s) - h))) / (2 * h)
    assert float(w.grad) == pytest.approx(numeric, rel=1e-5)


def test_float32_losses_close_to_float64():
    a, b = _randn(16, 8, seed=5), _randn(16, 8, seed=6)
    for fn, arg in ((nt_xent, 0.1), (clip_loss, 10.0)):
        assert float(fn(a.float(), b.float(), arg)) == pytest.approx(float(fn(a, b, arg)), rel=1e-5)


@pytest.mark.parametrize("dtype,rel", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("t,b,e,weight,tau", [(6, 5, 8, 1.0, 0.1), (1, 4, 3, 0.7, 0.2),
                                              (3, 2, 16, 2.5, 0.5), (4, 6, 5, 0.0, 0.1)])
def test_mask_loss_matches_covariance_formula(dtype, rel, t, b, e, weight, tau):
    anchor, masked = _unit(b, e, seed=7, dtype=dtype), _unit(t, b, e, seed=8, dtype=dtype)
    fast = infmasking_mask_loss(anchor, masked, weight, tau)
    assert fast.dtype == dtype
    assert float(fast) == pytest.approx(float(infmasking_mask_loss_naive(anchor, masked, weight, tau)),
                                        rel=rel)


def test_mask_loss_gradients():
    anchor = _unit(4, 5, seed=9).requires_grad_()
    masked = _unit(3, 4, 5, seed=10).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, m: infmasking_mask_loss(a, m, 0.8, 0.3), (anchor, masked))
    grads = torch.autograd.grad(infmasking_mask_loss(anchor, masked, 0.8, 0.3), (anchor, masked))
    naive = torch.autograd.grad(infmasking_mask_loss_naive(anchor, masked, 0.8, 0.3), (anchor, masked))
    for g, h in zip(grads, naive):
        torch.testing.assert_close(g, h, rtol=1e-9, atol=1e-12)


def test_mask_loss_weight_zero_is_infonce_with_mean_positive():
    anchor, masked = _unit(5, 6, seed=11), _unit(4, 5, 6, seed=12)
    assert float(infmasking_mask_loss(anchor, masked, 0.0, 0.1)) == pytest.approx(
        infonce_mean_naive(anchor, masked, 0.1), rel=1e-10)


def test_mask_loss_grows_with_weight_and_ignores_it_without_spread():
    # -pos/tau + 1/2 q^T Sigma~ q / tau cancels, leaving the quadratic term inside the log-sum-exp
    # only: the loss is non-decreasing in the weight.
    anchor, masked = _unit(5, 6, seed=13), _unit(4, 5, 6, seed=14)
    losses = [float(infmasking_mask_loss(anchor, masked, w, 0.1)) for w in (0.0, 0.5, 1.0, 4.0)]
    assert losses == sorted(losses) and losses[0] < losses[-1]
    # identical masked views: Sigma = 0, the weight has no effect
    same = masked[:1].expand(4, -1, -1)
    assert float(infmasking_mask_loss(anchor, same, 0.0, 0.1)) == pytest.approx(
        float(infmasking_mask_loss(anchor, same, 3.0, 0.1)), rel=1e-12)
