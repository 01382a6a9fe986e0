"""A finished store row for tests that fit synthetic losses (no training, no store)."""

from __future__ import annotations

from typing import Any

from muscale.sweep.store import Record


def done_record(
    *,
    key: str,
    sweep: str,
    scheme: str,
    width: int,
    seed: int,
    lr: float,
    loss: float | None,
    hparams: dict[str, Any] | None = None,
    depth: int = 2,
    config: dict[str, Any] | None = None,
) -> Record:
    """A ``done`` row with ``loss`` as its final and eval losses; ``None`` is a diverged run."""
    return Record(
        key=key,
        sweep=sweep,
        status="done",
        scheme=scheme,
        width=width,
        depth=depth,
        seed=seed,
        lr=lr,
        hparams=dict(hparams or {}),
        final_loss=loss,
        final_eval_loss=loss,
        best_eval_loss=loss,
        diverged=loss is None,
        wall_time=1.0,
        attempts=1,
        git_commit=None,
        run_dir=None,
        config=dict(config or {}),
        error=None,
    )
