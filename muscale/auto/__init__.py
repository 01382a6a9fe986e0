"""μP for any ``nn.Module``: roles inferred from shapes, multipliers applied by hooks.

``from muscale.auto import parametrize`` (also ``muscale.parametrize``); see
:mod:`muscale.auto.parametrize` and ``docs/any_model.md``.
"""

from muscale.auto.hooks import attach
from muscale.auto.infer import Inferred, infer
from muscale.auto.parametrize import parametrize, plan_only

__all__ = ["Inferred", "attach", "infer", "parametrize", "plan_only"]
