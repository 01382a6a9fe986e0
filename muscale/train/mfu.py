"""Model FLOPs utilisation: achieved model FLOPs per second over the hardware's peak.

FLOPs per token of training (forward + backward) follow Kaplan et al. 2020 (§2.1) and the
PaLM paper's MFU definition (Chowdhery et al. 2022, App. B):

.. math::  C_{token} = 6 N + 12\\, L\\, H\\, Q\\, T

``N`` counts the parameters of matrix multiplies (embedding lookups are free; a tied
embedding counts once, as the readout), ``L`` layers, ``H`` heads of size ``Q``, ``T``
the sequence length. The attention term counts the full (non-causal) ``QK^T`` and ``AV``
products, as PaLM and nanoGPT do. MFU is only reported on CUDA, against the dense
(no sparsity) peak of the device in the run's precision.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

#: device-name substring -> (bf16 dense peak, fp32 peak with TF32 matmuls), FLOP/s per GPU.
#: From NVIDIA's datasheets; the first match wins, so specific names come first.
PEAK_FLOPS: tuple[tuple[str, float, float], ...] = (
    ("H200", 989e12, 494e12),
    ("H100 PCIe", 756e12, 378e12),
    ("H100", 989e12, 494e12),  # SXM
    ("GH200", 989e12, 494e12),
    ("B200", 2250e12, 1100e12),
    ("A100", 312e12, 156e12),
    ("A800", 312e12, 156e12),
    ("L40S", 362e12, 183e12),
    ("L4", 121e12, 60e12),
    ("A10G", 70e12, 35e12),
    ("A10", 125e12, 62.5e12),
    ("RTX 4090", 165e12, 82.6e12),
    ("RTX 3090", 71e12, 35.6e12),
    ("V100", 125e12, 15.7e12),  # fp16 tensor cores (no bf16); fp32 without TF32
    ("T4", 65e12, 8.1e12),
)


def matmul_params(model: nn.Module) -> int:
    """Parameters that take part in matrix multiplies: all but embedding lookups."""
    emb = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    readout = {
        id(m.weight) for m in model.modules() if isinstance(m, nn.Linear) and id(m.weight) in emb
    }
    total = 0
    for p in model.parameters():  # parameters() yields a tied tensor once
        if id(p) not in emb or id(p) in readout:
            total += p.numel()
    return total


def flops_per_token(model: nn.Module, model_cfg: Any) -> float:
    """Training FLOPs per token (per sample for the MLP): ``6N`` plus attention."""
    n = matmul_params(model)
    flops = 6.0 * n
    dims = getattr(model, "dims", None)
    if model_cfg.family == "gpt" and dims:
        flops += 12.0 * model_cfg.depth * dims["n_heads"] * dims["head_dim"] * model_cfg.seq_len
    return flops


def peak_flops(device: torch.device, precision: str) -> float | None:
    """Dense peak FLOP/s of one ``device`` in ``precision`` (None: CPU or unknown GPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for pattern, bf16, fp32 in PEAK_FLOPS:
        if pattern in name:
            return bf16 if precision == "bf16" else fp32
    return None


def mfu(tokens_per_s: float, flops_token: float, peak: float | None, world_size: int) -> float:
    """Achieved model FLOP/s over ``world_size`` devices' peak (nan without a peak)."""
    if not peak:
        return float("nan")
    return tokens_per_s * flops_token / (peak * world_size)
