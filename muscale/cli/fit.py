"""``muscale fit store=... [format=json]``: per-width optima, trend, verdict, plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from muscale.cli.common import check_format, compose, print_json


def main(argv: list[str]) -> int:
    from muscale.sweep.analyze import fit_store, save_fit

    cfg = compose("fit", argv)
    fmt = check_format(cfg.format)
    fit, records = fit_store(
        str(cfg.store),
        sweep=cfg.sweep,
        scheme=cfg.scheme,
        slope_tol=cfg.slope_tol,  # checked by fit_store (a finite number >= 0)
        n_boot=cfg.bootstrap,
    )
    out = Path(cfg.out) if cfg.out else Path("outputs/fit") / (fit.sweep or "all")
    report = save_fit(fit, records, out)
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
            f"{r['lr_opt']:.4g}",
            f"[{lo:.4g}, {hi:.4g}]",
            "yes" if r["on_edge"] else "",
            f"{r['best_loss']:.4g}",
            str(r["n_trials"]),
            str(r["n_diverged"]),
        )
    con.print(table)
    for s, d in report["by_scheme"].items():
        t = d["trend"]["lr"]
        con.print(
            f"{s.upper():>4}: log2(lr_opt) slope {t['slope']:+.4g} octaves/doubling "
            f"(95% CI [{t['ci'][0]:+.4g}, {t['ci'][1]:+.4g}]), drift {t['drift_octaves']:+.4g} "
            f"octaves over {report.get('scale', 'width')}s {min(t['widths'])}-{max(t['widths'])}: "
            f"{d.get('verdict', '')} ({d.get('reason', '')}"
            + (f"; next: {d['next']}" if d.get("next") else "")
            + ")"
        )
    for name, pf in report.get("params", {}).items():
        con.print(
            f"{name}: {pf['verdict']} ({pf['reason']}"
            + (f"; next: {pf['next']}" if pf.get("next") else "")
            + ")"
        )
    if out is not None:
        con.print(f"plots and fit.json in {out}")
