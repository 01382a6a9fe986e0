r"""How to spend compute: model size and tokens from a fitted law.

* **Compute-optimal** (Hoffmann et al. 2022, Eq. 4, App. D.3): minimising
  :math:`L(N, D)` subject to :math:`C = 6ND` gives
  :math:`N_{opt} = G (C/6)^{a}`, :math:`D_{opt} = G^{-1} (C/6)^{b}` with
  :math:`a = β/(α+β)`, :math:`b = α/(α+β)`, :math:`G = (αA/(βB))^{1/(α+β)}`. With a FLOPs
  model that counts attention (``C = D·f(N)``, not linear in N) the same minimum is found
  numerically over ``log N``.
* **Inference-aware** (Sardana et al. 2023, "Beyond Chinchilla-Optimal", Eq. 3 and §2):
  minimise training plus inference FLOPs :math:`6 N D_{tr} + 2 N D_{inf}` subject to
  :math:`L(N, D_{tr}) = \ell`. For each N the constraint fixes
  :math:`D_{tr}(N) = (B / (\ell - E - A N^{-α}))^{1/β}`, so it is a 1-D problem over
  :math:`\log N > \log N_{min}`, :math:`N_{min} = (A/(\ell-E))^{1/α}`. By default the target
  loss is the compute-optimal loss at the given budget, so zero inference gives back the
  Chinchilla allocation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from muscale.errors import ConfigError, UserError
from muscale.scaling.laws import SIX_ND, ChinchillaLaw, FlopsModel


@dataclass(kw_only=True)
class Allocation:
    """A training plan: ``N`` parameters on ``D`` tokens, and what it costs and predicts."""

    N: float
    D: float
    train_flops: float
    loss: float
    inference_tokens: float = 0.0
    inference_flops: float = 0.0

    @property
    def tokens_per_param(self) -> float:
        return self.D / self.N

    @property
    def total_flops(self) -> float:
        return self.train_flops + self.inference_flops

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "tokens_per_param": self.tokens_per_param,
            "total_flops": self.total_flops,
        }


def compute_optimal(law: ChinchillaLaw, compute: float, flops: FlopsModel = SIX_ND) -> Allocation:
    """The loss-minimising ``(N, D)`` for ``compute`` training FLOPs (closed form when
    ``C = coef·N·D``; a bounded 1-D search in ``log N`` otherwise)."""
    _check_compute(compute)
    if flops.linear:
        n = law.G * (compute / flops.coef) ** law.a
    else:
        guess = math.log(law.G * (compute / flops.coef) ** law.a)

        def loss_at(log_n: float) -> float:
            n_ = math.exp(log_n)
            return float(law.loss(n_, compute / float(flops(n_))))

        n = math.exp(_min_1d(loss_at, guess - 12.0, guess + 12.0))
    d = compute / float(flops(n))
    return Allocation(N=n, D=d, train_flops=compute, loss=float(law.loss(n, d)))


def tokens_for_loss(law: ChinchillaLaw, n: float, target_loss: float) -> float:
    """``D`` such that ``L(n, D) = target_loss``; ``inf`` when ``n`` cannot reach it."""
    gap = target_loss - law.E - law.A / n**law.alpha
    return (law.B / gap) ** (1.0 / law.beta) if gap > 0 else math.inf


def inference_aware(
    law: ChinchillaLaw,
    *,
    target_loss: float,
    inference_tokens: float,
    flops: FlopsModel = SIX_ND,
) -> Allocation:
    """Minimise ``f(N)·D_train + f_inf(N)·D_inference`` subject to ``L(N, D_train) =
    target_loss`` (Sardana et al. 2023); ``f = 6N``, ``f_inf = 2N`` by default."""
    if not target_loss > law.E:
        raise ConfigError(
            "loss", target_loss, f"a target loss must exceed the law's irreducible E={law.E:.4g}"
        )
    if not inference_tokens >= 0:
        raise ConfigError("inference_tokens", inference_tokens, "must be >= 0")
    log_n_min = math.log(law.A / (target_loss - law.E)) / law.alpha

    def log_total(log_n: float) -> float:
        n = math.exp(log_n)
        d = tokens_for_loss(law, n, target_loss)
        if not math.isfinite(d):
            return math.inf
        return math.log(float(flops(n)) * d + float(flops.inference(n)) * inference_tokens)

    n = math.exp(_min_1d(log_total, log_n_min + 1e-9, log_n_min + 40.0))
    d = tokens_for_loss(law, n, target_loss)
    return Allocation(
        N=n,
        D=d,
        train_flops=float(flops(n)) * d,
        loss=target_loss,
        inference_tokens=float(inference_tokens),
        inference_flops=float(flops.inference(n)) * inference_tokens,
    )


def _min_1d(fun: Any, lo: float, hi: float, n_grid: int = 801) -> float:
    """Minimiser of a unimodal ``fun`` on ``[lo, hi]``: a grid to bracket, then Brent."""
    xs = np.linspace(lo, hi, n_grid)
    vals = np.array([fun(float(x)) for x in xs])
    if not np.isfinite(vals).any():
        raise UserError("no feasible allocation: the law cannot reach this target")
    i = int(np.nanargmin(np.where(np.isfinite(vals), vals, np.inf)))
    a, b = xs[max(i - 1, 0)], xs[min(i + 1, n_grid - 1)]
    res = minimize_scalar(fun, bounds=(a, b), method="bounded", options={"xatol": 1e-10})
    return float(res.x) if res.fun <= vals[i] else float(xs[i])


def _check_compute(compute: float) -> None:
    if not (math.isfinite(compute) and compute > 0):
        raise ConfigError("compute", compute, "must be a positive number of FLOPs, e.g. 1e21")


def plan(
    law: ChinchillaLaw,
    *,
    compute: float | None = None,
    target_loss: float | None = None,
    inference_tokens: float = 0.0,
    flops: FlopsModel = SIX_ND,
) -> dict[str, Allocation]:
    """The compute-optimal plan (``chinchilla``) and, with inference demand, the
    inference-aware one that reaches the same loss at the least total cost.

    Give ``compute`` (its compute-optimal loss is the target) or ``target_loss``.
    """
    if (compute is None) == (target_loss is None):
        raise UserError("a plan needs exactly one of compute=FLOPs or loss=TARGET")
    if compute is not None:
        base = compute_optimal(law, compute, flops)
        target = base.loss
    else:
        assert target_loss is not None
        target = float(target_loss)
        base = inference_aware(law, target_loss=target, inference_tokens=0.0, flops=flops)
    out = {"chinchilla": base}
    if inference_tokens > 0:
        aware = inference_aware(
            law, target_loss=target, inference_tokens=inference_tokens, flops=flops
        )
        base.inference_tokens = float(inference_tokens)
        base.inference_flops = float(flops.inference(base.N)) * inference_tokens
        out["inference_aware"] = aware
    elif inference_tokens < 0:
        raise ConfigError("inference_tokens", inference_tokens, "must be >= 0")
    return out


def plan_intervals(
    laws: np.ndarray,
    *,
    compute: float | None = None,
    target_loss: float | None = None,
    inference_tokens: float = 0.0,
    flops: FlopsModel = SIX_ND,
    level: float = 0.95,
) -> dict[str, dict[str, list[float]]]:
    """Percentile intervals of each plan's N, D, tokens/param and loss over bootstrap laws
    (rows ``E, A, B, alpha, beta``); replicates that give no valid law are skipped."""
    rows: dict[str, list[list[float]]] = {}
    for e, a, b, al, be in np.asarray(laws, dtype=np.float64):
        try:
            law = ChinchillaLaw(E=e, A=a, B=b, alpha=al, beta=be)
            plans = plan(
                law,
                compute=compute,
                target_loss=target_loss,
                inference_tokens=inference_tokens,
                flops=flops,
            )
        except UserError:
            continue
        for name, p in plans.items():
            rows.setdefault(name, []).append([p.N, p.D, p.tokens_per_param, p.loss])
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    out: dict[str, dict[str, list[float]]] = {}
    for name, r in rows.items():
        arr = np.array(r)
        out[name] = {
            k: np.nanpercentile(arr[:, j], q).tolist()
            for j, k in enumerate(("N", "D", "tokens_per_param", "loss"))
        }
    return out
