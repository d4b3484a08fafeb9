"""The fusion transformer of CoMM and InfMasking: tokens of all modalities -> one CLS vector.

Following CoMM (Dufumier, Castillo-Navarro et al., 2025) the tokens of every modality are
concatenated behind a learnable CLS token and mixed by a small pre-norm transformer encoder; the
LayerNorm-ed CLS output is the fused representation. Two ways to hide content are supported in
the same batched call, so that many views of a batch cost one pass:

* ``pad`` drops tokens (key padding: no token attends to them). Dropping all tokens of every
  modality but i gives CoMM's unimodal view Z_i; since dropped keys get zero attention weight,
  this equals running the transformer on modality i's tokens alone.
* ``mask`` replaces tokens by one learnable mask token (InfMasking, Wen, Dai et al., 2025).

With one layer (CoMM's setting) the views of a token set share almost all of the work, and
:meth:`FusionTransformer.forward_one_layer` does that work once per token set instead of once per
view (see there why this is exact). :func:`head_per_view` runs a projection head with batch norm
over many views in one call, with the statistics of each view.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """CLIP's QuickGELU, x sigmoid(1.702 x) (Radford et al., 2021), the activation of the
    published CoMM and InfMasking fusion blocks."""
    return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {"quick_gelu": quick_gelu, "gelu": F.gelu}


class PreNormBlock(nn.Module):
    """One pre-norm transformer encoder layer (Vaswani et al., 2017; Xiong et al., 2020).

    x <- x + MHA(LN1(x)),  x <- x + W2 act(W1 LN2(x)),  width 4 d inside, no dropout; ``act`` is
    QuickGELU (the published blocks) or GELU. Parameter names follow
    ``torch.nn.TransformerEncoderLayer(norm_first=True)`` so its state dict loads into one (equal
    to it with ``activation="gelu"``). ``n_queries`` updates only the first tokens (the others
    still serve as keys and values): the last layer only needs the CLS token, which saves most of
    its work.
    """

    def __init__(self, d_model: int, n_heads: int, activation: str = "quick_gelu"):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=0.0, batch_first=True)
        self.linear1, self.linear2 = nn.Linear(d_model, 4 * d_model), nn.Linear(4 * d_model, d_model)
        self.act = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None,
                n_queries: int | None = None) -> torch.Tensor:
        h = self.norm1(x)  # (V, S, d)
        q = x[:, :n_queries]  # (V, Q, d)
        q = q + self.self_attn(h[:, :n_queries], h, h, key_padding_mask=pad, need_weights=False)[0]
        return self.feed_forward(q)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The second half of the layer, x + W2 act(W1 LN2(x)), on the last dimension."""
        return x + self.linear2(self.act(self.linear1(self.norm2(x))))


