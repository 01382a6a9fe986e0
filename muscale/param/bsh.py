"""Import a microsoft/mup base-shape (``.bsh``) file as a base width.

A ``.bsh`` file (``mup.save_base_shapes``) maps each parameter name to its base shape, with
``null`` for dimensions that do not scale. muscale needs only the base width: every scaled
dimension of every tensor must shrink by the same factor ``width / base_width`` (mup's own
models scale all "infinite" dims together); a tensor that disagrees is an error naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from muscale.errors import UserError


def read_bsh(path: str | Path) -> dict[str, list[int | None]]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"param.base_shapes={path}: file not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"param.base_shapes={path}: not a YAML base-shape file ({exc})") from exc
    if not isinstance(data, dict):
        raise UserError(f"param.base_shapes={path}: expected a mapping of parameter -> base shape")
    return {str(k).removeprefix("module."): list(v) for k, v in data.items()}


def base_width_from_bsh(
    bsh: Mapping[str, list[int | None]], shapes: Mapping[str, tuple[int, ...]], width: int
) -> int:
    """The base width implied by base shapes ``bsh`` for a model with ``shapes`` at ``width``."""
    ratio: float | None = None
    first = ""
    for name, shape in shapes.items():
        if name not in bsh:
            raise UserError(f"param.base_shapes has no entry for parameter {name!r}")
        base = bsh[name]
        if len(base) != len(shape):
            raise UserError(
                f"param.base_shapes: {name} has {len(base)} dims, the model {len(shape)}"
            )
        for cur, b in zip(shape, base, strict=True):
            if b is None:
                continue
            r = cur / b
            if ratio is None:
                ratio, first = r, name
            elif abs(r - ratio) > 1e-9 * max(r, ratio):
                raise UserError(
                    f"param.base_shapes: {name} scales by {r:g} but {first} by {ratio:g}; "
                    "muscale needs one width multiplier"
                )
    if ratio is None:
        return width
    base_width = width / ratio
    if abs(base_width - round(base_width)) > 1e-6:
        raise UserError(f"param.base_shapes implies a non-integer base width {base_width:g}")
    return round(base_width)
