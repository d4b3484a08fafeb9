"""FactorCL-SSL: the bound estimators on known answers, the folded loss and the method contract."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from synergy_bench.methods.factorcl import (
    TERMS,
    ConcatCritic,
    FactorCL,
    infonce_bound,
    nce_club_bound,
)
from synergy_bench.nn import mlp, seeded_init
from synergy_bench.nn.images import AlexNetEncoder
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


def test_concat_critic_scores_every_pair_through_one_mlp():
    """F_ij = MLP([a_i; b_j]) with two hidden layers of 512 (the code's critic), pair by pair."""
    critic = seeded_init(ConcatCritic(3, 2, 512, 2), torch.Generator().manual_seed(0)).double()
    net = nn.Sequential(critic.first, nn.ReLU(), *critic.rest)
    assert [m.out_features for m in net if isinstance(m, nn.Linear)] == [512, 512, 1]
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        naive = torch.tensor([[float(net(torch.cat([a[i], b[j]]))) for j in range(4)] for i in range(4)],
                             dtype=torch.float64)
        torch.testing.assert_close(critic(a, b), naive)


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
    with pytest.raises(UserError):
        make_params(FactorCL, {"structure": "heads"}, "method")


def test_needs_two_modalities_of_a_known_shape():
    p = make_params(FactorCL, SMALL, "method")
    with pytest.raises(ValueError, match="exactly 2 modalities"):
        FactorCL(p, [(4,), (4,), (4,)], 0)
    with pytest.raises(ValueError, match=r"no encoder for modality shape \(8, 8\)"):
        FactorCL(p, [(4,), (8, 8)], 0)


def test_defaults_are_the_public_code():
    """Adam 1e-4 without decay, the un-augmented anchor, backbones of 3 x 512 -> 128, heads
    E -> E -> E -> E, concatenation critics with two hidden layers of 512."""
    m = FactorCL(make_params(FactorCL, {}, "method"), SHAPES, 0)
    assert m.views == "plain+strong"
    train = {"optimizer": "adamw", "lr": 3e-4, "weight_decay": 1e-4, "epochs": 3}
    assert m.optimizer_settings(train) == {**train, "optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0}
    assert [x.out_features for x in m.backbones[0] if isinstance(x, nn.Linear)] == [512, 512, 512, 128]
    assert all([x.out_features for x in h if isinstance(x, nn.Linear)] == [128] * 3
               for hs in m.heads.values() for h in hs)
    assert [len(m.heads[t]) for t in TERMS] == [2, 2, 1, 1, 2, 2]
    assert all(c.first.out_features == 512 and len(c.rest) == 3 for c in m.critics.values())
    other = FactorCL(make_params(FactorCL, {"anchor": "augmented", "optimizer": "train"}, "method"), SHAPES, 0)
    assert other.views == "strong" and other.optimizer_settings(train) == train


def code_reference_loss(m: FactorCL, x: list[torch.Tensor], xa: list[torch.Tensor]) -> torch.Tensor:
    """The public code's FactorCLSSL loss written out term by term from the model's own modules:
    -I(x1;x2) + CLUB(x1;x2) - I(x1;x1') - I(x2;x2') - I(x1;x2|x1',x2') + CLUB over heads of the
    un-augmented features concatenated with themselves."""
    h = [g(v) for g, v in zip(m.backbones, x)]
    ha = [g(v) for g, v in zip(m.backbones, xa)]
    hd, cr = m.heads, m.critics
    nce = lambda c, a, b: infonce_bound(c(a, b))  # noqa: E731
    club = lambda c, a, b: nce_club_bound(c(a, b))  # noqa: E731
    return (-nce(cr["nce_s"], hd["nce_s"][0](h[0]), hd["nce_s"][1](h[1]))
            + club(cr["club_u"], hd["club_u"][0](h[0]), hd["club_u"][1](h[1]))
            - nce(cr["nce_u1"], hd["nce_u1"][0](h[0]), hd["nce_u1"][0](ha[0]))
            - nce(cr["nce_u2"], hd["nce_u2"][0](h[1]), hd["nce_u2"][0](ha[1]))
            - nce(cr["nce_u"], torch.cat([hd["nce_u"][0](h[0]), hd["nce_u"][0](ha[0])], 1),
                  torch.cat([hd["nce_u"][1](h[1]), hd["nce_u"][1](ha[1])], 1))
            + club(cr["club_s"], torch.cat([hd["club_s"][0](h[0])] * 2, 1),
                   torch.cat([hd["club_s"][1](h[1])] * 2, 1)))


def test_code_structure_loss_is_the_published_sum():
    """The folded loss is the code's main loss plus the CLUB critics' own fits (-I_NCE), which
    leave its value's other terms untouched."""
    m = build()
    x, xa = batch()
    b = m.bounds(x, xa)
    with torch.no_grad():
        ref = code_reference_loss(m, x, xa)
    main = -(b["nce_s"] - b["club_s"] + b["nce_u1"] + b["nce_u2"] + b["nce_u"] - b["club_u"])
    torch.testing.assert_close(main, ref)
    torch.testing.assert_close(m.loss(x, xa, 0, 1), ref - b["fit_club_s"] - b["fit_club_u"])


def test_vector_backbones_and_representation():
    """Code structure: a vector backbone is the plain MLP and the representation [h_1, h_2]
    (B, 2E); paper structure: [Z_S1, Z_U1, Z_S2, Z_U2] (B, 4E)."""
    m = build(seed=5)
    ref = seeded_init(mlp([6, 32, 32, 32, 8]), torch.Generator().manual_seed(0))
    ref.load_state_dict(m.backbones[0].state_dict())
    x, _ = batch()
    with torch.no_grad():
        assert torch.equal(m.embed(x), torch.cat([ref(x[0]), m.backbones[1](x[1])], 1))
        p = build(structure="paper")
        z = p.embed(x)
    assert z.shape == (16, 4 * SMALL["embed_dim"])
    torch.testing.assert_close(z[:, :8], p.shared[0](x[0]).detach())
    torch.testing.assert_close(z[:, 8:16], p.unique[0](x[0]).detach())


IMAGE = {**SMALL, "hidden": 8}


def images(b: int, shapes, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn((b, *s), generator=g) for s in shapes]


@pytest.mark.parametrize("structure", ["code", "paper"])
@pytest.mark.parametrize("shapes", [[(3, 16, 16), (3, 16, 16)], [(6,), (3, 32, 32)]])
def test_images_train_one_step_and_embed(shapes, structure, one_thread):
    """Image modalities get the AlexNet encoder (one per backbone); one optimiser step moves every
    trunk and the representation has the structure's width."""
    m = FactorCL(make_params(FactorCL, {**IMAGE, "structure": structure}, "method"), shapes, 0)
    i = 0 if len(shapes[0]) == 3 else 1  # the first image modality
    trunks = [m.backbones[i]] if structure == "code" else [m.shared[i], m.unique[i]]
    assert all(isinstance(t, AlexNetEncoder) for t in trunks)
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
    width = 2 if structure == "code" else 4
    assert z.shape == (8, width * IMAGE["embed_dim"]) and torch.isfinite(z).all()


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


@pytest.mark.parametrize("structure", ["code", "paper"])
@pytest.mark.parametrize("critic", ["concat", "separable"])
def test_loss_finite_and_embed_shape(critic, structure):
    m = build(critic=critic, structure=structure)
    v1, v2 = batch()
    loss = m.loss(v1, v2, 0, 10)
    assert loss.ndim == 0 and torch.isfinite(loss)
    m.eval()
    with torch.no_grad():
        z = m.embed(v1)
    assert z.shape == (16, (2 if structure == "code" else 4) * SMALL["embed_dim"]) and torch.isfinite(z).all()


@pytest.mark.parametrize("structure", ["code", "paper"])
@pytest.mark.parametrize("critic", ["concat", "separable"])
def test_loss_decreases_on_a_fixed_batch(critic, structure):
    m = build(critic=critic, structure=structure)
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


@pytest.mark.parametrize("structure", ["code", "paper"])
def test_folded_loss_routes_gradients_like_the_alternating_scheme(structure):
    """Encoders get the gradient of -(S-bound + U-bound) only; a CLUB critic that of its own fit."""
    m = build(structure=structure)
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
        club = name.startswith(("critics.club_s.", "critics.club_u."))
        assert torch.equal(e if club else f, torch.zeros_like(p)), name  # no cross-talk
