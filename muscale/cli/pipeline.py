"""``muscale pipeline``: the README's main job (coord check -> sweeps -> fit -> transfer -> run)."""

from __future__ import annotations

from muscale.cli.common import check_format, compose, print_json


def main(argv: list[str]) -> int:
    from muscale.pipeline import run_pipeline

    cfg = compose("pipeline", argv)
    fmt = check_format(cfg.format)
    res = run_pipeline(cfg)
    if fmt == "json":
        print_json(
            {
                "out": str(res.out),
                "coord_passed": res.coord_passed,
                "fit": res.fit,
                "target_config": str(res.target_config),
                "target_loss": res.target_loss,
                "predicted_loss": res.predicted_loss,
                "timings": res.timings,
            }
        )
    else:
        print((res.out / "summary.md").read_text())
        print(f"outputs in {res.out}")
    return 0 if res.coord_passed in (None, True) else 1
