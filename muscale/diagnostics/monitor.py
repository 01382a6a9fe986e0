"""In-training spectral monitoring: a plain function the trainer calls every N steps.

    if step % every == 0:
        logger.log(spectral_summary(model), step=step)

Per matrix (batched SVDs, see :mod:`.spectra`): spectral norm, stable rank, and the
Clauset–Shalizi–Newman tail exponent α of its ESD (Martin & Mahoney 2021 track α during
training: well-trained layers drift to α ∈ [2, 6]); plus means over matrices.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from muscale.diagnostics.spectra import batched_svdvals, matrices, powerlaw_fit, stable_rank


def spectral_summary(
    model: nn.Module, *, prefix: str = "spectral/", min_dim: int = 16, tail: bool = True
) -> dict[str, float]:
    """``{prefix}<param>/{sigma_max,stable_rank,alpha}`` and ``{prefix}mean/...`` floats.

    ``tail=False`` skips the power-law fit (the SVDs are then the whole cost).
    """
    with torch.no_grad():
        mats = matrices(model, min_dim=min_dim)
        svals = batched_svdvals(mats)
    out: dict[str, float] = {}
    agg: dict[str, list[float]] = {"sigma_max": [], "stable_rank": [], "alpha": []}
    for name, s in svals.items():
        row = {"sigma_max": float(s.max()), "stable_rank": stable_rank(s)}
        if tail:
            n = max(mats[name].shape)
            row["alpha"] = powerlaw_fit(s**2 / n).alpha
        for k, v in row.items():
            out[f"{prefix}{name}/{k}"] = v
            if math.isfinite(v):
                agg[k].append(v)
    for k, vals in agg.items():
        if vals:
            out[f"{prefix}mean/{k}"] = float(np.mean(vals))
    return out
