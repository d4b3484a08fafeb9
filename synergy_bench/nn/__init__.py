"""Neural building blocks shared by the methods: seeded initialisation, MLPs, encoders, tokenizers.

A *tokenizer* turns one modality into L tokens of width d for the fusion transformer; an
*encoder* turns it into one feature vector (the unimodal methods). Vectors (D,) and images
(C, H, W) are supported.

Vector tokenizers (``kind``):

* ``features`` (the published one): an MLP encoder maps x (D,) to L scalar features
  f = MLP(x) (L,), and each feature becomes one token, t_j = f_j W_j + b_j with a learnable
  W_j, b_j (d,) per feature. This is the ``FeaturesInputAdapter`` of the public CoMM and
  InfMasking code (the "feature tokenizer" of Gorishniy et al., 2021), which those codes put
  *after* the modality's encoder (e.g. MIMIC: MLP 5 -> 10 -> 10 features -> 10 tokens), so here
  the encoder sits before the adapter too and L is the encoder's output width. A token then
  carries one number of the modality: masking tokens removes information. b_j is the token's
  identity (the published adapter adds no other position embedding).
* ``mlp`` (this suite's earlier choice, no published counterpart): an MLP whose L d outputs are
  read as L tokens of width d; every token is computed from the whole input.

Both MLPs are D -> hidden -> hidden -> out, so the two kinds differ only in how the encoder's
output becomes tokens.
"""
from __future__ import annotations

import math

import torch
from torch import nn

VECTOR_TOKENIZERS = ("features", "mlp")
DEFAULT_TOKENS = 4  # tokens per modality when n_tokens is 0 and no per-feature count applies


def seeded_init(module: nn.Module, gen: torch.Generator) -> nn.Module:
    """Re-initialise every parameter of ``module`` from ``gen`` (no global RNG).

    Matrices (ndim >= 2) get PyTorch's default Linear scheme, U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    (kaiming_uniform with a = sqrt(5)); vectors named ``bias`` get zeros, LayerNorm-style ``weight``
    vectors ones; free tokens (CLS, mask) ~ N(0, 0.02^2). Parameters are visited in a fixed order,
    so the same generator state gives the same model. Then every submodule that defines
    ``seeded_reset(gen)`` (in ``named_modules`` order) re-draws its own parameters its own way
    (e.g. :class:`FeatureTokenizer`'s N(0, 1), as the published adapter).
    """
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if p.ndim >= 2 and "token" not in leaf:
                nn.init.kaiming_uniform_(p, a=math.sqrt(5), generator=gen)
            elif "token" in leaf:
                nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04, generator=gen)
            elif leaf == "weight" or leaf.endswith("_weight"):
                nn.init.ones_(p)
            else:
                nn.init.zeros_(p)
        for _, sub in module.named_modules():
            if hasattr(sub, "seeded_reset"):
                sub.seeded_reset(gen)
    return module


