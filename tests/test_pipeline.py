"""`muscale pipeline`: verdicts, the quick profile, and a tiny end-to-end run."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import yaml
from store_records import done_record

from muscale.errors import ConfigError
from muscale.hydra_app import compose
from muscale.pipeline import Verdict, run_pipeline, settings
from muscale.sweep.optima import fit_param

QUAD = lambda x, x0: (x - x0) ** 2  # noqa: E731  loss vs log2(value), optimum at x0


def _verdict(opt_log2: dict[int, float], noise: dict[int, float] | None = None, seeds=(0, 1)):
    """The pipeline's verdict row for LR curves that are parabolas in log2(LR) with their
    optimum at ``opt_log2[width]`` (shifted by ±noise per seed), 7 LRs per curve: the store
    records :func:`muscale.sweep.optima.fit_param` reads, as the pipeline passes them."""
    recs = []
    for w, x0 in opt_log2.items():
        for seed in seeds:
            shift = (noise or {}).get(w, 0.0) * (1 if seed else -1)
            for x in range(-10, -3):
                loss = 2.0 + QUAD(x, x0 + shift)
                recs.append(
                    done_record(
                        key=f"{w}-{seed}-{x}",
                        sweep="mup_confirm",
                        scheme="mup",
                        width=w,
                        seed=seed,
                        lr=2.0**x,
                        loss=loss,
                        hparams={"param.output_mult": 1.0},
                    )
                )
    return Verdict.of(fit_param(recs, param="lr", scale="width", scheme="mup", tol=0.15))


def test_verdict_holds_for_a_width_independent_optimum() -> None:
    v = _verdict({32: -7.3, 64: -7.3, 128: -7.3})
    assert v.kind == "holds", v
    assert abs(v.slope) < 1e-6 and v.ci[0] >= -0.15 and v.ci[1] <= 0.15
    assert v.optima[64] == pytest.approx(2.0**-7.3, rel=1e-6)


def test_verdict_drifts_when_the_optimum_moves_an_octave_per_doubling() -> None:
    v = _verdict({32: -5.2, 64: -6.2, 128: -7.2})
    assert v.kind == "drifts", v
    assert v.slope == pytest.approx(-1.0, abs=1e-6)


def test_verdict_inconclusive_on_the_edge_and_with_wide_intervals() -> None:
    edge = _verdict({32: -4.0, 64: -4.0, 128: -4.0})
    assert edge.kind == "inconclusive" and "edge" in edge.reason and edge.next
    wide = _verdict({32: -7, 64: -7, 128: -7}, noise={32: 0.8, 128: 0.8})
    assert wide.kind == "inconclusive" and "wider" in wide.reason, wide
    # a point estimate inside the band, its interval across the edge: not "holds"
    across = _verdict({32: -7.1, 64: -7.0, 128: -6.9}, noise={32: 0.1, 64: 0.1, 128: 0.1})
    assert 0 < across.slope < 0.15 and across.ci[1] > 0.15, across
    assert across.kind == "inconclusive" and "across an edge" in across.reason
    one = _verdict({32: -7, 64: -7}, seeds=(0,))
    assert one.kind == "inconclusive" and "seed" in one.reason
    assert all(math.isnan(x) for x in one.ci)  # no interval quoted without seed noise


def test_quick_profile_and_the_8x_rule() -> None:
    full = settings(compose("pipeline", []))
    quick = settings(compose("pipeline", ["pipeline.quick=true"]))
    assert quick.proxy.steps < full.proxy.steps and len(quick.proxy.seeds) == 1
    assert not quick.coord_check.enabled
    assert full.target.width >= 8 * min(full.proxy.widths)
    with pytest.raises(ConfigError, match=r"target\.width"):
        settings(compose("pipeline", ["target.width=128"]))
    with pytest.raises(ConfigError, match=r"confirm\.params"):
        settings(compose("pipeline", ["confirm.params=[lr,alpha_attn]"]))
    with pytest.raises(ConfigError, match=r"search\.strategy"):
        settings(compose("pipeline", ["search.strategy=bayes"]))


def test_cli_rejects_a_small_target_in_one_line(tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(
        [sys.executable, "-m", "muscale", "pipeline", "target.width=64", f"out={tmp_path}/p"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and "target.width" in p.stderr
    assert not (tmp_path / "p").exists()


def test_tiny_pipeline_end_to_end(tmp_path) -> None:
    cfg = compose(
        "pipeline",
        [
            "pipeline.quick=true",
            f"out={tmp_path}",
            "dataset=synthetic",
            "proxy.widths=[16,32]",
            "quick_profile.proxy.steps=8",
            "quick_profile.proxy.lrs=[0.004,0.016,0.064]",
            "search.strategy=grid",
            "search.params.alpha_out=[0.5,2.0]",
            "target.width=64",
            "jobs=1",
            "progress=off",
        ],
    )
    r = run_pipeline(cfg)
    # every trial was costed: CPU-seconds and FLOPs > 0
    # search LR x alpha_out; confirm: 3 LRs, then the other alpha_out (the searched point is
    # shared with the LR confirmation, not run twice)
    assert r.mup.tuning_trials == 3 * 2 + 3 + 1
    assert r.sp.tuning_trials == 3 * 2
    for s in (r.mup, r.sp):
        assert s.tuning_cpu_s > 0 and s.tuning_flops > 0 and math.isfinite(s.tuning_flops)
        assert len(s.target_losses) == 1 and math.isfinite(s.target_losses[0])
    assert {v.param for v in r.verdicts} == {"lr", "alpha_out"}
    # one seed: no interval, so no verdict can be "holds"
    assert all(v.kind == "inconclusive" for v in r.verdicts)
    # the written target config carries every tuned value and its provenance
    t = yaml.safe_load(r.target_config.read_text())
    assert t["model"]["width"] == 64
    assert t["param"]["output_mult"] == r.mup.tuned["param.output_mult"]
    assert t["optim"]["lr"] == pytest.approx(r.mup.tuned["optim.lr"])
    assert t["provenance"]["lr_method"] == "mean"
    md = (tmp_path / "summary.md").read_text()
    for field in ("target loss", "tuning CPU-s", "tuning FLOPs", "| lr |", "| alpha_out |"):
        assert field in md
    # SP's FLOPs: 6N + attention per token x tokens, N from an independent count
    from muscale.trial_pool import trial_flops

    train = compose(
        "train", ["data=synthetic", "model.width=16", "param=sp", "param.base_width=16"]
    )
    n = 16
    layers = train.model.depth
    # N: every parameter but the embedding lookup (Kaplan et al. 2020): blocks' matrices,
    # the readout, and the RMSNorm gains (2 per block + the final one)
    matmul = layers * (4 * n * n + 2 * n * round(train.model.ff_ratio * n)) + n * 256
    matmul += (2 * layers + 1) * n
    attn = 12 * layers * n * train.data.seq_len
    assert trial_flops(train, 1000) == pytest.approx((6 * matmul + attn) * 1000, rel=1e-9)
