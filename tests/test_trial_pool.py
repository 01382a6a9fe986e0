"""trial_pool: a trial leased by another live process is waited for, not run twice; a
lapsed lease is taken over; SIGTERM to the pipeline stops it with 143, rows re-runnable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

from muscale.sweep.config import SweepConfig
from muscale.sweep.store import Store, new_owner
from muscale.sweep.strategy import GridPlanner
from muscale.trial_pool import run_sweep


class RecordingPool:
    """Stands in for the process pool: records what is submitted, answers at once."""

    def __init__(self, loss: float) -> None:
        self.loss, self.submitted = loss, []

    def submit(self, fn: object, overrides: list[str], run_dir: str) -> Future:
        self.submitted.append(run_dir)
        fut: Future = Future()
        fut.set_result({"loss": self.loss, "diverged": False, "cpu_s": 1.0, "flops": 2.0})
        return fut


def _one_trial_sweep(tmp_path: Path) -> tuple[SweepConfig, str]:
    sc = SweepConfig(name="leased", widths=[16], lrs=[0.01], store=str(tmp_path / "s.db"))
    (trial,) = GridPlanner(sc).trials
    return sc, trial.key


def _claim(
    store: Store,
    key: str,
    owner: str,
    *,
    sweep: str = "leased",
    config: dict | None = None,
    run_dir: str = "elsewhere",
) -> None:
    got = store.claim(
        key,
        owner=owner,
        ttl=120,
        sweep=sweep,
        scheme="mup",
        width=16,
        depth=2,
        seed=0,
        lr=0.01,
        hparams={},
        config=config or {},
        run_dir=run_dir,
    )
    assert got == "claimed"


def test_a_live_lease_is_waited_for_not_run_twice(tmp_path) -> None:
    sc, key = _one_trial_sweep(tmp_path)
    store = Store(sc.store)
    _claim(store, key, new_owner())  # this (live) process, another owner id

    def other_owner_finishes() -> None:
        time.sleep(0.6)
        store.finish(
            key,
            final_loss=1.5,
            final_eval_loss=1.25,
            best_eval_loss=1.25,
            diverged=False,
            wall_time=0.6,
        )

    th = threading.Thread(target=other_owner_finishes)
    th.start()
    pool = RecordingPool(loss=9.0)
    t0 = time.perf_counter()
    out = run_sweep(sc, [], tmp_path / "runs", pool=pool, poll_s=0.05)  # type: ignore[arg-type]
    th.join()
    assert pool.submitted == []  # never run here
    assert time.perf_counter() - t0 >= 0.5  # it waited for the owner
    _, loss = out.losses[key]
    assert loss == pytest.approx(store.get(key).loss)
    assert loss in (1.25, 1.5)  # the owner's result, not the pool's 9.0
    assert out.costs[key].reused


def test_a_lapsed_lease_is_taken_over(tmp_path) -> None:
    sc, key = _one_trial_sweep(tmp_path)
    store = Store(sc.store)
    owner = new_owner()
    _claim(store, key, owner)
    # the owner's heartbeat stopped long ago (older than sweep.lease_s)
    with store.engine.begin() as conn:
        conn.execute(
            store.table.update().where(store.table.c.key == key).values(heartbeat=time.time() - 1e4)
        )
    pool = RecordingPool(loss=0.75)
    out = run_sweep(sc, [], tmp_path / "runs", pool=pool, poll_s=0.05)  # type: ignore[arg-type]
    assert len(pool.submitted) == 1
    assert out.losses[key][1] == 0.75


def _rows(db: Path) -> list[tuple[str, str]]:
    import sqlite3

    with sqlite3.connect(db) as c:
        return list(c.execute("select key, status from trials"))


def test_sigterm_stops_the_pipeline_with_143_and_rows_rerunnable(tmp_path) -> None:
    out = tmp_path / "p"
    args = [
        sys.executable,
        "-m",
        "muscale",
        "pipeline",
        "pipeline.quick=true",
        f"out={out}",
        "dataset=synthetic",
        "proxy.widths=[16,32]",
        "quick_profile.proxy.steps=3000",
        "proxy.overrides=['data.seq_len=16','data.batch_size=4','data.eval_batches=1','trainer.eval_every=0']",
        "target.width=64",
        "search.strategy=grid",
        "search.params.alpha_out=[1.0]",
        "quick_profile.proxy.lrs=[0.01,0.02]",
        "jobs=2",
        "progress=off",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = out / "sweeps.db"
    deadline = time.time() + 120
    while time.time() < deadline:  # until a trial is training
        if db.exists() and any(s == "running" for _, s in _rows(db)):
            break
        if p.poll() is not None:
            break
        time.sleep(0.2)
    assert p.poll() is None, p.communicate()
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    try:
        _, err = p.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        p.kill()
        raise
    assert p.returncode == 143, err
    rows = _rows(db)
    assert rows and all(s in ("done", "failed") for _, s in rows), rows
    # every unfinished row is free to run again (no live lease left behind)
    states = Store(str(db)).lease_states([k for k, _ in rows])
    assert all(v in ("free", "done") for v in states.values())
    assert "stopped by SIGTERM" in err and "Traceback" not in err


def test_a_store_run_with_other_settings_is_refused_before_any_trial(tmp_path) -> None:
    """A finished trial of the sweep, recorded with the config its job composed: the same
    fixed overrides pass; other steps are refused (one line naming the key), nothing runs."""
    from muscale.errors import UserError
    from muscale.hydra_app import compose
    from muscale.sweep.job import training_config

    sc, key = _one_trial_sweep(tmp_path)
    (trial,) = GridPlanner(sc).trials
    fixed = [
        "model=mlp",
        "data=teacher",
        "trainer.max_steps=5",
        f"sweep.name={sc.name}",
        f"sweep.store={sc.store}",
        "sweep.widths=[16]",
        "sweep.lrs=[0.01]",
    ]
    store = Store(sc.store)
    owner = new_owner()
    config = training_config(compose("sweep", [*fixed, *trial.overrides()]))
    _claim(store, key, owner, sweep=sc.name, config=config, run_dir="r")
    store.finish(
        key, final_loss=1.5, final_eval_loss=1.5, best_eval_loss=1.5, diverged=False, wall_time=1.0
    )
    pool = RecordingPool(loss=9.0)
    out = run_sweep(sc, [*fixed, "trainer.threads=1"], tmp_path / "runs", pool=pool, jobs=1)
    assert out.losses[key][1] == 1.5 and pool.submitted == []  # reused, same settings
    with pytest.raises(UserError, match=r"trainer\.max_steps is 5 there and 7 here"):
        run_sweep(sc, [*fixed, "trainer.max_steps=7"], tmp_path / "runs", pool=pool, jobs=1)
    with pytest.raises(UserError, match=r"model\.depth is 2 there and 3 here"):
        run_sweep(sc, [*fixed, "model.depth=3"], tmp_path / "runs", pool=pool, jobs=1)
    assert pool.submitted == [] and store.get(key).loss == 1.5
