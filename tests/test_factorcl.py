"""FactorCL-SSL: the bound estimators on known answers, the folded loss and the method contract."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from synergy_bench.methods.factorcl import (
    ConcatCritic,
    FactorCL,
    infonce_bound,
    nce_club_bound,
)
from synergy_bench.nn import mlp, seeded_init
from synergy_bench.nn.images import ImageTokenizer
from synergy_bench.registry import UserError, get_method, make_params

SHAPES = [(6,), (5,)]
SMALL = {"hidden": 32, "embed_dim": 8, "critic_hidden": 16}


def build(seed: int = 0, **over) -> FactorCL:
    return FactorCL(make_params(FactorCL, {**SMALL, **over}, "method"), SHAPES, seed)


def batch(b: int = 16, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Two noisy views of b samples of two modalities that share a common factor."""
    g = torch.Generator().manual_seed(seed)
    common = torch.randn(b, 3, generator=g)
    xs = [torch.cat([common, torch.randn(b, d - 3, generator=g)], 1) for d in (6, 5)]
    view = lambda: [x + 0.1 * torch.randn(x.shape, generator=g) for x in xs]
    return view(), view()


# --- estimators on known answers -------------------------------------------------------------

def test_infonce_hand_example():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # log 2 + mean_j [F_jj - log(e^1 + e^0)]
    assert infonce_bound(f).item() == pytest.approx(math.log(2) + 1 - math.log(1 + math.e))


def test_infonce_at_most_log_b_and_reaches_it():
    b = 32
    scores = torch.randn(b, b, generator=torch.Generator().manual_seed(0)) * 5
    assert infonce_bound(scores) <= math.log(b) + 1e-6
    assert infonce_bound(torch.zeros(b, b)).item() == pytest.approx(0.0, abs=1e-6)
    assert infonce_bound(50 * torch.eye(b)).item() == pytest.approx(math.log(b), abs=1e-6)


def test_nce_club_hand_example_and_column_shift():
    f = torch.tensor([[3.0, 1.0], [0.0, 2.0]])
    assert nce_club_bound(f).item() == pytest.approx(2.5 - 1.5)
    # an InfoNCE critic is defined up to a function of b (a column shift); CLUB ignores it
    shift = torch.tensor([[4.0, -7.0]])
    assert nce_club_bound(f + shift).item() == pytest.approx(1.0)
    assert infonce_bound(f + shift).item() == pytest.approx(infonce_bound(f).item())


