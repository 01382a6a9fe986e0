"""Hugging Face causal LMs under μP: scale a transformers config in width, build, parametrize.

Width is the hidden size; the MLP width keeps the config's ratio to it; heads grow in
number (head_dim fixed, where μP's and SP's attention scales agree) or in size (then the
attention modules' ``scaling`` is set to μP's ``alpha_attn·sqrt(d0)/d``, TP5 Def. 4.1).
Roles are inferred from how the shapes scale (:mod:`muscale.auto.infer`), so no table of
HF parameter names is needed; a tied embedding is the input layer and its ``lm_head`` the
readout that applies 1/m (mup's ``MuSharedReadout``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from muscale.errors import ConfigError, UserError
from muscale.hf.config import ARCHS, Arch, HFModelConfig
from muscale.param.plan import Plan


class HFCausalLM(nn.Module):
    """A transformers causal LM as ``(B, T) token ids -> (B, T, vocab) logits``."""

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        self.hf = hf

    def forward(self, idx: Tensor) -> Tensor:
        return self.hf(input_ids=idx, use_cache=False).logits

    @property
    def blocks(self) -> nn.ModuleList:
        """The decoder layers (what the trainer shards one by one under FSDP2)."""
        return self.hf.get_submodule(arch_of(self.hf.config).blocks)  # type: ignore[return-value]

    def coord_points(self, *, relative: bool = False) -> list[tuple[str, str, str]]:
        """The coordinate check's default hook points (:func:`coord_points`) as
        ``(module name, kind, label)`` rows for :func:`muscale.coord.points.resolve_points`."""
        return [
            (n, k, _relative(n) if relative else n)
            for n, k in coord_points(self, relative=relative).items()
        ]


def _relative(name: str) -> str:
    """``hf.model.layers.7.mlp.down_proj`` -> ``blocks[-1].mlp.down_proj`` (depth mode)."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(["blocks[-1]", *parts[i + 1 :]])
    return name


def base_config(source: Any) -> Any:
    """A transformers config from a config object, a ``model_type`` or a local path."""
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(source, PretrainedConfig):
        return copy.deepcopy(source)
    src = str(source)
    path = Path(src)
    if path.exists():
        return AutoConfig.from_pretrained(str(path.parent if path.is_file() else path))
    from transformers import CONFIG_MAPPING

    if src in CONFIG_MAPPING:
        return AutoConfig.for_model(src)
    raise UserError(
        f"model.config={src!r} is not a local directory/config.json nor a transformers model "
        f"type; give a path or one of {', '.join(ARCHS)} (no downloads are made)"
    )


def arch_of(config: Any) -> Arch:
    mt = getattr(config, "model_type", None)
    if mt not in ARCHS:
        raise ConfigError("model.config", mt, "supported model types: " + ", ".join(ARCHS))
    return ARCHS[mt]


