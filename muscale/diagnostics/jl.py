r"""Johnson–Lindenstrauss random projections and their measured distortion.

Johnson & Lindenstrauss 1984, in the form of Dasgupta & Gupta 2003: a random projection to
``k ≥ 4 ln n / (ε²/2 − ε³/3)`` dimensions keeps every pairwise squared distance of ``n``
points within ``1 ± ε`` with probability at least ``1 − 1/n`` (the bound scikit-learn's
``johnson_lindenstrauss_min_dim`` implements; like it, we truncate to an integer).

Projections (all scaled so that ``E‖Rx‖² = ‖x‖²``):

* ``gaussian``: iid ``N(0, 1/k)``;
* ``achlioptas`` (Achlioptas 2003): ``√(3/k) · {+1, 0, −1}`` w.p. ``{1/6, 2/3, 1/6}``;
* ``sparse`` (Li, Hastie & Church 2006, "very sparse"): density ``1/√d``,
  ``√(s/k) · {+1, 0, −1}`` w.p. ``{1/(2s), 1 − 1/s, 1/(2s)}`` with ``s = √d`` (or ``1/density``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from muscale.errors import ConfigError, check_choice

KINDS = ("gaussian", "achlioptas", "sparse")


def jl_min_dim(n: int | np.ndarray, eps: float | np.ndarray = 0.1) -> int | np.ndarray:
    """``int(4 ln n / (ε²/2 − ε³/3))`` (scikit-learn's ``johnson_lindenstrauss_min_dim``)."""
    eps_a = np.asarray(eps, dtype=np.float64)
    if np.any((eps_a <= 0) | (eps_a >= 1)):
        raise ConfigError("eps", eps, "must be in (0, 1)")
    n_a = np.asarray(n)
    if np.any(n_a <= 0):
        raise ConfigError("n", n, "must be > 0")
    k = (4 * np.log(n_a) / (eps_a**2 / 2 - eps_a**3 / 3)).astype(np.int64)
    return int(k) if k.ndim == 0 else k


def projection_matrix(
    d: int,
    k: int,
    *,
    kind: str = "gaussian",
    density: float | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A ``d x k`` random projection (apply as ``x @ R``)."""
    check_choice("kind", kind, KINDS)
    g = torch.Generator().manual_seed(seed)
    if kind == "gaussian":
        return torch.randn(d, k, generator=g, dtype=dtype) / math.sqrt(k)
    s = 3.0 if kind == "achlioptas" else (1.0 / density if density else math.sqrt(d))
    if s < 1:
        raise ConfigError("density", density, "must be in (0, 1]")
    u = torch.rand(d, k, generator=g, dtype=torch.float64)
    sign = torch.where(u < 0.5 / s, 1.0, torch.where(u < 1.0 / s, -1.0, 0.0))
    return (sign * math.sqrt(s / k)).to(dtype)


def random_projection(
    x: torch.Tensor, k: int, *, kind: str = "gaussian", density: float | None = None, seed: int = 0
) -> torch.Tensor:
    """Project the rows of ``x`` (n, d) to ``k`` dimensions."""
    r = projection_matrix(x.shape[1], k, kind=kind, density=density, seed=seed, dtype=x.dtype)
    if kind != "gaussian":
        r = r.to_sparse() if x.shape[1] * k > 4_000_000 else r
        return (r.T @ x.T).T if r.is_sparse else x @ r
    return x @ r


@dataclass(kw_only=True)
class Distortion:
    min_ratio: float  # min over pairs of ‖Rx−Ry‖²/‖x−y‖²
    max_ratio: float
    max_abs: float  # max |ratio − 1|: the ε achieved


def distortion(x: torch.Tensor, y: torch.Tensor) -> Distortion:
    """Ratios of pairwise squared distances after (``y``) vs before (``x``) projection."""
    dx = torch.pdist(x.double()) ** 2
    dy = torch.pdist(y.double()) ** 2
    r = dy / dx
    return Distortion(
        min_ratio=float(r.min()), max_ratio=float(r.max()), max_abs=float((r - 1).abs().max())
    )
