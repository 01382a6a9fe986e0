"""The ``model=hf`` config and the per-architecture table of transformers config fields.

Kept free of a ``transformers`` import so that ``muscale.models`` can register the family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from muscale.errors import check_choice, check_positive


@dataclass(frozen=True, kw_only=True)
class Arch:
    """Where one architecture keeps its sizes (config fields) and its parts (module names).

    ``ff=None``: the MLP width is 4·hidden (GPT-2's ``n_inner=None``); ``kv=None``: no
    grouped-query attention; ``head_dim``: the config field that pins it, if any;
    ``query``: the query projection's weight (zero-initialised under μP, TP5 App. D.2;
    None where q, k, v are one fused matrix).
    """

    hidden: str
    heads: str
    layers: str
    positions: str
    ff: str | None = "intermediate_size"
    kv: str | None = None
    head_dim: str | None = None
    attention: str = "*.self_attn"  # modules holding the float ``scaling``
    embed: str = "model.embed_tokens"
    blocks: str = "model.layers"
    attn_out: str = "self_attn.o_proj"
    mlp_out: str = "mlp.down_proj"
    head: str = "lm_head"
    query: str | None = "*.self_attn.q_proj.weight"


_LLAMA = Arch(
    hidden="hidden_size",
    heads="num_attention_heads",
    layers="num_hidden_layers",
    positions="max_position_embeddings",
    kv="num_key_value_heads",
    head_dim="head_dim",
)

#: transformers ``model_type`` -> where its sizes and parts live
ARCHS: dict[str, Arch] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": Arch(**{**_LLAMA.__dict__, "head_dim": None}),
    "granite": Arch(**{**_LLAMA.__dict__, "head_dim": None}),
    "gpt2": Arch(
        hidden="n_embd",
        heads="n_head",
        layers="n_layer",
        positions="n_positions",
        ff="n_inner",
        attention="*.attn",
        query=None,
        embed="transformer.wte",
        blocks="transformer.h",
        attn_out="attn.c_proj",
        mlp_out="mlp.c_proj",
    ),
    "gpt_neox": Arch(
        hidden="hidden_size",
        heads="num_attention_heads",
        layers="num_hidden_layers",
        positions="max_position_embeddings",
        attention="*.attention",
        query=None,
        embed="gpt_neox.embed_in",
        blocks="gpt_neox.layers",
        attn_out="attention.dense",
        mlp_out="mlp.dense_4h_to_h",
    ),
}

HEAD_SCALINGS = ("n_heads", "head_dim")


@dataclass(kw_only=True)
class HFModelConfig:
    """A transformers causal LM scaled in width (the ``model=hf`` config group).

    ``config``: a transformers ``model_type`` (``llama``, ``qwen2``, ``mistral``,
    ``gpt2``, ``gpt_neox``, ``granite``: its default config) or a local directory /
    ``config.json``. ``width`` is the hidden size; the MLP width keeps the config's ratio.
    ``head_scaling``: ``n_heads`` (head_dim fixed at the config's) or ``head_dim`` (head
    count fixed; the attention ``scaling`` is then set to μP's 1/d). ``head_dim``: the
    fixed head size under ``n_heads`` scaling (None: the config's). ``depth``,
    ``vocab_size``, ``seq_len`` override the config's layers, vocabulary and positions
    (None: keep). ``overrides``: any other config field.
    """

    family: str = "hf"
    config: str = "llama"
    width: int = 256
    depth: int | None = None
    head_scaling: str = "n_heads"
    head_dim: int | None = None
    vocab_size: int | None = None
    seq_len: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("model.family", self.family, ("hf",))
        check_positive("model.width", self.width)
        check_choice("model.head_scaling", self.head_scaling, HEAD_SCALINGS)
        for name in ("depth", "head_dim", "vocab_size", "seq_len"):
            if getattr(self, name) is not None:
                check_positive(f"model.{name}", getattr(self, name))
        self.overrides = dict(self.overrides)
