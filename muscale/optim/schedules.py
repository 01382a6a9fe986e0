"""LR schedules as plain functions of the step: one multiplier for every param group.

Because every group's LR is ``eta · lr_scale · schedule(t)``, the per-tensor ratios the plan
sets hold at every step (a schedule that treated groups differently would break μP).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from muscale.optim.config import ScheduleConfig


def lr_multiplier(cfg: ScheduleConfig, total_steps: int) -> Callable[[int], float]:
    """``step -> multiplier`` for ``torch.optim.lr_scheduler.LambdaLR``."""
    warm = cfg.warmup_steps
    floor = cfg.min_lr_ratio
    total = max(int(total_steps), 1)

    def decay(step: int) -> float:
        if cfg.name == "constant":
            return 1.0
        if cfg.name == "wsd":
            start = total - max(1, round(cfg.decay_frac * total))
            if step < start:
                return 1.0
            frac = (step - start) / max(total - start, 1)
            return floor + (1.0 - floor) * max(0.0, 1.0 - frac)
        frac = min(max(step - warm, 0) / max(total - warm, 1), 1.0)
        if cfg.name == "cosine":
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * frac))
        return floor + (1.0 - floor) * (1.0 - frac)  # linear

    def multiplier(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return decay(step)

    return multiplier
