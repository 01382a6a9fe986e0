"""The library call: train each width (or depth) for a few steps and record coordinates.

Protocol (TP5, Yang et al. 2022, §D.1; the design doc's "Coordinate check"): one fixed
batch; for every size and seed build a fresh model, then for ``t = 0..T`` run the forward
pass on the batch (the hooks record :math:`x_t`), and for ``t < T`` take one optimizer step
on that same forward's loss. So there are ``T + 1`` forwards and ``T`` backwards per model,
with a constant learning rate (any schedule in an ``OptimConfig`` is not stepped) and no
gradient clipping.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from muscale.coord import batched, eps_probe
from muscale.coord import workers as workers_mod
from muscale.coord.buffers import BufferPool, KeptGrads
from muscale.coord.functional_optim import FunctionalOptimizer
from muscale.coord.points import Point, PointsSpec, resolve_points
from muscale.coord.record import Recorder
from muscale.errors import UserError, check_choice
from muscale.models.losses import cross_entropy  # the default loss; re-exported
from muscale.optim.config import OptimConfig
from muscale.param.plan import Plan

AXES = ("width", "depth")
#: forward precision: fp32 (default, calibrated) or bf16 autocast (opt-in, faster)
PRECISIONS = ("fp32", "bf16")

#: ``size -> model`` or ``(size, seed) -> model``; a model may come with its plan
Factory = Callable[..., "nn.Module | tuple[nn.Module, Plan]"]
#: an ``OptimConfig`` (needs the plan) or ``model -> optimizer`` / ``(model, plan) -> optimizer``
OptimizerRecipe = "OptimConfig | Callable[..., torch.optim.Optimizer]"
Batch = tuple[Any, Any]


@dataclass(kw_only=True)
class CoordData:
    """Raw statistics of a coordinate check.

    ``level``/``change`` are ``(sizes, seeds, points, steps + 1)`` arrays; ``loss`` is
    ``(sizes, seeds, steps + 1)`` (the loss of the forward at step t, on the fixed batch;
    :mod:`muscale.coord.overshoot` reads it). ``scheme``/``family``/``depth_alpha`` come
    from the plans (None when the factory returned bare modules).
    """

    axis: str
    sizes: list[int]
    steps: int
    seeds: int
    points: list[Point]
    level: np.ndarray
    change: np.ndarray
    loss: np.ndarray
    scheme: str | None = None
    family: str = "adam"
    depth_alpha: float | None = None
    wall_s: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def mean_over_seeds(self) -> tuple[np.ndarray, np.ndarray]:
        """Seed-averaged ``(sizes, points, steps + 1)`` level and change (fits use these)."""
        return self.level.mean(axis=1), self.change.mean(axis=1)


def _n_params(fn: Callable[..., Any]) -> int:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in sig.parameters.values()):
        return 2
    return sum(p.kind in kinds for p in sig.parameters.values())


def _build(factory: Factory, size: int, seed: int) -> tuple[nn.Module, Plan | None]:
    out = factory(size, seed) if _n_params(factory) >= 2 else factory(size)
    if isinstance(out, tuple):
        model, plan = out
    else:
        model, plan = out, None
    if not isinstance(model, nn.Module):
        raise UserError(f"the coord-check factory returned {type(model).__name__}, not a module")
    return model, plan


def _optimizer(
    recipe: Any, model: nn.Module, plan: Plan | None, pool: BufferPool | None = None
) -> torch.optim.Optimizer:
    """The optimizer a recipe asks for; ``pool`` lends Adam buffers to muscale's functional
    step (:mod:`muscale.coord.buffers`), other optimizers ignore it."""
    if isinstance(recipe, OptimConfig):
        if plan is None:
            raise UserError(
                "optimizer=OptimConfig needs the model's plan: make the factory return "
                "(model, plan), or pass optimizer=callable(model) -> torch optimizer"
            )
        from muscale.coord.functional_optim import functional_optimizer
        from muscale.optim.config import ScheduleConfig
        from muscale.optim.optimizer import make_optimizer

        # constant LR: the scheduler would set lr = base · schedule(0) (0 during warmup)
        const = dataclasses.replace(
            recipe, schedule=ScheduleConfig(name="constant"), kwargs=_fused_kwargs(recipe, model)
        )
        # torch's Adam/AdamW/SGD kernels without the optimizer object, whose construction
        # imports torch._dynamo (1.2-1.5 s of a 4 s check): muscale.coord.functional_optim
        fast = functional_optimizer(model, plan, const, pool)
        if fast is not None:
            return fast  # type: ignore[return-value]
        opt, _ = make_optimizer(model, plan, const, total_steps=1)
        return opt
    if callable(recipe):
        return recipe(model, plan) if _n_params(recipe) >= 2 else recipe(model)
    raise UserError(f"optimizer={recipe!r}: pass an OptimConfig or a callable(model)")


#: optimizer kwargs that choose an implementation; when the user sets any, theirs stands
_IMPL_KWARGS = ("fused", "foreach", "differentiable", "capturable")
#: devices with fused Adam/AdamW/SGD kernels in torch >= 2.4 (and tested here)
_FUSED_DEVICES = ("cpu", "cuda")


def _fused_kwargs(recipe: OptimConfig, model: nn.Module) -> dict[str, Any]:
    """``recipe.kwargs`` plus ``fused=True`` where torch has a fused step for the class and
    the model's parameters: the same update rule, one pass over memory instead of ~7
    (Adam's single-tensor path on CPU, the default there, was 18 % of a check's time).
    Fused and single-tensor steps agree to float rounding (tests/test_coord_speed.py)."""
    from muscale.optim.optimizer import optimizer_class

    kwargs = dict(recipe.kwargs)
    if any(k in kwargs for k in _IMPL_KWARGS):
        return kwargs
    try:
        cls = optimizer_class(recipe)
        accepted = inspect.signature(cls.__init__).parameters
    except (UserError, TypeError, ValueError):
        return kwargs
    params = list(model.parameters())
    if (
        "fused" in accepted
        and params
        and all(p.is_floating_point() and p.device.type in _FUSED_DEVICES for p in params)
    ):
        kwargs["fused"] = True
    return kwargs


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, Tensor):
        return x.to(device)
    if isinstance(x, (tuple, list)):
        return type(x)(_to(v, device) for v in x)
    return x


def train_and_record(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    batch: Batch,
    loss_fn: Callable[[Any, Any], Tensor],
    points: Sequence[Point],
    steps: int,
    precision: str = "fp32",
) -> tuple[Tensor, Tensor]:
    """Run the protocol on one model; return ``stats (points, steps+1, 2)`` and losses.

    ``precision="bf16"``: forwards under ``torch.autocast`` in bfloat16 (matmuls ~3x faster
    on CPUs with AVX512-BF16; parameters, optimizer and statistics stay float32). The
    gradients are kept between steps, with ``zero_grad(set_to_none=True)``'s values
    (:class:`~muscale.coord.buffers.KeptGrads`), and left on the model at the end."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    inputs, target = _to(batch[0], device), _to(batch[1], device)
    args = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
    losses = torch.full((steps + 1,), float("nan"), device=device)
    model.train()
    grads = KeptGrads(model.parameters())
    cast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    with Recorder(model, points, steps) as rec:
        for t in range(steps + 1):
            rec.t = t
            if t == steps:  # the last measurement needs no backward
                with torch.no_grad(), cast:
                    out = model(*args)
                    losses[t] = loss_fn(out, target).detach()
                break
            with cast:
                out = model(*args)
                loss = loss_fn(out, target)
            losses[t] = loss.detach()
            grads.before_backward()  # in place of opt.zero_grad(set_to_none=True)
            loss.backward()
            grads.after_backward()
            opt.step()
        return rec.stats, losses


