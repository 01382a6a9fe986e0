"""Weight spectra: power-law MLE, batched SVDs, planted spikes in a model, monitor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from muscale.diagnostics import (
    batched_svdvals,
    bbp_outlier,
    powerlaw_fit,
    spectral_summary,
    weight_spectra,
)


def _pareto_z(alpha: float, xmin: float | None) -> np.ndarray:
    z = []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        tail = (1 - rng.random(2000)) ** (-1 / (alpha - 1))  # Pareto(α), x_min = 1
        body = rng.uniform(0.05, 1.0, 1000)  # not a power law: x_min must cut it off
        fit = powerlaw_fit(np.concatenate([tail, body]), xmin=xmin)
        z.append((fit.alpha - alpha) / fit.alpha_se)
    return np.array(z)


def test_powerlaw_mle_recovers_planted_exponent_within_standard_error():
    """Known x_min: the MLE is within its standard error (α−1)/√n (CSN eq. 3.2) — over 12
    seeds the z-scores have |mean| < 0.6, sd in [0.6, 1.4], all |z| < 3."""
    z = _pareto_z(2.5, xmin=1.0)
    assert abs(z.mean()) < 0.6
    assert 0.6 < z.std() < 1.4
    assert np.all(np.abs(z) < 3)


def test_powerlaw_ks_chosen_xmin_stays_near_the_standard_error():
    """KS-chosen x_min adds its own uncertainty (CSN §3.3 bootstrap it); the error stays of
    the order of the SE: mean |z| < 1.5, all |z| < 3.5."""
    z = _pareto_z(2.5, xmin=None)
    assert np.mean(np.abs(z)) < 1.5
    assert np.all(np.abs(z) < 3.5)


def test_batched_svdvals_match_per_matrix_and_group_transposes():
    g = torch.Generator().manual_seed(0)
    mats = {
        "a": torch.randn(64, 32, generator=g),
        "b": torch.randn(32, 64, generator=g),
        "c": torch.randn(50, 50, generator=g),
    }
    out = batched_svdvals(mats)
    for k, m in mats.items():
        ref = np.sort(torch.linalg.svdvals(m.double()).numpy())
        assert np.allclose(np.sort(out[k]), ref, rtol=1e-4)


def test_weight_spectra_fits_init_variance_and_finds_planted_spike():
    """Gaussian layers: fitted σ² = init variance (1%), no spikes; a rank-one signal with
    θ above the BBP threshold is the one spike, at the predicted λ."""
    torch.manual_seed(0)
    n, p = 2048, 512
    model = nn.Sequential(nn.Linear(p, n, bias=False), nn.Linear(n, p, bias=False))
    with torch.no_grad():
        model[0].weight.normal_(0, 0.05)
        model[1].weight.normal_(0, 0.05)
        # W = G + signal: make row covariance I + θ v vᵀ (σ² units) in the first layer
        theta = 3.0
        v = torch.randn(p)
        v /= v.norm()
        w = model[0].weight  # (n, p): rows are samples of dim p
        model[0].weight.copy_(w + (np.sqrt(1 + theta) - 1) * (w @ v)[:, None] * v[None, :])
    rows = {r.name: r for r in weight_spectra(model)}
    assert rows["1.weight"].mp_sigma2 == pytest.approx(0.05**2, rel=0.01)
    assert rows["1.weight"].num_spikes == 0
    r0 = rows["0.weight"]
    assert r0.num_spikes == 1
    lam, _ = bbp_outlier(theta, p / n)
    # the outlier fluctuates with relative sd ≈ √(2(1 − γ/θ²)/n) ≈ 3% (Paul 2007): 2.5 sd
    assert r0.spikes[0] == pytest.approx(lam * 0.05**2, rel=0.08)
    sv = torch.linalg.svdvals(model[1].weight.detach().double())
    assert rows["1.weight"].stable_rank == pytest.approx(
        float((sv**2).sum() / sv[0] ** 2), rel=1e-4
    )


def test_weight_spectra_accepts_a_state_dict_and_skips_vectors():
    sd = {"w": torch.randn(100, 40), "b": torch.randn(40), "tiny": torch.randn(3, 100)}
    rows = weight_spectra(sd)
    assert [r.name for r in rows] == ["w"]


def test_spectral_summary_keys_and_values():
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 32))
    out = spectral_summary(model)
    assert set(out) >= {
        "spectral/0.weight/sigma_max",
        "spectral/2.weight/stable_rank",
        "spectral/mean/alpha",
    }
    smax = float(torch.linalg.svdvals(model[0].weight.detach()).max())
    assert out["spectral/0.weight/sigma_max"] == pytest.approx(smax, rel=1e-5)
    assert all(isinstance(v, float) for v in out.values())
