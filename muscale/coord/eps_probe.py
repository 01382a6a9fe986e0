r"""The Adam-ε probe: does a fixed ε take over the update at the widths μP transfers to?

Adam's update is :math:`m_t / (\sqrt{\hat v_t} + \varepsilon)`. μP's width exponents assume
that update is Θ(1) per coordinate, which holds only while :math:`\varepsilon \ll \sqrt{\hat
v}`. Under μP the gradient entries of the input, hidden and vector parameters (and of the
readout, through its 1/m multiplier) shrink like :math:`1/m`, so μP scales ε the same way
(TP5, Yang et al. 2022, App. B; Everett et al. 2024 "Scaling exponents across
parameterizations and optimizers", §4, "epsilon underflow"; CompleteP, Dey et al. 2025,
Table 1). With ε unscaled, the ratio

.. math:: r(n) = \varepsilon / \operatorname{RMS}(\sqrt{\hat v}) \;\propto\; n

and at some width ε dominates and the updates collapse (Adam turns into SGD with LR η/ε) —
usually far above the widths a coordinate check can afford, where the activations' slopes
show nothing. So the probe reads the ratio directly: after the check's steps, for every
tensor the optimizer keeps a second moment for, :math:`\hat v = v_T / (1 - \beta_2^T)` and
the group's ε give :math:`r` at each width and seed. It fits :math:`\log_2 r` against
:math:`\log_2 n` per seed and extrapolates to a **horizon** width (default 64× the largest
checked width: a proxy at 256–1024 transfers to 16k–64k, the hidden sizes of today's largest
models; ``eps_horizon=``), with an interval over the seeds.

Verdict per tensor (the same statistics as :mod:`muscale.coord.verdict`: a seed interval,
the PASS interval at 90 %, the FAIL interval family-wise at 95 % over the probed tensors):

* FAIL when the slope is clearly above the Θ(1) band (its family-wise interval above
  ``EPS_SLOPE_HI`` = 0.3, the allowance of every μP band) **and** the extrapolated ratio at the
  horizon is clearly above ``EPS_THRESHOLD`` = 0.1 (ε is 10 % of √v̂: the update of a typical
  coordinate is ≥ 9 % smaller than μP assumes, and growing with width);
* PASS when the slope lies inside the band (ε scales like the gradients: whatever its size,
  it is the same fraction of √v̂ at every width, a width-independent hyperparameter) or the
  extrapolated ratio stays below the threshold (ε unscaled but harmless up to the horizon,
  e.g. microsoft/mup's MuAdam with ε = 1e-8);
* INCONCLUSIVE otherwise (the seeds cannot decide).

The threshold and horizon were calibrated on the models of ``tools/calibrate_coord_check.py``
(``docs/coord_check.md``, "The ε probe"). Optimizers without a second moment (SGD) are not
probed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats as sps
from torch import nn

#: ε / RMS(√v̂) above which ε visibly shrinks Adam's update (≥ 9 % for a typical coordinate)
EPS_THRESHOLD = 0.1
#: the width the probe vouches for (``eps_horizon=``): 2^16 = 65536, 4x the widest dense
#: models trained today (d_model 16384, Llama-3.1-405B; GPT-3 175B: 12288)
EPS_HORIZON = 65536.0
#: a slope of log2 r above this is outside the Θ(1) band (μP's ±0.3 allowance); unscaled ε
#: under μP has slope +1 (hidden gradients ∝ 1/m), SP's +½
EPS_SLOPE_HI = 0.3
#: PASS interval (two one-sided tests at 5 %) and family-wise FAIL level, as in the verdict
PASS_CONFIDENCE = 0.90
FAIL_CONFIDENCE = 0.95
#: most degrees of freedom the tensors' pooled seed spread lends the bulk's (moderation)
PRIOR_DF = 10


def measure(
    model: nn.Module, opt: torch.optim.Optimizer, *, seed: int | None = None
) -> dict[str, tuple[float, float]]:
    """``{tensor name: (ε, RMS(√v̂))}`` from an Adam-family optimizer's state after some steps.

    ``seed``: the row of the leading dimension to read when the optimizer stepped all seeds'
    models stacked (:mod:`muscale.coord.batched`); None for a model of its own.

    Tensors qualify when their group has an ``eps`` and their state an ``exp_avg_sq``
    (``max_exp_avg_sq`` with amsgrad) and a ``step``; :math:`\\hat v` is bias-corrected with
    the group's β₂ (torch's Adam/AdamW: denominator √v̂ + ε). The RMS runs over the entries
    that received a gradient (an embedding's unseen rows have v = 0 and no update). SGD and
    optimizers without a second moment give ``{}``."""
    names = {id(p): n for n, p in model.named_parameters()}
    out: dict[str, tuple[float, float]] = {}
    for group in opt.param_groups:
        eps, betas = group.get("eps"), group.get("betas")
        if eps is None or betas is None:
            continue
        for p in group["params"]:
            st = opt.state.get(p, {})
            v = st.get("max_exp_avg_sq", st.get("exp_avg_sq"))
            step = float(st.get("step", 0))
            if v is None or step < 1 or id(p) not in names:
                continue
            if seed is not None:
                v = v[seed]
            with torch.no_grad():  # v >= 0: the sum over seen entries is the plain sum
                n_seen = int(torch.count_nonzero(v))
                # torch's cascade sum in (at least) float32: 1e-7 relative on 12M entries,
                # 35x faster than in float64 (that was 7 % of a default check, one thread)
                acc = torch.promote_types(v.dtype, torch.float32)
                ms = float(v.sum(dtype=acc)) / n_seen if n_seen else 0.0
            bc2 = 1.0 - float(betas[1]) ** step
            out[names[id(p)]] = (float(eps), math.sqrt(ms / bc2))
    return out


@dataclass(kw_only=True)
class EpsData:
    """ε and RMS(√v̂) per (size, seed, tensor): ``eps``/``rms`` are ``(sizes, seeds, tensors)``
    arrays (NaN where a tensor had no state)."""

    names: list[str]
    eps: np.ndarray
    rms: np.ndarray

    @property
    def ratio(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.eps / self.rms


def stack(rows: list[dict[str, tuple[float, float]]], n_sizes: int, seeds: int) -> EpsData | None:
    """:func:`measure`'s results in size-major, seed-minor order -> :class:`EpsData` (None
    when nothing was probed, e.g. SGD). Tensor names follow the first row."""
    if not rows or not any(rows):
        return None
    names = list(next(r for r in rows if r))
    eps = np.full((n_sizes, seeds, len(names)), np.nan)
    rms = np.full_like(eps, np.nan)
    for i, row in enumerate(rows):
        si, seed = divmod(i, seeds)
        for k, name in enumerate(names):
            if name in row:
                eps[si, seed, k], rms[si, seed, k] = row[name]
    return EpsData(names=names, eps=eps, rms=rms)


@dataclass(kw_only=True)
class EpsTensor:
    """One probed tensor, described (not judged on its own): ``slope`` of log2 r on log2
    width (mean over seeds), r at the largest width, r extrapolated to the horizon, and the
    width where its fitted r reaches the threshold (None: slope ≤ 0 or beyond 2^60)."""

    tensor: str
    module: str
    eps: float
    slope: float
    ratio_max: float
    ratio_at: float
    crossing: float | None

    @property
    def grows(self) -> bool:
        """Reaches the threshold by the horizon and grows faster than the Θ(1) band allows."""
        return self.slope > EPS_SLOPE_HI and self.ratio_at > EPS_THRESHOLD


@dataclass(kw_only=True)
class EpsVerdict:
    """The probe's judged quantity, the **bulk** ratio: at each width and seed the median of
    log2 r over the probed tensors. ``slope``/``log2_at``: its slope on log2 width and its
    extrapolation to ``horizon`` (seed means), with the half-widths of the PASS (90 %) and
    FAIL (family-wise) intervals; ``status``: pass | fail | inconclusive; ``tensors``: every
    probed tensor, described."""

    horizon: float
    threshold: float
    slope: float
    half: float
    half_fail: float
    log2_at: float
    at_half: float
    at_half_fail: float
    ratio_max: float
    widest: float
    df: float
    status: str
    tensors: list[EpsTensor]

    @property
    def ratio_at(self) -> float:
        return 2.0**self.log2_at

    @property
    def crossing(self) -> float | None:
        """Width where the bulk's fitted ratio reaches the threshold (None: it never does)."""
        return _crossing(self.slope, self.ratio_max, self.widest, self.threshold)

    def growing(self) -> list[EpsTensor]:
        """Tensors that reach the threshold by the horizon, earliest first."""
        grow = [t for t in self.tensors if t.grows]
        return sorted(grow, key=lambda t: t.crossing or math.inf)

    def message(self) -> str:
        """One sentence for the verdict: the finding, the first tensors it hits, the fix."""
        thr = f"{self.threshold:.0%}"
        bulk = (
            f"bulk ε/√v̂ {self.ratio_max:.4g} at width {_w(self.widest)}, slope "
            f"{self.slope:+.3g} ±{self.half:.2g}, {self.ratio_at:.4g} at width {_w(self.horizon)}"
        )
        first: dict[str, EpsTensor] = {}
        for t in self.growing():  # one entry per module (weight and bias share a name)
            first.setdefault(t.module, t)
        names = ", ".join(
            f"{m} at width ≈ {_w(t.crossing)}" if t.crossing else m
            for m, t in list(first.items())[:3]
        )
        if self.status == "fail":
            where = f"width ≈ {_w(self.crossing)}" if self.crossing else f"width {_w(self.horizon)}"
            return (
                f"Adam ε reaches {thr} of √v̂ at {where} for most tensors (first for {names}) "
                f"({bulk}): scale ε with width (param.scale_eps=true)."
            )
        if self.status == "inconclusive":
            return (
                f"Adam ε probe undecided ({bulk}; pass needs the slope ≤ {EPS_SLOPE_HI} or the "
                f"ratio < {thr} at the horizon): add seeds or widths."
            )
        if first:
            return (
                f"Adam ε probe passed ({bulk}), but ε reaches {thr} of √v̂ by width "
                f"{_w(self.horizon)} for {len(self.growing())} tensor(s) whose early-step "
                f"gradients shrink faster than the bulk's (first: {names}); lower optim.eps if "
                "you train that wide."
            )
        return f"Adam ε probe passed ({bulk})."

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "tensors"}
        d |= {"ratio_at_horizon": self.ratio_at, "crossing": self.crossing}
        d = {k: _json(k, v) for k, v in d.items()}
        d["message"] = self.message()
        d["tensors"] = [{k: _json(k, v) for k, v in asdict(t).items()} for t in self.tensors]
        return d