@dataclass(kw_only=True)
class _Job:
    """What every size of a check shares (the arguments of :func:`collect`)."""

    factory: Factory
    seeds: int
    optimizer: Any
    batch: Batch
    loss_fn: Callable[[Any, Any], Tensor]
    points: PointsSpec
    steps: int
    axis: str
    precision: str
    #: the batched path's memory order per stacked parameter, learnt at the first size
    layout: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class _SizeRun:
    """One size's results: ``stats (seeds, points, steps + 1, 2)``, ``losses (seeds, steps +
    1)``, the ε probe's rows (seed order), the plans, the points, the built optimizer's family."""

    stats: Tensor
    losses: Tensor
    eps_rows: list[dict[str, tuple[float, float]]]
    plans: list[Plan | None]
    points: list[Point]
    family: str


def _points(job: _Job, model: nn.Module, size: int, ref: list[Point] | None) -> list[Point]:
    pts = resolve_points(model, job.points, relative=job.axis == "depth")
    _same_points(job, size, pts, ref)
    return pts


def _same_points(job: _Job, size: int, pts: list[Point], ref: list[Point] | None) -> None:
    if ref is not None and [p.label for p in pts] != [p.label for p in ref]:
        raise UserError(
            f"coord-check: the model at {job.axis}={size} has different points "
            f"({[p.label for p in pts]}) than the first one"
        )


