"""Empirical NTK implementations, infinite-width limits, lazy vs rich scaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from muscale.diagnostics import (
    NTKMLP,
    eigendecay,
    empirical_ntk,
    erf_ntk,
    nngp_ntk,
    ntk_vector_product,
    relu_ntk,
    width_exponents,
)
from muscale.diagnostics.lazy import lazy_vs_rich


def _x(n=8, d=4, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_jacobian_and_ntk_vp_implementations_agree():
    m = NTKMLP(4, 32, 2, out_dim=3, seed=1)
    x = _x()
    full_j = empirical_ntk(m, x, x[:5], impl="jacobian", trace="full")
    full_v = empirical_ntk(m, x, x[:5], impl="ntk_vp", trace="full")
    assert full_j.shape == (8, 5, 3, 3)
    torch.testing.assert_close(full_j, full_v, rtol=1e-10, atol=1e-12)
    mean = empirical_ntk(m, x, x[:5], trace="mean")
    total = empirical_ntk(m, x, x[:5], trace="sum")
    torch.testing.assert_close(total, 3 * mean)
    v = torch.randn(8, 3, dtype=torch.float64)
    full = empirical_ntk(m, x, trace="full")
    torch.testing.assert_close(ntk_vector_product(m, x, v), torch.einsum("nmab,mb->na", full, v))


def test_relu_ntk_closed_form_on_the_diagonal():
    """Θ(x, x) = (L + 1)·‖x‖²/d for c_σ = 2 (Σʰ(x,x) = Σ⁰, Σ̇ʰ(x,x) = 1)."""
    x = _x(5, 7)
    for depth in (1, 3):
        k = relu_ntk(x, x, depth)
        torch.testing.assert_close(torch.diagonal(k), (depth + 1) * (x * x).sum(1) / 7)
    # erf NNGP against Monte Carlo of E[erf(u)erf(v)] for one pair
    g = torch.Generator().manual_seed(0)
    nngp, _ = nngp_ntk(x[:2], x[:2], 1, activation="erf", sigma_w2=1.0)
    s = x[:2] @ x[:2].T / 7
    z = torch.randn(400_000, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(s).T
    mc = torch.mean(torch.erf(z[:, 0]) * torch.erf(z[:, 1]))
    assert float(nngp[0, 1]) == pytest.approx(float(mc), abs=4e-3)


@pytest.mark.parametrize(("act", "ref"), [("relu", relu_ntk), ("erf", erf_ntk)])
def test_empirical_ntk_converges_to_infinite_width(act, ref):
    """NTK parametrisation, depth 2: mean relative Frobenius error over 4 seeds falls with
    width (≈ width^-1/2) and is < 0.1 at width 1024."""
    x = _x()
    kinf = ref(x, x, 2) if act == "relu" else ref(x, x, 2, sigma_w2=1.0)
    errs = []
    for width in (64, 256, 1024):
        e = [
            float(
                (
                    empirical_ntk(
                        NTKMLP(
                            4,
                            width,
                            2,
                            activation=act,
                            sigma_w2=2.0 if act == "relu" else 1.0,
                            seed=s,
                        ),
                        x,
                    )
                    - kinf
                ).norm()
                / kinf.norm()
            )
            for s in range(4)
        ]
        errs.append(np.mean(e))
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 0.1
    slope = np.polyfit(np.log([64, 256, 1024]), np.log(errs), 1)[0]
    assert -0.8 < slope < -0.3


def test_ntk_eigendecay_is_polynomial_and_slower_than_gaussian_kernel():
    """Spectral bias: on the circle the ReLU NTK's eigenvalues decay polynomially, the
    Gaussian kernel's much faster."""
    t = torch.linspace(0, 2 * np.pi, 257, dtype=torch.float64)[:-1]
    x = torch.stack([torch.cos(t), torch.sin(t)], 1) * np.sqrt(2)
    lam_ntk, slope = eigendecay(relu_ntk(x, x, 2))
    lam_rbf, _ = eigendecay(torch.exp(-(torch.cdist(x, x) ** 2)))
    assert -4.0 < slope < -1.0
    assert lam_ntk[40] > 1e3 * lam_rbf[40]


@pytest.mark.slow
def test_relative_weight_change_shrinks_under_ntk_not_under_mup():
    """SGD, 20 full-batch steps, widths 64..1024 (base width 64): the hidden layers'
    ‖ΔW‖₂/‖W₀‖₂ scales like width^-1/2 under NTK and stays flat under μP; the LR-weighted
    kernel moves less and less under NTK only."""
    rows = lazy_vs_rich(widths=(64, 256, 1024), schemes=("ntk", "mup"), steps=20)
    w = width_exponents(rows, "rel_w_op")
    assert w["ntk"] == pytest.approx(-0.5, abs=0.15)
    assert abs(w["mup"]) < 0.15
    k = width_exponents(rows, "rel_k")
    assert k["ntk"] < -0.4
    assert abs(k["mup"]) < 0.2
    assert all(r.loss_T < r.loss_0 for r in rows)  # both actually train
