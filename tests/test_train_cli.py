"""``muscale train`` as a user runs it (subprocess): run dir, exit codes, one-line errors,
nothing overwritten by a bad input."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

TINY = [
    "param.base_width=32",
    "model.width=32",
    "model.depth=1",
    "data.seq_len=16",
    "data.batch_size=4",
    "data.eval_batches=1",
    "trainer.device=cpu",
    "trainer.max_steps=3",
    "trainer.log_every=1",
]


def muscale(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "muscale", "train", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    out = muscale(*TINY, f"hydra.run.dir={run_dir}")
    assert out.returncode == 0, out.stderr
    assert "step 3/3" in out.stdout + out.stderr  # plain lines: not a TTY
    return run_dir


def test_run_dir_is_hydras(trained: Path) -> None:
    assert (trained / "metrics.jsonl").exists() and (trained / "result.json").exists()
    assert (trained / ".hydra" / "config.yaml").exists()
    assert (trained / "checkpoints" / "step_0000003" / "model.safetensors").exists()


def _bad(run_dir: Path, *args: str) -> str:
    before = snapshot(run_dir)
    out = muscale(*TINY, f"hydra.run.dir={run_dir}", *args)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("muscale train: error:"), out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert snapshot(run_dir) == before  # nothing overwritten
    return lines[0]


@pytest.mark.slow
def test_bad_inputs_are_one_line_and_exit_2(trained: Path, tmp_path: Path) -> None:
    assert "no such file" in _bad(trained, "data=hf", f"data.data_files=[{tmp_path}/nope.txt]")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert "empty" in _bad(trained, "data=hf", f"data.data_files=[{empty}]").lower()
    assert "larger than the data" in _bad(
        trained, "data=pytext", "data.max_bytes=20000", "data.seq_len=1000000"
    )
    assert "model.width is 32 there and 64 here" in _bad(
        trained, "model.width=64", "trainer.resume=auto"
    )
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(trained), str(copy)], check=True)
    (copy / "checkpoints" / "step_0000003" / "meta.json").write_text("{truncated")
    assert "corrupt" in _bad(copy, "trainer.resume=auto")
    assert "corrupt" in _bad(trained, f"trainer.resume={copy}")


@pytest.mark.slow  # end to end: muscale in subprocesses
def test_divergence_exits_3(tmp_path: Path) -> None:
    out = muscale(
        *TINY,
        f"hydra.run.dir={tmp_path}",
        "param.scheme=sp",
        "optim.lr=50",
        "trainer.grad_clip=0",
        "optim.schedule.warmup_steps=0",
        "trainer.max_steps=20",
    )
    assert out.returncode == 3, out.stderr
    assert '"diverged": true' in (tmp_path / "result.json").read_text()
