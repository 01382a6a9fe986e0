r"""Spectral bias: eigenvalues of dot-product kernels on the sphere by spherical-harmonic
degree, and how fast a wide network learns each degree.

A kernel ``K(x, x') = κ(x·x')`` on ``S^{d−1}`` is diagonalised by spherical harmonics
(Funk–Hecke): the degree-``k`` harmonics (multiplicity ``N(d, k)``) share the eigenvalue

.. math:: \mu_k = \frac{\omega_{d-2}}{\omega_{d-1}} \int_{-1}^{1} \kappa(t)\,
   P_k^{(d)}(t)\,(1-t^2)^{(d-3)/2}\,dt,\qquad
   P_k^{(d)} = C_k^{(d-2)/2}/C_k^{(d-2)/2}(1),

(``ω_{m}`` = area of ``S^m``, ``C_k^α`` Gegenbauer polynomials), computed here by
Gauss–Gegenbauer quadrature (``scipy.special.roots_gegenbauer``, whose weight is exactly
``(1−t²)^{(d−3)/2}``). The ReLU NTK is not smooth at ``t = ±1`` (terms in ``√(1−t²)`` and
``arccos t``), so its eigenvalues decay polynomially, ``μ_k ~ k^{−d}`` (Bietti & Mairal 2019,
Thm 1 / Prop 5; Geifman et al. 2020; for the two-layer net without bias the odd degrees
``k ≥ 3`` vanish, so fits use even ``k``), while the Gaussian kernel
``exp(−‖x−x'‖²/(2σ²)) = exp((t−1)/σ²)`` is entire and its eigenvalues fall faster than
exponentially (``μ_k ∝ I_{k+d/2−1}(1/σ²)``, modified Bessel; Minh, Niyogi & Yao 2006).
Gradient descent on the squared loss in the kernel regime shrinks the degree-``k`` part of
the residual like ``exp(−η μ_k t)`` (Jacot et al. 2018; Basri et al. 2019, "The convergence
rate of neural networks for learned functions of different frequencies"): low degrees first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from muscale.diagnostics.ntk import nngp_ntk


def relu_ntk_profile(t: np.ndarray, depth: int = 1, *, bias: float = 0.0) -> np.ndarray:
    """``κ(t)`` of the ReLU NTK (:func:`muscale.diagnostics.ntk.nngp_ntk`, Arora et al.'s
    ``c_σ = 2``, ``depth`` hidden layers) for unit vectors with ``x·x' = t``."""
    t = np.clip(np.asarray(t, dtype=np.float64), -1.0, 1.0)
    x1 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    x2 = torch.tensor(np.stack([t, np.sqrt(1.0 - t**2)], 1))
    _, k = nngp_ntk(
        x1, x2, depth, activation="relu", sigma_w2=2.0, sigma_b2=bias, normalize_input=False
    )
    return k[0].numpy()


def gaussian_profile(t: np.ndarray, sigma2: float = 0.5) -> np.ndarray:
    """``κ(t) = exp((t − 1)/σ²)``: the Gaussian (RBF) kernel on unit vectors."""
    return np.exp((np.asarray(t, dtype=np.float64) - 1.0) / sigma2)


def sphere_eigenvalues(kappa, d: int, kmax: int, *, nodes: int = 4000) -> np.ndarray:
    """``μ_0..μ_kmax`` of ``κ(x·x')`` on ``S^{d−1}`` by the Funk–Hecke formula (module
    docstring) with ``nodes``-point Gauss–Gegenbauer quadrature (``d ≥ 3``)."""
    from scipy import special

    if d < 3:
        raise ValueError(f"sphere_eigenvalues: d must be >= 3 (S^(d-1) with d-1 >= 2), got {d}")
    alpha = (d - 2) / 2.0
    t, w = special.roots_gegenbauer(nodes, alpha)
    f = kappa(t) * w
    ratio = math.exp(math.lgamma(d / 2) - math.lgamma((d - 1) / 2)) / math.sqrt(math.pi)
    out = np.empty(kmax + 1)
    for k in range(kmax + 1):
        out[k] = (
            ratio
            * f
            @ (special.eval_gegenbauer(k, alpha, t) / special.eval_gegenbauer(k, alpha, 1.0))
        )
    return out


def decay_exponent(mu: np.ndarray, ks: np.ndarray) -> float:
    """Slope ``s`` of ``log μ_k ≈ c − s log k`` over the degrees ``ks`` (least squares)."""
    ks = np.asarray(ks)
    return float(-np.polyfit(np.log(ks), np.log(np.abs(mu[ks])), 1)[0])


def gaussian_eigenvalues_closed_form(d: int, kmax: int, sigma2: float) -> np.ndarray:
    """``μ_k = e^{−1/σ²} Γ(d/2) (2σ²)^{(d−2)/2} I_{k+d/2−1}(1/σ²)`` (Minh et al. 2006, Thm 2,
    in the normalisation of :func:`sphere_eigenvalues`)."""
    from scipy import special

    b = 1.0 / sigma2
    k = np.arange(kmax + 1)
    return (
        math.exp(-b) * math.gamma(d / 2) * (2.0 / b) ** ((d - 2) / 2) * special.iv(k + d / 2 - 1, b)
    )
    # Funk–Hecke of e^{bt}:
    # ∫e^{bt}P_k(1−t²)^{(d−3)/2}dt = √π Γ((d−1)/2)(2/b)^{(d−2)/2} I_{k+d/2−1}(b)


