"""Dynamical isometry study: the JJᵀ spectrum of critical plain MLPs vs depth, sampled
(:mod:`muscale.diagnostics.jacobian`) and, optionally, predicted whole by free probability
(:mod:`muscale.diagnostics.free_jacobian`; Pennington, Schoenholz & Ganguli 2017, 2018).

Its own module because it joins the two: the sampler and the predictor do not import each
other.
"""

from __future__ import annotations

from muscale.diagnostics.free_jacobian import jacobian_ks, predict_jacobian_spectrum
from muscale.diagnostics.jacobian import INITS, JacobianStats, jacobian_spectrum


def isometry_study(
    activations: tuple[str, ...] = ("linear", "relu", "tanh"),
    inits: tuple[str, ...] = INITS,
    depths: tuple[int, ...] = (2, 8, 32),
    *,
    width: int = 256,
    q_star: float | dict[str, float] | None = None,
    seed: int = 0,
    predict: bool = False,
) -> list[JacobianStats]:
    """Variance of the JJᵀ spectrum vs depth for every (activation, init), at criticality.

    ``q_star`` default: 1 for linear/ReLU (scale free), 1/64 for tanh (Pennington et al.'s
    small-q* regime where orthogonal tanh nets approach isometry). ``predict``: also the
    free-probability prediction of the whole spectrum and its KS distance to the sample
    (:func:`muscale.diagnostics.free_jacobian.predict_jacobian_spectrum`).
    """
    default = {"linear": 1.0, "relu": 1.0, "tanh": 1.0 / 64}
    if isinstance(q_star, dict):
        default.update(q_star)
    elif q_star is not None:
        default = dict.fromkeys(default, float(q_star))
    rows = [
        jacobian_spectrum(a, i, L, width=width, q_star=default[a], seed=seed)
        for a in activations
        for i in inits
        for L in depths
    ]
    if predict:
        for r in rows:
            r.prediction = predict_jacobian_spectrum(r.activation, r.init, r.depth, q_star=r.q_star)
            r.ks_predicted = jacobian_ks(r.prediction, r.singular_values)  # type: ignore[arg-type]
    return rows
