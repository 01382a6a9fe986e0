"""``muscale diagnose``: spectra, Hessian, NTK and Jacobian diagnostics into a report.

    muscale diagnose checkpoint=runs/a/checkpoints/step_0000100 what=[spectra,hessian,ntk]
    muscale diagnose checkpoint=model.safetensors               # spectra only
    muscale diagnose what=[jacobian] format=json

Writes ``report.md`` and PNG plots into ``out`` (default ``outputs/diagnose/<timestamp>``);
``format=json`` prints the numbers as JSON on stdout. The diagnostics themselves (and how
their random batches are drawn) are :mod:`muscale.diagnostics.suite`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from muscale.cli.common import check_format, compose, print_json


def main(argv: list[str]) -> int:
    from muscale.diagnostics.report import write_report
    from muscale.diagnostics.suite import DiagnoseOptions, run, to_json

    cfg = compose("diagnose", argv)
    fmt = check_format(cfg.format)
    t0 = time.perf_counter()
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    opts = DiagnoseOptions.from_dict({str(k): v for k, v in plain.items()})
    results = run(opts)
    out = (
        Path(cfg.out) if cfg.out else Path("outputs/diagnose") / time.strftime("%Y-%m-%d_%H-%M-%S")
    )
    path = write_report(out, results, max_esd_plots=int(opts.spectra.max_plots))
    sys.stderr.write(f"muscale diagnose: report {path} ({time.perf_counter() - t0:.1f}s)\n")
    if fmt == "json":
        print_json({"report": str(path), **to_json(results)})
    else:
        sys.stdout.write(path.read_text())
    return 0
