"""The CI recipe ``recipes/coord_check_ci/`` runs as its README says
(``pytest -m coord_check recipes/coord_check_ci``), in a subprocess like a user's CI, and
the same test fails when the model loses μP (its readout multiplier set to 1, standard
parametrization's readout): the recipe's check is not one that always passes."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
RECIPE = ROOT / "recipes" / "coord_check_ci" / "test_my_model_coord.py"
MUP_READOUT = 'forward_multipliers(pcfg, "adam", shape)["output"]'


def plugin_args() -> list[str]:
    """Load muscale's pytest plugin by hand when muscale is not installed (a PYTHONPATH run);
    an installed muscale registers it through its ``pytest11`` entry point."""
    names = {ep.name for ep in importlib.metadata.entry_points(group="pytest11")}
    return [] if "muscale" in names else ["-p", "muscale.testing_plugin"]


@pytest.mark.slow
def test_recipe_passes_and_a_broken_copy_fails(tmp_path):
    source = RECIPE.read_text()
    assert MUP_READOUT in source  # the line the broken copy replaces
    broken = tmp_path / "test_broken_coord.py"
    broken.write_text(source.replace(MUP_READOUT, "1.0"))
    report = tmp_path / "report.xml"
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin_args(),
            "-m", "coord_check", "recipes/coord_check_ci", str(broken),
            f"--junitxml={report}", "-o", "junit_family=xunit1",
            "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
        ],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    cases = {
        Path(c.get("file", "")).stem: c  # xunit1 names each case's file
        for c in ET.parse(report).getroot().iter("testcase")
    }
    assert set(cases) == {"test_my_model_coord", "test_broken_coord"}, proc.stdout[-3000:]
    assert not list(cases["test_my_model_coord"]), proc.stdout[-3000:]  # no failure child
    (failure,) = list(cases["test_broken_coord"])
    assert failure.tag == "failure"
    assert "head" in failure.get("message", "") + (failure.text or "")  # names the readout
