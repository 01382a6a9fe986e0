"""The coordinate check's optimizer step, through torch's functional kernels.

Why: constructing any ``torch.optim.Optimizer`` calls a method wrapped in
``torch._disable_dynamo`` (``add_param_group``), whose first call imports ``torch._dynamo``:
1.2–1.5 s on these CPUs, a third of the default coordinate check (``docs/coord_check.md``,
"Speed"), spent on a compiler the check never uses. The check's protocol needs only the
update rule. So for muscale's own optimizers — an :class:`~muscale.optim.config.OptimConfig`
whose class is exactly ``torch.optim.Adam``, ``AdamW`` or ``SGD`` — the check calls the same
functional kernels those classes' ``step()`` calls (``torch.optim.adam.adam`` with
``decoupled_weight_decay`` for AdamW, ``torch.optim.sgd.sgd``; fused where torch has a fused
kernel), on the per-tensor groups :func:`muscale.optim.groups.param_groups` builds for
:func:`muscale.optim.optimizer.make_optimizer` (μP's per-layer LR, ε and weight decay), and
keeps the state under torch's names (``step``, ``exp_avg``, ``exp_avg_sq``,
``momentum_buffer``) so the ε probe reads it unchanged. The parameters after every step equal
the class's to float rounding (``tests/test_coord_functional_optim.py``). Any other optimizer,
or an option this module does not mirror, is built as the class itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.optim.adam import adam as adam_kernel
from torch.optim.sgd import sgd as sgd_kernel

from muscale.coord.buffers import BufferPool

#: the classes whose step this module reproduces, and the rule each uses
KERNELS = {torch.optim.Adam: "adam", torch.optim.AdamW: "adamw", torch.optim.SGD: "sgd"}
#: ``OptimConfig.kwargs`` this module honours per rule (anything else: build the class)
OPTIONS = {
    "adam": {"amsgrad": False, "maximize": False, "fused": None},
    "adamw": {"amsgrad": False, "maximize": False, "fused": None},
    "sgd": {"dampening": 0.0, "maximize": False, "fused": None},
}


@dataclass(kw_only=True)
class FunctionalOptimizer:
    """What the coordinate check uses of an optimizer — ``param_groups``, ``state``,
    ``zero_grad()``, ``step()`` — with the step of ``torch.optim.{Adam, AdamW, SGD}``.
    ``pool``: where Adam's moment buffers come from and go back to (an earlier seed's,
    zeroed: :mod:`muscale.coord.buffers`; an empty pool gives fresh ``zeros_like``)."""

    rule: str  # adam | adamw | sgd
    param_groups: list[dict[str, Any]]
    state: dict[Tensor, dict[str, Tensor]] = field(default_factory=dict)
    pool: BufferPool = field(default_factory=BufferPool)

    def release(self) -> None:
        """Hand the moment buffers to the pool and forget the state."""
        self.pool.give(t for st in self.state.values() for k, t in st.items() if k != "step")
        self.state.clear()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        for g in self.param_groups:
            params = [p for p in g["params"] if p.grad is not None]
            if params:
                (self._sgd if self.rule == "sgd" else self._adam)(g, params)

    def _adam(self, g: dict[str, Any], params: list[Tensor]) -> None:
        fused = bool(g["fused"])
        zeros_like = self.pool.zeros_like
        for p in params:
            st = self.state.setdefault(p, {})
            if not st:  # torch's lazy init (Adam._init_group): step on the device when fused
                st["step"] = (
                    torch.zeros((), dtype=torch.float32, device=p.device)
                    if fused
                    else torch.tensor(0.0, dtype=torch.float32)
                )
                st["exp_avg"] = zeros_like(p)
                st["exp_avg_sq"] = zeros_like(p)
                if g["amsgrad"]:
                    st["max_exp_avg_sq"] = zeros_like(p)
        s = [self.state[p] for p in params]
        beta1, beta2 = g["betas"]
        adam_kernel(
            params,
            [p.grad for p in params],  # type: ignore[misc]
            [x["exp_avg"] for x in s],
            [x["exp_avg_sq"] for x in s],
            [x["max_exp_avg_sq"] for x in s] if g["amsgrad"] else [],
            [x["step"] for x in s],
            foreach=None if fused else False,
            fused=fused or None,
            decoupled_weight_decay=self.rule == "adamw",
            amsgrad=g["amsgrad"],
            beta1=beta1,
            beta2=beta2,
            lr=g["lr"],
            weight_decay=g["weight_decay"],
            eps=g["eps"],
            maximize=g["maximize"],
        )

    def _sgd(self, g: dict[str, Any], params: list[Tensor]) -> None:
        fused = bool(g["fused"])
        bufs = [self.state.get(p, {}).get("momentum_buffer") for p in params]
        sgd_kernel(
            params,
            [p.grad for p in params],  # type: ignore[misc]
            bufs,
            foreach=None if fused else False,
            fused=fused or None,
            weight_decay=g["weight_decay"],
            momentum=g["momentum"],
            lr=g["lr"],
            dampening=g["dampening"],
            nesterov=g["nesterov"],
            maximize=g["maximize"],
        )
        if g["momentum"] != 0:  # as SGD.step: the kernel filled the first step's buffers
            for p, buf in zip(params, bufs, strict=True):
                self.state.setdefault(p, {})["momentum_buffer"] = buf  # type: ignore[assignment]


def functional_optimizer(
    model: torch.nn.Module, plan: Any, cfg: Any, pool: BufferPool | None = None
) -> FunctionalOptimizer | None:
    """The check's optimizer for ``cfg`` (an ``OptimConfig``, its ``kwargs`` already holding
    the implementation choice), or None when its class or options are not mirrored here.
    ``pool``: reuse the moment buffers of an earlier optimizer (:class:`BufferPool`)."""
    from muscale.optim.groups import param_groups
    from muscale.optim.optimizer import optimizer_class

    rule = KERNELS.get(optimizer_class(cfg))  # type: ignore[call-overload]
    if rule is None or cfg.rule_family != plan.optim_family:
        return None
    kwargs = dict(cfg.kwargs)
    allowed = OPTIONS[rule]
    if any(k not in allowed for k in kwargs):
        return None
    opts = {**allowed, **kwargs}
    if rule == "sgd":
        opts.update(momentum=cfg.momentum, nesterov=bool(cfg.nesterov))
    else:
        opts.update(betas=tuple(cfg.betas))
    groups = []
    for g in param_groups(model, plan, cfg):
        g = {k: v for k, v in g.items() if k != "names"}
        groups.append({"lr": cfg.lr, **opts, **g})
    return FunctionalOptimizer(
        rule=rule, param_groups=groups, pool=pool if pool is not None else BufferPool()
    )
