r"""Reference spectral laws of random matrix theory, as plain functions.

Each law comes with its density, its exact CDF (for Kolmogorov–Smirnov tests and fits),
its support edges and a sampler of the matrix ensemble it describes. Conventions follow
docs/diagnostics.md:

* **Marchenko–Pastur** (Marchenko & Pastur 1967): ``X`` is ``n x p`` with iid entries of
  variance ``sigma2``, ``gamma = p / n``; the law of the eigenvalues of ``XᵀX / n`` has density
  :math:`\sqrt{(\lambda_+-x)(x-\lambda_-)}/(2\pi\sigma^2\gamma x)` on
  :math:`[\lambda_-, \lambda_+]`, :math:`\lambda_\pm = \sigma^2(1\pm\sqrt\gamma)^2`, plus an atom
  of mass :math:`1 - 1/\gamma` at 0 when ``gamma > 1``.
* **Wigner semicircle** (symmetric ``H`` with off-diagonal variance ``1/N``):
  :math:`\sqrt{4-x^2}/(2\pi)` on ``[-2, 2]``.
* **Circular law** (Ginibre ``G / sqrt(N)``): uniform on the unit disk, so ``|λ|²`` is U(0, 1).
* **BBP transition** (Baik, Ben Arous & Péché 2005; Paul 2007 for the overlap): a spike
  ``θ`` of the population covariance ``I + θ v vᵀ`` shows up as an outlier at
  :math:`(1+\theta)(1+\gamma/\theta)` with squared overlap
  :math:`(1-\gamma/\theta^2)/(1+\gamma/\theta)` iff :math:`\theta > \sqrt\gamma`.
* **Tracy–Widom scale** of the largest eigenvalue (Johnstone 2001, Theorem 1.1), used as
  the margin above the bulk edge when counting outliers.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


# --- Marchenko–Pastur -----------------------------------------------------------------------


def mp_edges(gamma: float, sigma2: float = 1.0) -> tuple[float, float]:
    """Edges ``(λ₋, λ₊) = σ²(1 ∓ √γ)²`` of the continuous part of the MP law."""
    r = np.sqrt(gamma)
    return float(sigma2 * (1.0 - r) ** 2), float(sigma2 * (1.0 + r) ** 2)


def mp_pdf(x: ArrayLike, gamma: float, sigma2: float = 1.0) -> Array:
    """Density of the continuous part of the MP law (it integrates to ``min(1, 1/γ)``; for
    ``γ > 1`` the rest is an atom at 0 that a density cannot show — see :func:`mp_cdf`)."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = mp_edges(gamma, sigma2)
    inside = (x > lo) & (x < hi) & (x > 0)
    xs = np.where(inside, x, 1.0)
    dens = np.sqrt(np.clip((hi - xs) * (xs - lo), 0.0, None)) / (2 * np.pi * sigma2 * gamma * xs)
    return np.where(inside, dens, 0.0)


def _mp_antiderivative(x: Array, lo: float, hi: float) -> Array:
    r"""``∫ √((b−x)(x−a)) / x dx`` on ``[a, b]`` (a = λ₋ ≥ 0), a closed form:
    :math:`\sqrt{(b-x)(x-a)} + \frac{a+b}2 \arcsin\frac{2x-a-b}{b-a}
    - \sqrt{ab}\,\arcsin\frac{(a+b)x-2ab}{x(b-a)}`."""
    root = np.sqrt(np.clip((hi - x) * (x - lo), 0.0, None))
    t1 = np.arcsin(np.clip((2 * x - lo - hi) / (hi - lo), -1.0, 1.0))
    t2 = np.arcsin(np.clip(((lo + hi) * x - 2 * lo * hi) / (x * (hi - lo)), -1.0, 1.0))
    return root + 0.5 * (lo + hi) * t1 - np.sqrt(lo * hi) * t2


def mp_cdf(x: ArrayLike, gamma: float, sigma2: float = 1.0) -> Array:
    """Exact CDF of the MP law, including the atom of mass ``1 − 1/γ`` at 0 for ``γ > 1``."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = mp_edges(gamma, sigma2)
    atom = max(0.0, 1.0 - 1.0 / gamma)
    xc = np.clip(x, max(lo, 1e-300), hi)
    cont = _mp_antiderivative(xc, lo, hi) - _mp_antiderivative(
        np.array(lo if lo > 0 else 1e-300), lo, hi
    )
    cont = cont / (2 * np.pi * sigma2 * gamma)
    out = np.where(x >= 0, atom, 0.0) + np.where(x > lo, cont, 0.0)
    return np.clip(np.where(x >= hi, 1.0, out), 0.0, 1.0)


def mp_quantile(q: ArrayLike, gamma: float, sigma2: float = 1.0) -> Array:
    """Inverse of :func:`mp_cdf` on the continuous part (bisection, vectorised)."""
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    lo_e, hi_e = mp_edges(gamma, sigma2)
    lo, hi = np.full_like(q, lo_e), np.full_like(q, hi_e)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        below = mp_cdf(mid, gamma, sigma2) < q
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def mp_moments(gamma: float, sigma2: float = 1.0) -> tuple[float, float]:
    """Mean ``σ²`` and variance ``σ⁴γ`` of the MP law (γ ≤ 1; for γ > 1 with the atom
    included the mean is ``σ²`` and the variance ``σ⁴γ`` as well)."""
    return float(sigma2), float(sigma2**2 * gamma)


def sample_mp(n: int, p: int, sigma2: float = 1.0, *, seed: int = 0) -> Array:
    """Eigenvalues of ``XᵀX / n`` for ``X`` ``n x p`` Gaussian (``γ = p/n``), ascending;
    numerical zeros (``|λ| < 1e-10 λ_max``: for ``p > n`` the ``p − n`` zero eigenvalues come
    out as ±1e-15) are set to exactly 0, matching the MP atom."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p)) * np.sqrt(sigma2)
    ev = np.linalg.eigvalsh(x.T @ x / n)
    return np.where(np.abs(ev) < 1e-10 * ev.max(), 0.0, ev)


