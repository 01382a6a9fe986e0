r"""Stieltjes (Cauchy) transforms of spectral measures, their inversion, R- and S-transforms.

A *measure* here is anything with a vectorised ``cauchy(z)``
:math:`G_\mu(z) = \int \mu(dx)/(z - x)` on ``C \ supp μ``, a ``support`` interval and a
first moment ``mean`` (the :class:`Measure` protocol). Three kinds are provided:

* :class:`Atoms` — a weighted sum of point masses: an empirical spectrum (from samples or
  the eigenvalues of a matrix) or a quadrature rule; exact ``G``.
* :class:`Semicircle` and :class:`MarchenkoPastur` — closed forms, with the branch of the
  square root fixed so that ``G(z) ~ 1/z`` at infinity (the product of two principal roots
  ``√(z−a)·√(z−b)``, analytic off ``[a, b]``).
* :func:`density_measure` — a density tabulated on a grid, turned into :class:`Atoms` by the
  trapezoid rule (accurate for ``Im z`` well above the grid step).

**Inversion** (Stieltjes–Perron): :math:`p(x) = -\frac1\pi \lim_{\varepsilon\downarrow0}
\operatorname{Im} G(x + i\varepsilon)`. At a finite ``ε`` this is the density convolved with
a Cauchy kernel of width ``ε``. For an empirical measure of ``n`` atoms the bias is ``O(ε)``
and the variance ``O(1/(nε))``, so the mean-squared error is smallest at ``ε ∝ n^(−1/3)``;
:func:`offset_for_samples` returns ``ε = 0.5 · IQR · n^(−1/3)`` (IQR = interquartile range,
a scale robust to outliers).

**R-transform** (Voiculescu): :math:`R(w) = G^{-1}(w) - 1/w`, where ``G⁻¹`` is the inverse of
``G`` near infinity — the branch with ``G⁻¹(w) → ∞`` as ``w → 0`` (``G⁻¹(w) ≈ 1/w + m₁``),
found by Newton's method from ``z₀ = 1/w + m₁``. Semicircle of variance ``s``: ``R(w) = s w``.

**S-transform** (Voiculescu; convention of Mingo & Speicher 2017 §3.6 and of Pennington et
al. 2017): with the moment generating function
:math:`\psi(z) = \int \frac{zx}{1-zx}\mu(dx) = G(1/z)/z - 1` and ``χ = ψ⁻¹`` the branch with
``χ(w) → 0`` as ``w → 0`` (``χ(w) ≈ w/m₁``), :math:`S(w) = \chi(w)\,(1+w)/w`. Then
``S_{μ⊠ν} = S_μ S_ν`` and the Marchenko–Pastur law of ``laws.py`` (ratio ``γ``, scale ``σ²``)
has ``S(w) = 1/(σ²(1 + γ w))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

CArray = NDArray[np.complex128]
Array = NDArray[np.float64]


class Measure(Protocol):
    """What the free-probability code needs of a probability measure on ``R``."""

    def cauchy(self, z: ArrayLike) -> CArray: ...

    @property
    def support(self) -> tuple[float, float]: ...

    @property
    def mean(self) -> float: ...


def _sqrt_cut(z: CArray, a: float, b: float) -> CArray:
    """``√((z−a)(z−b))`` with its cut on ``[a, b]`` and ``~ z`` at infinity."""
    return np.sqrt(z - a) * np.sqrt(z - b)


@dataclass(kw_only=True, frozen=True)
class Atoms:
    """``Σ w_i δ_{x_i}`` (weights normalised to 1). ``n_samples`` is the sample size behind
    an empirical measure (it sets the inversion offset); ``None`` for a quadrature rule."""

    x: Array
    w: Array
    n_samples: int | None = None

    @classmethod
    def from_samples(cls, samples: ArrayLike) -> Atoms:
        x = np.sort(np.asarray(samples, dtype=np.float64).ravel())
        return cls(x=x, w=np.full(len(x), 1.0 / len(x)), n_samples=len(x))

    @classmethod
    def from_matrix(cls, m: ArrayLike) -> Atoms:
        """The eigenvalues of a symmetric matrix (its empirical spectral distribution)."""
        return cls.from_samples(np.linalg.eigvalsh(np.asarray(m, dtype=np.float64)))

    def binned(self, bins: int | None = None) -> Atoms:
        """The same measure with its atoms moved to a grid of ``bins`` points (linear
        "cloud-in-cell" split between the two nearest grid points, which keeps the mass and
        the mean exactly). ``G`` changes by ``O((Δ/Im z)²)`` relative, ``Δ`` = grid step,
        and then costs ``bins`` not ``n`` terms. Default: ``Δ`` = 1/8 of the sample-size
        offset (:func:`offset_for_samples`), 512–4096 points; 4096 for a non-sample."""
        lo, hi = float(self.x.min()), float(self.x.max())
        if bins is None:
            bins = 4096
            if self.n_samples and hi > lo:
                eps = offset_for_samples(self.x, self.w, self.n_samples)
                bins = int(np.clip(np.ceil(8.0 * (hi - lo) / eps), 512, 4096))
        if len(self.x) <= bins or hi == lo:
            return self
        grid = np.linspace(lo, hi, bins)
        pos = (self.x - lo) / (hi - lo) * (bins - 1)
        i = np.clip(np.floor(pos).astype(int), 0, bins - 2)
        f = pos - i
        w = np.bincount(i, self.w * (1 - f), bins) + np.bincount(i + 1, self.w * f, bins)
        keep = w > 0
        return Atoms(x=grid[keep], w=w[keep], n_samples=self.n_samples)

    def cauchy(self, z: ArrayLike) -> CArray:
        z = np.asarray(z, dtype=np.complex128)
        flat = z.reshape(-1)
        out = np.empty(flat.shape, np.complex128)
        step = max(1, 2**22 // max(len(self.x), 1))  # bound the (len z) x (atoms) block
        for s in range(0, len(flat), step):
            out[s : s + step] = (1.0 / (flat[s : s + step, None] - self.x[None, :])) @ self.w
        return out.reshape(z.shape)

    def cauchy_d(self, z: ArrayLike) -> tuple[CArray, CArray]:
        """``(G(z), G'(z))``, sharing the reciprocals ``1/(z − x_i)``."""
        z = np.asarray(z, dtype=np.complex128)
        flat = z.reshape(-1)
        g = np.empty(flat.shape, np.complex128)
        d = np.empty(flat.shape, np.complex128)
        step = max(1, 2**22 // max(len(self.x), 1))
        for s in range(0, len(flat), step):
            r = 1.0 / (flat[s : s + step, None] - self.x[None, :])
            g[s : s + step] = r @ self.w
            d[s : s + step] = -((r * r) @ self.w)
        return g.reshape(z.shape), d.reshape(z.shape)

    @property
    def support(self) -> tuple[float, float]:
        return float(self.x.min()), float(self.x.max())

    @property
    def mean(self) -> float:
        return float(self.x @ self.w)


@dataclass(kw_only=True, frozen=True)
class Semicircle:
    """Wigner semicircle of variance ``variance`` (radius ``2√variance``) centred at
    ``center``: ``G(z) = (z' − √(z'² − 4s))/(2s)``, ``z' = z − center``."""

    variance: float = 1.0
    center: float = 0.0

    def cauchy(self, z: ArrayLike) -> CArray:
        zc = np.asarray(z, dtype=np.complex128) - self.center
        r = 2.0 * np.sqrt(self.variance)
        return (zc - _sqrt_cut(zc, -r, r)) / (2.0 * self.variance)

    def cauchy_d(self, z: ArrayLike) -> tuple[CArray, CArray]:
        """``(G, G')``; ``sG² − z'G + 1 = 0`` gives ``G' = G/(2sG − z')``."""
        g = self.cauchy(z)
        zc = np.asarray(z, dtype=np.complex128) - self.center
        return g, g / (2.0 * self.variance * g - zc)

    @property
    def support(self) -> tuple[float, float]:
        r = 2.0 * np.sqrt(self.variance)
        return self.center - r, self.center + r

    @property
    def mean(self) -> float:
        return self.center

    def pdf(self, x: ArrayLike) -> Array:
        r = 2.0 * np.sqrt(self.variance)
        x = np.asarray(x, dtype=np.float64) - self.center
        return 2.0 * np.sqrt(np.clip(r**2 - x**2, 0.0, None)) / (np.pi * r**2)


@dataclass(kw_only=True, frozen=True)
class MarchenkoPastur:
    """The MP law of ``laws.py`` (eigenvalues of ``XᵀX/n``, ``γ = p/n``, entry variance
    ``σ²``). ``G`` solves ``σ²γ z G² − (z − σ²(1−γ)) G + 1 = 0``:
    ``G(z) = (z − σ²(1−γ) − √((z−λ₋)(z−λ₊)))/(2σ²γz)``; for ``γ > 1`` the pole at 0 is the
    atom of mass ``1 − 1/γ``."""

    gamma: float = 1.0
    sigma2: float = 1.0

    def cauchy(self, z: ArrayLike) -> CArray:
        z = np.asarray(z, dtype=np.complex128)
        a, b = self.support
        s, g = self.sigma2, self.gamma
        return (z - s * (1 - g) - _sqrt_cut(z, a, b)) / (2 * s * g * z)

    def cauchy_d(self, z: ArrayLike) -> tuple[CArray, CArray]:
        """``(G, G')`` from differentiating ``a z G² − (z − b) G + 1 = 0``
        (``a = σ²γ``, ``b = σ²(1−γ)``): ``G' = (G − aG²)/(2azG − (z − b))``."""
        z = np.asarray(z, dtype=np.complex128)
        g = self.cauchy(z)
        a, b = self.sigma2 * self.gamma, self.sigma2 * (1 - self.gamma)
        return g, (g - a * g * g) / (2 * a * z * g - (z - b))

    @property
    def support(self) -> tuple[float, float]:
        r = np.sqrt(self.gamma)
        return float(self.sigma2 * (1 - r) ** 2), float(self.sigma2 * (1 + r) ** 2)

    @property
    def mean(self) -> float:
        return self.sigma2


def density_measure(x: ArrayLike, pdf: ArrayLike) -> Atoms:
    """A density tabulated on an increasing grid, as trapezoid-rule atoms (renormalised)."""
    x = np.asarray(x, dtype=np.float64)
    p = np.clip(np.asarray(pdf, dtype=np.float64), 0.0, None)
    dx = np.diff(x)
    w = np.zeros_like(x)
    w[:-1] += 0.5 * dx * p[:-1]
    w[1:] += 0.5 * dx * p[1:]
    keep = w > 0
    return Atoms(x=x[keep], w=w[keep] / w.sum(), n_samples=None)


def point_mass(x: float = 1.0) -> Atoms:
    """``δ_x``."""
    return Atoms(x=np.array([float(x)]), w=np.array([1.0]), n_samples=None)


def cauchy_d(mu: Measure, z: ArrayLike) -> tuple[CArray, CArray]:
    """``(G(z), G'(z))`` of any measure: its own ``cauchy_d`` when it has one, else a
    complex finite difference (``G`` is analytic off the support)."""
    f = getattr(mu, "cauchy_d", None)
    if f is not None:
        return f(z)
    z = np.asarray(z, dtype=np.complex128)
    h = 1e-7 * (1.0 + np.abs(z))
    g = mu.cauchy(z)
    return g, (mu.cauchy(z + h) - g) / h


# --- inversion ------------------------------------------------------------------------------


def offset_for_samples(
    samples: ArrayLike, weights: ArrayLike | None = None, n: int | None = None
) -> float:
    """Imaginary offset ``ε = 0.5 · IQR · n^(−1/3)`` for inverting the Stieltjes transform of
    an ``n``-sample empirical measure (module docstring: the MSE-optimal rate). ``weights``
    and ``n`` serve a binned measure (grid points with masses, ``n`` original samples)."""
    s = np.asarray(samples, dtype=np.float64).ravel()
    order = np.argsort(s)
    s = s[order]
    w = np.full(len(s), 1.0 / len(s)) if weights is None else np.asarray(weights)[order]
    c = np.cumsum(w) / np.sum(w)
    q1, q3 = s[np.searchsorted(c, 0.25)], s[min(np.searchsorted(c, 0.75), len(s) - 1)]
    scale = (
        q3 - q1 if q3 > q1 else max(float(np.sqrt(np.average((s - s @ w) ** 2, weights=w))), 1e-12)
    )
    return float(0.5 * scale * (n or len(s)) ** (-1.0 / 3.0))


def default_offset(mu: Measure, grid: ArrayLike | None = None) -> float:
    """Offset for inverting ``mu``: from its sample size when it is empirical, else a
    thousandth of its support width (or 2 grid steps, whichever is larger)."""
    n = getattr(mu, "n_samples", None)
    if n:
        return offset_for_samples(mu.x, mu.w, n)  # type: ignore[attr-defined]
    lo, hi = mu.support
    eps = 1e-3 * max(hi - lo, 1e-12)
    if grid is not None and len(grid) > 1:
        eps = max(eps, 2.0 * float(np.max(np.diff(np.asarray(grid)))))
    return eps


def stieltjes_inverse(cauchy, x: ArrayLike, eps: float | ArrayLike) -> Array:
    """Density ``−Im G(x + iε)/π`` on the grid ``x`` (``cauchy``: a vectorised ``G``)."""
    x = np.asarray(x, dtype=np.float64)
    return np.clip(-np.imag(cauchy(x + 1j * np.asarray(eps))) / np.pi, 0.0, None)


def density(mu: Measure, x: ArrayLike, eps: float | None = None) -> Array:
    """Density of ``mu`` on the grid ``x`` by Stieltjes–Perron inversion."""
    eps = default_offset(mu, x) if eps is None else eps
    return stieltjes_inverse(mu.cauchy, x, eps)


def cdf_from_density(x: ArrayLike, p: ArrayLike) -> Array:
    """Cumulative trapezoid integral of a density on a grid, normalised to end at 1."""
    x, p = np.asarray(x, dtype=np.float64), np.asarray(p, dtype=np.float64)
    c = np.concatenate([[0.0], np.cumsum(0.5 * np.diff(x) * (p[1:] + p[:-1]))])
    return c / c[-1] if c[-1] > 0 else c


# --- functional inversion: R- and S-transforms ----------------------------------------------


def complex_newton(f, z0: CArray, *, iters: int = 60, tol: float = 1e-14) -> CArray:
    """Solve ``f(z) = 0`` elementwise for analytic ``f`` by Newton's method with a complex
    finite-difference derivative (``f`` analytic, so one direction suffices) and step
    halving when the residual grows."""
    z = np.asarray(z0, dtype=np.complex128).copy()
    r = f(z)
    for _ in range(iters):
        h = 1e-7 * (1.0 + np.abs(z))
        d = (f(z + h) - r) / h
        step = r / np.where(d == 0, 1.0, d)
        lam = np.ones(z.shape)
        for _ in range(20):
            zn = z - lam * step
            rn = f(zn)
            bad = ~np.isfinite(rn) | (np.abs(rn) > np.abs(r))
            if not bad.any():
                break
            lam = np.where(bad, 0.5 * lam, lam)
        z, r = zn, rn
        if np.all(np.abs(r) <= tol * (1.0 + np.abs(z))):
            break
    return z


def r_transform(mu: Measure, w: ArrayLike) -> CArray:
    """``R(w) = G⁻¹(w) − 1/w`` (branch near infinity; module docstring), ``w`` small."""
    w = np.asarray(w, dtype=np.complex128)
    z = complex_newton(lambda z: mu.cauchy(z) - w, 1.0 / w + mu.mean)
    return z - 1.0 / w


def psi_transform(mu: Measure, z: ArrayLike) -> CArray:
    """Moment generating function ``ψ(z) = Σ_k m_k z^k = G(1/z)/z − 1``."""
    z = np.asarray(z, dtype=np.complex128)
    return mu.cauchy(1.0 / z) / z - 1.0


def s_transform(mu: Measure, w: ArrayLike) -> CArray:
    """``S(w) = χ(w)(1+w)/w`` with ``χ = ψ⁻¹`` the branch through 0 (module docstring).
    Needs ``mean ≠ 0`` (``S`` is defined for measures on ``[0, ∞)`` other than ``δ₀``)."""
    w = np.asarray(w, dtype=np.complex128)
    chi = complex_newton(lambda z: psi_transform(mu, z) - w, w / mu.mean)
    return chi * (1.0 + w) / w


__all__ = [
    "Atoms",
    "MarchenkoPastur",
    "Measure",
    "Semicircle",
    "cauchy_d",
    "cdf_from_density",
    "complex_newton",
    "default_offset",
    "density",
    "density_measure",
    "offset_for_samples",
    "point_mass",
    "psi_transform",
    "r_transform",
    "s_transform",
    "stieltjes_inverse",
]
