"""Dynamical isometry: JJᵀ spectra of critical MLPs vs free-probability predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from muscale.diagnostics import (
    critical_point,
    critical_sigma_w,
    jacobian_spectrum,
    theory_jjt_variance,
)


def test_mean_field_critical_points():
    assert critical_sigma_w("relu") == pytest.approx(math.sqrt(2), rel=1e-6)
    assert critical_sigma_w("linear") == pytest.approx(1.0, rel=1e-6)
    sw, sb = critical_point("tanh", 1 / 64)
    assert sw > 1.0 and sb > 0.0
    # Theory (Pennington et al. 2017): linear L vs 0, ReLU 2L vs L.
    assert theory_jjt_variance("linear", "gaussian", 5) == pytest.approx(5)
    assert theory_jjt_variance("linear", "orthogonal", 5) == pytest.approx(0, abs=1e-9)
    assert theory_jjt_variance("relu", "gaussian", 5) == pytest.approx(10)
    assert theory_jjt_variance("relu", "orthogonal", 5) == pytest.approx(5)


@pytest.mark.parametrize(
    ("act", "init"), [("linear", "gaussian"), ("relu", "gaussian"), ("relu", "orthogonal")]
)
@pytest.mark.parametrize("depth", [4, 8])
def test_jjt_variance_matches_theory(act, init, depth):
    """Width 512, mean of var/mean² over 3 seeds within 12% of L(μ₂/μ₁² − 1 − s₁)."""
    rows = [jacobian_spectrum(act, init, depth, width=512, seed=s) for s in range(3)]
    var = np.mean([r.variance_normalized for r in rows])
    assert var == pytest.approx(theory_jjt_variance(act, init, depth), rel=0.12)
    assert np.mean([r.mean for r in rows]) == pytest.approx(1.0, abs=0.15)  # χ^L = 1


def test_orthogonal_tanh_stays_isometric_while_gaussian_spreads():
    """Critical tanh, q* = 1/64: orthogonal weights keep var(JJᵀ) ≈ 0 up to depth 32
    (matching theory), Gaussian weights spread like L; linear orthogonal is exactly 0."""
    q = 1 / 64
    ortho = [jacobian_spectrum("tanh", "orthogonal", L, width=256, q_star=q) for L in (4, 32)]
    gauss = [jacobian_spectrum("tanh", "gaussian", L, width=256, q_star=q) for L in (4, 32)]
    for r in ortho:
        assert r.variance < 0.1
        assert r.variance == pytest.approx(r.theory_variance, rel=0.3, abs=0.01)
        assert r.max_singular < 1.5
    assert gauss[1].variance > 15 and gauss[1].variance > 5 * gauss[0].variance
    assert jacobian_spectrum("linear", "orthogonal", 16, width=128).variance < 1e-10
