r"""Free additive, multiplicative and rectangular convolution by analytic subordination.

Series in moments or free cumulants diverge or lose all precision near the real axis, where
a density is read off; subordination does not. For free ``a`` and ``b`` there are analytic
self-maps ``ω_a, ω_b`` of the upper half-plane with (Biane 1998; Belinschi & Bercovici 2007,
"A new approach to subordination results in free probability"):

* **additive** ``μ_a ⊞ μ_b``: ``G(z) = G_a(ω_a) = G_b(ω_b)``, ``ω_a + ω_b = z + F(z)``
  (``F = 1/G``). With ``h(w) = F(w) − w``, ``ω_a`` is the attracting (Denjoy–Wolff) fixed
  point of ``w ↦ z + h_b(z + h_a(w))``. For several measures ``μ_k`` with multiplicities
  ``m_k`` (``μ_k`` added ``m_k`` times) the same argument gives the system
  :math:`\omega_k = z + \sum_j (m_j - \delta_{jk})\,h_j(\omega_j)`.
* **multiplicative** ``μ_a ⊠ μ_b`` (measures on ``[0, ∞)``): with
  ``ψ(z) = ∫ zx/(1−zx) dμ``, ``η = ψ/(1+ψ)`` and ``h(w) = η(w)/w``,
  ``η(z) = η_a(ω_a) = η_b(ω_b)``, ``ω_a ω_b = z η(z)``; the system is
  :math:`\omega_k = z \prod_j h_j(\omega_j)^{m_j - \delta_{jk}}` (``z = 1/x`` for a spectral
  point ``x``; ``G(x) = 1/(x(1 − η(1/x)))``). A free power ``μ^{⊠L}`` is one species with
  multiplicity ``L``: one scalar equation ``ω = z h(ω)^{L−1}`` whatever ``L``.
* **rectangular** ``⊞_c`` (Benaych-Georges 2009; in :mod:`.free_rectangular`): singular
  values of ``A + B`` for ``n x p`` ``A, B`` (``c = n/p ≤ 1``) bi-unitarily invariant and
  independent. Their Hermitisations
  ``[[0, A], [Aᵀ, 0]]`` are free with amalgamation over the diagonal algebra
  ``D = C ⊕ C`` (one coordinate per block), so the additive fixed point above holds with
  ``z, ω ∈ D`` (two coordinates) and the ``D``-valued Cauchy transform
  ``G_A(b₁, b₂) = (b₂ g(b₁b₂), b₁ (c g(b₁b₂) + (1−c)/(b₁b₂)))``, ``g(ζ) = tr_n (ζ − AAᵀ)⁻¹``
  (Belinschi, Mai & Speicher 2017, Thm 2.2; Benaych-Georges 2009, Thm 2.7). The first
  coordinate at ``b = (z, z)`` is the Cauchy transform of the *symmetrised* singular-value law.

**Numerics.** All points of a grid are solved at once (numpy, vectorised). The spectral
points ``x + iε`` are approached by continuation in ``ε`` (a geometric ladder from ``ε``
equal to the support width down to the target), each level warm-started from the last and
solved by Newton's method on the fixed-point residual (analytic Jacobian from ``G'``;
complex finite differences for the rectangular case; steps that leave the half-plane, or
raise the residual, are halved; points where no step helps are left as they are and show
in ``residual``). Far from
the axis the fixed-point map is a strict contraction, so the ladder starts inside the
basin of the right (Denjoy–Wolff) solution and Newton tracks it; this needs ~5–10 Newton
steps per level instead of the ``O(1/ε)`` plain iterations near the axis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from muscale.diagnostics.stieltjes import (
    Atoms,
    Measure,
    cauchy_d,
    cdf_from_density,
    default_offset,
)

CArray = NDArray[np.complex128]
Array = NDArray[np.float64]

# Newton tolerance on the intermediate levels of the continuation: their solutions only
# warm-start the next level, so they need not be exact (the last level is solved to 1e-12).
WARM_TOL = 1e-3


@dataclass(kw_only=True)
class FreeResult:
    """A convolution evaluated on a grid: density ``pdf`` at ``x`` (Stieltjes inversion at
    offset ``eps``), its ``cdf`` (trapezoid), the Cauchy transform ``g`` at ``x + iε``, and
    the largest final fixed-point residual (``residual``; ~1e-12 when converged)."""

    x: Array
    pdf: Array
    cdf: Array
    g: CArray
    eps: Array
    residual: float

    def _replace_pdf(self, pdf: Array) -> FreeResult:
        """The same result with a corrected density; the CDF is recomputed from the right."""
        x = self.x
        tail = np.concatenate(
            [np.cumsum((0.5 * np.diff(x) * (pdf[1:] + pdf[:-1]))[::-1])[::-1], [0.0]]
        )
        return FreeResult(
            x=x,
            pdf=pdf,
            cdf=np.clip(1.0 - tail, 0.0, 1.0),
            g=self.g,
            eps=self.eps,
            residual=self.residual,
        )


# --- the generic solver ---------------------------------------------------------------------


def _solve(
    fun: Callable[[CArray, NDArray[np.intp]], tuple[CArray, CArray | None]],
    w0: CArray,
    valid: Callable[[CArray, NDArray[np.intp]], NDArray[np.bool_]],
    *,
    iters: int = 40,
    tol: float = 1e-12,
) -> tuple[CArray, float]:
    """Newton on ``r(w) = 0`` for ``w`` of shape ``(K, M)`` (K unknowns at each of M
    independent points). ``fun(w_sub, idx)`` evaluates the points ``idx`` and returns
    ``(r, J)``, ``J`` of shape ``(len(idx), K, K)`` or ``None`` (finite differences). Only
    unconverged points are evaluated; a step is halved until it stays ``valid`` and does not
    raise the residual beyond rounding."""
    w = w0.copy()
    m = w.shape[1]
    idx = np.arange(m)
    r, jac = fun(w, idx)
    res = np.max(np.abs(r), axis=0)
    k = w.shape[0]
    stuck = np.zeros(m, bool)  # no step of length ≥ 2^-12 lowered the residual: give up there
    for _ in range(iters):
        active = (res > tol * (1 + np.max(np.abs(w), axis=0))) & ~stuck
        if not active.any():
            break
        ia = idx[active]
        wa, ra = w[:, ia], r[:, ia]
        if jac is None:
            ja = np.empty((len(ia), k, k), np.complex128)
            for j in range(k):
                h = 1e-7 * (1.0 + np.abs(wa[j]))
                wp = wa.copy()
                wp[j] += h
                ja[:, :, j] = ((fun(wp, ia)[0] - ra) / h).T
        else:
            ja = jac[ia]
        with np.errstate(all="ignore"):
            try:
                step = np.linalg.solve(ja, ra.T[..., None])[..., 0].T
            except np.linalg.LinAlgError:
                step = ra
        step = np.where(np.isfinite(step), step, 0.0)
        lam = np.ones(len(ia))
        floor = res[ia] * (1 + 1e-9) + 1e-15 * (1 + np.max(np.abs(wa), axis=0))
        todo = np.ones(len(ia), bool)
        wn, rn = wa.copy(), ra.copy()
        jn = None if jac is None else ja.copy()
        for _ in range(13):
            sub = np.flatnonzero(todo)
            trial = wa[:, sub] - lam[sub] * step[:, sub]
            with np.errstate(all="ignore"):
                rt, jt = fun(trial, ia[sub])
                ok = valid(trial, ia[sub]) & np.all(np.isfinite(rt), axis=0)
                ok &= np.max(np.abs(np.where(np.isfinite(rt), rt, np.inf)), axis=0) <= floor[sub]
            good = sub[ok]
            wn[:, good], rn[:, good] = trial[:, ok], rt[:, ok]
            if jn is not None and jt is not None:
                jn[good] = jt[ok]
            todo[good] = False
            lam[sub[~ok]] *= 0.5
            if not todo.any():
                break
        stuck[ia[todo]] = True
        w[:, ia], r[:, ia] = wn, rn
        if jac is not None and jn is not None:
            jac[ia] = jn
        res[ia] = np.max(np.abs(rn), axis=0)
    return w, float(np.max(res))


def _ladder(eps_target: Array, scale: float | Array) -> list[Array]:
    """Offsets from ``scale`` down to ``eps_target`` (geometric, ~3.6x per level; the last
    one exact)."""
    if np.any(~(eps_target > 0)):
        raise ValueError(
            "the imaginary offset must be > 0 (the transform is singular on the support)"
        )
    hi = np.maximum(scale, eps_target)
    levels = 1 + max(1, int(np.ceil(1.8 * np.log10(float(np.max(hi / eps_target))))))
    return [hi * (eps_target / hi) ** (i / (levels - 1)) for i in range(levels)]


def _as_list(measures) -> list[tuple[Measure, float]]:
    out = []
    for m in measures:
        mu, k = (m, 1) if not isinstance(m, tuple) else m
        out.append((mu.binned() if isinstance(mu, Atoms) else mu, float(k)))
    return out


def _result(
    x: Array, g: CArray, eps: Array, res: float, pdf_scale: float = 1.0, from_right: bool = False
) -> FreeResult:
    """``from_right``: the CDF is ``1 − ∫_x^{x_max} p`` (the grid covers the top edge but
    not a singular bottom, as for products: mass below ``x[0]`` is then counted right)."""
    pdf = np.clip(-np.imag(g) / np.pi, 0.0, None) * pdf_scale
    if from_right:
        tail = np.concatenate(
            [np.cumsum((0.5 * np.diff(x) * (pdf[1:] + pdf[:-1]))[::-1])[::-1], [0.0]]
        )
        cdf = np.clip(1.0 - tail, 0.0, 1.0)
    else:
        cdf = cdf_from_density(x, pdf)
    return FreeResult(x=x, pdf=pdf, cdf=cdf, g=g, eps=eps, residual=res)


# --- additive -------------------------------------------------------------------------------


def _h_add(mu: Measure, w: CArray) -> tuple[CArray, CArray]:
    """``h = F − w`` and ``h' = −G'/G² − 1``."""
    g, dg = cauchy_d(mu, w)
    return 1.0 / g - w, -dg / (g * g) - 1.0


def free_additive_cauchy(
    measures: Sequence[Measure | tuple[Measure, int]],
    z: ArrayLike,
    *,
    start_scale: float | None = None,
) -> tuple[CArray, float]:
    """Cauchy transform of ``⊞_k μ_k^{⊞ m_k}`` at ``z`` (upper half-plane), by the
    subordination system of the module docstring, continued in ``Im z`` from far away."""
    species = _as_list(measures)
    z = np.asarray(z, dtype=np.complex128).ravel()
    mult = np.array([m for _, m in species])[:, None]
    coef = mult.T - np.eye(len(species))  # c_kj = m_j − δ_kj
    los, his = zip(*(mu.support for mu, _ in species), strict=True)
    scale = start_scale or float(max(his) - min(los)) or 1.0
    eps_t = np.maximum(z.imag, 1e-300)
    w = None
    res = 0.0
    ladder = _ladder(eps_t, scale)
    for lev, eps in enumerate(ladder):
        zz = z.real + 1j * eps

        def resid(w, i, zz=zz):
            # r_k = w_k − z − Σ_j c_kj h_j(w_j), c_kj = m_j − δ_kj
            h, dh = zip(*(_h_add(mu, w[k]) for k, (mu, _) in enumerate(species)), strict=True)
            h, dh = np.stack(h), np.stack(dh)
            jac = -(coef[None] * dh.T[:, None, :]) + np.eye(len(species))[None]
            return w - (zz[i] + (mult * h).sum(0) - h), jac

        w0 = np.tile(zz, (len(species), 1)) if w is None else w.real + 1j * np.maximum(w.imag, eps)
        w, res = _solve(
            resid,
            w0,
            lambda w, i, zz=zz: np.all(w.imag >= zz[i].imag * (1 - 1e-9), axis=0),
            tol=1e-12 if lev == len(ladder) - 1 else WARM_TOL,
        )
    assert w is not None
    return species[0][0].cauchy(w[0]), res


def free_additive(
    measures: Sequence[Measure | tuple[Measure, int]],
    x: ArrayLike | None = None,
    *,
    eps: float | None = None,
    points: int = 512,
) -> FreeResult:
    """Density of the free additive convolution of ``measures`` (closed forms or
    :class:`Atoms`; a ``(measure, m)`` pair counts ``m`` times) on the grid ``x`` (default:
    ``points`` points over the sum of the supports). ``eps`` default: the largest
    :func:`~muscale.diagnostics.stieltjes.default_offset` of the inputs (from their sample
    sizes when empirical), so the output is as smooth as the roughest input allows."""
    species = _as_list(measures)
    if x is None:
        lo = sum(m * mu.support[0] for mu, m in species)
        hi = sum(m * mu.support[1] for mu, m in species)
        pad = 0.05 * (hi - lo)
        x = np.linspace(lo - pad, hi + pad, points)
    x = np.asarray(x, dtype=np.float64)
    if eps is None:
        eps = max(default_offset(mu, x) for mu, _ in species)
    e = np.full(x.shape, float(eps))
    g, res = free_additive_cauchy(species, x + 1j * e)
    return _result(x, g, e, res)


# --- multiplicative -------------------------------------------------------------------------


def _h_mult(mu: Measure, w: CArray) -> tuple[CArray, CArray]:
    """``h(w) = η(w)/w = 1/w − F(1/w)`` and ``h'(w) = (F'(1/w) − 1)/w²``,
    ``F' = −G'/G²``."""
    g, dg = cauchy_d(mu, 1.0 / w)
    return 1.0 / w - 1.0 / g, (-dg / (g * g) - 1.0) / (w * w)


def free_multiplicative_eta(
    measures: Sequence[Measure | tuple[Measure, int]],
    z: ArrayLike,
    w0: CArray | None = None,
    *,
    tol: float = 1e-12,
) -> tuple[CArray, CArray, float]:
    """``η(z)`` of ``⊠_k μ_k^{⊠ m_k}`` at ``z ∈ C \\ [0, ∞)`` by one Newton solve of the
    subordination system (start ``w0``, default the far-field ``ω_k ≈ z Π_j m₁ⱼ^(m_j−δ_jk)``,
    good for small ``|z|`` or far from the axis). Returns ``(η, ω, residual)``."""
    species = _as_list(measures)
    z = np.asarray(z, dtype=np.complex128).ravel()
    mult = np.array([m for _, m in species])[:, None]

    coef = mult.T - np.eye(len(species))  # c_kj = m_j − δ_kj

    def resid(w, i):
        # r_k = log w_k − log z − Σ_j c_kj log h_j(w_j), as the log of a ratio that is 1 at
        # the solution, so no branch cut is ever crossed
        h, dh = zip(*(_h_mult(mu, w[i]) for i, (mu, _) in enumerate(species)), strict=True)
        h, dh = np.stack(h), np.stack(dh)
        logh = np.log(h)
        r = np.log(w * np.exp(-(np.log(z[i]) + (mult * logh).sum(0) - logh)))
        jac = np.eye(len(species))[None] / w.T[:, :, None] - coef[None] * (dh / h).T[:, None, :]
        return r, jac

    if w0 is None:
        lm = np.log([mu.mean for mu, _ in species])
        w0 = np.stack([z * np.exp((mult[:, 0] * lm).sum() - lm[k]) for k in range(len(species))])
    w, res = _solve(
        resid, w0, lambda w, i: np.all(w.imag * np.sign(z[i].imag) >= 0, axis=0), tol=tol
    )
    mu0 = species[0][0]
    return 1.0 - w[0] / mu0.cauchy(1.0 / w[0]), w, res


def _top_edge(species: list[tuple[Measure, float]]) -> float:
    """Rough top edge ``e m₁ (1 + Σ m_k v_k)`` of a free product (see :func:`free_moments`),
    ``v_k`` from the first two moments of each factor (Cauchy formula on a small circle)."""
    cv = []
    for mu, _ in species:
        r1 = 0.5 / max(mu.support[1], 1e-300)
        z1 = r1 * np.exp(2j * np.pi * (np.arange(32) + 0.5) / 32)
        p1 = mu.cauchy(1.0 / z1) / z1 - 1.0
        m1, m2 = (np.real(np.mean(p1 * z1 ** (-k))) for k in (1, 2))
        cv.append(m2 / m1**2 - 1.0)
    m1 = float(np.prod([mu.mean**m for mu, m in species]))
    return float(np.e * m1 * (1.0 + sum(m * v for (_, m), v in zip(species, cv, strict=True))))


def free_multiplicative_cauchy(
    measures: Sequence[Measure | tuple[Measure, int]], t: ArrayLike, *, rel_eps: float | ArrayLike
) -> tuple[CArray, float]:
    """Cauchy transform of ``⊠_k μ_k^{⊠ m_k}`` (measures on ``[0, ∞)``, none ``δ₀``) at
    ``t(1 + i·rel_eps)``, ``t > 0`` — an offset *relative* to ``t``, so one ladder serves
    a grid spanning many decades (products of many matrices have such spectra)."""
    species = _as_list(measures)
    t = np.asarray(t, dtype=np.float64).ravel()
    rel = np.broadcast_to(np.asarray(rel_eps, dtype=np.float64), t.shape)
    w = None
    eta = np.zeros_like(t, dtype=np.complex128)
    res = 0.0
    # start each point at |z| = 1/(t|1 + i r|) ≤ 1/(10 · top edge), where the far-field start
    # is accurate, and continue along the ray to the target offset
    ladder = _ladder(rel, np.maximum(10.0, 10.0 * _top_edge(species) / t))
    for lev, r in enumerate(ladder):
        tol = 1e-12 if lev == len(ladder) - 1 else WARM_TOL
        eta, w, res = free_multiplicative_eta(species, 1.0 / (t * (1 + 1j * r)), w, tol=tol)
    x = t * (1 + 1j * rel)
    return 1.0 / (x * (1.0 - eta)), res


def free_moments(
    measures: Sequence[Measure | tuple[Measure, int]],
    kmax: int,
    *,
    radius: float | None = None,
    nodes: int = 128,
) -> Array:
    """Moments ``m_1..m_kmax`` of ``⊠_k μ_k^{⊠ m_k}`` from ``ψ = η/(1−η)`` on a circle
    ``|z| = radius`` inside its disc of analyticity (Cauchy's formula, trapezoid rule:
    spectrally accurate). Default radius: ``1/(2 e m₁ (1 + Σ m_k v_k))`` with ``m₁`` the
    product's mean and ``v_k`` each factor's squared coefficient of variation — about half of
    ``1/sup supp`` (a free product's top edge grows like ``e m₁ (1 + Σ m_k v_k)``, e.g.
    ``(L+1)^{L+1}/L^L ≈ e(L+1)`` for Fuss–Catalan), small enough for the series to converge
    and large enough that ``z^(−k)`` does not amplify rounding."""
    species = _as_list(measures)
    if radius is None:
        radius = 0.5 / _top_edge(species)
    z = radius * np.exp(2j * np.pi * (np.arange(nodes) + 0.5) / nodes)
    eta, _, _ = free_multiplicative_eta(species, z)
    psi = eta / (1.0 - eta)
    k = np.arange(1, kmax + 1)[:, None]
    return np.real(np.mean(psi[None, :] * z[None, :] ** (-k), axis=1))


def free_multiplicative(
    measures: Sequence[Measure | tuple[Measure, int]],
    x: ArrayLike | None = None,
    *,
    rel_eps: float = 1e-3,
    points: int = 512,
    log_grid: bool = False,
) -> FreeResult:
    """Density of ``⊠_k μ_k^{⊠ m_k}`` on the grid ``x`` (default: ``points`` points up to
    the product of the supports' upper edges, log-spaced over 12 decades when
    ``log_grid``). The inversion offset is ``rel_eps · x`` (relative)."""
    species = _as_list(measures)
    if x is None:
        hi = min(
            float(np.prod([mu.support[1] ** m for mu, m in species])), 1.5 * _top_edge(species)
        )
        x = (
            np.geomspace(hi * 1e-12, hi, points)
            if log_grid
            else np.linspace(hi / points, hi, points)
        )
    x = np.asarray(x, dtype=np.float64)
    g, res = free_multiplicative_cauchy(species, x, rel_eps=rel_eps)
    out = _result(x, g, rel_eps * x, res, from_right=True)
    # An atom a₀ at 0 (μ⊠ν({0}) = max(μ({0}), ν({0})), Belinschi 2003) leaks
    # a₀ε/(πx(1+ε²)) into the density at relative offset ε — over a log grid that adds up:
    # remove it, so the CDF below the grid is a₀ plus the continuous mass there.
    a0 = max(_zero_mass(mu) for mu, _ in species)
    if a0 > 0:
        out.pdf = np.clip(out.pdf - a0 * rel_eps / (np.pi * x * (1 + rel_eps**2)), 0.0, None)
        out = _result(x, g, rel_eps * x, res, from_right=True)._replace_pdf(out.pdf)
    return out


def _zero_mass(mu: Measure) -> float:
    """``μ({0})``: from the atoms, or ``1 − 1/γ`` for Marchenko–Pastur with ``γ > 1``."""
    if isinstance(mu, Atoms):
        return float(mu.w[mu.x == 0].sum())
    gamma = getattr(mu, "gamma", None)
    return max(0.0, 1.0 - 1.0 / gamma) if gamma is not None else 0.0


__all__ = [
    "FreeResult",
    "free_additive",
    "free_additive_cauchy",
    "free_moments",
    "free_multiplicative",
    "free_multiplicative_cauchy",
    "free_multiplicative_eta",
]
