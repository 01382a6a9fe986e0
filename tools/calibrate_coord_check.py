"""Calibration of the coordinate-check verdict: a matrix of correct and broken models.

Every case trains a model family over a range of widths (or depths) and is judged by
:func:`muscale.coord.report` against ``expect="mup"`` (depth cases: the claimed alpha). The
script prints the confusion table (rows: correct / broken; columns: PASSED / FAILED /
INCONCLUSIVE) and every case that landed in the wrong column.

Correct models: muscale MLP and GPT under μP (Adam, AdamW, SGD; LayerNorm / RMSNorm;
tied / untied embeddings; GQA; head_dim- and n_heads-scaling; depth 2-8), and models
parametrized by microsoft/mup itself (an MLP and a small transformer with ``MuReadout``,
``set_base_shapes``, ``MuAdam`` / ``MuSGD``), over seeds 1-5, steps 2-6, batch sizes 4-64
and width ranges starting at 32, 64 and 128 and spanning 4x-32x. Broken models: readout
without 1/m, 1/sqrt(d) attention with head_dim scaling, hidden LR not divided by m, SP, NTK,
Adam epsilon not scaled where it matters, depth multipliers missing.

    python tools/calibrate_coord_check.py                 # the reduced matrix (CPU minutes)
    python tools/calibrate_coord_check.py --full          # every setting (CPU hours)
    python tools/calibrate_coord_check.py --cache DIR     # reuse collected data between runs
    python tools/calibrate_coord_check.py --only mup-mlp  # cases whose name contains a string
    python tools/calibrate_coord_check.py --extend 0      # judge the requested data only
    python tools/calibrate_coord_check.py --seed-offset 10  # fresh seeds: false alarms on new draws

Every case is checked the way :func:`muscale.coord.coord_check` does it by default: an
INCONCLUSIVE verdict adds data (the widest width doubled, or seeds) and judges again, up to
``--extend`` rounds (:mod:`muscale.coord.extend`); the output says what each case added.

The reduced matrix is what ``tests/test_coord_calibration.py`` runs (a smaller subset).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from muscale.coord import extend as extension
from muscale.coord import report
from muscale.coord.run import CoordData, collect, config_factory, synthetic_batch
from muscale.coord.verdict import extension_line
from muscale.models.configs import GPTConfig, MLPConfig
from muscale.optim.config import OptimConfig
from muscale.param.config import ParamConfig

#: base LRs per optimizer (the coordinate check wants a fairly large LR; TP5 §D.1)
LRS = {"adam": 0.01, "adamw": 0.01, "sgd": 0.1}
#: what each bug breaks (the kind of module a correct verdict must name)
BUG_KIND = {
    "readout_no_1/m": "logits",
    "attn_1/sqrt(d)": "attn_logits",
    "hidden_lr_not/m": None,  # hidden matrices: 'hidden' (MLP) or branches (GPT)
    "sp": None,
    "ntk": None,
    "eps_unscaled": None,
    "depth_mult_missing": "residual",
}


@dataclass(frozen=True, kw_only=True)
class Case:
    """One model family and check setting; ``bug`` None means a correct μP model."""

    model: str  # "mlp" | "gpt" | "mup-mlp" | "mup-gpt"
    optim: str = "adam"
    sizes: tuple[int, ...] = (64, 128, 256, 512)
    steps: int = 3
    seeds: int = 3
    batch: int = 0  # 0: the CLI default (GPT 2 sequences of 16 tokens, MLP 32 samples)
    scheme: str = "mup"
    bug: str | None = None
    axis: str = "width"
    model_kw: dict[str, Any] = field(default_factory=dict)
    param_kw: dict[str, Any] = field(default_factory=dict)
    optim_kw: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    #: the first seed (fresh draws of the same case: ``--seed-offset``)
    seed_offset: int = 0

    @property
    def correct(self) -> bool:
        return self.bug is None and self.scheme == "mup"

    @property
    def name(self) -> str:
        kw = {**self.model_kw, **self.param_kw, **self.optim_kw}
        extra = ",".join(f"{k}={v}" for k, v in sorted(kw.items()))
        bug = self.bug or ("" if self.scheme == "mup" else self.scheme)
        return (
            f"{self.model}/{self.optim}{'/' + bug if bug else ''}"
            f"{'[' + extra + ']' if extra else ''} {self.axis}s {self.sizes[0]}-{self.sizes[-1]}"
            f" T={self.steps} S={self.seeds} B={self.batch or 'def'}"
            + (f" {self.precision}" if self.precision != "fp32" else "")
            + (f" seeds+{self.seed_offset}" if self.seed_offset else "")
        )

    def key(self) -> str:
        # keys of fp32 cases at seed 0 predate the precision and seed_offset fields
        late = {"precision": "fp32", "seed_offset": 0}
        fields = tuple(
            getattr(self, f.name)
            for f in dataclasses.fields(self)
            if not (f.name in late and getattr(self, f.name) == late[f.name])
        )
        return hashlib.sha1(repr(fields).encode()).hexdigest()[:16]


# --- muscale models ---------------------------------------------------------------------


def _model_cfg(case: Case) -> Any:
    if case.model == "mlp":
        kw = {"width": case.sizes[0], "depth": 2, "in_dim": 32, "out_dim": 10}
        return MLPConfig(**{**kw, **case.model_kw})
    kw = {"width": case.sizes[0], "depth": 2, "n_heads": 4, "vocab_size": 128, "seq_len": 16}
    return GPTConfig(**{**kw, **case.model_kw})


def _muscale_factory(case: Case) -> tuple[Callable, Any, Any]:
    mcfg = _model_cfg(case)
    base = case.sizes[0] if case.axis == "width" else 64
    pkw: dict[str, Any] = {"scheme": case.scheme, "base_width": base, **case.param_kw}
    if case.axis == "depth":
        pkw.setdefault("base_depth", case.sizes[0])
    pcfg = ParamConfig(**pkw)
    ocfg = OptimConfig(**{"name": case.optim, "lr": LRS[case.optim], **case.optim_kw})
    inner = config_factory(mcfg, pcfg, family=ocfg.rule_family, axis=case.axis)
    bug = case.bug

    def factory(size: int, seed: int) -> Any:
        model, plan = inner(size, seed)
        if bug == "readout_no_1/m":
            head = model.out if case.model == "mlp" else model.lm_head
            head.mult = pcfg.output_mult
        elif bug == "attn_1/sqrt(d)":
            for block in model.blocks:
                block.attn.probe.scale = pcfg.attn_mult / block.attn.head_dim**0.5
        elif bug == "hidden_lr_not/m":
            params = [
                dataclasses.replace(p, lr_scale=p.lr_scale * p.width_mult)
                if p.role == "hidden"
                else p
                for p in plan.params
            ]
            plan = dataclasses.replace(plan, params=params)
        elif bug == "depth_mult_missing":
            for block in model.blocks:
                block.branch = 1.0
        return model, plan

    batch = synthetic_batch(mcfg, batch_size=case.batch or (2 if case.model == "gpt" else 32))
    if case.model == "gpt":
        batch = synthetic_batch(mcfg, batch_size=case.batch or 2, seq_len=16)
    return factory, ocfg, batch


# --- models parametrized by microsoft/mup -------------------------------------------------


class MupMLP(nn.Module):
    """in -> width -> width -> out with mup's ``MuReadout`` (non-zero readout init, as in
    mup's examples)."""

    def __init__(self, width: int, in_dim: int = 32, out_dim: int = 10) -> None:
        from mup import MuReadout

        super().__init__()
        self.fc_in = nn.Linear(in_dim, width)
        self.fc_h = nn.Linear(width, width)
        self.readout = MuReadout(width, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(torch.relu(self.fc_h(torch.relu(self.fc_in(x)))))


def _mup_gpt(width: int, **model_kw: Any) -> nn.Module:
    """muscale's GPT module with mup's pieces: ``MuReadout`` head, attention 1/d (equal to
    1/sqrt(d) at the base head_dim), zero query, SP-style (fan-in) init from torch."""
    from mup import MuReadout

    from muscale.models.gpt import GPT

    cfg = GPTConfig(
        **{"width": width, "depth": 2, "n_heads": 4, "vocab_size": 128, "seq_len": 16, **model_kw}
    )
    d_h = cfg.dims(width)["head_dim"]
    d0 = 8  # head_dim at the base width 32 with 4 heads
    mults = {"input": 1.0, "output": 1.0, "branch": 1.0, "attn_scale": math.sqrt(d0) / d_h}
    model = GPT(cfg, mults)
    model.lm_head = MuReadout(width, cfg.vocab_size, bias=False, readout_zero_init=True)
    return model


def _mup_factory(case: Case) -> tuple[Callable, Callable, Any, dict[str, str]]:
    from mup import MuAdam, MuSGD, set_base_shapes

    gpt = case.model == "mup-gpt"
    build = (lambda w: _mup_gpt(w, **case.model_kw)) if gpt else (lambda w: MupMLP(w))
    base, delta = (32, 64) if gpt else (64, 128)

    def factory(width: int, seed: int) -> nn.Module:
        model = build(width)
        set_base_shapes(model, build(base), delta=build(delta))
        if gpt:
            with torch.no_grad():
                for blk in model.blocks:
                    blk.attn.q_proj.weight.zero_()
        return model

    lr = LRS[case.optim]

    def optimizer(model: nn.Module) -> torch.optim.Optimizer:
        if case.optim == "sgd":
            return MuSGD(model.parameters(), lr=lr)
        return MuAdam(model.parameters(), lr=lr)

    if gpt:
        mcfg = GPTConfig(width=32, depth=2, n_heads=4, vocab_size=128, seq_len=16)
        batch = synthetic_batch(mcfg, batch_size=case.batch or 2, seq_len=16)
        points = {"wte": "embed", "lm_head": "logits"}
        for i in range(2):
            points |= {
                f"blocks.{i}.attn.probe": "attn_logits",
                f"blocks.{i}.attn.o_proj": "attn_out",
                f"blocks.{i}.mlp.fc_out": "mlp_out",
                f"blocks.{i}": "residual",
            }
    else:
        batch = synthetic_batch(MLPConfig(width=64), batch_size=case.batch or 32)
        points = {"fc_in": "embed", "fc_h": "hidden", "readout": "logits"}
    return factory, optimizer, batch, points


def _parts(case: Case) -> tuple[Callable, dict[str, Any]]:
    """The case's factory and the rest of :func:`collect`'s arguments."""
    if case.model.startswith("mup-"):
        factory, opt, batch, points = _mup_factory(case)
    else:
        factory, opt, batch = _muscale_factory(case)
        points = None
    if case.seed_offset:
        factory = extension.shifted_seeds(factory, case.seed_offset)
    kw = {"batch": batch, "optimizer": opt, "points": points, "precision": case.precision}
    return factory, kw


def _cached(path: Path | None, make: Callable[[], CoordData]) -> CoordData:
    if path is not None and path.exists():
        return pickle.loads(path.read_bytes())
    data = make()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(data))
    return data


