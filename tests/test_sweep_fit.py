"""Fit, planners and store on synthetic results (no training): known optima are recovered."""

from __future__ import annotations

import math
import multiprocessing as mp

import numpy as np
import pytest
from store_records import done_record

from muscale.errors import UserError
from muscale.sweep.config import SweepConfig
from muscale.sweep.optima import fit_sweep
from muscale.sweep.store import Store
from muscale.sweep.strategy import AdaptivePlanner, GridPlanner, next_x


def _loss(x: float, x_opt: float, width: int, noise: float = 0.0, rng=None) -> float:
    """Loss near its optimum: quadratic in log2(LR), lower for wider models."""
    base = 2.0 + 4.0 / width**0.5
    eps = rng.normal(0, noise) if rng is not None and noise else 0.0
    return base + 0.05 * (x - x_opt) ** 2 + eps


def _records(
    opt_of_width,
    widths=(32, 64, 128, 256),
    seeds=(0, 1, 2),
    scheme="mup",
    noise=0.002,
    diverge_above=None,
):
    rng = np.random.default_rng(0)
    recs = []
    for w in widths:
        for x in np.arange(-14, -3 + 1e-9, 0.5):
            for s in seeds:
                div = diverge_above is not None and x > diverge_above
                loss = None if div else _loss(x, opt_of_width(w), w, noise, rng)
                recs.append(
                    done_record(
                        key=f"{scheme}{w}{x}{s}",
                        sweep="t",
                        scheme=scheme,
                        width=w,
                        seed=s,
                        lr=2.0**x,
                        loss=loss,
                    )
                )
    return recs


def test_recovers_flat_and_drifting_optima():
    mup = _records(lambda w: -8.0, scheme="mup")
    sp = _records(lambda w: -5.0 - math.log2(w / 32), scheme="sp")  # -1 octave per doubling
    fit = fit_sweep(mup + sp)
    js = fit.to_json()
    assert js["scheme"] == "mup" and js["transfer_holds"] is True
    assert abs(js["trend"]["lr"]["slope"]) < 0.05
    assert js["trend"]["lr"]["ci"][0] < 0 < js["trend"]["lr"]["ci"][1]
    sp_trend = js["by_scheme"]["sp"]["trend"]["lr"]
    assert sp_trend["slope"] == pytest.approx(-1.0, abs=0.05)
    assert js["by_scheme"]["sp"]["transfer_holds"] is False
    for r in js["per_width"]:
        want = -8.0 if r["scheme"] == "mup" else -5.0 - math.log2(r["width"] / 32)
        assert math.log2(r["lr_opt"]) == pytest.approx(want, abs=0.1)
        lo, hi = r["lr_opt_ci"]
        assert lo <= r["lr_opt"] <= hi
        assert not r["on_edge"]


def test_edge_and_divergence_are_flagged_not_fitted():
    recs = _records(lambda w: -3.5, diverge_above=-4.2)  # optimum beyond divergence
    fit = fit_sweep(recs)
    for r in fit.to_json()["per_width"]:
        assert r["n_diverged"] > 0
        assert r["lr_opt"] <= 2**-4.5 + 1e-12
    edge = fit_sweep(_records(lambda w: -2.0))  # optimum above the largest LR tried
    assert all(r["on_edge"] for r in edge.to_json()["per_width"])


def test_bad_inputs():
    with pytest.raises(UserError, match="no finished trials"):
        fit_sweep([])
    with pytest.raises(UserError, match="single width"):
        fit_sweep(_records(lambda w: -8.0, widths=(64,)))
    with pytest.raises(UserError, match="unknown hyperparameter"):
        SweepConfig(params={"dropout": [0.1]})


@pytest.mark.parametrize("x_opt", [-9.3, -6.1, -11.7])
def test_adaptive_finds_grid_optimum_with_fewer_trials(x_opt):
    cfg = SweepConfig(widths=[64], lr_min=2**-14, lr_max=2**-2, lr_points=25, strategy="adaptive")
    grid_x = [math.log2(v) for v in cfg.lr_grid()]
    grid_best = min(grid_x, key=lambda x: _loss(x, x_opt, 64))
    plan = AdaptivePlanner(cfg)
    losses = {}
    for _ in range(20):
        trials = plan.next_round(losses)
        if not trials:
            break
        for t in trials:
            losses[t.key] = (t, _loss(math.log2(t.lr), x_opt, 64))
    best = min(losses.values(), key=lambda v: v[1])[0]
    assert abs(math.log2(best.lr) - grid_best) <= 0.25 + 1e-9
    assert len(losses) <= len(grid_x) // 2


def test_next_x_converges_and_respects_bounds():
    assert next_x({0.0: 1.0, 1.0: 2.0, 2.0: 3.0}, step=1.0, tol=0.25, lo=0.0, hi=2.0) is None
    assert next_x({0.0: 3.0, 1.0: 2.0, 2.0: 1.0}, step=1.0, tol=0.25, lo=0.0, hi=4.0) == 3.0
    assert (
        next_x({0.0: 2.0, 1.0: 1.0, 2.0: math.inf}, step=1.0, tol=0.25, lo=0.0, hi=4.0) is not None
    )


def test_grid_planner_counts():
    cfg = SweepConfig(
        widths=[32, 64],
        schemes=["sp", "mup"],
        seeds=[0, 1],
        lrs=[1e-3, 1e-2],
        params={"alpha_out": [1.0, 2.0]},
    )
    trials = GridPlanner(cfg).next_round({})
    assert len(trials) == 2 * 2 * 2 * 2 * 2 and len({t.key for t in trials}) == len(trials)


def _writer(args):
    path, worker = args
    store = Store(path)
    for i in range(25):
        key = f"w{worker}-{i}"
        store.start(
            key,
            sweep="c",
            scheme="mup",
            width=64,
            depth=2,
            seed=i,
            lr=0.01,
            hparams={},
            config={"i": i},
            run_dir="x",
        )
        store.finish(
            key,
            final_loss=1.0,
            final_eval_loss=1.0,
            best_eval_loss=1.0,
            diverged=False,
            wall_time=0.1,
        )
    return worker


def test_store_is_safe_with_concurrent_writers(tmp_path):
    path = str(tmp_path / "s.db")
    Store(path)
    with mp.get_context("spawn").Pool(4) as pool:
        pool.map(_writer, [(path, w) for w in range(4)])
    recs = Store(path).records("c")
    assert len(recs) == 100 and all(r.status == "done" and r.attempts == 1 for r in recs)