def fit_critic(rho: float, steps: int = 200, b: int = 64) -> tuple[ConcatCritic, torch.Generator]:
    """A concat critic trained by maximising I_NCE on a 1-d Gaussian pair of correlation rho."""
    critic = seeded_init(ConcatCritic(1, 1, 64, 1), torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
    for _ in range(steps):
        a = torch.randn(b, 1, generator=g)
        c = rho * a + math.sqrt(1 - rho**2) * torch.randn(b, 1, generator=g)
        loss = -infonce_bound(critic(a, c))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return critic, g


@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_bounds_on_a_gaussian_pair(rho):
    """Fitted critic, fresh samples: I_NCE ~ I(A;B) = -1/2 log(1 - rho^2) from below, and I_CLUB
    ~ rho^2 / (1 - rho^2) from above: with the optimal critic log p(a,b)/(p(a)p(b)), NCE-CLUB is
    I(A;B) + KL(p(a)p(b) || p(a,b)), here 0.144 and 0.333 nats at rho = 0.5 (0 and 0 at rho = 0)."""
    critic, g = fit_critic(rho)
    truth, club = -0.5 * math.log(1 - rho**2), rho**2 / (1 - rho**2)
    a = torch.randn(4096, 1, generator=g)
    c = rho * a + math.sqrt(1 - rho**2) * torch.randn(4096, 1, generator=g)
    with torch.no_grad():
        lower = torch.stack([infonce_bound(critic(x, y))
                             for x, y in zip(a.split(128), c.split(128))]).mean().item()
        upper = torch.stack([nce_club_bound(critic(x, y))
                             for x, y in zip(a.split(512), c.split(512))]).mean().item()
    assert truth - 0.05 <= lower <= truth + 0.03
    assert upper >= truth - 0.03
    assert upper == pytest.approx(club, abs=0.08)


# --- the method ---------------------------------------------------------------------------

def test_registered_and_params_checked():
    assert get_method("factorcl") is FactorCL
    with pytest.raises(UserError):
        make_params(FactorCL, {"critic": "bilinear"}, "method")
    with pytest.raises(UserError):
        make_params(FactorCL, {"critic_hidden": 0}, "method")


def test_needs_two_modalities_of_a_known_shape():
    p = make_params(FactorCL, SMALL, "method")
    with pytest.raises(ValueError, match="exactly 2 modalities"):
        FactorCL(p, [(4,), (4,), (4,)], 0)
    with pytest.raises(ValueError, match=r"no encoder for modality shape \(8, 8\)"):
        FactorCL(p, [(4,), (8, 8)], 0)


def test_vector_path_is_the_plain_mlp():
    """Vector modalities feed the encoder MLPs directly: the model equals one assembled by hand from
    ``mlp`` and the critics and seeded in the same order (same parameters, same numbers)."""
    ref = nn.Module()
    ref.shared = nn.ModuleList(mlp([d, 32, 32, 8]) for d in (6, 5))
    ref.unique = nn.ModuleList(mlp([d, 32, 32, 8]) for d in (6, 5))
    for name, d in [("nce_s", 8), ("club_s", 16), ("nce_u1", 8), ("nce_u2", 8), ("nce_u", 16),
                    ("club_u", 8)]:
        setattr(ref, name, ConcatCritic(d, d, 16, 1))
    seeded_init(ref, torch.Generator().manual_seed(5))
    m = build(seed=5)
    assert list(m.state_dict()) == list(ref.state_dict())
    for (k, p), q in zip(m.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(p, q), k
    v1, _ = batch()
    z = [enc[i](v1[i]) for i in range(2) for enc in (ref.shared, ref.unique)]
    assert torch.equal(m.embed(v1), torch.cat(z, 1))


IMAGE = {**SMALL, "hidden": 8, "n_tokens": 4, "d_model": 8}


def images(b: int, shapes, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn((b, *s), generator=g) for s in shapes]


@pytest.mark.parametrize("shapes", [[(3, 16, 16), (3, 16, 16)], [(6,), (3, 32, 32)]])
def test_images_train_one_step_and_embed(shapes, one_thread):
    """Image modalities get an AlexNet trunk per encoder (shared and unique apart), flattened into
    the encoder MLP; one optimiser step moves every trunk and the representation is (B, 4E)."""
    m = FactorCL(make_params(FactorCL, IMAGE, "method"), shapes, 0)
    i = 0 if len(shapes[0]) == 3 else 1  # the first image modality
    trunks = [m.shared[i][0], m.unique[i][0]]
    assert all(isinstance(t, ImageTokenizer) for t in trunks) and trunks[0] is not trunks[1]
    assert m.shared[i][2][0].in_features == IMAGE["n_tokens"] * IMAGE["d_model"]
    v1, v2 = images(8, shapes, 1), images(8, shapes, 2)
    before = [t.features.net[0].weight.clone() for t in trunks]
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    loss = m.loss(v1, v2, 0, 1)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(not torch.equal(t.features.net[0].weight, w) for t, w in zip(trunks, before))
    m.eval()
    with torch.no_grad():
        z = m.embed(v1)
    assert z.shape == (8, 4 * IMAGE["embed_dim"]) and torch.isfinite(z).all()


def test_runs_on_trifeature_images(tmp_path, monkeypatch, one_thread):
    """End to end on rendered image pairs: train, embed and probe two tasks."""
    from synergy_bench.runner import execute
    from synergy_bench.spec import expand, resolve

    monkeypatch.setenv("SYNERGY_BENCH_CACHE", str(tmp_path))
    spec = resolve({"name": "tiny", "generator": {"name": "trifeature", "image_size": 16, "renders": 1,
                                                  "n_train": 256, "n_test": 200},
                    "methods": [{"name": "factorcl", **IMAGE, "critic": "separable"}],
                    "controls": [], "tasks": ["R", "U1"], "seeds": 1,
                    "train": {"epochs": 1, "batch_size": 64},
                    "probe": {"Cs": [1.0], "prediction_pid": False}})
    rows = execute(expand(spec)[0])
    values = [r["value"] for r in rows if r["metric"] == "balanced_accuracy"]
    assert len(values) == 2 and all(0 <= v <= 1 for v in values), rows
    assert math.isfinite(rows[0]["final_loss"]), rows


@pytest.mark.parametrize("critic", ["concat", "separable"])
def test_loss_finite_and_embed_shape(critic):
    m = build(critic=critic)
    v1, v2 = batch()
    loss = m.loss(v1, v2, 0, 10)
    assert loss.ndim == 0 and torch.isfinite(loss)
    m.eval()
    with torch.no_grad():
        z = m.embed(v1)
    assert z.shape == (16, 4 * SMALL["embed_dim"]) and torch.isfinite(z).all()


@pytest.mark.parametrize("critic", ["concat", "separable"])
def test_loss_decreases_on_a_fixed_batch(critic):
    m = build(critic=critic)
    v1, v2 = batch(32)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss = m.loss(v1, v2, 0, 1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < losses[0] - 1.0


def test_same_seed_same_model_and_loss():
    a, b, c = build(seed=3), build(seed=3), build(seed=4)
    for (k, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), k
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
    v1, v2 = batch()
    assert torch.equal(a.loss(v1, v2, 0, 1), b.loss(v1, v2, 0, 1))


def test_folded_loss_routes_gradients_like_the_alternating_scheme():
    """Encoders get the gradient of -(S-bound + U-bound) only; a CLUB critic that of its own fit."""
    m = build()
    v1, v2 = batch()

    def grads(select) -> list[torch.Tensor]:
        m.zero_grad()
        select(m.bounds(v1, v2)).backward()
        return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in m.parameters()]

    total = grads(lambda t: -(t["nce_s"] - t["club_s"] + t["nce_u1"] + t["nce_u2"] + t["nce_u"]
                              - t["club_u"]) - t["fit_club_s"] - t["fit_club_u"])
    enc = grads(lambda t: -(t["nce_s"] - t["club_s"] + t["nce_u1"] + t["nce_u2"] + t["nce_u"]
                            - t["club_u"]))
    fit = grads(lambda t: -(t["fit_club_s"] + t["fit_club_u"]))
    m.zero_grad()
    m.loss(v1, v2, 0, 1).backward()
    names = [n for n, _ in m.named_parameters()]
    for name, p, t, e, f in zip(names, m.parameters(), total, enc, fit):
        assert torch.allclose(p.grad, t, atol=1e-6), name
        club = name.startswith(("club_s.", "club_u."))
        assert torch.equal(e if club else f, torch.zeros_like(p)), name  # no cross-talk
        assert torch.allclose(t, f if club else e, atol=1e-6), name
    assert any(g.abs().sum() > 0 for n, g in zip(names, fit) if n.startswith("club_s."))
    assert any(g.abs().sum() > 0 for n, g in zip(names, enc) if n.startswith("shared."))
