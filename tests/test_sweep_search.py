"""Joint-search strategies, confirmation, per-hyperparameter verdicts and transfer, on
synthetic losses (no training): known optima, known drifts, known noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from store_records import done_record

from muscale.sweep.config import STOP_AT, SweepConfig
from muscale.sweep.driver import drive, trial_steps
from muscale.sweep.optima import OptimumSummary, Trend, fit_param, fit_sweep, verdict
from muscale.sweep.search import rungs
from muscale.sweep.store import Record
from muscale.sweep.strategy import planner
from muscale.sweep.transfer import TargetConfig, make_transfer
from muscale.sweep.trial_spec import Trial

LR_OPT = -7.0  # log2 of the optimal LR at every width (unless a test drifts it)
AOUT_OPT = 1.0  # log2 of the optimal output multiplier
AIN_OPT = -1.0  # log2 of the optimal input multiplier


def synthetic_loss(t: Trial, *, lr_drift: float = 0.0, noise: float = 0.0) -> float:
    """Quadratic bowl in log2 of each hyperparameter, lower for wider models; a halving rung
    adds 1/steps (monotone in steps, so rungs rank points like the full budget does)."""
    scale = t.width if t.depth is None else t.depth
    x_opt = LR_OPT + lr_drift * math.log2(scale / 32)
    loss = 1.0 + 2.0 / math.sqrt(scale) + 0.05 * (math.log2(t.lr) - x_opt) ** 2
    loss += 0.05 * (math.log2(t.hparams.get("param.output_mult", 2.0)) - AOUT_OPT) ** 2
    loss += 0.05 * (math.log2(t.hparams.get("param.input_mult", 0.5)) - AIN_OPT) ** 2
    loss += 1.0 / t.hparams.get(STOP_AT, 81) - 1.0 / 81  # 81: the full budget
    if noise:
        rng = np.random.default_rng(int(t.key, 16))  # per trial, reproducible
        loss += float(rng.normal(0, noise))
    if math.log2(t.lr) > x_opt + 4:  # far above the optimum: diverges
        return math.inf
    return loss


def run(cfg: SweepConfig, loss=synthetic_loss, *, done=None, max_steps: int = 81):
    launched: list[Trial] = []

    def launch(trials: list[Trial]) -> list[float]:
        launched.extend(trials)
        return [loss(t) for t in trials]

    plan = planner(cfg, max_steps=max_steps)
    losses = drive(plan, launch, done=done)
    return plan, losses, launched


SPACE = {
    "lr": {"low": 2**-12, "high": 2**-2},
    "alpha_out": {"low": 2**-3, "high": 2**4},
    "alpha_in": {"low": 2**-4, "high": 2**2},
}


def _cfg(strategy: str, **kw) -> SweepConfig:
    base = dict(
        name="s",
        strategy=strategy,
        widths=[32, 64, 128, 256],
        space=SPACE,
        search={"trials": 27, "seed": 3, "batch": 4},
    )
    base.update(kw)
    return SweepConfig(**base)


@pytest.mark.parametrize("strategy", ["random", "asha", "tpe", "cmaes"])
def test_strategies_are_seeded_and_resume_without_rerunning(strategy):
    cfg = _cfg(strategy, confirm={"enabled": True, "seeds": [0, 1]})
    plan1, losses1, launched1 = run(cfg)
    plan2, losses2, _ = run(cfg)
    assert set(losses1) == set(losses2)  # same proposals from the same seed
    assert plan1.found == plan2.found
    # a sweep killed halfway: the rerun reuses the finished half, runs only the rest
    half = {t.key: losses1[t.key][1] for t in launched1[: len(launched1) // 2]}
    _, losses3, launched3 = run(cfg, done=half)
    assert set(losses3) == set(losses1)
    assert not {t.key for t in launched3} & set(half)
    assert len(launched3) == len(losses1) - len(half)
    # the search found a point near the bowl's bottom
    point, _ = plan1.found["mup"]
    assert abs(math.log2(point["lr"]) - LR_OPT) < 2.5


def test_halving_rungs_resume_and_cost():
    assert rungs(81, 3, None) == [9, 27, 81]
    assert rungs(100, 3, 10) == [10, 30, 90, 100]
    cfg = _cfg("asha", widths=[32])
    plan, _, launched = run(cfg)
    per_rung = {}
    for t in launched:
        per_rung.setdefault(t.hparams[STOP_AT], set()).add(t.run_id)
    assert {k: len(v) for k, v in per_rung.items()} == {9: 27, 27: 9, 81: 3}
    # a promoted point's rungs share one run directory (it resumes) but are separate rows
    assert per_rung[81] <= per_rung[27] <= per_rung[9]
    assert len({t.key for t in launched}) == len(launched)
    rand_plan, _, rand_launched = run(_cfg("random", widths=[32]))
    steps = trial_steps(launched, 81)
    rand_steps = trial_steps(rand_launched, 81)
    assert steps == 18 * 9 + 6 * 27 + 3 * 81 and rand_steps == 27 * 81
    assert steps <= 0.4 * rand_steps
    # rung losses rank points as the full budget does here, so halving keeps random's best
    assert plan.found["mup"][0] == rand_plan.found["mup"][0]
    assert plan.found["mup"][1] == pytest.approx(rand_plan.found["mup"][1], rel=1e-12)


def test_confirm_covers_every_proxy_and_follows_a_drifting_optimum():
    drift = 1.0  # +1 octave per doubling: at width 256 the optimum is 3 octaves up
    cfg = _cfg("random", confirm={"enabled": True, "seeds": [0, 1], "extend": 2})
    plan, losses, _ = run(cfg, loss=lambda t: synthetic_loss(t, lr_drift=drift))
    point, _ = plan.found["mup"]
    conf = plan.confirms["mup"]
    # true optima, in octaves from the found value (the random search misses them)
    true = {
        "lr": lambda w: LR_OPT + drift * math.log2(w / 32) - math.log2(point["lr"]),
        "alpha_out": lambda w: AOUT_OPT - math.log2(point["alpha_out"]),
    }
    for q in ("lr", "alpha_out"):
        for w in cfg.widths:
            centre = conf.centre(q, w, losses)
            todo, xs = conf.curve(q, w, losses, centre)
            assert not todo and len(xs) >= 5
            assert min(xs) < true[q](w) < max(xs)  # the optimum is inside every curve
            assert xs[:5] == [centre - 2 + k for k in range(5)]  # the spacing-1 lattice
            if w <= 64:  # no trend yet: centred on the found point
                assert centre == 0.0
            else:  # centred on the narrower proxies' trend: no edge extension needed
                assert abs(centre - true[q](w)) <= 0.5 + 1e-9 and len(xs) == 5
    # every trial of a curve ran with both seeds
    seeds = {}
    for t, _ in losses.values():
        seeds.setdefault((t.width, t.lr, tuple(sorted(t.hparams.items()))), set()).add(t.seed)
    assert all({0, 1} <= v or v == {0} for v in seeds.values())


def test_confirm_without_trend_centring_would_extend_at_the_wide_proxies():
    """What the centring saves: the same drift with the curves all on the found point."""
    from muscale.sweep.search import Confirm

    cfg = _cfg("random", confirm={"enabled": True, "seeds": [0, 1], "extend": 2})
    plan, losses, _ = run(cfg, loss=lambda t: synthetic_loss(t, lr_drift=1.0))
    point, _ = plan.found["mup"]
    conf = Confirm(cfg, "mup", point)
    fixed = {}
    for w in cfg.widths:
        known = dict(losses)
        while True:  # the curve centred on the found value, run to completion
            todo, xs = conf.curve("lr", w, known, 0.0)
            if not todo:
                break
            known.update({t.key: (t, synthetic_loss(t, lr_drift=1.0)) for t in todo})
        fixed[w] = len(xs)
    assert fixed[128] == fixed[256] == 7  # two edge extensions each, where centring needs none


def _hp(point):
    return {"param.input_mult": point["alpha_in"], "param.output_mult": point["alpha_out"]}


def _config(t: Trial) -> dict:
    return {
        "model": {"family": "gpt", "width": t.width, "depth": t.depth or 2, "n_heads": 2},
        "param": {"scheme": t.scheme, "base_width": 32, "base_depth": None},
        "optim": {"name": "adamw", "lr": t.lr},
        "data": {"name": "synthetic"},
        "trainer": {"max_steps": 81},
        "logger": {},
    }


def records_of(losses) -> list[Record]:
    return [
        done_record(
            key=t.key,
            sweep=t.sweep,
            scheme=t.scheme,
            width=t.width,
            depth=t.depth if t.depth is not None else 2,
            seed=t.seed,
            lr=t.lr,
            loss=loss if math.isfinite(loss) else None,
            hparams=t.hparams,
            config=_config(t),
        )
        for t, loss in losses.values()
    ]


def _confirmed(drift: float = 0.0, noise: float = 0.0, seeds=(0, 1), strategy="tpe"):
    cfg = _cfg(strategy, confirm={"enabled": True, "seeds": list(seeds)})
    _, losses, _ = run(cfg, loss=lambda t: synthetic_loss(t, lr_drift=drift, noise=noise))
    return records_of(losses)


def test_verdicts_per_hyperparameter_hold_drift_and_transfer_everything(tmp_path):
    recs = _confirmed(noise=0.002)
    lr = fit_param(recs, param="lr")
    aout = fit_param(recs, param="alpha_out")
    assert [o.scale_value for o in lr.optima] == [32, 64, 128, 256]
    assert lr.verdict.kind == "holds" and aout.verdict.kind == "holds", (lr.verdict, aout.verdict)
    assert all(abs(o.log2_opt - LR_OPT) < 0.3 for o in lr.optima)
    assert all(abs(o.log2_opt - AOUT_OPT) < 0.3 for o in aout.optima)
    assert all(o.n_seeds == 2 for o in lr.optima + aout.optima)
    drifting = fit_param(_confirmed(drift=-1.0, noise=0.002), param="lr")
    assert drifting.verdict.kind == "drifts" and drifting.trend is not None
    assert drifting.trend.slope == pytest.approx(-1.0, abs=0.15)
    # transfer: every tuned value, each with where it came from
    fit = fit_sweep(recs)
    assert fit.verdict("mup").kind == "holds"
    out = make_transfer(fit, recs, TargetConfig(width=1024), store="x.db")
    tuned = out["provenance"]["tuned"]
    assert set(tuned) == {"optim.lr", "param.output_mult", "param.input_mult"}
    assert tuned["optim.lr"]["source"] == "fit" and tuned["param.output_mult"]["source"] == "fit"
    assert tuned["param.input_mult"]["source"] == "search"  # searched, not confirmed
    assert tuned["optim.lr"]["widths"] == [32, 64, 128, 256]
    assert math.log2(out["optim"]["lr"]) == pytest.approx(LR_OPT, abs=0.3)
    assert math.log2(out["param"]["output_mult"]) == pytest.approx(AOUT_OPT, abs=0.3)
    assert out["param"]["input_mult"] == tuned["param.input_mult"]["value"]
    assert out["model"]["width"] == 1024 and out["trainer"]["stop_at"] is None


def test_inconclusive_when_the_interval_is_wider_than_the_tolerance():
    noisy = fit_param(_confirmed(noise=0.05), param="lr")
    assert noisy.verdict.kind == "inconclusive", noisy.verdict
    assert "wider than the tolerance" in noisy.verdict.reason and noisy.verdict.next
    lo, hi = noisy.trend.ci
    assert (hi - lo) / 2 > noisy.tol
    one_seed = fit_param(_confirmed(noise=0.002, seeds=(0,)), param="lr")
    assert one_seed.verdict.kind == "inconclusive" and "seed" in one_seed.verdict.reason


def _summaries(n=3, **kw):
    base = dict(on_edge=False, edge=None, n_valid=5, n_seeds=2, value=0.01, lowest=1e-3, highest=1)
    base.update(kw)
    return [OptimumSummary(scale_value=32 * 2**i, **base) for i in range(n)]


@pytest.mark.parametrize(
    "slope,ci,want",
    [
        (0.02, (-0.1, 0.14), "holds"),
        (0.0, (-0.5, 0.5), "inconclusive"),  # half-width 0.5 > tol 0.15
        (-1.0, (-1.6, -0.4), "drifts"),  # wide, but excludes the whole tolerance band
        (0.3, (0.2, 0.4), "drifts"),
    ],
)
def test_verdict_rule_on_the_interval(slope, ci, want):
    t = Trend(slope=slope, ci=ci, intercept=0.0, drift_octaves=slope * 2, widths=[32, 64, 128])
    assert verdict(t, _summaries(), 0.15).kind == want


def test_edge_and_single_point_optima_are_inconclusive():
    t = Trend(slope=0.0, ci=(-0.05, 0.05), intercept=0.0, drift_octaves=0.0, widths=[32, 64, 128])
    edge = verdict(t, _summaries(on_edge=True, edge="high"), 0.15)
    assert edge.kind == "inconclusive" and "every optimum is on the edge" in edge.reason
    assert "above 1" in edge.next
    single = verdict(t, _summaries(n_valid=1), 0.15)
    assert single.kind == "inconclusive" and "only one valid" in single.reason
    assert "smaller" in single.next
    assert verdict(None, _summaries(n=1), 0.15).kind == "inconclusive"


def _grid_records(x_opt_of, widths=(32, 64, 128), seeds=(0, 1), diverge_above=None):
    cfg = SweepConfig(
        name="g", widths=list(widths), seeds=list(seeds), lrs=[2.0**x for x in range(-10, -3)]
    )

    def loss(t):
        x = math.log2(t.lr)
        if diverge_above is not None and x > diverge_above:
            return math.inf
        return 1.0 + 0.05 * (x - x_opt_of(t.width)) ** 2 + 0.001 * t.seed

    _, losses, _ = run(cfg, loss=loss)
    return records_of(losses)


def test_fit_sweep_says_inconclusive_on_the_edge_and_after_divergence():
    edge = fit_sweep(_grid_records(lambda w: -1.0))  # optimum above the largest LR tried
    v = edge.verdict("mup")
    assert v.kind == "inconclusive" and "edge" in v.reason and not edge.holds("mup")
    assert "extend lr" in v.next and edge.to_json()["verdict"] == "inconclusive"
    one = fit_sweep(_grid_records(lambda w: -7.0, diverge_above=-9.5))  # one LR survives
    assert one.verdict("mup").kind == "inconclusive"
    assert "only one valid" in one.verdict("mup").reason
    ok = fit_sweep(_grid_records(lambda w: -7.0))
    assert ok.verdict("mup").kind == "holds", ok.verdict("mup")


def test_depth_sweep_fits_across_depth_and_transfers_deeper():
    cfg = SweepConfig(
        name="d", widths=[64], depths=[2, 4, 8], seeds=[0, 1], lrs=[2.0**x for x in range(-10, -3)]
    )
    assert cfg.scale == "depth"
    _, losses, launched = run(cfg, loss=lambda t: synthetic_loss(t))
    assert {(t.width, t.depth) for t in launched} == {(64, 2), (64, 4), (64, 8)}
    recs = records_of(losses)
    fit = fit_sweep(recs)
    assert fit.scale == "depth" and sorted(v for _, v in fit.best) == [2, 4, 8]
    assert fit.verdict("mup").kind == "holds", fit.verdict("mup")
    with pytest.raises(Exception, match=r"target\.depth"):
        make_transfer(fit, recs, TargetConfig(width=64))
    out = make_transfer(fit, recs, TargetConfig(width=64, depth=16))
    assert out["model"]["depth"] == 16 and out["provenance"]["tuned"]["optim.lr"]["depths"] == [
        2,
        4,
        8,
    ]
    assert math.log2(out["optim"]["lr"]) == pytest.approx(LR_OPT, abs=0.3)


def test_search_config_errors_name_the_field():
    from muscale.errors import ConfigError

    with pytest.raises(ConfigError, match=r"sweep\.space\.alpha_out\.high"):
        SweepConfig(strategy="random", space={"alpha_out": {"low": 2.0, "high": 1.0}})
    with pytest.raises(ConfigError, match=r"sweep\.space"):
        SweepConfig(strategy="random", space={"dropout": {"low": 0.1, "high": 0.2}})
    with pytest.raises(ConfigError, match=r"sweep\.widths"):
        SweepConfig(widths=[32, 64], depths=[2, 4])
    with pytest.raises(ConfigError, match=r"sweep\.search\.eta"):
        SweepConfig(strategy="asha", search={"eta": 1})
    with pytest.raises(ConfigError, match=r"sweep\.lrs"):
        SweepConfig(lrs=[float("nan")])


def test_each_scheme_is_searched_and_confirmed_on_its_own():
    cfg = _cfg("tpe", schemes=["sp", "mup"], confirm={"enabled": True, "seeds": [0, 1]})
    plan, losses, _ = run(cfg)
    assert set(plan.found) == {"sp", "mup"}
    for scheme in ("sp", "mup"):
        mine = [t for t, _ in losses.values() if t.scheme == scheme]
        assert {t.width for t in mine} == set(cfg.widths)  # confirmed at every proxy
        assert fit_param(records_of(losses), param="lr", scheme=scheme).scheme == scheme
