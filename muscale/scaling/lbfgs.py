"""A batched L-BFGS: many independent small problems minimised at once in numpy.

Approach 3 fits start L-BFGS from thousands of grid points (Hoffmann et al. 2022, App. D.2;
Besiroglu et al. 2024). Each start is a 5-parameter problem; a loop of scipy calls spends
its time in Python overhead. Here every start keeps its own history, step and stopping
test (Nocedal & Wright 2006, Alg. 7.4 two-loop recursion; Armijo backtracking with
quadratic interpolation, Alg. 3.1/§3.5), but the objective is evaluated for all still-active
starts in one vectorised call. Converged starts leave the active set, so late iterations
cost only what is left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
#: ``fun_grad(x, rows) -> (f, g)``: x (k, P) for the starts with indices ``rows`` (k,)
FunGrad = Callable[[Array, NDArray[np.int64]], tuple[Array, Array]]


@dataclass(kw_only=True)
class BatchResult:
    x: Array  # (K, P) final points
    fun: Array  # (K,) final objective values
    n_iter: NDArray[np.int64]  # (K,) iterations taken
    converged: NDArray[np.bool_]  # (K,) stopped by a tolerance (not by max_iter)
    n_evals: int  # rows evaluated in total (one row = one start's f and g)


def minimize_batched(
    fun_grad: FunGrad,
    x0: Array,
    *,
    memory: int = 10,
    max_iter: int = 1000,
    gtol: float = 1e-9,
    ftol: float = 1e-13,
    max_ls: int = 40,
    c1: float = 1e-4,
) -> BatchResult:
    """Minimise ``K`` independent problems from the rows of ``x0`` (K, P).

    A start stops when ``max|g| <= gtol``, when an accepted step lowers f by no more than
    ``ftol · max(|f|, tiny)`` (scipy's ``factr`` test, relative), or when its line search
    fails (no decrease representable: it is at its optimum to machine precision).
    """
    x = np.array(x0, dtype=np.float64, copy=True)
    K, P = x.shape
    all_rows = np.arange(K)
    f, g = fun_grad(x, all_rows)
    f = np.array(f, dtype=np.float64)
    g = np.array(g, dtype=np.float64)
    n_evals = K
    S = np.zeros((memory, K, P))
    Y = np.zeros((memory, K, P))
    rho = np.zeros((memory, K))
    gamma = np.zeros(K)  # 0 = no curvature pair yet
    n_iter = np.zeros(K, dtype=np.int64)
    converged = np.zeros(K, dtype=bool)
    finite0 = np.isfinite(f) & np.isfinite(g).all(axis=1)
    f[~finite0] = np.inf
    converged[~finite0] = True  # a start where the objective is not finite is abandoned
    active = all_rows[~converged & (np.abs(g).max(axis=1) > gtol)]
    converged[np.abs(g).max(axis=1) <= gtol] = True
    for it in range(max_iter):
        if active.size == 0:
            break
        ga = g[active]
        d = _direction(ga, S[:, active], Y[:, active], rho[:, active], gamma[active], it, memory)
        gd = np.einsum("kp,kp->k", ga, d)
        bad = ~(gd < 0)
        if bad.any():  # not a descent direction: forget the history, steepest descent
            rho[:, active[bad]] = 0.0
            gamma[active[bad]] = 0.0
            d[bad] = -ga[bad] / np.maximum(np.linalg.norm(ga[bad], axis=1, keepdims=True), 1e-300)
            gd[bad] = np.einsum("kp,kp->k", ga[bad], d[bad])
        t, f_new, g_new, ok, evals = _armijo(fun_grad, x, f, active, d, gd, max_ls, c1)
        n_evals += evals
        step = t[:, None] * d
        acc = active[ok]
        s = step[ok]
        y = g_new[ok] - g[acc]
        sy = np.einsum("kp,kp->k", s, y)
        # curvature pair kept when s·y > 0 relative to |s||y| and 1/(s·y) is finite (a
        # subnormal s·y near the optimum would overflow rho and poison the recursion)
        good = (sy > 1e-12 * np.linalg.norm(s, axis=1) * np.linalg.norm(y, axis=1)) & (sy > 1e-300)
        slot = it % memory
        S[slot, acc] = np.where(good[:, None], s, 0.0)
        Y[slot, acc] = np.where(good[:, None], y, 0.0)
        rho[slot, acc] = np.where(good, 1.0 / np.where(good, sy, 1.0), 0.0)
        yy = np.einsum("kp,kp->k", y, y)
        with np.errstate(all="ignore"):
            g_new_scale = sy / yy
        use = good & np.isfinite(g_new_scale) & (g_new_scale > 0)
        gamma[acc] = np.where(use, g_new_scale, gamma[acc])
        decrease = f[acc] - f_new[ok]
        x[acc] += s
        f[acc] = f_new[ok]
        g[acc] = g_new[ok]
        n_iter[active] += 1
        scale = np.maximum(np.abs(f[acc]), 1e-300)
        done_acc = (np.abs(g[acc]).max(axis=1) <= gtol) | (decrease <= ftol * scale)
        converged[acc[done_acc]] = True
        converged[active[~ok]] = True  # line search failed: no representable decrease
        active = active[~converged[active]]
    return BatchResult(x=x, fun=f, n_iter=n_iter, converged=converged, n_evals=n_evals)


def _direction(
    g: Array, S: Array, Y: Array, rho: Array, gamma: Array, it: int, memory: int
) -> Array:
    """``-H g`` by the two-loop recursion, per row; rows without history take a unit step."""
    q = g.copy()
    n_hist = min(it, memory)
    order = [(it - 1 - j) % memory for j in range(n_hist)]  # newest first
    alphas = []
    for j in order:
        a_j = rho[j] * np.einsum("kp,kp->k", S[j], q)
        q -= a_j[:, None] * Y[j]
        alphas.append(a_j)
    fresh = gamma <= 0
    scale = np.where(fresh, 1.0 / np.maximum(np.linalg.norm(g, axis=1), 1e-300), gamma)
    r = scale[:, None] * q
    for j, a_j in zip(reversed(order), reversed(alphas), strict=True):
        b_j = rho[j] * np.einsum("kp,kp->k", Y[j], r)
        r += S[j] * (a_j - b_j)[:, None]
    return -r


def _armijo(
    fun_grad: FunGrad,
    x: Array,
    f: Array,
    active: NDArray[np.int64],
    d: Array,
    gd: Array,
    max_ls: int,
    c1: float,
) -> tuple[Array, Array, Array, NDArray[np.bool_], int]:
    """Backtracking from t = 1 with safeguarded quadratic interpolation, all rows at once;
    only the rows still failing the sufficient-decrease test are re-evaluated."""
    k = active.size
    t = np.ones(k)
    f_new = np.full(k, np.inf)
    g_new = np.zeros_like(d)
    ok = np.zeros(k, dtype=bool)
    todo = np.arange(k)
    evals = 0
    f0 = f[active]
    for _ in range(max_ls):
        rows = active[todo]
        with np.errstate(all="ignore"):
            ft, gt = fun_grad(x[rows] + t[todo, None] * d[todo], rows)
        evals += todo.size
        finite = np.isfinite(ft) & np.isfinite(gt).all(axis=1)
        passed = finite & (ft <= f0[todo] + c1 * t[todo] * gd[todo])
        f_new[todo[passed]] = ft[passed]
        g_new[todo[passed]] = gt[passed]
        ok[todo[passed]] = True
        fail = todo[~passed]
        if fail.size == 0:
            break
        tf = t[fail]
        ftf = np.where(finite[~passed], ft[~passed], np.inf)
        with np.errstate(all="ignore"):
            denom = 2.0 * (ftf - f0[fail] - gd[fail] * tf)
            t_q = -gd[fail] * tf**2 / denom
        t_q = np.where(np.isfinite(t_q), t_q, 0.1 * tf)
        t[fail] = np.clip(t_q, 0.1 * tf, 0.5 * tf)
        todo = fail
    return t, f_new, g_new, ok, evals
