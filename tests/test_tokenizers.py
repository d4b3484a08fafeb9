"""Tokenizers and encoders: the ``features`` adapter's formula, token counts, the 2-D sin-cos
position embedding and the published AlexNet shapes."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from synergy_bench.nn import (
    FeatureTokenizer,
    VectorTokenizer,
    decay_groups,
    make_encoder,
    make_tokenizer,
    mlp,
    n_tokens_for,
    seeded_init,
)
from synergy_bench.nn.images import AlexNetEncoder, ImageTokenizer, sincos_2d
from synergy_bench.registry import METHODS, load_plugins, make_params

load_plugins()
pytestmark = pytest.mark.usefixtures("one_thread")


def test_features_tokenizer_is_its_formula_on_a_hand_built_input():
    """t_j = f_j W_j + b_j with f the encoder's output: hand-set W, b and f, exact numbers."""
    tok = FeatureTokenizer(in_dim=3, hidden=4, n_tokens=2, d_model=3)
    with torch.no_grad():
        tok.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]))
        tok.bias.copy_(torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.0, 1.0]]))
        f = torch.tensor([[1.0, -2.0], [0.0, 3.0]])  # (B=2, L=2)
        assert torch.equal(tok.adapt(f), torch.tensor([[[1.5, 0.0, 2.0], [0.0, -2.0, 3.0]],
                                                       [[0.5, 0.0, 0.0], [0.0, 3.0, -2.0]]]))
        x = torch.tensor([[0.3, -1.0, 2.0]])
        assert torch.equal(tok(x), tok.adapt(tok.encoder(x)))


def test_features_tokenizer_encoder_and_initialisation():
    """The encoder is D -> hidden -> hidden -> L (as the mlp tokenizer's, with L outputs instead
    of L d), and seeded_init draws W and b from N(0, 1) as the published adapter."""
    tok = seeded_init(FeatureTokenizer(32, 64, 400, 50), torch.Generator().manual_seed(0))
    assert [m.out_features for m in tok.encoder if isinstance(m, nn.Linear)] == [64, 64, 400]
    for p in (tok.weight, tok.bias):
        assert float(p.detach().mean()) == pytest.approx(0.0, abs=0.02)
        assert float(p.detach().std()) == pytest.approx(1.0, abs=0.02)
    again = seeded_init(FeatureTokenizer(32, 64, 400, 50), torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(tok.parameters(), again.parameters()))


def test_a_features_token_carries_one_feature():
    """Changing one encoder output f_j changes token j only (an mlp token changes with all)."""
    tok = seeded_init(FeatureTokenizer(6, 8, 5, 4), torch.Generator().manual_seed(1))
    f = torch.randn(1, 5, generator=torch.Generator().manual_seed(2))
    g = f.clone()
    g[0, 2] += 1.0
    with torch.no_grad():
        changed = (tok.adapt(g) != tok.adapt(f)).any(-1)[0]
    assert changed.tolist() == [False, False, True, False, False]


