"""Parameter roles: which dimensions of a tensor grow with width.

Every trainable tensor gets exactly one role, declared by the model that creates it (from
its structure, never from a name substring). The role says which of its dimensions are
"infinite" in the Tensor Programs sense (Yang & Hu 2021, TP4 §3; Yang et al. 2022, TP5
Table 3/8):

============  ===================================================  ==================
role          tensors                                              width dims
============  ===================================================  ==================
``input``     embeddings, first layer of an MLP                    fan-out
``hidden``    matrices with both dims growing (QKV, out, MLP)      fan-in and fan-out
``output``    readout / LM head                                    fan-in
``vector``    biases, norm gains                                   its length
============  ===================================================  ==================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Role(str, Enum):
    INPUT = "input"
    HIDDEN = "hidden"
    OUTPUT = "output"
    VECTOR = "vector"


#: dims are either the name of a model dimension (looked up in the model's dims table, at
#: the model's width and at the base width) or a fixed integer that never scales
Dim = str | int


@dataclass(frozen=True, kw_only=True)
class ParamSpec:
    """What a model declares about one of its parameters.

    ``fan_in``/``fan_out`` name model dimensions (``"d_model"``, ``"d_ff"``...) or are fixed
    integers. ``fill`` is how a vector starts (``"ones"`` for gains, ``"zeros"`` for biases;
    ``None`` for random matrices). ``tag`` marks the two tensors that μP zero-initialises
    (``"query"``, ``"readout"``), or an embedding that is also the readout
    (``"tied_readout"``: tied embeddings). A tied tensor keeps the input role's rules, as
    mup's ``MuSharedReadout`` does (TP5 Table 8's input and output rows agree under μP), is
    never zero-initialised, and its default base init std is the readout's
    ``1/sqrt(n0)`` rather than the embedding's 1 (see :func:`muscale.param.plan.make_plan`;
    docs/parametrization.md "Tied embeddings"). ``block`` is the index of the residual
    block the tensor lives in (``None`` outside the residual blocks), which the depth rules
    scale.
    """

    role: Role
    fan_in: Dim
    fan_out: Dim
    fill: str | None = None
    tag: str | None = None
    block: int | None = None
