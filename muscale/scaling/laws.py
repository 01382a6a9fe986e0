r"""The parametric loss law and the FLOPs model that ties N, D and C together.

Hoffmann et al. 2022 ("Training Compute-Optimal Large Language Models", Eq. 2):

.. math:: L(N, D) = E + \frac{A}{N^\alpha} + \frac{B}{D^\beta}

Training compute is ``C = D · f(N)`` with ``f(N) = 6N`` FLOPs per token (Kaplan et al. 2020,
§2.1: 2N forward, 4N backward), or a per-token count that adds attention,
``6N + 6 n_layer n_ctx d_model`` (Kaplan et al. 2020, Table 1, times 3 for training).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from muscale.errors import ConfigError, UserError

Array = NDArray[np.float64]


@dataclass(kw_only=True, frozen=True)
class ChinchillaLaw:
    """``L(N, D) = E + A / N**alpha + B / D**beta`` (Hoffmann et al. 2022, Eq. 2)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def __post_init__(self) -> None:
        for name in ("E", "A", "B", "alpha", "beta"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(name, value, "a law needs finite, positive E, A, B, alpha, beta")

    def loss(self, N: ArrayLike, D: ArrayLike) -> Array:
        """Predicted loss at ``N`` parameters trained on ``D`` tokens."""
        n = np.asarray(N, dtype=np.float64)
        d = np.asarray(D, dtype=np.float64)
        return self.E + self.A / n**self.alpha + self.B / d**self.beta

    @property
    def a(self) -> float:
        """Exponent of ``N_opt ∝ C**a`` under ``C = 6ND``: ``beta / (alpha + beta)``."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """Exponent of ``D_opt ∝ C**b`` under ``C = 6ND``: ``alpha / (alpha + beta)``."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        """``(alpha A / (beta B))**(1 / (alpha + beta))`` (Hoffmann et al. 2022, Eq. 4)."""
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    def to_log(self) -> Array:
        """Parameters in the fit's coordinates ``(a, b, e, alpha, beta)`` =
        ``(log A, log B, log E, alpha, beta)``."""
        return np.array(
            [math.log(self.A), math.log(self.B), math.log(self.E), self.alpha, self.beta]
        )

    @classmethod
    def from_log(cls, theta: ArrayLike) -> ChinchillaLaw:
        a, b, e, alpha, beta = (float(v) for v in np.asarray(theta, dtype=np.float64))
        return cls(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=alpha, beta=beta)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ChinchillaLaw:
        missing = [k for k in ("E", "A", "B", "alpha", "beta") if k not in d]
        if missing:
            raise UserError(f"fit parameters lack {', '.join(missing)}: need E, A, B, alpha, beta")
        return cls(**{k: float(d[k]) for k in ("E", "A", "B", "alpha", "beta")})


#: Published fits (name -> law, citation). ``epoch`` is fitted on the same 245 points as
#: ``shared/data/chinchilla``; ``hoffmann`` is the paper's own Approach 3 on its full data.
PUBLISHED: dict[str, tuple[ChinchillaLaw, str]] = {
    "epoch": (
        ChinchillaLaw(E=1.817, A=482.0, B=2085.4, alpha=0.3478, beta=0.3658),
        "Besiroglu et al. 2024, Chinchilla Scaling: A replication attempt (Epoch AI)",
    ),
    "hoffmann": (
        ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),
        "Hoffmann et al. 2022, Training Compute-Optimal LLMs, Approach 3",
    ),
}


def published(name: str) -> tuple[ChinchillaLaw, str]:
    """A published law by name (``epoch`` or ``hoffmann``) with its citation."""
    if name not in PUBLISHED:
        raise ConfigError("law", name, "choose one of " + ", ".join(PUBLISHED))
    return PUBLISHED[name]


@dataclass(kw_only=True, frozen=True)
class FlopsModel:
    """Training FLOPs per token as a function of the parameter count ``N``.

    ``n_ctx = 0`` gives the plain ``coef · N`` (``C = 6ND``). With ``n_ctx > 0`` the attention
    term ``coef · n_layer · n_ctx · d_model`` is added, the shape taken from ``N = 12 n_layer
    d_model²`` and ``d_model = aspect · n_layer`` (Kaplan et al. 2020, §2.1 and Table 1).
    Inference costs a forward pass, a third of the training count (``2N`` per token).
    """

    coef: float = 6.0
    n_ctx: int = 0
    aspect: float = 128.0

    def __post_init__(self) -> None:
        if not self.coef > 0:
            raise ConfigError("flops.coef", self.coef, "must be > 0")
        if self.n_ctx < 0:
            raise ConfigError("flops.n_ctx", self.n_ctx, "must be >= 0 (0 = no attention term)")
        if not self.aspect > 0:
            raise ConfigError("flops.aspect", self.aspect, "must be > 0 (d_model / n_layer)")

    @property
    def linear(self) -> bool:
        """True when ``C = coef · N · D`` exactly, so the closed forms apply."""
        return self.n_ctx == 0

    def __call__(self, N: ArrayLike) -> Array:
        n = np.asarray(N, dtype=np.float64)
        if self.linear:
            return self.coef * n
        n_layer = (n / (12.0 * self.aspect**2)) ** (1.0 / 3.0)
        d_model = self.aspect * n_layer
        return self.coef * n + self.coef * n_layer * self.n_ctx * d_model

    def inference(self, N: ArrayLike) -> Array:
        """Forward-pass FLOPs per token: a third of the training count (2N for coef 6)."""
        return self(N) / 3.0


FlopsPerToken = Callable[[Array], Array]
SIX_ND = FlopsModel()
