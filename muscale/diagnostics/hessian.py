r"""Hessian spectra of a loss: HVPs, Lanczos top-k, Hutchinson trace, SLQ density.

* **HVP** by double backprop (Pearlmutter 1994): ``Hv = ∇(∇L · v)``. On one batch the
  gradient graph is built once and reused for every product; on a data loader (any
  iterable of batches) each product averages the per-batch HVPs, weighted by batch size —
  the HVP of the mean loss over the data set.
* **Lanczos** with full reorthogonalisation (Golub & Van Loan, Matrix Computations §10.1;
  Paige 1972 for why plain Lanczos loses orthogonality). Krylov vectors are kept in float64
  so the Ritz values converge to working precision; iterations continue until the residual
  bound ``|β_m s_{m,i}|`` of each wanted Ritz pair falls below ``tol · |θ_i|``. PyHessian
  (Yao et al. 2020) instead runs power iteration with deflation at tolerance 1e-3, which
  needs many more HVPs for the same k and stalls on clustered eigenvalues.
* **Hutchinson** (1989) trace ``E[zᵀHz]`` with Rademacher ``z``; the variance of one probe is
  ``2(‖H‖_F² − Σ h_ii²)``, of the mean of ``m`` probes that over ``m``.
* **Stochastic Lanczos quadrature** (Golub & Meurant 1994; Ubaru, Chen & Saad 2017;
  Ghorbani, Krishnan & Xiao 2019): ``m`` Lanczos steps from a unit probe ``v`` give the
  ``m``-point Gauss quadrature of the spectral measure ``μ_v = Σ (v·u_i)² δ_{λ_i}``: nodes the
  Ritz values, weights the squared first components of the Ritz vectors; it integrates
  polynomials of degree ≤ ``2m − 1`` exactly, i.e. ``Σ w_j θ_j^k = vᵀH^k v`` for k ≤ 2m−1.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from muscale.errors import UserError

MatVec = Callable[[torch.Tensor], torch.Tensor]


# --- Hessian-vector products ----------------------------------------------------------------


def math_attention() -> contextlib.AbstractContextManager:
    """Route ``scaled_dot_product_attention`` to its math kernel: the fused CPU/flash kernels
    have no double backward (needed by HVPs) nor forward-mode AD (needed by ``jvp``)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def hvp_operator(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, object], torch.Tensor],
    data: object | Iterable[object],
    *,
    loader: bool = False,
) -> tuple[MatVec, int]:
    """``(matvec, dim)``: ``v ↦ Hv`` on the flattened trainable parameters.

    ``loss_fn(model, batch)`` returns the mean loss of a batch. ``data`` is one batch, or
    with ``loader=True`` an iterable of batches (re-iterated for every product; batches are
    weighted by ``len(batch[0])`` when they are tuples/lists of tensors, else equally).
    Vectors are float64 on the model's device and are cast to the parameters' dtype.
    """
    params = _params(model)
    dim = sum(p.numel() for p in params)
    pdtype = params[0].dtype

    def unflatten(v: torch.Tensor) -> list[torch.Tensor]:
        out, i = [], 0
        for p in params:
            out.append(v[i : i + p.numel()].view_as(p).to(pdtype))
            i += p.numel()
        return out

    def hvp_from(grads: tuple[torch.Tensor, ...], v: torch.Tensor) -> torch.Tensor:
        dot = torch.stack([(g * u).sum() for g, u in zip(grads, unflatten(v), strict=True)]).sum()
        hv = torch.autograd.grad(dot, params, retain_graph=True)
        return torch.cat([h.reshape(-1) for h in hv]).to(torch.float64)

    if not loader:
        with math_attention():
            loss = loss_fn(model, data)
            grads = torch.autograd.grad(loss, params, create_graph=True)
        return (lambda v: hvp_from(grads, v)), dim

    batches = data

    def matvec(v: torch.Tensor) -> torch.Tensor:
        total, weight = None, 0.0
        for batch in batches:  # type: ignore[union-attr]
            w = float(len(batch[0])) if isinstance(batch, tuple | list) else 1.0
            with math_attention():
                g = torch.autograd.grad(loss_fn(model, batch), params, create_graph=True)
            hv = hvp_from(g, v) * w
            total = hv if total is None else total + hv
            weight += w
        if total is None:
            raise UserError("the data loader yielded no batch")
        return total / weight

    return matvec, dim