def collect_case(case: Case, cache: Path | None = None) -> CoordData:
    """The case's raw statistics (from ``cache`` when it holds them)."""
    factory, kw = _parts(case)
    return _cached(
        cache / f"{case.key()}.pkl" if cache else None,
        lambda: collect(
            factory, list(case.sizes), steps=case.steps, seeds=case.seeds, axis=case.axis, **kw
        ),
    )


def judge(case: Case, data: CoordData, *, looks: int = 1) -> Any:
    if case.axis == "depth":
        alpha = f"alpha={case.param_kw.get('depth_alpha', 0.0):g}"
        return report(data, expect=alpha, looks=looks)
    return report(data, expect="mup", looks=looks)


def check_case(case: Case, cache: Path | None = None, *, extend: int = extension.EXTEND) -> Any:
    """Collect, judge and — while INCONCLUSIVE, up to ``extend`` rounds — add data the way
    :func:`muscale.coord.coord_check` does (:mod:`muscale.coord.extend`), each round's new
    data cached under the case's key and the round's plan."""
    factory, kw = _parts(case)
    cap = extension.validate(extend, None, case.sizes)

    def more(d: CoordData, plan: extension.Plan) -> CoordData:
        tag = f"{case.key()}-{plan.kind}{plan.new}-{len(d.sizes)}x{d.seeds}"
        if plan.kind == "size":
            return _cached(
                cache / f"{tag}.pkl" if cache else None,
                lambda: extension.collect_more(factory, d, sizes=[plan.new], **kw),
            )
        return _cached(
            cache / f"{tag}.pkl" if cache else None,
            lambda: extension.collect_more(factory, d, seeds=plan.new, **kw),
        )

    first = judge(case, collect_case(case, cache), looks=extend + 1)
    return extension.extend(
        first,
        more=more,
        judge=lambda d: judge(case, d, looks=extend + 1),
        rounds=extend,
        max_size=cap,
        fits=lambda d, n: extension.memory_note(factory, d, n),
    )


