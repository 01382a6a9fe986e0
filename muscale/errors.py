"""Errors a user can fix by changing an input.

The CLI turns a :class:`UserError` into one line on stderr and exit status 2 (never a
traceback); library callers get an ordinary exception whose message names the field, the
value and what is allowed.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable


class UserError(ValueError):
    """Bad input: a config value, a missing file, a mismatched checkpoint."""


class ConfigError(UserError):
    """A config field holds a value outside what is allowed."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        super().__init__(f"{field}={value!r} is not allowed: {allowed}")
        self.field = field
        self.value = value


def check_choice(field: str, value: object, choices: Iterable[object]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``."""
    options = list(choices)
    if value not in options:
        raise ConfigError(field, value, "choose one of " + ", ".join(map(str, options)))


def check_positive_int(field: str, value: object, *, allow_zero: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer > 0 (>= 0 with
    ``allow_zero``): counts and sizes are not ``1.5`` or ``true``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(field, value, "an integer >= 0" if allow_zero else "an integer > 0")
    check_positive(field, int(value), allow_zero=allow_zero)


def check_positive(field: str, value: float | int, *, allow_zero: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a finite number > 0 (or >= 0 with
    ``allow_zero``): ``inf`` and ``nan`` are not sizes, rates or scales."""
    allowed = "a finite number >= 0" if allow_zero else "a finite number > 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(field, value, allowed)
    ok = value >= 0 if allow_zero else value > 0
    if not ok or not math.isfinite(value):
        raise ConfigError(field, value, allowed)