def dense_matvec(a: torch.Tensor | np.ndarray) -> tuple[MatVec, int]:
    """A symmetric matrix as a ``(matvec, dim)`` operator (for tests and references)."""
    t = torch.as_tensor(a, dtype=torch.float64)
    return (lambda v: t @ v), t.shape[0]


# --- Lanczos --------------------------------------------------------------------------------


@dataclass(kw_only=True)
class LanczosResult:
    alphas: np.ndarray  # diagonal of T
    betas: np.ndarray  # off-diagonal of T (len = steps - 1)
    basis: torch.Tensor | None  # (steps, dim) orthonormal Krylov basis, if kept
    steps: int


def lanczos(
    matvec: MatVec,
    dim: int,
    steps: int,
    *,
    v0: torch.Tensor | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    keep_basis: bool = True,
    callback: Callable[[np.ndarray, np.ndarray, float], bool] | None = None,
) -> LanczosResult:
    """``steps`` Lanczos iterations with full reorthogonalisation (two passes of classical
    Gram–Schmidt against all previous vectors: "twice is enough", Giraud et al. 2005).

    ``callback(alphas, betas, beta_next)`` is called after every step and may return True
    to stop early (used for convergence checks). Stops on an invariant subspace.
    """
    steps = int(min(steps, dim))
    if v0 is None:
        g = torch.Generator(device="cpu").manual_seed(seed)
        v0 = torch.randn(dim, generator=g, dtype=torch.float64)
    q = (v0.to(torch.float64) / v0.norm()).to(device)
    basis = torch.zeros(steps, dim, dtype=torch.float64, device=device)
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(steps):
        basis[j] = q
        w = matvec(q).to(torch.float64)
        a = float(w @ q)
        alphas.append(a)
        for _ in range(2):
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        b = float(w.norm())
        stop = callback is not None and callback(np.array(alphas), np.array(betas), b)
        if stop or j == steps - 1 or b < 1e-12 * max(1.0, abs(a)):
            break
        betas.append(b)
        q = w / b
    n = len(alphas)
    return LanczosResult(
        alphas=np.array(alphas),
        betas=np.array(betas),
        basis=basis[:n] if keep_basis else None,
        steps=n,
    )


