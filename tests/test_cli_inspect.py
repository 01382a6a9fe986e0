"""`muscale inspect` output, and one-line errors with exit status 2 for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from muscale.build import plan_for
from muscale.cli.main import main
from muscale.errors import UserError
from muscale.models.configs import MLPConfig
from muscale.models.mlp import MLP
from muscale.param.config import ParamConfig


def test_inspect_json_schema_and_values(capsys):
    rc = main(
        [
            "inspect",
            "model=gpt",
            "param=mup",
            "model.width=1024",
            "param.base_width=64",
            "optim=adamw",
            "optim.lr=0.01",
            "format=json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)  # nothing but JSON on stdout
    rows = {r["name"]: r for r in out["params"]}
    assert set(next(iter(rows.values()))) >= {
        "name",
        "role",
        "shape",
        "init_std",
        "multiplier",
        "lr",
        "eps",
        "weight_decay",
    }
    q = rows["blocks.0.attn.v_proj.weight"]
    assert q["role"] == "hidden" and q["lr"] == pytest.approx(0.01 / 16)
    assert q["init_std"] == pytest.approx(1 / 1024**0.5)
    head = rows["lm_head.weight"]
    assert head["role"] == "output" and head["multiplier"] == pytest.approx(1 / 16)
    assert head["lr"] == pytest.approx(0.01)
    assert rows["wte.weight"]["role"] == "input"


def test_inspect_table_runs(capsys):
    assert main(["inspect", "model=mlp", "param=ntk", "optim=sgd", "model.width=128"]) == 0
    assert "blocks.0.fc.weight" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,needle",
    [
        (["param=foo"], "param/foo"),
        (["model=transformer"], "model/transformer"),
        (["optim=lion"], "optim/lion"),
        (["model.width=102"], "divisible by model.n_heads"),
        (["model.width=0"], "model.width"),
        (["model.depth=-1"], "model.depth"),
        (["optim.lr=0"], "optim.lr"),
        (["param.base_width=512"], "param.base_width"),
        (["param.depth_alpha=0.3"], "param.depth_alpha"),
        (["model.widht=3"], "widht"),
        (["format=xml"], "format"),
    ],
)
def test_bad_input_one_line_exit_2(capsys, args, needle):
    assert main(["inspect", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err


def test_bad_input_real_process_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "muscale", "inspect", "model.width=102"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_parameter_without_role_is_named():
    class Extra(MLP):
        def __init__(self, cfg, mults):
            super().__init__(cfg, mults)
            self.gate = nn.Parameter(torch.ones(3))

    cfg = MLPConfig(width=64)
    model = Extra(cfg, {"input": 1.0, "output": 1.0, "branch": 1.0})
    with pytest.raises(UserError, match="'gate' has no role"):
        plan_for(model, ParamConfig(base_width=64), "adam")
