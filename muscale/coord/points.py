"""Which module outputs a coordinate check records, and what kind of quantity each one is.

The kind decides the expected width exponent (:mod:`muscale.coord.verdict`). Branch outputs are
hooked *before* the residual add and logits after the readout multiplier, because a
normalisation layer downstream hides a blow-up (the design doc's calibration note; TP5 §D.1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from muscale.errors import UserError

#: kind -> what it is (shown in reports)
KINDS: dict[str, str] = {
    "embed": "embedding / input-layer output",
    "attn_logits": "attention logits q·kᵀ·scale",
    "attn_out": "attention branch output (before the residual add)",
    "mlp_out": "MLP branch output (before the residual add)",
    "residual": "residual stream after a block",
    "hidden": "hidden pre-activation",
    "logits": "output logits (readout multiplier included)",
}


@dataclass(frozen=True, kw_only=True)
class Point:
    """One hooked module: ``name`` in ``model.named_modules()``; ``label`` identifies it across
    the models of a check (the module name in width mode; block-relative in depth mode)."""

    name: str
    kind: str
    label: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(
                f"coord-check point {self.name!r}: kind={self.kind!r} is not allowed: "
                f"choose one of {', '.join(KINDS)}"
            )
        if not self.label:
            object.__setattr__(self, "label", self.name)


def gpt_points(model: nn.Module, *, relative: bool = False) -> list[Point]:
    """CORE_API's GPT hook points: ``wte``; per block the attention logits (``attn.probe``),
    the attention and MLP branches, the residual stream; ``lm_head``.

    ``relative`` (depth mode): only the last block, labelled ``blocks[-1]``, so that models
    of different depths line up.
    """
    depth = len(model.blocks)  # type: ignore[arg-type]
    picks = {depth - 1: "blocks[-1]"} if relative else {i: f"blocks.{i}" for i in range(depth)}
    pts = [Point(name="wte", kind="embed")]
    for i, lab in picks.items():
        pre = f"blocks.{i}"
        pts += [
            Point(name=f"{pre}.attn.probe", kind="attn_logits", label=f"{lab}.attn.logits"),
            Point(name=f"{pre}.attn.o_proj", kind="attn_out", label=f"{lab}.attn.o_proj"),
            Point(name=f"{pre}.mlp.fc_out", kind="mlp_out", label=f"{lab}.mlp.fc_out"),
            Point(name=pre, kind="residual", label=lab),
        ]
    return [*pts, Point(name="lm_head", kind="logits")]


def mlp_points(model: nn.Module, *, relative: bool = False) -> list[Point]:
    """CORE_API's MLP hook points: ``inp`` (input layer), ``blocks[i]`` (hidden
    pre-activation, or the residual stream when residual), ``out`` (logits)."""
    depth = len(model.blocks)  # type: ignore[arg-type]
    kind = "residual" if model.cfg.residual else "hidden"  # type: ignore[union-attr]
    picks = {depth - 1: "blocks[-1]"} if relative else {i: f"blocks.{i}" for i in range(depth)}
    pts = [Point(name="inp", kind="embed")]
    pts += [Point(name=f"blocks.{i}", kind=kind, label=lab) for i, lab in picks.items()]
    return [*pts, Point(name="out", kind="logits")]


PointsSpec = Sequence[str | Point] | Mapping[str, str] | None


def resolve_points(
    model: nn.Module, points: PointsSpec = None, *, relative: bool = False
) -> list[Point]:
    """The points to hook on ``model``.

    ``None``: the defaults of a muscale MLP or GPT. For any other module give ``points``:
    a list of module names (kind ``hidden``, i.e. judged like a hidden layer), a mapping
    ``{name: kind}``, or :class:`Point` objects. Every name must exist in
    ``model.named_modules()``.
    """
    from muscale.models.gpt import GPT
    from muscale.models.mlp import MLP

    if points is None:
        if isinstance(model, GPT):
            pts = gpt_points(model, relative=relative)
        elif isinstance(model, MLP):
            pts = mlp_points(model, relative=relative)
        elif callable(getattr(model, "coord_points", None)):  # e.g. muscale.hf.HFCausalLM
            pts = [  # (name, kind, label) rows: the model needs no import of this module
                p if isinstance(p, Point) else Point(name=p[0], kind=p[1], label=p[2])
                for p in model.coord_points(relative=relative)  # type: ignore[operator]
            ]
        else:
            raise UserError(
                f"{type(model).__name__} is not a muscale MLP/GPT: pass points=[module names] "
                "(or {name: kind}) to say which module outputs to record"
            )
    elif isinstance(points, Mapping):
        pts = [Point(name=n, kind=k) for n, k in points.items()]
    else:
        pts = [p if isinstance(p, Point) else Point(name=str(p), kind="hidden") for p in points]
    if not pts:
        raise UserError("coord-check points: the list is empty; name at least one module")
    names = dict(model.named_modules())
    for p in pts:
        if p.name not in names:
            some = ", ".join(n for n in list(names)[1:13] if n)
            raise UserError(
                f"coord-check point {p.name!r} is not a submodule of {type(model).__name__} "
                f"(some of its modules: {some})"
            )
    labels = [p.label for p in pts]
    if len(set(labels)) != len(labels):
        raise UserError(f"coord-check points repeat a label: {labels}")
    return pts
