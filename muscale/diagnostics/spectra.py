r"""Weight spectra: ESD, Marchenko–Pastur bulk fit, BBP outliers, power-law tail, norms.

For a weight matrix ``W`` of shape ``(a, b)`` let ``n = max(a, b)``, ``p = min(a, b)``,
``γ = p / n``. Its empirical spectral density (ESD) is the law of the ``p`` eigenvalues
``λ_i = s_i² / n`` (``s_i`` its singular values): exactly the Marchenko–Pastur convention of
:mod:`muscale.diagnostics.laws`, so for iid entries of variance ``σ²`` the bulk is
MP(γ, σ²) and the fitted ``σ²`` is directly comparable with the init variance.

* **Bulk fit** (robust, no KDE grid): eigenvalues scale linearly with ``σ²``, so the empirical
  quantiles ``q̂(t)`` at levels ``t ∈ [q_lo, q_hi]`` satisfy ``q̂(t) ≈ σ² q_MP(t; γ, 1)``; the
  least-squares slope through the origin is the fit. A few outliers move quantiles below
  ``q_hi`` by at most their count, so spikes do not inflate ``σ²`` (WeightWatcher instead
  brute-forces σ against a KDE of the whole ESD). The KS distance to the exact MP CDF
  is reported as a goodness of fit.
* **Outliers** (signal vs noise, the BBP picture): eigenvalues above the fitted edge
  ``λ₊`` plus ``tw_sigmas`` Tracy–Widom scales (Johnstone 2001), see
  :func:`muscale.diagnostics.laws.tracy_widom_scale`.
* **Heavy tail**: continuous power-law MLE of Clauset, Shalizi & Newman 2009 (eq. 3.1,
  ``α̂ = 1 + n / Σ ln(x_i/x_min)``, standard error ``(α̂ − 1)/√n`` eq. 3.2) with ``x_min``
  chosen to minimise the KS distance (§3.3); vectorised over all candidates.
* **Norms**: spectral norm ``s_max``, stable rank ``‖W‖_F² / ‖W‖₂²`` (Rudelson & Vershynin
  2007), and WeightWatcher's ``log_spectral_norm = log10 s_max²``,
  ``alpha_weighted = α log10 s_max²`` for comparison (Martin & Mahoney 2021).

SVDs are batched: matrices of equal (canonicalised, tall) shape are stacked and passed to one
``torch.linalg.svdvals`` call on the device where the model lives.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from muscale.diagnostics.laws import mp_cdf, mp_edges, mp_quantile, tracy_widom_scale
from muscale.errors import UserError


@dataclass(kw_only=True)
class MPFit:
    """A Marchenko–Pastur fit of the bulk of an ESD."""

    sigma2: float  # fitted entry variance
    gamma: float  # p / n
    lambda_minus: float
    lambda_plus: float  # fitted bulk edge
    ks: float  # KS distance of the whole ESD to MP(γ, σ²)
    threshold: float  # λ₊ + tw_sigmas · Tracy–Widom scale: outliers lie above it


@dataclass(kw_only=True)
class PowerLawFit:
    """Clauset–Shalizi–Newman fit of ``p(x) ∝ x^(−α)`` for ``x ≥ x_min``."""

    alpha: float
    alpha_se: float  # (α − 1)/√n_tail
    xmin: float
    n_tail: int
    ks: float


@dataclass(kw_only=True)
class LayerSpectrum:
    """Per-matrix summary (one row of the spectra table)."""

    name: str
    shape: tuple[int, ...]
    n: int
    p: int
    spectral_norm: float  # largest singular value
    stable_rank: float
    log_spectral_norm: float  # log10 of the largest eigenvalue s_max² (WeightWatcher)
    mp_sigma2: float
    mp_lambda_plus: float
    mp_ks: float
    num_spikes: int
    spikes: list[float]  # outlier eigenvalues λ = s²/n, descending
    alpha: float
    alpha_se: float
    alpha_xmin: float
    alpha_n_tail: int
    alpha_weighted: float
    eigenvalues: np.ndarray  # λ = s²/n, ascending (not in to_dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("eigenvalues")
        d["shape"] = list(self.shape)
        return d


# --- fits on an ESD -------------------------------------------------------------------------


def ks_distance(
    sorted_x: np.ndarray, cdf_values: np.ndarray, cdf_left: np.ndarray | None = None
) -> float:
    """Two-sided KS distance between the empirical CDF of ascending ``sorted_x`` and a model
    CDF evaluated at those points. Ties (e.g. the zero eigenvalues of a rank-deficient Gram
    matrix, matched by an atom of the model) jump the empirical CDF all at once."""
    x = np.asarray(sorted_x)
    n = len(x)
    before = np.searchsorted(x, x, side="left") / n  # F_n just below each point
    after = np.searchsorted(x, x, side="right") / n  # F_n at each point
    left = cdf_values if cdf_left is None else cdf_left
    return float(max(np.max(after - cdf_values), np.max(left - before)))


def fit_mp(
    eigs: np.ndarray,
    gamma: float,
    *,
    n: int | None = None,
    q_lo: float = 0.05,
    q_hi: float = 0.75,
    tw_sigmas: float = 4.0,
) -> MPFit:
    """Fit ``σ²`` of MP(γ, σ²) to the bulk of ``eigs`` (eigenvalues of ``XᵀX/n``, ``γ ≤ 1``).

    ``σ²`` is the least-squares ratio of empirical to MP(γ, 1) quantiles at 40 levels in
    ``[q_lo, q_hi]`` (robust to a few outliers, exact for a pure MP sample as p → ∞).
    ``n`` (rows) sets the Tracy–Widom margin; default ``p/γ``.
    """
    if not 0 < gamma <= 1:
        raise UserError(f"gamma={gamma} is not allowed: fit_mp takes the smaller Gram (γ ≤ 1)")
    x = np.sort(np.asarray(eigs, dtype=np.float64))
    p = len(x)
    if p < 4:
        raise UserError(f"an MP fit needs at least 4 eigenvalues, got {p}")
    levels = np.linspace(q_lo, q_hi, 40)
    ref = mp_quantile(levels, gamma, 1.0)
    emp = np.quantile(x, levels)
    sigma2 = float(np.dot(emp, ref) / np.dot(ref, ref))
    lo, hi = mp_edges(gamma, sigma2)
    n_rows = round(p / gamma) if n is None else int(n)
    _, scale = tracy_widom_scale(n_rows, p, sigma2)
    ks = ks_distance(x, mp_cdf(x, gamma, sigma2))
    return MPFit(
        sigma2=sigma2,
        gamma=float(gamma),
        lambda_minus=lo,
        lambda_plus=hi,
        ks=ks,
        threshold=hi + tw_sigmas * scale,
    )


def mp_outliers(eigs: np.ndarray, fit: MPFit) -> np.ndarray:
    """Eigenvalues above the fitted edge plus the Tracy–Widom margin, descending."""
    x = np.asarray(eigs, dtype=np.float64)
    return np.sort(x[x > fit.threshold])[::-1]


def powerlaw_fit(
    x: np.ndarray, *, xmin: float | None = None, min_tail: int = 10, max_candidates: int = 512
) -> PowerLawFit:
    """Continuous power-law MLE with KS-chosen ``x_min`` (Clauset, Shalizi & Newman 2009).

    Every candidate ``x_min`` among the data (at most ``max_candidates``, evenly spaced in
    rank, keeping at least ``min_tail`` points in the tail) is scored at once: with the data
    sorted, ``α(k) = 1 + n_k / (Σ_{j≥k} ln x_j − n_k ln x_k)`` from a reversed cumulative sum,
    and the KS distance of each tail to ``1 − (x/x_k)^(1−α_k)`` from one masked matrix.
    """
    x = np.sort(np.asarray(x, dtype=np.float64))
    x = x[x > 0]
    n = len(x)
    if n < min_tail + 1:
        return PowerLawFit(alpha=math.nan, alpha_se=math.nan, xmin=math.nan, n_tail=0, ks=math.nan)
    logx = np.log(x)
    suffix = np.cumsum(logx[::-1])[::-1]  # Σ_{j≥k} ln x_j
    n_k = n - np.arange(n)
    if xmin is not None:
        k = int(np.searchsorted(x, xmin))
        cands = np.array([k])
    else:
        last = n - min_tail
        cands = np.unique(np.linspace(0, last, min(max_candidates, last + 1)).astype(int))
    denom = suffix[cands] - n_k[cands] * logx[cands]
    alphas = np.where(denom > 0, 1.0 + n_k[cands] / np.where(denom > 0, denom, 1.0), np.nan)
    # KS of each candidate tail: rows = candidates, cols = data index j.
    j = np.arange(n)[None, :]
    kk = cands[:, None]
    mask = j >= kk
    ratio = np.exp(logx[None, :] - logx[cands][:, None])
    fitted = 1.0 - ratio ** (1.0 - alphas[:, None])
    nk = n_k[cands][:, None]
    upper = (j - kk + 1) / nk
    lower = (j - kk) / nk
    dev = np.maximum(np.abs(upper - fitted), np.abs(lower - fitted))
    ks = np.where(mask, dev, 0.0).max(axis=1)
    ks = np.where(np.isfinite(alphas), ks, np.inf)
    best = int(np.argmin(ks))
    a, nt = float(alphas[best]), int(n_k[cands[best]])
    return PowerLawFit(
        alpha=a,
        alpha_se=(a - 1.0) / math.sqrt(nt),
        xmin=float(x[cands[best]]),
        n_tail=nt,
        ks=float(ks[best]),
    )


def stable_rank(singular_values: np.ndarray) -> float:
    """``Σ s_i² / s_max²``: a numerically stable proxy for rank."""
    s = np.asarray(singular_values, dtype=np.float64)
    return float(np.sum(s**2) / np.max(s) ** 2) if s.size and s.max() > 0 else 0.0


def summarize(
    name: str, shape: tuple[int, ...], s: np.ndarray, *, tw_sigmas: float = 4.0, min_tail: int = 10
) -> LayerSpectrum:
    """All per-matrix numbers from the singular values ``s`` of one matrix."""
    n, p = max(shape[0], math.prod(shape[1:])), min(shape[0], math.prod(shape[1:]))
    s = np.sort(np.asarray(s, dtype=np.float64))
    eigs = s**2 / n
    gamma = p / n
    smax = float(s[-1])
    if smax > 0 and p >= 4:
        fit = fit_mp(eigs, gamma, n=n, tw_sigmas=tw_sigmas)
        spikes = mp_outliers(eigs, fit)
        pl = powerlaw_fit(eigs, min_tail=min_tail)
    else:  # zero (e.g. zero-initialised readout) or too small to fit
        fit = MPFit(
            sigma2=0.0,
            gamma=gamma,
            lambda_minus=0.0,
            lambda_plus=0.0,
            ks=math.nan,
            threshold=math.inf,
        )
        spikes = np.zeros(0)
        pl = PowerLawFit(alpha=math.nan, alpha_se=math.nan, xmin=math.nan, n_tail=0, ks=math.nan)
    lsn = math.log10(smax**2) if smax > 0 else -math.inf
    return LayerSpectrum(
        name=name,
        shape=tuple(shape),
        n=n,
        p=p,
        spectral_norm=smax,
        stable_rank=stable_rank(s),
        log_spectral_norm=lsn,
        mp_sigma2=fit.sigma2,
        mp_lambda_plus=fit.lambda_plus,
        mp_ks=fit.ks,
        num_spikes=len(spikes),
        spikes=[float(v) for v in spikes],
        alpha=pl.alpha,
        alpha_se=pl.alpha_se,
        alpha_xmin=pl.xmin,
        alpha_n_tail=pl.n_tail,
        alpha_weighted=pl.alpha * lsn,
        eigenvalues=eigs,
    )


# --- batched SVDs over a model --------------------------------------------------------------


def matrices(
    source: nn.Module | Mapping[str, torch.Tensor], *, min_dim: int = 2
) -> dict[str, torch.Tensor]:
    """Every weight matrix of a model or state dict (tensors with ≥ 2 dims; conv kernels
    flattened to ``(out, in·k·k)``), skipping ones whose smaller side is below ``min_dim``.
    Tied parameters (the same tensor under two names) appear once."""
    # named_parameters() already de-duplicates tied weights
    items: Iterable[tuple[str, torch.Tensor]] = (
        source.named_parameters() if isinstance(source, nn.Module) else source.items()
    )
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, t in items:
        if t.ndim < 2 or id(t) in seen:
            continue
        seen.add(id(t))
        m = t.detach().reshape(t.shape[0], -1)
        if min(m.shape) >= min_dim:
            out[name] = m
    return out


def batched_svdvals(
    mats: Mapping[str, torch.Tensor],
    *,
    dtype: torch.dtype = torch.float32,
    max_batch_elems: int = 2**27,
) -> dict[str, np.ndarray]:
    """Singular values of every matrix, one ``torch.linalg.svdvals`` call per shape group.

    Matrices are canonicalised to tall (a transpose has the same singular values), so e.g.
    an MLP's ``d x 4d`` and ``4d x d`` matrices share a group. Stacks are chunked to at most
    ``max_batch_elems`` elements. Runs on each matrix's own device.
    """
    groups: dict[tuple, list[str]] = defaultdict(list)
    for name, m in mats.items():
        a, b = m.shape
        groups[(max(a, b), min(a, b), str(m.device))].append(name)
    out: dict[str, np.ndarray] = {}
    for (a, b, _), names in groups.items():
        chunk = max(1, max_batch_elems // (a * b))
        for i in range(0, len(names), chunk):
            part = names[i : i + chunk]
            stack = torch.stack(
                [
                    (mats[k] if mats[k].shape[0] >= mats[k].shape[1] else mats[k].T).to(dtype)
                    for k in part
                ]
            )
            with torch.no_grad():
                sv = torch.linalg.svdvals(stack).double().cpu().numpy()
            for k, s in zip(part, sv, strict=True):
                out[k] = s
    return out


def weight_spectra(
    source: nn.Module | Mapping[str, torch.Tensor],
    *,
    min_dim: int = 16,
    tw_sigmas: float = 4.0,
    dtype: torch.dtype = torch.float32,
) -> list[LayerSpectrum]:
    """The spectra table of every matrix of a model or state dict, in parameter order."""
    mats = matrices(source, min_dim=min_dim)
    if not mats:
        raise UserError(f"no weight matrix with both sides >= {min_dim} to analyse")
    svals = batched_svdvals(mats, dtype=dtype)
    return [
        summarize(name, tuple(m.shape), svals[name], tw_sigmas=tw_sigmas)
        for name, m in mats.items()
    ]
