"""Search at one proxy, confirm at the others, fit per hyperparameter, transfer every tuned
value, train the result — through the real commands (`muscale sweep` = Hydra multirun with
muscale's sweeper), on a tiny teacher MLP; and a real depth sweep in-process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from muscale.sweep.cost import tuning_cost
from muscale.sweep.driver import run_local
from muscale.sweep.store import Store

TINY_MLP = [
    "model=mlp",
    "data=teacher",
    "model.depth=2",
    "data.batch_size=32",
    "data.eval_batches=2",
    "trainer.max_steps=8",
    "trainer.eval_every=0",
    "trainer.progress=off",
    "param.zero_readout=true",  # calibrated with the pre-issue-10 zero-init readout
]


def muscale(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "muscale", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow  # ~27 Hydra jobs: about 2 minutes on 2 shared cores
def test_search_confirm_fit_transfer_train(tmp_path):
    store = tmp_path / "s.db"
    sweep = muscale(
        "sweep",
        "sweep.name=sc",
        f"sweep.store={store}",
        f"hydra.sweep.dir={tmp_path / 'runs'}",
        *TINY_MLP,
        "sweep.widths=[16,32]",
        "sweep.strategy=asha",
        "sweep.search.trials=4",
        "sweep.search.eta=2",
        "sweep.space.alpha_out={low:0.25,high:4}",
        "sweep.space.alpha_in={low:0.5,high:2}",
        "sweep.confirm.enabled=true",
        "sweep.confirm.points=3",
        "sweep.confirm.extend=0",
        cwd=tmp_path,
    )
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    recs = Store(str(store)).records("sc")
    rungs = [r for r in recs if "trainer.stop_at" in r.hparams]
    confirm = [r for r in recs if "trainer.stop_at" not in r.hparams]
    assert sorted({r.hparams["trainer.stop_at"] for r in rungs}) == [2, 4, 8]
    assert {r.width for r in rungs} == {16} and {r.width for r in confirm} == {16, 32}
    assert {r.seed for r in confirm} == {0, 1}
    # a promoted point resumed rung after rung in one run directory, and its top-rung loss
    # is bit for bit the loss of the same point trained without stops (a confirmation trial)
    top = [r for r in rungs if r.hparams["trainer.stop_at"] == 8]
    assert len(top) == 1 and len({r.run_dir for r in rungs if r.lr == top[0].lr}) == 1
    hp = {k: v for k, v in top[0].hparams.items() if k != "trainer.stop_at"}
    twin = [
        r
        for r in confirm
        if r.width == 16 and r.seed == 0 and r.lr == top[0].lr and r.hparams == hp
    ]
    assert len(twin) == 1 and twin[0].loss == top[0].loss
    assert twin[0].run_dir != top[0].run_dir
    # cost: a point costs its highest rung (4 points, eta 2: rungs of 2, 4, 8 steps reached
    # by 2, 1, 1 of them); FLOPs = steps x 32 samples x 6N, N = the MLP's weights and biases
    cost = tuning_cost(rungs)
    n_params = (32 * 16 + 16) + 2 * (16 * 16 + 16) + (16 * 10 + 10)
    assert cost.runs == 4 and cost.steps == 2 + 2 + 4 + 8 and cost.trials == 7
    assert cost.flops == pytest.approx(16 * 32 * 6 * n_params, rel=1e-9)
    # fit: a verdict per hyperparameter, with what to sweep next when inconclusive
    fit = muscale("fit", f"store={store}", "format=json", f"out={tmp_path / 'fit'}", cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    report = json.loads(fit.stdout)
    assert report["verdict"] in ("holds", "drifts", "inconclusive")
    assert report["params"]["alpha_out"]["verdict"] in ("holds", "drifts", "inconclusive")
    for v in (report, report["params"]["alpha_out"]):
        assert v["reason"] and (v["verdict"] != "inconclusive" or v["next"])
    # transfer: every tuned value with its provenance; the written config trains
    tr = muscale(
        "transfer",
        f"store={store}",
        "target.width=64",
        "target.max_steps=3",
        "target.device=cpu",
        "target.precision=fp32",
        "target.compile=false",
        f"out={tmp_path / 'big.yaml'}",
        cwd=tmp_path,
    )
    assert tr.returncode == 0, tr.stderr
    written = yaml.safe_load((tmp_path / "big.yaml").read_text())
    tuned = written["provenance"]["tuned"]
    assert set(tuned) == {"optim.lr", "param.output_mult", "param.input_mult"}
    assert written["optim"]["lr"] == tuned["optim.lr"]["value"]
    assert written["param"]["output_mult"] == tuned["param.output_mult"]["value"]
    assert written["param"]["input_mult"] == tuned["param.input_mult"]["value"]
    assert tuned["param.input_mult"]["source"] == "search"
    assert tuned["param.output_mult"]["source"] == "fit"
    assert tuned["param.output_mult"]["widths"] == [16, 32]
    assert written["trainer"]["stop_at"] is None
    run = muscale(
        "train",
        "--config-dir",
        str(tmp_path),
        "--config-name",
        "big",
        f"hydra.run.dir={tmp_path / 'big_run'}",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    cfg = json.loads((tmp_path / "big_run" / "config.json").read_text())
    assert cfg["model"]["width"] == 64
    assert cfg["param"]["output_mult"] == pytest.approx(tuned["param.output_mult"]["value"])
    result = json.loads((tmp_path / "big_run" / "result.json").read_text())
    assert result["completed"] and result["steps"] == 3


def test_depth_sweep_transfers_to_a_deeper_target(tmp_path):
    """Depth-μP / CompleteP: proxies at depths 1 and 2 (α = 1), fit across depth, a depth-4
    target that trains with base_depth = the shallowest proxy."""
    store = tmp_path / "d.db"
    args = [
        "model.n_heads=2",
        "data.seq_len=16",
        "data.batch_size=8",
        "data.eval_batches=1",
        "trainer.max_steps=6",
        "trainer.eval_every=0",
        "trainer.progress=off",
        "trainer.save_final=false",
        "param.depth_alpha=1.0",
        "sweep.name=depth",
        f"sweep.store={store}",
        "sweep.widths=[16]",
        "sweep.depths=[1,2]",
        "sweep.lrs=[0.003,0.01,0.03]",
        "sweep.seeds=[0,1]",
    ]
    cfg, losses = run_local(args, tmp_path / "runs")
    assert cfg.scale == "depth" and len(losses) == 12
    recs = Store(str(store)).records("depth")
    assert sorted({r.depth for r in recs}) == [1, 2] and {r.width for r in recs} == {16}
    assert all(r.config["param"]["base_depth"] == 1 for r in recs)
    cost = tuning_cost(recs)
    shallow = tuning_cost([r for r in recs if r.depth == 1])
    assert cost.runs == 12 and cost.steps == 12 * 6 and cost.wall_seconds > 0
    assert 2 * shallow.flops < cost.flops  # the depth-2 proxies cost more per step
    from muscale.sweep.optima import fit_sweep
    from muscale.sweep.transfer import TargetConfig, make_transfer

    fit = fit_sweep(recs)
    assert fit.scale == "depth"
    out = make_transfer(
        fit,
        recs,
        TargetConfig(width=16, depth=4, max_steps=2, device="cpu", precision="fp32", compile=False),
    )
    assert out["model"]["depth"] == 4 and out["param"]["base_depth"] == 1
    assert out["param"]["depth_alpha"] == 1.0
    assert out["provenance"]["tuned"]["optim.lr"]["depths"] == [1, 2]
    (tmp_path / "deep.yaml").write_text(yaml.safe_dump(out, sort_keys=False))
    run = muscale(
        "train",
        "--config-dir",
        str(tmp_path),
        "--config-name",
        "deep",
        f"hydra.run.dir={tmp_path / 'deep_run'}",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]


@pytest.mark.parametrize(
    "args,needle",
    [
        (
            ["sweep.strategy=asha", "sweep.search.min_steps=1000", "trainer.max_steps=10"],
            "min_steps",
        ),
        (["sweep.space.alpha_out={low:2,high:1}"], "sweep.space.alpha_out.high"),
        (["sweep.strategy=random", "sweep.search.width=48"], "sweep.search.width"),
        (["sweep.confirm.params=[dropout]"], "sweep.confirm.params"),
    ],
)
def test_search_bad_input_is_one_line(tmp_path, args, needle):
    proc = muscale("sweep", f"sweep.store={tmp_path / 's.db'}", *args, cwd=tmp_path)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "s.db").exists()
