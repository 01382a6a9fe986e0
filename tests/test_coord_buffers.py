"""The check runs each seed in the memory of the one before (muscale/coord/buffers.py):
gradients kept between steps, the model re-drawn in place, Adam's buffers lent. None of it
changes a number: the same statistics and parameters as fresh models and freed gradients
(compared with ``==``, under which -0.0 equals +0.0)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from muscale.coord.buffers import KeptGrads
from muscale.coord.functional_optim import functional_optimizer
from muscale.coord.run import collect, config_factory, synthetic_batch
from muscale.models.configs import GPTConfig, MLPConfig
from muscale.optim.config import OptimConfig
from muscale.param.config import ParamConfig

GPT = GPTConfig(width=32, depth=2, n_heads=2, vocab_size=64, seq_len=8)
MLP = MLPConfig(width=32, depth=2, in_dim=8, out_dim=4)


class _Switch(nn.Module):
    """``b`` is used only at even calls: at odd steps it gets no gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 6)
        self.b = nn.Linear(6, 6)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        h = self.a(x)
        return self.b(h) if self.calls % 2 else h


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_kept_grads_step_like_set_to_none(name):
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    models, nones = [], []
    for kept in (False, True):
        torch.manual_seed(0)
        model = _Switch()
        opt = (
            torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
            if name == "adamw"
            else torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        )
        grads = KeptGrads(model.parameters())
        pattern = []
        for _ in range(5):
            loss = model(x).square().mean()
            if kept:
                grads.before_backward()
            else:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            if kept:
                grads.after_backward()
            pattern.append([p.grad is None for p in model.parameters()])
            opt.step()
        models.append(model)
        nones.append(pattern)
    assert nones[0] == nones[1] and any(any(row) for row in nones[0])  # b skipped sometimes
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "mcfg,family",
    [(GPT, "adam"), (dataclasses.replace(GPT, tie_embeddings=True), "adam"), (MLP, "sgd")],
)
def test_reinit_equals_a_fresh_build(mcfg, family):
    factory = config_factory(mcfg, ParamConfig(scheme="mup", base_width=32), family=family)
    model, plan = factory(64, 0)
    ocfg = OptimConfig(name="sgd" if family == "sgd" else "adam", lr=0.1)
    opt = functional_optimizer(model, plan, ocfg)
    assert opt is not None
    x, y = synthetic_batch(mcfg, batch_size=2)
    for _ in range(2):  # trained: every parameter moved away from its seed-0 init
        opt.zero_grad()
        out = model(x)
        nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1)).backward()
        opt.step()
    assert factory.reinit(model, plan, 3)
    fresh, fresh_plan = factory(64, 3)
    assert fresh_plan == plan
    sa, sb = model.state_dict(), fresh.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize(
    "mcfg,optim,family",
    [
        (GPT, OptimConfig(name="adam", lr=0.01), "adam"),
        (MLP, OptimConfig(name="sgd", lr=0.1, momentum=0.9), "sgd"),
    ],
)
def test_collect_in_kept_memory_equals_fresh_models(mcfg, optim, family):
    """config_factory's models are re-drawn in place and their Adam buffers lent; a plain
    function (no ``reinit``) builds every seed afresh. The same numbers."""
    factory = config_factory(mcfg, ParamConfig(scheme="mup", base_width=32), family=family)
    batch = synthetic_batch(mcfg, batch_size=2, seq_len=8)
    kw = dict(batch=batch, optimizer=optim, steps=3, seeds=3)
    kept = collect(factory, [32, 64], **kw)
    fresh = collect(lambda size, seed: factory(size, seed), [32, 64], **kw)
    np.testing.assert_array_equal(kept.level, fresh.level)
    np.testing.assert_array_equal(kept.change, fresh.change)
    np.testing.assert_array_equal(kept.loss, fresh.loss)
    if kept.meta["eps"] is not None:
        np.testing.assert_array_equal(kept.meta["eps"].rms, fresh.meta["eps"].rms)
