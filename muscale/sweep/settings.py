"""Is the sweep in the store the same experiment as the one about to run?

A trial's key hashes the sweep name and the trial's coordinates (scheme, width, seed, LR,
searched values), not the settings every trial shares (steps, warmup, batch, data): that is
what lets a re-run sweep find its finished trials. It also means that re-running a sweep
name against the same store with *other* shared settings (``trainer.max_steps=300`` after a
200-step run) would silently reuse the 200-step losses as if they were 300-step ones, and the
trials that have checkpoints would refuse to resume from them. So before a sweep runs, one of
its finished trials is re-composed under the current settings, and the training config the
store recorded for it is compared key by key: any difference in what determines the result
is an error (exit status 2) that names the key and both values; nothing is written.

Keys in :data:`EXECUTION_KEYS` say how and where a trial runs or what it logs, not what it
computes, and are not compared (a sweep started on one machine may finish on another).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from muscale.errors import UserError
from muscale.sweep.trial_spec import Trial
from muscale.train.logging import flatten

#: config keys (or key prefixes, ending in ".") that do not change a trial's result
EXECUTION_KEYS = (
    "logger.",
    "trainer.log_every",
    "trainer.device",
    "trainer.compile",
    "trainer.parallel",
    "trainer.resume",
    "trainer.checkpoint_every",
    "trainer.keep_checkpoints",
    "trainer.save_final",
    "trainer.time_limit_s",
    "trainer.monitor_every",
    "trainer.progress",
    "trainer.threads",
)


def _compared(key: str) -> bool:
    return not any(key.startswith(e) if e.endswith(".") else key == e for e in EXECUTION_KEYS)


def differences(stored: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, stored value, current value)`` for every compared key that differs."""
    a, b = flatten(stored), flatten(current)
    missing = object()
    out = []
    for k in sorted(a.keys() | b.keys()):
        va, vb = a.get(k, missing), b.get(k, missing)
        if _compared(k) and va != vb:
            out.append((k, None if va is missing else va, None if vb is missing else vb))
    return out


def check_same_settings(
    store: Any,
    sweep: str,
    *,
    varies_depth: bool,
    compose_trial: Callable[[Trial], dict[str, Any]],
) -> None:
    """Raise :class:`UserError` when ``sweep``'s finished trials in ``store`` were trained
    with other shared settings than ``compose_trial`` (a trial -> its training config, as the
    trial job would build it now) gives; a sweep with no finished trial passes."""
    done = store.records(sweep, limit=1)
    if not done:
        return
    rec = done[0]
    trial = Trial(
        sweep=rec.sweep,
        scheme=rec.scheme,
        width=rec.width,
        seed=rec.seed,
        lr=rec.lr,
        hparams=dict(rec.hparams),
        depth=rec.depth if varies_depth else None,
    )
    diff = differences(rec.config, compose_trial(trial))
    if not diff:
        return
    key, there, here = diff[0]
    more = f" (and {len(diff) - 1} more)" if len(diff) > 1 else ""
    raise UserError(
        f"sweep {sweep!r} in store {store.name} was run with other settings: {key} is "
        f"{there!r} there and {here!r} here{more}; its finished trials would be reused as "
        "this run's: use a new store or sweep.name (muscale pipeline: a new out=)"
    )
