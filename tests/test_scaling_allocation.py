"""Allocation: the closed form against a numerical constrained minimisation, the attention
FLOPs model, and the inference-aware optimum (Sardana et al. 2023)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.optimize import minimize

from muscale.errors import UserError
from muscale.scaling.allocation import (
    compute_optimal,
    inference_aware,
    plan,
    plan_intervals,
    tokens_for_loss,
)
from muscale.scaling.laws import PUBLISHED, ChinchillaLaw, FlopsModel

LAWS = [PUBLISHED["epoch"][0], PUBLISHED["hoffmann"][0]]


def _numerical_optimum(law: ChinchillaLaw, c: float, flops=None) -> tuple[float, float]:
    """SLSQP on (log N, log D) with the equality constraint log C = log f(N) + log D."""
    f = flops or (lambda n: 6.0 * n)
    guess = np.array([math.log(1e9), math.log(c / 6e9)])
    res = minimize(
        lambda x: float(law.loss(math.exp(x[0]), math.exp(x[1]))),
        guess,
        method="SLSQP",
        constraints=[
            {"type": "eq", "fun": lambda x: math.log(float(f(math.exp(x[0])))) + x[1] - math.log(c)}
        ],
        options={"ftol": 1e-15, "maxiter": 500},
    )
    assert res.success, res.message
    return math.exp(res.x[0]), math.exp(res.x[1])


@pytest.mark.parametrize("law", LAWS)
@pytest.mark.parametrize("c", [1e19, 1e21, 1e24])
def test_closed_form_matches_constrained_minimisation(law, c):
    p = compute_optimal(law, c)
    n, d = _numerical_optimum(law, c)
    assert pytest.approx(n, rel=2e-3) == p.N
    assert pytest.approx(d, rel=2e-3) == p.D
    assert pytest.approx(c, rel=1e-12) == 6 * p.N * p.D
    assert p.loss <= float(law.loss(n, d)) + 1e-12


def test_closed_form_exponents():
    law = LAWS[0]
    n1, n2 = compute_optimal(law, 1e20).N, compute_optimal(law, 1e23).N
    assert math.log(n2 / n1) / math.log(1e3) == pytest.approx(law.beta / (law.alpha + law.beta))


def test_attention_flops_model_matches_constrained_minimisation():
    law = LAWS[0]
    fm = FlopsModel(n_ctx=8192, aspect=64.0)
    for c in (1e20, 1e23):
        p = compute_optimal(law, c, fm)
        n, _ = _numerical_optimum(law, c, fm)
        assert pytest.approx(n, rel=2e-3) == p.N
        assert float(fm(p.N)) * p.D == pytest.approx(c, rel=1e-9)
    # attention makes each token dearer: fewer tokens than under 6ND at the same compute
    assert compute_optimal(law, 1e20, fm).D < compute_optimal(law, 1e20).D


def test_inference_aware_equals_chinchilla_at_zero_inference():
    law = LAWS[0]
    for c in (1e20, 1e22):
        base = compute_optimal(law, c)
        aware = inference_aware(law, target_loss=base.loss, inference_tokens=0.0)
        assert pytest.approx(base.N, rel=1e-4) == aware.N
        assert pytest.approx(base.D, rel=1e-4) == aware.D
        assert aware.train_flops == pytest.approx(c, rel=1e-8)


def test_inference_aware_trains_smaller_longer_as_demand_grows():
    law = LAWS[0]
    base = compute_optimal(law, 1e21)
    plans = [
        inference_aware(law, target_loss=base.loss, inference_tokens=d)
        for d in (0.0, 1e10, 1e11, 1e12, 1e13)
    ]
    ns = [p.N for p in plans]
    ds = [p.D for p in plans]
    assert all(a > b for a, b in itertools.pairwise(ns))
    assert all(a < b for a, b in itertools.pairwise(ds))
    for p in plans:  # on the iso-loss curve, and never costlier than Chinchilla + inference
        assert float(law.loss(p.N, p.D)) == pytest.approx(base.loss, rel=1e-10)
        assert p.total_flops <= base.train_flops + 2 * base.N * p.inference_tokens + 1e6


def test_inference_aware_is_a_minimum_on_the_iso_loss_curve():
    law = LAWS[0]
    target = compute_optimal(law, 1e21).loss
    p = inference_aware(law, target_loss=target, inference_tokens=1e12)

    def total(n: float) -> float:
        return 6 * n * tokens_for_loss(law, n, target) + 2 * n * 1e12

    for factor in (0.97, 1.03):
        assert total(p.N * factor) > p.total_flops


def test_plan_from_loss_and_errors():
    law = LAWS[0]
    by_c = plan(law, compute=1e21)["chinchilla"]
    by_l = plan(law, target_loss=by_c.loss)["chinchilla"]
    assert pytest.approx(by_c.N, rel=1e-4) == by_l.N
    with pytest.raises(UserError, match="exactly one"):
        plan(law)
    with pytest.raises(UserError, match="irreducible"):
        plan(law, target_loss=1.0)
    with pytest.raises(UserError, match="compute"):
        compute_optimal(law, -1.0)


def test_plan_intervals_cover_the_point_plan():
    law = LAWS[0]
    rng = np.random.default_rng(0)
    base = np.array([law.E, law.A, law.B, law.alpha, law.beta])
    boot = base * np.exp(rng.normal(0, 0.02, (200, 5)))
    iv = plan_intervals(boot, compute=1e21, inference_tokens=1e12)
    p = plan(law, compute=1e21, inference_tokens=1e12)
    for name in ("chinchilla", "inference_aware"):
        lo, hi = iv[name]["N"]
        assert lo < p[name].N < hi
