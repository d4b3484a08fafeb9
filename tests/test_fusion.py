"""The one-layer fusion path and the per-view head give the numbers of the general computation:
every view through every layer, and one head call per view."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from synergy_bench.nn import mlp, seeded_init
from synergy_bench.nn.fusion import FusionTransformer, head_per_view
from synergy_bench.registry import METHODS, load_plugins, make_params

load_plugins()
pytestmark = pytest.mark.usefixtures("one_thread")


def jittered(module: nn.Module, seed: int) -> nn.Module:
    """``module`` in float64 with every parameter moved off its initial value (ones, zeros)."""
    g = torch.Generator().manual_seed(seed)
    module = seeded_init(module, g).double()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def output_and_grads(fn, module: nn.Module, *args) -> tuple[torch.Tensor, dict]:
    """fn(*args) and the gradients of a fixed random projection of it (None where unused)."""
    module.zero_grad(set_to_none=True)
    out = fn(*args)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (out * weights.to(out.dtype)).sum().backward()
    return out, {k: p.grad for k, p in module.named_parameters()}


def assert_same_grads(a: dict, b: dict, **tol) -> None:
    assert a.keys() == b.keys()
    for k, grad in a.items():
        assert (grad is None) == (b[k] is None), k
        if grad is not None:
            torch.testing.assert_close(grad, b[k], **tol, msg=k)


def fusion_cases(f: FusionTransformer, b: int = 5):
    """(tokens, pad, mask) cases: CoMM's views, masked views, both in one call, overlapping pad
    and mask, no hiding, one unbatched view, tokens broadcast along a sample dimension."""
    g = torch.Generator().manual_seed(2)
    n = sum(f.token_counts)
    d = f.cls_token.shape[1]
    tokens = torch.randn(2, b, n, d, generator=g, dtype=torch.float64)
    drop = f.modality_views()  # (n+1, N)
    masks = torch.rand(4, 2, b, n, generator=g) < 0.5  # (T, 2, B, N)
    pad = torch.cat([drop, drop.new_zeros(4, n)])[:, None, None]  # (V, 1, 1, N)
    mask = torch.cat([masks.new_zeros(len(drop), 2, b, n), masks])  # (V, 2, B, N)
    overlap = torch.rand(4, 2, b, n, generator=g) < 0.4
    return {"pad": (tokens, drop[:, None, None], None), "mask": (tokens, None, masks),
            "both": (tokens, pad, mask), "overlap": (tokens, overlap, masks),
            "none": (tokens, None, None), "one view": (tokens[0, 0], drop[0], masks[0, 0, 0]),
            "broadcast": (tokens[:, :1], None, masks)}


@pytest.mark.parametrize("counts, heads, activation, learned", [
    ([3, 3], 1, "quick_gelu", False), ([3, 5], 4, "gelu", True), ([3, 3, 3], 2, "quick_gelu", True),
    ([2, 4, 3], 8, "gelu", False)])
def test_one_layer_path_equals_the_general_path(counts, heads, activation, learned):
    f = jittered(FusionTransformer(len(counts), counts, 16, heads, n_layers=1, activation=activation,
                                   learned_positions=learned), seed=len(counts) + heads)
    for case, args in fusion_cases(f).items():
        fast, fast_grads = output_and_grads(f.forward_one_layer, f, *args)
        ref, ref_grads = output_and_grads(f.forward_layers, f, *args)
        torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10, msg=case)
        assert_same_grads(fast_grads, ref_grads, rtol=1e-9, atol=1e-10)
        assert torch.equal(f(*args), fast)  # one layer: forward takes this path


def test_one_layer_path_with_large_logits():
    """Attention logits in the hundreds (exp over- or underflows unless each view's softmax is
    shifted by its own largest logit): still the general path's numbers."""
    f = jittered(FusionTransformer(2, 3, 16, 4, n_layers=1, learned_positions=True), seed=7)
    with torch.no_grad():
        f.layers[0].self_attn.in_proj_weight[:16] *= 300.0  # W_q
    tokens, pad, mask = fusion_cases(f)["overlap"]
    fast, fast_grads = output_and_grads(f.forward_one_layer, f, tokens, pad, mask)
    ref, ref_grads = output_and_grads(f.forward_layers, f, tokens, pad, mask)
    assert torch.isfinite(fast).all()
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)
    assert_same_grads(fast_grads, ref_grads, rtol=1e-8, atol=1e-9)


