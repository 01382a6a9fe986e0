"""The parametrization plan of a configured model as rows: what ``muscale inspect`` prints.

One row per parameter with its role, shape, init std, forward multiplier and the effective
per-tensor LR, Adam eps and weight decay that the optimizer config becomes under the plan
(:func:`muscale.optim.groups.effective`).
"""

from __future__ import annotations

from typing import Any


def plan_table(model: Any, param: Any, optim: Any) -> list[dict[str, Any]]:
    """Rows for the model ``model`` under ``param`` and ``optim`` (configs, dicts or
    DictConfigs); the model is built on the meta device (no memory, no init)."""
    from muscale.build import build_model
    from muscale.config import to_dict
    from muscale.optim.config import OptimConfig
    from muscale.optim.groups import effective

    ocfg = optim if isinstance(optim, OptimConfig) else OptimConfig(**to_dict(optim))
    _, plan = build_model(model, param, optim_family=ocfg.rule_family, device="meta")
    rows = []
    for pp in plan.params:
        eff = effective(pp, ocfg)
        rows.append(
            {
                "name": pp.name,
                "role": pp.role,
                "shape": list(pp.shape),
                "init": pp.init,
                "init_std": pp.init_std,
                "multiplier": pp.multiplier,
                "lr": eff.lr,
                "eps": eff.eps,
                "weight_decay": eff.weight_decay,
            }
        )
    return rows
