"""Pre-norm decoder-only transformer (nanoGPT / Llama style) with muscale's multipliers.

Shapes: B batch, T time, C = d_model, nh heads, nkv key/value heads, hs head size.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from muscale.models.configs import GPTConfig
from muscale.models.layers import (
    AttnProbe,
    Linear,
    ScaledEmbedding,
    ScaledLinear,
    apply_rope,
    rope_cache,
)
from muscale.param.roles import ParamSpec, Role


def _norm(cfg: GPTConfig, dim: int) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(dim, eps=1e-6)
    return nn.LayerNorm(dim, bias=cfg.bias)


class Attention(nn.Module):
    cos: Tensor
    sin: Tensor

    def __init__(
        self, cfg: GPTConfig, dims: dict[str, int], attn_scale: float, draw: bool = True
    ) -> None:
        super().__init__()
        c, b = dims["d_model"], cfg.bias
        self.n_heads, self.head_dim = dims["n_heads"], dims["head_dim"]
        self.n_kv = dims["kv_dim"] // self.head_dim
        self.q_proj = Linear(c, dims["q_dim"], bias=b, draw=draw)
        self.k_proj = Linear(c, dims["kv_dim"], bias=b, draw=draw)
        self.v_proj = Linear(c, dims["kv_dim"], bias=b, draw=draw)
        self.o_proj = Linear(dims["q_dim"], c, bias=b, draw=draw)
        self.probe = AttnProbe(attn_scale)
        self.rope = cfg.pos == "rope"
        if self.rope:
            cos, sin = rope_cache(cfg.seq_len, self.head_dim, cfg.rope_theta)
            self.register_buffer("cos", cos, persistent=False)
            self.register_buffer("sin", sin, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B,nh,T,hs)
        k = self.k_proj(x).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)  # (B,nkv,T,hs)
        v = self.v_proj(x).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        if self.rope:
            q, k = apply_rope(q, self.cos, self.sin), apply_rope(k, self.cos, self.sin)
        q, k = self.probe(q, k)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, scale=self.probe.scale, enable_gqa=self.n_kv != self.n_heads
        )  # (B, nh, T, hs)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class FeedForward(nn.Module):
    """GELU MLP, or SwiGLU (Shazeer 2020): fc_out(silu(fc_gate x) * fc_in x)."""

    def __init__(self, cfg: GPTConfig, dims: dict[str, int], draw: bool = True) -> None:
        super().__init__()
        c, f, b = dims["d_model"], dims["d_ff"], cfg.bias
        self.swiglu = cfg.mlp == "swiglu"
        self.fc_in = Linear(c, f, bias=b, draw=draw)
        if self.swiglu:
            self.fc_gate = Linear(c, f, bias=b, draw=draw)
        self.fc_out = Linear(f, c, bias=b, draw=draw)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc_in(x)
        h = F.silu(self.fc_gate(x)) * h if self.swiglu else F.gelu(h)
        return self.fc_out(h)


class Block(nn.Module):
    def __init__(
        self, cfg: GPTConfig, dims: dict[str, int], mults: dict[str, float], draw: bool = True
    ) -> None:
        super().__init__()
        self.norm1 = _norm(cfg, dims["d_model"])
        self.attn = Attention(cfg, dims, mults["attn_scale"], draw)
        self.norm2 = _norm(cfg, dims["d_model"])
        self.mlp = FeedForward(cfg, dims, draw)
        self.branch = float(mults["branch"])  # m_L^-alpha (depth rules)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C) residual stream
        if self.branch == 1.0:  # no depth rule: skip two (B, T, C) multiplies per block
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        x = x + self.branch * self.attn(self.norm1(x))
        return x + self.branch * self.mlp(self.norm2(x))


class GPT(nn.Module):
    """``draw=False`` builds the linear and embedding layers without torch's default init
    (:class:`~muscale.models.layers.Linear`): for :func:`muscale.build.build_model`, which
    draws every parameter from the plan; a GPT built alone should keep ``draw=True``."""

    def __init__(self, cfg: GPTConfig, mults: dict[str, float], *, draw: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.dims = cfg.dims(cfg.width)
        c = self.dims["d_model"]
        self.wte = ScaledEmbedding(cfg.vocab_size, c, mult=mults["input"], draw=draw)
        if cfg.pos == "learned":
            self.wpe = ScaledEmbedding(cfg.seq_len, c, mult=mults["input"], draw=draw)
        self.blocks = nn.ModuleList(Block(cfg, self.dims, mults, draw) for _ in range(cfg.depth))
        self.norm_f = _norm(cfg, c)
        self.lm_head = ScaledLinear(c, cfg.vocab_size, bias=False, mult=mults["output"], draw=draw)
        if cfg.tie_embeddings:
            # shared tensor: named_parameters() lists it once, as wte.weight (role input);
            # the readout still applies the output multiplier (mup's MuSharedReadout)
            self.lm_head.weight = self.wte.weight

    def forward(self, idx: Tensor) -> Tensor:  # (B, T) -> (B, T, vocab)
        x = self.wte(idx)
        if self.cfg.pos == "learned":
            x = x + self.wpe.weight[: idx.shape[1]] * self.wpe.mult
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.norm_f(x))

    def param_specs(self) -> dict[str, ParamSpec]:
        cfg, bias = self.cfg, self.cfg.bias
        specs: dict[str, ParamSpec] = {
            "wte.weight": ParamSpec(
                role=Role.INPUT,
                fan_in=1,
                fan_out="d_model",
                tag="tied_readout" if cfg.tie_embeddings else None,
            ),
            "norm_f.weight": _vec("d_model", "ones"),
        }
        if cfg.pos == "learned":
            specs["wpe.weight"] = ParamSpec(role=Role.INPUT, fan_in=1, fan_out="d_model")
        if cfg.norm == "layernorm" and bias:
            specs["norm_f.bias"] = _vec("d_model", "zeros")
        if not cfg.tie_embeddings:
            specs["lm_head.weight"] = ParamSpec(
                role=Role.OUTPUT, fan_in="d_model", fan_out=cfg.vocab_size, tag="readout"
            )
        linears = {
            "attn.q_proj": ("d_model", "q_dim", "query"),
            "attn.k_proj": ("d_model", "kv_dim", None),
            "attn.v_proj": ("d_model", "kv_dim", None),
            "attn.o_proj": ("q_dim", "d_model", None),
            "mlp.fc_in": ("d_model", "d_ff", None),
            "mlp.fc_out": ("d_ff", "d_model", None),
        }
        if cfg.mlp == "swiglu":
            linears["mlp.fc_gate"] = ("d_model", "d_ff", None)
        for i in range(cfg.depth):
            pre = f"blocks.{i}."
            for norm in ("norm1", "norm2"):
                specs[pre + norm + ".weight"] = _vec("d_model", "ones", i)
                if cfg.norm == "layernorm" and bias:
                    specs[pre + norm + ".bias"] = _vec("d_model", "zeros", i)
            for name, (fan_in, fan_out, tag) in linears.items():
                specs[pre + name + ".weight"] = ParamSpec(
                    role=Role.HIDDEN, fan_in=fan_in, fan_out=fan_out, tag=tag, block=i
                )
                if bias:
                    specs[pre + name + ".bias"] = _vec(fan_out, "zeros", i)
        return specs


def _vec(dim: str, fill: str, block: int | None = None) -> ParamSpec:
    return ParamSpec(role=Role.VECTOR, fan_in=dim, fan_out=dim, fill=fill, block=block)
