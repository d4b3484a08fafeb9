"""The baselines as published: Cross's learnable logit scale and weak views, Cross+Self's NT-Xent
on separate weak views, and what the training loop passes and steps for each method."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from synergy_bench.data import Generator
from synergy_bench.registry import METHODS, load_plugins, make_params
from synergy_bench.train import draw_views, fit, make_optimizer
from test_losses import clip_naive

load_plugins()
pytestmark = pytest.mark.usefixtures("one_thread")
SHAPES = [(6,), (5,)]
TINY = {"hidden": 16, "latent_dim": 12, "head_hidden": 16, "embed_dim": 8}


def build(name, seed=0, **over):
    cls = METHODS[name]
    fields = {f.name for f in dataclasses.fields(cls.Params)}
    return cls(make_params(cls, {**{k: v for k, v in TINY.items() if k in fields}, **over}, name), SHAPES, seed)


def batch(seed, b=8):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, *s, generator=g, dtype=torch.float64) for s in SHAPES]


def nt_xent_naive(a, b, tau):
    """SimCLR NT-Xent anchor by anchor: each of the 2N rows against the 2N - 2 others."""
    z = F.normalize(torch.cat([a, b]), dim=-1)
    n, total = len(a), 0.0
    for i in range(2 * n):
        logits = [float(z[i] @ z[k]) / tau for k in range(2 * n) if k != i]
        pos = float(z[i] @ z[(i + n) % (2 * n)]) / tau
        total += -(pos - math.log(sum(math.exp(v) for v in logits)))
    return total / (2 * n)


# ---- Cross ---------------------------------------------------------------------------------

def test_cross_learnable_logit_scale_starts_at_clip_and_is_capped():
    m = build("cross")
    assert m.views == "weak"
    assert float(m.logit_scale.detach().exp()) == pytest.approx(1 / 0.07, rel=1e-6)
    with torch.no_grad():
        m.logit_scale.fill_(7.0)  # s = e^7 > 100
    m.after_step()
    assert float(m.logit_scale.detach().exp()) == pytest.approx(100.0, rel=1e-6)
    with torch.no_grad():
        m.logit_scale.fill_(-1.0)
    m.after_step()
    assert float(m.logit_scale.detach()) == 0.0  # s >= 1
    fixed = build("cross", scale="fixed", temperature=0.2)
    assert fixed.logit_scale is None and fixed.scale_value() == pytest.approx(5.0)


def test_cross_loss_is_clip_on_one_weak_view():
    """loss(w, None) = CLIP's loss at s = exp(w) between the two modalities' projections."""
    m = build("cross", seed=1).double()
    w = batch(2)
    with torch.no_grad():
        m.logit_scale.fill_(math.log(20.0))
        z = [h(e(x)) for h, e, x in zip(m.heads, m.encoders, w)]
        assert float(m.loss(w, None, 0, 1)) == pytest.approx(clip_naive(z[0], z[1], 20.0), rel=1e-10)
        assert float(m.loss(w, batch(3), 0, 1)) == float(m.loss(w, None, 0, 1))  # one view only
    strong = build("cross", seed=1, view="strong", scale="fixed").double()
    v1, v2 = batch(2), batch(3)
    with torch.no_grad():
        z1 = [h(e(x)) for h, e, x in zip(strong.heads, strong.encoders, v1)]
        z2 = [h(e(x)) for h, e, x in zip(strong.heads, strong.encoders, v2)]
        expected = 0.5 * (clip_naive(*z1, 10.0) + clip_naive(*z2, 10.0))
        assert float(strong.loss(v1, v2, 0, 1)) == pytest.approx(expected, rel=1e-10)
    assert strong.views == "strong"


def test_cross_gradient_reaches_the_logit_scale_and_projection_init():
    m = build("cross", hidden=16, latent_dim=400)
    assert float(m.heads[0].weight.detach().std()) == pytest.approx(400 ** -0.5, rel=0.05)
    m.loss([x.float() for x in batch(4)], None, 0, 1).backward()
    assert m.logit_scale.grad is not None and float(m.logit_scale.grad) != 0.0


def test_cross_represents_projections_or_features():
    x = [v.float() for v in batch(5)]
    proj, feat = build("cross").eval(), build("cross", represent="features").eval()
    with torch.no_grad():
        assert torch.equal(proj.embed(x), torch.cat([h(e(v)) for h, e, v in zip(proj.heads, proj.encoders, x)], 1))
        assert torch.equal(feat.embed(x), torch.cat([e(v) for e, v in zip(feat.encoders, x)], 1))


# ---- Cross+Self ----------------------------------------------------------------------------

def test_cross_self_is_nt_xent_on_separate_weak_views_plus_simclr():
    """L = NT-Xent(h1(f1(w1)), h2(f2(w2))) + s/2 [NT-Xent within modality 1 + within modality 2],
    every head call on one view set (batch-norm statistics per call)."""
    m = build("cross_self", seed=2, ssl_scale=0.7).double()
    assert m.views == "strong+weak" and m.logit_scale is None and m.params.represent == "features"
    v1, v2, w = batch(6), batch(7), batch(8)
    tau = m.params.temperature
    with torch.no_grad():
        proj = lambda xs: [h(e(x)) for h, e, x in zip(m.heads, m.encoders, xs)]  # noqa: E731
        p1, p2, pw = proj(v1), proj(v2), proj(w)
        ssl = 0.5 * (nt_xent_naive(p1[0], p2[0], tau) + nt_xent_naive(p1[1], p2[1], tau))
        expected = nt_xent_naive(pw[0], pw[1], tau) + 0.7 * ssl
        assert float(m.loss(v1, v2, 0, 1, weak=w)) == pytest.approx(expected, rel=1e-10)


def test_cross_self_earlier_choice_is_clip_on_the_augmented_views():
    m = build("cross_self", seed=2, view="strong", cross_loss="clip", scale="fixed").double()
    assert m.views == "strong"
    v1, v2 = batch(6), batch(7)
    tau = m.params.temperature
    with torch.no_grad():
        proj = lambda xs: [h(e(x)) for h, e, x in zip(m.heads, m.encoders, xs)]  # noqa: E731
        p1, p2 = proj(v1), proj(v2)
        cross = 0.5 * (clip_naive(p1[0], p1[1], 1 / tau) + clip_naive(p2[0], p2[1], 1 / tau))
        ssl = 0.5 * (nt_xent_naive(p1[0], p2[0], tau) + nt_xent_naive(p1[1], p2[1], tau))
        assert float(m.loss(v1, v2, 0, 1)) == pytest.approx(cross + ssl, rel=1e-10)


# ---- the training loop ---------------------------------------------------------------------

class Recorder(Generator):
    """Views marked by kind: strong views are +1, weak views -1 (times the latent)."""

    name = "recorder"

    def __init__(self):
        super().__init__(None, 0)
        self.calls: list[str] = []

    def views(self, z, gen):
        self.calls.append("strong")
        return [z["a"][:, None].expand(-1, d).float() + 1 for d in (6, 5)]

    def weak_views(self, z, gen):
        self.calls.append("weak")
        return [z["a"][:, None].expand(-1, d).float() - 1 for d in (6, 5)]


def train_data(n=16):
    a = torch.arange(n, dtype=torch.float32)
    return {"x": [a[:, None].expand(-1, d) * 10 for d in (6, 5)], "y": {"S": torch.zeros(n, dtype=torch.long)},
            "z": {"a": a}}


@pytest.mark.parametrize("name, kinds", [("comm", ["strong", "strong"]), ("cross", ["weak"]),
                                         ("cross_self", ["strong", "strong", "weak"]),
                                         ("factorcl", ["strong"])])
def test_loop_draws_the_views_a_method_asks_for(name, kinds):
    gen, data = Recorder(), train_data()
    idx = torch.tensor([3, 5])
    views, extra = draw_views(build(name), gen, {"a": data["z"]["a"][idx]}, data["x"], idx, torch.Generator())
    assert gen.calls == kinds
    if name == "cross":
        assert views[1] is None and torch.equal(views[0][0][:, 0], torch.tensor([2.0, 4.0]))
    if name == "cross_self":
        assert torch.equal(extra["weak"][1][:, 0], torch.tensor([2.0, 4.0]))
    if name == "factorcl":  # the un-augmented anchor: the training samples themselves
        assert torch.equal(views[0][0][:, 0], torch.tensor([30.0, 50.0]))


def test_loop_steps_the_published_optimisers():
    train = {"epochs": 2, "batch_size": 8, "lr": 3e-4, "weight_decay": 1e-4, "optimizer": "adamw",
             "decay": "weights", "amp": False, "threads": 1}
    assert [g["weight_decay"] for g in make_optimizer(build("comm"), {**train, "decay": "all"}).param_groups] == [1e-4]
    comm = build("comm")
    opt = make_optimizer(comm, train)
    assert isinstance(opt, torch.optim.AdamW) and [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0]
    no_decay = {id(p) for p in opt.param_groups[1]["params"]}
    for n, p in comm.named_parameters():
        assert (id(p) in no_decay) == ("bias" in n or "norm" in n or ".bn" in n
                                       or (n.startswith("head.") and p.ndim == 1)), n
    fcl = make_optimizer(build("factorcl"), train)
    assert isinstance(fcl, torch.optim.Adam) and not isinstance(fcl, torch.optim.AdamW)
    assert {g["lr"] for g in fcl.param_groups} == {1e-4} and {g["weight_decay"] for g in fcl.param_groups} == {0.0}
    cross = build("cross")
    fit(cross, Recorder(), train_data(), {**train, "lr": 5.0}, 0)  # huge steps on the scale
    assert 0.0 <= float(cross.logit_scale.detach()) <= math.log(100.0) + 1e-6