# --- the matrix ---------------------------------------------------------------------------


#: (seeds, steps, batch) cycled over the correct models; batch 0 = the CLI default
SETTINGS = [(3, 3, 0), (2, 4, 8), (5, 2, 16), (4, 6, 4), (3, 5, 64), (2, 3, 32), (1, 3, 0)]


def _range(start: int, span: int) -> tuple[int, ...]:
    """Widths ``start, 2 start, ... span · start`` (span 4x .. 32x)."""
    return tuple(start * 2**i for i in range(int(math.log2(span)) + 1))


#: width ranges per family: starts 32, 64, 128; spans 4x-32x (GPT capped at width 1024)
MLP_RANGES = [_range(32, 32), _range(64, 8), _range(128, 16), _range(64, 4), _range(128, 32)]
GPT_RANGES = [_range(32, 8), _range(64, 8), _range(128, 4), _range(32, 32), _range(64, 16)]


def correct_cases(full: bool = False) -> list[Case]:
    """Correct μP models crossed with ranges and settings (cycled, or all with ``full``)."""
    models: list[tuple[str, str, dict[str, Any]]] = []
    for opt in ("adam", "adamw", "sgd"):
        models += [("mlp", opt, {}), ("gpt", opt, {})]
    models += [
        ("mlp", "adam", {"depth": 8}),
        ("mlp", "sgd", {"depth": 4, "activation": "gelu"}),
        ("gpt", "adam", {"norm": "layernorm"}),
        ("gpt", "adam", {"tie_embeddings": True}),
        ("gpt", "sgd", {"tie_embeddings": True}),
        ("gpt", "adam", {"q_per_kv": 2}),
        ("gpt", "adam", {"head_scaling": "n_heads", "head_dim": 8}),
        ("gpt", "adamw", {"depth": 4, "mlp": "swiglu"}),
        ("gpt", "sgd", {"norm": "layernorm", "q_per_kv": 2}),
        ("mup-mlp", "adam", {}),
        ("mup-mlp", "sgd", {}),
        ("mup-gpt", "adam", {}),
        ("mup-gpt", "sgd", {}),
    ]
    cases: list[Case] = []
    i = 0
    for model, opt, kw in models:
        ranges = GPT_RANGES if "gpt" in model else MLP_RANGES
        picks = ranges if full else [ranges[i % len(ranges)], ranges[(i + 2) % len(ranges)]]
        for sizes in picks:
            settings = SETTINGS if full else [SETTINGS[i % len(SETTINGS)]]
            for seeds, steps, batch in settings:
                cases.append(
                    Case(
                        model=model,
                        optim=opt,
                        sizes=sizes,
                        seeds=seeds,
                        steps=steps,
                        batch=batch,
                        model_kw=kw,
                    )
                )
                i += 1
    # Adam ε scaled with width (param.scale_eps, the default) at a large base ε: the ε probe
    # must pass whatever ε is (ε/√v̂ is then the same at every width)
    cases += [
        Case(model="mlp", optim="adam", sizes=_range(64, 8), optim_kw={"eps": 1e-4}),
        Case(model="gpt", optim="adamw", sizes=_range(64, 8), optim_kw={"eps": 1e-4}),
    ]
    # the report: GPT (depth 4, the CLI's model) AdamW, widths 64-512, 3 steps, 2 seeds
    cases.append(
        Case(model="gpt", optim="adamw", sizes=_range(64, 8), seeds=2, model_kw={"depth": 4})
    )
    # depth mode: depth-μP and CompleteP on a residual MLP
    for alpha in (0.5, 1.0):
        for depths in ((2, 4, 8), (2, 4, 8, 16)):
            cases.append(
                Case(
                    model="mlp",
                    axis="depth",
                    sizes=depths,
                    model_kw={"residual": True, "width": 64},
                    param_kw={"depth_alpha": alpha},
                )
            )
    return cases


