"""Typed config of a parametrization (the ``param`` config group)."""

from __future__ import annotations

from dataclasses import dataclass, field

from muscale.errors import ConfigError, check_choice, check_positive
from muscale.param.rules import DEPTH_ALPHAS, SCHEMES

INIT_DISTS = ("normal", "orthogonal")


@dataclass(kw_only=True)
class InitStd:
    """Init std of each role **at the base width** (``None``: 1/sqrt(base fan-in)).

    Embeddings have an effective fan-in of 1 (one-hot inputs), so their default std is 1;
    a tied embedding, which is also the readout, defaults to the readout's 1/sqrt(n0)
    (docs/parametrization.md, "Tied embeddings").
    """

    input: float | None = None
    hidden: float | None = None
    output: float | None = None


@dataclass(kw_only=True)
class ParamConfig:
    """Which parametrization, and the base shape its hyperparameters were tuned at.

    ``base_width``: the proxy width ``n0``; every width multiplier is ``n / n0`` of the
    dimension that matters (the model says which of its dims scale with width).
    ``base_depth``: the proxy depth ``L0`` (``None``: the model's own depth, ``m_L = 1``).
    ``depth_alpha``: residual branch exponent: 0 none, 0.5 depth-μP, 1 CompleteP.
    ``input_mult``/``output_mult``/``attn_mult``: tunable base constants (TP5 §4: alpha_in,
    alpha_out, alpha_attn). ``zero_readout``/``zero_query``: zero-init the readout and the
    query projection under μP (TP5 App. D.2; the mup README). Off by default: on real text
    they cost μP up to 0.3 nats at 4x the base width (docs/parametrization.md, "Defaults and
    the ablation that chose them"), and off, μP equals SP exactly at the base width.
    ``scale_eps``: μP-scale Adam's epsilon. ``base_shapes``: a microsoft/mup ``.bsh`` file to
    take the base width from (overrides ``base_width``). ``init_dist``: Gaussian, or (scaled)
    orthogonal matrices where shapes allow
    (Saxe et al. 2014; Pennington et al. 2017).
    """

    scheme: str = "mup"
    base_width: int = 64
    base_depth: int | None = None
    depth_alpha: float = 0.0
    init_std: InitStd = field(default_factory=InitStd)
    init_dist: str = "normal"
    input_mult: float = 1.0
    output_mult: float = 1.0
    attn_mult: float = 1.0
    zero_readout: bool = False
    zero_query: bool = False
    scale_eps: bool = True
    allow_base_above_width: bool = False
    base_shapes: str | None = None

    def __post_init__(self) -> None:
        check_choice("param.scheme", self.scheme, SCHEMES)
        check_positive("param.base_width", self.base_width)
        if self.base_depth is not None:
            check_positive("param.base_depth", self.base_depth)
        if float(self.depth_alpha) not in DEPTH_ALPHAS:
            raise ConfigError(
                "param.depth_alpha",
                self.depth_alpha,
                "choose 0 (none), 0.5 (depth-μP), 1 (CompleteP)",
            )
        check_choice("param.init_dist", self.init_dist, INIT_DISTS)
        for name in ("input_mult", "output_mult", "attn_mult"):
            check_positive(f"param.{name}", getattr(self, name))
        if isinstance(self.init_std, dict):  # built from a plain dict (e.g. JSON)
            self.init_std = InitStd(**self.init_std)
        for role in ("input", "hidden", "output"):
            std = getattr(self.init_std, role)
            if std is not None:
                check_positive(f"param.init_std.{role}", std, allow_zero=True)