def _w(width: float) -> str:
    """A width for people: an integer (widths are counts), in scientific form past 10^7."""
    return f"{width:.0f}" if width < 1e7 else f"{width:.4g}"


def _json(key: str, x: Any) -> Any:
    """Widths as whole numbers, other floats at 4 significant digits, non-finite as null."""
    if not isinstance(x, float):
        return x
    if not math.isfinite(x):
        return None
    return round(x) if key in ("horizon", "widest", "crossing") else float(f"{x:.4g}")


def _q(conf: float, df: float) -> float:
    return float(sps.t.ppf(0.5 + conf / 2, df)) if df > 0 else math.inf


def _module(tensor: str) -> str:
    head, _, last = tensor.rpartition(".")
    return head if head and last in ("weight", "bias") else tensor


def _crossing(slope: float, r_max: float, widest: float, threshold: float) -> float | None:
    if not slope > 0 or not r_max > 0:
        return None
    octaves = (math.log2(threshold) - math.log2(r_max)) / slope
    return widest * 2.0**octaves if octaves < 60 else None


def _fit(x: np.ndarray, y: np.ndarray, x_at: float) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Per-seed OLS of ``y (sizes, seeds)`` on ``x``: slopes, predictions at ``x_at``, the
    residual variance pooled over seeds and its degrees of freedom."""
    xc = x - x.mean()
    sxx = float(xc @ xc)
    b = xc @ (y - y.mean(axis=0)) / sxx
    y_at = y.mean(axis=0) + b * (x_at - x.mean())
    resid = y - y.mean(axis=0) - np.outer(xc, b)
    dof = (y.shape[0] - 2) * y.shape[1]
    s2 = float((resid**2).sum() / dof) if dof > 0 else math.nan
    return b, y_at, s2, float(dof)


def judge(
    data: EpsData,
    sizes: list[int],
    *,
    horizon: float = EPS_HORIZON,
    threshold: float = EPS_THRESHOLD,
    fail_confidence: float = FAIL_CONFIDENCE,
) -> EpsVerdict | None:
    """The probe's verdict (see the module docstring); None when no tensor has a ratio at
    every width. ``horizon`` is a width (at least the largest checked one).

    Interval: from the seeds (models at different widths share a seed's random stream, so
    the residuals of a seed's fit over widths underestimate the slope's spread: measured
    2-3x smaller in variance on the calibration models). The bulk's seed spread (df S − 1)
    is moderated towards the probed tensors' own seed spreads, pooled (Smyth 2004, as in
    :mod:`muscale.coord.verdict`; at most ``PRIOR_DF`` df; a median over tensors varies no
    more than a single tensor). With one seed only the residuals remain.
    ``fail_confidence``: the family-wise level the caller's Bonferroni correction asks for."""
    x = np.log2(np.asarray(sizes, float))
    n_at = max(float(horizon), float(max(sizes)))
    x_at = math.log2(n_at)
    ratio = data.ratio
    keep = [k for k in range(len(data.names)) if np.all(np.isfinite(ratio[:, :, k]))]
    keep = [k for k in keep if np.all(ratio[:, :, k] > 0)]
    if not keep:
        return None
    logs = np.log2(ratio[:, :, keep])  # (sizes, seeds, tensors)
    tensors, fits = [], []
    for i, k in enumerate(keep):
        b, y_at, _, _ = _fit(x, logs[:, :, i], x_at)
        fits.append((b, y_at))
        r_max = float(np.mean(ratio[-1, :, k]))
        tensors.append(
            EpsTensor(
                tensor=data.names[k],
                module=_module(data.names[k]),
                eps=float(np.mean(data.eps[:, :, k])),
                slope=float(b.mean()),
                ratio_max=r_max,
                ratio_at=float(2.0 ** y_at.mean()),
                crossing=_crossing(float(b.mean()), r_max, float(sizes[-1]), threshold),
            )
        )
    bulk = np.median(logs, axis=2)  # (sizes, seeds)
    b, y_at, s2, df_res = _fit(x, bulk, x_at)
    s = bulk.shape[1]
    if s >= 2:  # the seed spread, moderated towards the tensors' own seed spreads
        d0 = min(float(PRIOR_DF), len(fits) * (s - 1.0))
        prior_b = float(np.mean([np.var(fb, ddof=1) for fb, _ in fits])) / s
        prior_a = float(np.mean([np.var(fa, ddof=1) for _, fa in fits])) / s
        own_b, own_a = float(np.var(b, ddof=1)) / s, float(np.var(y_at, ddof=1)) / s
        df = (s - 1.0) + d0
        var_b = ((s - 1.0) * own_b + d0 * prior_b) / df
        var_a = ((s - 1.0) * own_a + d0 * prior_a) / df
    else:  # one seed: the residuals of the fit over widths
        xc = x - x.mean()
        sxx = float(xc @ xc)
        lev = 1.0 / len(x) + (x_at - x.mean()) ** 2 / sxx
        df = df_res
        var_b = s2 / sxx if df > 0 else math.inf
        var_a = s2 * lev if df > 0 else math.inf
    se_b, se_a = math.sqrt(var_b), math.sqrt(var_a)
    qp, qf = _q(PASS_CONFIDENCE, df), _q(fail_confidence, df)
    slope, at = float(b.mean()), float(y_at.mean())
    log2_thr = math.log2(threshold)
    if slope - qf * se_b > EPS_SLOPE_HI and at - qf * se_a > log2_thr:
        status = "fail"
    elif slope + qp * se_b <= EPS_SLOPE_HI or at + qp * se_a < log2_thr:
        status = "pass"
    else:
        status = "inconclusive"
    return EpsVerdict(
        horizon=n_at,
        threshold=threshold,
        slope=slope,
        half=qp * se_b,
        half_fail=qf * se_b,
        log2_at=at,
        at_half=qp * se_a,
        at_half_fail=qf * se_a,
        ratio_max=float(2.0 ** np.mean(bulk[-1])),
        df=df,
        status=status,
        tensors=tensors,
        widest=float(sizes[-1]),
    )
