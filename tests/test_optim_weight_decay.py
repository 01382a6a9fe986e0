"""Weight decay through the real optimizer path (plan -> param groups -> torch AdamW/SGD).

With a zero gradient, Adam's update m / (sqrt(v) + eps) is exactly 0 and SGD's is 0, so a
step only applies the decay and each decayed tensor is multiplied by a constant c(t):

* ``independent`` (Wortsman et al. 2023; Kosson et al. 2025): c(t) = 1 - s(t) λ, whatever
  the base LR η and whatever LR scale μP gives the tensor (hidden: 1/m for Adam).
* ``coupled`` (microsoft/mup's convention, documented in OptimConfig): c(t) = 1 - η s(t) λ
  for every matrix, the same at every width (torch's wd is λ / lr_scale, times the tensor's
  LR η lr_scale s(t)).

Vectors (norm gains, biases) are never decayed: c = 1.
"""

from __future__ import annotations

import pytest
import torch

from muscale.build import build_model
from muscale.models.configs import GPTConfig
from muscale.optim.config import OptimConfig, ScheduleConfig
from muscale.optim.optimizer import make_optimizer
from muscale.optim.schedules import lr_multiplier
from muscale.param.config import ParamConfig

STEPS = 12
SCHED = ScheduleConfig(name="cosine", warmup_steps=3, min_lr_ratio=0.1)


def decay_factors(width: int, optim: OptimConfig) -> tuple[dict[str, list[float]], dict]:
    """Per-tensor ratios p(t+1)/p(t) over STEPS zero-gradient steps, and the plan by name."""
    cfg = GPTConfig(
        width=width, depth=1, n_heads=2, vocab_size=32, seq_len=8, bias=True, norm="layernorm"
    )
    family = "sgd" if optim.name == "sgd" else "adam"
    model, plan = build_model(
        cfg,
        ParamConfig(scheme="mup", base_width=32, zero_readout=False, zero_query=False),
        optim_family=family,
        seed=0,
    )
    with torch.no_grad():  # gains and biases start at 1 / 0: give them values to watch
        for p in model.parameters():
            p.add_(0.5)
    opt, sched = make_optimizer(model, plan, optim, total_steps=STEPS)
    ratios: dict[str, list[float]] = {n: [] for n, _ in model.named_parameters()}
    for _ in range(STEPS):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        sched.step()
        for n, p in model.named_parameters():
            r = p.detach() / before[n]
            # one factor for the whole tensor: decay multiplies every entry alike
            torch.testing.assert_close(
                r, torch.full_like(r, float(r.flatten()[0])), rtol=0, atol=1e-6
            )
            ratios[n].append(float(r.flatten()[0]))
    return ratios, plan.by_name()


def schedule() -> list[float]:
    s = lr_multiplier(SCHED, STEPS)
    return [s(t) for t in range(STEPS)]


@pytest.mark.parametrize("name", ["adamw", "sgd"])
@pytest.mark.parametrize(("width", "lr"), [(32, 1e-3), (128, 1e-3), (128, 0.3), (256, 0.05)])
def test_independent_decay_is_one_minus_s_lambda(name, width, lr):
    lam = 0.01
    optim = OptimConfig(name=name, lr=lr, weight_decay=lam, wd_mode="independent", schedule=SCHED)
    ratios, plans = decay_factors(width, optim)
    s = schedule()
    lr_scales = {plans[n].lr_scale for n in ratios if plans[n].wd_scale}
    if width > 32 and name == "adamw":
        assert len(lr_scales) > 1  # μP gives the matrices different LRs: the claim has bite
    for n, rs in ratios.items():
        want = [1 - st * lam if plans[n].wd_scale else 1.0 for st in s]
        assert rs == pytest.approx(want, abs=1e-6), n


@pytest.mark.parametrize("width", [32, 128, 256])
def test_coupled_decay_is_one_minus_eta_s_lambda_at_every_width(width):
    lr, lam = 0.02, 0.1
    optim = OptimConfig(name="adamw", lr=lr, weight_decay=lam, wd_mode="coupled", schedule=SCHED)
    ratios, plans = decay_factors(width, optim)
    s = schedule()
    for n, rs in ratios.items():
        want = [1 - lr * st * lam if plans[n].wd_scale else 1.0 for st in s]
        assert rs == pytest.approx(want, abs=1e-6), n


def test_no_decay_without_weight_decay():
    ratios, _ = decay_factors(64, OptimConfig(name="adamw", lr=0.1, schedule=SCHED))
    assert all(r == pytest.approx(1.0, abs=1e-7) for rs in ratios.values() for r in rs)
