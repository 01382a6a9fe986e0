"""Shared plumbing for the ``muscale`` subcommands: printing JSON and human numbers.

Subcommands are plain functions ``main(argv) -> int`` that parse, call one library function
and print; they raise :class:`muscale.errors.UserError` for bad input and the dispatcher
(:mod:`muscale.cli.main`) turns it into one line on stderr and exit status 2. Composition
and Hydra apps live in :mod:`muscale.hydra_app` (re-exported here for the subcommands).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from muscale.errors import UserError
from muscale.hydra_app import (  # noqa: F401  (the subcommands' toolbox)
    VALUE_FLAGS,
    compose,
    conf_dir,
    config_location,
    hydra_flags,
    is_sweep_value,
    run_app,
    run_hydra_app,
)


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (and nothing else)."""
    json.dump(obj, sys.stdout, indent=2, default=_json_default)
    sys.stdout.write("\n")
    sys.stdout.flush()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def check_format(value: str) -> str:
    """Validate a ``format=`` option."""
    if value not in ("table", "json"):
        raise UserError(f"format={value!r} is not allowed: choose table or json")
    return value


def sig4(x: Any) -> str:
    """A number for people: 4 significant digits (``None`` and non-numbers as they are)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return str(x)
    return f"{x:.4g}"
