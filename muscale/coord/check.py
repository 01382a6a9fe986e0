"""``coord_check``: collect, fit, judge, and (optionally) save the report and plots."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from muscale.coord import extend as extend_mod
from muscale.coord.extend import EXTEND
from muscale.coord.points import PointsSpec
from muscale.coord.run import (
    Batch,
    CoordData,
    Factory,
    collect,
    config_factory,
    synthetic_batch,
)
from muscale.coord.verdict import CoordReport, report


def coord_check(
    factory: Factory,
    sizes: Sequence[int],
    *,
    batch: Batch,
    optimizer: Any,
    loss: Callable[[Any, Any], Tensor] | None = None,
    steps: int = 3,
    seeds: int = 3,
    points: PointsSpec = None,
    axis: str = "width",
    expect: str | None = None,
    tol: float | None = None,
    precision: str = "fp32",
    eps_horizon: float | None = None,
    extend: int = EXTEND,
    max_size: int | None = None,
    workers: int = 1,
) -> CoordReport:
    """Coordinate check of ``factory`` over ``sizes`` (widths, or depths with
    ``axis="depth"``).

    ``factory(size)`` or ``factory(size, seed)`` returns a module, or ``(module, plan)``
    (a muscale model, or any ``nn.Module`` whose plan you made with
    :func:`muscale.param.plan.make_plan`). ``optimizer`` is an
    :class:`~muscale.optim.config.OptimConfig` (needs the plan) or ``callable(model)`` /
    ``callable(model, plan)``. ``batch = (inputs, target)`` is reused at every step;
    ``loss(output, target)`` defaults to cross-entropy. ``points``: module names (or
    ``{name: kind}``) for non-muscale models. ``expect``: the table to judge against
    (``"mup"``, ``"sp"``, ``"ntk"``; depth mode ``"alpha=0"``, ``"alpha=0.5"``,
    ``"alpha=1"``); default: what the plan claims (the report says which question was
    asked). ``tol`` replaces the calibrated band allowances. ``precision="bf16"`` runs the
    forwards under bfloat16 autocast (faster on CPUs with AVX512-BF16; the report notes when
    a change is too small for bf16 to resolve). ``eps_horizon``: the width the Adam-ε probe
    extrapolates ε/√v̂ to (default 65536; see :mod:`muscale.coord.eps_probe`). The report's
    ``status`` is ``pass``, ``fail`` or ``inconclusive``; see :mod:`muscale.coord.verdict`.

    ``extend``: when the verdict is INCONCLUSIVE, up to this many rounds that collect more
    data and judge all of it again — the widest width doubled (a slope drifting at finite
    width) or more seeds (seed noise), never beyond ``max_size`` (default 4× the largest
    size) nor a size whose training would not fit in memory; ``0``: judge the requested
    data only. The FAIL level counts all ``extend + 1`` looks (see
    :mod:`muscale.coord.extend`); ``report.extensions`` lists what was added.

    ``workers``: train the sizes and seeds in that many forked processes, one thread each
    (Linux, CPU; the same numbers; faster when that many cores are free: docs/coord_check.md,
    "Speed").
    """
    cap = extend_mod.validate(extend, max_size, sizes)
    kw: dict[str, Any] = {
        "batch": batch,
        "optimizer": optimizer,
        "loss": loss,
        "points": points,
        "precision": precision,
        "workers": workers,
    }
    data = collect(factory, sizes, steps=steps, seeds=seeds, axis=axis, **kw)

    def judge(d: CoordData) -> CoordReport:
        return report(d, expect=expect, tol=tol, eps_horizon=eps_horizon, looks=extend + 1)

    def more(d: CoordData, plan: extend_mod.Plan) -> CoordData:
        if plan.kind == "size":
            return extend_mod.collect_more(factory, d, sizes=[plan.new], **kw)
        return extend_mod.collect_more(factory, d, seeds=plan.new, **kw)

    def fits(d: CoordData, size: int) -> str | None:
        # worker processes train up to min(workers, seeds) models of the new size at once
        return extend_mod.memory_note(factory, d, size, copies=min(workers, d.seeds))

    return extend_mod.extend(
        judge(data), more=more, judge=judge, rounds=extend, max_size=cap, fits=fits
    )


def save(rep: CoordReport, out: str | Path, *, plot: bool = True) -> dict[str, Path]:
    """Write ``report.json`` and ``coord.png`` into ``out``; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report": out / "report.json"}
    paths["report"].write_text(json.dumps(rep.to_json(), indent=2))
    if plot:
        from muscale.coord.plot import plot_coord

        title = f"{rep.verdict().split(':')[0]} vs {rep.expect!r} — signature {rep.signature!r}"
        paths["plot"] = plot_coord(rep.data, out / "coord.png", title=title)
    return paths