def scaled_config(
    config: Any,
    width: int,
    *,
    head_scaling: str = "n_heads",
    head_dim: int | None = None,
    depth: int | None = None,
    vocab_size: int | None = None,
    seq_len: int | None = None,
    overrides: dict[str, Any] | None = None,
) -> Any:
    """``config`` at hidden size ``width`` (a copy). Raises ConfigError when sizes don't divide."""
    a = arch_of(config)
    cfg = copy.deepcopy(config)
    for k, v in (overrides or {}).items():
        setattr(cfg, k, v)
    hidden, heads = getattr(cfg, a.hidden), getattr(cfg, a.heads)
    fixed = head_dim
    head_dim = getattr(cfg, a.head_dim, None) if a.head_dim else None
    head_dim = fixed or head_dim or hidden // heads
    ff = getattr(cfg, a.ff, None) if a.ff else None
    ff_ratio = (ff or 4 * hidden) / hidden
    q_per_kv = heads // getattr(cfg, a.kv) if a.kv and getattr(cfg, a.kv, None) else 1
    if head_scaling == "n_heads":
        if width % head_dim:
            raise ConfigError("model.width", width, f"must be divisible by head_dim={head_dim}")
        heads = width // head_dim
    else:
        if width % heads:
            raise ConfigError("model.width", width, f"must be divisible by n_heads={heads}")
        head_dim = width // heads
    if heads % q_per_kv:
        raise ConfigError("model.width", width, f"{heads} heads do not group by {q_per_kv}")
    setattr(cfg, a.hidden, width)
    setattr(cfg, a.heads, heads)
    if a.kv:
        setattr(cfg, a.kv, heads // q_per_kv)
    if a.head_dim and hasattr(cfg, a.head_dim):
        setattr(cfg, a.head_dim, head_dim)
    elif head_dim * heads != width:
        raise ConfigError("model.width", width, "hidden size must equal heads x head_dim")
    if a.ff:
        setattr(cfg, a.ff, max(1, round(ff_ratio * width)))
    if depth is not None:
        setattr(cfg, a.layers, depth)
    if vocab_size is not None:
        cfg.vocab_size = vocab_size
    if seq_len is not None:
        setattr(cfg, a.positions, max(seq_len, getattr(cfg, a.positions, 0) or 0))
    return cfg


def head_dim_of(config: Any) -> int:
    a = arch_of(config)
    hd = getattr(config, a.head_dim, None) if a.head_dim else None
    return int(hd or getattr(config, a.hidden) // getattr(config, a.heads))


def build(
    config_or_name: Any,
    *,
    width: int,
    base_width: int,
    scheme: str = "mup",
    head_scaling: str = "n_heads",
    head_dim: int | None = None,
    optim_family: str = "adam",
    param: Any = None,
    depth: int | None = None,
    vocab_size: int | None = None,
    seq_len: int | None = None,
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[HFCausalLM, Plan]:
    """A μP (or SP/NTK) transformers causal LM at ``width`` with its plan (see module doc).

    The model is wrapped as :class:`HFCausalLM` (``idx -> logits``) so that muscale's
    coordinate check and trainer run it like their own GPT; parameter names carry the
    ``hf.`` prefix.
    """
    from transformers import AutoModelForCausalLM

    from muscale.auto.parametrize import parametrize

    base = base_config(config_or_name)
    a = arch_of(base)
    kw = dict(
        head_dim=head_dim, depth=depth, vocab_size=vocab_size, seq_len=seq_len, overrides=overrides
    )

    def config_at(w: int) -> Any:
        return scaled_config(base, w, head_scaling=head_scaling, **kw)  # type: ignore[arg-type]

    def family(w: int) -> HFCausalLM:
        return HFCausalLM(AutoModelForCausalLM.from_config(config_at(w)))

    try:
        config_at(base_width)
    except ConfigError as exc:
        raise ConfigError("param.base_width", base_width, str(exc)) from None
    model, plan = parametrize(
        family,
        width=width,
        base_width=base_width,
        scheme=scheme,
        optim_family=optim_family,
        param=param,
        roles={a.query: "hidden:query"} if a.query else None,
        head_dim=lambda w: head_dim_of(config_at(w)),
        attention=a.attention,
        attn_attr="scaling",
        seed=seed,
        device=device,
    )
    assert isinstance(model, HFCausalLM)
    return model, plan


def build_from_config(
    mcfg: Any, param_cfg: Any, *, optim_family: str, seed: int, device: Any
) -> tuple[HFCausalLM, Plan]:
    """``muscale.build.build_model`` for ``model.family=hf`` (``mcfg``: an HFModelConfig)."""
    if not isinstance(mcfg, HFModelConfig):
        raise TypeError(f"expected an HFModelConfig, got {type(mcfg).__name__}")
    return build(
        mcfg.config,
        width=mcfg.width,
        base_width=param_cfg.base_width,
        scheme=param_cfg.scheme,
        head_scaling=mcfg.head_scaling,
        head_dim=mcfg.head_dim,
        optim_family=optim_family,
        param=param_cfg,
        depth=mcfg.depth,
        vocab_size=mcfg.vocab_size,
        seq_len=mcfg.seq_len,
        overrides=mcfg.overrides,
        seed=seed,
        device=device,
    )


def coord_points(model: HFCausalLM, *, relative: bool = False) -> dict[str, str]:
    """Coordinate-check hook points of a wrapped HF model: embedding, per block the
    attention and MLP branch outputs and the residual stream, the logits."""
    a = arch_of(model.hf.config)
    blocks = model.hf.get_submodule(a.blocks)
    assert isinstance(blocks, nn.ModuleList)
    idx = [len(blocks) - 1] if relative else range(len(blocks))
    pts = {f"hf.{a.embed}": "embed"}
    for i in idx:
        pre = f"hf.{a.blocks}.{i}"
        pts[f"{pre}.{a.attn_out}"] = "attn_out"
        pts[f"{pre}.{a.mlp_out}"] = "mlp_out"
        pts[pre] = "residual"
    pts[f"hf.{a.head}"] = "logits"
    return pts
