r"""The rule table: (scheme, role, optimizer family) -> width exponents, plus depth rules.

Every rule is a power of a multiplier: a quantity equals its base value (the value at the
base width/depth, tuned on the proxy) times ``m ** exponent``, where ``m = n / n0`` is the
width multiplier of the dimension that matters for the role (fan-in for ``hidden`` and
``output``, fan-out for ``input`` and ``vector``) and ``m_L = L / L0`` the depth multiplier.
Because every exponent multiplies a base value, **at m = m_L = 1 every scheme is exactly SP
with the same base hyperparameters** (the property microsoft/mup tests), as long as μP's
optional zero-initialised readout and query (``param.zero_readout``/``zero_query``, off by
default) stay off.

Width rules — TP5 (Yang et al. 2022) Table 8, the form microsoft/mup implements (μP keeps
the readout init Θ(1) and puts 1/m in a forward multiplier):

======  =======  ==========================  ===========================  ==============
scheme  family   input  (init, lr)           hidden (init, lr)            output (init, mult, lr)
======  =======  ==========================  ===========================  ==============
sp      any      0, 0                        -1/2, 0                      -1/2, 0, 0
ntk     any      0, 0                        -1/2, -1                     -1/2, 0, -1
mup     adam     0, 0                        -1/2, -1                     0, -1, 0
mup     sgd      0, +1                       -1/2, 0                      0, -1, +1
======  =======  ==========================  ===========================  ==============

Vectors: init is the fill (gains 1, biases 0) in every scheme; LR exponent 0, except μP-SGD
(+1) where, like the input layer, their gradients are Θ(1/n).

NTK is the NTK parametrization of Jacot et al. 2018 / TP4 (multiplier 1/sqrt(fan_in), unit
init) folded into PyTorch's init-scale form: folding a multiplier θ into the weights
(W̃ = θW, multiplier 1; the gradient w.r.t. W̃ is θ^-1 times that w.r.t. W) *multiplies* the
SGD LR by θ² (hence m^-1 on layers whose fan-in grows, θ = n^-1/2) and the Adam LR by θ.
The NTK-Adam row is Everett et al. 2024's per-layer NTK (their Table 1: Adam LR n^-1/2 on
hidden and readout in multiplier form; × θ = n^-1/2 gives m^-1 folded), not the lazy
(kernel) limit: under Adam, SP with its per-layer optimum c = (0, 1, 1) and NTK fall into
one equivalence class. It is there to compare against, not expected to transfer.

Adam epsilon: eps must scale like the gradient entries it is added to, or a fixed eps
dominates the update at large width (Everett et al. 2024 §4; CompleteP, Dey et al. 2025,
Table 1). Gradient sizes, derived from the forward pass:

* μP (Table 8 form): the backward signal reaching the last hidden layer is
  (α/m) W_out^T g = Θ(1/n), so input, hidden and vector gradients are Θ(1/n); the readout's
  own gradient (α/m) g xᵀ is also Θ(1/n) because of the forward multiplier. All eps ∝ m^-1.
* NTK (folded): readout entries are Θ(n^-1/2), so the backward signal and hence input,
  hidden and vector gradients are Θ(n^-1/2); the readout gradient g xᵀ is Θ(1).
* SP is the unscaled baseline (exponent 0). ``scale_eps=False`` turns eps scaling off (what
  microsoft/mup and nanoGPT-mup's μP code do; nanoGPT-mup's CompleteP code scales one global
  eps by m^-1 · m_L^-alpha).

Tied embeddings: one tensor serves as the input and the output layer, so it can follow one
row. Under μP the two rows agree on every exponent (init 0, LR 0 resp. +1, eps -1), so the
tensor takes the input row and the readout keeps its 1/m multiplier (mup's
``MuSharedReadout``); under SP and NTK they differ (:func:`muscale.param.guards.tied_conflicts`).

Depth rules (residual networks; Tensor Programs VI, Yang et al. 2023; Bordelon et al. 2023;
CompleteP, Dey et al. 2025): the residual branch output is multiplied by ``m_L^-alpha``;
block parameters' LR gets ``m_L^(alpha-1)`` under Adam and ``m_L^(2 alpha-1)`` under SGD, eps
gets ``m_L^-alpha``. Derivation: a block's update moves the residual stream by
η·m_L^-alpha (Adam: normalised update) or η·m_L^-2alpha (SGD: the gradient carries the
multiplier too); summed over L blocks the change is Θ(1) iff η ∝ L^(alpha-1) resp.
L^(2alpha-1). alpha = 1/2 gives depth-μP (Adam LR ∝ m_L^-1/2, SGD LR constant), alpha = 1
CompleteP (Adam LR unchanged). ``alpha = 0`` means no depth rule (all depth exponents 0).
Embeddings, final norm and readout are never depth-scaled.
"""

from __future__ import annotations

from dataclasses import dataclass

from muscale.param.roles import Role

SCHEMES = ("sp", "ntk", "mup")
FAMILIES = ("adam", "sgd")
DEPTH_ALPHAS = (0.0, 0.5, 1.0)