def default_out() -> Path:
    return Path("outputs/coord_check") / dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def check_from_configs(
    model_cfg: Any,
    param_cfg: Any,
    optim_cfg: Any,
    sizes: Sequence[int],
    *,
    axis: str = "width",
    steps: int = 3,
    seeds: int = 3,
    batch_size: int = 2,
    seq_len: int | None = 16,
    data_seed: int = 0,
    expect: str | None = None,
    tol: float | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    eps_horizon: float | None = None,
    extend: int = EXTEND,
    max_size: int | None = None,
    workers: int = 1,
) -> CoordReport:
    """Coordinate check of a muscale model family from its three configs (what the CLI and
    the pipeline call). The schedule of ``optim_cfg`` is not stepped (constant LR);
    ``extend``/``max_size``/``workers`` as in :func:`coord_check`."""
    from muscale.config import to_dict
    from muscale.optim.config import OptimConfig

    ocfg = optim_cfg if isinstance(optim_cfg, OptimConfig) else OptimConfig(**to_dict(optim_cfg))
    factory = config_factory(
        model_cfg, param_cfg, family=ocfg.rule_family, axis=axis, device=device
    )
    batch = synthetic_batch(
        model_cfg, batch_size=batch_size, seq_len=seq_len, seed=data_seed, device=device
    )
    return coord_check(
        factory,
        sizes,
        batch=batch,
        optimizer=ocfg,
        steps=steps,
        seeds=seeds,
        axis=axis,
        expect=expect,
        tol=tol,
        precision=precision,
        eps_horizon=eps_horizon,
        extend=extend,
        max_size=max_size,
        workers=workers,
    )


def run_coord_check_from_config(
    *,
    model: str = "gpt",
    widths: Sequence[int],
    steps: int = 3,
    seeds: int = 2,
    out: str | Path | None = None,
    param: str = "mup",
    optim: str = "adam",
    overrides: Sequence[str] = (),
) -> bool:
    """μP coordinate check of a ``conf/`` model (``muscale pipeline``'s first stage):
    composes ``coord_check`` with ``model=<model> param=<param> optim=<optim>``, saves the
    report and the plot into ``out``; returns whether it passed."""
    from muscale.hydra_app import compose

    lst = "[" + ",".join(str(int(w)) for w in widths) + "]"
    cfg = compose(
        "coord_check",
        [
            f"model={model}",
            f"param={param}",
            f"optim={optim}",
            f"widths={lst}",
            f"steps={steps}",
            f"seeds={seeds}",
            *overrides,
        ],
    )
    rep = check_from_cfg(cfg)
    save(rep, out or default_out(), plot=bool(cfg.plot))
    return rep.passed


def check_from_cfg(cfg: Any) -> CoordReport:
    """Run the check a composed ``conf/coord_check.yaml`` describes."""
    from omegaconf import OmegaConf

    depths = cfg.get("depths")
    axis = "depth" if depths else "width"
    sizes = list(OmegaConf.to_container(depths if depths else cfg.widths))  # type: ignore[arg-type]
    return check_from_configs(
        cfg.model,
        cfg.param,
        cfg.optim,
        sizes,
        axis=axis,
        steps=cfg.steps,
        seeds=cfg.seeds,
        batch_size=int(cfg.batch_size),
        seq_len=cfg.seq_len,
        data_seed=int(cfg.data_seed),
        expect=cfg.expect,
        tol=cfg.tol,
        device=str(cfg.device),
        precision=str(cfg.get("precision", "fp32")),
        eps_horizon=cfg.get("eps_horizon"),
        extend=cfg.get("extend", EXTEND),
        max_size=cfg.get("max_size"),
        workers=cfg.get("workers", 1),
    )
