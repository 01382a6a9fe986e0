"""Reference laws against Monte-Carlo spectra and closed forms (all seeded)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from muscale.diagnostics import (
    bbp_outlier,
    circular_radius_cdf,
    fit_mp,
    ginibre_matrix,
    ks_distance,
    mp_cdf,
    mp_edges,
    mp_outliers,
    mp_pdf,
    sample_mp,
    semicircle_cdf,
    semicircle_pdf,
    spiked_covariance_sample,
    wigner_matrix,
)


@pytest.mark.parametrize("gamma", [0.1, 0.5, 1.0, 2.5])
def test_mp_cdf_is_the_integral_of_the_density(gamma):
    lo, hi = mp_edges(gamma, 0.7)
    atom = max(0.0, 1 - 1 / gamma)
    for x in np.linspace(lo, hi, 9)[1:-1]:
        num = atom + quad(lambda t: mp_pdf(t, gamma, 0.7), lo, x, limit=200)[0]
        assert mp_cdf(x, gamma, 0.7) == pytest.approx(num, abs=1e-6)
    assert mp_cdf(hi, gamma, 0.7) == pytest.approx(1.0)
    assert mp_cdf(-1e-9, gamma, 0.7) == 0.0


@pytest.mark.parametrize(("n", "p"), [(2000, 500), (1000, 1000), (400, 1000)])
def test_gaussian_esd_matches_marchenko_pastur(n, p):
    """KS distance of the ESD to the exact MP CDF is O(log p / p) (eigenvalue rigidity);
    for γ > 1 the CDF includes the atom of mass 1 − 1/γ at zero."""
    eigs = sample_mp(n, p, 0.5, seed=3)
    left = np.nextafter(eigs, -np.inf)  # the model's left limits F(x−) (the atom at 0)
    d = ks_distance(eigs, mp_cdf(eigs, p / n, 0.5), mp_cdf(left, p / n, 0.5))
    assert d < 0.02
    wrong = ks_distance(eigs, mp_cdf(eigs, p / n, 0.6), mp_cdf(left, p / n, 0.6))
    assert wrong > 5 * d  # a 20% wrong σ² is rejected


def test_mp_fit_recovers_sigma2_with_and_without_spikes():
    eigs = sample_mp(3000, 600, 0.37, seed=1)
    assert fit_mp(eigs, 0.2).sigma2 == pytest.approx(0.37, rel=0.01)
    x, _ = spiked_covariance_sample(3000, 600, [20.0, 10.0, 5.0], seed=2)
    ev = np.linalg.eigvalsh(x.T @ x / 3000)
    assert fit_mp(ev, 0.2).sigma2 == pytest.approx(1.0, rel=0.01)  # spikes do not inflate σ²


def test_symmetric_gaussian_matches_semicircle():
    ev = np.linalg.eigvalsh(wigner_matrix(1500, seed=0))
    assert ks_distance(ev, semicircle_cdf(ev)) < 0.01
    grid = np.linspace(-2, 2, 20001)
    m2 = np.sum(grid**2 * semicircle_pdf(grid)) * (grid[1] - grid[0])
    m4 = np.sum(grid**4 * semicircle_pdf(grid)) * (grid[1] - grid[0])
    assert (m2, m4) == pytest.approx((1.0, 2.0), abs=1e-3)  # Catalan numbers
    assert np.mean(ev**2) == pytest.approx(1.0, abs=0.01)


def test_nonsymmetric_gaussian_matches_circular_law():
    ev = np.linalg.eigvals(ginibre_matrix(1500, seed=0))
    r = np.sort(np.abs(ev))
    assert ks_distance(r, circular_radius_cdf(r)) < 0.02  # |λ|² ~ U(0, 1)
    angles = np.sort(np.angle(ev))
    assert ks_distance(angles, (angles + np.pi) / (2 * np.pi)) < 0.03  # isotropic


@pytest.mark.parametrize("theta", [1.0, 2.0, 4.0])
def test_bbp_spike_location_and_overlap(theta):
    """γ = 0.25: threshold √γ = 0.5. Location within 2%, squared overlap within 0.04."""
    n, p = 4000, 1000
    x, v = spiked_covariance_sample(n, p, [theta], seed=5)
    ev, vec = np.linalg.eigh(x.T @ x / n)
    fit = fit_mp(ev, p / n, n=n)
    found = mp_outliers(ev, fit)
    lam, overlap = bbp_outlier(theta, p / n)
    assert len(found) == 1
    assert found[0] == pytest.approx(lam, rel=0.02)
    assert float((vec[:, -1] @ v[:, 0]) ** 2) == pytest.approx(overlap, abs=0.04)


@pytest.mark.parametrize("seed", range(5))
def test_spikes_below_threshold_are_not_reported(seed):
    n, p = 4000, 1000
    x, _ = spiked_covariance_sample(n, p, [0.3, 0.2], seed=seed)  # both < √γ = 0.5
    ev = np.linalg.eigvalsh(x.T @ x / n)
    assert len(mp_outliers(ev, fit_mp(ev, p / n, n=n))) == 0
    assert bbp_outlier(0.3, 0.25) == (pytest.approx(2.25), 0.0)
