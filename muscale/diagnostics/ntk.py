r"""Empirical and infinite-width neural tangent kernels.

**Empirical NTK** (Jacot, Gabriel & Hongler 2018):
:math:`\Theta(x, x')_{ab} = \sum_p \partial_p f_a(x)\,\partial_p f_b(x')`, computed with
``torch.func`` in the two ways of the PyTorch tutorial "Neural Tangent Kernels":

* ``impl="jacobian"``: per-example Jacobians by ``vmap(jacrev)`` contracted over parameters
  (memory ``N·O·P``);
* ``impl="ntk_vp"``: NTK-vector products ``v ↦ J₁ (J₂ᵀ v)`` (a ``vjp`` then a ``jvp``),
  vmapped over the output basis — never materialises a Jacobian.

``trace`` says what happens to the output axes ``(a, b)``: ``"full"`` keeps them
(``(N1, N2, O, O)``), ``"mean"`` returns ``(1/O) Σ_a Θ_aa`` (the convention of
neural-tangents, whose infinite-width kernels are per-output), ``"sum"`` returns ``Σ_a Θ_aa``.
Default ``"mean"``. ``param_weights`` multiplies each parameter's term, e.g. by its learning
rate: ``Σ_p η_p ∂_p f ∂_p fᵀ`` is the kernel that drives gradient descent in function space
and is invariant under the abc-reparametrisation (used by :mod:`.lazy`).

**Infinite width** (Neal 1996, Lee et al. 2018 for the NNGP; Jacot et al. 2018, Arora et al.
2019 Thm 3.1 for the NTK) of an MLP with ``depth`` hidden layers in NTK parametrisation,
``f^{h+1} = √(σ_w²/n_h) W^{h+1} φ(f^h) + σ_b b^{h+1}``, ``f^1 = W^1 x / √d`` (+ bias):

.. math::
   \Sigma^0 = x\cdot x'/d + \sigma_b^2,\quad
   \Sigma^h = \sigma_w^2\,\mathbb E[\phi(u)\phi(v)] + \sigma_b^2,\quad
   \dot\Sigma^h = \sigma_w^2\,\mathbb E[\phi'(u)\phi'(v)],\quad
   \Theta^h = \Sigma^h + \Theta^{h-1}\dot\Sigma^h,

``(u, v) ~ N(0, Σ^{h-1} restricted to {x, x'})``, ``Θ⁰ = Σ⁰``. Closed forms: ReLU —
arc-cosine kernels of degree 1 and 0 (Cho & Saul 2009): with ``cos θ = Σ_xx'/√(Σ_xx Σ_x'x')``,
``E[φφ] = √(Σ_xx Σ_x'x')(sin θ + (π−θ)cos θ)/(2π)``, ``E[φ'φ'] = (π−θ)/(2π)``; erf — Williams
1997: ``E[φφ] = (2/π) arcsin(2Σ_xx' / √((1+2Σ_xx)(1+2Σ_x'x')))``,
``E[φ'φ'] = (4/π)/√((1+2Σ_xx)(1+2Σ_x'x') − 4Σ_xx'²)``. :func:`relu_ntk` is Arora et al.'s
normalisation ``c_σ = σ_w² = 2``, no bias, with the input scaled by ``1/√d``
(docs/diagnostics.md; pass ``normalize_input=False`` for Arora's raw ``Σ⁰ = xᵀx'``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from muscale.errors import check_choice

TRACES = ("full", "mean", "sum")
IMPLS = ("jacobian", "ntk_vp", "auto")


# --- empirical NTK --------------------------------------------------------------------------


def _single(model: nn.Module):
    def f(params: dict, x: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, params, (x.unsqueeze(0),)).squeeze(0)
        return out.reshape(-1)  # (O,)

    return f


def _finish(k: torch.Tensor, trace: str) -> torch.Tensor:
    if trace == "full":
        return k
    diag = torch.diagonal(k, dim1=-2, dim2=-1)  # (N1, N2, O)
    return diag.mean(-1) if trace == "mean" else diag.sum(-1)


def empirical_ntk(
    model: nn.Module,
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    *,
    impl: str = "auto",
    trace: str = "mean",
    param_weights: Mapping[str, float] | None = None,
    chunk: int | None = None,
) -> torch.Tensor:
    """Empirical NTK between the batches ``x1`` (N1, ...) and ``x2`` (N2, ...).

    Returns ``(N1, N2)`` for ``trace`` "mean"/"sum" and ``(N1, N2, O, O)`` for "full" (see
    the module docstring). All trainable parameters count; ``param_weights`` (by name)
    reweights them. ``impl="auto"`` uses the Jacobian contraction when the Jacobians fit in
    ~2·10⁸ numbers, else NTK-vector products.
    """
    check_choice("trace", trace, TRACES)
    check_choice("impl", impl, IMPLS)
    x2 = x1 if x2 is None else x2
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    w = dict(param_weights or {})
    f = _single(model)
    if impl == "auto":
        with torch.no_grad():
            n_out = f(params, x1[0]).numel()
        n_par = sum(p.numel() for p in params.values())
        impl = "jacobian" if (len(x1) + len(x2)) * n_out * n_par < 2e8 else "ntk_vp"
    from muscale.diagnostics.hessian import math_attention

    with math_attention():
        if impl == "jacobian":
            return _finish(_ntk_jacobian(f, params, x1, x2, w, chunk), trace)
        return _finish(_ntk_vp(model, params, x1, x2, w, chunk), trace)


def _ntk_jacobian(f, params, x1, x2, w, chunk) -> torch.Tensor:
    jac = vmap(jacrev(f), (None, 0), chunk_size=chunk)
    j1 = jac(params, x1)
    j2 = j1 if x2 is x1 else jac(params, x2)
    total = None
    for name in params:
        a, b = j1[name].flatten(2), j2[name].flatten(2)  # (N, O, P)
        term = torch.einsum("naf,mbf->nmab", a, b) * w.get(name, 1.0)
        total = term if total is None else total + term
    assert total is not None
    return total


def _ntk_vp(model, params, x1, x2, w, chunk) -> torch.Tensor:
    sw = {k: math.sqrt(w.get(k, 1.0)) for k in params}

    def fb(p: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, p, (x,)).reshape(len(x), -1)  # (N, O)

    res = vjp(lambda p: fb(p, x2), params)
    out2, vjp_fn = res[0], res[1]

    def column(vec: torch.Tensor) -> torch.Tensor:  # vec: (N2, O) -> J₁ W J₂ᵀ vec: (N1, O)
        (ct,) = vjp_fn(vec)
        ct = {k: v * sw[k] ** 2 for k, v in ct.items()}
        return jvp(lambda p: fb(p, x1), (params,), (ct,))[1]

    n2, o = out2.shape
    basis = torch.eye(n2 * o, dtype=out2.dtype, device=out2.device).reshape(n2 * o, n2, o)
    cols = vmap(column, chunk_size=chunk)(basis)  # (N2·O, N1, O)
    return cols.reshape(n2, o, len(x1), o).permute(2, 0, 3, 1)  # (N1, N2, O, O)


def ntk_vector_product(model: nn.Module, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``Θ v`` for ``Θ`` the full empirical NTK on the batch ``x`` (``v``: (N, O)), without
    forming ``Θ``: ``J (Jᵀ v)`` by one batched vjp and one jvp (for Lanczos on big models)."""
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}

    def fb(p: dict) -> torch.Tensor:
        return functional_call(model, p, (x,)).reshape(len(x), -1)

    vjp_fn = vjp(fb, params)[1]
    (ct,) = vjp_fn(v.reshape(len(x), -1).to(next(iter(params.values())).dtype))
    return jvp(fb, (params,), (ct,))[1]


