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
    from muscale.data.config import data_schemas
    from muscale.hf.config import HFModelConfig
    from muscale.models.configs import GPTConfig, MLPConfig
    from muscale.optim.config import OptimConfig
    from muscale.param.config import ParamConfig
    from muscale.train.config import train_schemas

    return [
        *data_schemas(),
        *train_schemas(),
        ("schema/model", "mlp", MLPConfig),
        ("schema/model", "gpt", GPTConfig),
        ("schema/model", "hf", HFModelConfig),
        ("schema", "param", ParamConfig),
        ("schema", "optim", OptimConfig),
    ]


def to_dict(obj: object) -> dict:
    """A plain dict from a dataclass, DictConfig or mapping (for building typed configs)."""
    import dataclasses

    from omegaconf import DictConfig, OmegaConf

    if isinstance(obj, DictConfig):
        out = OmegaConf.to_container(obj, resolve=True)
        assert isinstance(out, dict)
        return {str(k): v for k, v in out.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return dict(obj)  # type: ignore[call-overload]


def typed_config(cls: type, fields: dict, prefix: str, what: str | None = None) -> object:
    """``cls(**fields)``, but an unknown field is a ConfigError naming it and the valid ones
    (a dataclass would raise a bare TypeError)."""
    from muscale.errors import ConfigError

    known = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ConfigError(
            f"{prefix}.{unknown[0]}",
            fields[unknown[0]],
            f"not a field of {what or prefix}; fields: {', '.join(sorted(known))}",
        )
    return cls(**fields)
