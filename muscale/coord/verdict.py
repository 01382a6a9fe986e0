r"""Slopes of log2(statistic) against log2(size) with intervals, and a three-way verdict.

**Slopes.** For every hooked module and statistic — the level at init :math:`A_0`, the level
:math:`A_t` and the change :math:`D_t` for :math:`t \ge 1` — each seed's slope is the weighted
least-squares fit of :math:`\log_2 S(n)` on :math:`\log_2 n` at each step (weights
:math:`n^{\gamma}`, γ the measured fall of the seed variance with width,
:func:`variance_decay`), averaged over the steps before the training overshot
(:mod:`muscale.coord.overshoot`); the estimate is the mean over seeds. Its uncertainty comes
from the seeds (each width's model is a fresh random draw): the standard error is the seed
spread over :math:`\sqrt{S}`, moderated towards the spread pooled over the same kind of module
and statistic (an empirical-Bayes variance, Smyth 2004, so two seeds give a usable interval; a
kind with one module fills the prior from the same statistic of the other kinds). With one seed
the spread comes from the residuals of the fits over widths.

**Expectations** come from the first-step analysis of TP4/TP5 (Yang & Hu 2021; Yang et al.
2022, Table 3 and §D.1): per kind of module, the width exponent of its level at init and of
its change after an update. Under μP both are 0 (Θ(1)) for every module; the logits and
attention logits have an init exponent −½ when they are not zero-initialised. The level at
:math:`t \ge 1` is :math:`x_0 + \Delta x_t` and lies between the two exponents.

**Bands** = theory ± a finite-width allowance measured on correct models
(``tools/calibrate_coord_check.py``; ``docs/coord_check.md`` has the table). At finite width a
Θ(1) statistic is a coherent Θ(1) part plus an incoherent part that decays like
:math:`n^{-1/2}`, so measured μP slopes sit between −½ and 0 and drift upward by up to ~0.2
(measured); the allowance is 0.3 either way. Attention logits are the extreme case: their
Θ(1) part needs head_dim ≫ the number of keys an update mixes, so at CPU widths they sit at
−0.1..−0.4 with Adam and about −0.9 with SGD in the first steps; theory bounds them from
above by 0, so their upper edge is tight (+0.05) and their lower edge loose.

**Verdict** per module and statistic, against the band ``[lo, hi]``:

* PASS when the 90 % interval lies inside the band (two one-sided tests at 5 %, the
  equivalence test of Schuirmann 1987);
* FAIL when the interval at the family-wise level (Bonferroni over every judged entry, and
  over every look a check may take, so a correct model is FAILED with probability < 5 %
  overall) lies entirely outside it;
* INCONCLUSIVE otherwise; the message says how many seeds (or which widths) would decide,
  and :mod:`muscale.coord.extend` collects them itself within a budget (``extend`` rounds).

**Adam's ε** (width mode, ``expect="mup"``, optimizers with a second moment): the slopes above
cannot see an unscaled ε until it dominates the update, usually far above the checked widths,
so :mod:`muscale.coord.eps_probe` reads ε/√v̂ from the optimizer state and extrapolates it to
a horizon width; its PASS/FAIL/INCONCLUSIVE is one more judged entry (and one more test in
the Bonferroni count).

The run is FAILED if any entry fails, PASSED if every judged entry passes, else
INCONCLUSIVE. Depth mode (slope against log2 depth; TP6, Yang et al. 2023; Bordelon et al.
2023; CompleteP, Dey et al. 2025) uses the same machinery with its own tables.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
from scipy import stats as sps

from muscale.coord import eps_probe, overshoot
from muscale.coord.eps_probe import EpsVerdict
from muscale.coord.overshoot import Overshoot
from muscale.coord.run import CoordData
from muscale.errors import UserError


class Round(Protocol):
    """What a report needs of an extension round (:class:`muscale.coord.extend.Extension`,
    which imports this module, so it is described here rather than imported)."""

    def line(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


STATUSES = ("pass", "fail", "inconclusive")
#: PASS: two one-sided tests at 5 % each (Schuirmann 1987), i.e. the 90 % interval lies
#: inside the band; FAIL: the interval at family-wise 95 % (Bonferroni) lies outside it
PASS_CONFIDENCE = 0.90
FAIL_CONFIDENCE = 0.95
#: most degrees of freedom the pooled seed spread lends an entry (variance moderation); the
#: pool's entries (steps of one module) are correlated, so its nominal df is capped
PRIOR_DF = 10


@dataclass(frozen=True)
class Sig:
    """Width (or depth) exponents of one kind of module and the allowance around them.

    ``init``/``change``: exponent of the level at init and of the change after a step
    (``None``: not judged). ``down``/``up``: how far below/above the exponent a correct
    model's finite-size slope may lie (measured; see the module docstring)."""

    init: float | None
    change: float | None
    down: float = 0.3
    up: float = 0.3
    init_hi: float | None = None  # theory's upper exponent of the init level (default init)
    init_up: float | None = None  # allowance above the init exponent (default: ``up``)


