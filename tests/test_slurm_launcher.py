"""Hydra sweeps through the submitit SLURM launcher on a real one-node SLURM cluster.

The probe app (tests/apps/slurm_echo.py) records its SLURM environment per job; the tests
check that every job of a multirun was a SLURM array task, that the values came back to the
launching process through submitit's result pickles, that muscale's shipped launcher
config (conf/hydra/launcher/slurm.yaml) works as is, and that a preempted job requeues and
resumes from its checkpoint. The shipped launcher configs are also composed without a
cluster, so a broken YAML fails even where SLURM is absent.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from slurm_cluster import SlurmCluster, slurm_cluster  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "tests" / "apps" / "slurm_echo.py"
CONF = REPO / "conf"
SEARCHPATH = f"hydra.searchpath=[file://{CONF}]"  # makes muscale's launcher configs visible
# one CPU and 1 GB per job, so the 2-core test node runs two at once
SMALL = ["hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]
XS = (1, 2, 3)


def _multirun(
    cluster: SlurmCluster, sweep_dir: Path, overrides: list[str]
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APP), "-m", f"hydra.sweep.dir={sweep_dir}", *overrides],
        cwd=sweep_dir.parent,
        env=cluster.env(HYDRA_FULL_ERROR="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"the multirun did not finish in {timeout}s:\n{out[-4000:]}")
    assert proc.returncode == 0, f"the multirun failed (exit {proc.returncode}):\n{out[-4000:]}"
    return out


def _records(sweep_dir: Path) -> dict[int, dict[str, Any]]:
    """echo.json of every job, by x."""
    records = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/echo.json"))]
    return {r["x"]: r for r in records}


def _returned(sweep_dir: Path) -> dict[int, dict[str, Any]]:
    """What each job returned, read from submitit's result pickles (what the launcher got)."""
    out = {}
    for path in sweep_dir.glob(".submitit/*/*_result.pkl"):
        with path.open("rb") as f:
            status, job_return = pickle.load(f)
        assert status == "success", f"{path}: {status} {job_return}"
        out[job_return.return_value["x"]] = job_return.return_value
    return out


@pytest.mark.parametrize(
    ("launcher", "extra"),
    [("submitit_slurm", ["hydra.launcher.timeout_min=10"]), ("slurm", [SEARCHPATH])],
    ids=["submitit_slurm", "muscale_slurm_yaml"],
)
@pytest.mark.slurm
@pytest.mark.timeout(120)
@pytest.mark.slow  # end to end: muscale in subprocesses
def test_multirun_jobs_run_as_slurm_array_tasks(
    slurm_cluster: SlurmCluster,  # noqa: F811
    tmp_path: Path,
    launcher: str,
    extra: list[str],
) -> None:
    sweep_dir = tmp_path / "sweep"
    overrides = [f"x={','.join(map(str, XS))}", f"hydra/launcher={launcher}", *SMALL, *extra]
    _finish(_multirun(slurm_cluster, sweep_dir, overrides), timeout=90)

    records = _records(sweep_dir)
    assert sorted(records) == list(XS)
    for x, r in records.items():
        assert r["slurm_job_id"], f"x={x} did not run under SLURM: {r}"
        assert r["submitit_executor"] == "slurm"
        assert r["square"] == x * x
        assert r["python"] == sys.executable  # the job found the submitting interpreter
        assert r["slurm_cpus_per_task"] == "1"
    # one array job, one task per parameter value, each its own SLURM job
    assert len({r["slurm_array_job_id"] for r in records.values()}) == 1
    assert sorted(int(r["slurm_array_task_id"]) for r in records.values()) == [0, 1, 2]
    assert len({r["slurm_job_id"] for r in records.values()}) == len(XS)
    # the results came back to the launching process, unchanged
    assert _returned(sweep_dir) == records
    if launcher == "slurm":  # muscale's setup lines ran in the batch script
        assert all(r["omp_num_threads"] == "1" for r in records.values())


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.timeout(150)
def test_preempted_job_requeues_and_resumes(
    slurm_cluster: SlurmCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Preempt a running trial as SLURM would (USR2 to the job's steps, submitit's own
    ``_interrupt``): submitit checkpoints the Hydra job, ``scontrol requeue``s it, and the
    rerun finds the trial's checkpoint and resumes instead of starting over."""
    sweep_dir = tmp_path / "sweep"
    overrides = ["x=7", "hold_s=120", "hydra/launcher=slurm", SEARCHPATH, *SMALL]
    proc = _multirun(slurm_cluster, sweep_dir, overrides)
    state = sweep_dir / "0" / "state.json"
    deadline = time.monotonic() + 60
    while not state.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            _finish(proc, timeout=5)
            pytest.fail(f"the job never started: no {state}")
        time.sleep(0.2)
    job_id = json.loads(state.read_text())["job_id"]
    subprocess.run(
        ["scancel", "--signal=USR2", job_id], env=slurm_cluster.env(), check=True, timeout=30
    )
    _finish(proc, timeout=100)

    (record,) = _records(sweep_dir).values()
    assert record["slurm_job_id"] == job_id  # the same job, requeued
    assert record["slurm_restart_count"] == "1"
    assert record["resumed"] is True
    assert record["attempts"] == 2
    assert _returned(sweep_dir) == {7: record}


# no file shadows a plugin's schema name, so composing them warns of nothing
@pytest.mark.filterwarnings("error::UserWarning")
@pytest.mark.parametrize("name", ["local", "muscale_joblib", "slurm", "slurm_gpu"])
def test_shipped_launcher_configs_compose_and_instantiate(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every conf/hydra/launcher/*.yaml composes against its plugin's schema and builds
    its launcher (no cluster needed); values that the docs promise are checked."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    for var in ("MUSCALE_SLURM_PARTITION", "MUSCALE_SLURM_ACCOUNT", "MUSCALE_JOBS"):
        monkeypatch.delenv(var, raising=False)
    with initialize_config_dir(config_dir=str(APP.parent / "conf"), version_base="1.3"):
        cfg = compose(
            "slurm_echo",
            overrides=[f"hydra/launcher={name}", SEARCHPATH, "hydra.sweep.dir=/tmp/x"],
            return_hydra_config=True,
        )
    launcher_cfg = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    expected_class = {
        "local": "BasicLauncher",
        "muscale_joblib": "JoblibLauncher",
        "slurm": "SlurmLauncher",
        "slurm_gpu": "SlurmLauncher",
    }[name]
    assert launcher_cfg["_target_"].endswith(f".{expected_class}")
    if name != "local":  # Hydra lets only itself build the basic launcher
        # as Hydra does: instantiate, then the launcher resolves its params once more
        launcher = instantiate(cfg.hydra.launcher)
        assert type(launcher).__name__ == expected_class
        launcher_cfg = getattr(launcher, "params", launcher_cfg)
    if name == "muscale_joblib":
        assert launcher_cfg["n_jobs"] == 2  # an int, not the env var's string
    if name.startswith("slurm"):
        assert launcher_cfg["max_num_timeout"] > 0  # requeue on time-out is on
        # the shell, not OmegaConf, reads $SLURM_CPUS_PER_TASK
        assert any("OMP_NUM_THREADS=$((SLURM_CPUS_PER_TASK" in s for s in launcher_cfg["setup"])
        assert launcher_cfg["gpus_per_node"] == (1 if name == "slurm_gpu" else None)
