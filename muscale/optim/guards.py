"""Checks of optimizer settings that are valid one by one but wrong together.

Called by :class:`muscale.optim.config.OptimConfig` when it is built; each raises a
:class:`~muscale.errors.ConfigError` naming the field, the value and what to do.
"""

from __future__ import annotations

import importlib

import torch

from muscale.errors import ConfigError

#: adaptive torch optimizers (the rule table's "adam" column: the update is normalised
#: per coordinate, so LR exponents follow Adam's; TP5 Table 3, Everett et al. 2024)
ADAPTIVE: tuple[type[torch.optim.Optimizer], ...] = (
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.Adamax,
    torch.optim.NAdam,
    torch.optim.RAdam,
    torch.optim.Adagrad,
    torch.optim.RMSprop,
)


def torch_class(path: str) -> type[torch.optim.Optimizer]:
    """The optimizer class at a dotted path (``torch.optim.SGD``)."""
    module, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError("optim.name", path, "no such torch optimizer class") from exc
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError("optim.name", path, "not a torch.optim.Optimizer subclass")
    return cls


def infer_family(path: str) -> str:
    """Rule-table column of a torch optimizer class: ``sgd`` for ``torch.optim.SGD`` and
    its subclasses, ``adam`` for the adaptive ones; any other class needs ``optim.family``."""
    cls = torch_class(path)
    if issubclass(cls, torch.optim.SGD):
        return "sgd"
    if issubclass(cls, ADAPTIVE):
        return "adam"
    raise ConfigError(
        "optim.family",
        None,
        f"cannot tell whether {path} follows the adam or the sgd column of the rule table; "
        "set optim.family=adam or optim.family=sgd",
    )


def decay_style(path: str, kwargs: dict) -> str:
    """``decoupled`` when the class shrinks weights outside the gradient (AdamW, or
    ``decoupled_weight_decay=True``), else ``l2`` (decay added to the gradient)."""
    cls = torch_class(path)
    if issubclass(cls, torch.optim.AdamW) or kwargs.get("decoupled_weight_decay"):
        return "decoupled"
    return "l2"


def check_l2_adaptive(name: str, family: str, style: str, weight_decay: float) -> None:
    """Reject weight decay through an adaptive optimizer's gradient (plain Adam's L2).

    muscale sets torch's ``weight_decay = λ / lr`` so that the per-step decay is λ; with L2
    style the term ``(λ / lr) · w`` is added to the gradient and then divided by Adam's
    normaliser, so the decay is neither λ per step nor width-independent (Loshchilov &
    Hutter 2019). SGD's L2 is not normalised, so there it equals decoupled decay."""
    if weight_decay > 0 and family == "adam" and style == "l2":
        raise ConfigError(
            "optim.weight_decay",
            weight_decay,
            f"optim.name={name} applies decay as an L2 term that Adam's normaliser rescales; "
            "use optim.name=adamw (decoupled decay) or set optim.weight_decay=0",
        )
