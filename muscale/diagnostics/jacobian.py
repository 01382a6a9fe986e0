r"""Input–output Jacobians of deep MLPs and dynamical isometry.

Setting of Pennington, Schoenholz & Ganguli 2017 ("Resurrecting the sigmoid in deep
learning through dynamical isometry"): ``h^l = W^l x^{l-1} + b^l``, ``x^l = φ(h^l)``,
``W^l`` ``N x N`` with entry variance ``σ_w²/N`` (Gaussian) or ``σ_w`` times a Haar
orthogonal matrix, ``b^l ~ N(0, σ_b²)``. The Jacobian ``J = ∂x^L/∂x^0 = Π_l D^l W^l`` with
``D^l = diag φ'(h^l)``.

Mean field (Poole et al. 2016; Schoenholz et al. 2017): the pre-activation variance obeys
``q^l = σ_w² E[φ(√q^{l-1} z)²] + σ_b²`` with fixed point ``q*``; criticality is
``χ = σ_w² E[φ'(√q* z)²] = 1`` (the mean squared singular value of J stays 1 with depth).

Free probability (Pennington et al. 2017, eq. 16 with μ₁ = χ = 1): the variance of the
eigenvalues of ``JJᵀ`` grows linearly with depth,
:math:`\sigma^2_{JJ^T} = L\,(\mu_2/\mu_1^2 - 1 - s_1)`, ``μ_k = σ_w^{2k} E[φ'(√q* z)^{2k}]``,
``s₁ = −1`` for Gaussian and ``0`` for orthogonal weights: linear nets ≈ ``L`` vs 0,
ReLU (σ_w = √2) ≈ ``2L`` vs ``L``; tanh with orthogonal weights and small ``q*`` → 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import nn

from muscale.errors import check_choice

ACTS: dict[str, tuple] = {
    # name -> (φ, φ') on numpy arrays, for Gaussian quadrature
    "linear": (lambda h: h, lambda h: np.ones_like(h)),
    "relu": (lambda h: np.maximum(h, 0.0), lambda h: (h > 0).astype(np.float64)),
    "tanh": (np.tanh, lambda h: 1.0 / np.cosh(h) ** 2),
}
TORCH_ACTS: dict[str, type[nn.Module]] = {"linear": nn.Identity, "relu": nn.ReLU, "tanh": nn.Tanh}
INITS = ("gaussian", "orthogonal")
S1 = {"gaussian": -1.0, "orthogonal": 0.0}  # first S-transform coefficient of WWᵀ

_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(200)
_GH_W = _GH_W / _GH_W.sum()  # E[f(z)], z ~ N(0, 1)


def gauss_expect(f, q: float) -> float:
    """``E[f(√q z)]`` for ``z ~ N(0,1)`` by 200-point Gauss–Hermite quadrature (an even
    count: no node at 0, where ReLU's φ' jumps)."""
    return float(np.sum(_GH_W * f(math.sqrt(q) * _GH_X)))


def q_fixed_point(
    activation: str, sigma_w: float, sigma_b: float, *, q0: float = 1.0, iters: int = 500
) -> float:
    """Fixed point ``q*`` of the length map ``q ← σ_w² E[φ(√q z)²] + σ_b²``."""
    check_choice("activation", activation, ACTS)
    phi = ACTS[activation][0]
    q = q0
    for _ in range(iters):
        q = sigma_w**2 * gauss_expect(lambda h: phi(h) ** 2, q) + sigma_b**2
    return q


def chi(activation: str, sigma_w: float, q: float) -> float:
    """``χ = σ_w² E[φ'(√q z)²]``: the mean squared singular value of one layer's Jacobian."""
    return sigma_w**2 * gauss_expect(lambda h: ACTS[activation][1](h) ** 2, q)


def critical_point(activation: str, q_star: float = 1.0) -> tuple[float, float]:
    """``(σ_w, σ_b)`` on the critical line (χ = 1) with pre-activation fixed point ``q*``:
    ``σ_w² = 1/E[φ'(√q* z)²]``, ``σ_b² = q* − σ_w² E[φ(√q* z)²]`` (must be ≥ 0)."""
    check_choice("activation", activation, ACTS)
    phi, dphi = ACTS[activation]
    sw2 = 1.0 / gauss_expect(lambda h: dphi(h) ** 2, q_star)
    sb2 = q_star - sw2 * gauss_expect(lambda h: phi(h) ** 2, q_star)
    sb2 = 0.0 if abs(sb2) < 1e-6 * q_star else sb2  # quadrature noise (ReLU, linear)
    return math.sqrt(sw2), math.sqrt(max(sb2, 0.0))


def critical_sigma_w(activation: str, sigma_b: float = 0.0) -> float:
    """σ_w with χ = 1 at the self-consistent ``q*`` for a given σ_b (bisection). ReLU: √2,
    linear: 1, tanh with σ_b = 0: 1 (``q* = 0``)."""
    lo, hi = 0.5, 3.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        q = q_fixed_point(activation, mid, sigma_b)
        if chi(activation, mid, max(q, 1e-12)) < 1.0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def theory_jjt_variance(
    activation: str, init: str, depth: int, q_star: float = 1.0, sigma_w: float | None = None
) -> float:
    """Pennington et al. 2017: ``σ²_{JJᵀ} = L (μ₂/μ₁² − 1 − s₁)`` (at criticality μ₁ = 1)."""
    check_choice("init", init, INITS)
    dphi = ACTS[activation][1]
    sw = critical_point(activation, q_star)[0] if sigma_w is None else sigma_w
    mu1 = sw**2 * gauss_expect(lambda h: dphi(h) ** 2, q_star)
    mu2 = sw**4 * gauss_expect(lambda h: dphi(h) ** 4, q_star)
    return depth * (mu2 / mu1**2 - 1.0 - S1[init])


def make_mlp(
    width: int,
    depth: int,
    activation: str,
    *,
    sigma_w: float,
    sigma_b: float = 0.0,
    init: str = "gaussian",
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> nn.Sequential:
    """A plain ``depth``-layer ``N x N`` MLP ``[Linear, φ] x depth`` initialised as above."""
    check_choice("activation", activation, ACTS)
    check_choice("init", init, INITS)
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for _ in range(depth):
        lin = nn.Linear(width, width, dtype=dtype)
        with torch.no_grad():
            if init == "gaussian":
                w = torch.randn(width, width, generator=g, dtype=dtype) * sigma_w / math.sqrt(width)
            else:  # Haar orthogonal: QR of a Gaussian with the sign fix of Mezzadri 2007
                a = torch.randn(width, width, generator=g, dtype=dtype)
                q, r = torch.linalg.qr(a)
                w = sigma_w * q * torch.sign(torch.diagonal(r))[None, :]
            lin.weight.copy_(w)
            lin.bias.copy_(torch.randn(width, generator=g, dtype=dtype) * sigma_b)
        layers += [lin, TORCH_ACTS[activation]()]
    return nn.Sequential(*layers)


def input_output_jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``∂ model(x) / ∂x`` for one input vector ``x`` (shape ``(N,)``), computed layer by
    layer as ``Π D^l W^l`` when the model is an ``[Linear, φ]`` stack, else by jacrev."""
    mods = list(model) if isinstance(model, nn.Sequential) else []
    if mods and all(isinstance(m, nn.Linear | nn.ReLU | nn.Tanh | nn.Identity) for m in mods):
        j = torch.eye(x.shape[0], dtype=x.dtype)
        h = x
        with torch.no_grad():
            for m in mods:
                if isinstance(m, nn.Linear):
                    j = m.weight @ j
                    h = m(h)
                else:
                    d = {
                        nn.ReLU: lambda t: (t > 0).to(t.dtype),
                        nn.Tanh: lambda t: 1.0 - torch.tanh(t) ** 2,
                        nn.Identity: torch.ones_like,
                    }[type(m)](h)
                    j = d[:, None] * j
                    h = m(h)
        return j
    return torch.func.jacrev(model)(x)


@dataclass(kw_only=True)
class JacobianStats:
    activation: str
    init: str
    depth: int
    width: int
    sigma_w: float
    sigma_b: float
    q_star: float
    mean: float  # mean eigenvalue of JJᵀ (χ^L = 1 at criticality)
    variance: float  # variance of the eigenvalues of JJᵀ
    variance_normalized: float  # variance / mean²: removes the sample's O(L/N) gain jitter
    theory_variance: float
    max_singular: float
    singular_values: np.ndarray
    # free-probability prediction of the whole spectrum (free_jacobian.py), filled by
    # isometry_study(predict=True): KS distance of s² to it, and the prediction itself
    ks_predicted: float = math.nan
    prediction: object | None = None

    def to_dict(self) -> dict:
        skip = ("singular_values", "prediction")
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


def jacobian_spectrum(
    activation: str, init: str, depth: int, *, width: int = 256, q_star: float = 1.0, seed: int = 0
) -> JacobianStats:
    """Singular values of ``J`` for a critical MLP fed one input with ``‖x‖²/N = q*``."""
    sw, sb = critical_point(activation, q_star)
    model = make_mlp(width, depth, activation, sigma_w=sw, sigma_b=sb, init=init, seed=seed)
    g = torch.Generator().manual_seed(seed + 10_000)
    x = torch.randn(width, generator=g, dtype=torch.float64)
    x = x / x.norm() * math.sqrt(q_star * width)
    # start from the fixed point: the first pre-activation then has variance ≈ q*
    s = torch.linalg.svdvals(input_output_jacobian(model, x)).numpy()
    lam = s**2
    return JacobianStats(
        activation=activation,
        init=init,
        depth=depth,
        width=width,
        sigma_w=sw,
        sigma_b=sb,
        q_star=q_star,
        mean=float(lam.mean()),
        variance=float(lam.var()),
        variance_normalized=float(lam.var() / lam.mean() ** 2),
        theory_variance=theory_jjt_variance(activation, init, depth, q_star),
        max_singular=float(s.max()),
        singular_values=s,
    )
