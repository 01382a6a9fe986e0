"""Small layers that carry a forward multiplier as a plain float (never a tensor attribute).

The multiplier is applied inside the module so that a forward hook on it sees exactly what
the next layer sees — the coordinate check relies on that to catch a missing 1/m.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Linear(nn.Linear):
    """``nn.Linear`` that can be built without torch's default init.

    ``draw=False`` allocates weight and bias (``torch.empty``, as ``nn.Linear`` does) and
    skips the ``kaiming_uniform_`` draw that ``nn.Linear.__init__`` runs: a model built by
    :func:`muscale.build.build_model` has every parameter drawn from its plan right after
    (:func:`muscale.param.init.init_parameters` writes each tensor in full), so torch's draw
    was thrown away — 0.26 s of a 2.9 s default coordinate check (docs/coord_check.md,
    "Speed"). Only construction skips it: ``reset_parameters()`` called later draws as
    torch's does. ``draw=True`` is exactly ``nn.Linear``.
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool, draw: bool = True):
        self._skip_draw = not draw  # read by reset_parameters, which nn.Linear.__init__ calls
        super().__init__(in_features, out_features, bias=bias)
        del self._skip_draw

    def reset_parameters(self) -> None:
        if not getattr(self, "_skip_draw", False):
            super().reset_parameters()


class ScaledLinear(Linear):
    """``W (mult · x) + b``: a readout (μP: mult = alpha_out/m, TP5 Table 8) or an input
    layer with alpha_in. Scaling the input rather than the output leaves the bias unscaled,
    as mup's ``MuReadout`` does. ``draw``: as :class:`Linear`."""

    def __init__(
        self, in_features: int, out_features: int, *, bias: bool, mult: float, draw: bool = True
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, draw=draw)
        self.mult = float(mult)

    def forward(self, x: Tensor) -> Tensor:
        if self.mult == 1.0:
            return F.linear(x, self.weight, self.bias)
        if self.bias is None and self.out_features < self.in_features:
            return F.linear(x, self.weight) * self.mult  # same value, smaller tensor to scale
        return F.linear(x * self.mult, self.weight, self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mult={self.mult:.4g}"


class ScaledEmbedding(nn.Embedding):
    """Token embedding times the input multiplier alpha_in. ``draw=False`` skips the
    ``normal_`` draw of ``nn.Embedding.__init__`` (the plan draws the table; see
    :class:`Linear`)."""

    def __init__(self, num: int, dim: int, *, mult: float, draw: bool = True) -> None:
        self._skip_draw = not draw  # read by reset_parameters, which nn.Embedding.__init__ calls
        super().__init__(num, dim)
        del self._skip_draw
        self.mult = float(mult)

    def reset_parameters(self) -> None:
        if not getattr(self, "_skip_draw", False):
            super().reset_parameters()

    def forward(self, idx: Tensor) -> Tensor:
        out = super().forward(idx)
        return out * self.mult if self.mult != 1.0 else out


class AttnProbe(nn.Module):
    """Identity on ``(q, k)`` after RoPE, holding the attention logit scale.

    Attention runs through ``scaled_dot_product_attention``, which never materialises the
    logits; a forward hook here lets the coordinate check compute ``q kᵀ · scale`` when, and
    only when, it asks for it.
    """

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = float(scale)

    def forward(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        return q, k

    def extra_repr(self) -> str:
        return f"scale={self.scale:.4g}"


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "linear": nn.Identity,
}


def activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def rope_cache(seq_len: int, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos/sin tables of rotary embeddings (Su et al. 2021), each (seq_len, head_dim/2)."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (x[..., :d/2], x[..., d/2:]) of x (B, nh, T, hd) by position angles."""
    t = x.shape[-2]
    c, s = cos[:t].to(x.dtype), sin[:t].to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1)