def test_mlp_tokenizer_reads_the_mlp_output_as_tokens():
    tok = seeded_init(VectorTokenizer(6, 8, 3, 4), torch.Generator().manual_seed(0))
    ref = seeded_init(mlp([6, 8, 8, 12]), torch.Generator().manual_seed(0))
    x = torch.randn(2, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(tok(x), ref(x).view(2, 3, 4))


def test_token_counts():
    assert n_tokens_for((32,), 0, "features") == 32  # one token per input feature
    assert n_tokens_for((32,), 0, "mlp") == 4
    assert n_tokens_for((3, 32, 32), 0, "features") == 4
    assert n_tokens_for((32,), 8, "features") == 8 and n_tokens_for((3, 32, 32), 36, "mlp") == 36
    assert isinstance(make_tokenizer((5,), 16, 0, 8), FeatureTokenizer)
    assert make_tokenizer((5,), 16, 0, 8)(torch.zeros(2, 5)).shape == (2, 5, 8)
    assert isinstance(make_tokenizer((5,), 16, 4, 8, "mlp"), VectorTokenizer)
    with pytest.raises(ValueError, match="tokenizer 'patch'"):
        make_tokenizer((5,), 16, 4, 8, "patch")


def test_fused_methods_default_to_features():
    shapes = [(12,), (10,)]
    for name in ("comm", "infmasking", "supervised", "mae", "random"):
        cls = METHODS[name]
        p = make_params(cls, {"d_model": 16, "hidden": 16}, name)
        assert p.tokenizer == "features" and p.n_tokens == 0
        m = cls(p, shapes, 0)
        assert all(isinstance(t, FeatureTokenizer) for t in m.tokenizers)
        assert m.token_counts == [12, 10] and m.fusion.token_counts == (12, 10)


def test_sincos_2d_on_hand_values():
    """dim 8: q = 2, omega = (1, 1/100); cell (r, c) = [sin r w, cos r w, sin c w, cos c w]."""
    pos = sincos_2d(2, 3, 8).double()
    assert pos.shape == (6, 8)
    r, c = 1.0, 2.0  # row-major cell 1 * 3 + 2 = 5
    expected = [math.sin(r), math.sin(r / 100), math.cos(r), math.cos(r / 100),
                math.sin(c), math.sin(c / 100), math.cos(c), math.cos(c / 100)]
    torch.testing.assert_close(pos[5], torch.tensor(expected, dtype=torch.float64), atol=1e-7, rtol=0)
    torch.testing.assert_close(pos[0], torch.tensor([0, 0, 1, 1, 0, 0, 1, 1], dtype=torch.float64))
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_2d(2, 2, 6)


def test_image_tokenizer_at_224_px_is_the_published_patch_adapter():
    """36 tokens of width d at 224 px: AlexNet's 6 x 6 map, one 1 x 1 convolution per cell (a
    shared linear map), plus the fixed sin-cos embedding (no parameter)."""
    tok = seeded_init(ImageTokenizer((3, 224, 224), 8, 36, 16), torch.Generator().manual_seed(0))
    plain = ImageTokenizer((3, 224, 224), 8, 36, 16, sincos=False)
    plain.load_state_dict(tok.state_dict())
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        maps = tok.features(x)  # (2, C, 6, 6)
        conv = nn.functional.conv2d(maps, tok.proj.weight[:, :, None, None], tok.proj.bias)
        expected = conv.flatten(2).transpose(1, 2) + sincos_2d(6, 6, 16)
        torch.testing.assert_close(tok(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(tok(x) - plain(x), sincos_2d(6, 6, 16).expand(2, -1, -1))
    assert maps.shape[-2:] == (6, 6)
    assert "pos" not in dict(tok.named_parameters()) and "pos" not in tok.state_dict()


def test_alexnet_encoder_is_trunk_pool_linear():
    enc = make_encoder((3, 32, 32), 16, 20)
    assert isinstance(enc, AlexNetEncoder) and enc.fc.in_features == 16 * 36
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pooled = nn.functional.adaptive_avg_pool2d(enc.features(x), 6)
        torch.testing.assert_close(enc(x), enc.fc(pooled.flatten(1)))
    assert [m.out_features for m in make_encoder((7,), 32, 5, layers=3) if isinstance(m, nn.Linear)] == [32, 32, 32, 5]


def test_weight_decay_groups():
    """Decay on weights; none on biases, normalisation parameters and scalars (the published
    rule), checked against the names of a small model."""
    model = nn.Module()
    model.lin = nn.Linear(3, 4)
    model.ln = nn.LayerNorm(4)
    model.bn = nn.BatchNorm1d(4)
    model.tok = FeatureTokenizer(3, 4, 2, 4)
    model.scale = nn.Parameter(torch.zeros(()))
    model.mask_token = nn.Parameter(torch.zeros(4))
    decay, no_decay = decay_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert sorted(names[id(p)] for p in decay["params"]) == sorted(
        ["lin.weight", "tok.encoder.0.weight", "tok.encoder.2.weight", "tok.encoder.4.weight",
         "tok.weight", "mask_token"])
    assert sorted(names[id(p)] for p in no_decay["params"]) == sorted(
        ["lin.bias", "ln.weight", "ln.bias", "bn.weight", "bn.bias", "tok.encoder.0.bias",
         "tok.encoder.2.bias", "tok.encoder.4.bias", "tok.bias", "scale"])