def tridiag_eig(alphas: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors of the Lanczos tridiagonal ``T``."""
    from scipy.linalg import eigh_tridiagonal

    if len(alphas) == 1:
        return alphas.copy(), np.ones((1, 1))
    return eigh_tridiagonal(alphas, betas[: len(alphas) - 1])


@dataclass(kw_only=True)
class EigResult:
    eigenvalues: np.ndarray  # wanted eigenvalues, descending (by value or magnitude)
    eigenvectors: torch.Tensor | None  # (k, dim)
    residuals: np.ndarray  # |β_m s_{m,i}| bounds
    matvecs: int
    converged: bool


def top_eigenvalues(
    matvec: MatVec,
    dim: int,
    k: int = 1,
    *,
    which: str = "LA",
    tol: float = 1e-8,
    max_steps: int | None = None,
    check_every: int = 5,
    seed: int = 0,
    device: str | torch.device = "cpu",
    return_vectors: bool = False,
) -> EigResult:
    """Top-``k`` eigenpairs of a symmetric operator by Lanczos (``which``: "LA" largest
    algebraic, "LM" largest magnitude). Stops when every wanted Ritz pair has residual
    ``|β_m s_{m,i}| ≤ tol · max(|θ_i|, tiny)``; the Ritz values are then accurate to about
    ``residual² / gap`` (Kahan–Parlett–Jiang bound), far below ``tol`` for separated values.
    """
    if which not in ("LA", "LM"):
        raise UserError(f"which={which!r} is not allowed: choose LA or LM")
    if k > dim:
        raise UserError(f"k={k} exceeds the operator dimension {dim}")
    max_steps = min(dim, max_steps or max(10 * k, 100))
    state: dict = {"done": False}

    def pick(theta: np.ndarray) -> np.ndarray:
        order = np.argsort(-theta if which == "LA" else -np.abs(theta))
        return order[:k]

    def check(alphas: np.ndarray, betas: np.ndarray, b: float) -> bool:
        m = len(alphas)
        if m < k or (m % check_every and m < max_steps):
            return False
        theta, s = tridiag_eig(alphas, betas)
        idx = pick(theta)
        res = np.abs(b * s[-1, idx])
        state["res"] = res
        ok = bool(np.all(res <= tol * np.maximum(np.abs(theta[idx]), 1e-30)))
        state["done"] = ok
        return ok

    out = lanczos(matvec, dim, max_steps, seed=seed, device=device, callback=check)
    theta, s = tridiag_eig(out.alphas, out.betas)
    idx = pick(theta)
    vecs = None
    if return_vectors and out.basis is not None:
        vecs = torch.as_tensor(s[:, idx].T, device=out.basis.device) @ out.basis
    res = state.get("res", np.full(len(idx), np.nan))
    return EigResult(
        eigenvalues=theta[idx],
        eigenvectors=vecs,
        residuals=res,
        matvecs=out.steps,
        converged=bool(state["done"] or out.steps == dim),
    )


def power_iteration_deflation(
    matvec: MatVec,
    dim: int,
    k: int = 1,
    *,
    tol: float = 1e-3,
    max_iter: int = 100,
    seed: int = 0,
) -> EigResult:
    """PyHessian's algorithm (``hessian.eigenvalues``): for each of ``k`` eigenvalues, power
    iteration orthogonalised against the ones found, stopped when the Rayleigh quotient
    changes by less than ``tol`` relative. Kept as the baseline the benchmark compares
    against; it finds largest-magnitude eigenvalues."""
    g = torch.Generator().manual_seed(seed)
    vals: list[float] = []
    vecs: list[torch.Tensor] = []
    n_mv = 0
    for _ in range(k):
        v = torch.randn(dim, generator=g, dtype=torch.float64)
        v /= v.norm()
        lam = None
        for _ in range(max_iter):
            for u in vecs:
                v = v - (u @ v) * u
            v /= v.norm()
            hv = matvec(v)
            n_mv += 1
            new = float(hv @ v)
            v = hv / hv.norm()
            if lam is not None and abs(lam - new) / (abs(lam) + 1e-6) < tol:
                lam = new
                break
            lam = new
        vals.append(float(lam))  # type: ignore[arg-type]
        vecs.append(v)
    return EigResult(
        eigenvalues=np.array(vals),
        eigenvectors=torch.stack(vecs),
        residuals=np.full(k, np.nan),
        matvecs=n_mv,
        converged=True,
    )


# --- trace and density ----------------------------------------------------------------------


def rademacher(dim: int, n: int, *, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (n, dim), generator=g).to(torch.float64) * 2.0 - 1.0


@dataclass(kw_only=True)
class TraceEstimate:
    trace: float
    stderr: float  # sample std of the probe values / √m
    samples: np.ndarray


def hutchinson_trace(
    matvec: MatVec,
    dim: int,
    n_probes: int = 100,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> TraceEstimate:
    """Hutchinson's estimator ``(1/m) Σ zᵀHz`` with Rademacher probes."""
    z = rademacher(dim, n_probes, seed=seed).to(device)
    vals = np.array([float(zi @ matvec(zi)) for zi in z])
    se = float(vals.std(ddof=1) / math.sqrt(n_probes)) if n_probes > 1 else math.nan
    return TraceEstimate(trace=float(vals.mean()), stderr=se, samples=vals)


def hutchinson_variance(h: np.ndarray | torch.Tensor, n_probes: int = 1) -> float:
    """Exact variance of the Rademacher Hutchinson estimate with ``n_probes`` probes:
    ``2(‖H‖_F² − Σ h_ii²)/m`` (Hutchinson 1989; Avron & Toledo 2011)."""
    a = np.asarray(h, dtype=np.float64)
    return float(2.0 * (np.sum(a**2) - np.sum(np.diag(a) ** 2)) / n_probes)


@dataclass(kw_only=True)
class SLQResult:
    nodes: np.ndarray  # (n_probes, m) Ritz values
    weights: np.ndarray  # (n_probes, m) squared first components (sum to 1 per probe)
    dim: int

    def moments(self, order: int) -> np.ndarray:
        """``(1/dim) tr(H^k)`` estimates for k = 0..order (mean over probes)."""
        return np.array(
            [np.mean(np.sum(self.weights * self.nodes**k, axis=1)) for k in range(order + 1)]
        )

    def density(self, grid: np.ndarray, sigma: float | None = None) -> np.ndarray:
        """Spectral density on ``grid``: the quadrature measure smoothed by a Gaussian of
        width ``sigma`` (default: 1% of the spectral range), averaged over probes."""
        span = float(self.nodes.max() - self.nodes.min()) or 1.0
        s = sigma or 0.01 * span
        diff = (np.asarray(grid)[:, None, None] - self.nodes[None]) / s
        kern = np.exp(-0.5 * diff**2) / (s * math.sqrt(2 * math.pi))
        return (kern * self.weights[None]).sum(axis=2).mean(axis=1)


def slq(
    matvec: MatVec,
    dim: int,
    steps: int = 50,
    n_probes: int = 4,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> SLQResult:
    """Stochastic Lanczos quadrature with Rademacher probes (normalised to unit length)."""
    z = rademacher(dim, n_probes, seed=seed)
    nodes, weights = [], []
    for zi in z:
        out = lanczos(matvec, dim, steps, v0=zi, device=device, keep_basis=False)
        theta, s = tridiag_eig(out.alphas, out.betas)
        w = s[0] ** 2
        m = steps - len(theta)  # early stop on an invariant subspace: pad with zero weight
        nodes.append(np.pad(theta, (0, m), constant_values=theta[-1]))
        weights.append(np.pad(w, (0, m)))
    return SLQResult(nodes=np.array(nodes), weights=np.array(weights), dim=dim)


# --- one call for a model -------------------------------------------------------------------


@dataclass(kw_only=True)
class HessianSummary:
    top_eigenvalues: list[float]
    top_residuals: list[float]
    trace: float
    trace_stderr: float
    slq: SLQResult
    dim: int
    matvecs: int


def hessian_summary(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, object], torch.Tensor],
    data: object,
    *,
    k: int = 10,
    loader: bool = False,
    trace_probes: int = 50,
    slq_steps: int = 40,
    slq_probes: int = 2,
    tol: float = 1e-6,
    seed: int = 0,
) -> HessianSummary:
    """Top-k (Lanczos), trace (Hutchinson) and SLQ density of a model's loss Hessian."""
    device = next(model.parameters()).device
    mv, dim = hvp_operator(model, loss_fn, data, loader=loader)
    calls = {"n": 0}

    def counted(v: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return mv(v)

    top = top_eigenvalues(counted, dim, k, tol=tol, seed=seed, device=device)
    tr = hutchinson_trace(counted, dim, trace_probes, seed=seed + 1, device=device)
    dens = slq(counted, dim, min(slq_steps, dim), slq_probes, seed=seed + 2, device=device)
    return HessianSummary(
        top_eigenvalues=[float(x) for x in top.eigenvalues],
        top_residuals=[float(x) for x in top.residuals],
        trace=tr.trace,
        trace_stderr=tr.stderr,
        slq=dens,
        dim=dim,
        matvecs=calls["n"],
    )
