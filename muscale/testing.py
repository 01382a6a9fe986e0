"""Test helpers for users' CI: a coordinate check in a few lines.

    from muscale.testing import assert_coord_check

    def test_my_model_is_mup():
        assert_coord_check(lambda w, seed: build(w, seed), widths=[64, 128, 256],
                           batch=(x, y), optimizer=OptimConfig(name="adam", lr=1e-2))

The pytest plugin (:mod:`muscale.testing_plugin`, installed as a ``pytest11`` entry point)
offers the same as the ``coord_check`` fixture and registers the ``coord_check`` marker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from muscale.coord.extend import EXTEND
from muscale.coord.verdict import CoordReport


class CoordCheckFailed(AssertionError):
    """A coordinate check did not pass: it FAILED, or (unless allowed) it was INCONCLUSIVE;
    ``report`` has the details (``report.status``)."""

    def __init__(self, report: CoordReport) -> None:
        super().__init__(report.verdict())
        self.report = report


def assert_coord_check(
    factory: Callable[..., Any],
    widths: Sequence[int],
    *,
    batch: Any,
    optimizer: Any,
    loss: Callable[[Any, Any], Any] | None = None,
    steps: int = 3,
    seeds: int = 3,
    points: Any = None,
    axis: str = "width",
    expect: str | None = None,
    tol: float | None = None,
    eps_horizon: float | None = None,
    extend: int = EXTEND,
    max_size: int | None = None,
    out: str | Path | None = None,
    allow_inconclusive: bool = False,
) -> CoordReport:
    """Run :func:`muscale.coord.coord_check`; raise :class:`CoordCheckFailed` (an
    ``AssertionError`` listing the offending modules and steps) unless it passed.

    ``expect`` defaults to what the plan claims (μP for a μP plan); models without a plan
    need ``expect="mup"``. ``out``: also save ``report.json`` and ``coord.png`` there (e.g. a
    CI artifact folder). ``eps_horizon``: the width the Adam-ε probe vouches for (default
    65536). An INCONCLUSIVE verdict first collects more data, up to ``extend`` rounds
    (the widest width doubled, up to ``max_size``, or more seeds; ``extend=0``: none); if it
    stays INCONCLUSIVE (the message says what would decide) it raises too unless
    ``allow_inconclusive``.
    """
    from muscale.coord.check import coord_check, save

    rep = coord_check(
        factory,
        widths,
        batch=batch,
        optimizer=optimizer,
        loss=loss,
        steps=steps,
        seeds=seeds,
        points=points,
        axis=axis,
        expect=expect,
        tol=tol,
        eps_horizon=eps_horizon,
        extend=extend,
        max_size=max_size,
    )
    if out is not None:
        save(rep, out)
    if rep.status == "fail" or (rep.status == "inconclusive" and not allow_inconclusive):
        raise CoordCheckFailed(rep)
    return rep
