"""Refuse a run that cannot fit in memory, before anything is allocated or written.

The model is built on the meta device (shapes only), so a lower bound of what training
needs is cheap to count: fp32 weights, their gradients and the optimizer's slots (Adam:
two moments, SGD with momentum: one), sharded over ranks under FSDP, plus one saved fp32
activation of width ``width`` per layer and token of the local micro-batch (backward keeps
at least that). Only a *lower* bound is compared with the memory available, so a run that
would fit is never refused; one that is refused would certainly fail to allocate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from muscale.errors import UserError

FP32 = 4


@dataclass(frozen=True, kw_only=True)
class MemoryEstimate:
    params: int  # parameter count (full model)
    state_bytes: int  # weights + gradients + optimizer slots on one rank
    activation_bytes: int  # lower bound of saved activations on one rank

    @property
    def total(self) -> int:
        return self.state_bytes + self.activation_bytes


def estimate(
    meta_model: nn.Module,
    *,
    optim_name: str,
    momentum: float,
    tokens_per_rank_step: int,
    width: int,
    depth: int,
    shards: int = 1,
) -> MemoryEstimate:
    """Lower bound of one rank's training memory (see the module docstring)."""
    params = sum(p.numel() for p in meta_model.parameters())
    slots = 2 if optim_name.startswith("adam") else (1 if momentum > 0 else 0)
    state = params * FP32 * (2 + slots) // max(shards, 1)
    acts = tokens_per_rank_step * width * (depth + 1) * FP32
    return MemoryEstimate(params=params, state_bytes=state, activation_bytes=acts)


def available_bytes(device: str) -> int | None:
    """Free memory of the device the run will use (CUDA: free on the GPU; CPU:
    ``MemAvailable``), or None if unknown."""
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            return None
        index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
        return int(torch.cuda.mem_get_info(index)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_fits(est: MemoryEstimate, device: str) -> None:
    """Raise :class:`UserError` with the numbers if ``est`` exceeds the free memory."""
    free = available_bytes(device)
    if free is None or est.total <= free:
        return
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    raise UserError(
        f"the model does not fit in memory: {est.params:.4g} parameters need at least "
        f"{_gib(est.state_bytes)} for weights, gradients and optimizer state plus "
        f"{_gib(est.activation_bytes)} of activations, but {device} has {_gib(free)} available; "
        "lower model.width/model.depth or data.batch_size, or use trainer.parallel=fsdp"
    )


def _gib(n: int) -> str:
    return f"{n / 2**30:.4g} GiB"
