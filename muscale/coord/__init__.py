"""Coordinate checks: do activations and their updates stay Θ(1) as width (or depth) grows?

Public API::

    from muscale.coord import coord_check, save
    rep = coord_check(factory, [64, 128, 256, 512], batch=(x, y), optimizer=OptimConfig(...))
    rep.status, rep.failures, rep.undecided, rep.signature, rep.verdict()  # pass|fail|inconclusive
    rep.eps  # the Adam-ε probe (EpsVerdict; None for SGD)
    rep.extensions  # what an INCONCLUSIVE check added by itself (extend=2, max_size=None)
    save(rep, "outputs/cc")

See ``docs/coord_check.md`` for the protocol, the expected slopes and the calibration.
"""

from muscale.coord.check import (
    check_from_cfg,
    check_from_configs,
    coord_check,
    run_coord_check_from_config,
    save,
)
from muscale.coord.eps_probe import EPS_HORIZON, EPS_THRESHOLD, EpsVerdict
from muscale.coord.points import KINDS, Point, resolve_points
from muscale.coord.run import CoordData, collect, config_factory, synthetic_batch
from muscale.coord.verdict import DEPTH_EXPECT, WIDTH_EXPECT, CoordReport, Slope, report

__all__ = [
    "DEPTH_EXPECT",
    "EPS_HORIZON",
    "EPS_THRESHOLD",
    "KINDS",
    "WIDTH_EXPECT",
    "CoordData",
    "CoordReport",
    "EpsVerdict",
    "Point",
    "Slope",
    "check_from_cfg",
    "check_from_configs",
    "collect",
    "config_factory",
    "coord_check",
    "report",
    "resolve_points",
    "run_coord_check_from_config",
    "save",
    "synthetic_batch",
]
