r"""The coordinate check's seeds run as one batched model (``torch.func.vmap``).

The protocol (:mod:`muscale.coord.run`; TP5 §D.1) trains ``seeds`` copies of the same model,
differing only in their initial weights. Here the copies are built by the factory exactly as
in the sequential path (one forked RNG seeded per seed), their parameters and buffers are
stacked along a new leading dimension of size ``S``, and every forward runs once for all
seeds: ``vmap`` over ``functional_call`` on the first copy (the *template*). Because the
seeds are independent, the gradient of :math:`\sum_s L_s` with respect to the stacked tensor
is the stack of the per-seed gradients, so one ordinary reverse pass gives every seed's
gradient (``None`` where a parameter got none, as in the sequential path).

The optimizer is built on the template as in the sequential path, so its parameter groups
(the plan's per-tensor LR, ε and weight decay, or those of a user's callable such as
microsoft/mup's ``MuAdam``, which reads ``p.infshape``) are the same; the template's
Parameters then hold the stacked data. One step on ``(S, ...)`` tensors is ``S`` steps only
for an **element-wise** update, so only ``torch.optim.Adam``, ``AdamW`` and ``SGD`` (fused or
not; subclasses that keep their ``step``) are batched. Anything else — another optimizer,
per-seed shapes that differ, hooks or parametrizations on the model, one seed — runs the
sequential path, decided by :func:`unbatchable`; a forward that ``vmap`` cannot run (``.item()``,
data-dependent control flow, random ops such as dropout, in-place buffer updates such as
BatchNorm's running statistics) raises :class:`Unbatchable` and the caller reruns the size
sequentially. The statistics are never computed two different ways: :mod:`.record`'s
:func:`~muscale.coord.record.level` and :func:`~muscale.coord.record.change` reduce the same
hooked values, :math:`x_0` flowing out of the first forward and back in as an input.

Speed: on a CPU this path was *slower* than one seed at a time at every width of the
benchmark (``tools/bench_coord_check.py --seed-paths``; docs/coord_check.md, "Speed"): the
matmuls dominate, ``bmm`` over the seeds is no faster than one ``mm`` per seed, and the
per-op overhead it saves is a few percent at widths ≤ 256. It also holds every seed's model
and optimizer state at once. So ``collect`` runs it only when asked (``batch_seeds=True``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from muscale.coord import record
from muscale.coord.functional_optim import FunctionalOptimizer
from muscale.coord.points import Point

#: optimizers whose step is element-wise in every option (so a step on stacked seeds is one
#: step per seed); a subclass qualifies only while it keeps the base class's ``step``
ELEMENTWISE: tuple[type[torch.optim.Optimizer], ...] = (
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.SGD,
)


class Unbatchable(Exception):
    """The batched forward failed; ``reason`` says why (the caller runs the seeds one by one)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def unbatchable(models: Sequence[nn.Module], opt: torch.optim.Optimizer) -> str | None:
    """Why these per-seed models (``models[0]`` the template that ``opt`` was built on)
    cannot run batched, or None when they can."""
    if len(models) < 2:
        return "one seed"
    if not _elementwise(type(opt)):
        return f"{type(opt).__name__} is not an element-wise torch optimizer (Adam, AdamW, SGD)"
    template = models[0]
    own = {id(p) for p in template.parameters()}
    if any(id(p) not in own for g in opt.param_groups for p in g["params"]):
        return "the optimizer holds tensors that are not the model's parameters"
    ref = _signature(template)
    for m in models[1:]:
        if _signature(m) != ref:
            return "the seeds' models differ in their parameters' or buffers' names or shapes"
    for m in models:
        for mod in m.modules():
            if mod._forward_hooks or mod._forward_pre_hooks or mod._backward_hooks:
                return f"{type(mod).__name__} has hooks of its own"
            if getattr(mod, "parametrizations", None) is not None:
                return f"{type(mod).__name__} has parametrizations"
    return None


def _elementwise(cls: type) -> bool:
    """One of :data:`ELEMENTWISE`, or a subclass that does not define its own ``step``
    (compared by class dictionaries: torch wraps ``step`` on the class at construction)."""
    if cls is FunctionalOptimizer:  # the same kernels as ELEMENTWISE's steps
        return True
    for c in cls.__mro__:
        if c in ELEMENTWISE:
            return True
        if "step" in vars(c):
            return False
    return False


