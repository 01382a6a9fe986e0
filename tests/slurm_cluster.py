"""The ``slurm_cluster`` pytest fixture: a real one-node SLURM started by tools/slurm_local.sh.

Use it from a test module with ``from slurm_cluster import slurm_cluster  # noqa: F401``
(pytest puts ``tests/`` on ``sys.path``), or list ``"slurm_cluster"`` in the root
conftest's ``pytest_plugins``. The fixture

* skips, naming the reason, when SLURM is not installed or we are not root, outside CI;
* fails when ``CI=true`` and the cluster cannot be installed or started, so a broken
  cluster in CI is a red build, never a silent skip;
* exports ``SLURM_CONF`` for the session (restored afterwards), so ``sbatch`` and
  submitit, in this process or its children, find the test cluster;
* stops the cluster at the end of the session only if it started it (a cluster a
  developer started by hand keeps running).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "slurm_local.sh"
DAEMONS = ("slurmctld", "slurmd", "munged", "sinfo", "sbatch")
START_TIMEOUT_S = 180


@dataclass(frozen=True, kw_only=True)
class SlurmCluster:
    """A running test cluster: where its config and state live."""

    state_dir: Path
    conf: Path
    partition: str = "debug"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a child process that submits to this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf), **extra}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _unavailable(reason: str) -> None:
    """Skip outside CI, fail in CI: CI must exercise the real cluster."""
    if in_ci():
        pytest.fail(f"CI=true but the SLURM test cluster is unavailable: {reason}")
    pytest.skip(reason)


def _script(command: str, timeout: float = START_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    missing = [name for name in DAEMONS if shutil.which(name, path=path) is None]
    if missing:
        _unavailable(
            f"SLURM is not installed ({', '.join(missing)} not on PATH); "
            "run: bash tools/slurm_local.sh install"
        )
    if os.geteuid() != 0:
        _unavailable("the one-node SLURM test cluster needs root (slurmd runs jobs as root)")

    state_dir = Path(os.environ.get("MUSCALE_SLURM_DIR", "/tmp/muscale-slurm"))
    was_up = _script("status", timeout=30).returncode == 0
    started = _script("start")
    if started.returncode != 0:
        pytest.fail(
            f"tools/slurm_local.sh start failed (exit {started.returncode}):\n"
            f"{started.stdout}{started.stderr}"
        )
    cluster = SlurmCluster(state_dir=state_dir, conf=state_dir / "slurm.conf")

    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        if not was_up:
            _script("stop", timeout=60)
