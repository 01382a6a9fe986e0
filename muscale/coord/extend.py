r"""Sequential extension: an INCONCLUSIVE check collects more data and judges again.

A verdict is INCONCLUSIVE when some interval straddles a band edge (:mod:`muscale.coord.verdict`).
Which data decide it depends on why it straddles:

* **Finite-width bias.** At width :math:`n` a Θ(1) statistic is its coherent Θ(1) part plus
  an incoherent part of relative size :math:`O(n^{-1/2})` (TP4, Yang & Hu 2021; TP5 §D.1), so
  a correct model's slope over small widths is pulled below 0 (or, deep models, above) and
  drifts toward its exponent as the widths grow. When an undecided slope lies **outside** its
  band, more seeds would only sharpen that biased estimate — at enough seeds a correct model
  would FAIL — while a wider width both moves the slope toward its limit and narrows its
  interval (the log-width spread :math:`S_{xx}` grows). So the round **doubles the widest
  width**. A broken model's slope is a different exponent, not a transient: it stays
  outside and its interval narrows, so it FAILS.
* **Seed noise.** When every undecided slope lies **inside** its band and the interval is
  too wide, the round **adds seeds** (the number :func:`muscale.coord.verdict.needs` says
  would decide, at most doubling them, which costs at most the first run again); if that
  takes more, a wider width is cheaper per unit of :math:`S_{xx}` and the round widens.
  One seed over two widths has no spread estimate: seeds (3 in all).
* The Adam-ε probe's extrapolation narrows with the width span: widths.

**Budget**: ``extend`` rounds, no size above ``max_size`` (default :data:`MAX_SIZE_FACTOR` ×
the largest requested) and none whose training would not fit in memory (:func:`memory_note`).

Data already collected are kept: a round runs only the new width (every seed) or only the
new seeds (every width) and :func:`merge` joins them; the verdict is always on all data.

**Multiple looks.** A check with ``extend = k`` rounds judges up to :math:`k + 1` times. The
FAIL level counts every entry of every planned look (Bonferroni, ``looks = k + 1`` in
:func:`muscale.coord.verdict.report`), so a correct model is FAILED with probability < 5 %
however many looks happen; ``extend = 0`` is the single look of the unextended check. The
PASS test stays the 90 % equivalence test at each look (not corrected; a broken model's
slope moves away from the band as widths grow, and the calibration measures its PASS rate).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from muscale.coord.eps_probe import EpsData
from muscale.coord.run import CoordData, Factory, _build, _n_params, collect
from muscale.coord.verdict import CoordReport, Slope, needs
from muscale.errors import UserError, check_positive_int

#: default extension rounds (0: the unextended check)
EXTEND = 2
#: default cap on the largest size an extension adds, as a multiple of the largest requested
#: (two doublings, the default rounds). A dense model's step time and memory grow like
#: width², so the first doubling costs ~3x the whole requested check (widths n..N:
#: Σ n² ≈ 1.33 N²) and the second ~12x; memory is guarded separately (:func:`memory_note`)
MAX_SIZE_FACTOR = 4
#: a new size is refused when its weights, gradients and two optimizer moments would take
#: more than this fraction of the device's free memory (the rest: activations, other jobs)
MEMORY_FRACTION = 0.5


@dataclass(frozen=True, kw_only=True)
class Extension:
    """One round: what was undecided, what was added and why, and the verdict after it.

    ``kind``: ``"size"`` (the widest width, or deepest depth, doubled) or ``"seeds"``;
    ``added``: the new sizes or the new seed indices; ``sizes``/``seeds``: the data before
    the round; ``undecided``: the entries that straddled a band edge; ``status``: the verdict
    on all data after the round; ``wall_s``: the round's collection time."""

    kind: str
    axis: str
    sizes: list[int]
    seeds: int
    added: list[int]
    undecided: list[str]
    reason: str
    status: str
    wall_s: float

    def line(self) -> str:
        """``inconclusive at widths 64–512 (2 seeds) on fc_h change; added width 1024 (…)``"""
        lo, hi = min(self.sizes), max(self.sizes)
        what = ", ".join(self.undecided[:3]) + (
            f" and {len(self.undecided) - 3} more" if len(self.undecided) > 3 else ""
        )
        if self.kind == "size":
            add = f"added {self.axis} {', '.join(map(str, self.added))}"
        else:
            add = (
                f"added seeds {self.added[0]}–{self.added[-1]}"
                if len(self.added) > 1
                else (f"added seed {self.added[0]}")
            )
        return (
            f"inconclusive at {self.axis}s {lo}–{hi} ({self.seeds} seed(s)) on {what}; "
            f"{add} ({self.reason}, {self.wall_s:.1f} s)"
        )

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "wall_s": round(self.wall_s, 3)}


