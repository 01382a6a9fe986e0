"""Whole Jacobian spectra of critical MLPs at init: free-probability prediction
(Pennington, Schoenholz & Ganguli 2017/2018) vs sampled networks."""

from __future__ import annotations

import numpy as np
import pytest

from muscale.diagnostics.free_jacobian import (
    jacobian_ks,
    predict_jacobian_spectrum,
    sampled_singular_values,
)
from muscale.diagnostics.isometry import isometry_study
from muscale.diagnostics.jacobian import theory_jjt_variance


def _moments(pred):
    """Mean and variance of λ under the predicted law (trapezoid on the log grid)."""
    x, p = pred.lam, pred.pdf
    m1 = np.trapezoid(p * x, x)
    m2 = np.trapezoid(p * x * x, x)
    return m1, m2 - m1**2


@pytest.mark.parametrize(
    ("act", "init", "depth", "q"),
    [
        ("linear", "gaussian", 8, 1.0),
        ("relu", "orthogonal", 4, 1.0),
        ("tanh", "gaussian", 8, 1 / 64),
    ],
)
def test_predicted_law_has_the_known_mean_and_variance(act, init, depth, q):
    """χ = 1 at criticality: E[λ] = 1; Var[λ] = L(μ₂/μ₁² − 1 − s₁) (Pennington et al. 2017,
    eq. 16), a closed form independent of the free-convolution code."""
    pred = predict_jacobian_spectrum(act, init, depth, q_star=q)
    m1, var = _moments(pred)
    assert m1 == pytest.approx(1.0, rel=0.01)
    assert var == pytest.approx(theory_jjt_variance(act, init, depth, q), rel=0.03)


def test_prediction_for_depth_64_is_fast():
    pred = predict_jacobian_spectrum("linear", "gaussian", 64)
    assert pred.seconds < 10.0  # < 2 s on a quiet machine; see tools/bench_diagnostics.py
    assert _moments(pred)[0] == pytest.approx(1.0, rel=0.02)


def test_orthogonal_linear_is_exactly_isometric():
    pred = predict_jacobian_spectrum("linear", "orthogonal", 32)
    assert pred.atom == 1.0
    s = sampled_singular_values("linear", "orthogonal", 32, width=128, nets=2)
    assert np.max(np.abs(s - 1.0)) < 1e-10
    assert jacobian_ks(pred, s) == 0.0


def test_isometry_study_reports_the_prediction():
    rows = isometry_study(("linear", "tanh"), ("gaussian",), (8,), width=256, predict=True)
    for r in rows:
        assert r.prediction is not None and 0.0 <= r.ks_predicted < 0.08
        assert "prediction" not in r.to_dict() and "ks_predicted" in r.to_dict()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("act", "init", "depth"),
    [
        ("linear", "gaussian", 8),
        ("linear", "gaussian", 32),
        ("tanh", "gaussian", 16),
        ("tanh", "orthogonal", 32),
        ("linear", "orthogonal", 32),
    ],
)
def test_predicted_spectrum_matches_20_sampled_networks(act, init, depth):
    """20 networks of width 512: KS(s², predicted law) < 0.05 (tanh at q* = 1/64)."""
    q = 1 / 64 if act == "tanh" else 1.0
    pred = predict_jacobian_spectrum(act, init, depth, q_star=q)
    s = sampled_singular_values(act, init, depth, width=512, nets=20, q_star=q)
    assert jacobian_ks(pred, s) < 0.05