_KINDS = ("embed", "attn_logits", "attn_out", "mlp_out", "residual", "hidden", "logits")


def _mup(attn_down: float) -> dict[str, Sig]:
    flat = {k: Sig(0.0, 0.0) for k in _KINDS}
    # a non-zero readout's init term W0·Δx adds an incoherent n^-1/2 part to the change
    # a random readout's logits are Θ(n^-1/2) at init, a bias or the input term makes them Θ(1)
    # (tied embeddings with init std 1 keep that term dominant: -0.47 Adam, -0.49 SGD), so the lower
    # edge sits 0.2 below the theory floor -1/2
    # the drift is downward; upward it measured <= +0.09, hence the tighter upper edge
    flat["logits"] = Sig(-0.5, 0.0, down=0.7, up=0.15, init_hi=0.0)
    # at init q·k/d is a sum of d independent products: Θ(d^-1/2) (CLT) when head_dim scales
    # (measured -0.44..-0.52, widths 64-512), Θ(1) when the head count scales and head_dim is
    # fixed (measured -0.02..+0.01): the init band spans both, like the readout's; the tight
    # +0.05 applies to the change, which theory bounds from above by 0
    flat["attn_logits"] = Sig(-0.5, 0.0, down=attn_down, up=0.05, init_hi=0.0, init_up=0.1)
    return flat


def _signature(
    embed: float, hidden: float, logits: float, attn: float | None, *, down: float, up: float
) -> dict[str, Sig]:
    """A scheme whose levels start flat and whose changes grow/shrink with the exponents."""
    ch = {
        "embed": embed,
        "attn_logits": attn,
        "attn_out": hidden,
        "mlp_out": hidden,
        "residual": hidden,
        "hidden": hidden,
        "logits": logits,
    }
    return {k: Sig(0.0, v, down=down, up=up) for k, v in ch.items()}


#: (expectation, optimizer family) -> kind -> exponents and allowance
WIDTH_EXPECT: dict[tuple[str, str], dict[str, Sig]] = {
    # attention logits measured -0.1..-0.4 (Adam) and -0.86..-0.93 (SGD) on correct models
    ("mup", "adam"): _mup(attn_down=0.8),
    ("mup", "sgd"): _mup(attn_down=1.3),
    # SP's blow-ups saturate once the (memorised) batch's loss falls: wide allowance below;
    # SP-Adam's first logit change adds W0·Δx with Δx ∝ n, up to n^1.5 (measured +1.5..+1.7)
    ("sp", "adam"): _signature(0.0, 1.0, 1.0, 1.0, down=1.0, up=0.5)
    | {"logits": Sig(0.0, 1.0, down=1.0, up=1.0)},
    ("sp", "sgd"): _signature(-0.5, 0.5, 1.0, None, down=1.0, up=0.5)
    | {"logits": Sig(0.0, 1.0, down=1.0, up=1.0)},
    ("ntk", "adam"): _signature(0.0, 0.0, 0.5, None, down=0.5, up=0.3),
    # NTK-SGD measured: hidden -0.53..-0.73, embedding -0.45, logits -0.2..-0.28
    ("ntk", "sgd"): _signature(-0.5, -0.5, 0.0, None, down=0.5, up=0.3),
}

#: depth-stable rules: finite-depth drift measured up to -0.24 (CompleteP, depths 2-8)
_DEPTH_STABLE = {
    "embed": Sig(0.0, 0.0, down=0.4, up=0.4),
    "residual": Sig(0.0, 0.0, down=0.4, up=0.4),
    "hidden": Sig(0.0, 0.0, down=0.4, up=0.4),
    "logits": Sig(None, 0.0, down=0.4, up=0.4),
    "attn_logits": Sig(None, None),
    "attn_out": Sig(None, None),
    "mlp_out": Sig(None, None),
}
_DEPTH_GROWS = {
    **_DEPTH_STABLE,
    # pre-norm GPT: level ~ sqrt(L), change ~ L; an un-normalised residual MLP grows
    # geometrically in L (measured +0.8 / +1.7 over depths 2-16), so the band is wide
    "residual": Sig(1.0, 1.5, down=0.8, up=0.8),
    "hidden": Sig(1.0, 1.5, down=0.8, up=0.8),
    "logits": Sig(None, None),
}
#: depth-mode expectations, by the claimed branch exponent alpha (both families)
DEPTH_EXPECT: dict[str, dict[str, Sig]] = {
    "alpha=0": _DEPTH_GROWS,
    "alpha=0.5": _DEPTH_STABLE,
    "alpha=1": _DEPTH_STABLE,
}

