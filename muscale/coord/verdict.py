r"""Slopes of log2(statistic) against log2(size), and verdicts against each scheme's table.

For every hooked module, step ``t`` and statistic (level ``A_t``, change ``D_t``), the slope
is the least-squares fit of :math:`\log_2 \bar S(n)` on :math:`\log_2 n`, where
:math:`\bar S` is the statistic averaged over seeds *before* the log (the design doc).

Expected slopes come from the first-step analysis of TP4/TP5 (Yang & Hu 2021; Yang et al.
2022, Table 3 and §D.1): a scheme is summarised, per kind of module, by the width exponent of
its level at init and of its change after an update. The level at ``t ≥ 1`` is
:math:`x_0 + \Delta x_t`, so its slope lies between the init exponent and the change
exponent (it equals the init exponent when the change is the smaller of the two).

* μP (Adam and SGD): every level and change is Θ(1) — slope 0. The only non-flat μP slopes
  are the init levels of the logits and attention logits (Θ(n^-1/2) when they are not
  zero-initialised; with muscale's default zero init they are identically 0 and skipped).
* SP: Adam's normalised update moves every hidden layer by η·n (change slope +1, logits
  too); SGD's moves hidden features by n^+1/2, logits by n^+1 and embeddings by n^-1/2
  (TP4 §5, the instability of SP at a fixed LR).
* NTK (muscale's folded form: LR/m on fan-in layers): with SGD, feature updates vanish like
  n^-1/2 (embedding, hidden, branches) while the logits move Θ(1) — the kernel regime in
  which feature learning vanishes (TP4 Thm. 5.4). With Adam the folded NTK behaves like SP
  with per-layer LRs (Everett et al. 2024): features move Θ(1), logits grow like n^+1/2.

Depth mode (slope against log2 depth at fixed width; TP6, Yang et al. 2023; Bordelon et al.
2023): with a branch multiplier L^-alpha, alpha in {1/2, 1}, and the matching LR rule the
residual stream's level and change are Θ(1) in depth; with alpha = 0 (no depth rule) the
stream's level grows like L^1/2 at init and a step moves it by Θ(L).

Finite-size bias measured on small models is up to ±0.1 (the design doc), and slopes of
wrong parametrizations differ by multiples of 1/2, so μP passes within ±0.2 (``TOL``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from muscale.coord.run import CoordData
from muscale.errors import UserError


@dataclass(frozen=True)
class Sig:
    """Width (or depth) exponents of one kind of module: level at init, change after steps.

    ``None``: no expectation (reported, not judged). ``below`` widens the change's band
    downwards (a finite-size allowance, see μP's attention logits)."""

    init: float | None
    change: float | None
    below: float = 0.0


def _table(
    init: float,
    change: dict[str, float | None],
    *,
    init_over: dict | None = None,
    below: float = 0.0,
) -> dict[str, Sig]:
    inits = {k: init for k in change} | (init_over or {})
    return {k: Sig(inits[k], v, below=below if (v or 0) > 0 else 0.0) for k, v in change.items()}


_FLAT = dict.fromkeys(
    ("embed", "attn_logits", "attn_out", "mlp_out", "residual", "hidden", "logits"), 0.0
)
_MUP = _table(0.0, _FLAT, init_over={"logits": -0.5, "attn_logits": -0.5})
#: μP attention logits q·k/d are Θ(1) after training only once head_dim ≫ the number of keys
#: a query's update mixes; below that their incoherent n^-1/2 part still shows (measured
#: -0.12..-0.28 with Adam, about -0.8 with SGD, at widths 64-512 and 16-32 tokens). The lower
#: edge is therefore loose (-0.5 Adam, -1.0 SGD); the broken 1/sqrt(d) scale adds +1/2 and is
#: caught by the upper edge.
_MUP_ADAM = {**_MUP, "attn_logits": Sig(-0.5, 0.0, below=0.3)}
_MUP_SGD = {**_MUP, "attn_logits": Sig(-0.5, 0.0, below=0.8)}


def _hidden(embed: float, hidden: float, logits: float, attn: float | None) -> dict:
    return {
        "embed": embed,
        "attn_logits": attn,
        "attn_out": hidden,
        "mlp_out": hidden,
        "residual": hidden,
        "hidden": hidden,
        "logits": logits,
    }


#: (expectation name, optimizer family) -> kind -> exponents
WIDTH_EXPECT: dict[tuple[str, str], dict[str, Sig]] = {
    ("mup", "adam"): _MUP_ADAM,
    ("mup", "sgd"): _MUP_SGD,
    # SP's blow-ups saturate once the (memorised) batch's loss falls: growth allowance 1/2
    ("sp", "adam"): _table(0.0, _hidden(0.0, 1.0, 1.0, 1.0), below=0.5),
    ("sp", "sgd"): _table(0.0, _hidden(-0.5, 0.5, 1.0, None), below=0.5),
    ("ntk", "adam"): _table(0.0, _hidden(0.0, 0.0, 0.5, None)),
    ("ntk", "sgd"): _table(0.0, _hidden(-0.5, -0.5, 0.0, None)),
}

_DEPTH_STABLE = {
    "embed": Sig(0.0, 0.0),
    "residual": Sig(0.0, 0.0),
    "hidden": Sig(0.0, 0.0),
    "logits": Sig(None, 0.0),
    "attn_logits": Sig(None, None),
    "attn_out": Sig(None, None),
    "mlp_out": Sig(None, None),
}
_DEPTH_GROWS = {
    **_DEPTH_STABLE,
    # pre-norm GPT: level ~ sqrt(L), change ~ L; an un-normalised residual MLP grows
    # geometrically in L (measured +1.3 / +1.7 over depths 2-16), so the band is wide
    "residual": Sig(1.0, 1.5),
    "hidden": Sig(1.0, 1.5),
    "logits": Sig(None, None),
}
#: depth-mode expectations, by the claimed branch exponent alpha (both families)
DEPTH_EXPECT: dict[str, dict[str, Sig]] = {
    "alpha=0": _DEPTH_GROWS,
    "alpha=0.5": _DEPTH_STABLE,
    "alpha=1": _DEPTH_STABLE,
}

#: slope tolerance per expectation: μP's from the design doc; SP/NTK/alpha=0 describe
#: blow-ups whose measured slopes saturate as the loss falls, so their bands are wider; the
#: depth rules at depths 2-16 show finite-depth drift up to ±0.25 (measured, residual MLP)
TOL: dict[str, float] = {
    "mup": 0.2,
    "ntk": 0.3,
    "sp": 0.5,
    "alpha=0": 0.8,
    "alpha=0.5": 0.3,
    "alpha=1": 0.3,
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
    module: str
    kind: str
    step: int
    stat: str  # "level" | "change"
    slope: float
    expected: float | None = None  # point expectation (None when a band or none)
    lo: float | None = None  # allowed band, tolerance included
    hi: float | None = None
    ok: bool | None = None  # None: not judged

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["slope"] = _num(self.slope)
        return d


@dataclass(kw_only=True)
class CoordReport:
    """Slopes, the verdict against ``expect`` and the best-matching signature."""

    data: CoordData
    expect: str
    tol: float
    slopes: list[Slope]
    skipped: list[dict[str, Any]]
    signature: str
    distances: dict[str, float]
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[Slope]:
        return [s for s in self.slopes if s.ok is False]

    @property
    def passed(self) -> bool:
        return not self.failures and any(s.ok for s in self.slopes)

    def verdict(self) -> str:
        """One paragraph: pass/fail against the claim, what fails, which signature fits."""
        head = (
            f"{'PASSED' if self.passed else 'FAILED'}: coordinate check over {self.data.axis}s "
            f"{self.data.sizes} against the {self.expect!r} expectation (±{self.tol:g})."
        )
        lines = [head]
        if self.failures:
            lines.append("Off the expectation: " + offenders(self.failures) + ".")
        lines.append(
            f"Measured slopes match the {self.signature!r} signature: {DESCRIBE[self.signature]}."
        )
        return " ".join(lines + self.notes)

    def to_json(self) -> dict[str, Any]:
        d = self.data
        return {
            "passed": self.passed,
            "slopes": [
                {
                    "module": s.module,
                    "step": s.step,
                    "stat": s.stat,
                    "slope": _num(s.slope),
                    "kind": s.kind,
                    "expected": s.expected,
                    "range": [s.lo, s.hi],
                    "ok": s.ok,
                }
                for s in self.slopes
            ],
            "failures": [s.to_json() for s in self.failures],
            "expect": self.expect,
            "tol": self.tol,
            "signature": self.signature,
            "signature_distance": {k: _num(v) for k, v in self.distances.items()},
            "verdict": self.verdict(),
            "skipped": self.skipped,
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


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 4)


def offenders(failures: list[Slope], limit: int = 12) -> str:
    """``module (kind) stat slope at steps [..]``, grouped per module and statistic."""
    groups: dict[tuple[str, str, str], list[Slope]] = {}
    for s in failures:
        groups.setdefault((s.module, s.kind, s.stat), []).append(s)
    parts = []
    for (mod, kind, stat), ss in list(groups.items())[:limit]:
        steps = ",".join(str(s.step) for s in ss)
        vals = ",".join(f"{s.slope:+.2f}" if math.isfinite(s.slope) else "nan" for s in ss)
        want = ss[0].expected
        want_s = f"{want:+.1f}" if want is not None else f"[{ss[0].lo:+.1f},{ss[0].hi:+.1f}]"
        parts.append(f"{mod} ({kind}) {stat} slope {vals} at step {steps} (want {want_s})")
    more = len(groups) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


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


def band(sig: Sig, stat: str, step: int, tol: float) -> tuple[float | None, float, float] | None:
    """(point expectation or None, lo, hi) for one statistic; None when not judged."""
    if stat == "change":
        if sig.change is None:
            return None
        return sig.change, sig.change - tol - sig.below, sig.change + tol
    if sig.init is None:
        return None
    if step == 0 or sig.change is None or sig.change <= sig.init:
        return sig.init, sig.init - tol, sig.init + tol
    # x_t = x_0 + Δx_t with a faster-growing change: the level crosses over between them
    return None, min(sig.init, sig.change - sig.below) - tol, sig.change + tol


def fit_slopes(data: CoordData) -> tuple[list[Slope], list[dict[str, Any]]]:
    """Seed-averaged least-squares slopes; skips statistics that cannot be logged."""
    level, change = data.mean_over_seeds()
    x = np.log2(np.asarray(data.sizes, dtype=float))
    slopes: list[Slope] = []
    skipped: list[dict[str, Any]] = []
    for j, p in enumerate(data.points):
        for t in range(data.steps + 1):
            for stat, arr in (("level", level), ("change", change)):
                if stat == "change" and t == 0:
                    continue  # D_0 = 0 by definition
                y = arr[:, j, t]
                if np.all(y == 0.0):
                    skipped.append(
                        {
                            "module": p.label,
                            "step": t,
                            "stat": stat,
                            "reason": "identically 0 at every size (zero init)",
                        }
                    )
                    continue
                if not np.all(np.isfinite(y)):
                    slope = float("nan")
                elif np.any(y <= 0.0):
                    skipped.append(
                        {
                            "module": p.label,
                            "step": t,
                            "stat": stat,
                            "reason": "0 at some sizes but not all",
                        }
                    )
                    continue
                else:
                    slope = float(np.polyfit(x, np.log2(y), 1)[0])
                slopes.append(Slope(module=p.label, kind=p.kind, step=t, stat=stat, slope=slope))
    return slopes, skipped


def judge(slopes: list[Slope], table: dict[str, Sig], tol: float) -> list[Slope]:
    """Copies of ``slopes`` with ``expected``/``lo``/``hi``/``ok`` against ``table``."""
    out = []
    for s in slopes:
        b = band(table[s.kind], s.stat, s.step, tol)
        if b is None:
            out.append(Slope(**{**asdict(s), "expected": None, "lo": None, "hi": None, "ok": None}))
            continue
        want, lo, hi = b
        ok = bool(math.isfinite(s.slope) and lo <= s.slope <= hi)
        out.append(Slope(**{**asdict(s), "expected": want, "lo": lo, "hi": hi, "ok": ok}))
    return out


def distance(slopes: list[Slope], table: dict[str, Sig]) -> float:
    """RMS distance of the measured slopes to a table's band centres (judged entries only)."""
    errs = []
    for s in slopes:
        b = band(table[s.kind], s.stat, s.step, 0.0)
        if b is None or not math.isfinite(s.slope):
            continue
        _, lo, hi = b
        errs.append(0.0 if lo <= s.slope <= hi else min(abs(s.slope - lo), abs(s.slope - hi)))
    return float(np.sqrt(np.mean(np.square(errs)))) if errs else float("inf")


def report(data: CoordData, *, expect: str | None = None, tol: float | None = None) -> CoordReport:
    """Fit, judge against ``expect`` (default: the scheme/alpha the run's plan claims) with
    tolerance ``tol`` (default ``TOL[expect]``), and find the closest signature."""
    name = expectation_name(data, expect)
    tol = TOL[name] if tol is None else float(tol)
    if not tol >= 0:
        raise UserError(f"tol={tol!r}: must be >= 0")
    raw, skipped = fit_slopes(data)
    judged = judge(raw, table_for(name, data.axis, data.family), tol)
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
    return CoordReport(
        data=data,
        expect=name,
        tol=tol,
        slopes=judged,
        skipped=skipped,
        signature=signature,
        distances=dists,
        notes=notes,
    )
