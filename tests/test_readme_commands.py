"""Every ``muscale`` command of the README (quick start and everyday commands), run as a
user runs it, at toy sizes, must print no warning on stderr.

Each command is taken from README.md as written; only extra ``key=value`` overrides are
appended to make it cheap (Hydra applies later overrides last, so the README's own arguments
are all parsed and used). The commands run in order in one directory, because they hand
files on: ``sweep`` writes sweeps.db for ``fit`` and ``transfer``; ``train`` writes the run
that ``diagnose`` reads; ``scaling fit`` reads a runs.csv made here from a known law.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).parents[1]
TINY = [
    "model.depth=1",
    "model.n_heads=2",
    "data.seq_len=16",
    "data.batch_size=4",
    "data.eval_batches=1",
    "trainer.progress=off",
]
#: subcommand -> overrides appended to the README's command
EXTRA: dict[str, list[str]] = {
    "pipeline": [
        "pipeline.quick=true",
        "coord_check.enabled=true",
        "coord_check.widths=[64,128]",
        "coord_check.seeds=1",
        "coord_check.steps=1",
        "proxy.widths=[16,32]",
        "proxy.depth=1",
        "proxy.lrs=[0.005,0.02]",
        "proxy.steps=5",
        "search.params.alpha_out=[1.0]",
        "search.strategy=grid",
        "confirm.points=2",
        "target.width=128",
    ],
    "inspect": [],
    "coord-check": ["plot=false"],
    "train": [
        "model.width=32",
        "param.base_width=32",
        "trainer.max_steps=10",
        "trainer.eval_every=10",
        "hydra.run.dir=outputs/run",
        *TINY,
    ],
    "sweep": [
        "sweep.widths=[32,64]",
        "sweep.schemes=[mup]",
        "param.base_width=32",
        "sweep.adaptive.max_trials=3",
        "trainer.max_steps=5",
        "trainer.eval_every=5",
        *TINY,
    ],
    "fit": ["bootstrap=20"],
    "export": [],
    "transfer": ["out=transfer.yaml"],
    "scaling": ["bootstrap=20"],
    "diagnose": [
        "free_jacobian.depths=[4]",
        "free_jacobian.width=64",
        "free_jacobian.nets=1",
        "attention_ntk.widths=[64,128]",
        "attention_ntk.seeds=1",
        "spectral_bias.kmax=20",
        "hessian.k=2",
        "hessian.trace_probes=2",
        "hessian.slq_steps=4",
        "hessian.slq_probes=1",
        "hessian.batch_size=2",
    ],
}


def readme_commands() -> list[list[str]]:
    """``muscale ...`` lines of the README's bash blocks (the part after ``&&`` too)."""
    text = (ROOT / "README.md").read_text()
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            for part in line.split("#")[0].split("&&"):
                words = part.split()
                if words[:1] == ["muscale"]:
                    cmds.append(words)
    return cmds


def write_runs_csv(path: Path) -> None:
    """Runs on a grid of (N, D) from L = E + A/N^a + B/D^b with 0.3% noise."""
    rng = np.random.default_rng(0)
    rows = [
        {"N": n, "D": d, "loss": (1.8 + 480 / n**0.35 + 2000 / d**0.37) * rng.lognormal(0, 0.003)}
        for n in np.logspace(7, 9, 5)
        for d in np.logspace(9, 11, 5)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, list[subprocess.CompletedProcess]]:
    cwd = tmp_path_factory.mktemp("readme")
    write_runs_csv(cwd / "runs.csv")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MUSCALE_JOBS": "2"}
    env.pop("MUSCALE_CONF_DIR", None)
    out = {}
    for cmd in readme_commands():
        sub = cmd[1]
        argv = [sys.executable, "-m", "muscale", *cmd[1:], *EXTRA[sub]]
        out.setdefault(sub, []).append(
            subprocess.run(
                argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
            )
        )
    return out


def test_the_readme_commands_are_the_ones_this_test_knows():
    subs = [c[1] for c in readme_commands()]
    assert subs[0] == "pipeline"  # the quick start
    assert set(subs) == set(EXTRA), "a README command was added or removed: update EXTRA"


@pytest.mark.slow
@pytest.mark.parametrize("sub", list(EXTRA))
def test_readme_command_runs_without_warnings(results, sub):
    for proc in results[sub]:
        # pipeline: exit 1 is its transfer verdict at these toy sizes, not an error
        assert proc.returncode in ((0, 1) if sub == "pipeline" else (0,)), proc.stderr[-2000:]
        assert "warning" not in proc.stderr.lower(), proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