#: what a scheme's signature means, for the verdict line
DESCRIBE: dict[str, str] = {
    "mup": "width-stable feature learning: every level and change is Θ(1) in width (μP)",
    "ntk": "feature learning vanishes: hidden changes shrink like width^-1/2 (SGD) while "
    "levels stay flat — the kernel (NTK) regime",
    "sp": "unstable: updates grow with width (hidden and logit changes ∝ width^+1/2..+1), "
    "the standard parametrization's blow-up",
    "alpha=0": "depth-unstable: the residual stream grows with depth (no depth rule)",
    "alpha=0.5": "depth-stable residual stream (depth-μP, branch multiplier L^-1/2)",
    "alpha=1": "depth-stable residual stream (CompleteP, branch multiplier L^-1)",
}


@dataclass(kw_only=True)
class Slope:
    """One judged entry: a module's statistic over its steps, with its interval and verdict.

    ``stat``: ``init`` (level at t = 0), ``level`` or ``change`` (t ≥ 1). ``slope``: mean
    over seeds of each seed's slope averaged over ``steps``; ``step_slopes``: the seed-mean
    slope at each step (shown, not judged separately). ``half``/``half_fail``: half-widths
    of the PASS (90 %) and FAIL (family-wise 95 %) intervals; ``lo``/``hi``: the band;
    ``status``: pass, fail, inconclusive, or None (not judged)."""

    module: str
    kind: str
    stat: str  # "init" | "level" | "change"
    steps: list[int]
    slope: float
    step_slopes: list[float] = field(default_factory=list)
    seed_slopes: list[float] = field(default_factory=list)
    se: float = float("nan")
    df: float = 0.0
    gamma: float = 0.0  # the fit's weights n^gamma (:func:`variance_decay`)
    half: float = float("nan")
    half_fail: float = float("nan")
    expected: float | None = None  # point expectation (None when a crossover band or none)
    lo: float | None = None
    hi: float | None = None
    status: str | None = None

    @property
    def ok(self) -> bool | None:
        """True: passed; False: failed; None: inconclusive or not judged."""
        return {"pass": True, "fail": False}.get(self.status or "")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("slope", "se", "half", "half_fail"):
            d[k] = _num(d[k])
        d["step_slopes"] = [_num(v) for v in self.step_slopes]
        d["seed_slopes"] = [_num(v) for v in self.seed_slopes]
        d["range"] = [self.lo, self.hi]
        d["interval"] = [_num(self.slope - self.half), _num(self.slope + self.half)]
        return d


@dataclass(kw_only=True)
class CoordReport:
    """Slopes with intervals, the three-way verdict against ``expect``, the closest
    signature. ``asked``: whether ``expect`` was given (else the plan's own claim)."""

    data: CoordData
    expect: str
    asked: bool
    tol: float | None
    slopes: list[Slope]
    skipped: list[dict[str, Any]]
    signature: str
    distances: dict[str, float]
    notes: list[str] = field(default_factory=list)
    #: the Adam-ε probe (None: not applicable — SGD, depth mode, or expect is not 'mup')
    eps: EpsVerdict | None = None
    #: planned looks (1 + extension rounds) in the FAIL level's Bonferroni count
    looks: int = 1
    #: the extension rounds that collected more data (muscale.coord.extend), in order
    extensions: list[Round] = field(default_factory=list)
    #: the step at which the training overshot and the steps judged (None: all judged)
    overshoot: Overshoot | None = None

    @property
    def failures(self) -> list[Slope]:
        return [s for s in self.slopes if s.status == "fail"]

    @property
    def undecided(self) -> list[Slope]:
        return [s for s in self.slopes if s.status == "inconclusive"]

    @property
    def status(self) -> str:
        """``pass``, ``fail`` or ``inconclusive`` (nothing judged is inconclusive); the ε
        probe counts as one more judged entry."""
        eps = self.eps.status if self.eps is not None else None
        if self.failures or eps == "fail":
            return "fail"
        if (
            self.undecided
            or eps == "inconclusive"
            or not any(s.status == "pass" for s in self.slopes)
        ):
            return "inconclusive"
        return "pass"

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def question(self) -> str:
        """What was asked, in words (the summary must say it)."""
        if self.asked:
            return f"is this model {self.expect!r}? (expect={self.expect})"
        if self.expect == "mup":
            return "is this model 'mup'? (no expect= given: its plan claims 'mup')"
        return (
            f"does the model behave as its own plan claims ({self.expect!r})? — no expect= "
            "given, so this is not a μP check (pass expect=mup for that)"
        )

    def verdict(self, *, extension: bool = True) -> str:
        """One paragraph: what was asked, the answer, what decides it, the closest signature
        (and, with ``extension``, the sentence saying what the extension rounds added)."""
        d = self.data
        word = {"pass": "PASSED", "fail": "FAILED", "inconclusive": "INCONCLUSIVE"}[self.status]
        lines = [
            f"{word}: coordinate check over {d.axis}s {d.sizes} ({d.seeds} seed(s), "
            f"{d.steps} step(s)) — asked: {self.question()}."
        ]
        if self.failures:
            lines.append("Clearly off the expectation: " + offenders(self.failures) + ".")
        elif self.status == "inconclusive" and self.undecided:
            lines.append(
                "Inconclusive: add seeds or widths. Undecided: "
                + offenders(self.undecided)
                + ". "
                + self.advice()
            )
        if self.extensions and extension:
            lines.append(extension_line(self.extensions, self.status) + ".")
        if self.eps is not None and (self.eps.status != "pass" or self.eps.growing()):
            lines.append(self.eps.message())
        # on a failure the slopes may still be closest to the expected scheme (an ε-probe
        # failure, or one module off): name the closest signature without calling it a match
        lead = "Measured slopes match" if self.status == "pass" else "Closest to"
        lines.append(f"{lead} the {self.signature!r} signature: {DESCRIBE[self.signature]}.")
        return " ".join(lines + self.notes)

    def advice(self) -> str:
        """Which seeds, widths or steps would decide the undecided entries."""
        return advice(self.undecided, self.data, overshot=self.overshoot is not None)

    def to_json(self) -> dict[str, Any]:
        d = self.data
        return {
            "status": self.status,
            "passed": self.passed,
            "asked": self.asked,
            "question": self.question(),
            "slopes": [s.to_json() for s in self.slopes],
            "failures": [s.to_json() for s in self.failures],
            "inconclusive": [s.to_json() for s in self.undecided],
            "expect": self.expect,
            "tol": self.tol,
            "signature": self.signature,
            "signature_distance": {k: _num(v) for k, v in self.distances.items()},
            "verdict": self.verdict(),
            "skipped": self.skipped,
            "eps_probe": self.eps.to_json() if self.eps is not None else None,
            "overshoot": self.overshoot.to_json() if self.overshoot is not None else None,
            "extension": {
                "looks": self.looks,
                "rounds": [e.to_json() for e in self.extensions],
                "summary": extension_line(self.extensions, self.status) or None,
            },
            "axis": d.axis,
            "sizes": d.sizes,
            "steps": d.steps,
            "seeds": d.seeds,
            "scheme": d.scheme,
            "family": d.family,
            "depth_alpha": d.depth_alpha,
            "wall_s": round(d.wall_s, 3),
            "points": [{"module": p.label, "name": p.name, "kind": p.kind} for p in d.points],
            "level": d.level.mean(axis=1).tolist(),
            "change": d.change.mean(axis=1).tolist(),
        }