def mlp(sizes: list[int], act: type[nn.Module] = nn.ReLU, norm: bool = False) -> nn.Sequential:
    """Linear layers of the given sizes with ``act`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            if norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(act())
    return nn.Sequential(*layers)


class VectorTokenizer(nn.Module):
    """``mlp`` tokenizer: an MLP whose output is read as ``n_tokens`` full-width tokens.

    x (B, D) -> MLP(D, hidden, hidden, n_tokens * d_model) -> tokens (B, n_tokens, d_model).
    """

    def __init__(self, in_dim: int, hidden: int, n_tokens: int, d_model: int):
        super().__init__()
        self.n_tokens, self.d_model = n_tokens, d_model
        self.net = mlp([in_dim, hidden, hidden, n_tokens * d_model])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(x.shape[0], self.n_tokens, self.d_model)  # (B, L, d)


class FeatureTokenizer(nn.Module):
    """``features`` tokenizer: one token per feature of the modality's encoder output.

    x (B, D) -> f = MLP(D, hidden, hidden, L)(x) (B, L) -> t_j = f_j W_j + b_j (B, L, d), with
    W, b (L, d) learnable and drawn N(0, 1) at initialisation, as the published adapter's.
    """

    def __init__(self, in_dim: int, hidden: int, n_tokens: int, d_model: int):
        super().__init__()
        self.encoder = mlp([in_dim, hidden, hidden, n_tokens])
        self.weight = nn.Parameter(torch.empty(n_tokens, d_model))
        self.bias = nn.Parameter(torch.empty(n_tokens, d_model))

    def seeded_reset(self, gen: torch.Generator) -> None:
        """W, b ~ N(0, 1) (the published ``FeaturesInputAdapter`` draws both with ``randn``)."""
        with torch.no_grad():
            self.weight.normal_(generator=gen)
            self.bias.normal_(generator=gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapt(self.encoder(x))

    def adapt(self, f: torch.Tensor) -> torch.Tensor:
        """The adapter alone: features f (B, L) -> tokens f_j W_j + b_j (B, L, d)."""
        return f[..., None] * self.weight + self.bias


def n_tokens_for(shape: tuple[int, ...], n_tokens: int, kind: str) -> int:
    """Tokens a modality of per-sample ``shape`` gets: ``n_tokens``, or where it is 0, one per
    input feature for a vector under the ``features`` tokenizer (the published adapter's count:
    a token per feature) and :data:`DEFAULT_TOKENS` otherwise."""
    if n_tokens:
        return n_tokens
    return shape[0] if len(shape) == 1 and kind == "features" else DEFAULT_TOKENS


def make_tokenizer(shape: tuple[int, ...], hidden: int, n_tokens: int, d_model: int,
                   kind: str = "features", position: str = "published") -> nn.Module:
    """The token encoder for a modality of per-sample ``shape``.

    Vectors (D,) get the ``kind`` tokenizer (``features`` or ``mlp``, see the module docstring);
    images (C, H, W) a small AlexNet read as a grid of tokens
    (:class:`~synergy_bench.nn.images.ImageTokenizer`, ``hidden`` its width scale: 256 gives
    AlexNet's widths) with the fixed 2-D sin-cos position embedding of the published patch
    adapter when ``position`` is ``published`` (none when ``learned``: the fusion transformer
    then learns one). ``n_tokens`` = 0 picks :func:`n_tokens_for`.
    """
    n_tokens = n_tokens_for(shape, n_tokens, kind)
    if len(shape) == 1:
        if kind not in VECTOR_TOKENIZERS:
            raise ValueError(f"tokenizer {kind!r} is not one of {VECTOR_TOKENIZERS}")
        cls = FeatureTokenizer if kind == "features" else VectorTokenizer
        return cls(shape[0], hidden, n_tokens, d_model)
    if len(shape) == 3:
        from synergy_bench.nn.images import ImageTokenizer

        return ImageTokenizer(shape, hidden, n_tokens, d_model, sincos=position == "published")
    raise ValueError(f"no encoder for modality shape {shape}: only vectors (D,) and images (C, H, W) "
                     "are supported")


def make_encoder(shape: tuple[int, ...], hidden: int, out_dim: int, layers: int = 2) -> nn.Module:
    """A unimodal encoder to one feature vector (B, out_dim).

    Vectors (D,): an MLP with ``layers`` hidden layers of ``hidden`` units. Images (C, H, W): the
    published ``AlexNetEncoder`` (:class:`~synergy_bench.nn.images.AlexNetEncoder`: the
    convolutional trunk at width scale ``hidden``, pooled to 6 x 6, flattened, one linear map).
    """
    if len(shape) == 1:
        return mlp([shape[0]] + [hidden] * layers + [out_dim])
    if len(shape) == 3:
        from synergy_bench.nn.images import AlexNetEncoder

        return AlexNetEncoder(shape, hidden, out_dim)
    raise ValueError(f"no encoder for modality shape {shape}: only vectors (D,) and images (C, H, W) "
                     "are supported")


def decay_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Optimiser parameter groups: weight decay on weights only.

    No decay on biases (any parameter whose name contains ``bias``), on the parameters of
    normalisation layers (LayerNorm, BatchNorm, GroupNorm) and on scalars (e.g. a logit scale);
    every other parameter decays. This is the rule of the public CoMM and InfMasking code
    (``set_weight_decay_per_param``), written against module types rather than name fragments.
    """
    norms = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)
    no_decay: set[int] = set()
    for mod_name, mod in module.named_modules():
        for name, p in mod.named_parameters(recurse=False):
            if isinstance(mod, norms) or "bias" in name or p.ndim == 0:
                no_decay.add(id(p))
    params = [p for p in module.parameters() if p.requires_grad]
    return [{"params": [p for p in params if id(p) not in no_decay], "weight_decay": weight_decay},
            {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0}]
