"""NNGP/NTK of one softmax attention head: infinite width vs muscale's Attention layer."""

from __future__ import annotations

import math

import pytest
import torch

from muscale.diagnostics.ntk import empirical_ntk
from muscale.diagnostics.ntk_attention import (
    AttentionHead,
    attention_convergence,
    attention_nngp,
    attention_ntk,
    empirical_attention_kernels,
)


def test_one_over_d_limit_is_uniform_causal_attention():
    """Under 1/d the limit attends uniformly to the visible prefix: K = U C₀ U'ᵀ, here with
    U written out by hand."""
    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    u = torch.tensor([[1, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]], dtype=torch.float64)
    c = x1.double() @ x2.double().T / 5
    torch.testing.assert_close(attention_nngp(x1, x2), u @ c @ u.T)
    torch.testing.assert_close(attention_ntk(x1, x2), 3 * u @ c @ u.T)
    with pytest.raises(ValueError, match="scaling"):
        attention_ntk(x1, x2, scaling="1/sqrt(d)")


def test_layerwise_ntk_equals_autodiff_ntk():
    """The per-layer δ·x contraction equals torch.func's empirical NTK (NTK-parametrisation
    weights 1/fan_in; the frozen read-in excluded) at a small width."""
    torch.manual_seed(0)
    model = AttentionHead(4, 16, seq_len=3, seed=1)
    x1, x2 = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    _, ntk = empirical_attention_kernels(model, x1, x2)
    weights = {n: (1.0 / 16 if n.startswith("attn") else 1.0) for n, _ in model.named_parameters()}

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, x):  # (1, T, d0) -> (1, T)
            return self.m(x)

    full = empirical_ntk(
        Wrap(),
        x1[None],
        x2[None],
        trace="full",
        impl="jacobian",
        param_weights={"m." + k: v for k, v in weights.items()},
    )
    torch.testing.assert_close(ntk, full[0, 0], rtol=1e-9, atol=1e-12)


def test_one_over_sqrt_d_nngp_is_a_gaussian_logit_average():
    """Under 1/√d the logits stay random, so the NNGP (MC over Gaussian logits) differs from
    the uniform-attention 1/d one for generic inputs; token 0 sees only itself in both."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 6, generator=g, dtype=torch.float64) * 2
    k_sqrt = attention_nngp(x, x, scaling="1/sqrt(d)", samples=4000)
    k_d = attention_nngp(x, x)
    assert (k_sqrt - k_d).abs().max() > 0.05
    assert k_sqrt[0, 0] == pytest.approx(float(x[0] @ x[0] / 6), rel=1e-9)  # token 0 sees itself


@pytest.mark.slow
def test_empirical_kernels_converge_like_width_to_the_minus_half():
    """Widths 64–2048, 12 seeds each: RMS relative error of the empirical NNGP and NTK vs
    the infinite-width kernels falls with slope −½ ± 0.15 in log-log."""
    r = attention_convergence((64, 128, 256, 512, 1024, 2048), seeds=12, seq_len=3)
    assert r.nngp_slope == pytest.approx(-0.5, abs=0.15)
    assert r.ntk_slope == pytest.approx(-0.5, abs=0.15)
    assert math.isfinite(r.ntk_error[-1]) and r.ntk_error[-1] < r.ntk_error[0] / 3


def test_diagnose_entries_return_plain_dicts():
    from muscale.diagnostics.free_jacobian import free_jacobian_entry
    from muscale.diagnostics.ntk_attention import attention_ntk_entry

    a = attention_ntk_entry({"widths": [16, 32], "seeds": 1, "seq_len": 2})
    assert a["scaling"] == "1/d" and len(a["nngp_error"]) == 2 and math.isfinite(a["ntk_slope"])
    j = free_jacobian_entry(
        {"activations": ["linear"], "inits": ["orthogonal"], "depths": [4], "width": 32, "nets": 1}
    )
    assert j["rows"][0]["ks"] == 0.0
