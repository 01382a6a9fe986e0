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
from muscale.coord.buffers import BufferPool
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


@pytest.mark.parametrize(("rule", "cfg", "kwargs"), [c for c in CASES if c[0] != "sgd"])
def test_pooled_state_steps_bit_identical_to_fresh_state(rule, cfg, kwargs) -> None:
    """A second seed's optimizer whose moment buffers come from the first one's (a
    BufferPool, as the check's sequential path does), here dirtied with NaN, steps exactly
    as one with fresh zeros_like buffers."""
    ocfg = dataclasses.replace(OptimConfig(**cfg), kwargs=kwargs)
    pool = BufferPool()
    x, y = torch.randint(0, 64, (2, 8)), torch.randint(0, 64, (2, 8))

    def train(seed: int, pool: BufferPool | None):
        model, plan = _model("adam", seed=seed)
        opt = functional_optimizer(model, plan, ocfg, pool)
        assert opt is not None
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x).reshape(-1, 64), y.reshape(-1)).backward()
            opt.step()
        return model, opt

    _, first = train(0, pool)
    lent = {id(t) for st in first.state.values() for k, t in st.items() if k != "step"}
    first.release()
    assert not first.state and len(pool) == len(lent)
    for bufs in pool.free.values():
        for t in bufs:
            t.fill_(float("nan"))
    pooled, opt = train(1, pool)
    fresh, _ = train(1, None)
    reused = {id(t) for st in opt.state.values() for k, t in st.items() if k != "step"}
    assert reused == lent  # every buffer came from the pool, none was allocated
    for (n, a), b in zip(fresh.named_parameters(), pooled.parameters(), strict=True):
        assert torch.equal(a, b), n


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