def _signature(model: nn.Module) -> list[tuple[str, tuple[int, ...], torch.dtype, str, bool]]:
    tensors = [*model.named_parameters(), *model.named_buffers()]
    return [(n, tuple(t.shape), t.dtype, t.device.type, t.requires_grad) for n, t in tensors]


def _stack(tensors: Sequence[Tensor], perm: Sequence[int] | None = None) -> Tensor:
    """``torch.stack(tensors)``, stored in the order ``perm`` (a permutation of the stacked
    dims, the seed dim first): one copy, per seed, so that a 2-D transpose takes torch's
    blocked path (3.5x faster than permuting the 3-D stack, measured on a 3 x 4096 x 1024
    weight)."""
    with torch.no_grad():
        if perm is None:
            return torch.stack([t.detach() for t in tensors])
        inner = [d - 1 for d in perm[1:]]
        first = tensors[0].permute(inner)
        out = torch.empty((len(tensors), *first.shape), dtype=first.dtype, device=first.device)
        for k, t in enumerate(tensors):
            out[k].copy_(t.detach().permute(inner))
        return out


def stack_into_template(
    models: Sequence[nn.Module], layout: dict[str, list[int]]
) -> dict[str, Tensor]:
    """Give the template's (``models[0]``) Parameters the stacked ``(S, ...)`` data of all
    seeds, stored in the order ``layout`` names (:func:`_adopt_grad_layout`); return the
    stacked buffers. The Parameter objects stay the same (the optimizer refers to them)."""
    template = models[0]
    per_seed = [dict(m.named_parameters()) for m in models]
    for name, p in template.named_parameters():
        p.data = _stack([d[name] for d in per_seed], layout.get(name))
    bufs = [dict(m.named_buffers()) for m in models]
    return {name: _stack([d[name] for d in bufs]) for name in bufs[0]}


def train_and_record(
    models: Sequence[nn.Module],
    opt: torch.optim.Optimizer,
    args: tuple[Any, ...],
    target: Any,
    loss_fn: Callable[[Any, Any], Tensor],
    points: Sequence[Point],
    steps: int,
    precision: str = "fp32",
    layout: dict[str, list[int]] | None = None,
) -> tuple[Tensor, Tensor]:
    """The protocol of :func:`muscale.coord.run.train_and_record` for all seeds at once;
    returns ``stats (S, points, steps + 1, 2)`` and ``losses (S, steps + 1)``.

    ``models`` are the seeds' models in seed order, ``opt`` the optimizer built on
    ``models[0]`` (check :func:`unbatchable` first); ``args``/``target`` are on the models'
    device. ``layout``: the memory order of each stacked parameter, learnt at the first
    backward (:func:`_adopt_grad_layout`); pass the same dict for every size of a check, so
    that later sizes are stacked in that order at once. Raises :class:`Unbatchable` when a
    forward cannot run under ``vmap``."""
    template = models[0]
    params = dict(template.named_parameters())
    perms = {} if layout is None else layout  # name -> how its stacked data is laid out
    buffers = stack_into_template(models, perms)
    # Python attributes of the user's Parameters (mup's ``infshape``, read by MuReadout's
    # forward) must be seen on the tensors functional_call puts in their place
    extra = {n: dict(vars(p)) for n, p in params.items() if vars(p)}
    device = next(iter(params.values())).device if params else torch.device("cpu")
    cast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    n_pts, s = len(points), len(models)
    stats = torch.zeros(s, n_pts, steps + 1, 2, device=device)
    losses = torch.full((s, steps + 1), float("nan"), device=device)
    taps = record.Taps(template, points)

    def forward(p: dict[str, Tensor], b: dict[str, Tensor], x0: list[Tensor]) -> Any:
        for name, attrs in extra.items():
            p[name].__dict__.update(attrs)
        taps.values.clear()
        with cast:
            loss = loss_fn(functional_call(template, (p, b), args), target)
        vals = [taps.values[i] for i in range(n_pts)]
        lev = torch.stack([record.level(x, n) for x, n, _ in vals])
        if not x0:  # t = 0: x_0 flows out, to come back in at t >= 1
            firsts = [x if fresh else x.clone() for x, _, fresh in vals]
            return loss, lev, torch.zeros_like(lev), firsts
        chg = torch.stack([record.change(x, x0[i], n) for i, (x, n, _) in enumerate(vals)])
        return loss, lev, chg, x0

    batched = vmap(forward, in_dims=(0, 0, 0), randomness="error")
    versions = {n: b._version for n, b in buffers.items()}
    x0: list[Tensor] = []
    template.train()
    with taps, warnings.catch_warnings():
        # vmap runs SDPA per seed on CPU (no batching rule yet) and says so; that is expected
        warnings.filterwarnings("ignore", message=".*not yet implemented the batching rule.*")
        for t in range(steps + 1):
            try:
                with torch.set_grad_enabled(t < steps):
                    leaves = {
                        n: p.detach().requires_grad_(p.requires_grad) for n, p in params.items()
                    }
                    loss, lev, chg, x0 = batched(_views(leaves, perms), buffers, x0)
            except Exception as exc:  # a model or loss that vmap cannot run
                raise Unbatchable(f"vmap could not run the forward: {exc}") from exc
            if t == 0 and any(b._version != versions[n] for n, b in buffers.items()):
                raise Unbatchable("the forward updates buffers in place (e.g. BatchNorm)")
            if loss.shape != (s,):  # backward needs a scalar loss per seed: let it say so
                raise Unbatchable(f"the loss has shape {tuple(loss.shape[1:])}, not a scalar")
            stats[:, :, t, 0], stats[:, :, t, 1] = lev.detach(), chg.detach()
            losses[:, t] = loss.detach()
            if t < steps:
                try:
                    grads = _gradients(loss, leaves)
                except Exception as exc:
                    raise Unbatchable(f"vmap could not run the backward: {exc}") from exc
                if t == 0:
                    _adopt_grad_layout(params, grads, perms)
                for name, g in grads.items():  # fused steps need them contiguous (see below)
                    params[name].grad = None if g is None else g.contiguous()
                opt.step()
    return stats, losses


