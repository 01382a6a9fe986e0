r"""Export a muscale μP GPT checkpoint as a transformers ``GraniteForCausalLM``.

Granite is Llama with exactly the four scalars a μP transformer needs in its forward pass
(Granite 3.0 was itself trained with μP), so every multiplier of the plan maps onto a
config field and the weights are copied unchanged:

==========================  ==============================  ==============================
muscale (plan.multipliers)  forward                          GraniteConfig
==========================  ==============================  ==============================
``input``   alpha_in         ``wte(idx) * alpha_in``         ``embedding_multiplier``
``branch``  m_L^-alpha       ``x + branch * f(norm(x))``     ``residual_multiplier``
``attn_scale``               ``softmax(q kᵀ · scale)``       ``attention_multiplier``
``output``  alpha_out / m    ``lm_head(h) * output``         ``logits_scaling = 1/output``
==========================  ==============================  ==============================

The export needs the architecture Granite has: RMSNorm, rotary positions, a SwiGLU MLP
(biases on the linears map to ``attention_bias``/``mlp_bias``). Anything else is refused in
one line naming the feature (GPT-2's LayerNorm + learned positions + GELU MLP has no μP
multipliers in transformers to fold them into). Next to the weights, ``muscale_optim.json``
lists every HF parameter's learning rate, Adam epsilon and weight decay from the plan, so
training can continue with μP learning rates in plain PyTorch (:func:`hf_param_groups`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from muscale.errors import UserError

OPTIM_FILE = "muscale_optim.json"

#: muscale GPT feature -> the value Granite needs (anything else is refused, named)
REQUIRED = {"norm": "rmsnorm", "pos": "rope", "mlp": "swiglu"}

#: muscale GPT parameter suffix inside a block -> Granite's
BLOCK_NAMES = {
    "norm1.weight": "input_layernorm.weight",
    "norm2.weight": "post_attention_layernorm.weight",
    "attn.q_proj": "self_attn.q_proj",
    "attn.k_proj": "self_attn.k_proj",
    "attn.v_proj": "self_attn.v_proj",
    "attn.o_proj": "self_attn.o_proj",
    "mlp.fc_in": "mlp.up_proj",
    "mlp.fc_gate": "mlp.gate_proj",
    "mlp.fc_out": "mlp.down_proj",
}
TOP_NAMES = {"wte.weight": "model.embed_tokens.weight", "norm_f.weight": "model.norm.weight"}


def check_exportable(model_cfg: dict[str, Any]) -> None:
    """Refuse, naming the feature, a muscale model Granite cannot represent."""
    if model_cfg.get("family", "gpt") != "gpt":
        raise UserError(
            f"export format=hf: model.family={model_cfg.get('family')!r} is not exportable; "
            "only a muscale GPT is"
        )
    for key, need in REQUIRED.items():
        if model_cfg.get(key) != need:
            raise UserError(
                f"export format=hf: model.{key}={model_cfg.get(key)!r} has no μP-exact "
                f"transformers equivalent (GraniteForCausalLM needs model.{key}={need})"
            )


def hf_name(name: str) -> str:
    """The Granite parameter name of a muscale GPT parameter."""
    if name in TOP_NAMES:
        return TOP_NAMES[name]
    if name == "lm_head.weight":
        return name
    if name.startswith("blocks."):
        _, i, rest = name.split(".", 2)
        for ours, theirs in BLOCK_NAMES.items():
            if rest == ours or rest.startswith(ours + "."):
                return f"model.layers.{i}.{theirs}{rest[len(ours) :]}"
    raise UserError(f"export format=hf: no Granite parameter for {name!r}")


def granite_config(model_cfg: dict[str, Any], multipliers: dict[str, float]) -> Any:
    """The GraniteConfig of a muscale GPT config with the plan's multipliers folded in."""
    from transformers import GraniteConfig

    from muscale.models import GPTConfig, model_config

    cfg = model_config(model_cfg)
    assert isinstance(cfg, GPTConfig)  # check_exportable ran first
    dims = cfg.dims(cfg.width)
    return GraniteConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=dims["d_model"],
        intermediate_size=dims["d_ff"],
        num_hidden_layers=cfg.depth,
        num_attention_heads=dims["n_heads"],
        num_key_value_heads=dims["kv_dim"] // dims["head_dim"],
        hidden_act="silu",
        max_position_embeddings=cfg.seq_len,
        rms_norm_eps=1e-6,  # muscale's nn.RMSNorm(eps=1e-6)
        tie_word_embeddings=bool(cfg.tie_embeddings),
        rope_parameters={"rope_type": "default", "rope_theta": float(cfg.rope_theta)},
        attention_bias=bool(cfg.bias),
        mlp_bias=bool(cfg.bias),
        embedding_multiplier=float(multipliers["input"]),
        logits_scaling=1.0 / float(multipliers["output"]),
        residual_multiplier=float(multipliers["branch"]),
        attention_multiplier=float(multipliers["attn_scale"]),
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        dtype="float32",
    )