def validate(extend: Any, max_size: Any, sizes: Sequence[int]) -> int:
    """``extend`` as an int >= 0 and ``max_size`` as the cap on added sizes (default
    :data:`MAX_SIZE_FACTOR` × the largest requested); a :class:`UserError` naming the field
    otherwise (the CLI's exit status 2)."""
    check_positive_int("extend", extend, allow_zero=True)
    largest = max(int(s) for s in sizes)
    if max_size is None:
        return MAX_SIZE_FACTOR * largest
    check_positive_int("max_size", max_size)
    if max_size < largest:
        raise UserError(
            f"max_size={max_size!r}: must be at least the largest size requested ({largest}), "
            f"or null for the default ({MAX_SIZE_FACTOR}x the largest)"
        )
    return int(max_size)


# --- data --------------------------------------------------------------------------------


def _same(a: CoordData, b: CoordData) -> None:
    for f in ("axis", "steps", "scheme", "family", "depth_alpha"):
        if getattr(a, f) != getattr(b, f):
            raise UserError(f"merge: {f} differs ({getattr(a, f)!r} vs {getattr(b, f)!r})")
    if [p.label for p in a.points] != [p.label for p in b.points]:
        raise UserError("merge: the two runs hooked different points")
    if a.meta.get("precision") != b.meta.get("precision"):
        raise UserError("merge: the two runs ran at different precisions")


def _cat_eps(a: EpsData | None, b: EpsData | None, axis: int) -> EpsData | None:
    if a is None or b is None:
        return None
    if a.names != b.names:
        raise UserError("merge: the Adam-ε probe saw different tensors in the two runs")
    return EpsData(
        names=list(a.names),
        eps=np.concatenate([a.eps, b.eps], axis=axis),
        rms=np.concatenate([a.rms, b.rms], axis=axis),
    )