class FusionTransformer(nn.Module):
    """CLS-token transformer over the concatenated tokens of ``n_modalities`` modalities.

    Parameters
    ----------
    n_modalities : int
        Number of modalities n.
    n_tokens : int or sequence of int
        Tokens per modality (L, or L_i for modality i); the input holds N = sum_i L_i tokens,
        modality after modality.
    d_model : int
        Token width.
    n_heads, n_layers : int
        Attention heads and encoder layers (CoMM: 8 and 1). Dropout is 0 (no hidden randomness).
    activation : str
        ``quick_gelu`` (the published blocks) or ``gelu`` in the feed-forward half.
    learned_positions : bool
        Add ``pos_tokens``, one learnable vector per (modality, slot), to the tokens (a type and
        position embedding at once; this suite's earlier choice). Off, the tokens enter as the
        tokenizers made them, as in the published code, where each input adapter carries its own
        position embedding (a fixed 2-D sin-cos for image patches; the per-feature bias b_j for
        vectors) and nothing marks the modality.
    published_init : bool
        Under :func:`~synergy_bench.nn.seeded_init`, draw the weights as the published fusion
        block does (CLIP's scheme): W_qkv ~ N(0, 1/d), W_out and W_2 ~ N(0, 1/(2 d n_layers)),
        W_1 ~ N(0, 1/(2 d)), CLS token ~ N(0, 1). Off, the generic rule of ``seeded_init``
        (PyTorch's Linear scheme, CLS ~ N(0, 0.02^2)). Biases are zero either way (the published
        feed-forward biases keep PyTorch's uniform default).

    Notes
    -----
    Positions are in the tokens before masking, so a masked slot holds the bare mask token and
    carries no hint of which slot it was (as in the public InfMasking code, where the mask token
    replaces the adapter output that already contains the position embedding).
    """

    def __init__(self, n_modalities: int, n_tokens: int | Sequence[int], d_model: int,
                 n_heads: int = 8, n_layers: int = 1, activation: str = "quick_gelu",
                 learned_positions: bool = False, published_init: bool = True):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model = {d_model} is not divisible by n_heads = {n_heads}; "
                             "choose d_model as a multiple of n_heads")
        counts = [n_tokens] * n_modalities if isinstance(n_tokens, int) else list(n_tokens)
        if len(counts) != n_modalities:
            raise ValueError(f"n_tokens lists {len(counts)} counts for {n_modalities} modalities")
        self.n_modalities, self.token_counts = n_modalities, tuple(counts)
        self.cls_token = nn.Parameter(torch.zeros(1, d_model))
        self.mask_token = nn.Parameter(torch.zeros(d_model))  # used only when a mask is given
        self.pos_tokens = nn.Parameter(torch.zeros(sum(counts), d_model)) if learned_positions else None
        self.layers = nn.ModuleList(PreNormBlock(d_model, n_heads, activation) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.published_init = published_init

    def seeded_reset(self, gen: torch.Generator) -> None:
        """The published initialisation when ``published_init`` (see the class docstring)."""
        if not self.published_init:
            return
        d, n_layers = self.cls_token.shape[1], len(self.layers)
        proj_std = d ** -0.5 * (2 * n_layers) ** -0.5
        with torch.no_grad():
            for layer in self.layers:
                layer.self_attn.in_proj_weight.normal_(0.0, d ** -0.5, generator=gen)
                layer.self_attn.out_proj.weight.normal_(0.0, proj_std, generator=gen)
                layer.linear1.weight.normal_(0.0, (2 * d) ** -0.5, generator=gen)
                layer.linear2.weight.normal_(0.0, proj_std, generator=gen)
            self.cls_token.normal_(generator=gen)

    def owners(self, device: torch.device | str | None = None) -> torch.Tensor:
        """(N,) long: the modality each token slot belongs to."""
        counts = torch.tensor(self.token_counts, device=device)
        return torch.arange(self.n_modalities, device=device).repeat_interleave(counts)

    def modality_views(self, device: torch.device | str | None = None) -> torch.Tensor:
        """(n+1, N) bool, True = dropped: row i keeps only modality i, the last row keeps all."""
        views = torch.arange(self.n_modalities + 1, device=device)[:, None]
        return (self.owners(device) != views) & (views < self.n_modalities)

    def positioned(self, tokens: torch.Tensor) -> torch.Tensor:
        """The tokens with the learned position embedding added (unchanged without one)."""
        return tokens if self.pos_tokens is None else tokens + self.pos_tokens

    def forward(self, tokens: torch.Tensor, pad: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Fused CLS output for every row of a batch of token sets.

        Parameters
        ----------
        tokens : (*, N, d) tensor
            Tokens of all modalities, concatenated along N.
        pad : (*, N) bool tensor, optional
            True = token dropped (ignored by attention). Broadcast against ``tokens``.
        mask : (*, N) bool tensor, optional
            True = token replaced by the learnable mask token. Broadcast against ``tokens``.

        Returns
        -------
        (*', d) tensor, *' the broadcast leading shape of tokens, pad and mask.

        One layer takes :meth:`forward_one_layer`, more layers :meth:`forward_layers` (the same
        numbers up to float round-off where both apply).
        """
        if len(self.layers) == 1:
            return self.forward_one_layer(tokens, pad, mask)
        return self.forward_layers(tokens, pad, mask)

    def forward_layers(self, tokens: torch.Tensor, pad: torch.Tensor | None = None,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`forward` for any number of layers: every view's token set through every layer."""
        n, d = tokens.shape[-2:]
        lead = _lead_shape(tokens, pad, mask)
        x = self.positioned(tokens).expand(*lead, n, d)  # (*, N, d)
        if mask is not None:
            x = torch.where(mask.unsqueeze(-1), self.mask_token, x)
        x = x.reshape(-1, n, d)  # (V, N, d)
        x = torch.cat([self.cls_token.expand(x.shape[0], 1, d), x], dim=1)  # (V, 1+N, d)
        if pad is not None:
            pad = pad.expand(*lead, n).reshape(-1, n)
            pad = torch.cat([pad.new_zeros(pad.shape[0], 1), pad], dim=1)  # the CLS is never dropped
        for layer in self.layers[:-1]:
            x = layer(x, pad)  # (V, 1+N, d)
        cls = self.layers[-1](x, pad, n_queries=1)  # (V, 1, d): only the CLS output is read
        return self.norm(cls[:, 0]).reshape(*lead, d)

    def forward_one_layer(self, tokens: torch.Tensor, pad: torch.Tensor | None = None,
                          mask: torch.Tensor | None = None) -> torch.Tensor:
        r""":meth:`forward` of a one-layer transformer, the work shared by views done once.

        Why this is exact. With one layer only the CLS output is read, and its input is the CLS
        token c in every view and every sample. So the query :math:`q = W_q\,\mathrm{LN}_1(c) + b_q`
        is one vector, and the attention logit of q against a slot holding vector y is
        :math:`\ell(y) = q\cdot(W_k\,\mathrm{LN}_1(y) + b_k)/\sqrt{d_h}` per head. A view
        differs from the plain token set x_1..x_N only in which slots it drops (``pad``: logit
        -inf, weight 0) and which it fills with the mask token m (``mask``: logit
        :math:`\ell(m)`, value :math:`v(m)`). Hence, per head, with :math:`v(y) = W_v\,
        \mathrm{LN}_1(y) + b_v`,

        .. math::

            a = \frac{e^{\ell(c)} v(c) + \sum_{j\ \mathrm{kept}} e^{\ell(x_j)} v(x_j)
                      + n_m e^{\ell(m)} v(m)}
                     {e^{\ell(c)} + \sum_{j\ \mathrm{kept}} e^{\ell(x_j)} + n_m e^{\ell(m)}}

        (n_m masked slots that are not dropped), and the layer's CLS output is
        :math:`c + W_o a + b_o` followed by the feed-forward half and the final LayerNorm. Every
        exponent is taken relative to the view's largest logit (the softmax does not change), so
        nothing overflows. ``LN_1``, the logits and the values of the N tokens are computed once
        per token set (where pad and mask only broadcast tokens along leading view dimensions),
        those of c and m once per call; each view costs only a softmax over its N + 1 logits, a
        weighted sum of values and its own out-projection, feed-forward half and LayerNorm.
        Folding q into the key projection, :math:`q\cdot(W_k y' + b_k) = y'\cdot(W_k^\top q) +
        q\cdot b_k`, leaves no key to compute. Heads are split as in ``nn.MultiheadAttention``
        (contiguous blocks of d_h = d / H rows of its ``in_proj_weight``), whose parameters are
        used as they are, so state dicts are unchanged.
        """
        n, d = tokens.shape[-2:]
        lead = _lead_shape(tokens, pad, mask)
        sets = tokens.shape[:-2]
        if lead[len(lead) - len(sets):] != sets:  # tokens broadcast along a sample dimension
            tokens, sets = tokens.expand(*lead, n, d), lead
        views = lead[:len(lead) - len(sets)]
        s, v = math.prod(sets), math.prod(views)
        layer = self.layers[0]
        attn = layer.self_attn
        heads = attn.num_heads
        w_q, w_k, w_v = attn.in_proj_weight.chunk(3)  # (d, d) each
        b_q, b_k, b_v = attn.in_proj_bias.chunk(3)  # (d,) each

        # once per call: the query (the CLS query of every view), logit and value of a token y
        c = layer.norm1(self.cls_token[0])  # (d,)
        q = F.linear(c, w_q, b_q).view(heads, -1) / math.sqrt(d // heads)  # (H, d_h)
        w_logit = (w_k.view(heads, -1, d) * q[:, :, None]).sum(1)  # (H, d): W_k^T q per head
        b_logit = (b_k.view(heads, -1) * q).sum(1)  # (H,): q . b_k per head

        def logit(y: torch.Tensor) -> torch.Tensor:  # LN_1-ed (*, d) -> (*, H)
            return F.linear(y, w_logit, b_logit)

        def value(y: torch.Tensor) -> torch.Tensor:  # LN_1-ed (*, d) -> (*, H, d_h)
            return F.linear(y, w_v, b_v).unflatten(-1, (heads, -1))

        # once per token set: logits and values of the N real tokens
        h = layer.norm1(self.positioned(tokens).reshape(s, n, d))  # (S, N, d)
        logits = logit(h).transpose(1, 2)[:, :, None]  # (S, H, 1, N)
        values = value(h).transpose(1, 2)  # (S, H, N, d_h)

        # per view: a = (e_c v(c) + sum_kept e_j v(x_j) + n_m e_m v(m)) / (e_c + sum_kept e_j + n_m e_m)
        # with e = exp(logit - shift), the shift (the view's largest logit) only guarding the range
        def per_view(flags: torch.Tensor) -> torch.Tensor:  # (*, N) -> (S, 1, V, N)
            return flags.expand(*lead, n).reshape(v, s, n).transpose(0, 1)[:, None]

        pad = None if pad is None else per_view(pad)
        hidden = pad  # (S, 1, V, N): slots that do not show their own token
        if mask is not None:
            mask = per_view(mask)
            hidden = mask if pad is None else mask | pad
            n_m = (mask if pad is None else mask & ~pad).sum(-1, keepdim=True)  # (S, 1, V, 1)
        if hidden is not None:
            logits = logits.masked_fill(hidden, float("-inf"))  # (S, H, V, N)
        logit_c = logit(c)[:, None, None]  # (H, 1, 1)
        shift = torch.maximum(logits.amax(-1, keepdim=True), logit_c)  # (S, H, V, 1)
        if mask is not None:
            m = layer.norm1(self.mask_token)  # (d,): the mask token, only when one is used
            logit_m = logit(m)[:, None, None]  # (H, 1, 1)
            shift = torch.maximum(shift, logit_m.masked_fill(n_m == 0, float("-inf")))
        shift = shift.detach()  # the softmax does not depend on it
        e_c, e_x = (logit_c - shift).exp(), (logits - shift).exp()  # (S, H, V, 1), (S, H, V, N)
        out = e_c * value(c)[:, None] + e_x @ values  # (S, H, V, d_h)
        total = e_c + e_x.sum(-1, keepdim=True)  # (S, H, V, 1)
        if mask is not None:
            e_m = n_m * (logit_m - shift).exp()  # (S, H, V, 1): the n_m mask slots together
            out, total = out + e_m * value(m)[:, None], total + e_m
        out = out / total  # (S, H, V, d_h)
        out = out.permute(2, 0, 1, 3).reshape(v, s, d)  # (V, S, d): heads concatenated
        cls = layer.feed_forward(self.cls_token + attn.out_proj(out))  # (V, S, d)
        return self.norm(cls).reshape(*lead, d)


def _lead_shape(tokens: torch.Tensor, pad: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Size:
    """The broadcast leading shape of tokens (*, N, d), pad (*, N) and mask (*, N)."""
    return torch.broadcast_shapes(tokens.shape[:-2], *(m.shape[:-1] for m in (pad, mask) if m is not None))


def head_per_view(head: nn.Sequential, z: torch.Tensor) -> torch.Tensor:
    """A projection head applied to each view of a stack separately, in one call per layer.

    Parameters
    ----------
    head : nn.Sequential
        Layers that act on each row alone (``nn.Linear``, activations) and ``nn.BatchNorm1d``.
    z : (V, B, d) tensor
        V views of a batch of B samples.

    Returns
    -------
    (V, B, E) tensor: ``torch.stack([head(z[i]) for i in range(V)])``.

    Notes
    -----
    The views are laid side by side, (B, V * h), so that one batch norm over V * h channels
    normalises each view with its own batch statistics (mean and biased variance over B), exactly
    as V separate calls would; the affine weights are shared across views. The running statistics
    get V updates in view order, the same sequence as V calls (``num_batches_tracked`` grows by V).
    In eval mode batch norm is a fixed affine map and the views are simply stacked.
    """
    x = z.transpose(0, 1)  # (B, V, d)
    for layer in head:
        if isinstance(layer, nn.BatchNorm1d):
            x = _batch_norm_per_view(layer, x)
        else:
            x = layer(x)  # (B, V, h)
    return x.transpose(0, 1)  # (V, B, E)


def _batch_norm_per_view(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """``bn`` on each view x[:, i] (B, h) of x (B, V, h) separately, as V calls would do it."""
    b, v, h = x.shape
    if not bn.training and bn.running_mean is not None:  # running statistics: per-row affine
        return bn(x.reshape(b * v, h)).view(b, v, h)
    weight, bias = (None, None) if bn.weight is None else (bn.weight.repeat(v), bn.bias.repeat(v))
    update = bn.training and bn.running_mean is not None
    # with momentum 1 the kernel leaves each view's batch mean and unbiased variance in the buffers
    mean, var = bn.running_mean.new_zeros(2, v * h) if update else (None, None)
    out = F.batch_norm(x.reshape(b, v * h), mean, var, weight, bias, True, 1.0, bn.eps)  # (B, V h)
    if update:
        with torch.no_grad():
            for mean_i, var_i in zip(mean.view(v, h), var.view(v, h)):  # one update per view, in order
                bn.num_batches_tracked.add_(1)
                f = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
                bn.running_mean.lerp_(mean_i, f)
                bn.running_var.lerp_(var_i, f)
    return out.view(b, v, h)
