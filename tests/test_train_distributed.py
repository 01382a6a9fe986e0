"""torchrun with 2 CPU processes (gloo): DDP and FSDP2 follow the single-process loss
trajectory, and their checkpoints resume in one process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from muscale.train.logging import read_metrics

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

TINY = [
    "param.base_width=32",
    "model.width=32",
    "model.depth=2",
    "data.seq_len=16",
    "data.batch_size=8",
    "data.eval_batches=2",
    "trainer.device=cpu",
    "trainer.max_steps=6",
    "trainer.log_every=1",
    "trainer.eval_every=3",
]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("torchrun")
    cmd = [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*cmd, "--standalone", "--nproc_per_node=2", "-m", "muscale.train", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def _losses(run_dir: Path) -> list[float]:
    return [m.get("loss", m.get("eval_loss")) for m in read_metrics(run_dir)]


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> list[float]:
    from muscale.cli.common import compose
    from muscale.cli.train import register_schemas
    from muscale.train.loop import run

    register_schemas()
    out = tmp_path_factory.mktemp("single")
    run(compose("train", [*TINY, "trainer.progress=off"]), out)
    return _losses(out)


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_match_one(parallel: str, single: list[float], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    out = _torchrun(*TINY, f"trainer.parallel={parallel}", f"hydra.run.dir={run_dir}")
    assert out.returncode == 0, out.stderr[-3000:]
    got = _losses(run_dir)
    assert got == pytest.approx(single, rel=1e-5, abs=1e-6)
    # only rank 0 wrote: one metrics file, no second Hydra dir
    assert len(read_metrics(run_dir)) == len(single)
    # the 2-process checkpoint resumes in 1 process
    from muscale.cli.common import compose
    from muscale.cli.train import register_schemas
    from muscale.train.loop import run

    register_schemas()
    res = run(
        compose(
            "train",
            [*TINY, "trainer.max_steps=8", "trainer.progress=off", f"trainer.resume={run_dir}"],
        ),
        tmp_path / "resumed",
    )
    assert res.completed and res.steps == 8
    rows = read_metrics(tmp_path / "resumed")
    assert rows[0]["step"] == 7  # continued, not restarted