def test_one_layer_path_in_float32():
    """Float32 against the float64 general path: errors of float32 round-off (1e-5 of the scale)."""
    f = jittered(FusionTransformer(2, 4, 64, 8, n_layers=1, learned_positions=True), seed=3)
    f32 = copy.deepcopy(f).float()
    tokens, pad, mask = fusion_cases(f, b=32)["both"]
    fast, fast_grads = output_and_grads(f32.forward_one_layer, f32, tokens.float(), pad, mask)
    ref, ref_grads = output_and_grads(f.forward_layers, f, tokens, pad, mask)
    torch.testing.assert_close(fast, ref.float(), rtol=1e-5, atol=1e-5)
    for k, grad in ref_grads.items():
        assert (grad is None) == (fast_grads[k] is None), k
        if grad is not None:
            assert (fast_grads[k] - grad).abs().max() <= 1e-5 * grad.abs().max(), k


def test_one_layer_equals_a_standard_pre_norm_encoder_layer():
    f = jittered(FusionTransformer(2, 3, 16, n_heads=4, n_layers=1, activation="gelu",
                                   learned_positions=True), seed=4)
    ref = nn.TransformerEncoderLayer(16, 4, 64, dropout=0.0, activation="gelu", batch_first=True,
                                     norm_first=True).double()
    ref.load_state_dict(f.layers[0].state_dict())
    tokens, pad, _ = fusion_cases(f)["overlap"]  # (2, B, N, d), (4, 2, B, N)
    x = torch.cat([f.cls_token.expand(4, 2, 5, 1, 16), (tokens + f.pos_tokens).expand(4, -1, -1, -1, -1)], -2)
    full_pad = torch.cat([pad.new_zeros(4, 2, 5, 1), pad], -1)  # the CLS is never dropped
    with torch.no_grad():
        out = ref(x.flatten(0, 2), src_key_padding_mask=full_pad.flatten(0, 2))[:, 0]  # (4 * 2 * B, d)
        torch.testing.assert_close(f(tokens, pad=pad), f.norm(out).view(4, 2, 5, 16))