def eigendecay(
    k: torch.Tensor | np.ndarray, *, fit_range: tuple[float, float] = (0.02, 0.5)
) -> tuple[np.ndarray, float]:
    """Eigenvalues of a kernel matrix, descending and normalised by the largest, and the
    slope of ``log λ_i`` vs ``log i`` over the index range ``fit_range`` (fractions of N):
    a power-law decay ``λ_i ~ i^(−s)`` gives ``−s``."""
    a = np.asarray(torch.as_tensor(k).detach().double().cpu())
    lam = np.sort(np.clip(np.linalg.eigvalsh(0.5 * (a + a.T)), 0.0, None))[::-1]
    lam = lam / lam[0] if lam[0] > 0 else lam
    n = len(lam)
    i0, i1 = max(1, int(fit_range[0] * n)), max(3, int(fit_range[1] * n))
    idx = np.arange(i0, min(i1, n))
    good = lam[idx] > 1e-14
    slope = (
        float(np.polyfit(np.log(idx[good] + 1), np.log(lam[idx][good]), 1)[0])
        if good.sum() >= 2
        else math.nan
    )
    return lam, slope


# --- infinite width -------------------------------------------------------------------------


def _expectations(act: str, s12, d1, d2):
    """(E[φ(u)φ(v)], E[φ(u)²] for x1, for x2, E[φ'(u)φ'(v)]) for the covariance blocks."""
    if act == "relu":
        norms = torch.sqrt(d1[:, None] * d2[None, :])
        cos = torch.clamp(s12 / norms, -1.0, 1.0)
        theta = torch.arccos(cos)
        e12 = norms * (torch.sin(theta) + (math.pi - theta) * cos) / (2 * math.pi)
        return e12, d1 / 2, d2 / 2, (math.pi - theta) / (2 * math.pi)
    # erf (Williams 1997)
    a1, a2 = 1 + 2 * d1, 1 + 2 * d2
    den = torch.sqrt(a1[:, None] * a2[None, :])
    e12 = (2 / math.pi) * torch.arcsin(torch.clamp(2 * s12 / den, -1.0, 1.0))
    e11 = (2 / math.pi) * torch.arcsin(2 * d1 / a1)
    e22 = (2 / math.pi) * torch.arcsin(2 * d2 / a2)
    de = (4 / math.pi) / torch.sqrt(a1[:, None] * a2[None, :] - 4 * s12**2)
    return e12, e11, e22, de


