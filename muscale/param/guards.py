"""Checks of a parametrization against the model it is applied to.

Each setting is valid on its own; these combinations silently do the wrong thing, so
:func:`check_model_param` (called by :func:`muscale.param.plan.shape_info`, i.e. whenever a
model and its plan are built) rejects them with a one-line error or warns.
"""

from __future__ import annotations

import warnings
from typing import Any

from muscale.errors import ConfigError


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


def check_tied_readout(model_cfg: Any, param_cfg: Any) -> None:
    """Tied embeddings give the readout the embedding's (input-role) rules. Under NTK the
    readout's LR is then m⁰ instead of m⁻¹ (the scheme's output row), so reject; under SP
    this is the usual GPT-2 setup but the readout is not treated as a readout, so warn.
    μP is fine: the shared readout keeps its 1/m forward multiplier (mup's
    ``MuSharedReadout``)."""
    if not getattr(model_cfg, "tie_embeddings", False):
        return
    if param_cfg.scheme == "ntk":
        raise ConfigError(
            "param.scheme",
            "ntk",
            "with model.tie_embeddings=true the readout takes the input role's LR (m^0, not "
            "NTK's m^-1); untie the embeddings or use param.scheme=mup",
        )
    if param_cfg.scheme == "sp":
        warnings.warn(
            "param.scheme=sp with model.tie_embeddings=true: the readout shares the "
            "embedding's init and LR (standard GPT-2 practice, not a width-consistent rule)",
            UserWarning,
            stacklevel=3,
        )


def check_model_param(model_cfg: Any, param_cfg: Any) -> None:
    """Every model-vs-parametrization guard, in one call."""
    check_depth_rule(model_cfg, param_cfg)
    check_tied_readout(model_cfg, param_cfg)