@dataclass
class _SeedRun:
    """One size and seed's results (:class:`_SizeRun` stacks a size's seeds)."""

    stats: Tensor  # (points, steps + 1, 2)
    losses: Tensor  # (steps + 1,)
    eps_row: dict[str, tuple[float, float]]
    plan: Plan | None
    points: list[Point]
    family: str


@dataclass
class _Kept:
    """What one seed's run leaves to the next seed of the same size
    (:mod:`muscale.coord.buffers`): the model, when the factory can re-draw it in place
    (``factory.reinit``), and the Adam buffers."""

    size: int | None = None
    model: nn.Module | None = None
    plan: Plan | None = None
    pool: BufferPool = field(default_factory=BufferPool)

    def at(self, size: int) -> _Kept:
        """This, emptied first when it holds another size's memory."""
        if self.size != size:
            self.size, self.model, self.plan, self.pool = size, None, None, BufferPool()
        return self


def _run_seed(
    job: _Job, size: int, seed: int, ref: list[Point] | None, kept: _Kept | None = None
) -> _SeedRun:
    """Build ``factory(size, seed)`` and train it, in a forked RNG seeded with the seed:
    the result depends on nothing else (not on what ran before, nor on the process).
    ``kept``: memory of the previous seed at this size to run in (the same numbers)."""
    reinit = getattr(job.factory, "reinit", None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        redrawn = (
            kept is not None
            and kept.model is not None
            and reinit is not None
            and reinit(kept.model, kept.plan, seed)
        )
        if redrawn:
            assert kept is not None and kept.model is not None
            model, plan = kept.model, kept.plan
        else:
            if kept is not None:  # a model it could not re-draw: freed before the new one
                kept.model = kept.plan = None
            model, plan = _build(job.factory, size, seed)
        pts = _points(job, model, size, ref)
        opt = _optimizer(job.optimizer, model, plan, kept.pool if kept is not None else None)
        family = optimizer_family(opt)
        st, ls = train_and_record(model, opt, job.batch, job.loss_fn, pts, job.steps, job.precision)
        row = eps_probe.measure(model, opt)
    if kept is not None:
        if isinstance(opt, FunctionalOptimizer):
            opt.release()  # its moment buffers to kept.pool
        if reinit is not None:
            kept.model, kept.plan = model, plan
    return _SeedRun(st, ls, row, plan, pts, family)


def _stack(runs: list[_SeedRun]) -> _SizeRun:
    return _SizeRun(
        torch.stack([r.stats for r in runs]),
        torch.stack([r.losses for r in runs]),
        [r.eps_row for r in runs],
        [r.plan for r in runs],
        runs[-1].points,
        runs[-1].family,
    )


def _size_sequential(job: _Job, size: int, ref: list[Point] | None) -> _SizeRun:
    """One model per seed (:func:`_run_seed`), each in the memory of the one before."""
    runs: list[_SeedRun] = []
    kept = _Kept(size=size)
    for seed in range(job.seeds):
        runs.append(_run_seed(job, size, seed, ref, kept))
        ref = runs[-1].points
    return _stack(runs)


def _sizes_forked(job: _Job, sizes: Sequence[int], workers: int) -> list[_SizeRun]:
    """Every size's :func:`_size_sequential` result, its (size, seed) runs spread over
    ``workers`` forked processes (:mod:`muscale.coord.workers`; one thread each), split by a
    cost estimate (a model's parameters grow as width², or as depth). A worker running
    several seeds of one size in a row runs each in the memory of the one before, as one
    process does."""
    jobs = [(int(size), seed) for size in sizes for seed in range(job.seeds)]
    costs = [float(size) ** 2 if job.axis == "width" else float(size) for size, _ in jobs]
    kept = _Kept()  # each worker's own copy

    def run(item: tuple[int, int]) -> _SeedRun:
        size, seed = item
        return _run_seed(job, size, seed, None, kept.at(size))

    runs = workers_mod.map_forked(run, jobs, costs, workers)
    for (size, _), r in zip(jobs, runs, strict=True):
        _same_points(job, size, r.points, runs[0].points)
    return [_stack(runs[i * job.seeds : (i + 1) * job.seeds]) for i in range(len(sizes))]


def _size_batched(job: _Job, size: int, ref: list[Point] | None) -> _SizeRun | str:
    """All seeds as one vmapped model (:mod:`muscale.coord.batched`), each built exactly as
    :func:`_size_sequential` builds it; the reason, as a string, when they cannot be."""
    built = []
    for seed in range(job.seeds):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            built.append(_build(job.factory, size, seed))
    models = [m for m, _ in built]
    pts = ref
    for m in models:
        pts = _points(job, m, size, pts)
    assert pts is not None
    opt = _optimizer(job.optimizer, models[0], built[0][1])
    reason = batched.unbatchable(models, opt)
    if reason is not None:
        return reason
    device = next((p.device for p in models[0].parameters()), torch.device("cpu"))
    inputs, target = _to(job.batch[0], device), _to(job.batch[1], device)
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    try:
        st, ls = batched.train_and_record(
            models, opt, args, target, job.loss_fn, pts, job.steps, job.precision, job.layout
        )
    except batched.Unbatchable as exc:
        return exc.reason
    rows = [eps_probe.measure(models[0], opt, seed=k) for k in range(job.seeds)]
    return _SizeRun(st, ls, rows, [p for _, p in built], pts, optimizer_family(opt))


def collect(
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
    precision: str = "fp32",
    batch_seeds: bool = False,
    workers: int = 1,
) -> CoordData:
    """Train ``factory(size[, seed])`` for ``steps`` steps per size and seed; record stats.

    ``batch`` is ``(inputs, target)`` (``inputs`` a tensor or a tuple of positional
    arguments); ``loss(output, target)`` defaults to :func:`cross_entropy`. Seeds are
    ``0..seeds-1``: passed to a two-argument factory and set as torch's seed (in a forked
    RNG state, so the caller's global RNG is untouched) around building and training.

    ``batch_seeds=True`` runs each size's seeds as one ``vmap``-batched model
    (:mod:`muscale.coord.batched`; the same numbers to float rounding); a model or
    optimizer that cannot be batched then runs sequentially. ``meta["seed_batching"]`` says
    which path ran (``vmap``, ``sequential`` or ``mixed``) and ``meta["seed_batching_reason"]``
    why not ``vmap``. Off by default: on a CPU it was slower than one seed at a time (the
    matmuls dominate and ``bmm`` is no faster than three ``mm``; it also holds all seeds'
    models and Adam states at once, 2.5x the peak memory; docs/coord_check.md, "Speed").

    ``workers > 1`` runs the (size, seed) trainings in that many forked processes with one
    intra-op thread each (:mod:`muscale.coord.workers`; Linux, CPU; not with
    ``batch_seeds``): the same numbers as one process with one thread, sooner on a machine
    with that many free cores. ``meta["workers"]`` records how many ran.
    """
    validate(sizes, steps, seeds, axis)
    check_choice("precision", precision, PRECISIONS)
    workers_mod.check_workers(workers)
    if workers > 1 and batch_seeds:
        raise UserError(
            f"workers={workers} with batch_seeds=True: choose one (worker processes run the "
            "seeds one at a time)"
        )
    loss_fn = loss or cross_entropy
    n_sizes = len(sizes)
    level: np.ndarray | None = None
    change: np.ndarray | None = None
    losses = np.full((n_sizes, seeds, steps + 1), np.nan)
    pts_ref: list[Point] | None = None
    plans: list[Plan | None] = []
    opt_family: str | None = None
    eps_rows: list[dict[str, tuple[float, float]]] = []  # Adam's ε and √v̂ (eps_probe)
    reason: str | None = None if batch_seeds else "batch_seeds=False"
    paths: list[str] = []
    job = _Job(
        factory=factory,
        seeds=seeds,
        optimizer=optimizer,
        batch=batch,
        loss_fn=loss_fn,
        points=points,
        steps=steps,
        axis=axis,
        precision=precision,
    )
    t0 = time.perf_counter()
    forked = _sizes_forked(job, sizes, workers) if workers > 1 else None
    for si, size in enumerate(sizes):
        run: _SizeRun | str
        if forked is not None:
            run = forked[si]
        else:
            run = _size_batched(job, int(size), pts_ref) if reason is None else reason
        if isinstance(run, str):  # not batchable: this size and the rest run one seed at a time
            reason = run
            run = _size_sequential(job, int(size), pts_ref)
        paths.append("sequential" if reason is not None else "vmap")
        if pts_ref is None:
            pts_ref = run.points
            shape = (n_sizes, seeds, len(pts_ref), steps + 1)
            level, change = np.zeros(shape), np.zeros(shape)
        assert level is not None and change is not None
        st = run.stats.double().cpu().numpy()
        level[si], change[si] = st[..., 0], st[..., 1]
        losses[si] = run.losses.double().cpu().numpy()
        eps_rows += run.eps_rows
        plans += run.plans
        opt_family = opt_family or run.family
        del run
    assert pts_ref is not None and level is not None and change is not None
    plan0 = next((p for p in plans if p is not None), None)
    family = plan0.optim_family if plan0 is not None else (opt_family or "adam")
    path = paths[0] if len(set(paths)) == 1 else "mixed"
    return CoordData(
        axis=axis,
        sizes=[int(s) for s in sizes],
        steps=steps,
        seeds=seeds,
        points=pts_ref,
        level=level,
        change=change,
        loss=losses,
        scheme=plan0.scheme if plan0 is not None else None,
        family=family,
        depth_alpha=plan0.depth_alpha if plan0 is not None else None,
        wall_s=time.perf_counter() - t0,
        meta={
            "precision": precision,
            "eps": eps_probe.stack(eps_rows, n_sizes, seeds),
            "seed_batching": path,
            "seed_batching_reason": reason,
            "workers": workers,
        },
    )


def optimizer_family(opt: torch.optim.Optimizer) -> str:
    """The rule-table column of a built optimizer without a plan: ``sgd`` for
    ``torch.optim.SGD`` and its subclasses (mup's ``MuSGD`` builds one), else ``adam``
    (adaptive: Adam, AdamW and the like)."""
    if isinstance(opt, FunctionalOptimizer):
        return "sgd" if opt.rule == "sgd" else "adam"
    return "sgd" if isinstance(opt, torch.optim.SGD) else "adam"


def validate(sizes: Sequence[int], steps: int, seeds: int, axis: str = "width") -> None:
    """Bad input is a :class:`UserError` naming the field (the CLI's exit status 2)."""
    check_choice("axis", axis, AXES)
    name = "widths" if axis == "width" else "depths"
    sizes = list(sizes)
    if len(sizes) < 2:
        raise UserError(f"{name}={sizes}: give at least 2 {name} to fit a slope")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0:
            raise UserError(f"{name}={sizes}: every entry must be a positive integer, got {s!r}")
    if len(set(sizes)) < 2:
        raise UserError(f"{name}={sizes}: give at least 2 different {name}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UserError(f"steps={steps!r}: must be an integer >= 1")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise UserError(f"seeds={seeds!r}: must be an integer >= 1")


# --- muscale configs -> factory, batch ------------------------------------------------------


@dataclass(frozen=True)
class ConfigFactory:
    """``(size, seed) -> (model, plan)`` for a muscale model config at varying width/depth
    (what :func:`config_factory` returns), and :meth:`reinit` for the seeds after the first."""

    model_cfg: Any
    param_cfg: Any
    family: str
    axis: str
    device: str

    def __call__(self, size: int, seed: int) -> tuple[nn.Module, Plan]:
        from muscale.build import build_model

        key = "width" if self.axis == "width" else "depth"
        cfg = dataclasses.replace(self.model_cfg, **{key: int(size)})
        return build_model(
            cfg, self.param_cfg, optim_family=self.family, seed=seed, device=self.device
        )

    def reinit(self, model: nn.Module, plan: Plan, seed: int) -> bool:
        """Re-draw ``model`` (built by this factory, trained or not) in place into what
        ``self(size, seed)`` returns, and say so; False, touching nothing, for families where
        that is not known to hold. For muscale's own families it holds: building draws
        nothing (no torch default init) and :func:`~muscale.param.init.init_parameters`
        writes every parameter from ``seed`` alone (``tests/test_build_undrawn.py``); the
        buffers (RoPE tables) are constants. The check uses it so that the next seed runs in
        memory already mapped (:mod:`muscale.coord.buffers`). A factory that changes the
        models it returns (a wrapper, a subclass) must not offer this method as it is: a
        plain function wrapping this object has none, so every seed is built afresh."""
        from muscale.models import FAMILIES
        from muscale.param.init import init_parameters

        if self.model_cfg.family not in FAMILIES:
            return False
        init_parameters(model, plan, seed=seed)
        return True


def config_factory(
    model_cfg: Any,
    param_cfg: Any,
    *,
    family: str = "adam",
    axis: str = "width",
    device: str = "cpu",
) -> ConfigFactory:
    """``(size, seed) -> (model, plan)`` for a muscale model config at varying width/depth.

    Slopes do not depend on the base shape, so a base width above the smallest width is
    allowed here; in depth mode ``param.base_depth`` defaults to the smallest depth (with
    ``None`` every depth would be its own base and the depth rules would do nothing).
    """
    from muscale.build import param_config
    from muscale.models import model_config

    mcfg, pcfg = model_config(model_cfg), param_config(param_cfg)
    pcfg = dataclasses.replace(pcfg, allow_base_above_width=True)
    return ConfigFactory(model_cfg=mcfg, param_cfg=pcfg, family=family, axis=axis, device=device)


def synthetic_batch(
    model_cfg: Any,
    *,
    batch_size: int = 8,
    seq_len: int | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> Batch:
    """A fixed batch for a muscale model: uniform random tokens and next tokens (GPT) or
    ``x ~ N(0, I)`` with uniform random class labels (MLP); seeded, no data files."""
    from muscale.models import MLPConfig, model_config

    mcfg = model_config(model_cfg)
    g = torch.Generator().manual_seed(seed)
    if not isinstance(mcfg, MLPConfig):  # token models: gpt, hf
        if mcfg.seq_len is None or mcfg.vocab_size is None:
            raise UserError("a synthetic batch needs model.seq_len and model.vocab_size")
        t = min(int(seq_len or mcfg.seq_len), mcfg.seq_len)
        idx = torch.randint(0, mcfg.vocab_size, (batch_size, t + 1), generator=g)
        return idx[:, :-1].to(device), idx[:, 1:].to(device)
    x = torch.randn(batch_size, mcfg.in_dim, generator=g)
    y = torch.randint(0, mcfg.out_dim, (batch_size,), generator=g)
    return x.to(device), y.to(device)
