"""Every registered method builds, trains, embeds and is reproducible on a tiny configuration;
CoMM's unimodal views and InfMasking's masking keep their promises."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from synergy_bench.registry import METHODS, load_plugins, make_params

load_plugins()
NAMES = sorted(METHODS)
SHAPES = [(12,), (10,)]
TINY = dict(n_tokens=0, d_model=16, hidden=32, head_hidden=32, embed_dim=16)


pytestmark = pytest.mark.usefixtures("one_thread")


def build(name, seed=0, shapes=SHAPES, **over):
    """A tiny ``name``: the TINY sizes the method has, then ``over``."""
    cls = METHODS[name]
    fields = {f.name for f in dataclasses.fields(cls.Params)}
    return cls(make_params(cls, {**{k: v for k, v in TINY.items() if k in fields}, **over}, name), shapes, seed)


def batch(seed, b=16, shapes=SHAPES):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, *s, generator=g) for s in shapes]


def views(b=16, shapes=SHAPES):
    """Two 'augmentations' of one batch: shared signal plus independent noise."""
    x = batch(1, b, shapes)
    n1, n2 = batch(2, b, shapes), batch(3, b, shapes)
    return [a + 0.3 * e for a, e in zip(x, n1)], [a + 0.3 * e for a, e in zip(x, n2)]


def labels(b=16, seed=9):
    """Task labels of a batch, for the methods that train on them (the others ignore them)."""
    g = torch.Generator().manual_seed(seed)
    return {"A": torch.randint(0, 2, (b,), generator=g), "B": torch.randint(0, 5, (b,), generator=g)}


def trainable(name):
    return METHODS[name].trainable


@pytest.mark.parametrize("name", NAMES)
def test_loss_finite_and_embed_shape(name):
    m = build(name)
    v1, v2 = views()
    if trainable(name):
        assert torch.isfinite(m.loss(v1, v2, 0, 10, labels()))
    else:
        with pytest.raises(Exception):
            m.loss(v1, v2, 0, 10, labels())
    m.eval()
    with torch.no_grad():
        z = m.embed(v1)
    assert z.ndim == 2 and z.shape[0] == 16 and torch.isfinite(z).all()


@pytest.mark.parametrize("name", [n for n in NAMES if trainable(n)])
def test_training_lowers_the_loss(name):
    m = build(name)
    m.train()
    v1, v2 = views()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    losses = []
    for _ in range(100):  # MAE with one token per feature leaves its first plateau after ~60 steps
        loss = m.loss(v1, v2, 0, 1, labels())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(map(lambda v: v == v, losses))
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5, losses


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_model_and_loss(name):
    a, b = build(name, seed=5), build(name, seed=5)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    v1, v2 = views()
    if trainable(name):
        assert torch.equal(a.loss(v1, v2, 2, 10, labels()), b.loss(v1, v2, 2, 10, labels()))
        other = build(name, seed=6).state_dict()
        assert any(not torch.equal(sa[k], other[k]) for k in sa)
    a.eval(), b.eval()
    with torch.no_grad():
        assert torch.equal(a.embed(v1), b.embed(v1))


@pytest.mark.parametrize("name", [n for n in NAMES if trainable(n)])
def test_three_modalities(name):
    shapes = [(5,), (6,), (7,)]
    try:
        m = build(name, shapes=shapes)
    except ValueError as err:  # a method may refuse what it does not support, saying so clearly
        assert "modalit" in str(err) and "3" in str(err), str(err)
        return
    v1, v2 = batch(4, 8, shapes), batch(5, 8, shapes)
    assert torch.isfinite(m.loss(v1, v2, 0, 3, labels(8)))


@pytest.mark.parametrize("name", [n for n in NAMES if n in ("comm", "infmasking", "random")])
def test_unimodal_views_ignore_the_other_modalities(name):
    m = build(name)
    x = batch(6)
    y = [x[0], x[1] + torch.randn(x[1].shape, generator=torch.Generator().manual_seed(7))]
    drop = m.fusion.modality_views()  # (n+1, N)
    with torch.no_grad():
        zx, zy = (m.fusion(m.tokens(v), pad=drop[:, None, :]) for v in (x, y))  # (n+1, B, d)
    torch.testing.assert_close(zx[0], zy[0], rtol=0, atol=1e-6)  # Z_1 ignores modality 2
    assert not torch.allclose(zx[1], zy[1]) and not torch.allclose(zx[2], zy[2])
    # the batched views equal one view at a time, and the full view equals embed()
    with torch.no_grad():
        for i in range(3):
            torch.testing.assert_close(m.fusion(m.tokens(x), pad=drop[i]), zx[i])
        m.eval()
        torch.testing.assert_close(m.embed(x), zx[2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["comm", "infmasking", "mae", "supervised"])
def test_one_fusion_call_per_loss(name):
    m = build(name)
    calls = []
    m.fusion.register_forward_hook(lambda *args: calls.append(1))
    m.loss(*views(), 0, 10, labels())
    assert len(calls) == 1


def test_infmasking_contains_the_comm_terms():
    comm, inf = build("comm", seed=3), build("infmasking", seed=3)
    sc, si = comm.state_dict(), inf.state_dict()
    assert sc.keys() == si.keys() and all(torch.equal(sc[k], si[k]) for k in sc)
    v1, v2 = views()
    tc, ti = comm.terms(v1, v2, 0, 10), inf.terms(v1, v2, 0, 10)
    assert len(ti) == len(tc) + 2 == len(SHAPES) + 3
    torch.testing.assert_close(torch.stack(ti[:len(tc)]), torch.stack(tc), rtol=1e-5, atol=1e-5)
    fresh = build("infmasking", seed=3)  # same weights and mask generator as ``inf`` had
    torch.testing.assert_close(fresh.loss(v1, v2, 0, 10), torch.stack(ti).mean(), rtol=0, atol=0)


def _inf_loss(epoch=0, **over):
    """InfMasking loss of a fresh model (fresh mask generator) on the same batch; 4 tokens per
    modality so that rho = 0.7 keeps one (with 2 tokens it keeps none and all views coincide)."""
    return float(build("infmasking", seed=4, **{"n_tokens": 4, **over}).loss(*views(), epoch, 10).item())


def test_infmasking_weight_relations():
    # lambda = 0: the ramp has nothing to scale, the epoch does not matter
    assert _inf_loss(0, mask_lambda=0.0) == pytest.approx(_inf_loss(9, mask_lambda=0.0), rel=1e-6)
    # lambda > 0 on spread masked views: the ramp grows the loss with the epoch
    assert _inf_loss(9, mask_lambda=1.0) > _inf_loss(0, mask_lambda=1.0)
    # no masking (rho = 0): every masked view is the full view, Sigma = 0, lambda does not matter
    assert _inf_loss(mask_ratio=0.0, mask_lambda=0.0) == pytest.approx(
        _inf_loss(mask_ratio=0.0, mask_lambda=5.0), rel=1e-6)
    # one masked view: Sigma = 0 as well
    assert _inf_loss(num_masks=1, mask_lambda=0.0) == pytest.approx(
        _inf_loss(num_masks=1, mask_lambda=5.0), rel=1e-6)


def test_infmasking_masks_keep_floor_of_l_times_one_minus_rho():
    m = build("infmasking", n_tokens=10, mask_ratio=0.9, num_masks=4)
    masks = m.sample_masks(8, torch.device("cpu"))  # (T, B, n * L)
    assert masks.shape == (4, 8, 20)
    kept = (~masks).unflatten(-1, (2, 10)).sum(-1)
    assert (kept == 1).all()  # 10 (1 - 0.9) = 0.999...: still one token kept
    assert len({tuple(r.tolist()) for r in masks.flatten(0, 1)}) > 1  # masks differ
    m = build("infmasking", n_tokens=4, mask_ratio=0.7)
    assert ((~m.sample_masks(8, torch.device("cpu"))).unflatten(-1, (2, 4)).sum(-1) == 1).all()


def test_random_is_untrained_comm_and_raw_is_the_input():
    x = batch(8)
    comm, rand = build("comm", seed=2).eval(), build("random", seed=2).eval()
    with torch.no_grad():
        torch.testing.assert_close(rand.embed(x), comm.embed(x), rtol=0, atol=0)
    raw = build("raw").to("cpu")
    assert raw.device == torch.device("cpu") and list(raw.parameters()) == []
    assert raw.rng.device == torch.device("cpu")
    torch.testing.assert_close(raw.embed(x), torch.cat(x, dim=1))


def test_cross_needs_two_modalities():
    with pytest.raises(ValueError, match="at least 2 modalities"):
        build("cross", shapes=[(4,)])


def test_fusion_equals_a_standard_pre_norm_encoder():
    from torch import nn

    from synergy_bench.nn.fusion import FusionTransformer

    f = FusionTransformer(2, 3, 16, n_heads=4, n_layers=2, activation="gelu", learned_positions=True)
    f.pos_tokens.data.normal_(generator=torch.Generator().manual_seed(1))
    ref = [nn.TransformerEncoderLayer(16, 4, 64, dropout=0.0, activation="gelu", batch_first=True,
                                      norm_first=True) for _ in f.layers]
    for r, layer in zip(ref, f.layers):
        r.load_state_dict(layer.state_dict())
    tokens = torch.randn(5, 6, 16, generator=torch.Generator().manual_seed(2))
    pad = torch.zeros(5, 6, dtype=torch.bool)
    pad[:, 3:] = True  # keep modality 1 only
    x = torch.cat([f.cls_token.expand(5, 1, 16), tokens + f.pos_tokens], dim=1)  # (5, 7, 16)
    full_pad = torch.cat([torch.zeros(5, 1, dtype=torch.bool), pad], dim=1)
    kept = x[:, :4]  # CLS + modality 1: dropping tokens = running without them
    with torch.no_grad():
        for r in ref:
            x, kept = r(x, src_key_padding_mask=full_pad), r(kept)
        out = f(tokens, pad=pad)
        torch.testing.assert_close(out, f.norm(x[:, 0]))
        torch.testing.assert_close(out, f.norm(kept[:, 0]))


def test_infmasking_masked_views_from_the_other_augmentation():
    v1, v2 = views()
    same, other = build("infmasking", n_tokens=4), build("infmasking", n_tokens=4, masked_from="other")
    a, b = same.terms(v1, v2, 0, 2), other.terms(v1, v2, 0, 2)
    n = len(SHAPES)
    for x, y in zip(a[:n + 1], b[:n + 1]):  # the CoMM terms do not depend on the choice
        torch.testing.assert_close(x, y)
    assert all(torch.isfinite(t) for t in b) and not torch.allclose(a[-1], b[-1])


def _naive_supervised_loss(m, views_, y, names):
    import torch.nn.functional as F

    terms = []
    for v in views_:
        logits = m.logits(m.fusion(m.tokens(v)))  # (B, max_tasks, max_classes)
        for i, t in enumerate(names):  # head i; softmax over the classes seen: 0 .. max label
            terms.append(F.cross_entropy(logits[:, i, :int(y[t].max()) + 1], y[t]))
    return torch.stack(terms).mean()


def test_supervised_loss_is_the_mean_cross_entropy_over_tasks_and_views():
    m, (v1, v2), y = build("supervised", seed=1), views(), labels()
    loss = m.loss(v1, v2, 0, 10, y)
    assert m.task_names_ == ("A", "B") and m.n_classes_[:2].tolist() == [int(y["A"].max()) + 1, int(y["B"].max()) + 1]
    torch.testing.assert_close(loss, _naive_supervised_loss(m, (v1, v2), y, ("A", "B")))
    # restricted to task B (on head 0): the labels of A do not matter
    only_b = build("supervised", seed=1, tasks=["B"])
    other_a = {**y, "A": 1 - y["A"]}
    assert only_b.loss(v1, v2, 0, 10, y) == only_b.loss(v1, v2, 0, 10, other_a)
    torch.testing.assert_close(only_b.loss(v1, v2, 0, 10, y), _naive_supervised_loss(only_b, (v1, v2), y, ("B",)))


def test_supervised_refuses_what_its_heads_cannot_hold():
    from synergy_bench.registry import UserError

    v1, v2 = views()
    with pytest.raises(ValueError, match="labels"):
        build("supervised").loss(v1, v2, 0, 10)
    with pytest.raises(UserError, match="max_classes >= 5"):
        build("supervised", max_classes=4).prepare({"y": labels()})
    with pytest.raises(UserError, match=r"\['C'\]"):
        build("supervised", tasks=["C"]).loss(v1, v2, 0, 10, labels())
    with pytest.raises(UserError, match="max_tasks"):
        build("supervised", max_tasks=1).loss(v1, v2, 0, 10, labels())
    with pytest.raises(UserError, match="max_tasks"):
        build("supervised", tasks=["A", "B"], max_tasks=1)


def test_supervised_learns_the_synergy_task():
    """The upper-bound row: trained on the XOR labels of the latent generator's S task (k = 2), the
    fused representation gives a linear probe far above chance (0.5)."""
    from synergy_bench.runner import execute
    from synergy_bench.spec import expand, resolve

    spec = resolve({"name": "tiny", "generator": {"name": "latent", "k": 2, "n_train": 1000, "n_test": 500,
                                                  "nuisance_scale": 0.5},
                    "methods": [{"name": "supervised", "tasks": ["S"], "n_tokens": 2, "d_model": 32,
                                 "hidden": 64}],
                    "controls": [], "tasks": ["S"], "seeds": 1,
                    "train": {"epochs": 14, "batch_size": 50, "lr": 0.003}, "probe": {"Cs": [1.0]}})
    rows = {r["metric"]: r["value"] for r in execute(expand(spec)[0])}
    assert rows["balanced_accuracy"] > 0.9 and rows["bits"] > 0.5, rows


def test_mae_without_masking_is_the_reconstruction_error():
    import torch.nn.functional as F

    m, (v1, v2) = build("mae", seed=2, mask_ratio=0.0), views()
    naive = []
    for i, dec in enumerate(m.decoders):
        x = torch.cat([v1[i], v2[i]])
        target = (x - x.mean(0)) / (x.std(0, unbiased=False) + 1e-6)
        naive.append(F.mse_loss(dec(m.fusion(m.tokens([torch.cat([a, b]) for a, b in zip(v1, v2)]))), target))
    torch.testing.assert_close(m.loss(v1, v2, 0, 10), torch.stack(naive).mean())
    # masking 3 in 4 tokens of each modality changes what the decoder sees
    masked = build("mae", seed=2, mask_ratio=0.75)
    assert not torch.allclose(masked.loss(v1, v2, 0, 10), m.loss(v1, v2, 0, 10))
    keep = (~masked.sample_masks(8, torch.device("cpu"))).split(masked.token_counts, dim=-1)
    assert [k.sum(-1).unique().tolist() for k in keep] == [[3], [2]]  # floor(12 / 4), floor(10 / 4)


def test_mae_reconstruction_targets():
    from synergy_bench.methods.mae import reconstruction_target

    x = torch.randn(2, 10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(reconstruction_target(x, 10), x)
    torch.testing.assert_close(reconstruction_target(x, 5), x.view(2, 5, 2).mean(-1))  # 1-D pooling
    img = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    pooled = reconstruction_target(img, 48)  # 3 x 4 x 4: means of 2 x 2 blocks
    torch.testing.assert_close(pooled, img.view(2, 3, 4, 2, 4, 2).mean((3, 5)).flatten(1))
    assert reconstruction_target(img, 2).shape == (2, 2)  # fewer values than channels: 1-D pooling


def test_mae_on_images():
    shapes = [(3, 16, 16), (3, 16, 16)]
    m = build("mae", shapes=shapes, hidden=8, max_target=48)
    assert [d[-1].out_features for d in m.decoders] == [48, 48]
    v1, v2 = batch(11, 4, shapes), batch(12, 4, shapes)
    loss = m.loss(v1, v2, 0, 1)
    loss.backward()
    assert torch.isfinite(loss) and m.tokenizers[0].proj.weight.grad.abs().sum() > 0
