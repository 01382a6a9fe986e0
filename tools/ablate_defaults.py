"""Ablation of μP's shipped defaults against SP on real text (the embedded pytext corpus).

Question (issue 10, "defaults that do not lose"): at every proxy width, is μP's best loss
over its LR within seed noise of SP's best, or better (and equal at the base width)? Where
it is worse, which default is to blame: zero-init readout / query (TP5 App. D.2), attention
1/d vs 1/sqrt(d) (TP5 §J.2.1 / Definition 4.1), head_dim- vs n_heads-scaling, alpha_out,
alpha_attn, the embedding init?

Each :class:`Variant` is one factor changed from μP's shipped defaults (one at a time);
``sp`` is the reference. Every (variant, width, seed, LR) trial is one training run, run in
the trial pool (:func:`muscale.trial_pool.run_configs`, spawned workers, one torch thread
each); results are appended to ``<out>/trials.jsonl`` after each variant (a re-run skips
finished trials, so a grid can be extended), then summarised per variant and width: best
eval loss over the LR grid (mean ± sd over seeds of each seed's best), the LR of the
seed-averaged curve's minimum, and the difference to SP's best at that width.

    python tools/ablate_defaults.py --variants sp,mup,mup_attn_sqrtd --widths 32,64,128
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Variant:
    """One arm of the ablation.

    ``overrides``: config overrides on top of :func:`common_overrides` (``param=...``
    included). ``scheme``: picks the LR grid's centre (:data:`LR_CENTRE`). ``attn_sqrt_d``:
    give μP 1/sqrt(d) attention instead of its 1/d: with ``n_heads`` fixed (the default
    ``model.head_scaling=head_dim``) the plan's scale is ``attn_mult/sqrt(d0) · (d/d0)^-1``
    (``muscale.param.plan.forward_multipliers``), so ``attn_mult = sqrt(d/d0) = sqrt(n/n0)``
    makes it ``1/sqrt(d)``, SP's scale. ``base_as``: a variant this one equals exactly at the
    base width (its base-width trials are not run; that variant's stand in).
    """

    name: str
    scheme: str
    overrides: tuple[str, ...]
    what: str
    attn_sqrt_d: bool = False
    base_as: str | None = None


_ZERO = ("param.zero_readout=true", "param.zero_query=true")
_NHEADS = ("model.head_scaling=n_heads", "model.head_dim=8")  # = 4 heads of 8 at width 32


def _mup(name: str, what: str, *extra: str, **kw: Any) -> Variant:
    return Variant(name=name, scheme="mup", overrides=("param=mup", *extra), what=what, **kw)


#: the variants, in the order they are run by default (the ones that decide defaults first)
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(name="sp", scheme="sp", overrides=("param=sp",), what="SP (reference)"),
        _mup("mup", "μP, shipped defaults"),
        _mup(
            "mup_attn_sqrtd",
            "μP with 1/√d attention (not μP under head_dim scaling)",
            attn_sqrt_d=True,
            base_as="mup",
        ),
        _mup("mup_nheads", "μP, n_heads scaling (head_dim 8; 1/d = 1/√d)", *_NHEADS, base_as="mup"),
        _mup("mup_aattn0.5", "μP, α_attn = 0.5", "param.attn_mult=0.5"),
        _mup("mup_aattn2", "μP, α_attn = 2", "param.attn_mult=2.0"),
        _mup("mup_aout0.5", "μP, α_out = 0.5", "param.output_mult=0.5"),
        _mup("mup_aout2", "μP, α_out = 2", "param.output_mult=2.0"),
        _mup("mup_emb0.5", "μP, embedding init std 0.5", "param.init_std.input=0.5"),
        _mup("mup_emb2", "μP, embedding init std 2", "param.init_std.input=2.0"),
        _mup("mup_ain0.5", "μP, α_in = 0.5", "param.input_mult=0.5"),
        _mup("mup_ain2", "μP, α_in = 2", "param.input_mult=2.0"),
        Variant(
            name="sp_nheads",
            scheme="sp",
            overrides=("param=sp", *_NHEADS),
            what="SP, n_heads scaling (head_dim 8)",
            base_as="sp",
        ),
        _mup("mup_zero", "μP, zero readout + zero query (previous default)", *_ZERO),
        _mup("mup_zero_readout", "μP, zero readout only", _ZERO[0]),
        _mup("mup_zero_query", "μP, zero query only", _ZERO[1]),
    )
}

#: centre of each scheme's LR grid, log2(LR), by width (the optima of the first ablation,
#: docs/parametrization.md: μP at 2^-6..2^-5 at every width; SP 2^-6 at 32-64, 2^-8 at 128)
LR_CENTRE: dict[str, dict[int, int]] = {
    "mup": {},  # width-independent
    "sp": {32: -6, 64: -6, 128: -7, 256: -8, 512: -9},
}
LR_CENTRE_DEFAULT = {"mup": -6, "sp": -6}


def lr_exps(scheme: str, width: int, span: int) -> list[int]:
    """The ``2·span + 1`` octave-spaced log2(LR) points around the scheme's centre."""
    c = LR_CENTRE[scheme].get(width, LR_CENTRE_DEFAULT[scheme])
    return list(range(c - span, c + span + 1))


def common_overrides(steps: int, seq_len: int, batch: int, depth: int, base: int) -> list[str]:
    return [
        "data=pytext",
        f"model.depth={depth}",
        f"data.seq_len={seq_len}",
        f"data.batch_size={batch}",
        f"trainer.max_steps={steps}",
        "trainer.eval_every=0",
        "data.eval_batches=8",
        f"optim.schedule.warmup_steps={max(1, steps // 10)}",
        "trainer.threads=1",
        "trainer.progress=off",
        "trainer.save_final=false",
        f"param.base_width={base}",
    ]


def variant_overrides(v: Variant, width: int, base: int) -> list[str]:
    """The variant's overrides at ``width`` (μP base width ``base``)."""
    out = list(v.overrides)
    if v.attn_sqrt_d:
        out.append(f"param.attn_mult={math.sqrt(width / base)!r}")
    return out


def trial_overrides(t: dict[str, Any], common: list[str], base: int) -> list[str]:
    return [
        *common,
        *variant_overrides(VARIANTS[t["variant"]], t["width"], base),
        f"model.width={t['width']}",
        f"trainer.seed={t['seed']}",
        f"optim.lr={t['lr']!r}",
    ]


def trial_id(t: dict[str, Any]) -> str:
    return f"{t['variant']}|w{t['width']}|s{t['seed']}|lr{t['lr']:.6g}"


def plan_trials(
    variants: list[str],
    widths: list[int],
    seeds: list[int],
    span: int,
    steps: int,
    base: int,
    exps: list[int] | None = None,
) -> list[dict[str, Any]]:
    """Every trial of the run, widest first within each variant (``exps``: one log2(LR)
    grid for every variant and width, instead of each scheme's centred grid)."""
    out = []
    for name in variants:
        v = VARIANTS[name]
        for w in sorted(widths, reverse=True):
            if w == base and v.base_as is not None:
                continue
            for s in seeds:
                for e in exps or lr_exps(v.scheme, w, span):
                    out.append(
                        {"variant": name, "width": w, "seed": s, "lr": 2.0**e, "steps": steps}
                    )
    return out


def summarise(rows: list[dict[str, Any]], base: int) -> list[dict[str, Any]]:
    """Per (variant, width): each seed's best over the LRs, their mean and sd; the LR of the
    seed-averaged curve's minimum (and whether it is on the grid's edge); the difference of
    the mean best to SP's, with the combined seed sd ``sqrt(sd² + sd_sp²)`` as its noise, and
    to μP's shipped defaults (``mup``).

    A variant with ``base_as`` gets that variant's base-width trials as its own (marked
    ``stand_in``), if it has trials at other widths."""
    names = {r["variant"] for r in rows}
    rows = [
        *rows,
        *(
            {**r, "variant": v.name, "stand_in": True}
            for v in VARIANTS.values()
            if v.name in names and v.base_as is not None
            for r in rows
            if r["variant"] == v.base_as and r["width"] == base
        ),
    ]
    cells: dict[tuple[str, int], dict[str, Any]] = {}
    for variant, width in sorted({(r["variant"], r["width"]) for r in rows}):
        sub = [r for r in rows if r["variant"] == variant and r["width"] == width]
        bests, best_lrs = [], []
        for seed in sorted({r["seed"] for r in sub}):
            ok = [r for r in sub if r["seed"] == seed and r["loss"] is not None]
            if ok:
                b = min(ok, key=lambda r: r["loss"])
                bests.append(b["loss"])
                best_lrs.append(b["lr"])
        by_lr: dict[float, list[float]] = {}
        for r in sub:
            by_lr.setdefault(r["lr"], []).append(math.inf if r["loss"] is None else r["loss"])
        curve = {lr: statistics.fmean(v) for lr, v in by_lr.items()}
        lr_best = min(curve, key=lambda lr: curve[lr])
        grid = sorted(curve)
        cells[(variant, width)] = {
            "variant": variant,
            "width": width,
            "seeds": len(bests),
            "best_mean": statistics.fmean(bests) if bests else math.nan,
            "best_sd": statistics.stdev(bests) if len(bests) > 1 else math.nan,
            "lr_best": lr_best,
            # the averaged curve's or any seed's best at an end of the grid: not bracketed
            "on_edge": len(grid) > 1
            and any(lr in (grid[0], grid[-1]) for lr in [lr_best, *best_lrs]),
            "stand_in": any(r.get("stand_in") for r in sub),
        }
    for (_, width), c in cells.items():
        mu = cells.get(("mup", width))
        c["delta_mup"] = c["best_mean"] - mu["best_mean"] if mu is not None else math.nan
        sp = cells.get(("sp", width))
        if sp is None:
            c["delta_sp"] = c["noise"] = math.nan
            continue
        c["delta_sp"] = c["best_mean"] - sp["best_mean"]
        c["noise"] = math.hypot(c["best_sd"], sp["best_sd"])
    order = {n: i for i, n in enumerate(VARIANTS)}
    return sorted(cells.values(), key=lambda c: (order.get(c["variant"], 99), c["width"]))


def verdict(c: dict[str, Any]) -> str:
    """Against SP at the same width: beyond 2 combined seed sd, or within it."""
    d, n = c["delta_sp"], c["noise"]
    if c["variant"] == "sp" or not math.isfinite(d):
        return ""
    if not math.isfinite(n):
        return "inconclusive (1 seed)"
    if d > 2 * n:
        return "worse"
    if d < -2 * n:
        return "better"
    return "within noise"


def _g4(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else "-"


def _octave(lr: float) -> str:
    e = math.log2(lr)
    return f"2^{e:.0f}" if e == round(e) else f"{lr:.4g}"


def table(summ: list[dict[str, Any]]) -> str:
    lines = [
        "| variant | width | seeds | best loss (mean ± sd) | LR at best | Δ vs SP (± noise) "
        "| vs SP | Δ vs μP |",
        "| --- | ---: | ---: | --- | --- | --- | --- | --- |",
    ]
    for c in summ:
        loss = f"{c['best_mean']:.4f} ± {_g4(c['best_sd'])}"
        if c["stand_in"]:
            loss += f" (= {VARIANTS[c['variant']].base_as})"
        lr = _octave(c["lr_best"]) + (" (edge)" if c["on_edge"] else "")
        delta = (
            f"{c['delta_sp']:+.4f} ± {_g4(c['noise'])}"
            if c["variant"] != "sp" and math.isfinite(c["delta_sp"])
            else ""
        )
        dmu = f"{c['delta_mup']:+.4f}" if c["variant"] not in ("sp", "mup") else ""
        if not math.isfinite(c["delta_mup"]):
            dmu = ""
        lines.append(
            f"| {c['variant']} | {c['width']} | {c['seeds']} | {loss} | {lr} | {delta} "
            f"| {verdict(c)} | {dmu} |"
        )
    return "\n".join(lines)


def base_check(rows: list[dict[str, Any]], base: int) -> str:
    """μP (shipped defaults) must equal SP at the base width, trial by trial."""
    sp = {
        (r["seed"], r["lr"]): r["loss"] for r in rows if r["variant"] == "sp" and r["width"] == base
    }
    mu = {
        (r["seed"], r["lr"]): r["loss"]
        for r in rows
        if r["variant"] == "mup" and r["width"] == base
    }
    shared = [k for k in sp if k in mu and sp[k] is not None and mu[k] is not None]
    if not shared:
        return f"base width {base}: no shared SP/μP trials"
    diff = max(abs(sp[k] - mu[k]) for k in shared)
    return (
        f"base width {base}: max |loss(μP) − loss(SP)| over {len(shared)} shared trials "
        f"= {diff:.3g}"
    )


def run_chunk(
    todo: list[dict[str, Any]], common: list[str], base: int, pool: Any, jobs: int
) -> list[dict[str, Any]]:
    """Train trials in the pool (:func:`muscale.trial_pool.run_configs`); return their rows."""
    from omegaconf import OmegaConf

    from muscale.hydra_app import compose
    from muscale.trial_pool import run_configs

    with tempfile.TemporaryDirectory() as d:
        runs = []
        for t in todo:
            cfg = compose("train", trial_overrides(t, common, base))
            runs.append(
                (trial_id(t), OmegaConf.to_container(cfg, resolve=True), f"{d}/{len(runs)}")
            )
        losses = run_configs(runs, pool=pool, jobs=jobs, label=todo[0]["variant"], progress="off")
    return [
        {**t, "loss": losses[trial_id(t)] if math.isfinite(losses[trial_id(t)]) else None}
        for t in todo
    ]


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="outputs/ablate_defaults")
    ap.add_argument("--variants", default=",".join(list(VARIANTS)[:10]))
    ap.add_argument("--widths", default="32,64,128")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--lr-span", type=int, default=2, help="octaves each side of the centre")
    ap.add_argument("--lr-exps", default="", help="log2(LR) grid for all (default: centred)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--base-width", type=int, default=32, help="μP's param.base_width")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            print(f"--variants: unknown {v!r}; choose from {', '.join(VARIANTS)}", file=sys.stderr)
            return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "trials.jsonl"
    rows = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    done = {trial_id(r) for r in rows if r["steps"] == args.steps}
    base = args.base_width
    common = common_overrides(args.steps, args.seq_len, args.batch, args.depth, base)
    plan = plan_trials(
        variants,
        _ints(args.widths),
        _ints(args.seeds),
        args.lr_span,
        args.steps,
        base,
        _ints(args.lr_exps) or None,
    )
    todo = [t for t in plan if trial_id(t) not in done]
    if todo and not args.summary_only:
        from muscale.trial_pool import make_pool

        t_start = time.perf_counter()
        print(
            f"{len(todo)} trials to run ({len(plan) - len(todo)} of {len(plan)} done)", flush=True
        )
        with make_pool(args.jobs) as pool:
            chunks: dict[tuple[str, int], list[dict[str, Any]]] = {}
            for t in todo:  # one (variant, width) at a time, written as it finishes
                chunks.setdefault((t["variant"], t["width"]), []).append(t)
            for (name, width), mine in chunks.items():
                t0 = time.perf_counter()
                new = run_chunk(mine, common, base, pool, args.jobs)
                with log.open("a") as f:
                    f.writelines(json.dumps(r) + "\n" for r in new)
                rows += new
                best = min((r["loss"] for r in new if r["loss"] is not None), default=math.nan)
                print(
                    f"{name} w{width}: {len(new)} trials in {time.perf_counter() - t0:.0f} s "
                    f"(best {_g4(best)}; total {time.perf_counter() - t_start:.0f} s)",
                    flush=True,
                )
    keep = (set(variants), set(_ints(args.widths)), set(_ints(args.seeds)))
    rows = [
        r
        for r in rows
        if r["steps"] == args.steps
        and (r["variant"], r["width"], r["seed"]) in itertools.product(*keep)
    ]
    summ = summarise(rows, base)
    (out / "summary.json").write_text(json.dumps(summ, indent=2))
    print(table(summ))
    print(base_check(rows, base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
