"""The main job: tune μP on proxies, transfer to a much wider target, and compare with SP.

Steps (each a library call; this module chains them and writes the summary):

1. coordinate check of μP (optional);
2. **search**: μP at the smallest proxy, the LR jointly with the base hyperparameters, by
   ``search.strategy``: ``asha`` (default), ``random``, ``tpe`` or ``cmaes`` over
   ``search.space`` — the planners of :mod:`muscale.sweep.search`, every trial a store row —
   or ``grid`` (``proxy.lrs`` x ``search.params``). TP5 §7.2 tunes these at the proxy;
3. **confirm**: each of ``confirm.params`` swept around the searched point with the others
   held there (``confirm.points`` values ``confirm.spacing`` octaves apart, ``confirm.seeds``;
   at every proxy width, or for ``grid`` at the widths the search did not cover), so every
   confirmed value gets a verdict across width (holds / drifts / inconclusive);
4. **SP proxies**: the LR swept at every proxy width under SP (what a user does without μP);
5. **fit and transfer**: per confirmed value the fit and verdict of ``muscale fit``
   (:func:`muscale.sweep.optima.fit_param` on this store); μP's tuned values written into a
   target config (``target_w<N>.yaml``, with provenance), each confirmed value by its fit
   (mean unless it drifts, then its trend), the other searched values as found; SP's LR by
   its own proxies' fit (mean if its optimum holds, else its trend);
6. **target runs**: both trained at the target width over ``target.seeds``.

Tuning compute of each scheme is the sum over its proxy trials of CPU-seconds and training
FLOPs (:mod:`muscale.trial_pool`), reported per stage.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


@dataclass(kw_only=True)
class Verdict:
    """Does a tuned value's optimum hold across proxy widths? A summary row of the
    :class:`muscale.sweep.optima.ParamFit` that ``muscale fit`` computes from the same store
    (one implementation, one rule set: :data:`muscale.sweep.optima.VERDICT_RULES`).

    ``slope``: log2(optimum) per width doubling with its 95% interval ``ci``; ``kind``:
    ``holds`` when the whole interval lies within ±tol, ``drifts`` when it lies entirely
    outside, ``inconclusive`` otherwise, or when an optimum sits on the edge of what was
    tried, or with one seed (no interval); ``next``: what would decide it.
    """

    param: str
    kind: str
    slope: float
    ci: tuple[float, float]
    optima: dict[int, float]  # width -> optimum
    reason: str = ""
    next: str = ""

    @classmethod
    def of(cls, pf: Any) -> Verdict:
        """The summary row of a :class:`~muscale.sweep.optima.ParamFit`."""
        t = pf.trend
        # an interval is quoted only with seed noise behind it (>= 2 seeds at every width)
        quoted = t is not None and all(o.n_seeds >= 2 for o in pf.optima)
        return cls(
            param=pf.param,
            kind=pf.verdict.kind,
            slope=float(t.slope) if t is not None else math.nan,
            ci=(float(t.ci[0]), float(t.ci[1])) if quoted else (math.nan, math.nan),
            optima={int(o.scale_value): float(o.value) for o in pf.optima},
            reason=pf.verdict.reason,
            next=pf.verdict.next,
        )


@dataclass(kw_only=True)
class SchemeResult:
    scheme: str
    tuned: dict[str, float]  # config key -> transferred value
    target_losses: list[float]  # one per target seed
    tuning_cpu_s: float
    tuning_flops: float
    tuning_trials: int

    @property
    def target_loss(self) -> float:
        return statistics.fmean(self.target_losses)

    @property
    def target_sd(self) -> float:
        return statistics.stdev(self.target_losses) if len(self.target_losses) > 1 else math.nan


@dataclass(kw_only=True)
class PipelineResult:
    out: Path
    coord_passed: bool | None
    target_width: int
    proxy_widths: list[int]
    mup: SchemeResult
    sp: SchemeResult
    verdicts: list[Verdict]
    target_config: Path
    timings: dict[str, float] = field(default_factory=dict)
    #: stage -> {"cpu_s", "flops", "trials"}: where the tuning compute went
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    strategy: str = "grid"
    #: the search's point at the smallest proxy ("optim.lr" and config keys); ``mup.tuned``
    #: holds what was transferred (confirmed values by their fit across the proxies)
    searched: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "coord_passed": self.coord_passed,
            "target_width": self.target_width,
            "proxy_widths": self.proxy_widths,
            "mup": {**asdict(self.mup), "target_loss": self.mup.target_loss},
            "sp": {**asdict(self.sp), "target_loss": self.sp.target_loss},
            "verdicts": [asdict(v) for v in self.verdicts],
            "target_config": str(self.target_config),
            "timings": self.timings,
            "stages": self.stages,
            "strategy": self.strategy,
            "searched": self.searched,
        }


def _stage_cost(outcomes: list[Any]) -> dict[str, float]:
    return {
        "cpu_s": sum(o.cpu_s for o in outcomes),
        "flops": sum(o.flops for o in outcomes),
        "trials": sum(len(o.costs) for o in outcomes),
    }


def settings(cfg: DictConfig) -> DictConfig:
    """The effective settings: ``quick_profile`` merged over the rest when quick; bad values
    raise :class:`~muscale.errors.ConfigError` naming the field."""
    from muscale.errors import ConfigError, check_choice
    from muscale.sweep.config import SEARCH_STRATEGIES, SWEEPABLE

    if cfg.target.width < 8 * min(cfg.proxy.widths) and not cfg.pipeline.quick:
        raise ConfigError(
            "target.width",
            cfg.target.width,
            f"must be >= 8x the smallest proxy ({8 * min(cfg.proxy.widths)})",
        )
    check_choice("search.strategy", cfg.search.strategy, ("grid", *SEARCH_STRATEGIES))
    if cfg.search.strategy == "grid":
        tuned = [k for k, v in cfg.search.params.items() if v is not None]
        where = "search.params"
    else:
        tuned = [k for k, v in cfg.search.space.items() if v is not None and k != "lr"]
        where = "search.space"
        for k in tuned:
            if k not in SWEEPABLE:
                raise ConfigError(
                    f"search.space.{k}", k, f"use lr or one of {', '.join(SWEEPABLE)}"
                )
    for name in cfg.confirm.params:
        if name != "lr" and name not in tuned:
            raise ConfigError(
                "confirm.params",
                name,
                f"confirm lr or a searched value ({where}: {', '.join(tuned) or 'none'})",
            )
        rng = cfg.search.space.get(name) if cfg.search.strategy != "grid" else None
        if rng is not None and (not rng.get("log", True) or rng.get("int", False)):
            raise ConfigError(
                "confirm.params", name, "confirmation sweeps log-scale float ranges only"
            )
    if not cfg.pipeline.quick:
        return cfg
    return OmegaConf.merge(cfg, cfg.quick_profile)


def _lst(xs: Any) -> str:
    return "[" + ",".join(str(x) for x in xs) + "]"


def _train_overrides(cfg: DictConfig) -> list[str]:
    """Overrides of ``conf/train.yaml`` shared by every proxy and target run."""
    p = cfg.proxy
    return [
        f"model={cfg.family}",
        f"data={cfg.dataset}",
        f"model.depth={p.depth}",
        f"trainer.max_steps={p.steps}",
        f"param.base_width={min(p.widths)}",
        "trainer.threads=1",
        "trainer.progress=off",
        *list(p.overrides),
    ]


def sweep_spec(
    cfg: DictConfig,
    out: Path,
    name: str,
    *,
    widths: list[int],
    scheme: str,
    lrs: list[float],
    params: dict[str, list[Any]],
    seeds: list[int] | None = None,
    depths: list[int] | None = None,
) -> tuple[Any, list[str]]:
    """A :class:`SweepConfig` and the fixed overrides its trial jobs compose (``depths``: a
    depth sweep at the one width in ``widths``)."""
    from muscale.sweep.config import SweepConfig

    sc = SweepConfig(
        name=name,
        depths=None if depths is None else [int(d) for d in depths],
        widths=[int(w) for w in widths],
        schemes=[scheme],
        seeds=[int(s) for s in (cfg.proxy.seeds if seeds is None else seeds)],
        lrs=[float(x) for x in lrs],
        params={k: list(v) for k, v in params.items()},
        store=str(out / "sweeps.db"),
    )
    fixed = [
        *_train_overrides(cfg),
        f"sweep.name={name}",
        f"sweep.store={sc.store}",
        f"sweep.widths={_lst(sc.widths)}",
        *([] if sc.depths is None else [f"sweep.depths={_lst(sc.depths)}"]),
        f"sweep.schemes=[{scheme}]",
        f"sweep.seeds={_lst(sc.seeds)}",
        f"sweep.lrs={_lst(sc.lrs)}",
        *(f"sweep.params.{k}={_lst(v)}" for k, v in sc.params.items()),
    ]
    return sc, fixed


def _space(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """``search.space`` as plain ranges (unset names dropped)."""
    return {
        str(k): dict(OmegaConf.to_container(v, resolve=True))  # type: ignore[arg-type]
        for k, v in cfg.search.space.items()
        if v is not None
    }


def _range_override(name: str, rng: dict[str, Any]) -> str:
    body = ",".join(
        f"{k}:{str(v).lower() if isinstance(v, bool) else v!r}" for k, v in sorted(rng.items())
    )
    return f"sweep.space.{name}={{{body}}}"


def joint_spec(
    cfg: DictConfig, out: Path, name: str, *, widths: list[int], seeds: list[int]
) -> tuple[Any, list[str]]:
    """A :class:`SweepConfig` of ``search.strategy`` over ``search.space`` (μP, the search
    at the smallest of ``widths``) and the fixed overrides its trial jobs compose: the same
    sweep keys, so the trial job records the same hyperparameters (and keys) as the planner.
    Fixed overrides of a searched value are dropped (each trial sets its own)."""
    from muscale.sweep.config import SweepConfig, space_key

    s, c = cfg.search, cfg.confirm
    space = _space(cfg)
    eta = int(s.eta)
    # first rung ceil(steps / eta^2): rungs r, r*eta, steps (300 -> 34, 102, 300), never a
    # rung just below the last (floor would give 33, 99, 297, 300)
    min_steps = int(s.min_steps) if s.min_steps is not None else -(-int(cfg.proxy.steps) // eta**2)
    search = {
        "trials": int(s.trials),
        "width": min(int(w) for w in widths),
        "seed": int(s.seed),
        "batch": int(s.batch),
        "min_steps": min_steps,
        "eta": eta,
    }
    confirm = {
        "enabled": False,  # the pipeline runs the confirmation as its own stage
        "params": [str(p) for p in c.params],
        "points": int(c.points),
        "spacing": float(c.spacing),
        "seeds": [int(x) for x in c.seeds],
        "extend": int(c.extend),
    }
    sc = SweepConfig(
        name=name,
        widths=[int(w) for w in widths],
        schemes=["mup"],
        seeds=[int(x) for x in seeds],
        strategy=str(s.strategy),
        space=space,
        search=search,
        confirm=confirm,
        store=str(out / "sweeps.db"),
    )
    searched = {space_key(k) + "=" for k in space}
    fixed = [
        *(o for o in _train_overrides(cfg) if not o.startswith(tuple(searched))),
        f"sweep.name={name}",
        f"sweep.store={sc.store}",
        f"sweep.widths={_lst(sc.widths)}",
        "sweep.schemes=[mup]",
        f"sweep.seeds={_lst(sc.seeds)}",
        f"sweep.strategy={sc.strategy}",
        f"sweep.search.width={search['width']}",
        *(_range_override(k, v) for k, v in sorted(space.items())),
    ]
    return sc, fixed


def run_spec(
    cfg: DictConfig,
    out: Path,
    pool: Any,
    name: str,
    label: str,
    *,
    stop: dict[str, Any] | None = None,
    **spec: Any,
) -> Any:
    """One grid sweep: :func:`sweep_spec` (``name`` and ``spec``) run by :func:`run_stage`
    behind the progress line ``label``."""
    sc, fixed = sweep_spec(cfg, out, name, **spec)
    return run_stage(cfg, out, pool, sc, fixed, label, stop=stop)


def run_stage(
    cfg: DictConfig,
    out: Path,
    pool: Any,
    sc: Any,
    fixed: list[str],
    label: str,
    *,
    plan: Any = None,
    stop: dict[str, Any] | None = None,
) -> Any:
    """Run one sweep in ``pool`` behind one progress line; return its outcome.

    ``plan``: the planner to drive (default: the one of ``sc.strategy``); ``stop``: the
    SIGTERM state of :func:`muscale.train.stop.forwarding_sigterm`."""
    from muscale.sweep.strategy import fixed_overrides
    from muscale.trial_pool import Display, run_sweep

    if plan is not None:  # what the strategy needs on every trial wins (eval at halving rungs)
        for extra in fixed_overrides(plan):
            fixed = [a for a in fixed if not a.startswith(extra.split("=", 1)[0] + "=")]
            fixed = [*fixed, extra]
    display = Display(label, int(cfg.jobs), str(cfg.progress))
    try:
        return run_sweep(
            sc,
            fixed,
            out / "trials" / sc.name,
            pool=pool,
            jobs=int(cfg.jobs),
            display=display,
            planner_factory=None if plan is None else (lambda _cfg: plan),
            stop=stop,
        )
    finally:
        display.close()


def _mean_curve(outcome: Any, *, width: int, match: dict[str, Any]) -> dict[tuple, float]:
    """Mean loss over seeds per (lr, hparams) at ``width``, for trials matching ``match``."""
    acc: dict[tuple, list[float]] = {}
    for t, loss in outcome.losses.values():
        if t.width != width or any(t.hparams.get(k) != v for k, v in match.items()):
            continue
        key = (t.lr, tuple(sorted(t.hparams.items())))
        acc.setdefault(key, []).append(loss)
    return {
        k: statistics.fmean(v) if all(map(math.isfinite, v)) else math.inf for k, v in acc.items()
    }


def run_pipeline(cfg: DictConfig, pool: Any = None) -> PipelineResult:
    """Run every step (see the module docstring) and write ``summary.md``/``summary.json``.

    ``pool``: a :func:`muscale.trial_pool.make_pool` to reuse (a benchmark running more
    sweeps afterwards); by default one is made for this call. A SIGTERM is forwarded to the
    trial workers, which checkpoint and stop (their store rows re-runnable), and ends the
    call with :class:`~muscale.train.stop.Stopped` (exit status 143); re-running the same
    command resumes.
    """
    from muscale.train.stop import forwarding_sigterm
    from muscale.trial_pool import make_pool

    cfg = settings(cfg)
    stop: dict[str, Any] = {}
    with forwarding_sigterm(stop):
        if pool is not None:
            return _pipeline(cfg, pool, stop)
        with make_pool(int(cfg.jobs)) as own:
            return _pipeline(cfg, own, stop)


@dataclass(kw_only=True)
class Tuning:
    """What μP's search and confirmation found: the point, and the outcomes the verdicts,
    fits and costs are read from."""

    lr: float
    hparams: dict[str, Any]  # config key -> searched value
    search: Any  # SweepOutcome of the search stage
    confirms: list[Any]  # SweepOutcomes of the confirmation stage(s)
    sweeps: tuple[str, ...]  # store sweeps holding μP's curves through the point


def _grid_tuning(
    cfg: DictConfig, out: Path, pool: Any, widths: list[int], stop: dict[str, Any]
) -> Tuning:
    """``search.strategy=grid``: LR (``proxy.lrs``) x ``search.params`` at the smallest proxy
    with ``confirm.seeds`` (its curves are the smallest width's in the verdicts), then at the
    other widths each confirmed value around the searched point."""
    from muscale.sweep.config import param_key

    w0, others = widths[0], widths[1:]
    lrs = sorted(float(x) for x in cfg.proxy.lrs)
    search_params = {k: list(v) for k, v in cfg.search.params.items() if v is not None}
    search = run_spec(
        cfg,
        out,
        pool,
        "mup_search",
        f"μP search (w{w0})",
        stop=stop,
        widths=[w0],
        scheme="mup",
        lrs=lrs,
        params=search_params,
        seeds=list(cfg.confirm.seeds),  # its LR curves at w0 are confirmed curves too
    )
    curve = _mean_curve(search, width=w0, match={})
    (lr_best, hp_items), _ = min(curve.items(), key=lambda kv: kv[1])
    best_hp = dict(hp_items)  # config key -> value
    short = {param_key(k): k for k in search_params}
    confirms = []
    n = int(cfg.confirm.points)
    spacing = float(cfg.confirm.spacing)
    for name in cfg.confirm.params:
        if name == "lr":
            c_lrs = [lr_best * 2.0 ** (spacing * (i - n // 2)) for i in range(n)]
            c_params = {short[k]: [v] for k, v in best_hp.items()}
        else:
            key = param_key(name)
            c_lrs = [lr_best]
            values = list(search_params[name])
            if "lr" in cfg.confirm.params:  # the searched point itself is in the LR confirmation
                values = [v for v in values if v != best_hp[key]]
            if not values:
                continue
            c_params = {short[k]: ([v] if k != key else values) for k, v in best_hp.items()}
        confirms.append(
            run_spec(
                cfg,
                out,
                pool,
                f"mup_confirm_{name}",
                f"μP confirm {name} (w{_lst(others)})",
                stop=stop,
                widths=others,
                scheme="mup",
                lrs=c_lrs,
                params=c_params,
                seeds=list(cfg.confirm.seeds),
            )
        )
    return Tuning(
        lr=lr_best,
        hparams=best_hp,
        search=search,
        confirms=confirms,
        sweeps=("mup_search", *(f"mup_confirm_{n}" for n in cfg.confirm.params)),
    )


def _joint_tuning(
    cfg: DictConfig, out: Path, pool: Any, widths: list[int], stop: dict[str, Any]
) -> Tuning:
    """``search.strategy`` random | asha | tpe | cmaes: the planners of
    :mod:`muscale.sweep.search` over ``search.space`` at the smallest proxy, then their
    confirmation (:class:`muscale.sweep.search.Confirm`) at every proxy width, the smallest
    included: each of ``confirm.params`` swept around the found point with ``confirm.seeds``
    (curves whose best point is on the edge extended outward)."""
    from muscale.errors import UserError
    from muscale.sweep.config import space_key
    from muscale.sweep.search import Confirm, SearchPlanner, best_point

    w0 = widths[0]
    steps = int(cfg.proxy.steps)
    sc, fixed = joint_spec(cfg, out, "mup_search", widths=widths, seeds=list(cfg.search.seeds))
    plan = SearchPlanner(sc, max_steps=steps)
    label = f"μP {cfg.search.strategy} search (w{w0})"
    search = run_stage(cfg, out, pool, sc, fixed, label, plan=plan, stop=stop)
    found = best_point(plan.phases["mup"].scored(search.losses))
    if found is None:
        raise UserError(
            f"every μP search trial at width {w0} diverged or failed; narrow search.space "
            "(e.g. a lower search.space.lr.high)"
        )
    point = found[0]
    sc, fixed = joint_spec(cfg, out, "mup_confirm", widths=widths, seeds=list(cfg.confirm.seeds))
    confirm_plan = Confirm(sc, "mup", point)
    label = f"μP confirm {','.join(confirm_plan.params)} (w{_lst(widths)})"
    confirm = run_stage(cfg, out, pool, sc, fixed, label, plan=confirm_plan, stop=stop)
    return Tuning(
        lr=float(point["lr"]),
        hparams={space_key(k): v for k, v in sorted(point.items()) if k != "lr"},
        search=search,
        confirms=[confirm],
        sweeps=("mup_confirm",),
    )


def _pipeline(cfg: DictConfig, pool: Any, stop: dict[str, Any]) -> PipelineResult:
    from muscale.sweep.optima import fit_all, fit_sweep
    from muscale.sweep.store import Store
    from muscale.sweep.transfer import TargetConfig, make_transfer, transferred_lr, write_transfer
    from muscale.trial_pool import run_configs

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(cfg.out) if cfg.out else Path("outputs/pipeline") / stamp
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "pipeline.yaml")
    timings: dict[str, float] = {}
    widths = sorted(int(w) for w in cfg.proxy.widths)
    lrs = sorted(float(x) for x in cfg.proxy.lrs)

    coord_passed = None
    if cfg.coord_check.enabled:
        t0 = time.perf_counter()
        coord_passed = _coord_check(cfg, out / "coord_check")
        timings["coord_check"] = time.perf_counter() - t0

    # 2-3. μP: search at the smallest proxy, confirm around the found point
    t0 = time.perf_counter()
    tune = (_grid_tuning if cfg.search.strategy == "grid" else _joint_tuning)(
        cfg, out, pool, widths, stop
    )
    best_hp = tune.hparams
    timings["search+confirm"] = time.perf_counter() - t0

    # 4. SP: what a user does without μP, the LR swept at every proxy width
    t0 = time.perf_counter()
    label = f"SP LR sweep (w{_lst(widths)})"
    sp_sweep = run_spec(
        cfg, out, pool, "sp", label, stop=stop, widths=widths, scheme="sp", lrs=lrs, params={}
    )
    timings["sp_sweep"] = time.perf_counter() - t0

    # 5. fits, verdicts, transfer: the same fits as `muscale fit` on this store
    t0 = time.perf_counter()
    tol = float(cfg.confirm.tol)
    store = Store(str(out / "sweeps.db"), create=False)
    curve_recs = [r for r in store.records() if r.scheme == "mup" and r.sweep in tune.sweeps]
    param_fits = fit_all(
        curve_recs, params=list(cfg.confirm.params), scale="width", scheme="mup", tol=tol
    )
    verdicts = [Verdict.of(param_fits[n]) for n in cfg.confirm.params]
    # μP's LR curve at every width, at the searched multipliers
    mup_recs = [r for r in curve_recs if r.hparams == best_hp]
    sp_recs = store.records("sp")
    fit_mup = fit_sweep(mup_recs, slope_tol=tol)
    fit_sp = fit_sweep(sp_recs, slope_tol=tol)
    (out / "fit.json").write_text(
        json.dumps(
            {
                "mup": fit_mup.to_json(),
                "sp": fit_sp.to_json(),
                "mup_params": {n: f.to_json() for n, f in param_fits.items()},
            },
            indent=2,
            default=str,
        )
    )
    tw = int(cfg.target.width)
    steps = int(cfg.target.steps or cfg.proxy.steps)
    target = TargetConfig(
        width=tw,
        depth=cfg.target.depth,
        max_steps=steps,
        device="auto",
        precision="auto",
        compile=False,
    )
    # every confirmed value by its fit across the proxies (muscale.sweep.transfer's "auto":
    # μP's premise is a width-independent optimum, so the mean unless it clearly drifts,
    # then its trend); a searched value that was not confirmed, as found
    tdict = make_transfer(
        fit_mup,
        mup_recs,
        target,
        scheme="mup",
        method="auto",
        store=str(out / "sweeps.db"),
        param_fits={n: f for n, f in param_fits.items() if n != "lr"},
    )
    # the pipeline owns its out dir (fit.json and plots are rewritten too): a re-run replaces
    target_path = write_transfer(tdict, out / f"target_w{tw}.yaml", overwrite=True)
    x_sp, _, sp_method = transferred_lr(fit_sp, "sp", tw, "auto")
    timings["fit_transfer"] = time.perf_counter() - t0

    # 6. both at the target
    t0 = time.perf_counter()
    mup_base = OmegaConf.merge(
        _compose_train([f"model={cfg.family}", f"data={cfg.dataset}"]),
        {k: v for k, v in tdict.items() if k not in ("defaults", "provenance")},
    )
    sp_base = _compose_train(
        [
            *_train_overrides(cfg),
            "param=sp",
            f"model.width={tw}",
            f"optim.lr={2.0**x_sp!r}",
            f"trainer.max_steps={steps}",
        ]
    )
    if cfg.target.depth is not None:
        sp_base.model.depth = int(cfg.target.depth)
    jobs = []
    for s in cfg.target.seeds:
        for scheme, base in (("mup", mup_base), ("sp", sp_base)):
            c = OmegaConf.merge(
                base, {"trainer": {"seed": int(s), "threads": 1, "progress": "off"}}
            )
            jobs.append(
                (
                    f"{scheme}_s{s}",
                    OmegaConf.to_container(c, resolve=True),
                    str(out / "target_runs" / f"{scheme}_w{tw}_s{s}"),
                )
            )
    target_out = run_configs(
        jobs,
        pool=pool,
        jobs=int(cfg.jobs),
        label=f"target w{tw}",
        progress=str(cfg.progress),
        stop=stop,
    )
    timings["target_runs"] = time.perf_counter() - t0

    mup_tuning = [tune.search, *tune.confirms]
    stages = {
        "μP search": _stage_cost([tune.search]),
        "μP confirm": _stage_cost(tune.confirms),
        "SP proxies": _stage_cost([sp_sweep]),
    }
    mup = SchemeResult(
        scheme="mup",
        tuned={k: v["value"] for k, v in tdict["provenance"]["tuned"].items()},
        target_losses=[target_out[n] for n, _, _ in jobs if n.startswith("mup")],
        tuning_cpu_s=sum(o.cpu_s for o in mup_tuning),
        tuning_flops=sum(o.flops for o in mup_tuning),
        tuning_trials=sum(len(o.costs) for o in mup_tuning),
    )
    sp = SchemeResult(
        scheme="sp",
        tuned={"optim.lr": float(2.0**x_sp), "lr_method": sp_method},  # type: ignore[dict-item]
        target_losses=[target_out[n] for n, _, _ in jobs if n.startswith("sp")],
        tuning_cpu_s=sp_sweep.cpu_s,
        tuning_flops=sp_sweep.flops,
        tuning_trials=len(sp_sweep.costs),
    )
    result = PipelineResult(
        out=out,
        coord_passed=coord_passed,
        target_width=tw,
        proxy_widths=widths,
        mup=mup,
        sp=sp,
        verdicts=verdicts,
        target_config=target_path,
        timings=timings,
        stages=stages,
        strategy=str(cfg.search.strategy),
        searched={"optim.lr": float(tune.lr), **best_hp},
    )
    (out / "summary.md").write_text(summary_markdown(result))
    (out / "summary.json").write_text(json.dumps(result.to_json(), indent=2, default=str))
    return result


def _compose_train(overrides: list[str]) -> DictConfig:
    from muscale.hydra_app import compose

    return compose("train", overrides)


def _coord_check(cfg: DictConfig, out: Path) -> bool:
    from muscale.coord import run_coord_check_from_config

    c = cfg.coord_check
    return run_coord_check_from_config(
        model=str(cfg.family),
        widths=list(c.widths),
        steps=int(c.steps),
        seeds=int(c.seeds),
        out=out,
    )


def _fmt_loss(losses: list[float]) -> str:
    m = statistics.fmean(losses)
    if len(losses) > 1:
        return f"{m:.4g} ± {statistics.stdev(losses):.2g}"
    return f"{m:.4g}"


def summary_markdown(r: PipelineResult) -> str:
    """The side-by-side table: target loss, tuning compute, and the verdicts."""
    n_seeds = len(r.mup.target_losses)
    diff = r.mup.target_loss - r.sp.target_loss
    spread = max(
        (x for x in (r.mup.target_sd, r.sp.target_sd) if math.isfinite(x)), default=math.nan
    )
    if not math.isfinite(spread):
        call = "one seed: no spread to judge against"
    elif diff < -2 * spread:
        call = "μP better beyond the seed spread"
    elif diff > 2 * spread:
        call = "SP better beyond the seed spread"
    else:
        call = "within the seed spread"
    lines = [
        "# muscale pipeline summary",
        "",
        f"Proxies at widths {', '.join(map(str, r.proxy_widths))}; target width "
        f"{r.target_width} ({r.target_width // min(r.proxy_widths)}x the smallest proxy), "
        f"{n_seeds} seed(s). Target loss is the final eval loss, mean ± sd over seeds.",
        "",
        "| scheme | transferred | target loss | tuning CPU-s | tuning FLOPs | trials |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in (r.mup, r.sp):
        tuned = ", ".join(
            f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in s.tuned.items()
        )
        lines.append(
            f"| {'μP' if s.scheme == 'mup' else 'SP'} | {tuned} | {_fmt_loss(s.target_losses)} | "
            f"{s.tuning_cpu_s:.4g} | {s.tuning_flops:.3g} | {s.tuning_trials} |"
        )
    lines += [
        "",
        f"μP − SP at the target: {diff:+.4f} ({call}).",
        "",
        "| tuned value | verdict across proxy widths | slope (oct/doubling) | 95% CI | "
        "optimum per width |",
        "| --- | --- | --- | --- | --- |",
    ]
    for v in r.verdicts:
        opt = ", ".join(f"{w}: {x:.3g}" for w, x in sorted(v.optima.items()))
        ci = f"{v.ci[0]:+.3g}..{v.ci[1]:+.3g}" if all(map(math.isfinite, v.ci)) else "none"
        lines.append(f"| {v.param} | {v.kind} ({v.reason}) | {v.slope:+.3g} | {ci} | {opt} |")
    lines += [
        "",
        f"Where μP's tuning compute went (search strategy: {r.strategy}):",
        "",
        "| stage | trials | CPU-s | FLOPs |",
        "| --- | --- | --- | --- |",
    ]
    for name, c in r.stages.items():
        lines.append(f"| {name} | {c['trials']:.0f} | {c['cpu_s']:.4g} | {c['flops']:.3g} |")
    if r.coord_passed is not None:
        verdict_ = "passed" if r.coord_passed else "did not pass (coord_check/report.json)"
        lines += ["", f"Coordinate check (μP): {verdict_}."]
    lines += [
        "",
        "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in r.timings.items()),
        "",
        f"Target config (every tuned value, with provenance): `{r.target_config}`",
    ]
    return "\n".join(lines) + "\n"