def _gradients(loss: Tensor, leaves: dict[str, Tensor]) -> dict[str, Tensor | None]:
    """Each seed's gradient, stacked (None where a parameter got none, as after
    ``zero_grad(set_to_none=True)`` and ``backward``). The seeds are independent, so the
    gradient of the summed losses is the stack of the per-seed gradients.

    The forward ran on ``leaves``, detached aliases of the parameters' data, so autograd
    caches nothing on the Parameters themselves (their stored layout changes once,
    :func:`_adopt_grad_layout`); ``autograd.grad``, not ``backward``, which would copy every
    gradient into its parameter's memory layout."""
    names = [n for n, leaf in leaves.items() if leaf.requires_grad]
    grads = torch.autograd.grad(loss.sum(), [leaves[n] for n in names], allow_unused=True)
    return dict(zip(names, grads, strict=True))


def _adopt_grad_layout(
    params: dict[str, nn.Parameter], grads: dict[str, Tensor | None], perms: dict[str, list[int]]
) -> None:
    """Store each stacked parameter in the memory order its gradient arrives in.

    Under ``vmap`` a linear layer's weight gradient comes out transposed (``bmm`` gives
    :math:`x^\top g` as ``(S, in, out)``). Torch's fused Adam/SGD on CPU must not see a
    non-contiguous gradient: in torch 2.13 they then compute a wrong update (measured: the
    entries are read as if contiguous), so every gradient is made contiguous before the
    step — for a ``(3, 1024, 4096)`` MLP weight on one CPU thread that strided copy took
    110 ms, more than the step's matmuls. The update is element-wise, so the Parameter may
    hold its entries in any order: after the first backward each such Parameter gets the
    permuted, contiguous copy of its data (``perms[name]``; the seed dimension stays first,
    as :func:`muscale.coord.eps_probe.measure` reads rows of it), and the model sees the
    inverse permutation, a view (:func:`_views`); later gradients then arrive contiguous.
    Done before the optimizer's first step, so its state is created in the same order."""
    for name, g in grads.items():
        if g is None or g.is_contiguous() or name in perms:
            continue  # (a layout learnt at an earlier size that no longer fits: copied)
        strides = g.stride()
        perm = sorted(range(g.dim()), key=lambda d: -strides[d])
        if perm[0] != 0 or not g.permute(perm).is_contiguous():
            continue  # an order that moves the seed dimension: copied at every step
        p = params[name]
        p.data = _stack(list(p.data), perm)
        grads[name] = g.permute(perm)
        perms[name] = perm


def _views(params: dict[str, Tensor], perms: dict[str, list[int]]) -> dict[str, Tensor]:
    """The parameters in the model's own shapes (``(S, *shape)``), as views of the stored data."""
    return {n: p.permute(_inverse(perms[n])) if n in perms else p for n, p in params.items()}


def _inverse(perm: Sequence[int]) -> list[int]:
    return sorted(range(len(perm)), key=perm.__getitem__)
