"""Fit a stored sweep: open the store, pick the sweep, fit the optima, save the figures.

What ``muscale fit`` and ``muscale transfer`` call (the fit itself is
:func:`muscale.sweep.optima.fit_sweep`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from muscale.errors import UserError, check_positive, check_positive_int


def fit_store(
    store: str,
    *,
    sweep: str | None = None,
    scheme: str | None = None,
    slope_tol: float = 0.15,
    n_boot: int = 300,
) -> tuple[Any, list[Any]]:
    """``(SweepFit, records)`` of sweep ``sweep`` in ``store`` (default: its only sweep).

    The store is opened read-only: fitting never writes to (or creates) a store."""
    from muscale.sweep.optima import fit_sweep
    from muscale.sweep.store import Store

    check_positive("slope_tol", slope_tol, allow_zero=True)
    check_positive_int("bootstrap", n_boot)
    db = Store(str(store), mode="read")
    names = db.sweeps()
    if not names:
        raise UserError(f"store {store} is empty: run `muscale sweep sweep.store={store}` first")
    name = sweep
    if name is None:
        if len(names) > 1:
            raise UserError(
                f"store {store} holds several sweeps ({', '.join(names)}): set sweep=NAME"
            )
        name = names[0]
    elif name not in names:
        raise UserError(f"sweep={name} not in store {store}; it has {', '.join(names)}")
    records = db.records(name)
    fit = fit_sweep(records, scheme=scheme, slope_tol=float(slope_tol), n_boot=int(n_boot))
    return fit, records


def fit_report(fit: Any, records: list[Any]) -> dict[str, Any]:
    """``fit.to_json()`` plus ``params``: a fit and verdict for every swept hyperparameter
    other than the LR (:func:`muscale.sweep.optima.fit_all`)."""
    from muscale.sweep.optima import fit_all, swept_params

    report = fit.to_json()
    others = [p for p in swept_params(records) if p != "lr"]
    report["params"] = {
        name: pf.to_json()
        for name, pf in fit_all(
            records, params=others, scale=fit.scale, scheme=fit.scheme, tol=fit.slope_tol
        ).items()
    }
    return report


def save_fit(fit: Any, records: list[Any], out: Path) -> dict[str, Any]:
    """Write ``fit.json``, ``transfer.png`` and ``optimum_vs_width.png`` into ``out``;
    returns the report (:func:`fit_report`)."""
    from muscale.sweep.plots import plot_optimum_vs_width, plot_transfer

    report = fit_report(fit, records)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fit.json").write_text(json.dumps(report, indent=2))
    plot_transfer(fit, out / "transfer.png")
    plot_optimum_vs_width(fit, out / "optimum_vs_width.png")
    return report
