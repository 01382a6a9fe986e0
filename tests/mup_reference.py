"""The microsoft/mup twin of a model for reference comparisons: the same module with its
readout swapped for ``mup.MuReadout`` (same weights; mup applies its own 1/m)."""

from __future__ import annotations

import copy

from torch import nn


def with_mureadout(model: nn.Module, readout: str, *, drop_hooks: bool = False) -> nn.Module:
    """A deep copy of ``model`` whose ``readout`` Linear is a ``MuReadout`` with the same
    weights. ``drop_hooks``: remove the readout's forward-pre hooks (muscale.auto's 1/m
    multiplier), since MuReadout applies the multiplier itself."""
    from mup import MuReadout

    m = copy.deepcopy(model)
    old = getattr(m, readout)
    if drop_hooks:
        old._forward_pre_hooks.clear()
    new = MuReadout(
        old.in_features,
        old.out_features,
        bias=old.bias is not None,
        readout_zero_init=False,
        output_mult=1.0,
    )
    new.load_state_dict(old.state_dict())
    setattr(m, readout, new)
    return m


def with_mushared_readout(model: nn.Module, embedding: str, readout: str) -> nn.Module:
    """A deep copy of ``model`` (whose ``readout`` shares its weight with ``embedding``)
    whose readout is a ``MuSharedReadout`` on the copy's embedding tensor: the tied form
    microsoft/mup ships (the shared weight keeps the embedding's infshape, so ``MuAdam``
    leaves its LR alone; the forward divides by the width multiplier)."""
    from mup import MuSharedReadout

    m = copy.deepcopy(model)  # deepcopy keeps the two modules' weight one tensor
    # no readout bias: MuSharedReadout sizes its bias from the embedding's second dim
    assert getattr(m, readout).bias is None, "a biased shared readout is not supported"
    setattr(m, readout, MuSharedReadout(getattr(m, embedding).weight, bias=False))
    return m