def broken_cases(full: bool = False) -> list[Case]:
    """Broken models at the default settings (3 seeds, 3 steps, widths 64-512; GPT also
    32-256), and with ``full`` at 2 and 5 seeds too."""
    cases: list[Case] = []
    for opt in ("adam", "adamw", "sgd"):
        for model, sizes in (
            ("mlp", _range(64, 8)),
            ("gpt", _range(64, 8)),
            ("gpt", _range(32, 8)),
        ):
            cases += [
                Case(model=model, optim=opt, sizes=sizes, bug="readout_no_1/m"),
                Case(model=model, optim=opt, sizes=sizes, bug="hidden_lr_not/m"),
                Case(model=model, optim=opt, sizes=sizes, scheme="sp"),
                Case(model=model, optim=opt, sizes=sizes, scheme="ntk"),
            ]
            if model == "gpt":
                cases.append(Case(model=model, optim=opt, sizes=sizes, bug="attn_1/sqrt(d)"))
    # Adam's epsilon matters once it is comparable to the (1/m-shrinking) gradients: ε = 1e-4
    # reaches 10 % of √v̂ near width 600 (MLP) / 350 (GPT), ε = 1e-5 near 6000 (MLP), both
    # below the ε probe's horizon (eps_probe.EPS_HORIZON); wide ranges and the defaults
    unscaled = [
        ("mlp", "adam", _range(64, 32), 1e-4),
        ("gpt", "adam", _range(32, 32), 1e-4),
        ("mlp", "adam", _range(64, 8), 1e-4),
        ("gpt", "adam", _range(64, 8), 1e-4),
        ("mlp", "adamw", _range(64, 8), 1e-4),
        ("gpt", "adamw", _range(64, 8), 1e-4),
        ("mlp", "adam", _range(64, 8), 1e-5),
    ]
    for model, opt, sizes, eps in unscaled:
        cases.append(
            Case(
                model=model,
                optim=opt,
                sizes=sizes,
                bug="eps_unscaled",
                param_kw={"scale_eps": False},
                optim_kw={"eps": eps},
            )
        )
    for alpha in (0.5, 1.0):
        cases.append(
            Case(
                model="mlp",
                axis="depth",
                sizes=(2, 4, 8, 16),
                bug="depth_mult_missing",
                model_kw={"residual": True, "width": 64},
                param_kw={"depth_alpha": alpha},
            )
        )
    if full:
        cases += [dataclasses.replace(c, seeds=s) for c in list(cases) for s in (2, 5)]
    return cases


