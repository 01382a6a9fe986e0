"""``muscale inspect``: the plan of a model, one row per parameter.

muscale inspect model=gpt param=mup model.width=1024 param.base_width=64 optim=adamw optim.lr=0.01
"""

from __future__ import annotations

from muscale.cli.common import check_format, compose, print_json


def main(argv: list[str]) -> int:
    cfg = compose("inspect", argv)
    fmt = check_format(cfg.format)
    from muscale.plan_table import plan_table

    rows = plan_table(cfg.model, cfg.param, cfg.optim)
    if fmt == "json":
        print_json({"params": rows})
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{cfg.model.family} width={cfg.model.width} scheme={cfg.param.scheme} "
        f"optim={cfg.optim.name} lr={cfg.optim.lr}"
    )
    for col in ("name", "role", "shape", "init std", "mult", "lr", "eps", "wd"):
        table.add_column(col, justify="left" if col in ("name", "role", "shape") else "right")
    for r in rows:
        std = (
            "0 (zero)"
            if r["init"] == "zeros"
            else ("1 (ones)" if r["init"] == "ones" else f"{r['init_std']:.4g}")
        )
        table.add_row(
            r["name"],
            r["role"],
            "x".join(map(str, r["shape"])),
            std,
            f"{r['multiplier']:.4g}",
            f"{r['lr']:.4g}",
            f"{r['eps']:.4g}",
            f"{r['weight_decay']:.4g}",
        )
    Console(width=160).print(table)
    return 0
