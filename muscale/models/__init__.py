"""Model families: a table from ``model.family`` to (config dataclass, module class)."""

from __future__ import annotations

from typing import Any

from muscale.errors import check_choice
from muscale.hf.config import HFModelConfig
from muscale.models.configs import GPTConfig, MLPConfig
from muscale.models.gpt import GPT
from muscale.models.mlp import MLP

FAMILIES: dict[str, tuple[type, type]] = {
    "mlp": (MLPConfig, MLP),
    "gpt": (GPTConfig, GPT),
}

#: ``model.family`` -> config dataclass: muscale's own families, plus transformers causal LMs
#: (``hf``: built by :func:`muscale.hf.model.build_from_config`, roles inferred by muscale.auto)
CONFIGS: dict[str, type] = {**{k: cfg for k, (cfg, _) in FAMILIES.items()}, "hf": HFModelConfig}


def model_config(d: Any) -> MLPConfig | GPTConfig | HFModelConfig:
    """A typed model config from a dict / DictConfig / dataclass (validated)."""
    if isinstance(d, MLPConfig | GPTConfig | HFModelConfig):
        return d
    from muscale.config import to_dict

    d = to_dict(d)
    family = d.get("family", "gpt")
    check_choice("model.family", family, CONFIGS)
    return CONFIGS[family](**d)


__all__ = ["CONFIGS", "FAMILIES", "GPT", "MLP", "GPTConfig", "MLPConfig", "model_config"]
