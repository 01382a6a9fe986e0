"""pytest plugin for muscale (entry point ``pytest11: muscale``).

* fixture ``coord_check``: :func:`muscale.testing.assert_coord_check`, saving the report and
  plot under the test's ``tmp_path`` (or ``$MUSCALE_COORD_OUT/<test name>`` when set, for CI
  artifacts);
* marker ``coord_check``: tags coordinate-check tests (``pytest -m coord_check`` selects
  them; registered so ``--strict-markers`` accepts it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "coord_check: a muscale coordinate check (width/depth scaling test)"
    )


@pytest.fixture
def coord_check(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """``coord_check(factory, widths, batch=..., optimizer=..., **kw) -> CoordReport``;
    fails the test with the offending modules and steps."""
    from muscale.testing import assert_coord_check

    root = os.environ.get("MUSCALE_COORD_OUT")
    default_out = Path(root) / request.node.name if root else tmp_path / "coord_check"

    def run(factory: Any, widths: Any, **kw: Any) -> Any:
        kw.setdefault("out", default_out)
        return assert_coord_check(factory, widths, **kw)

    return run