def run_matrix(
    cases: list[Case],
    cache: Path | None,
    log: Callable[[str], None] = print,
    *,
    extend: int = extension.EXTEND,
) -> list[tuple[Case, Any]]:
    rows = []
    for case in cases:
        t0 = time.perf_counter()
        rep = check_case(case, cache, extend=extend)
        rows.append((case, rep))
        ext = sum(e.wall_s for e in rep.extensions)
        line = f"{rep.status.upper():12s} {time.perf_counter() - t0:6.1f}s  {case.name}"
        if rep.extensions:
            line += f"\n{'':12s} {ext:6.1f}s  " + extension_line(rep.extensions, rep.status)
        log(line)
    return rows


def confusion(rows: list[tuple[Case, Any]]) -> str:
    counts = {(c, s): 0 for c in (True, False) for s in ("pass", "fail", "inconclusive")}
    for case, rep in rows:
        counts[(case.correct, rep.status)] += 1
    lines = [
        "| models | n | PASSED | FAILED | INCONCLUSIVE |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for correct in (True, False):
        n = sum(counts[(correct, s)] for s in ("pass", "fail", "inconclusive"))
        cells = " | ".join(str(counts[(correct, s)]) for s in ("pass", "fail", "inconclusive"))
        lines.append(f"| {'correct' if correct else 'broken'} | {n} | {cells} |")
    wrong = [
        f"  {'correct' if c.correct else 'broken'} {rep.status.upper()}"
        f"{' (allowed: ' + allowed(c) + ')' if c.correct and allowed(c) else ''}: "
        f"{c.name}: {rep.verdict()}"
        for c, rep in rows
        if (c.correct and rep.status != "pass") or (not c.correct and rep.status != "fail")
    ]
    ext = [(c, rep) for c, rep in rows if rep.extensions]
    summary = [
        f"extended: {len(ext)} case(s), "
        f"{sum(e.wall_s for _, r in ext for e in r.extensions):.0f} s of collection"
    ] + [
        f"  {'correct' if c.correct else 'broken'} {c.name}: "
        + extension_line(r.extensions, r.status)
        for c, r in ext
    ]
    return "\n".join(lines + summary + (["misjudged:", *wrong] if wrong else []))


def allowed(case: Case) -> str:
    """Why issue 11 allows a correct case to be INCONCLUSIVE ("" when it does not): widths
    spanning < 4x, or one seed."""
    why = []
    if max(case.sizes) / min(case.sizes) < 4:
        why.append("span < 4x")
    if case.seeds == 1:
        why.append("1 seed")
    return ", ".join(why)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="every setting (CPU hours)")
    ap.add_argument("--cache", type=Path, default=None, help="keep collected data here")
    ap.add_argument("--only", default="", help="cases whose name contains this string")
    ap.add_argument("--broken", action="store_true", help="only the broken models")
    ap.add_argument("--correct", action="store_true", help="only the correct models")
    ap.add_argument("--precision", default="fp32", help="fp32 | bf16 (forward autocast)")
    ap.add_argument(
        "--seed-offset",
        type=int,
        default=0,
        help="first seed of every case (fresh draws: false alarms on new seeds)",
    )
    ap.add_argument(
        "--extend", type=int, default=extension.EXTEND, help="extension rounds (0: none)"
    )
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    cases = [] if a.broken else correct_cases(a.full)
    cases += [] if a.correct else broken_cases(a.full)
    cases = [
        dataclasses.replace(c, precision=a.precision, seed_offset=a.seed_offset)
        for c in cases
        if a.only in c.name
    ]
    t0 = time.perf_counter()
    rows = run_matrix(cases, a.cache, extend=a.extend)
    print(f"\n{len(rows)} cases in {time.perf_counter() - t0:.0f} s (extend={a.extend})")
    print(confusion(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
