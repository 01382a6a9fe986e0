"""Spectral bias: ReLU NTK vs Gaussian kernel eigenvalues on the sphere by degree."""

from __future__ import annotations

import numpy as np
import pytest

from muscale.diagnostics.spectral_bias import (
    decay_exponent,
    degree_learning_speed,
    gaussian_eigenvalues_closed_form,
    gaussian_profile,
    relu_ntk_profile,
    sphere_eigenvalues,
)


def test_two_layer_relu_ntk_low_degrees_closed_form():
    """Depth-1 ReLU NTK κ(t) = t κ₀(t) + κ₁(t) (Bietti & Mairal 2019): on S² the Legendre
    coefficients are μ₀ = 1/2, μ₁ = 1/3, μ₂ = 5/64 (exact integrals, written here), and the
    odd degrees k ≥ 3 vanish."""
    t = np.linspace(-1, 1, 7)
    k0 = (np.pi - np.arccos(t)) / np.pi
    k1 = (t * (np.pi - np.arccos(t)) + np.sqrt(1 - t**2)) / np.pi
    assert np.allclose(relu_ntk_profile(t, 1), t * k0 + k1, atol=1e-12)
    mu = sphere_eigenvalues(lambda s: relu_ntk_profile(s, 1), 3, 9)
    assert mu[:3] == pytest.approx([0.5, 1 / 3, 5 / 64], abs=1e-9)
    assert np.max(np.abs(mu[3::2])) < 1e-9


@pytest.mark.parametrize("d", [3, 5])
def test_relu_ntk_decays_like_k_to_the_minus_d(d):
    """μ_k ~ k^(−d) on S^(d−1): fitted exponent over even k in [30, 60] within 5% of d, for
    one and two hidden layers."""
    ks = np.arange(30, 61, 2)
    for depth in (1, 2):
        mu = sphere_eigenvalues(lambda s, depth=depth: relu_ntk_profile(s, depth), d, 60)
        assert decay_exponent(mu, ks) == pytest.approx(d, rel=0.05)


@pytest.mark.parametrize("d", [3, 5])
def test_gaussian_kernel_decays_faster_than_any_exponential(d):
    mu = sphere_eigenvalues(lambda s: gaussian_profile(s, 0.5), d, 20)
    ref = gaussian_eigenvalues_closed_form(d, 20, 0.5)
    assert np.max(np.abs(mu - ref)) < 1e-13  # quadrature exact up to rounding of μ₀
    assert np.max(np.abs(mu[:6] / ref[:6] - 1)) < 1e-9
    ratio = ref[1:] / ref[:-1]
    assert np.all(np.diff(ratio) < 0)  # successive ratios shrink: super-exponential
    relu = sphere_eigenvalues(lambda s: relu_ntk_profile(s, 2), d, 20)
    assert ref[20] / ref[0] < 1e-6 * relu[20] / relu[0]


@pytest.mark.slow
def test_wide_net_learns_degrees_in_eigenvalue_order():
    """GD on a wide ReLU net: the degree-k residual falls below 1/e in increasing k order,
    each within a factor 1.6 of the kernel prediction 1/(η μ_k)."""
    r = degree_learning_speed((1, 2, 4), n=1500, width=2048, lr=3.0, budget=120)
    assert r.steps == sorted(r.steps) and min(r.steps) > 0
    for got, want in zip(r.steps, r.predicted, strict=True):
        assert want / 1.6 <= got <= want * 1.6 + 1


def test_diagnose_entry_returns_exponents():
    from muscale.diagnostics.spectral_bias import spectral_bias_entry

    out = spectral_bias_entry({"dims": [3], "kmax": 30})
    row = out["dims"][3]
    assert row["theory_exponent"] == 3.0 and 2.5 < row["relu_exponent"] < 3.5
    assert len(row["relu_ntk"]) == 31 and row["gaussian"][30] < 1e-20
