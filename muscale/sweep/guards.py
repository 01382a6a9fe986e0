"""Checks of sweep input that config modules run (imports only :mod:`muscale.errors`).

Kept apart from :mod:`muscale.sweep.store` so that :mod:`muscale.sweep.config` stays at the
bottom of the import graph (no SQLAlchemy, no store) while the store applies the same rule
to names it reads back.
"""

from __future__ import annotations

import re

from muscale.errors import UserError

#: a sweep name becomes a directory name (``outputs/sweeps/<name>``, ``outputs/fit/<name>``)
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def check_sweep_name(name: object, field: str = "sweep.name") -> str:
    """``name`` if it is safe as a directory name (no ``/``, no ``..``), else a one-line error.

    Applied when a sweep is written and again when a name is read back from a store, which
    may come from anywhere (a name like ``../../x`` would otherwise steer ``fit``'s output).
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise UserError(
            f"{field}={name!r} is not allowed: 1-200 characters from letters, digits, "
            "'.', '_', '-', starting with a letter or digit"
        )
    return name