@dataclass(frozen=True)
class WidthRule:
    """Exponents of the width multiplier ``m`` for one (scheme, role, family)."""

    init: float  # init std = base std * m**init
    mult: float  # forward multiplier = base multiplier * m**mult
    lr: float  # learning rate = eta * m**lr
    eps: float  # Adam epsilon = eps * m**eps (when eps scaling is on)


I, H, O, V = Role.INPUT, Role.HIDDEN, Role.OUTPUT, Role.VECTOR

#: The width table. Rows are (scheme, role, family).
WIDTH_RULES: dict[tuple[str, Role, str], WidthRule] = {
    # --- SP: fan-in init, one global LR, no multipliers -----------------------------------
    ("sp", I, "adam"): WidthRule(init=0.0, mult=0.0, lr=0.0, eps=0.0),
    ("sp", H, "adam"): WidthRule(init=-0.5, mult=0.0, lr=0.0, eps=0.0),
    ("sp", O, "adam"): WidthRule(init=-0.5, mult=0.0, lr=0.0, eps=0.0),
    ("sp", V, "adam"): WidthRule(init=0.0, mult=0.0, lr=0.0, eps=0.0),
    ("sp", I, "sgd"): WidthRule(init=0.0, mult=0.0, lr=0.0, eps=0.0),
    ("sp", H, "sgd"): WidthRule(init=-0.5, mult=0.0, lr=0.0, eps=0.0),
    ("sp", O, "sgd"): WidthRule(init=-0.5, mult=0.0, lr=0.0, eps=0.0),
    ("sp", V, "sgd"): WidthRule(init=0.0, mult=0.0, lr=0.0, eps=0.0),
    # --- NTK (folded into init-scale form; see module docstring) ---------------------------
    ("ntk", I, "adam"): WidthRule(init=0.0, mult=0.0, lr=0.0, eps=-0.5),
    ("ntk", H, "adam"): WidthRule(init=-0.5, mult=0.0, lr=-1.0, eps=-0.5),
    ("ntk", O, "adam"): WidthRule(init=-0.5, mult=0.0, lr=-1.0, eps=0.0),
    ("ntk", V, "adam"): WidthRule(init=0.0, mult=0.0, lr=0.0, eps=-0.5),
    ("ntk", I, "sgd"): WidthRule(init=0.0, mult=0.0, lr=0.0, eps=0.0),
    ("ntk", H, "sgd"): WidthRule(init=-0.5, mult=0.0, lr=-1.0, eps=0.0),
    ("ntk", O, "sgd"): WidthRule(init=-0.5, mult=0.0, lr=-1.0, eps=0.0),
    ("ntk", V, "sgd"): WidthRule(init=0.0, mult=0.0, lr=0.0, eps=0.0),
    # --- μP, TP5 Table 8 -------------------------------------------------------------------
    ("mup", I, "adam"): WidthRule(init=0.0, mult=0.0, lr=0.0, eps=-1.0),
    ("mup", H, "adam"): WidthRule(init=-0.5, mult=0.0, lr=-1.0, eps=-1.0),
    ("mup", O, "adam"): WidthRule(init=0.0, mult=-1.0, lr=0.0, eps=-1.0),
    ("mup", V, "adam"): WidthRule(init=0.0, mult=0.0, lr=0.0, eps=-1.0),
    ("mup", I, "sgd"): WidthRule(init=0.0, mult=0.0, lr=1.0, eps=0.0),
    ("mup", H, "sgd"): WidthRule(init=-0.5, mult=0.0, lr=0.0, eps=0.0),
    ("mup", O, "sgd"): WidthRule(init=0.0, mult=-1.0, lr=1.0, eps=0.0),
    ("mup", V, "sgd"): WidthRule(init=0.0, mult=0.0, lr=1.0, eps=0.0),
}

#: Attention logit scale: exponent of the head-dim multiplier on top of 1/sqrt(d_head0).
#: SP/NTK: 1/sqrt(d_head) = (1/sqrt(d0)) * m_h^-1/2; μP: alpha_attn/d_head scaled so that it
#: equals SP at the base (TP5 Def. 4.1 / Table 3): (1/sqrt(d0)) * m_h^-1.
ATTN_SCALE_EXP: dict[str, float] = {"sp": -0.5, "ntk": -0.5, "mup": -1.0}


@dataclass(frozen=True)
class DepthRule:
    """Exponents of the depth multiplier ``m_L`` for parameters inside residual blocks."""

    branch: float  # residual branch multiplier m_L**branch
    lr: float  # LR factor for block params
    eps: float  # eps factor for block params


def depth_rule(alpha: float, family: str) -> DepthRule:
    """Depth exponents for branch exponent ``alpha`` (see module docstring).

    ``alpha = 0`` is "no depth rule". The LR exponent per family is the table
    ``{adam: alpha - 1, sgd: 2 alpha - 1}``.
    """
    if alpha == 0.0:
        return DepthRule(branch=0.0, lr=0.0, eps=0.0)
    lr_exp = {"adam": alpha - 1.0, "sgd": 2.0 * alpha - 1.0}[family]
    return DepthRule(branch=-alpha, lr=lr_exp, eps=-alpha)


def width_rule(scheme: str, role: Role, family: str) -> WidthRule:
    """Look up the width rule; a missing row is a bug in the table, not user input."""
    return WIDTH_RULES[(scheme, role, family)]