# --- Wigner semicircle and circular law -----------------------------------------------------


def semicircle_pdf(x: ArrayLike, radius: float = 2.0) -> Array:
    """Semicircle density ``2√(R² − x²)/(πR²)``; ``R = 2`` is the Wigner law of a symmetric
    matrix with off-diagonal variance ``1/N``."""
    x = np.asarray(x, dtype=np.float64)
    return 2.0 * np.sqrt(np.clip(radius**2 - x**2, 0.0, None)) / (np.pi * radius**2)


def semicircle_cdf(x: ArrayLike, radius: float = 2.0) -> Array:
    """Exact CDF: ``1/2 + (u√(1−u²) + arcsin u)/π`` with ``u = x/R``."""
    u = np.clip(np.asarray(x, dtype=np.float64) / radius, -1.0, 1.0)
    return 0.5 + (u * np.sqrt(1.0 - u**2) + np.arcsin(u)) / np.pi


def wigner_matrix(n: int, *, seed: int = 0) -> Array:
    """GOE-type symmetric matrix with off-diagonal variance ``1/n`` (diagonal ``2/n``)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n))
    return (a + a.T) / np.sqrt(2.0 * n)


def circular_radius_cdf(r: ArrayLike) -> Array:
    """CDF of ``|λ|`` under the circular law: ``r²`` on ``[0, 1]``."""
    return np.clip(np.asarray(r, dtype=np.float64), 0.0, 1.0) ** 2


def circular_pdf(z: ArrayLike) -> Array:
    """Density of the circular law on the complex plane: ``1/π`` on the unit disk."""
    return np.where(np.abs(np.asarray(z)) <= 1.0, 1.0 / np.pi, 0.0)


def ginibre_matrix(n: int, *, seed: int = 0) -> Array:
    """Non-symmetric ``G / √n`` with iid standard Gaussian entries."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n)) / np.sqrt(n)


# --- BBP and Tracy–Widom --------------------------------------------------------------------


def bbp_threshold(gamma: float) -> float:
    """Critical spike strength ``√γ``: weaker spikes hide in the bulk."""
    return float(np.sqrt(gamma))


def bbp_outlier(theta: float, gamma: float) -> tuple[float, float]:
    """Predicted top eigenvalue and squared overlap for a spike ``θ`` (population
    covariance ``I + θ v vᵀ``, ``γ = p/n``; Baik–Ben Arous–Péché 2005, Paul 2007).

    Above threshold: ``((1+θ)(1+γ/θ), (1 − γ/θ²)/(1 + γ/θ))``; at or below it the eigenvalue
    sticks to the edge ``(1+√γ)²`` and the overlap is 0.
    """
    if theta <= np.sqrt(gamma):
        return (1.0 + np.sqrt(gamma)) ** 2, 0.0
    lam = (1.0 + theta) * (1.0 + gamma / theta)
    overlap = (1.0 - gamma / theta**2) / (1.0 + gamma / theta)
    return float(lam), float(overlap)


def spiked_covariance_sample(
    n: int, p: int, thetas: ArrayLike, *, seed: int = 0
) -> tuple[Array, Array]:
    """``n`` samples (rows) of ``N(0, I + Σ θ_k e_k e_kᵀ)`` in dimension ``p``; returns the data
    matrix ``X`` (``n x p``) and the spike directions (``p x K``, here the first ``K`` axes
    rotated by a random orthogonal matrix so they are not coordinate-aligned)."""
    rng = np.random.default_rng(seed)
    thetas = np.atleast_1d(np.asarray(thetas, dtype=np.float64))
    q, _ = np.linalg.qr(rng.standard_normal((p, len(thetas))))
    z = rng.standard_normal((n, p))
    # x = z + Σ (sqrt(1+θ)-1) (z·v) vᵀ has covariance I + Σ θ v vᵀ for orthonormal v.
    proj = z @ q
    x = z + (proj * (np.sqrt(1.0 + thetas) - 1.0)) @ q.T
    return x, q


def tracy_widom_scale(n: int, p: int, sigma2: float = 1.0) -> tuple[float, float]:
    """Centre and scale of the largest eigenvalue of ``XᵀX / n`` (Johnstone 2001):
    ``μ = σ²(√(n−1) + √p)²/n``, ``s = σ²(√(n−1) + √p)(1/√(n−1) + 1/√p)^{1/3}/n``; then
    ``(λ_max − μ)/s`` → Tracy–Widom₁ (mean −1.21, sd 1.27, P(TW₁ > 4) ≈ 2·10⁻⁴)."""
    a, b = np.sqrt(max(n - 1, 1)), np.sqrt(p)
    mu = sigma2 * (a + b) ** 2 / n
    s = sigma2 * (a + b) * (1.0 / a + 1.0 / b) ** (1.0 / 3.0) / n
    return float(mu), float(s)
