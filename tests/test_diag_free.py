"""Free probability: Stieltjes/R/S-transforms and free convolutions against closed forms and
seeded Monte Carlo (tolerances from the issue: KS < 0.02 / 0.03, moments to 1e-6,
S-transform to 1e-8)."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from muscale.diagnostics.free import (
    free_additive,
    free_additive_cauchy,
    free_moments,
    free_multiplicative,
)
from muscale.diagnostics.free_rectangular import rectangular_additive
from muscale.diagnostics.laws import mp_pdf, wigner_matrix
from muscale.diagnostics.spectra import ks_distance
from muscale.diagnostics.stieltjes import (
    Atoms,
    MarchenkoPastur,
    Semicircle,
    density,
    offset_for_samples,
    r_transform,
    s_transform,
)


def _haar(m: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((m, m)))
    return q * np.sign(np.diag(r))


def test_closed_form_cauchy_transforms_invert_to_their_densities():
    x = np.linspace(0.05, 7.0, 50)
    for gamma in (0.3, 1.0):
        mp = MarchenkoPastur(gamma=gamma, sigma2=1.3)
        assert np.max(np.abs(density(mp, x, 1e-10) - mp_pdf(x, gamma, 1.3))) < 1e-6
    # an empirical measure: ε from the sample size, n^(-1/3)
    s = np.random.default_rng(0).standard_normal(8000)
    assert offset_for_samples(s) == pytest.approx(0.5 * 1.349 * 8000 ** (-1 / 3), rel=0.05)


def test_r_and_s_transforms():
    """R of the semicircle of variance s is s·w; S of MP(γ, σ²) is 1/(σ²(1 + γw))."""
    w = np.array([0.1, -0.2, 0.05 + 0.1j])
    assert np.max(np.abs(r_transform(Semicircle(variance=2.0), w) - 2.0 * w)) < 1e-10
    for gamma, s2 in ((0.5, 1.0), (1.0, 2.0), (2.5, 1.3)):
        s = s_transform(MarchenkoPastur(gamma=gamma, sigma2=s2), w)
        assert np.max(np.abs(s - 1.0 / (s2 * (1.0 + gamma * w)))) < 1e-8


def test_semicircle_plus_semicircle_is_semicircle():
    a, b = 1.0, 2.5
    x = np.linspace(-5, 5, 101)
    z = x + 1e-6j
    g, res = free_additive_cauchy([Semicircle(variance=a), Semicircle(variance=b)], z)
    assert res < 1e-10
    assert np.max(np.abs(g - Semicircle(variance=a + b).cauchy(z))) < 1e-8
    r = free_additive([Semicircle(variance=a), Semicircle(variance=b)], x, eps=1e-6)
    assert np.max(np.abs(r.pdf - Semicircle(variance=a + b).pdf(x))) < 1e-3


@pytest.mark.slow
def test_semicircle_plus_mp_matches_goe_plus_wishart():
    """n = 2000: eigenvalues of GOE + Wishart(γ = 1/2) vs semicircle ⊞ MP, KS < 0.02."""
    n = 2000
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2 * n, n))
    ev = np.linalg.eigvalsh(wigner_matrix(n, seed=2) + x.T @ x / (2 * n))
    r = free_additive(
        [Semicircle(), MarchenkoPastur(gamma=0.5)], np.linspace(-3, 6, 3000), eps=1e-4
    )
    assert r.residual < 1e-9
    assert ks_distance(ev, np.interp(ev, r.x, r.cdf)) < 0.02


def test_mp_times_mp_matches_sampled_products():
    """Eigenvalues of W₁W₂ (W₁ ~ Wishart γ=1, W₂ ~ Wishart γ=1/2, n = 500, 2 draws) vs
    MP(1) ⊠ MP(1/2), KS < 0.02."""
    m = 500
    rng = np.random.default_rng(3)
    ev = []
    for _ in range(2):
        a = rng.standard_normal((m, m)) / np.sqrt(m)
        b = rng.standard_normal((2 * m, m)) / np.sqrt(2 * m)
        ev.append(np.real(np.linalg.eigvals((a.T @ a) @ (b.T @ b))))
    e = np.sort(np.concatenate(ev))
    r = free_multiplicative(
        [MarchenkoPastur(gamma=1.0), MarchenkoPastur(gamma=0.5)], points=1500, log_grid=True
    )
    assert ks_distance(e, np.interp(e, r.x, r.cdf)) < 0.02


@pytest.mark.parametrize("L", [2, 3, 5, 8])
def test_product_of_gaussians_has_fuss_catalan_moments(L):
    """MP(1)^{⊠L} = law of (G_L⋯G_1)(G_L⋯G_1)ᵀ: moments FC_L(k) = C((L+1)k, k)/(Lk+1)."""
    m = free_moments([(MarchenkoPastur(gamma=1.0), L)], 6)
    fc = np.array([comb((L + 1) * k, k) / (L * k + 1) for k in range(1, 7)])
    assert np.max(np.abs(m / fc - 1)) < 1e-6


def test_empirical_inputs_and_binning():
    """Two 10⁴-atom empirical measures: binning (grid step 1/8 of the sample offset) changes
    G by < 1e-3 at that offset,
    and ⊞ of two sampled semicircles matches the semicircle of the summed variance."""
    rng = np.random.default_rng(4)
    a = Atoms.from_samples(rng.standard_normal(10_000))
    eps = offset_for_samples(a.x)
    z = np.linspace(-2, 2, 9) + 1j * eps
    b = a.binned()
    assert len(b.x) <= 4096 and b.n_samples == 10_000 and b.mean == pytest.approx(a.mean, abs=1e-12)
    assert np.max(np.abs(b.cauchy(z) - a.cauchy(z)) / np.abs(a.cauchy(z))) < 1e-3
    w1 = np.linalg.eigvalsh(wigner_matrix(1500, seed=6))
    w2 = np.linalg.eigvalsh(wigner_matrix(1500, seed=7))
    x = np.linspace(-3.5, 3.5, 200)
    r = free_additive([Atoms.from_samples(w1), Atoms.from_samples(w2)], x, eps=0.05)
    ref = -np.imag(Semicircle(variance=2.0).cauchy(x + 0.05j)) / np.pi
    assert np.max(np.abs(r.pdf - ref)) < 0.01


def test_rectangular_convolution_matches_sampled_sum():
    """Singular values of A + B, A Gaussian 300x600 (entries 1/p), B = U diag(s) Vᵀ with
    Haar U, V; predicted from one independent sample of A's singular values. KS < 0.03."""
    n, p = 300, 600
    rng = np.random.default_rng(8)
    s_b = np.linspace(0.5, 2.0, n)
    s_a = np.linalg.svd(rng.standard_normal((n, p)) / np.sqrt(p), compute_uv=False)
    sv = []
    for _ in range(2):
        a = rng.standard_normal((n, p)) / np.sqrt(p)
        b = _haar(n, rng) @ np.diag(s_b) @ _haar(p, rng)[:n, :]
        sv.append(np.linalg.svd(a + b, compute_uv=False))
    s = np.sort(np.concatenate(sv))
    r = rectangular_additive(s_a, s_b, n / p, eps=0.01)
    assert r.residual < 1e-8
    assert ks_distance(s, np.interp(s, r.x, r.cdf)) < 0.03
    # without the rectangular structure (treating ±s as a square ⊞) the answer is wrong
    sym = lambda v: Atoms.from_samples(np.concatenate([v, -v]))  # noqa: E731
    wrong = free_additive([sym(s_a), sym(s_b)], np.linspace(-4, 4, 800), eps=0.01)
    pos = wrong.x >= 0
    cdf_wrong = np.clip(2 * wrong.cdf[pos] - 1, 0, 1)
    assert ks_distance(s, np.interp(s, wrong.x[pos], cdf_wrong)) > 0.05
