"""The library calls behind the CLI commands, and what the CLI prints for people."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from muscale.errors import UserError


def test_sig4_gives_four_significant_digits():
    from muscale.cli.common import sig4

    assert sig4(3.3446645736694336) == "3.345"
    assert sig4(0.000123456) == "0.0001235"
    assert sig4(12345.6) == "1.235e+04"
    assert sig4(7) == "7" and sig4(None) == "None" and sig4(True) == "True"


def test_train_cli_prints_rounded_losses_and_leaves_argv_alone(tmp_path: Path, capsys):
    from muscale.cli.main import main

    argv_before = list(sys.argv)
    rc = main(
        [
            "train",
            "trainer.max_steps=2",
            "trainer.eval_every=0",
            "trainer.progress=off",
            "data.eval_batches=1",
            f"hydra.run.dir={tmp_path / 'run'}",
        ]
    )
    assert rc == 0 and sys.argv == argv_before
    line = capsys.readouterr().err.strip().splitlines()[-1]
    loss = re.search(r"\| loss (\S+) \| eval_loss (\S+) \|", line)
    assert loss is not None, line
    for value in loss.groups():
        digits = value.split("e")[0].replace(".", "").lstrip("0")
        assert len(digits) <= 4, line


def test_train_state_round_trips_through_a_checkpoint_dict():
    import dataclasses

    from muscale.train.loop import TrainState

    state = TrainState(step=7, tokens=700, initial_loss=5.5, best_eval_loss=4.0, final_loss=4.2)
    saved = {**dataclasses.asdict(state), "scheduler": {}, "optim": {}}
    assert TrainState.from_saved(saved) == state
    assert TrainState.from_saved({"step": 3}) == TrainState(step=3)


def test_diagnostics_table_runs_what_is_asked_in_its_order():
    from muscale.diagnostics.suite import (
        DIAGNOSTICS,
        DiagnoseOptions,
        JacobianOptions,
        run,
    )

    assert list(DIAGNOSTICS) == [
        "spectra",
        "hessian",
        "ntk",
        "jacobian",
        "free_jacobian",
        "attention_ntk",
        "spectral_bias",
    ]
    opts = DiagnoseOptions(
        what=["jacobian"],
        jacobian=JacobianOptions(width=16, depths=[2], activations=["tanh"], inits=["gaussian"]),
    )
    out = run(opts)
    assert list(out) == ["jacobian"] and len(out["jacobian"]) == 1  # no checkpoint needed
    with pytest.raises(UserError, match="what='curvature' is not allowed: choose any of spectra"):
        run(DiagnoseOptions(what=["curvature"]))
    with pytest.raises(UserError, match="checkpoint is required"):
        run(DiagnoseOptions(what=["spectra"]))


def test_diagnose_options_from_a_composed_config():
    from omegaconf import OmegaConf

    from muscale.diagnostics.suite import DiagnoseOptions
    from muscale.hydra_app import compose

    cfg = OmegaConf.to_container(compose("diagnose", ["what=ntk", "ntk.n=4"]), resolve=True)
    opts = DiagnoseOptions.from_dict(cfg)  # type: ignore[arg-type]
    assert opts.what == ["ntk"] and opts.ntk.n == 4 and opts.hessian.k == 10


def test_scaling_plan_is_a_library_call():
    from muscale.scaling.report import PlanOptions, plan

    rep = plan(PlanOptions(compute=1e21))
    p = rep["chinchilla"]
    # C = 6 N D at the plan (the FLOPs model's default, coef 6, no attention term)
    assert p["train_flops"] == pytest.approx(6 * p["N"] * p["D"], rel=1e-9)
    assert p["train_flops"] == pytest.approx(1e21, rel=1e-6)
    with pytest.raises(UserError, match="compute"):
        plan(PlanOptions(compute="lots"))


def test_fit_store_names_the_sweeps_it_has(tmp_path: Path):
    from muscale.sweep.analyze import fit_store
    from muscale.sweep.store import Store

    path = tmp_path / "s.db"
    Store(str(path))
    with pytest.raises(UserError, match="is empty"):
        fit_store(str(path))
