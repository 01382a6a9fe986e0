"""Lanczos, Hutchinson and SLQ against exact answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from muscale.diagnostics import (
    hutchinson_trace,
    hutchinson_variance,
    hvp_operator,
    lanczos,
    power_iteration_deflation,
    slq,
    top_eigenvalues,
)
from muscale.diagnostics.hessian import dense_matvec, rademacher, tridiag_eig


def _known(n=400, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    ev = np.concatenate([np.linspace(10, 6, 20), rng.standard_normal(n - 20)])
    return (q * ev) @ q.T, np.sort(ev)[::-1]


def test_lanczos_top20_to_1e6_where_power_iteration_is_not():
    a, ev = _known()
    mv, d = dense_matvec(a)
    r = top_eigenvalues(mv, d, 20, tol=1e-8)
    assert r.converged
    assert np.max(np.abs(r.eigenvalues - ev[:20]) / ev[:20]) < 1e-6
    p = power_iteration_deflation(mv, d, 20)  # PyHessian's algorithm, tol 1e-3
    assert np.max(np.abs(np.sort(p.eigenvalues)[::-1] - ev[:20]) / ev[:20]) > 1e-4
    assert r.matvecs < p.matvecs


def _tiny_problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 3)).double()
    x, y = torch.randn(40, 5, dtype=torch.float64), torch.randint(0, 3, (40,))
    return model, x, y


def _loss(model, batch):
    return nn.functional.cross_entropy(model(batch[0]), batch[1])


def test_hvp_lanczos_on_a_model_matches_the_exact_hessian_and_loader_averages():
    model, x, y = _tiny_problem()
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach() for n, p in model.named_parameters()}

    def flat_loss(theta):
        ps, i = {}, 0
        for n in names:
            ps[n] = theta[i : i + params[n].numel()].view_as(params[n])
            i += params[n].numel()
        out = torch.func.functional_call(model, ps, (x,))
        return nn.functional.cross_entropy(out, y)

    theta = torch.cat([params[n].reshape(-1) for n in names])
    h = torch.func.hessian(flat_loss)(theta).numpy()
    exact = np.sort(np.linalg.eigvalsh(h))[::-1][:5]
    mv, d = hvp_operator(model, _loss, (x, y))
    r = top_eigenvalues(mv, d, 5, tol=1e-10)
    assert np.allclose(r.eigenvalues, exact, rtol=1e-6)
    # data loader: 4 equal batches average to the full-batch HVP
    mv_l, _ = hvp_operator(model, _loss, [(x[i::4], y[i::4]) for i in range(4)], loader=True)
    v = torch.randn(d, dtype=torch.float64)
    assert torch.allclose(mv_l(v), torch.as_tensor(h) @ v, atol=1e-10)


def test_hutchinson_variance_matches_formula():
    a, _ = _known(60, seed=1)
    mv, d = dense_matvec(a)
    est = hutchinson_trace(mv, d, 4000, seed=0)
    var_formula = hutchinson_variance(a, 1)
    # sample variance of 4000 probes: relative sd ≈ √(2/4000)·(kurtosis term) < 5%
    assert est.samples.var(ddof=1) == pytest.approx(var_formula, rel=0.08)
    assert est.trace == pytest.approx(np.trace(a), abs=4 * np.sqrt(var_formula / 4000))
    assert est.stderr == pytest.approx(np.sqrt(var_formula / 4000), rel=0.05)


def test_slq_is_exact_for_moments_up_to_2m_minus_1():
    a, _ = _known(200, seed=2)
    a = a / 10
    mv, d = dense_matvec(a)
    m = 8
    res = slq(mv, d, m, 1, seed=3)
    v = rademacher(d, 1, seed=3)[0].numpy()
    v /= np.linalg.norm(v)
    for k in range(2 * m):
        exact = v @ np.linalg.matrix_power(a, k) @ v
        quad_k = np.sum(res.weights[0] * res.nodes[0] ** k)
        assert quad_k == pytest.approx(exact, rel=1e-9, abs=1e-12)
    exact = v @ np.linalg.matrix_power(a, 2 * m) @ v  # degree 2m is not exact
    assert abs(np.sum(res.weights[0] * res.nodes[0] ** (2 * m)) - exact) > 1e-8 * abs(exact)


def test_lanczos_basis_is_orthonormal():
    a, _ = _known(150, seed=4)
    mv, d = dense_matvec(a)
    out = lanczos(mv, d, 100)
    q = out.basis.numpy()
    assert np.abs(q @ q.T - np.eye(len(q))).max() < 1e-12
    theta, _ = tridiag_eig(out.alphas, out.betas)
    assert theta.max() == pytest.approx(np.linalg.eigvalsh(a).max(), rel=1e-10)
