"""``muscale pipeline``: the README's main job (tune μP on proxies, transfer, compare with SP)."""

from __future__ import annotations

from muscale.cli.common import check_format, compose, print_json


def main(argv: list[str]) -> int:
    """Run the pipeline; print its summary table (or JSON with ``format=json``).

    Exit status 0, 1 when the coordinate check ran and did not pass, 143 when SIGTERM
    stopped it (trials checkpointed; the same command resumes).
    """
    import sys

    from muscale.pipeline import run_pipeline, settings
    from muscale.train.stop import Stopped

    cfg = compose("pipeline", argv)
    fmt = check_format(cfg.format)
    settings(cfg)  # validate (one line, exit 2) before anything runs or is written
    try:
        res = run_pipeline(cfg)
    except Stopped as exc:
        sys.stderr.write(f"muscale pipeline: {exc.message}\n")
        raise
    if fmt == "json":
        print_json(res.to_json())
    else:
        print((res.out / "summary.md").read_text())
        print(f"outputs in {res.out}")
    return 0 if res.coord_passed in (None, True) else 1
