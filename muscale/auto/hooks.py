"""Forward multipliers on an unmodified module: forward (pre-)hooks holding a float.

Why hooks and not ``torch.nn.utils.parametrize``: a parametrization renames every
parameter it touches (``weight`` -> ``parametrizations.weight.original``), so the plan,
``state_dict`` keys and checkpoints of the decorated model would no longer match the plain
one, and it rescales the weight (its gradient and Adam's normalised update included) rather
than the activation. A forward hook leaves the parameters and their names alone, holds no
tensor state (``state_dict`` round trips are the plain model's), is traced by
``torch.compile`` like the module's own code, and runs inside DDP's and FSDP2's forward
(they call the root module, whose submodules fire their hooks); the tests check all four.

The readout hook scales the readout's *input* by ``alpha_out / m`` so the bias is left
unscaled, exactly as mup's ``MuReadout`` does (TP5, Table 8: the 1/m output multiplier).
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.utils.hooks import RemovableHandle

from muscale.errors import UserError
from muscale.param.plan import Plan

#: the plan's ``shape`` entry that lists the hooked modules (plain data: survives JSON)
HOOKS_KEY = "hooks"


def _scale_input(mult: float) -> Any:
    def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (args[0] * mult, *args[1:])

    return hook


def _scale_output(mult: float) -> Any:
    def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> Any:
        return out * mult

    return hook


def hook_table(readouts: list[str], inputs: list[str], attention: list[str], attr: str) -> dict:
    """What :func:`attach` reads from a plan: module names per multiplier."""
    return {"output": readouts, "input": inputs, "attention": attention, "attn_attr": attr}


def attach(model: nn.Module, plan: Plan) -> list[RemovableHandle]:
    """Apply the plan's forward multipliers to ``model`` (built plainly by the same family).

    Output multiplier: a pre-hook on each readout. Input multiplier (``param.input_mult``,
    1 by default, then no hook): a hook on each input layer (embeddings scale their output,
    other layers their input, leaving biases unscaled like muscale's ``ScaledLinear``).
    Attention scale: the float attribute ``attn_attr`` of each attention module is set (the
    ``scaling`` of transformers' attention classes). Call it once per fresh model.
    """
    table = plan.shape.get(HOOKS_KEY)
    if table is None:
        raise UserError("this plan has no hook table: it was not made by muscale.parametrize")
    mods = dict(model.named_modules())
    handles: list[RemovableHandle] = []
    out_mult = plan.multipliers.get("output", 1.0)
    in_mult = plan.multipliers.get("input", 1.0)
    for name in table["output"]:
        if out_mult != 1.0:
            handles.append(mods[name].register_forward_pre_hook(_scale_input(out_mult)))
    for name in table["input"]:
        if in_mult == 1.0:
            continue
        mod = mods[name]
        if isinstance(mod, nn.Embedding | nn.EmbeddingBag):
            handles.append(mod.register_forward_hook(_scale_output(in_mult)))
        else:
            handles.append(mod.register_forward_pre_hook(_scale_input(in_mult)))
    if table["attention"]:
        scale = plan.multipliers["attn_scale"]
        for name in table["attention"]:
            setattr(mods[name], table["attn_attr"], float(scale))
    return handles