def extension_line(rounds: list[Round], status: str) -> str:
    """One sentence for the rounds that added data, e.g. ``Extended: inconclusive at widths
    64-512 on hidden change; added width 1024 -> PASSED`` ("" when none ran)."""
    if not rounds:
        return ""
    word = {"pass": "PASSED", "fail": "FAILED", "inconclusive": "still INCONCLUSIVE"}[status]
    return "Extended: " + "; then ".join(r.line() for r in rounds) + f" → {word}"


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def _fmt(x: float) -> str:
    return f"{x:+.3g}" if math.isfinite(x) else "nan"


def offenders(entries: list[Slope], limit: int = 8) -> str:
    """``module (kind) stat slope ±half over steps (band [lo, hi])``."""
    parts = []
    for w in entries[:limit]:
        steps = ",".join(str(t) for t in w.steps)
        parts.append(
            f"{w.module} ({w.kind}) {w.stat} slope {_fmt(w.slope)} ±{w.half:.2g} over steps "
            f"{steps} (band [{w.lo:+.2g}, {w.hi:+.2g}])"
        )
    more = len(entries) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _outside(s: Slope) -> float:
    if s.lo is None or s.hi is None or not math.isfinite(s.slope):
        return math.inf
    return max(s.lo - s.slope, s.slope - s.hi)


def needs(entries: list[Slope], data: CoordData) -> tuple[int, int]:
    """(seeds, octaves): the seeds (same widths) or the doublings of the widest width (same
    seeds) that would shrink every undecided interval below its distance to the nearer band
    edge, with the present estimates (octaves: at most 6; 0 when no entry says)."""
    seeds_needed, octaves_needed = data.seeds, 0
    x = np.log2(np.asarray(data.sizes, float))

    def spread(xs: np.ndarray, g: float) -> float:
        """Σ w (x − x̄_w)², w = n^γ: the slope's variance goes like its inverse (Aitken)."""
        w = np.exp2(g * xs)
        return float(w @ (xs - (w @ xs) / w.sum()) ** 2)

    for s in entries:
        if not math.isfinite(s.se):  # no spread estimate (one seed over two widths)
            seeds_needed = max(seeds_needed, 3)
            continue
        if s.lo is None or s.hi is None or s.se <= 0:
            continue
        inside = s.lo <= s.slope <= s.hi
        gap = min(abs(s.slope - s.lo), abs(s.slope - s.hi))
        if gap <= 1e-3:
            continue
        # to PASS the 90 % interval must shrink below the gap, to FAIL the family-wise one;
        # the half-width goes like 1/sqrt(seeds) and like 1/sqrt(Sxx) of the log2 widths
        # (weighted by n^γ as the slopes are, :func:`variance_decay`)
        need = (s.half if inside else s.half_fail) / gap
        seeds_needed = max(seeds_needed, data.seeds + 1, math.ceil(data.seeds * need**2))
        k, xs, sxx = 0, list(x), spread(x, s.gamma)
        while k < 6:
            k += 1
            xs.append(xs[-1] + 1.0)
            if need * math.sqrt(sxx / spread(np.asarray(xs), s.gamma)) < 1.0:
                break
        octaves_needed = max(octaves_needed, k)
    return seeds_needed, octaves_needed