def nngp_ntk(
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    depth: int = 1,
    *,
    activation: str = "relu",
    sigma_w2: float = 2.0,
    sigma_b2: float = 0.0,
    normalize_input: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Infinite-width ``(NNGP, NTK)`` of an MLP with ``depth`` hidden layers (module
    docstring), both ``(N1, N2)``, computed in float64."""
    check_choice("activation", activation, ("relu", "erf"))
    x1 = x1.double().reshape(len(x1), -1)
    x2 = x1 if x2 is None else x2.double().reshape(len(x2), -1)
    d = x1.shape[1] if normalize_input else 1.0
    s12 = x1 @ x2.T / d + sigma_b2
    d1 = (x1 * x1).sum(1) / d + sigma_b2
    d2 = (x2 * x2).sum(1) / d + sigma_b2
    theta = s12.clone()
    for _ in range(depth):
        e12, e11, e22, de = _expectations(activation, s12, d1, d2)
        s12 = sigma_w2 * e12 + sigma_b2
        d1, d2 = sigma_w2 * e11 + sigma_b2, sigma_w2 * e22 + sigma_b2
        theta = s12 + theta * sigma_w2 * de
    return s12, theta


def relu_ntk(x1: torch.Tensor, x2: torch.Tensor | None = None, depth: int = 1) -> torch.Tensor:
    """Infinite-width NTK of a bias-free ReLU MLP with ``depth`` hidden layers in Arora et
    al. 2019's normalisation (c_σ = 2; ``Σ⁰ = x·x'/d``)."""
    return nngp_ntk(x1, x2, depth, activation="relu", sigma_w2=2.0)[1]


def relu_nngp(x1: torch.Tensor, x2: torch.Tensor | None = None, depth: int = 1) -> torch.Tensor:
    """The NNGP kernel of the same network as :func:`relu_ntk`."""
    return nngp_ntk(x1, x2, depth, activation="relu", sigma_w2=2.0)[0]


def erf_ntk(
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    depth: int = 1,
    *,
    sigma_w2: float = 1.0,
    sigma_b2: float = 0.0,
) -> torch.Tensor:
    """Infinite-width NTK of an erf MLP (Williams 1997 arcsine kernel recursion)."""
    return nngp_ntk(x1, x2, depth, activation="erf", sigma_w2=sigma_w2, sigma_b2=sigma_b2)[1]


class Erf(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erf(x)


class NTKMLP(nn.Module):
    """An MLP in NTK parametrisation matching :func:`nngp_ntk`: unit-Gaussian weights,
    forward multipliers ``1/√d`` (first layer) and ``√(σ_w²/n)`` (later layers), biases
    times ``σ_b``. Its empirical NTK converges to the infinite-width one as width grows."""

    def __init__(
        self,
        in_dim: int,
        width: int,
        depth: int,
        out_dim: int = 1,
        *,
        activation: str = "relu",
        sigma_w2: float = 2.0,
        sigma_b2: float = 0.0,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        check_choice("activation", activation, ("relu", "erf"))
        g = torch.Generator().manual_seed(seed)
        dims = [in_dim] + [width] * depth + [out_dim]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(b, a, generator=g, dtype=dtype))
            for a, b in itertools.pairwise(dims)
        )
        self.biases = (
            nn.ParameterList(
                nn.Parameter(torch.randn(b, generator=g, dtype=dtype)) for b in dims[1:]
            )
            if sigma_b2 > 0
            else None
        )
        self.mults = [1.0 / math.sqrt(in_dim)] + [math.sqrt(sigma_w2 / width)] * depth
        self.sigma_b = math.sqrt(sigma_b2)
        self.act: nn.Module = nn.ReLU() if activation == "relu" else Erf()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_dim) -> (B, out_dim)
        h = x
        for i, (w, m) in enumerate(zip(self.weights, self.mults, strict=True)):
            if i > 0:
                h = self.act(h)
            h = m * h @ w.T
            if self.biases is not None:
                h = h + self.sigma_b * self.biases[i]
        return h
