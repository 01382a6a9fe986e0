"""``y = k · x**p`` fitted by least squares in log-log, with bootstrap intervals.

Shared by Approaches 1 and 2 (``N_opt ∝ C^a``, ``D_opt ∝ C^b``; Hoffmann et al. 2022,
§3.1–3.2) and the hyperparameter laws (``η_opt = a·C^b``, ``B_opt = c·C^d``; DeepSeek-AI
2024, "DeepSeek LLM", §3.1, Eq. 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


@dataclass(kw_only=True)
class PowerLaw:
    """``y = coef · x**exponent`` with optional percentile intervals of both."""

    coef: float
    exponent: float
    coef_ci: list[float] = field(default_factory=list)
    exponent_ci: list[float] = field(default_factory=list)
    samples: Array | None = None  # (n_boot, 2): log(coef), exponent per replicate

    def __call__(self, x: ArrayLike) -> Array:
        return self.coef * np.asarray(x, dtype=np.float64) ** self.exponent

    def interval(self, x: float, level: float = 0.95) -> list[float]:
        """Percentile interval of the prediction at ``x`` over the bootstrap replicates."""
        if self.samples is None or not len(self.samples):
            return []
        pred = np.exp(self.samples[:, 0] + self.samples[:, 1] * math.log(x))
        return np.percentile(pred, [(1 - level) / 2 * 100, (1 + level) / 2 * 100]).tolist()

    def to_json(self) -> dict[str, Any]:
        return {
            "coef": self.coef,
            "exponent": self.exponent,
            "coef_ci": self.coef_ci,
            "exponent_ci": self.exponent_ci,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PowerLaw:
        return cls(
            coef=float(d["coef"]),
            exponent=float(d["exponent"]),
            coef_ci=list(d.get("coef_ci", [])),
            exponent_ci=list(d.get("exponent_ci", [])),
        )


def fit_loglog(x: ArrayLike, y: ArrayLike) -> tuple[float, float]:
    """Least squares of ``log y`` on ``log x``: returns ``(log coef, exponent)``."""
    lx = np.log(np.asarray(x, dtype=np.float64))
    ly = np.log(np.asarray(y, dtype=np.float64))
    slope, intercept = np.polyfit(lx, ly, 1)
    return float(intercept), float(slope)


def with_intervals(
    x: ArrayLike, y: ArrayLike, boot: list[tuple[float, float]], level: float = 0.95
) -> PowerLaw:
    """The point fit on ``(x, y)`` and percentile intervals from replicate fits ``boot``
    (pairs ``(log coef, exponent)`` from the caller's resampling scheme)."""
    log_k, p = fit_loglog(x, y)
    law = PowerLaw(coef=math.exp(log_k), exponent=p)
    if boot:
        s = np.array(boot, dtype=np.float64)
        q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
        law.samples = s
        law.coef_ci = np.exp(np.percentile(s[:, 0], q)).tolist()
        law.exponent_ci = np.percentile(s[:, 1], q).tolist()
    return law