def advice(entries: list[Slope], data: CoordData, *, overshot: bool = False) -> str:
    """Seeds (same widths) or widths (same seeds) that would shrink every undecided
    interval below its distance to the nearer band edge; steps help only when the
    statistic exists at one step."""
    if not entries:
        return ""
    seeds_needed, octaves_needed = needs(entries, data)
    name = "widths" if data.axis == "width" else "depths"
    if seeds_needed > 32:
        parts = [f"more than 32 seeds (same {name})"]
    else:
        parts = [f"seeds={seeds_needed} (same {name})"]
    if 0 < octaves_needed <= 3:
        parts.append(f"{name} up to {data.sizes[-1] * 2**octaves_needed} (same seeds)")
    elif octaves_needed > 3:
        parts.append(f"{name} beyond {data.sizes[-1] * 8} (same seeds)")
    one_step = [s for s in entries if s.stat != "init" and len(s.steps) <= 1]
    if overshot:  # later steps are not judged: a smaller LR, not more steps, adds them
        parts.append("a smaller LR (the training overshoots after the judged steps)")
    elif one_step:
        parts.append(f"steps={data.steps + 2} (some changes exist at one step only)")
    span = data.sizes[-1] / data.sizes[0]
    tail = f" The widths span only {span:g}x; 4x or more is needed." if span < 4 else ""
    return "With the present estimates, would decide: " + ", or ".join(parts) + "." + tail


def expectation_name(data: CoordData, expect: str | None) -> str:
    """The table a run is judged against: ``expect`` or what the run claims (its plan)."""
    if data.axis == "depth":
        if expect is None:
            if data.depth_alpha is None:
                raise UserError(
                    "depth mode: pass expect='alpha=0'|'alpha=0.5'|'alpha=1' "
                    "(the models came without a plan)"
                )
            expect = f"alpha={data.depth_alpha:g}"
        if expect not in DEPTH_EXPECT:
            raise UserError(
                f"expect={expect!r} is not allowed in depth mode: choose one of "
                f"{', '.join(DEPTH_EXPECT)}"
            )
        return expect
    if expect is None:
        if data.scheme is None:
            raise UserError("pass expect='mup'|'sp'|'ntk' (the models came without a plan)")
        expect = data.scheme
    if (expect, data.family) not in WIDTH_EXPECT:
        raise UserError(f"expect={expect!r} is not allowed: choose one of mup, sp, ntk")
    return expect


def table_for(name: str, axis: str, family: str) -> dict[str, Sig]:
    return DEPTH_EXPECT[name] if axis == "depth" else WIDTH_EXPECT[(name, family)]


def band(
    sig: Sig, stat: str, step: int, tol: float | None = None
) -> tuple[float | None, float, float] | None:
    """(point expectation or None, lo, hi) for one statistic; None when not judged.
    ``tol`` replaces both allowances."""
    down, up = (sig.down, sig.up) if tol is None else (tol, tol)
    if stat == "change":
        if sig.change is None:
            return None
        return sig.change, sig.change - down, sig.change + up
    if sig.init is None:
        return None
    top = sig.init if sig.init_hi is None else sig.init_hi
    if step == 0 or sig.change is None or sig.change == sig.init:
        up0 = up if (sig.init_up is None or tol is not None) else sig.init_up
        return (sig.init if top == sig.init else None), sig.init - down, top + up0
    # x_t = x_0 + Δx_t: the level crosses over between the two exponents
    lo, hi = min(sig.init, sig.change), max(top, sig.change)
    return None, lo - down, hi + up


