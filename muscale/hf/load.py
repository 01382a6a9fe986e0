"""Load a Hugging Face checkpoint's weights into a muscale model (``trainer.init_from``).

The weights come from the HF directory; everything μP decides (learning rates, eps, weight
decay, forward multipliers) comes from the muscale config's plan, so training continues
with μP learning rates. A Granite export of a muscale GPT loads back into a muscale GPT
(names mapped by :func:`muscale.hf.export.hf_name`, multipliers checked against the plan);
any supported HF model loads into ``model=hf`` of the same architecture and width.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from muscale.errors import UserError
from muscale.param.plan import Plan

#: GraniteConfig field -> (plan multiplier, how the export derived it)
_MULTS = {
    "embedding_multiplier": ("input", lambda v: v),
    "residual_multiplier": ("branch", lambda v: v),
    "attention_multiplier": ("attn_scale", lambda v: v),
    "logits_scaling": ("output", lambda v: 1.0 / v),
}


def read_hf_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state dict, config.json)`` of an HF directory (single or sharded safetensors)."""
    from safetensors.torch import load_file

    d = Path(path)
    if not (d / "config.json").exists():
        raise UserError(f"trainer.init_from={path}: no config.json there (not an HF model dir)")
    config = json.loads((d / "config.json").read_text())
    if (d / "model.safetensors").exists():
        files = [d / "model.safetensors"]
    elif (d / "model.safetensors.index.json").exists():
        index = json.loads((d / "model.safetensors.index.json").read_text())
        files = [d / f for f in sorted(set(index["weight_map"].values()))]
    else:
        raise UserError(f"trainer.init_from={path}: no model.safetensors (or its index) there")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    return state, config


def _copy(
    model: nn.Module, state: dict[str, torch.Tensor], names: dict[str, str], src: str
) -> None:
    missing = [ours for ours, theirs in names.items() if theirs not in state]
    if missing:
        raise UserError(
            f"trainer.init_from={src}: it has no weight for {missing[0]} "
            f"(looked for {names[missing[0]]!r}); is it the same architecture?"
        )
    params = dict(model.named_parameters())
    with torch.no_grad():
        for ours, theirs in names.items():
            p, t = params[ours], state[theirs]
            if tuple(p.shape) != tuple(t.shape):
                raise UserError(
                    f"trainer.init_from={src}: {theirs} has shape {tuple(t.shape)}, the model's "
                    f"{ours} {tuple(p.shape)}; set model.width/depth to the checkpoint's"
                )
            p.copy_(t.to(dtype=p.dtype, device=p.device))


def check_multipliers(config: dict[str, Any], plan: Plan, src: str) -> None:
    """A Granite export's multipliers must equal the plan's, or the loaded function changes."""
    for field, (key, to_plan) in _MULTS.items():
        if field not in config or key not in plan.multipliers:
            continue
        there, here = to_plan(float(config[field])), plan.multipliers[key]
        if abs(there - here) > 1e-6 * max(1.0, abs(here)):
            raise UserError(
                f"trainer.init_from={src}: its {field} gives {key}={there:.4g} but this run's "
                f"plan has {here:.4g}; use the param settings (base_width, multipliers) it "
                "was trained with"
            )


def load_hf_into(model: nn.Module, plan: Plan, path: str | Path) -> None:
    """Copy the weights of the HF directory ``path`` into ``model`` (in place)."""
    from muscale.hf.model import HFCausalLM
    from muscale.models.gpt import GPT

    state, config = read_hf_state(path)
    if isinstance(model, HFCausalLM):
        names = {n: n.removeprefix("hf.") for n, _ in model.named_parameters()}
    elif isinstance(model, GPT):
        from muscale.hf.export import hf_name

        if config.get("model_type") != "granite":
            raise UserError(
                f"trainer.init_from={path}: model_type={config.get('model_type')!r}; a muscale "
                "GPT loads a Granite export (muscale export format=hf); use model=hf otherwise"
            )
        check_multipliers(config, plan, str(path))
        names = {n: hf_name(n) for n, _ in model.named_parameters()}
    else:
        raise UserError(
            f"trainer.init_from needs model=gpt or model=hf, not {type(model).__name__}"
        )
    _copy(model, state, names, str(path))
