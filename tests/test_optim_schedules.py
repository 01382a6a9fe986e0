"""LR schedules against their closed forms, written here independently of the code.

Every schedule is a multiplier s(t) of the base LR (``muscale/optim/schedules.py``), with a
linear warmup s(t) = (t + 1) / W for t < W. After warmup, with T total steps, r the floor
``min_lr_ratio`` and u = min((t - W) / (T - W), 1) the decay fraction:

* constant: s = 1
* cosine (Loshchilov & Hutter 2017): s = r + (1 - r) (1 + cos(π u)) / 2
* linear: s = r + (1 - r) (1 - u)
* WSD (Hu et al. 2024, MiniCPM): s = 1 until the last round(f T) steps, then linear to r over
  them: with t0 = T - round(f T), s = r + (1 - r) (1 - min((t - t0) / (T - t0), 1)).
"""

from __future__ import annotations

import math

import pytest
import torch

from muscale.optim.config import ScheduleConfig
from muscale.optim.schedules import lr_multiplier

T = 100


def warmup(t: int, w: int) -> float:
    return (t + 1) / w


def closed_form(name: str, t: int, *, w: int, r: float, f: float = 0.2) -> float:
    if t < w:
        return warmup(t, w)
    if name == "constant":
        return 1.0
    if name == "wsd":
        t0 = T - round(f * T)
        return 1.0 if t < t0 else r + (1 - r) * (1 - min((t - t0) / (T - t0), 1.0))
    u = min((t - w) / (T - w), 1.0)
    if name == "cosine":
        return r + (1 - r) * 0.5 * (1 + math.cos(math.pi * u))
    assert name == "linear"
    return r + (1 - r) * (1 - u)


@pytest.mark.parametrize("name", ["constant", "cosine", "linear", "wsd"])
@pytest.mark.parametrize(("w", "r"), [(0, 0.0), (10, 0.0), (10, 0.1), (25, 0.5)])
def test_every_step_matches_the_closed_form(name, w, r):
    s = lr_multiplier(ScheduleConfig(name=name, warmup_steps=w, min_lr_ratio=r), T)
    for t in range(T + 20):  # past the end too: the schedule holds its last value
        assert s(t) == pytest.approx(closed_form(name, t, w=w, r=r), abs=1e-12), t


def test_landmark_values():
    """Values a reader can check by hand."""
    cos = lr_multiplier(ScheduleConfig(name="cosine", warmup_steps=10, min_lr_ratio=0.1), T)
    assert cos(0) == pytest.approx(0.1)  # first warmup step: 1/W
    assert cos(9) == pytest.approx(1.0)  # last warmup step reaches the peak
    assert cos(10) == pytest.approx(1.0)  # decay starts at the peak
    assert cos(55) == pytest.approx(0.55)  # halfway through the decay: (1 + r) / 2
    assert cos(100) == pytest.approx(0.1)  # the floor at the end
    lin = lr_multiplier(ScheduleConfig(name="linear", warmup_steps=0, min_lr_ratio=0.0), T)
    assert [lin(t) for t in (0, 25, 50, 100)] == pytest.approx([1.0, 0.75, 0.5, 0.0])
    wsd = lr_multiplier(ScheduleConfig(name="wsd", decay_frac=0.2, min_lr_ratio=0.0), T)
    assert [wsd(t) for t in (0, 79, 80, 90, 100)] == pytest.approx([1, 1, 1, 0.5, 0])


def test_torch_scheduler_applies_it_to_every_group_alike():
    """Through LambdaLR each group's LR is its own base LR x s(t), so the plan's per-tensor
    LR ratios (μP) hold at every step."""
    w1, w2 = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [w1], "lr": 0.1}, {"params": [w2], "lr": 0.025}], lr=0.1)
    cfg = ScheduleConfig(name="cosine", warmup_steps=5, min_lr_ratio=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_multiplier(cfg, T))
    for t in range(T):
        lr1, lr2 = (g["lr"] for g in opt.param_groups)
        assert lr1 == pytest.approx(0.1 * closed_form("cosine", t, w=5, r=0.0), abs=1e-12)
        assert lr1 / max(lr2, 1e-300) == pytest.approx(4.0) or lr1 == lr2 == 0.0
        opt.step()
        sched.step()