def _ols(
    x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Slopes of every column of ``y`` (sizes, k) on ``x`` (weighted least squares with
    weights ``w``, default equal) and their residual variances."""
    w = np.full(len(x), 1.0 / len(x)) if w is None else w / w.sum()
    xc = x - w @ x
    sxx = float(w @ (xc * xc))
    yc = y - w @ y
    b = (w * xc) @ yc / sxx
    resid = yc - np.outer(xc, b)
    dof = len(x) - 2
    var = (w @ resid**2) / dof / sxx if dof > 0 else np.full(b.shape, np.nan)
    return b, var


#: most and least the seed variance of a log-statistic may fall per doubling of the size, as
#: the exponent γ of var ∝ n^-γ: a mean over n coordinates falls at most like 1/n (CLT); 0 is
#: no fall (a fixed-size readout, or depth)
GAMMA_RANGE = (0.0, 1.0)


def variance_decay(data: CoordData) -> dict[str, float]:
    r"""Per statistic (``init``/``level``/``change``): γ in var(log2 S(n)) ∝ n^-γ, pooled
    over modules and steps from the seed spread at each size (needs ≥ 2 seeds; else 0).

    **Why weighted slopes.** Each size's model is a fresh draw whose statistics fluctuate
    around the infinite-width value with variance :math:`\propto n^{-1}` (a mean over n
    coordinates; :math:`\propto L/n` through depth L, Hanin & Nica 2020): measured γ 0.8–0.9
    on the depth-8 μP MLP at widths 128–8192. Ordinary least squares weighs the noisy
    narrowest width like the widest, so its slope's seed spread is dominated by the narrow
    end; weights :math:`\propto n^{\gamma}` (Aitken's generalised least squares, the
    minimum-variance linear estimator under that variance) remove most of it, and they also
    weigh less the narrow widths where the finite-width bias (relative :math:`n^{-1/2}`) is
    largest. The interval still comes from the spread of the per-seed slopes, whatever the
    weights. γ is estimated per statistic as minus the mean slope of log2(seed variance) on
    log2(n) over every module and step, clipped to :data:`GAMMA_RANGE`."""
    if data.seeds < 2 or len(data.sizes) < 3:
        return {name: 0.0 for name, _, _ in _groups(data.steps)}
    x = np.log2(np.asarray(data.sizes, dtype=float))
    out = {}
    for name, stat, steps in _groups(data.steps):
        arr = data.level if stat == "level" else data.change
        slopes = []
        for j in range(len(data.points)):
            for t in steps:
                y = arr[:, :, j, t]
                if not np.all(np.isfinite(y)) or np.any(y <= 0.0):
                    continue
                v = np.var(np.log2(y), axis=1, ddof=1)
                if np.all(v > 0.0):
                    slopes.append(float(np.polyfit(x, np.log2(v), 1)[0]))
        g = -float(np.mean(slopes)) if slopes else 0.0
        out[name] = float(np.clip(g, *GAMMA_RANGE))
    return out


@dataclass
class _Entry:
    j: int
    stat: str  # "init" | "level" | "change"
    steps: list[int]
    step_b: np.ndarray  # (steps, seeds) per-seed slopes at each step
    se2: float  # squared standard error of the mean slope (nan: none)
    df: float
    gamma: float  # the fit's weights n^gamma


#: statistic groups: (name, recorded statistic, steps it covers)
def _groups(steps: int) -> list[tuple[str, str, list[int]]]:
    return [
        ("init", "level", [0]),
        ("level", "level", list(range(1, steps + 1))),
        ("change", "change", list(range(1, steps + 1))),
    ]


def _entries(data: CoordData) -> tuple[list[_Entry], list[dict[str, Any]]]:
    """Per module and statistic: per-seed slopes at every usable step, and the standard
    error of their step-average from the seeds (one seed: from the fits' residuals)."""
    x = np.log2(np.asarray(data.sizes, dtype=float))
    gamma = variance_decay(data) if data.axis == "width" else {}
    out: list[_Entry] = []
    skipped: list[dict[str, Any]] = []
    for j, p in enumerate(data.points):
        for name, stat, steps in _groups(data.steps):
            w = np.exp2(gamma.get(name, 0.0) * x)
            arr = data.level if stat == "level" else data.change
            used, bs, vs = [], [], []
            for t in steps:
                y = arr[:, :, j, t]  # (sizes, seeds)
                why = None
                if np.all(y == 0.0):
                    why = "identically 0 at every size (zero init)"
                elif np.all(np.isfinite(y)) and np.any(y <= 0.0):
                    why = "0 at some sizes or seeds but not all"
                if why:
                    skipped.append({"module": p.label, "step": t, "stat": stat, "reason": why})
                    continue
                if not np.all(np.isfinite(y)):
                    b, var = np.full(y.shape[1], np.nan), np.full(y.shape[1], np.nan)
                else:
                    b, var = _ols(x, np.log2(y), w)
                used.append(t)
                bs.append(b)
                vs.append(var)
            if not used:
                continue
            step_b = np.asarray(bs)  # (steps, seeds)
            v = step_b.mean(axis=0)  # each seed's slope averaged over the steps
            s = len(v)
            if not np.all(np.isfinite(v)):
                se2, df = float("nan"), 0.0
            elif s >= 2:
                se2, df = float(np.var(v, ddof=1)) / s, float(s - 1)
            else:  # one seed: the residual scatter over widths (each width is a fresh draw)
                se2, df = float(np.mean(vs)), float(len(x) - 2)
            if not math.isfinite(se2):
                df = 0.0
            out.append(_Entry(j, name, used, step_b, se2, df, gamma.get(name, 0.0)))
    return out, skipped


def _moderate(entries: list[_Entry], data: CoordData) -> list[tuple[float, float]]:
    """(se, df) per entry: its own seed spread shrunk towards a pooled spread (Smyth 2004's
    moderated variance; the prior lends at most ``PRIOR_DF`` degrees of freedom).

    The prior is the spread pooled over the same kind of module and statistic. A kind with
    one module (the readout, the embedding) pools only with itself, so at two seeds its
    interval had ~2 df (t quantile 2.9): there the rest of the prior's ``PRIOR_DF`` comes
    from the spread pooled over every module's same statistic. Pooling over all kinds for
    every entry was tried and rejected: a quiet readout then inherits the hidden layers'
    spread even when it has its own."""
    kind_pool: dict[tuple[str, str], tuple[float, float]] = {}
    stat_pool: dict[str, tuple[float, float]] = {}
    for e in entries:
        if e.df > 0:
            key = (data.points[e.j].kind, e.stat)
            num, den = kind_pool.get(key, (0.0, 0.0))
            kind_pool[key] = (num + e.df * e.se2, den + e.df)
            num, den = stat_pool.get(e.stat, (0.0, 0.0))
            stat_pool[e.stat] = (num + e.df * e.se2, den + e.df)
    out = []
    for e in entries:
        num_k, den_k = kind_pool.get((data.points[e.j].kind, e.stat), (0.0, 0.0))
        num_s, den_s = stat_pool.get(e.stat, (0.0, 0.0))
        w_k = min(float(PRIOR_DF), den_k)
        w_s = min(float(PRIOR_DF) - w_k, den_s - den_k)  # the other kinds fill the rest
        if w_k + w_s <= 0.0:
            out.append((float("nan"), 0.0))
            continue
        prior = (w_k * (num_k / den_k if den_k else 0.0)) + (
            w_s * ((num_s - num_k) / (den_s - den_k)) if w_s > 0 else 0.0
        )
        prior_df = w_k + w_s
        own = e.se2 if e.df > 0 else 0.0
        se2 = (e.df * own + prior) / (e.df + prior_df)
        out.append((math.sqrt(se2), e.df + prior_df))
    return out


def fit_slopes(data: CoordData) -> tuple[list[Slope], list[dict[str, Any]]]:
    """Slopes with standard errors per module and statistic (not judged, see :func:`judge`);
    skips statistics that cannot be logged."""
    entries, skipped = _entries(data)
    slopes = []
    for e, (se, df) in zip(entries, _moderate(entries, data), strict=True):
        p = data.points[e.j]
        per_seed = e.step_b.mean(axis=0)
        slopes.append(
            Slope(
                module=p.label,
                kind=p.kind,
                stat=e.stat,
                steps=e.steps,
                slope=float(np.mean(per_seed)),
                step_slopes=[float(v) for v in e.step_b.mean(axis=1)],
                seed_slopes=[float(v) for v in per_seed],
                se=se,
                df=df,
                gamma=e.gamma,
            )
        )
    return slopes, skipped


def _quantile(conf: float, df: float) -> float:
    q = 0.5 + conf / 2
    return float(sps.t.ppf(q, df)) if df > 0 else math.inf


def _band_of(sig: Sig, s: Slope, tol: float | None) -> tuple[float | None, float, float] | None:
    if s.stat == "init":
        return band(sig, "level", 0, tol)
    return band(sig, s.stat, 1, tol)


def judge(
    slopes: list[Slope],
    table: dict[str, Sig],
    tol: float | None = None,
    *,
    n_extra: int = 0,
    looks: int = 1,
) -> list[Slope]:
    """Copies of ``slopes`` with band, intervals and status against ``table``; ``n_extra``:
    other tests of the same run (the ε probe) in the Bonferroni count; ``looks``: how many
    times the check may judge growing data (1 + the extension rounds,
    :mod:`muscale.coord.extend`), also in the Bonferroni count."""
    out = []
    bands = [_band_of(table[s.kind], s, tol) for s in slopes]
    n_judged = max(1, sum(b is not None for b in bands) + n_extra) * max(1, looks)
    fail_conf = 1.0 - (1.0 - FAIL_CONFIDENCE) / n_judged  # Bonferroni
    for s, b in zip(slopes, bands, strict=True):
        d = asdict(s)
        if b is None:
            out.append(Slope(**{**d, "expected": None, "lo": None, "hi": None, "status": None}))
            continue
        want, lo, hi = b
        finite = math.isfinite(s.se)
        half = _quantile(PASS_CONFIDENCE, s.df) * s.se if finite else math.inf
        half_fail = _quantile(fail_conf, s.df) * s.se if finite else math.inf
        if not math.isfinite(s.slope):
            status = "fail"  # a run diverged
        elif lo <= s.slope - half and s.slope + half <= hi:
            status = "pass"
        elif s.slope - half_fail > hi or s.slope + half_fail < lo:
            status = "fail"
        else:
            status = "inconclusive"
        d.update(expected=want, lo=lo, hi=hi, half=half, half_fail=half_fail, status=status)
        out.append(Slope(**d))
    return out


def distance(slopes: list[Slope], table: dict[str, Sig]) -> float:
    """RMS distance of the measured slopes to a table's bands (judged entries only)."""
    errs = []
    for s in slopes:
        b = _band_of(table[s.kind], s, 0.0)
        if b is None or not math.isfinite(s.slope):
            continue
        _, lo, hi = b
        errs.append(0.0 if lo <= s.slope <= hi else min(abs(s.slope - lo), abs(s.slope - hi)))
    return float(np.sqrt(np.mean(np.square(errs)))) if errs else float("inf")


#: smallest change/level ratio that bfloat16 resolves well (its rounding is ~0.4 % of |x|)
BF16_MIN_RATIO = 0.05


def bf16_note(data: CoordData) -> str:
    """What bf16 autocast means for this run: changes below ~5 % of the level are close to
    bf16's rounding (2^-8 relative), which flattens slopes that should fall (a false PASS
    risk, never a false FAIL); say so when that happens."""
    lv, ch = data.level[..., 1:], data.change[..., 1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(lv > 0, ch / lv, np.inf)
    small = np.nanmin(np.where(ch > 0, ratio, np.inf)) if ch.size else np.inf
    if small < BF16_MIN_RATIO:
        return (
            f"Ran in bf16: some changes are only {small:.2g} of their level, near bf16 "
            "rounding; rerun with precision=fp32 before trusting a PASS."
        )
    return "Ran in bf16 (every change is >= 5 % of its level, well above bf16 rounding)."


def _width(value: Any) -> float:
    """``eps_horizon`` as a float, or a :class:`UserError` naming the field."""
    bad = UserError(f"eps_horizon={value!r}: must be a width (a finite number > 0)")
    if isinstance(value, (bool, str)):
        raise bad
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise bad from None
    if not (math.isfinite(out) and out > 0):
        raise bad
    return out


def probe_eps(
    data: CoordData, expect: str, horizon: float | None, n_tests: int
) -> EpsVerdict | None:
    """The Adam-ε probe of a μP width check (None where it does not apply: depth mode, an
    expectation other than 'mup', an optimizer without a second moment, or data collected
    without the probe)."""
    eps_data = data.meta.get("eps")
    if data.axis != "width" or expect != "mup" or eps_data is None:
        return None
    conf = 1.0 - (1.0 - FAIL_CONFIDENCE) / max(1, n_tests)  # Bonferroni, as in judge()
    return eps_probe.judge(
        eps_data,
        data.sizes,
        horizon=eps_probe.EPS_HORIZON if horizon is None else horizon,
        fail_confidence=conf,
    )


def report(
    data: CoordData,
    *,
    expect: str | None = None,
    tol: float | None = None,
    eps_horizon: float | None = None,
    looks: int = 1,
) -> CoordReport:
    """Fit, judge against ``expect`` (default: the scheme/alpha the run's plan claims) and
    find the closest signature. ``tol`` replaces the calibrated allowances of every band
    (default: the tables' own, see :data:`WIDTH_EXPECT`). ``eps_horizon``: the width the
    Adam-ε probe extrapolates to (default :data:`muscale.coord.eps_probe.EPS_HORIZON`).
    ``looks``: the most times this check judges (1 + its extension rounds): the FAIL level
    is family-wise over every entry of every look (Bonferroni), so a correct model is FAILED
    with probability < 5 % however many of the looks happen."""
    name = expectation_name(data, expect)
    if tol is not None:
        tol = float(tol)
        if not tol >= 0:
            raise UserError(f"tol={tol!r}: must be >= 0")
    if eps_horizon is not None:
        eps_horizon = _width(eps_horizon)
    over = overshoot.find(data)
    raw, skipped = fit_slopes(overshoot.truncate(data, over.judged) if over else data)
    table = table_for(name, data.axis, data.family)
    n_judged = sum(_band_of(table[s.kind], s, tol) is not None for s in raw)
    eps = probe_eps(data, name, eps_horizon, (n_judged + 1) * looks)
    judged = judge(raw, table, tol, n_extra=int(eps is not None), looks=looks)
    names = list(DEPTH_EXPECT) if data.axis == "depth" else ["mup", "ntk", "sp"]
    dists = {n: distance(raw, table_for(n, data.axis, data.family)) for n in names}
    signature = min(dists, key=lambda n: dists[n])
    notes = []
    if skipped:
        notes.append(
            f"Skipped {len(skipped)} statistic(s) that are identically 0 "
            "(zero-initialised readout/query at t = 0, or no update reached them yet)."
        )
    if any(not math.isfinite(s.slope) for s in raw):
        notes.append("Some statistics are not finite: a run diverged.")
    if over is not None:
        notes.append(over.note(data.axis))
    if data.meta.get("precision") == "bf16":
        notes.append(bf16_note(data))
    return CoordReport(
        data=data,
        expect=name,
        asked=expect is not None,
        tol=tol,
        slopes=judged,
        skipped=skipped,
        signature=signature,
        distances=dists,
        notes=notes,
        eps=eps,
        looks=looks,
        overshoot=over,
    )
