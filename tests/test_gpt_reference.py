"""The GPT's forward pass against an explicit reference written here, loop by loop.

The reference reads the model's weights and its forward multipliers (plain floats on the
modules) and recomputes the logits with none of the model's code: RMSNorm / LayerNorm from
their formulas, RoPE (Su et al. 2021) as a complex rotation of (first half, second half)
pairs, grouped-query attention with query head h reading key/value head h // q_per_kv,
an explicit causal softmax, GELU or SwiGLU MLPs, learned or no positions. Everything runs in
float64, so agreement to 1e-6 is a real check, not rounding luck.
"""

from __future__ import annotations

import math

import pytest
import torch

from muscale.build import build_model
from muscale.models.configs import GPTConfig
from muscale.param.config import ParamConfig


def ref_norm(x, norm, kind):
    if kind == "rmsnorm":
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + norm.eps) * norm.weight
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)  # biased variance, as LayerNorm's definition
    y = (x - mu) / torch.sqrt(var + norm.eps) * norm.weight
    return y + norm.bias if norm.bias is not None else y


def ref_rope(x, theta):
    """x (T, hs): rotate the pair (x_i, x_{i+hs/2}) at position p by p · theta^(-2i/hs)."""
    t, hs = x.shape
    half = hs // 2
    freq = theta ** (-torch.arange(half, dtype=torch.float64) * 2 / hs)
    angle = torch.arange(t, dtype=torch.float64)[:, None] * freq[None, :]
    z = torch.complex(x[:, :half], x[:, half:]) * torch.polar(torch.ones_like(angle), angle)
    return torch.cat([z.real, z.imag], dim=-1)


def linear(x, lin):
    y = x @ lin.weight.T
    return y + lin.bias if lin.bias is not None else y


def ref_attention(h, attn, cfg, q_per_kv):
    T = h.shape[0]
    nh, hs = attn.n_heads, attn.head_dim
    q, k, v = linear(h, attn.q_proj), linear(h, attn.k_proj), linear(h, attn.v_proj)
    outs = []
    for head in range(nh):
        kv = head // q_per_kv  # grouped-query attention: q_per_kv query heads share a kv head
        qh = q[:, head * hs : (head + 1) * hs]
        kh = k[:, kv * hs : (kv + 1) * hs]
        vh = v[:, kv * hs : (kv + 1) * hs]
        if cfg.pos == "rope":
            qh, kh = ref_rope(qh, cfg.rope_theta), ref_rope(kh, cfg.rope_theta)
        out = torch.zeros(T, hs, dtype=torch.float64)
        for i in range(T):  # causal: position i attends to 0..i
            logits = [float(qh[i] @ kh[j]) * attn.probe.scale for j in range(i + 1)]
            top = max(logits)
            w = [math.exp(a - top) for a in logits]
            for j in range(i + 1):
                out[i] += w[j] / sum(w) * vh[j]
        outs.append(out)
    return linear(torch.cat(outs, dim=-1), attn.o_proj)


def ref_mlp(h, mlp, cfg):
    a = linear(h, mlp.fc_in)
    if cfg.mlp == "swiglu":
        g = linear(h, mlp.fc_gate)
        a = g / (1 + torch.exp(-g)) * a  # silu(gate) * up
    else:
        a = 0.5 * a * (1 + torch.erf(a / math.sqrt(2)))  # exact GELU
    return linear(a, mlp.fc_out)


def ref_logits(model, idx):
    """Logits of one sequence idx (T,)."""
    cfg = model.cfg
    x = model.wte.weight[idx] * model.wte.mult
    if cfg.pos == "learned":
        x = x + model.wpe.weight[: len(idx)] * model.wpe.mult
    for block in model.blocks:
        x = x + block.branch * ref_attention(
            ref_norm(x, block.norm1, cfg.norm), block.attn, cfg, cfg.q_per_kv
        )
        x = x + block.branch * ref_mlp(ref_norm(x, block.norm2, cfg.norm), block.mlp, cfg)
    h = ref_norm(x, model.norm_f, cfg.norm)
    return (h * model.lm_head.mult) @ model.lm_head.weight.T


CASES = {
    "rope-mha-rmsnorm": dict(pos="rope", q_per_kv=1, norm="rmsnorm"),
    "rope-gqa2-layernorm-bias": dict(pos="rope", q_per_kv=2, norm="layernorm", bias=True),
    "rope-mqa-swiglu": dict(pos="rope", q_per_kv=4, mlp="swiglu"),
    "learned-gqa2-layernorm": dict(pos="learned", q_per_kv=2, norm="layernorm"),
    "learned-layernorm-tied": dict(pos="learned", norm="layernorm", tie_embeddings=True),
    "nopos-n_heads-scaling": dict(pos="none", head_scaling="n_heads", head_dim=8, q_per_kv=2),
}


@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_the_reference(case):
    kw = dict(width=64, depth=2, n_heads=4, vocab_size=40, seq_len=12, rope_theta=100.0)
    cfg = GPTConfig(**{**kw, **CASES[case]})
    pcfg = ParamConfig(scheme="mup", base_width=32, zero_readout=False, zero_query=False)
    model, _ = build_model(cfg, pcfg, seed=1)
    model = model.double()
    with torch.no_grad():  # non-trivial gains and biases, so their use is checked too
        g = torch.Generator().manual_seed(2)
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    idx = torch.randint(0, cfg.vocab_size, (2, cfg.seq_len), generator=g)
    with torch.no_grad():
        got = model(idx)
    assert model.blocks[0].attn.n_kv * cfg.q_per_kv == model.blocks[0].attn.n_heads
    for b in range(idx.shape[0]):
        with torch.no_grad():
            want = ref_logits(model, idx[b])
        torch.testing.assert_close(got[b], want, rtol=0, atol=1e-6)
    assert float(got.std()) > 1e-2  # the logits are not trivially zero


def test_rope_scores_depend_only_on_relative_position():
    """The property RoPE exists for: <R_m q, R_n k> is a function of m - n."""
    g = torch.Generator().manual_seed(0)
    q, k = (
        torch.randn(16, dtype=torch.float64, generator=g),
        torch.randn(16, dtype=torch.float64, generator=g),
    )
    from muscale.models.layers import apply_rope, rope_cache

    cos, sin = rope_cache(12, 16, 100.0)
    cos, sin = cos.double(), sin.double()
    qs = apply_rope(q.expand(1, 1, 12, 16), cos, sin)[0, 0]  # q at every position
    ks = apply_rope(k.expand(1, 1, 12, 16), cos, sin)[0, 0]
    for shift in range(4):
        scores = [float(qs[m + shift] @ ks[m]) for m in range(12 - shift)]
        assert scores == pytest.approx([scores[0]] * len(scores), abs=1e-5), shift
    assert float(qs[3] @ ks[0]) != pytest.approx(float(qs[2] @ ks[0]), abs=1e-3)