def test_quick_gelu_block_is_the_published_feed_forward():
    """QuickGELU x sigmoid(1.702 x) in the feed-forward half: x + W2 act(W1 LN2(x))."""
    f = jittered(FusionTransformer(2, 3, 16, n_heads=4), seed=8)
    layer = f.layers[0]
    x = torch.randn(5, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    h = layer.linear1(layer.norm2(x))
    torch.testing.assert_close(layer.feed_forward(x), x + layer.linear2(h * torch.sigmoid(1.702 * h)))


def test_modality_views_with_unequal_token_counts():
    f = FusionTransformer(3, [2, 3, 1], 16)
    expected = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 0, 0, 0, 1], [1, 1, 1, 1, 1, 0],
                             [0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(f.modality_views(), expected)
    assert f.pos_tokens is None
    assert FusionTransformer(3, [2, 3, 1], 16, learned_positions=True).pos_tokens.shape == (6, 16)


def test_published_initialisation():
    """CLIP's scheme under seeded_init: W_qkv ~ N(0, 1/d), W_out and W_2 ~ N(0, 1/(2 d L)),
    W_1 ~ N(0, 1/(2 d)), CLS ~ N(0, 1); the generic rule without it."""
    d, n_layers = 256, 2
    f = seeded_init(FusionTransformer(2, 3, d, n_layers=n_layers), torch.Generator().manual_seed(0))
    for layer in f.layers:
        for w, std in [(layer.self_attn.in_proj_weight, d ** -0.5), (layer.linear1.weight, (2 * d) ** -0.5),
                       (layer.self_attn.out_proj.weight, (2 * d * n_layers) ** -0.5),
                       (layer.linear2.weight, (2 * d * n_layers) ** -0.5)]:
            w = w.detach()
            assert float(w.std()) == pytest.approx(std, rel=0.03) and abs(float(w.mean())) < 0.1 * std
    assert float(f.cls_token.detach().std()) == pytest.approx(1.0, rel=0.2)
    g = seeded_init(FusionTransformer(2, 3, d, n_layers=n_layers, published_init=False),
                    torch.Generator().manual_seed(0))
    assert float(g.cls_token.detach().abs().max()) <= 0.04  # N(0, 0.02^2) truncated at two std
    assert float(g.layers[0].linear1.weight.detach().abs().max()) <= d ** -0.5  # U(+-1/sqrt(fan_in))


@pytest.mark.parametrize("momentum", [0.1, None])
def test_head_per_view_equals_one_call_per_view(momentum):
    head = jittered(mlp([8, 16, 16, 4], norm=True), seed=5)
    for layer in head:
        if isinstance(layer, nn.BatchNorm1d):
            layer.momentum = momentum
    ref = copy.deepcopy(head)
    for step in range(2):  # the second call starts from running statistics that are not 0 and 1
        z = torch.randn(5, 7, 8, generator=torch.Generator().manual_seed(step), dtype=torch.float64)
        z_ref = z.clone().requires_grad_()
        z.requires_grad_()
        out, grads = output_and_grads(head_per_view, head, head, z)
        expected, ref_grads = output_and_grads(lambda x: torch.stack([ref(v) for v in x.unbind()]), ref, z_ref)
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(z.grad, z_ref.grad, rtol=1e-10, atol=1e-10)
        assert_same_grads(grads, ref_grads, rtol=1e-9, atol=1e-10)
        for (k, a), (_, b) in zip(head.named_buffers(), ref.named_buffers()):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=k)
    assert int(head[1].num_batches_tracked) == 2 * 5
    head.eval(), ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(head_per_view(head, z), torch.stack([ref(v) for v in z.unbind()]))


def per_view_reference(method: nn.Module) -> nn.Module:
    """The method computed the general way: every view through every fusion layer, one head call
    per view."""
    method.fusion.forward = method.fusion.forward_layers
    method.project = lambda z: F.normalize(torch.stack([method.head(v) for v in z.unbind()]), dim=-1)
    return method


@pytest.mark.parametrize("name, shapes, over", [
    ("comm", [(12,), (10,)], {}), ("infmasking", [(12,), (10,)], {}),
    ("comm", [(12,), (10,), (7,)], {"n_heads": 2}), ("infmasking", [(12,), (10,), (7,)], {"n_heads": 4}),
    ("infmasking", [(12,), (10,)], {"n_tokens": 4, "tokenizer": "mlp", "position": "learned",
                                    "activation": "gelu", "init": "pytorch"}),
])
def test_methods_equal_their_per_view_reference(name, shapes, over):
    cls = METHODS[name]
    small = {"d_model": 16, "hidden": 32, "head_hidden": 32, "embed_dim": 16, **over}
    models = [cls(make_params(cls, small, name), shapes, 0).double() for _ in range(2)]
    per_view_reference(models[1])
    g = torch.Generator().manual_seed(6)
    x = [torch.randn(16, *s, generator=g, dtype=torch.float64) for s in shapes]
    v1, v2 = ([a + 0.3 * torch.randn(a.shape, generator=g, dtype=a.dtype) for a in x] for _ in range(2))
    (loss, grads), (ref, ref_grads) = (output_and_grads(m.loss, m, v1, v2, 1, 4) for m in models)
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-10)
    assert_same_grads(grads, ref_grads, rtol=1e-8, atol=1e-10)
    for (k, a), (_, b) in zip(*(m.named_buffers() for m in models)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=k)