# --- measured: how fast a wide net learns each degree ---------------------------------------


@dataclass(kw_only=True)
class DegreeLearning:
    """Per degree ``k``: NTK eigenvalue ``mu``, the step at which the degree-``k`` part of the
    residual fell below ``1/e`` of its start (``steps``; -1 if never within ``budget``), the
    kernel prediction ``1/(η μ_k)`` in steps (``predicted``), and the residual curves."""

    degrees: list[int]
    mu: list[float]
    steps: list[int]
    predicted: list[float]
    curves: np.ndarray  # (len(degrees), budget + 1)


def _zonal_target(x: torch.Tensor, degrees, d: int, seed: int) -> list[torch.Tensor]:
    from scipy import special

    g = torch.Generator().manual_seed(seed)
    alpha = (d - 2) / 2.0
    out = []
    for k in degrees:
        v = torch.randn(d, generator=g, dtype=torch.float64)
        t = (x @ (v / v.norm())).numpy()
        p = special.eval_gegenbauer(k, alpha, t) / special.eval_gegenbauer(k, alpha, 1.0)
        comp = torch.tensor(p)
        out.append(comp / comp.pow(2).mean().sqrt())  # unit mean square
    return out


def degree_learning_speed(
    degrees: tuple[int, ...] = (1, 2, 4, 6),
    *,
    d: int = 3,
    n: int = 3000,
    width: int = 4096,
    lr: float = 1.0,
    budget: int = 2000,
    seed: int = 0,
) -> DegreeLearning:
    """Train a one-hidden-layer ReLU net in NTK parametrisation (the network of
    :func:`relu_ntk_profile`, depth 1) by full-batch GD on ``n`` uniform points of
    ``S^{d−1}`` to a sum of unit zonal harmonics of the given degrees, and record each
    degree's residual coefficient. The output is antisymmetrised at init (two copies, one
    negated, Chizat et al.'s trick) so ``f₀ = 0`` and the residual starts at the target."""
    from muscale.diagnostics.ntk import NTKMLP

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)
    comps = _zonal_target(x, degrees, d, seed + 1)
    y = torch.stack(comps).sum(0)
    net = NTKMLP(d, width, 1, activation="relu", sigma_w2=2.0, seed=seed + 2)
    twin = NTKMLP(d, width, 1, activation="relu", sigma_w2=2.0, seed=seed + 2)
    # NTKMLP scales its input by 1/√d; the kernel of relu_ntk_profile has Σ⁰ = x·x', so feed √d x
    xs = x * math.sqrt(d)
    params = list(net.parameters()) + list(twin.parameters())
    opt = torch.optim.SGD(params, lr=lr)
    basis = torch.stack(comps)  # (K, n), nearly orthogonal for large n
    gram = basis @ basis.T / n
    curves = np.zeros((len(degrees), budget + 1))
    for step in range(budget + 1):
        f = (net(xs) - twin(xs))[:, 0] / math.sqrt(2.0)
        r = y - f
        coef = torch.linalg.solve(gram, basis @ r.detach() / n)  # residual's degree parts
        curves[:, step] = coef.numpy()
        if step == budget:
            break
        opt.zero_grad()
        (0.5 * (r**2).mean()).backward()
        opt.step()
    mu = sphere_eigenvalues(lambda t: relu_ntk_profile(t, 1), d, max(degrees))
    steps = [int(np.argmax(c < math.exp(-1))) if (c < math.exp(-1)).any() else -1 for c in curves]
    return DegreeLearning(
        degrees=list(degrees),
        mu=[float(mu[k]) for k in degrees],
        steps=steps,
        predicted=[1.0 / (lr * float(mu[k])) for k in degrees],
        curves=curves,
    )


def spectral_bias_entry(cfg: dict | None = None) -> dict:
    """``muscale diagnose`` entry. Keys (defaults): ``dims`` ([3, 5]), ``kmax`` (40),
    ``depth`` (1), ``sigma2`` (0.5, Gaussian kernel), ``train`` (false: run
    :func:`degree_learning_speed`). Returns eigenvalues by degree, fitted exponents vs ``d``,
    and (if trained) the per-degree learning steps."""
    cfg = dict(cfg or {})
    kmax, depth, sigma2 = (
        int(cfg.get("kmax", 40)),
        int(cfg.get("depth", 1)),
        float(cfg.get("sigma2", 0.5)),
    )
    if kmax < 14:  # the exponent is fitted over the even degrees 10..kmax: at least 3 points
        from muscale.errors import UserError

        raise UserError(f"spectral_bias.kmax={kmax}: use >= 14 (the fit uses degrees 10..kmax)")
    out: dict = {"dims": {}}
    for d in cfg.get("dims", [3, 5]):
        mu = sphere_eigenvalues(lambda t: relu_ntk_profile(t, depth), int(d), kmax)
        rbf = sphere_eigenvalues(lambda t: gaussian_profile(t, sigma2), int(d), kmax)
        even = np.arange(10, kmax + 1, 2)
        out["dims"][int(d)] = {
            "relu_ntk": mu.tolist(),
            "gaussian": rbf.tolist(),
            "relu_exponent": decay_exponent(mu, even),
            "theory_exponent": float(d),
        }
    if cfg.get("train", False):
        r = degree_learning_speed()
        out["learning"] = {
            "degrees": r.degrees,
            "mu": r.mu,
            "steps": r.steps,
            "predicted": r.predicted,
        }
    return out
