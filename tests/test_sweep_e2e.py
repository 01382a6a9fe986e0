"""`muscale sweep` -> store -> `muscale fit` -> `muscale transfer` -> `muscale train`, for real.

Tiny models and few steps: these check the machinery (durability, resume, divergence,
errors, SLURM); the μP-vs-SP transfer property is in test_transfer_property.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from muscale.sweep.store import Store

TINY = [
    "model.depth=1",
    "data.seq_len=16",
    "data.batch_size=4",
    "trainer.max_steps=6",
    "trainer.eval_every=0",
    "data.eval_batches=1",
    "trainer.progress=off",
]


def muscale(*args: str, cwd: Path, env: dict | None = None, timeout: int = 600):
    return subprocess.run(
        [sys.executable, "-m", "muscale", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _sweep_args(tmp: Path, name: str, *extra: str) -> list[str]:
    return [
        "sweep",
        f"sweep.name={name}",
        f"sweep.store={tmp / 'store.db'}",
        f"hydra.sweep.dir={tmp / 'runs'}",
        *TINY,
        *extra,
    ]


@pytest.mark.slow  # end to end: muscale in subprocesses
def test_sweep_fit_transfer_train(tmp_path):
    args = _sweep_args(
        tmp_path, "e2e", "sweep.widths=[16,32]", "sweep.lrs=[0.003,0.03,1000.0]", "model.n_heads=2"
    )
    proc = muscale(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    recs = Store(str(tmp_path / "store.db")).records("e2e")
    assert len(recs) == 6 and all(r.attempts == 1 for r in recs)
    huge = [r for r in recs if r.lr == 1000.0]
    assert len(huge) == 2 and all(r.diverged for r in huge)  # recorded, not a crash
    assert all(r.config["model"]["width"] == r.width and r.git_commit for r in recs)
    fit = muscale(
        "fit",
        f"store={tmp_path / 'store.db'}",
        "format=json",
        f"out={tmp_path / 'fit'}",
        cwd=tmp_path,
    )
    assert fit.returncode == 0, fit.stderr
    report = json.loads(fit.stdout)
    assert {w["width"] for w in report["per_width"]} == {16, 32}
    assert all(w["n_diverged"] == 1 and w["n_trials"] == 3 for w in report["per_width"])
    assert all(w["lr_opt"] < 1.0 for w in report["per_width"])  # diverged LR excluded
    assert set(report["trend"]["lr"]) >= {"slope", "ci"} and "transfer_holds" in report
    assert (tmp_path / "fit" / "transfer.png").stat().st_size > 0
    # transfer: a ready config that `muscale train` runs as is
    tr = muscale(
        "transfer",
        f"store={tmp_path / 'store.db'}",
        "target.width=64",
        "target.max_steps=3",
        "target.device=cpu",
        "target.precision=fp32",
        "target.compile=false",
        f"out={tmp_path / 'big.yaml'}",
        cwd=tmp_path,
    )
    assert tr.returncode == 0, tr.stderr
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
    lines = [
        json.loads(x) for x in (tmp_path / "big_run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert any("loss" in x for x in lines)
    cfg = json.loads((tmp_path / "big_run" / "config.json").read_text())
    assert cfg["model"]["width"] == 64 and cfg["param"]["base_width"] == 16


@pytest.mark.slow  # end to end: muscale in subprocesses
def test_killed_sweep_resumes_with_every_trial_once(tmp_path):
    args = _sweep_args(
        tmp_path,
        "kill",
        "sweep.widths=[16,32]",
        "sweep.lrs=[0.001,0.003,0.01]",
        "model.n_heads=2",
        "trainer.max_steps=30",
    )
    store_path = tmp_path / "store.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "muscale", *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    done = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if store_path.exists():
            done = len(Store(str(store_path)).records("kill"))
            if done >= 2:
                break
    assert proc.poll() is None, "the sweep finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {r.key: r for r in Store(str(store_path)).records("kill", status=None)}
    finished_before = {k for k, r in before.items() if r.status == "done"}
    assert len(finished_before) >= 2
    again = muscale(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    after = Store(str(store_path)).records("kill")
    assert len(after) == 6 and len({r.key for r in after}) == 6
    for r in after:
        if r.key in finished_before:
            assert r.attempts == 1  # a finished trial is never run again
        assert r.attempts <= 2


@pytest.mark.parametrize(
    "args,needle",
    [
        (["sweep", "sweep.params.dropout=[0.1]"], "unknown hyperparameter"),
        (["sweep", "sweep.widths=[]"], "sweep.widths"),
        (["sweep", "sweep.strategy=bayes"], "sweep.strategy"),
    ],
)
def test_sweep_bad_input(tmp_path, args, needle):
    proc = muscale(*args, cwd=tmp_path)
    assert proc.returncode == 2 and needle in proc.stderr and proc.stderr.count("\n") == 1, (
        proc.stderr
    )


def _fake_trials(store: Store, sweep: str, widths: list[int]) -> None:
    """Finished trials without training (a quadratic loss in log2 LR), two seeds each."""
    import math

    for w in widths:
        for lr, seed in ((lr, seed) for lr in (1e-3, 1e-2, 1e-1) for seed in (0, 1)):
            key = f"{sweep}-{w}-{lr}-{seed}"
            cfg = {
                "model": {"family": "gpt", "width": w, "depth": 1, "n_heads": 2},
                "param": {"scheme": "mup", "base_width": min(widths)},
                "optim": {"name": "adamw", "lr": lr},
                "data": {"name": "synthetic"},
                "trainer": {},
                "logger": {},
            }
            store.start(
                key,
                sweep=sweep,
                scheme="mup",
                width=w,
                depth=1,
                seed=seed,
                lr=lr,
                hparams={},
                config=cfg,
                run_dir="x",
            )
            loss = 3.0 + 0.1 * (math.log2(lr) + 7) ** 2 - 0.01 * w + 0.001 * seed
            store.finish(
                key,
                final_loss=loss,
                final_eval_loss=loss,
                best_eval_loss=loss,
                diverged=False,
                wall_time=0.0,
            )


@pytest.mark.slow  # end to end: muscale in subprocesses
def test_fit_and_transfer_bad_input(tmp_path):
    empty = tmp_path / "empty.db"
    Store(str(empty))
    proc = muscale("fit", f"store={empty}", cwd=tmp_path)
    assert proc.returncode == 2 and "empty" in proc.stderr
    proc = muscale("fit", f"store={tmp_path / 'nope.db'}", cwd=tmp_path)
    assert proc.returncode == 2 and "not found" in proc.stderr
    assert not (tmp_path / "nope.db").exists()  # a typo creates nothing
    store = Store(str(tmp_path / "store.db"))
    _fake_trials(store, "one", [16])
    _fake_trials(store, "two", [16, 32])
    proc = muscale("fit", f"store={tmp_path / 'store.db'}", cwd=tmp_path)
    assert proc.returncode == 2 and "several sweeps" in proc.stderr
    proc = muscale("fit", f"store={tmp_path / 'store.db'}", "sweep=one", cwd=tmp_path)
    assert proc.returncode == 2 and "single width" in proc.stderr
    proc = muscale(
        "transfer", f"store={tmp_path / 'store.db'}", "sweep=two", "target.width=8", cwd=tmp_path
    )
    assert proc.returncode == 2 and "target.width" in proc.stderr
    assert proc.stderr.count("\n") == 1
    ok = muscale(
        "transfer",
        f"store={tmp_path / 'store.db'}",
        "sweep=two",
        "target.width=64",
        f"out={tmp_path / 't.yaml'}",
        "format=json",
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    prov = json.loads(ok.stdout)
    assert prov["lr"] == pytest.approx(2**-7, rel=0.05) and prov["transfer_holds"]


@pytest.mark.slurm
@pytest.mark.slow  # end to end: muscale in subprocesses
def test_sweep_through_slurm(tmp_path, slurm_cluster):
    args = _sweep_args(
        tmp_path,
        "slurm",
        "sweep.widths=[16,32]",
        "sweep.lrs=[0.003,0.03]",
        "model.n_heads=2",
        "hydra/launcher=slurm",
        "hydra.launcher.mem_gb=1",
    )
    proc = muscale(*args, cwd=tmp_path, env=slurm_cluster.env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = Store(str(tmp_path / "store.db")).records("slurm")
    assert len(recs) == 4 and all(r.status == "done" for r in recs)
    logs = list((tmp_path / "runs").rglob("*_log.out"))
    assert logs, "no submitit job logs: the trials did not run through SLURM"
    fit = muscale(
        "fit",
        f"store={tmp_path / 'store.db'}",
        "format=json",
        f"out={tmp_path / 'f'}",
        cwd=tmp_path,
    )
    assert fit.returncode == 0 and len(json.loads(fit.stdout)["per_width"]) == 2
