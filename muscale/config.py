"""Helpers for building typed configs: the bottom of muscale's config layer.

The config dataclasses live beside what they configure (``models/configs.py``,
``param/config.py``, ``optim/config.py``, ``data/config.py``, ``train/config.py``,
``sweep/config.py``); each imports only :mod:`muscale.errors`, the rule tables and this
module, so any layer can import any config without a cycle. Hydra (schema registration,
composition, running apps) is one layer up, in :mod:`muscale.hydra_app`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from muscale.errors import ConfigError


def to_dict(obj: object) -> dict:
    """A plain dict from a dataclass, DictConfig or mapping (for building typed configs)."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(obj, DictConfig):
        out = OmegaConf.to_container(obj, resolve=True)
        assert isinstance(out, dict)
        return {str(k): v for k, v in out.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return dict(obj)  # type: ignore[call-overload]


def typed_config(cls: type, fields: dict, prefix: str, what: str | None = None) -> Any:
    """``cls(**fields)``, but an unknown field is a ConfigError naming it and the valid ones
    (a dataclass would raise a bare TypeError)."""
    known = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ConfigError(
            f"{prefix}.{unknown[0]}",
            fields[unknown[0]],
            f"not a field of {what or prefix}; fields: {', '.join(sorted(known))}",
        )
    return cls(**fields)
