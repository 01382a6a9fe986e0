"""Hyperparameter laws: the DeepSeek LLM power laws are recovered from synthetic sweeps."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from muscale.errors import UserError
from muscale.scaling.hparams import fit_hparams

# DeepSeek LLM (2024), Eq. 1
ETA = (0.3118, -0.1250)
BATCH = (0.2920, 0.3271)


def sweep(budgets=None, noise=5e-4, seed=0) -> pd.DataFrame:
    """Loss quadratic in (log lr, log B) around the true optimum at each budget."""
    budgets = np.logspace(17, 20, 4) if budgets is None else budgets
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        eta = ETA[0] * c ** ETA[1]
        bs = BATCH[0] * c ** BATCH[1]
        for u, v in itertools.product(np.linspace(-1.5, 1.5, 7), repeat=2):
            loss = 3.0 * c**-0.05 + 0.01 * u * u + 0.006 * v * v + 0.002 * u * v
            rows.append((c, eta * np.exp(u), bs * np.exp(v), loss + rng.normal(0, noise)))
    return pd.DataFrame(rows, columns=["C", "lr", "batch_size", "loss"])


def test_vertex_method_recovers_power_laws_with_intervals():
    fit = fit_hparams(sweep(), n_boot=100)
    assert fit.lr is not None and fit.batch_size is not None
    for law, (coef, exp) in ((fit.lr, ETA), (fit.batch_size, BATCH)):
        assert law.exponent == pytest.approx(exp, abs=0.01)
        assert law.coef == pytest.approx(coef, rel=0.25)
        lo, hi = law.exponent_ci
        assert lo <= exp <= hi
    pred = fit.predict(1e21)
    assert pred["lr"] == pytest.approx(ETA[0] * 1e21 ** ETA[1], rel=0.1)
    lo, hi = pred["lr_ci"]
    assert lo < pred["lr"] < hi


def test_near_optimal_method_is_unbiased_on_a_symmetric_bowl():
    fit = fit_hparams(sweep(noise=0.0), method="near_optimal", tol=0.003)
    assert fit.lr is not None
    assert fit.lr.exponent == pytest.approx(ETA[1], abs=0.02)


def test_lr_only_sweep():
    df = sweep().drop(columns="batch_size")
    df = df.groupby(["C", "lr"], as_index=False)["loss"].min()
    fit = fit_hparams(df)
    assert fit.batch_size is None and fit.lr is not None
    assert fit.lr.exponent == pytest.approx(ETA[1], abs=0.02)


def test_one_level_is_a_user_error():
    with pytest.raises(UserError, match="2\\+ compute levels"):
        fit_hparams(sweep(budgets=[1e18]))
    with pytest.raises(UserError, match="lr or batch_size"):
        fit_hparams(sweep().drop(columns=["lr", "batch_size"]))
