"""One synthetic :class:`CoordData` with a single hidden module, for the verdict's tests
(slopes, extension, overshoot): the arrays are given, the rest is filled in."""

from __future__ import annotations

import numpy as np

from muscale.coord.points import Point
from muscale.coord.run import CoordData


def one_module(
    level: np.ndarray,
    change: np.ndarray,
    sizes,
    *,
    loss: np.ndarray | None = None,
    family: str = "adam",
    kind: str = "hidden",
) -> CoordData:
    """``level``/``change``: ``(sizes, seeds, 1, steps + 1)``; ``loss`` (default zeros):
    ``(sizes, seeds, steps + 1)``."""
    n_sizes, seeds, _, t1 = level.shape
    return CoordData(
        axis="width",
        sizes=[int(s) for s in sizes],
        steps=t1 - 1,
        seeds=seeds,
        points=[Point(name="h", kind=kind)],
        level=level,
        change=change,
        loss=np.zeros((n_sizes, seeds, t1)) if loss is None else loss,
        scheme="mup",
        family=family,
    )
