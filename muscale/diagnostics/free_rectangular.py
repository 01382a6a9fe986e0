r"""Rectangular free additive convolution ``⊞_c`` (Benaych-Georges 2009): the singular values
of ``A + B`` for independent bi-unitarily invariant ``n x p`` matrices (``c = n/p ≤ 1``), e.g.
a weight at init plus its update.

The Hermitisations ``[[0, A], [Aᵀ, 0]]`` are free with amalgamation over the diagonal algebra
``D = C ⊕ C`` (Benaych-Georges 2009, Thm 2.7), so the additive subordination fixed point of
:mod:`.free` holds with ``z, ω ∈ D`` (Belinschi, Mai & Speicher 2017, Thm 2.2) and the
``D``-valued Cauchy transform ``G_A(b₁, b₂) = (b₂ g(b₁b₂), b₁(c g(b₁b₂) + (1−c)/(b₁b₂)))``,
``g(ζ) = tr_n (ζ − AAᵀ)⁻¹``. The first coordinate at ``b = (z, z)`` is the Cauchy transform of
the symmetrised singular-value law of ``A + B``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from muscale.diagnostics.free import WARM_TOL, FreeResult, _ladder, _result, _solve
from muscale.diagnostics.stieltjes import Atoms, offset_for_samples

CArray = NDArray[np.complex128]
Array = NDArray[np.float64]


# --- rectangular ----------------------------------------------------------------------------


@dataclass(kw_only=True, frozen=True)
class Rectangular:
    """Singular values ``s`` (length ``n``) of an ``n x p`` matrix, ``c = n/p ≤ 1``, as a
    ``D``-valued Cauchy transform of its Hermitisation (module docstring)."""

    s: Array
    c: float

    def d_cauchy(self, b: CArray) -> CArray:
        """``(G₁, G₂)`` at ``b = (b₁, b₂)`` (shape ``(2, M)``)."""
        zeta = b[0] * b[1]
        g = Atoms(x=self.s**2, w=np.full(len(self.s), 1.0 / len(self.s))).binned().cauchy(zeta)
        return np.stack([b[1] * g, b[0] * (self.c * g + (1.0 - self.c) / zeta)])


def rectangular_additive(
    a: Rectangular | ArrayLike,
    b: Rectangular | ArrayLike,
    c: float,
    x: ArrayLike | None = None,
    *,
    eps: float | None = None,
    points: int = 512,
) -> FreeResult:
    """Density of the singular values of ``A + B`` (``⊞_c``, ratio ``c = n/p ≤ 1``) from
    the singular values of ``A`` and of ``B`` (empirical, length ``n`` each). Grid default:
    ``[0, s_max(A) + s_max(B)]``; ``eps`` default: from the sample size."""
    ra = a if isinstance(a, Rectangular) else Rectangular(s=np.asarray(a, np.float64), c=c)
    rb = b if isinstance(b, Rectangular) else Rectangular(s=np.asarray(b, np.float64), c=c)
    if not 0 < c <= 1:
        raise ValueError(f"rectangular_additive: c = n/p must be in (0, 1], got {c}")
    if x is None:
        x = np.linspace(0.0, 1.05 * (ra.s.max() + rb.s.max()), points)
    x = np.asarray(x, dtype=np.float64)
    if eps is None:
        eps = max(offset_for_samples(ra.s), offset_for_samples(rb.s))
    e = np.full(x.shape, float(eps))
    scale = float(ra.s.max() + rb.s.max())
    w = None
    res = 0.0
    ladder = _ladder(e, scale)
    for n_lev, lev in enumerate(ladder):
        zz = np.stack([x + 1j * lev, x + 1j * lev])

        def resid(w, i, zz=zz):
            v = zz[:, i] + 1.0 / ra.d_cauchy(w) - w
            return w - (zz[:, i] + 1.0 / rb.d_cauchy(v) - v), None

        w0 = zz.copy() if w is None else w
        w, res = _solve(
            resid,
            w0,
            lambda w, i, zz=zz: np.all(w.imag >= zz[:, i].imag * (1 - 1e-9), axis=0),
            tol=1e-12 if n_lev == len(ladder) - 1 else WARM_TOL,
        )
    assert w is not None
    g1 = ra.d_cauchy(w)[0]  # symmetrised singular-value law at z
    return _result(x, g1, e, res, pdf_scale=2.0)  # fold the symmetric density onto s ≥ 0


__all__ = ["Rectangular", "rectangular_additive"]
