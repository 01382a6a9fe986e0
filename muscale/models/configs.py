"""Typed model configs (the ``model`` config group), one dataclass per family.

Each config also answers, without building anything, which model dimensions scale with
width and what they are at a given width: :meth:`dims`. The parametrization compares
``dims(width)`` with ``dims(base_width)`` to get every tensor's width multiplier, so no base
or delta model is ever instantiated (cf. microsoft/mup's ``set_base_shapes``).
"""

from __future__ import annotations

from dataclasses import dataclass

from muscale.errors import ConfigError, check_choice, check_positive

ACTIVATIONS = ("relu", "tanh", "gelu", "linear")


@dataclass(kw_only=True)
class MLPConfig:
    """A fully connected network: ``in_dim -> width (x depth blocks) -> out_dim``.

    ``depth`` counts hidden-to-hidden layers (the blocks the depth rules scale); with
    ``residual`` each block is ``h + branch_mult * W act(h)``.
    """

    family: str = "mlp"
    width: int = 256
    depth: int = 2
    in_dim: int = 32
    out_dim: int = 10
    activation: str = "relu"
    bias: bool = True
    residual: bool = False

    def __post_init__(self) -> None:
        check_choice("model.family", self.family, ("mlp",))
        for name in ("width", "depth", "in_dim", "out_dim"):
            check_positive(f"model.{name}", getattr(self, name))
        check_choice("model.activation", self.activation, ACTIVATIONS)

    def dims(self, width: int) -> dict[str, int]:
        return {"width": width}


@dataclass(kw_only=True)
class GPTConfig:
    """A pre-norm decoder-only transformer (nanoGPT/Llama style).

    Width is ``d_model``. ``head_scaling`` picks what grows with width: ``"head_dim"``
    (fixed ``n_heads``, head_dim = width / n_heads; μP's 1/d attention then differs from
    1/sqrt(d)) or ``"n_heads"`` (fixed ``head_dim``, more heads). ``q_per_kv`` > 1 gives
    grouped-query attention. ``d_ff = round(ff_ratio * width)``.
    """

    family: str = "gpt"
    width: int = 256
    depth: int = 4
    n_heads: int = 4
    head_scaling: str = "head_dim"
    head_dim: int | None = None
    q_per_kv: int = 1
    ff_ratio: float = 4.0
    mlp: str = "gelu"
    norm: str = "rmsnorm"
    pos: str = "rope"
    rope_theta: float = 10000.0
    tie_embeddings: bool = False
    bias: bool = False
    vocab_size: int = 256
    seq_len: int = 128

    def __post_init__(self) -> None:
        check_choice("model.family", self.family, ("gpt",))
        for name in ("width", "depth", "n_heads", "q_per_kv", "vocab_size", "seq_len"):
            check_positive(f"model.{name}", getattr(self, name))
        check_positive("model.ff_ratio", self.ff_ratio)
        check_choice("model.head_scaling", self.head_scaling, ("head_dim", "n_heads"))
        check_choice("model.mlp", self.mlp, ("gelu", "swiglu"))
        check_choice("model.norm", self.norm, ("rmsnorm", "layernorm"))
        check_choice("model.pos", self.pos, ("rope", "learned", "none"))
        if self.head_scaling == "n_heads":
            if self.head_dim is None:
                raise ConfigError("model.head_dim", None, "set it when model.head_scaling=n_heads")
            check_positive("model.head_dim", self.head_dim)
        self.dims(self.width)  # validates divisibility at this width

    def dims(self, width: int) -> dict[str, int]:
        """Model dimensions at ``width``; raises ConfigError when shapes do not divide."""
        if self.head_scaling == "head_dim":
            if width % self.n_heads:
                raise ConfigError(
                    "model.width", width, f"must be divisible by model.n_heads={self.n_heads}"
                )
            n_heads, head_dim = self.n_heads, width // self.n_heads
        else:
            assert self.head_dim is not None
            if width % self.head_dim:
                raise ConfigError(
                    "model.width", width, f"must be divisible by model.head_dim={self.head_dim}"
                )
            n_heads, head_dim = width // self.head_dim, self.head_dim
        if n_heads % self.q_per_kv:
            raise ConfigError(
                "model.q_per_kv", self.q_per_kv, f"must divide the number of heads ({n_heads})"
            )
        if self.pos == "rope" and head_dim % 2:
            raise ConfigError("model.width", width, f"RoPE needs an even head_dim, got {head_dim}")
        n_kv = n_heads // self.q_per_kv
        return {
            "d_model": width,
            "d_ff": max(1, round(self.ff_ratio * width)),
            "n_heads": n_heads,
            "head_dim": head_dim,
            "q_dim": n_heads * head_dim,
            "kv_dim": n_kv * head_dim,
        }


ModelConfig = MLPConfig | GPTConfig