def merge(a: CoordData, b: CoordData) -> CoordData:
    """One :class:`CoordData` from two runs of the same check: new sizes (same seeds) are
    joined along the size axis, sorted; new seeds (same sizes) along the seed axis, after
    ``a``'s (``b``'s seeds must be new ones: :func:`collect_more` shifts them). For models
    that are a deterministic function of (size, seed) the result equals a single
    :func:`collect` over all of them (``tests/test_coord_extend.py``)."""
    _same(a, b)
    if a.seeds == b.seeds and not set(a.sizes) & set(b.sizes):
        order = np.argsort(a.sizes + b.sizes, kind="stable")
        sizes = [int(s) for s in np.asarray(a.sizes + b.sizes)[order]]

        def cat(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return np.concatenate([x, y], axis=0)[order]

        eps = _cat_eps(a.meta.get("eps"), b.meta.get("eps"), 0)
        if eps is not None:
            eps = EpsData(names=eps.names, eps=eps.eps[order], rms=eps.rms[order])
        seeds = a.seeds
    elif a.sizes == b.sizes:
        sizes = list(a.sizes)

        def cat(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return np.concatenate([x, y], axis=1)

        eps = _cat_eps(a.meta.get("eps"), b.meta.get("eps"), 1)
        seeds = a.seeds + b.seeds
    else:
        raise UserError(
            f"merge: join new sizes at the same seeds or new seeds at the same sizes, got "
            f"sizes {a.sizes} x {a.seeds} seeds and {b.sizes} x {b.seeds} seeds"
        )
    return dataclasses.replace(
        a,
        sizes=sizes,
        seeds=seeds,
        level=cat(a.level, b.level),
        change=cat(a.change, b.change),
        loss=cat(a.loss, b.loss),
        wall_s=a.wall_s + b.wall_s,
        meta={**a.meta, "eps": eps},
    )


def take_sizes(data: CoordData, sizes: Sequence[int]) -> CoordData:
    """The part of ``data`` at ``sizes`` (in ``data``'s order)."""
    keep = set(sizes)
    idx = [i for i, s in enumerate(data.sizes) if s in keep]
    eps = data.meta.get("eps")
    if eps is not None:
        eps = EpsData(names=list(eps.names), eps=eps.eps[idx], rms=eps.rms[idx])
    return dataclasses.replace(
        data,
        sizes=[data.sizes[i] for i in idx],
        level=data.level[idx],
        change=data.change[idx],
        loss=data.loss[idx],
        meta={**data.meta, "eps": eps},
    )


def shifted_seeds(factory: Factory, offset: int) -> Factory:
    """``factory`` with seeds ``offset, offset+1, ...`` in place of ``0, 1, ...``.

    :func:`collect` passes seed ``k`` to a two-argument factory and sets torch's seed to
    ``k`` around building and training; this wrapper re-seeds torch with ``k + offset`` before
    building, so model ``k`` is the model :func:`collect` would build for seed ``k + offset``
    (also for factories that ignore the seed and draw from torch's RNG)."""
    two = _n_params(factory) >= 2

    def factory_at(size: int, seed: int) -> Any:
        torch.manual_seed(seed + offset)
        return factory(size, seed + offset) if two else factory(size)

    return factory_at


def collect_more(
    factory: Factory,
    data: CoordData,
    *,
    sizes: Sequence[int] = (),
    seeds: int = 0,
    **collect_kw: Any,
) -> CoordData:
    """New data for ``data``'s check: the new ``sizes`` at every seed of ``data``, or
    ``seeds`` new seeds at every size of ``data`` (exactly one of the two).

    :func:`collect` fits nothing but wants two different sizes; a single new size is
    collected together with ``data``'s smallest, which is then dropped (it costs about
    (smallest/new)² of the new size's work)."""
    if bool(seeds) == bool(sizes):
        raise UserError(f"collect_more: pass new sizes or new seeds, got {sizes=} and {seeds=}")
    if seeds:
        return collect(
            shifted_seeds(factory, data.seeds),
            list(data.sizes),
            seeds=seeds,
            steps=data.steps,
            axis=data.axis,
            **collect_kw,
        )
    run = sorted(set(sizes) | ({min(data.sizes)} if len(set(sizes)) < 2 else set()))
    new = collect(factory, run, seeds=data.seeds, steps=data.steps, axis=data.axis, **collect_kw)
    return take_sizes(new, sizes)


# --- the decision ------------------------------------------------------------------------


def _label(s: Slope) -> str:
    """``blocks.1 change -0.25 (edge -0.3)``: the entry, its slope and the nearer band edge."""
    if s.lo is None or s.hi is None or not math.isfinite(s.slope):
        return f"{s.module} {s.stat}"
    edge = s.lo if abs(s.slope - s.lo) < abs(s.slope - s.hi) else s.hi
    return f"{s.module} {s.stat} {s.slope:+.2f} (edge {edge:+.2g})"


@dataclass(frozen=True)
class Plan:
    """What the next round adds: ``kind`` "size" (``new`` = the new size) or "seeds"
    (``new`` = how many seeds to add), and why."""

    kind: str
    new: int
    reason: str


def memory_note(factory: Factory, data: CoordData, size: int, copies: int = 1) -> str | None:
    """None when training a model of ``size`` should fit; else a sentence with the numbers.

    Builds the widest model already run (no training) to count its parameter bytes, scales
    them to ``size`` (like size² in width: dense matrices; like size in depth) and counts
    weights, gradients and two optimizer moments (Adam's; SGD needs less), times ``copies``
    trained at once (worker processes), against
    :data:`MEMORY_FRACTION` of the device's free memory (CUDA: free on the GPU; CPU:
    ``MemAvailable``). Without that guard the calibration's depth-8 MLP, doubled twice from
    width 4096, ran a 23 GB machine out of memory."""
    from muscale.train.memory import available_bytes

    widest = max(data.sizes)
    with torch.random.fork_rng(devices=[]):
        model, _ = _build(factory, widest, 0)
    params = list(model.parameters())
    nbytes = sum(p.numel() * p.element_size() for p in params)
    device = str(params[0].device) if params else "cpu"
    del model, params
    power = 2 if data.axis == "width" else 1
    need = 4 * nbytes * (size / widest) ** power * copies
    free = available_bytes(device)
    if free is None or need <= MEMORY_FRACTION * free:
        return None
    return (
        f"{data.axis} {size} would need ≈ {need / 2**30:.3g} GiB for weights, gradients and "
        f"optimizer moments, more than {MEMORY_FRACTION:.0%} of the {free / 2**30:.3g} GiB "
        f"free on {device}"
    )


def choose(
    rep: CoordReport, max_size: int, fits: Callable[[int], str | None] | None = None
) -> Plan | str:
    """The round that follows from why ``rep`` is INCONCLUSIVE (module docstring), or a
    sentence saying why none can run within ``max_size`` (and ``fits(size)``: None when a
    model of that size fits in memory, else why not)."""
    data, und = rep.data, rep.undecided
    name = data.axis
    seeds_needed, _ = needs(und, data)
    wider = 2 * max(data.sizes)
    no_width = f"{name} {wider} would exceed max_size={max_size}" if wider > max_size else None
    if no_width is None and fits is not None:
        no_width = fits(wider)
    can_widen = no_width is None
    if any(not math.isfinite(s.se) for s in und):
        return Plan("seeds", max(3 - data.seeds, 1), "no seed spread to judge by")
    outside = [
        s for s in und if s.lo is not None and s.hi is not None and not s.lo <= s.slope <= s.hi
    ]
    eps_open = rep.eps is not None and rep.eps.status == "inconclusive"
    if outside or eps_open:
        why = (
            "a slope outside its band: a wider width separates finite-width drift from a "
            "wrong exponent"
            if outside
            else "the ε probe's extrapolation"
        )
        return Plan("size", wider, why) if can_widen else str(no_width)
    cap = max(2 * data.seeds, 3)
    if seeds_needed <= cap:
        return Plan("seeds", seeds_needed - data.seeds, "seed noise")
    if can_widen:
        return Plan("size", wider, f"seed noise, {seeds_needed} seeds needed")
    return Plan("seeds", cap - data.seeds, f"seed noise; {no_width}")


def extend(
    rep: CoordReport,
    *,
    more: Callable[[CoordData, Plan], CoordData],
    judge: Callable[[CoordData], CoordReport],
    rounds: int,
    max_size: int,
    fits: Callable[[CoordData, int], str | None] | None = None,
) -> CoordReport:
    """Up to ``rounds`` rounds while ``rep`` is INCONCLUSIVE: choose what to add, collect it
    with ``more(data, plan)``, merge, and ``judge`` all data. ``fits(data, size)``: None
    when a model of ``size`` fits in memory (:func:`memory_note`). The returned report lists
    the rounds (``extensions``) and, when the budget stopped it, says so in its notes."""
    done: list[Extension] = []
    while rep.status == "inconclusive" and len(done) < rounds:
        plan = choose(rep, max_size, None if fits is None else functools.partial(fits, rep.data))
        if isinstance(plan, str):
            rep.notes.append(f"Not extended further: {plan}.")
            break
        t0 = time.perf_counter()
        data = merge(rep.data, more(rep.data, plan))
        wall = time.perf_counter() - t0
        new = judge(data)
        und = [_label(s) for s in rep.undecided]
        if rep.eps is not None and rep.eps.status == "inconclusive":
            und.append("the Adam-ε probe")
        added = (
            [plan.new]
            if plan.kind == "size"
            else list(range(rep.data.seeds, rep.data.seeds + plan.new))
        )
        done.append(
            Extension(
                kind=plan.kind,
                axis=rep.data.axis,
                sizes=list(rep.data.sizes),
                seeds=rep.data.seeds,
                added=added,
                undecided=und,
                reason=plan.reason,
                status=new.status,
                wall_s=wall,
            )
        )
        rep = new
    if done and rep.status == "inconclusive" and len(done) == rounds:
        rep.notes.append(f"Not extended further: extend={rounds} round(s) spent.")
    rep.extensions = done
    return rep
