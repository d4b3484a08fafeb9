"""The fusion transformer of CoMM and InfMasking: tokens of all modalities -> one CLS vector.

Following CoMM (Dufumier, Castillo-Navarro et al., 2025) the tokens of every modality are
concatenated behind a learnable CLS token and mixed by a small pre-norm transformer encoder; the
LayerNorm-ed CLS output is the fused representation. Two ways to hide content are supported in
the same batched call, so that many views of a batch cost one pass:

* ``pad`` drops tokens (key padding: no token attends to them). Dropping all tokens of every
  modality but i gives CoMM's unimodal view Z_i; since dropped keys get zero attention weight,
  this equals running the transformer on modality i's tokens alone.
* ``mask`` replaces tokens by one learnable mask token (InfMasking, Wen, Dai et al., 2025).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PreNormBlock(nn.Module):
    """One pre-norm transformer encoder layer (Vaswani et al., 2017; Xiong et al., 2020).

    x <- x + MHA(LN1(x)),  x <- x + W2 GELU(W1 LN2(x)),  width 4 d inside, no dropout. Parameter
    names follow ``torch.nn.TransformerEncoderLayer(norm_first=True, activation="gelu")`` so its
    state dict loads into one. ``n_queries`` updates only the first tokens (the others still serve
    as keys and values): the last layer only needs the CLS token, which saves most of its work.
    """

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=0.0, batch_first=True)
        self.linear1, self.linear2 = nn.Linear(d_model, 4 * d_model), nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None,
                n_queries: int | None = None) -> torch.Tensor:
        h = self.norm1(x)  # (V, S, d)
        q = x[:, :n_queries]  # (V, Q, d)
        q = q + self.self_attn(h[:, :n_queries], h, h, key_padding_mask=pad, need_weights=False)[0]
        return q + self.linear2(F.gelu(self.linear1(self.norm2(q))))


class FusionTransformer(nn.Module):
    """CLS-token transformer over the concatenated tokens of ``n_modalities`` modalities.

    Parameters
    ----------
    n_modalities, n_tokens : int
        Number of modalities and tokens per modality (L); the input holds N = n_modalities * L
        tokens, modality after modality.
    d_model : int
        Token width.
    n_heads, n_layers : int
        Attention heads and encoder layers (CoMM: 8 and 1). Dropout is 0 (no hidden randomness).

    Notes
    -----
    ``pos_tokens`` is one learnable vector per (modality, slot): it is the type and position
    embedding at once. It is added before masking, so a masked slot holds the bare mask token and
    carries no hint of which slot it was (as in the public InfMasking code, where the mask token
    replaces the adapter output that already contains the position embedding).
    """

    def __init__(self, n_modalities: int, n_tokens: int, d_model: int, n_heads: int = 8,
                 n_layers: int = 1):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model = {d_model} is not divisible by n_heads = {n_heads}; "
                             "choose d_model as a multiple of n_heads")
        self.n_modalities, self.n_tokens = n_modalities, n_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, d_model))
        self.mask_token = nn.Parameter(torch.zeros(d_model))  # used only when a mask is given
        self.pos_tokens = nn.Parameter(torch.zeros(n_modalities * n_tokens, d_model))
        self.layers = nn.ModuleList(PreNormBlock(d_model, n_heads) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def modality_views(self, device: torch.device | str | None = None) -> torch.Tensor:
        """(n+1, N) bool, True = dropped: row i keeps only modality i, the last row keeps all."""
        owner = torch.arange(self.n_modalities, device=device).repeat_interleave(self.n_tokens)
        views = torch.arange(self.n_modalities + 1, device=device)[:, None]
        return (owner != views) & (views < self.n_modalities)

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
        """
        n, d = tokens.shape[-2:]
        lead = torch.broadcast_shapes(tokens.shape[:-2], *(m.shape[:-1] for m in (pad, mask)
                                                           if m is not None))
        x = (tokens + self.pos_tokens).expand(*lead, n, d)  # (*, N, d)
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
