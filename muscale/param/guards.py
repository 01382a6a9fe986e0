"""Checks of a parametrization against the model it is applied to.

Each setting is valid on its own; these combinations silently do the wrong thing, so
:func:`check_model_param` (called by :func:`muscale.param.plan.shape_info`, i.e. whenever a
model and its plan are built) rejects them with a one-line error or warns.
"""

from __future__ import annotations

import warnings
from typing import Any

from muscale.errors import ConfigError
from muscale.param.roles import Role
from muscale.param.rules import FAMILIES, width_rule


def check_depth_rule(model_cfg: Any, param_cfg: Any) -> None:
    """Depth rules (TP6; CompleteP) scale residual *branches* by ``m_L^-alpha`` and the
    block LR and Adam ε with them; a non-residual MLP has no branch to scale, so
    ``depth_alpha > 0`` would change its LR and ε with nothing to compensate."""
    if float(param_cfg.depth_alpha) > 0 and getattr(model_cfg, "residual", True) is False:
        raise ConfigError(
            "param.depth_alpha",
            param_cfg.depth_alpha,
            "depth rules need residual branches and model.residual=false has none; "
            "set param.depth_alpha=0 or model.residual=true",
        )


def tied_conflicts(scheme: str) -> set[str]:
    """Which exponents (``init``, ``lr``, ``eps``) the rule table's input and output rows
    give differently under ``scheme`` (for either optimizer family).

    A tied tensor is one tensor and follows one row (the input's; the readout keeps its own
    forward multiplier, as in mup's ``MuSharedReadout``), so tying is width-consistent
    exactly when the rows agree: under μP they do for Adam and SGD alike (TP5 Table 8:
    init m⁰ for both, LR m⁰ resp. m⁺¹ for both, eps m⁻¹ for both); SP differs in init
    (m⁰ vs m^-1/2) and NTK in init, LR and eps."""
    out: set[str] = set()
    for family in FAMILIES:
        inp, outp = width_rule(scheme, Role.INPUT, family), width_rule(scheme, Role.OUTPUT, family)
        out |= {f for f in ("init", "lr", "eps") if getattr(inp, f) != getattr(outp, f)}
    return out


def check_tied_readout(model_cfg: Any, param_cfg: Any) -> None:
    """Tied embeddings give the readout the embedding's (input-role) rules
    (:func:`tied_conflicts`). Where that changes the readout's LR exponent (NTK: m⁰ instead
    of m⁻¹) reject; where only its init exponent (SP: the usual GPT-2 setup, but the readout
    is not treated as a readout) warn; μP is consistent."""
    if not getattr(model_cfg, "tie_embeddings", False):
        return
    conflicts = tied_conflicts(param_cfg.scheme)
    if "lr" in conflicts:
        raise ConfigError(
            "param.scheme",
            param_cfg.scheme,
            "with model.tie_embeddings=true the readout takes the input role's LR (m^0, not "
            f"{param_cfg.scheme}'s readout LR); untie the embeddings or use param.scheme=mup",
        )
    if conflicts:
        warnings.warn(
            f"param.scheme={param_cfg.scheme} with model.tie_embeddings=true: the readout "
            "shares the embedding's init and LR (standard GPT-2 practice, not a "
            "width-consistent rule)",
            UserWarning,
            stacklevel=3,
        )


def check_model_param(model_cfg: Any, param_cfg: Any) -> None:
    """Every model-vs-parametrization guard, in one call."""
    check_depth_rule(model_cfg, param_cfg)
    check_tied_readout(model_cfg, param_cfg)
