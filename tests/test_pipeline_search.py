"""`muscale pipeline` with the sweep strategies (search.strategy=asha|random) at toy sizes:
the search runs the planners of muscale/sweep/search.py, halving rungs resume, and the
confirmation covers every proxy width around the found point."""

from __future__ import annotations

import math

import pytest
import yaml

from muscale.hydra_app import compose
from muscale.pipeline import run_pipeline
from muscale.sweep.config import space_key
from muscale.sweep.search import rungs
from muscale.sweep.store import Store

STEPS = 9


def _cfg(tmp_path, strategy: str, trials: int) -> object:
    return compose(
        "pipeline",
        [
            "pipeline.quick=true",
            f"out={tmp_path}",
            "dataset=synthetic",
            "proxy.widths=[16,32]",
            f"quick_profile.proxy.steps={STEPS}",
            "quick_profile.proxy.lrs=[0.004,0.016]",
            f"search.strategy={strategy}",
            f"search.trials={trials}",
            "search.space.lr={low:0.002,high:0.1}",
            "search.space.alpha_out={low:0.25,high:4.0}",
            "search.space.init_std={low:0.05,high:0.5}",
            "confirm.params=[lr,alpha_out]",
            "target.width=64",
            "jobs=2",
            "progress=off",
        ],
    )


def test_asha_search_resumes_rungs_and_confirms_at_every_width(tmp_path) -> None:
    r = run_pipeline(_cfg(tmp_path, "asha", 9))
    store = Store(str(tmp_path / "sweeps.db"), create=False)
    search = store.records("mup_search")
    # 9 points at rung 1, the best 3 at rung 3, the best 1 at the full 9 steps
    assert [r_ for r_ in rungs(STEPS, 3, 1)] == [1, 3, 9]
    by_rung: dict[int, int] = {}
    for rec in search:
        by_rung[rec.hparams["trainer.stop_at"]] = by_rung.get(rec.hparams["trainer.stop_at"], 0) + 1
    assert by_rung == {1: 9, 3: 3, 9: 1}
    # a promoted point resumed: the search's FLOPs count each point's last rung once
    # (6 points x 1 step + 2 x 3 + 1 x 9 = 21 steps), not every rung from scratch (9+9+27)
    from muscale.trial_pool import trial_flops

    tokens_per_step = 16 * 64  # the pipeline's proxy overrides: batch 16, seq_len 64
    w16 = ["data=synthetic", "model.width=16", "param.base_width=16", "data.seq_len=64"]
    per_token = trial_flops(compose("train", [*w16, "data.batch_size=16"]), 1)
    costs = r.stages["μP search"]
    assert costs["trials"] == 13 and costs["cpu_s"] > 0
    assert costs["flops"] == pytest.approx(per_token * 21 * tokens_per_step, rel=1e-9)
    # every trial ran at the smallest proxy; the confirmation at both widths, 1 seed (quick)
    confirm = store.records("mup_confirm")
    assert {rec.width for rec in confirm} == {16, 32}
    point = {
        "lr": r.searched["optim.lr"],
        **{k: v for k, v in r.searched.items() if k != "optim.lr"},
    }
    # the LR curve at each width goes through the found point, an octave either side
    for w in (16, 32):
        lrs = sorted(
            rec.lr
            for rec in confirm
            if rec.width == w and all(rec.hparams[k] == v for k, v in point.items() if k != "lr")
        )
        assert len(lrs) >= 3
        assert any(lr == pytest.approx(point["lr"]) for lr in lrs)
    # every tuned value is transferred: the confirmed ones by their fit across the widths
    # (one seed: inconclusive, so μP's mean of the per-width optima), init_std as searched
    t = yaml.safe_load(r.target_config.read_text())
    tuned = t["provenance"]["tuned"]
    assert t["param"]["output_mult"] == r.mup.tuned[space_key("alpha_out")]
    assert tuned[space_key("alpha_out")]["source"] == "fit"
    assert tuned[space_key("alpha_out")]["method"] == "mean"
    assert tuned["optim.lr"]["source"] == "fit"
    assert t["param"]["init_std"]["hidden"] == r.searched[space_key("init_std")]
    assert tuned[space_key("init_std")]["source"] == "search"
    assert {v.param for v in r.verdicts} == {"lr", "alpha_out"}
    assert all(v.kind == "inconclusive" for v in r.verdicts)  # one seed: no interval


def test_random_search_runs_every_point_at_full_budget(tmp_path) -> None:
    r = run_pipeline(_cfg(tmp_path, "random", 4))
    store = Store(str(tmp_path / "sweeps.db"), create=False)
    search = store.records("mup_search")
    assert len(search) == 4 and all(rec.width == 16 for rec in search)
    assert all("trainer.stop_at" not in rec.hparams for rec in search)
    best = min(search, key=lambda rec: rec.loss)
    assert r.searched[space_key("alpha_out")] == best.hparams[space_key("alpha_out")]
    assert math.isfinite(r.mup.target_loss) and math.isfinite(r.sp.target_loss)
    assert "μP search" in (tmp_path / "summary.md").read_text()
