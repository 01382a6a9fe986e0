r"""Infer every tensor's μP role from how its dimensions scale with width.

A model family is given as ``build(width) -> nn.Module``. It is built on the ``meta``
device (shapes only, no memory) at the base width ``n0``, the target width ``n`` and a
third probe width; an axis *scales* when its size differs between the builds, and it must
then grow in proportion to width (the Tensor Programs limit, TP4 §3), else the tensor is
ambiguous. The role follows from which axes scale (TP5, Yang et al. 2022, Table 3/8):

==========================  ==========  ====================================
fan-in axis                 fan-out     role
==========================  ==========  ====================================
fixed (or one-hot)          scales      ``input``  (embeddings, first layer)
scales                      scales      ``hidden``
scales                      fixed       ``output`` (readout)
one axis (biases, gains)                ``vector``
==========================  ==========  ====================================

Which axis of a weight is the fan-in is a property of the module that owns it (a table,
:data:`CONVENTIONS`): ``nn.Linear`` stores ``(out, in)``, ``nn.Embedding`` ``(num, dim)``
with a one-hot input (fan-in 1), convolutions ``(out, in, *kernel)`` (fan-in ``in·kernel``),
transformers' GPT-2 ``Conv1D`` ``(in, out)``. A raw ``nn.Parameter`` of any other module
whose role depends on that choice (exactly one scaling axis, or more than two axes) is
ambiguous: the error names it and the ``roles=`` override that settles it. This is mup's
``set_base_shapes`` without its base and delta models and without ``p.infshape``: the
result is plain data (:class:`~muscale.param.roles.ParamSpec` per name plus a dims table).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from muscale.errors import UserError
from muscale.param.roles import ParamSpec, Role

#: ``build(width) -> module``: the model family
Build = Callable[[int], nn.Module]

#: largest relative deviation from proportional growth still called "scales with width"
#: (``round(ratio * width)`` sizes at small widths)
PROPORTIONAL_TOL = 0.05


def conventions() -> dict[type, tuple[int, int | None]]:
    """Module type -> (fan-out axis, fan-in axis or None for one-hot inputs) of ``weight``."""
    table: dict[type, tuple[int, int | None]] = {
        nn.Linear: (0, 1),
        nn.Embedding: (1, None),
        nn.EmbeddingBag: (1, None),
        nn.Conv1d: (0, 1),
        nn.Conv2d: (0, 1),
        nn.Conv3d: (0, 1),
        nn.ConvTranspose1d: (1, 0),
        nn.ConvTranspose2d: (1, 0),
        nn.ConvTranspose3d: (1, 0),
    }
    hf = sys.modules.get("transformers.pytorch_utils")
    if hf is not None and hasattr(hf, "Conv1D"):  # GPT-2's (in, out) linear
        table[hf.Conv1D] = (1, 0)
    return table


def convention(owner: nn.Module, attr: str) -> tuple[int, int | None] | None:
    """The (fan-out, fan-in) axes of ``owner.<attr>``, or None when the module is unknown."""
    if attr != "weight":
        return None
    table = conventions()
    for cls in type(owner).__mro__:
        if cls in table:
            return table[cls]
    return None


@dataclass(kw_only=True)
class Inferred:
    """Roles and dims of a model family at one (width, base width).

    ``dims``/``base_dims`` name every scaling size (``"width"`` first, then ``"n<base>"``
    entries the specs refer to); ``readouts`` are the modules that use an output-role tensor
    (their input gets the output multiplier; a tied embedding's readout is listed too);
    ``inputs`` the modules owning input-role tensors; ``depth`` the length of the residual
    trunk (the largest ``nn.ModuleList``; 1 when there is none).
    """

    specs: dict[str, ParamSpec]
    dims: dict[str, int]
    base_dims: dict[str, int]
    readouts: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    depth: int = 1


def meta_build(build: Build, width: int) -> nn.Module:
    """``build(width)`` on the meta device (shapes only)."""
    with torch.device("meta"):
        return build(width)


def probe_width(width: int, base_width: int) -> int:
    """A third width, different from both, keeping the divisibility of the base width."""
    for k in (2, 3, 4, 5):
        if k * base_width not in (width, base_width):
            return k * base_width
    raise AssertionError("unreachable")


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, attr = name.rpartition(".")
    return (model.get_submodule(path) if path else model), attr


def _match(name: str, table: Mapping[str, str] | None) -> str | None:
    """The override of the first pattern (fnmatch, in table order) that matches ``name``."""
    for pattern, value in (table or {}).items():
        if fnmatch.fnmatchcase(name, pattern):
            return value
    return None


def _trunk(model: nn.Module) -> tuple[str, int] | None:
    """The residual trunk: the ``nn.ModuleList`` holding the most parameters."""
    best: tuple[int, str, int] | None = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod):
            n = sum(p.numel() for p in mod.parameters())
            if best is None or n > best[0]:
                best = (n, name, len(mod))
    return None if best is None else (best[1], best[2])


def _block(name: str, trunk: tuple[str, int] | None) -> int | None:
    if trunk is None:
        return None
    prefix = f"{trunk[0]}." if trunk[0] else ""
    if not name.startswith(prefix):
        return None
    head = name[len(prefix) :].split(".", 1)[0]
    return int(head) if head.isdigit() else None


class _Dims:
    """Allocates dim names for scaling axes: ``n<base size>`` (suffixed on collisions)."""

    def __init__(self, width: int, base_width: int) -> None:
        self.dims = {"width": width}
        self.base = {"width": base_width}

    def name(self, n: int, n0: int) -> str:
        key, k = f"n{n0}", 1
        while key in self.dims and (self.dims[key], self.base[key]) != (n, n0):
            k += 1
            key = f"n{n0}_{k}"
        self.dims[key], self.base[key] = n, n0
        return key


def infer(
    build: Build,
    *,
    width: int,
    base_width: int,
    roles: Mapping[str, str] | None = None,
) -> Inferred:
    """Roles of every trainable tensor of ``build(width)`` (see the module docstring).

    ``roles``: ``{fnmatch pattern: "input" | "hidden" | "output" | "vector"}``, optionally
    ``"<role>:<tag>"`` (``hidden:query`` zero-inits a query projection under μP,
    ``vector:ones`` / ``vector:zeros`` the fill of a vector); first matching pattern wins.
    """
    widths = sorted({base_width, width, probe_width(width, base_width)})
    shells = {w: meta_build(build, w) for w in widths}
    shapes = {
        w: {n: tuple(p.shape) for n, p in m.named_parameters() if p.requires_grad}
        for w, m in shells.items()
    }
    ref = shells[width]
    names = list(shapes[width])
    for w in widths:
        if list(shapes[w]) != names:
            diff = sorted(set(shapes[w]) ^ set(names))
            raise UserError(
                f"parametrize: the model at width {w} has other parameters than at width "
                f"{width} ({', '.join(diff[:4])}); build(width) must change sizes, not names"
            )
    dims = _Dims(width, base_width)
    trunk = _trunk(ref)
    specs: dict[str, ParamSpec] = {}
    problems: list[str] = []
    for name in names:
        try:
            specs[name] = _spec(name, shapes, widths, width, base_width, ref, roles, dims, trunk)
        except _Ambiguous as exc:
            problems.append(f"{name} ({exc})")
    if problems:
        raise UserError(
            f"parametrize: cannot infer the role of {'; '.join(problems)}; "
            "pass roles={'<name pattern>': 'input'|'hidden'|'output'|'vector'}"
        )
    # shapes at a width other than the base, so that a shared tensor's scaling axes show
    # even when width == base_width
    other = width if width != base_width else probe_width(width, base_width)
    readouts, inputs = _hook_modules(ref, specs, shapes[other], width, base_width, shapes)
    _tag_tied(ref, specs)
    return Inferred(
        specs=specs,
        dims=dims.dims,
        base_dims=dims.base,
        readouts=readouts,
        inputs=inputs,
        depth=trunk[1] if trunk else 1,
    )


class _Ambiguous(Exception):
    pass


def _scaling(name: str, shapes: dict, widths: list[int], base_width: int) -> list[bool]:
    """Per axis: does it grow in proportion to width? Raise on any other change."""
    ndims = {len(shapes[w][name]) for w in widths}
    if len(ndims) != 1:
        raise _Ambiguous("its number of dimensions changes with width")
    out = []
    base = shapes[base_width][name]
    for axis, n0 in enumerate(base):
        sizes = [shapes[w][name][axis] for w in widths]
        if len(set(sizes)) == 1:
            out.append(False)
            continue
        for w, n in zip(widths, sizes, strict=True):
            if n0 == 0 or abs(n * base_width / (n0 * w) - 1.0) > PROPORTIONAL_TOL:
                raise _Ambiguous(
                    f"axis {axis} has sizes {sizes} at widths {widths}: not proportional to width"
                )
        out.append(True)
    return out


def _spec(
    name: str,
    shapes: dict,
    widths: list[int],
    width: int,
    base_width: int,
    ref: nn.Module,
    roles: Mapping[str, str] | None,
    dims: _Dims,
    trunk: tuple[str, int] | None,
) -> ParamSpec:
    scales = _scaling(name, shapes, widths, base_width)
    shp, shp0 = shapes[width][name], shapes[base_width][name]
    override = _match(name, roles)
    role_s, _, tag = (override or "").partition(":")
    if role_s and role_s not in {r.value for r in Role}:
        raise UserError(
            f"parametrize: roles[{name!r}]={override!r} is not allowed: choose input, hidden, "
            "output or vector (optionally ':query', ':readout', ':ones', ':zeros')"
        )

    def dim(axis: int | None, extra: int = 1) -> str | int:
        if axis is None:
            return 1
        n, n0 = shp[axis] * extra, shp0[axis] * extra
        return dims.name(n, n0) if scales[axis] else n

    block = _block(name, trunk)
    if len(shp) <= 1 or role_s == "vector":
        if len(shp) > 1 and sum(scales) > 1:
            raise _Ambiguous("a vector override on a tensor with several scaling axes")
        axis = next((a for a, s in enumerate(scales) if s), 0 if shp else None)
        d = dim(axis)
        fill = tag if tag in ("ones", "zeros") else None
        return ParamSpec(role=Role.VECTOR, fan_in=d, fan_out=d, fill=fill, block=block)
    owner, attr = _owner(ref, name)
    conv = convention(owner, attr)
    if conv is None:
        if role_s or (len(shp) == 2 and sum(scales) != 1):
            conv = (0, 1)  # nn.Linear's (out, in), mup's convention
            if role_s in ("input", "output") and sum(scales) == 1:
                s = scales.index(True)
                conv = (s, 1 - s) if role_s == "input" else (1 - s, s)
        else:
            raise _Ambiguous(
                f"a raw {tuple(shp)} parameter of {type(owner).__name__} whose fan-in axis "
                "is unknown"
            )
    out_ax, in_ax = conv
    rest = [a for a in range(len(shp)) if a not in (out_ax, in_ax)]
    if any(scales[a] for a in rest):
        raise _Ambiguous(f"axes {rest} beyond fan-in/fan-out scale with width")
    receptive = math.prod(shp[a] for a in rest)
    fan_in = dim(in_ax, receptive)
    fan_out = dim(out_ax)
    s_in = in_ax is not None and scales[in_ax]
    s_out = scales[out_ax]
    if role_s:
        role = Role(role_s)
    elif s_in and s_out:
        role = Role.HIDDEN
    elif s_out:
        role = Role.INPUT
    elif s_in:
        role = Role.OUTPUT
    else:
        role = Role.INPUT if in_ax is None else Role.HIDDEN  # a fixed-size sub-network
    if not tag and role == Role.OUTPUT:
        tag = "readout"
    return ParamSpec(role=role, fan_in=fan_in, fan_out=fan_out, tag=tag or None, block=block)


def _tag_tied(ref: nn.Module, specs: dict[str, ParamSpec]) -> None:
    """Tag an input-role tensor that a second module reads with its fan-in on the tensor's
    fan-out axis (an ``nn.Linear`` reading an embedding matrix: tied embeddings) as
    ``tied_readout``, as a muscale GPT declares it (its default init std is then the
    readout's; :func:`muscale.param.plan.make_plan`)."""
    canonical = {id(p): n for n, p in ref.named_parameters()}
    for alias, p in ref.named_parameters(remove_duplicate=False):
        name = canonical.get(id(p))
        if name is None or alias == name or name not in specs:
            continue
        if specs[name].role != Role.INPUT:
            continue
        own = convention(*_owner(ref, name))
        other = convention(*_owner(ref, alias))
        if own is not None and other is not None and other[1] == own[0]:
            specs[name] = dataclasses.replace(specs[name], tag="tied_readout")


def _hook_modules(
    ref: nn.Module,
    specs: dict[str, ParamSpec],
    shp: dict,
    width: int,
    base_width: int,
    shapes: dict,
) -> tuple[list[str], list[str]]:
    """Modules whose input gets the output multiplier, and those whose output gets the input
    multiplier. A tensor shared by two modules (tied embeddings) is judged in each one's
    convention: the ``nn.Linear`` that reads the embedding matrix is a readout (mup's
    ``MuSharedReadout``)."""
    canonical = {id(p): n for n, p in ref.named_parameters()}
    readouts: list[str] = []
    inputs: list[str] = []
    for alias, p in ref.named_parameters(remove_duplicate=False):
        if id(p) not in canonical or canonical[id(p)] not in specs:
            continue
        spec = specs[canonical[id(p)]]
        owner_name, _, attr = alias.rpartition(".")
        owner = ref.get_submodule(owner_name) if owner_name else ref
        role = spec.role
        if alias != canonical[id(p)]:  # a second user of a shared tensor: its own convention
            conv = convention(owner, attr)
            base = shapes[base_width][canonical[id(p)]]
            if conv is not None and conv[1] is not None:
                in_scales = shp[canonical[id(p)]][conv[1]] != base[conv[1]]
                out_scales = shp[canonical[id(p)]][conv[0]] != base[conv[0]]
                if in_scales and not out_scales:
                    role = Role.OUTPUT
        if role == Role.OUTPUT and owner_name not in readouts:
            readouts.append(owner_name)
        if role == Role.INPUT and attr == "weight" and owner_name not in inputs:
            inputs.append(owner_name)
    return readouts, inputs
