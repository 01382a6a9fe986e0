"""The coordinate check steps muscale's Adam/AdamW/SGD through torch's functional kernels
(no optimizer object, so no torch._dynamo import): the parameters after every step equal
those of the torch class that make_optimizer builds, and the check never imports dynamo."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from muscale.build import build_model, param_config
from muscale.coord.functional_optim import FunctionalOptimizer, functional_optimizer
from muscale.models import model_config
from muscale.optim.config import OptimConfig
from muscale.optim.optimizer import make_optimizer

CASES = [
    ("adam", dict(name="adam", lr=0.01), {}),
    ("adamw", dict(name="adamw", lr=0.01, weight_decay=0.1), {}),
    ("adamw", dict(name="adamw", lr=0.01, weight_decay=0.1), {"fused": True}),
    ("adam", dict(name="adam", lr=0.01), {"amsgrad": True}),
    ("sgd", dict(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3), {}),
    ("sgd", dict(name="sgd", lr=0.1, momentum=0.9), {"fused": True}),
    ("sgd", dict(name="sgd", lr=0.1, momentum=0.0), {}),
]


def _model(family: str, seed: int = 0):
    mcfg = model_config(
        {"family": "gpt", "width": 32, "depth": 2, "n_heads": 4, "vocab_size": 64, "seq_len": 8}
    )
    pcfg = param_config({"scheme": "mup", "base_width": 16})
    return build_model(mcfg, pcfg, optim_family=family, seed=seed)


@pytest.mark.parametrize(("rule", "cfg", "kwargs"), CASES)
def test_functional_steps_equal_the_torch_class(rule, cfg, kwargs) -> None:
    ocfg = dataclasses.replace(OptimConfig(**cfg), kwargs=kwargs)
    family = "sgd" if rule == "sgd" else "adam"
    ref, plan = _model(family)
    mine, _ = _model(family)
    opt_ref, _ = make_optimizer(ref, plan, ocfg)
    opt = functional_optimizer(mine, plan, ocfg)
    assert isinstance(opt, FunctionalOptimizer) and opt.rule == rule
    # the same per-tensor groups (μP's LR, ε, weight decay per role)
    assert [(g["lr"], g["weight_decay"]) for g in opt.param_groups] == [
        (g["lr"], g["weight_decay"]) for g in opt_ref.param_groups
    ]
    x = torch.randint(0, 64, (2, 8))
    y = torch.randint(0, 64, (2, 8))
    for _ in range(3):
        for model, o in ((ref, opt_ref), (mine, opt)):
            o.zero_grad(set_to_none=True)
            out = model(x)
            torch.nn.functional.cross_entropy(out.reshape(-1, 64), y.reshape(-1)).backward()
            o.step()
        for (n, a), b in zip(ref.named_parameters(), mine.parameters(), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7, msg=n)
    if rule != "sgd":  # the ε probe reads the state under torch's names
        p = next(mine.parameters())
        q = next(ref.parameters())
        torch.testing.assert_close(opt.state[p]["exp_avg_sq"], opt_ref.state[q]["exp_avg_sq"])
        assert float(opt.state[p]["step"]) == 3.0


def test_options_it_does_not_mirror_build_the_class() -> None:
    _, plan = _model("adam")
    model, _ = _model("adam")
    cfg = dataclasses.replace(OptimConfig(name="adam", lr=0.01), kwargs={"foreach": True})
    assert functional_optimizer(model, plan, cfg) is None
    rmsprop = OptimConfig(name="torch.optim.RMSprop", lr=0.01, family="adam")
    assert functional_optimizer(model, plan, rmsprop) is None


def test_the_coordinate_check_does_not_import_dynamo() -> None:
    code = (
        "import sys\n"
        "from muscale.coord import check_from_configs\n"
        "rep = check_from_configs({'family': 'gpt', 'width': 32, 'depth': 2, 'n_heads': 4,"
        " 'vocab_size': 64, 'seq_len': 16}, {'scheme': 'mup'}, {'name': 'adamw', 'lr': 0.01},"
        " [32, 64], steps=2, seeds=2, extend=0)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr
