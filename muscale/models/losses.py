"""The training losses, shared by the trainer, the coordinate check and the diagnostics."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def cross_entropy(out: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy over the last axis, in fp32: token-level for ``(B, T, V)`` logits and
    ``(B, T)`` targets, per example for ``(B, C)`` and ``(B,)``."""
    return F.cross_entropy(out.reshape(-1, out.shape[-1]).float(), target.reshape(-1))


def mse(out: Tensor, target: Tensor) -> Tensor:
    """Mean squared error in fp32 (regression)."""
    return F.mse_loss(out.float(), target.float())
