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


def test_powerlaw_mle_recovers_planted_exponent_within_standard_error():
    """Pareto(α) samples above x_min = 1 mixed with a sub-x_min body: over 12 seeds the
    z-scores (α̂ − α)/SE have |mean| < 1 and sd within [0.5, 1.6] (the SE is honest), and
    each estimate is within 3 SE."""
    alpha = 2.5
    z = []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        tail = (1 - rng.random(2000)) ** (-1 / (alpha - 1))
        body = rng.uniform(0.05, 1.0, 1000)
        fit = powerlaw_fit(np.concatenate([tail, body]))
        z.append((fit.alpha - alpha) / fit.alpha_se)
        assert abs(z[-1]) < 3
        assert fit.xmin == pytest.approx(1.0, rel=0.3)
    assert abs(np.mean(z)) < 1.0
    assert 0.5 < np.std(z) < 1.6


def test_batched_svdvals_match_per_matrix_and_group_transposes():
    g = torch.Generator().manual_seed(0)
    mats = {"a": torch.randn(64, 32, generator=g), "b": torch.randn(32, 64, generator=g),
            "c": torch.randn(50, 50, generator=g)}
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
    assert r0.spikes[0] == pytest.approx(lam * 0.05**2, rel=0.03)
    sv = torch.linalg.svdvals(model[1].weight.double())
    assert rows["1.weight"].stable_rank == pytest.approx(float((sv**2).sum() / sv[0] ** 2),
                                                         rel=1e-4)


def test_weight_spectra_accepts_a_state_dict_and_skips_vectors():
    sd = {"w": torch.randn(100, 40), "b": torch.randn(40), "tiny": torch.randn(3, 100)}
    rows = weight_spectra(sd)
    assert [r.name for r in rows] == ["w"]


def test_spectral_summary_keys_and_values():
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 32))
    out = spectral_summary(model)
    assert set(out) >= {"spectral/0.weight/sigma_max", "spectral/2.weight/stable_rank",
                        "spectral/mean/alpha"}
    smax = float(torch.linalg.svdvals(model[0].weight.detach()).max())
    assert out["spectral/0.weight/sigma_max"] == pytest.approx(smax, rel=1e-5)
    assert all(isinstance(v, float) for v in out.values())
