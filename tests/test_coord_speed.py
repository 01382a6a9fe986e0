"""The fast coordinate-check path records the same numbers as a plain loop written here.

``muscale.coord.collect`` takes shortcuts for speed (fused optimizer steps, hooks writing into a
preallocated device tensor, the attention logits from the probe's inputs, no backward after
the last forward). The reference below does none of that: per width and seed it builds the
model, runs the TP5 §D.1 protocol with the optimizer's default (single-tensor) step, keeps
every hooked output and computes mean |x_t| and mean |x_t - x_0| by hand in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from muscale.coord.run import _fused_kwargs, collect, config_factory, synthetic_batch
from muscale.models.configs import GPTConfig, MLPConfig
from muscale.models.losses import cross_entropy
from muscale.optim.config import OptimConfig
from muscale.optim.optimizer import make_optimizer
from muscale.param.config import ParamConfig

STEPS, SEEDS = 3, 2


def _reference(factory, sizes, batch, make_opt, point_names, probe_names):
    """``(sizes, seeds, points, steps + 1)`` level and change from a plain loop."""
    x, y = batch
    shape = (len(sizes), SEEDS, len(point_names), STEPS + 1)
    level, change = np.zeros(shape), np.zeros(shape)
    for si, size in enumerate(sizes):
        for seed in range(SEEDS):
            torch.manual_seed(seed)
            model, plan = factory(size, seed)
            opt = make_opt(model, plan)
            outs: dict[str, list[torch.Tensor]] = {n: [] for n in point_names}
            modules = dict(model.named_modules())

            def keep(name, store):
                def hook(mod, args, out):
                    if name in probe_names:  # q kᵀ · scale on the causal entries, by hand
                        q, k = args[0].detach().double(), args[1].detach().double()
                        rep = q.shape[1] // k.shape[1]
                        logits = q @ k.repeat_interleave(rep, dim=1).transpose(-1, -2)
                        t = q.shape[-2]
                        mask = torch.ones(t, t, dtype=torch.bool).tril()
                        store.append((logits * mod.scale)[..., mask])
                    else:
                        store.append(out.detach().double().clone())

                return hook

            handles = [modules[n].register_forward_hook(keep(n, outs[n])) for n in point_names]
            for t in range(STEPS + 1):
                loss = cross_entropy(model(x), y)
                if t < STEPS:
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            for h in handles:
                h.remove()
            for pi, name in enumerate(point_names):
                x0 = outs[name][0]
                for t, xt in enumerate(outs[name]):
                    level[si, seed, pi, t] = xt.abs().mean().item()
                    change[si, seed, pi, t] = (xt - x0).abs().mean().item()
    return level, change


def _compare(data, level, change):
    np.testing.assert_allclose(data.level, level, rtol=1e-5)
    # x_t - x_0 cancels digits: its error scales with the level, not with the change
    np.testing.assert_allclose(data.change, change, rtol=1e-5, atol=1e-5 * level.max())


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_gpt_collect_matches_plain_loop(name):
    mcfg = GPTConfig(width=32, depth=2, n_heads=2, q_per_kv=2, vocab_size=64, seq_len=16)
    factory = config_factory(mcfg, ParamConfig(scheme="mup", base_width=32), family=name)
    batch = synthetic_batch(mcfg, batch_size=2, seq_len=16)
    ocfg = OptimConfig(name=name, lr=0.02 if name == "adam" else 0.5)
    sizes = [32, 64]
    data = collect(factory, sizes, batch=batch, optimizer=ocfg, steps=STEPS, seeds=SEEDS)
    names = [p.name for p in data.points]
    probes = {p.name for p in data.points if p.kind == "attn_logits"}
    assert probes and len(names) == 10

    def plain(model, plan):  # the μP optimizer with torch's default (non-fused) step
        opt, _ = make_optimizer(model, plan, ocfg)
        assert not any(g.get("fused") for g in opt.param_groups)
        return opt

    level, change = _reference(factory, sizes, batch, plain, names, probes)
    _compare(data, level, change)
    # the seeds differ (each has its own init and trajectory), the widths too
    assert not np.allclose(data.level[:, 0], data.level[:, 1])
    assert np.all(data.change[..., 1:] > 0)


def test_plain_module_with_torch_adam_matches_plain_loop():
    mcfg = MLPConfig(width=32, depth=2, in_dim=8, out_dim=5)
    factory = config_factory(mcfg, ParamConfig(scheme="sp"))

    def bare(size, seed):
        return factory(size, seed)[0]  # no plan: the optimizer comes from the callable

    def adam(model):
        return torch.optim.Adam(model.parameters(), lr=0.01)

    batch = synthetic_batch(mcfg, batch_size=16)
    sizes = [32, 128]
    data = collect(bare, sizes, batch=batch, optimizer=adam, steps=STEPS, seeds=SEEDS)
    names = [p.name for p in data.points]
    level, change = _reference(
        lambda s, seed: (bare(s, seed), None), sizes, batch, lambda m, _: adam(m), names, set()
    )
    _compare(data, level, change)


def test_fused_step_only_where_the_user_left_the_choice_open():
    model = nn.Linear(3, 4)
    assert _fused_kwargs(OptimConfig(name="adamw", lr=0.1), model) == {"fused": True}
    assert _fused_kwargs(OptimConfig(name="sgd", lr=0.1), model) == {"fused": True}
    mine = OptimConfig(name="adam", lr=0.1, kwargs={"foreach": False})
    assert _fused_kwargs(mine, model) == {"foreach": False}
    assert _fused_kwargs(OptimConfig(name="adam", lr=0.1), model.double()) == {"fused": True}
    # a class without a fused step keeps its kwargs untouched
    assert (
        _fused_kwargs(OptimConfig(name="torch.optim.RMSprop", lr=0.1, family="adam"), model) == {}
    )
