"""Registration of muscale's structured configs with Hydra's ConfigStore.

Called explicitly by the CLI before composing (never at import time), so importing muscale
mutates no global registry. Each entry maps a config group option to the dataclass that
types and validates it; the YAML files in ``conf/`` name these schemas in their defaults.
"""

from __future__ import annotations


def register_configs() -> None:
    """Register every schema (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for group, name, node in _schemas():
        cs.store(group=group, name=name, node=node)


def _schemas() -> list[tuple[str | None, str, type]]:
    rows: list[tuple[str | None, str, type]] = []
    try:
        from muscale.models.configs import GPTConfig, MLPConfig
        from muscale.optim.config import OptimConfig
        from muscale.param.config import ParamConfig
    except ImportError:  # core not built yet
        return rows
    rows += [
        ("model", "mlp_schema", MLPConfig),
        ("model", "gpt_schema", GPTConfig),
        ("param", "param_schema", ParamConfig),
        ("optim", "optim_schema", OptimConfig),
    ]
    return rows
