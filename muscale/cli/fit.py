"""``muscale fit store=... [format=json]``: per-width optima, trend, verdict, plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from muscale.cli.common import check_format, compose, print_json
from muscale.errors import UserError, check_positive, check_positive_int


def load_fit(cfg: Any) -> tuple[Any, list[Any]]:
    """Open the store, pick the sweep, fit it (shared by ``fit`` and ``transfer``)."""
    from muscale.sweep.fit import fit_sweep
    from muscale.sweep.store import Store

    check_positive("slope_tol", cfg.slope_tol, allow_zero=True)
    check_positive_int("bootstrap", cfg.get("bootstrap", 300))
    store = Store(str(cfg.store), mode="read")
    names = store.sweeps()
    if not names:
        raise UserError(
            f"store {cfg.store} is empty: run `muscale sweep sweep.store={cfg.store}` first"
        )
    name = cfg.sweep
    if name is None:
        if len(names) > 1:
            raise UserError(
                f"store {cfg.store} holds several sweeps ({', '.join(names)}): set sweep=NAME"
            )
        name = names[0]
    elif name not in names:
        raise UserError(f"sweep={name} not in store {cfg.store}; it has {', '.join(names)}")
    records = store.records(name)
    fit = fit_sweep(
        records,
        scheme=cfg.scheme,
        slope_tol=float(cfg.slope_tol),
        n_boot=int(cfg.get("bootstrap", 300)),
    )
    return fit, records


def main(argv: list[str]) -> int:
    from muscale.sweep.plots import plot_optimum_vs_width, plot_transfer

    cfg = compose("fit", argv)
    fmt = check_format(cfg.format)
    fit, _ = load_fit(cfg)
    out = Path(cfg.out) if cfg.out else Path("outputs/fit") / (fit.sweep or "all")
    report = fit.to_json()
    out.mkdir(parents=True, exist_ok=True)
    import json

    (out / "fit.json").write_text(json.dumps(report, indent=2))
    plot_transfer(fit, out / "transfer.png")
    plot_optimum_vs_width(fit, out / "optimum_vs_width.png")
    if fmt == "json":
        print_json(report)
        return 0
    print_fit(report, out)
    return 0


def print_fit(report: dict[str, Any], out: Path | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=140)
    table = Table(title=f"sweep {report['sweep']}: optimum per width")
    for col in (
        "scheme",
        "width",
        "lr_opt",
        "95% CI",
        "on edge",
        "best loss",
        "trials",
        "diverged",
    ):
        table.add_column(col, justify="right")
    for r in report["per_width"]:
        lo, hi = r["lr_opt_ci"]
        table.add_row(
            r["scheme"],
            str(r["width"]),
            f"{r['lr_opt']:.3g}",
            f"[{lo:.3g}, {hi:.3g}]",
            "yes" if r["on_edge"] else "",
            f"{r['best_loss']:.4f}",
            str(r["n_trials"]),
            str(r["n_diverged"]),
        )
    con.print(table)
    for s, d in report["by_scheme"].items():
        t = d["trend"]["lr"]
        verdict = "transfer holds" if d["transfer_holds"] else "optimum drifts"
        con.print(
            f"{s.upper():>4}: log2(lr_opt) slope {t['slope']:+.3f} octaves/doubling "
            f"(95% CI [{t['ci'][0]:+.3f}, {t['ci'][1]:+.3f}]), drift {t['drift_octaves']:+.2f} "
            f"octaves over widths {min(t['widths'])}-{max(t['widths'])}: {verdict} "
            f"(tolerance {report['slope_tol']})"
        )
    if out is not None:
        con.print(f"plots and fit.json in {out}")
