"""muscale: muP scaling and hyperparameter transfer for PyTorch.

One import line for a recipe::

    import muscale
    model, plan = muscale.build_model(muscale.GPTConfig(width=256), muscale.ParamConfig())
    opt, sched = muscale.make_optimizer(model, plan, muscale.OptimConfig(lr=0.01))
    muscale.assert_coord_check(factory, [64, 128, 256, 512], batch=(x, y), optimizer=...)

Names resolve on first use (:pep:`562`), so ``import muscale`` loads no torch, Hydra or
transformers; heavy or optional dependencies are imported where used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> (module, attribute in it)
_EXPORTS: dict[str, tuple[str, str]] = {
    # models and their parametrization
    "build_model": ("muscale.build", "build_model"),
    "param_config": ("muscale.build", "param_config"),
    "plan_for": ("muscale.build", "plan_for"),
    "GPTConfig": ("muscale.models.configs", "GPTConfig"),
    "MLPConfig": ("muscale.models.configs", "MLPConfig"),
    "ParamConfig": ("muscale.param.config", "ParamConfig"),
    "InitStd": ("muscale.param.config", "InitStd"),
    "Role": ("muscale.param.roles", "Role"),
    "ParamSpec": ("muscale.param.roles", "ParamSpec"),
    "Plan": ("muscale.param.plan", "Plan"),
    "ShapeInfo": ("muscale.param.plan", "ShapeInfo"),
    "make_plan": ("muscale.param.plan", "make_plan"),
    "forward_multipliers": ("muscale.param.plan", "forward_multipliers"),
    "init_parameters": ("muscale.param.init", "init_parameters"),
    "parametrize": ("muscale.auto.parametrize", "parametrize"),
    # optimizers
    "OptimConfig": ("muscale.optim.config", "OptimConfig"),
    "ScheduleConfig": ("muscale.optim.config", "ScheduleConfig"),
    "make_optimizer": ("muscale.optim.optimizer", "make_optimizer"),
    # coordinate checks
    "coord_check": ("muscale.coord", "coord_check"),
    "CoordReport": ("muscale.coord", "CoordReport"),
    "synthetic_batch": ("muscale.coord", "synthetic_batch"),
    "assert_coord_check": ("muscale.testing", "assert_coord_check"),
    # training
    # (``muscale.train`` is the subpackage, so the function is ``train_model``)
    "train_model": ("muscale.train.loop", "run"),
    "TrainResult": ("muscale.train.loop", "TrainResult"),
    "TrainerConfig": ("muscale.train.config", "TrainerConfig"),
    # errors
    "UserError": ("muscale.errors", "UserError"),
    "ConfigError": ("muscale.errors", "ConfigError"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'muscale' has no attribute {name!r}")
    module, attr = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