def hf_state_dict(state: dict[str, torch.Tensor], tied: bool) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in state.items():
        if tied and name == "lm_head.weight":
            continue  # Granite re-ties it to embed_tokens
        out[hf_name(name)] = t.detach().to("cpu").contiguous().clone()
    return out


def optim_table(plan_d: dict[str, Any], optim_cfg: dict[str, Any]) -> dict[str, Any]:
    """Per-HF-parameter LR/eps/weight decay (torch values) under the run's optimizer config."""
    from muscale.optim.config import OptimConfig
    from muscale.optim.groups import effective
    from muscale.param.plan import Plan

    plan = Plan.from_dict(plan_d)
    ocfg = OptimConfig(**optim_cfg)
    params = {}
    for pp in plan.params:
        eff = effective(pp, ocfg)
        params[hf_name(pp.name)] = {
            "lr": eff.lr,
            "eps": eff.eps,
            "weight_decay": eff.weight_decay,
        }
    return {
        "optimizer": ocfg.name,
        "betas": list(ocfg.betas),
        "schedule": optim_cfg.get("schedule"),
        "note": "per-parameter torch values from muscale's μP plan (scheme "
        f"{plan.scheme}); lr is the peak LR the schedule multiplies",
        "params": params,
    }


def hf_param_groups(model: torch.nn.Module, out: str | Path) -> list[dict[str, Any]]:
    """torch optimizer param groups for an exported model, from its ``muscale_optim.json``
    (plain PyTorch: ``torch.optim.AdamW(hf_param_groups(model, out), betas=...)``)."""
    table = json.loads((Path(out) / OPTIM_FILE).read_text())["params"]
    groups: dict[tuple[float, float, float], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        e = table[name]
        groups.setdefault((e["lr"], e["eps"], e["weight_decay"]), []).append(p)
    return [
        {"params": ps, "lr": lr, "eps": eps, "weight_decay": wd}
        for (lr, eps, wd), ps in groups.items()
    ]


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write the checkpoint (or a run's latest) as a GraniteForCausalLM into ``out``.

    ``out`` gets ``config.json``, ``model.safetensors`` and ``muscale_optim.json``; it is
    written to a temporary sibling and renamed into place, and an existing ``out`` is
    refused unless ``overwrite``.
    """
    from safetensors.torch import save_file

    from muscale.train.checkpoint import find_checkpoint, read_meta, read_model_state

    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"out={out} exists; pass overwrite=true to replace it")
    ckpt = find_checkpoint(checkpoint)
    meta = read_meta(ckpt)
    model_cfg = meta["config"]["model"]
    check_exportable(model_cfg)
    plan_d = meta["plan"]
    config = granite_config(model_cfg, plan_d["multipliers"])
    state = hf_state_dict(read_model_state(ckpt, meta), bool(model_cfg.get("tie_embeddings")))
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    config.save_pretrained(str(tmp))
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    table = optim_table(plan_d, meta["config"]["optim"])
    table["source"] = {"checkpoint": str(ckpt), "step": meta["step"]}
    (tmp / OPTIM_FILE).write_text(json.dumps(table, indent=1))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
